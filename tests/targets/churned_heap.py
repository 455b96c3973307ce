"""A heap whose objects lie in no order: what a long-running service's
heap becomes after hours of allocation and release (docs/performance.md,
"A churned heap").

Usage: python3.11 churned_heap.py N          (make bench)
       python3.11 churned_heap.py OUTDIR [N]  (tests/test_walk.c)

Builds N Node objects (a str name, a dict and a list of 3 random peers
each), shuffles them, replaces every other one by a new Node (which lands
in the holes the old ones leave), shuffles again, and indexes half of them
by name in a dict. Referents are then scattered over the whole heap: a walk
that follows references reads memory in random order. Prints one JSON line
{"ready": PID, "VmRSS": KiB, "objects": gc-tracked objects} and idles
until stdin closes. With OUTDIR (N default 60000): writes OUTDIR/truth,
"objects C" where C counts the objects of the gc.get_objects() +
gc.get_referents() closure (ground truth), then "gc G", the GC-tracked
objects (len(gc.get_objects())), OUTDIR/index (the index dict's
address, then each entry's value address and key), then OUTDIR/ready, and
idles.
"""
import gc
import json
import os
import random
import sys
import time


class Node:
    def __init__(self, i):
        self.name = "n%d" % i
        self.peers = []
        self.data = {"k": i}


def rss_kib():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def closure_count():
    todo = gc.get_objects()
    seen = set()
    while todo:
        fresh = []
        for o in todo:
            if id(o) in seen:
                continue
            seen.add(id(o))
            fresh.extend(gc.get_referents(o))
        todo = fresh
    return len(seen)


def main():
    outdir = sys.argv[1] if os.path.isdir(sys.argv[1]) else None
    n = int(sys.argv[2]) if outdir and len(sys.argv) > 2 else 60000 if outdir else int(sys.argv[1])
    rnd = random.Random(1)
    nodes = [Node(i) for i in range(n)]
    for nd in nodes:
        nd.peers = [nodes[rnd.randrange(n)] for _ in range(3)]
    rnd.shuffle(nodes)
    for i in range(0, n, 2):
        nodes[i] = Node(n + i)
        nodes[i].peers = [nodes[rnd.randrange(n)] for _ in range(3)]
    rnd.shuffle(nodes)
    index = {nd.name: nd for nd in nodes[: n // 2]}
    gc.collect()
    if outdir:
        # counted with the bookkeeping gone: the closure's own lists and set
        # are freed before the scan
        count = closure_count()
        tracked = len(gc.get_objects())
        with open(os.path.join(outdir, 'truth'), 'w') as f:
            f.write('objects %d\n' % count)
            f.write('gc %d\n' % tracked)
        # the index dict: its address and size, then each entry's value
        # address and key text, in the dict's order
        with open(os.path.join(outdir, 'index'), 'w') as f:
            f.write('%x %d\n' % (id(index), len(index)))
            for name, nd in index.items():
                f.write('%x %s\n' % (id(nd), name))
        open(os.path.join(outdir, 'ready'), 'w').close()
        while True:
            time.sleep(3600)
    print(json.dumps({'ready': os.getpid(), 'VmRSS': rss_kib(),
                      'objects': len(gc.get_objects())}), flush=True)
    sys.stdin.read()
    return index


if __name__ == '__main__':
    main()
