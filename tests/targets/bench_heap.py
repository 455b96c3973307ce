"""The benchmark target for `make bench` (tools/bench.py).

Usage: python3.11 bench_heap.py N
       python3.11 bench_heap.py OUTDIR N   (tests/test_walk.c: writes
                                           OUTDIR/ready, then idles)

Builds N instances of BenchObj, each holding a dict (.d), a text (.s) and a
list (.l): 4 objects per instance. The text is a str, except for 2 in 5
instances where it is a bytes object, so that `bytes` holds 10% of the
objects (the type `pyheap referrers` is timed on). Then it prints one JSON
line {"ready": PID, ...} and serves commands, one per line on stdin, each
answered by one JSON line on stdout:

  closure      the in-process census pympler/guppy-style tools do:
               gc.get_objects() then the gc.get_referents() closure, summing
               sys.getsizeof; answers seconds, objects, bytes
  typestats    objgraph.typestats() (GC-tracked objects only)
  count SECS   a counter loop on the main thread for SECS seconds; answers
               iterations per second (the target's throughput)
  rss          VmRSS and VmHWM of this process, in KiB
  quit         exit

The main thread blocks in readline between commands (the GIL is released),
so the heap stays still unless a command runs.
"""
import gc
import json
import os
import sys
import time


class BenchObj:
    def __init__(self, i):
        self.d = {}
        if i % 5 < 2:
            self.s = b"b%d" % i
        else:
            self.s = "s%d" % i
        self.l = []


def build(n):
    gc.disable()
    objs = [BenchObj(i) for i in range(n)]
    gc.enable()
    return objs


def closure():
    t0 = time.perf_counter()
    # get_objects first: the bookkeeping below must not be part of the heap.
    todo = gc.get_objects()
    seen = set()
    count = 0
    total = 0
    while todo:
        fresh = []
        for o in todo:
            i = id(o)
            if i in seen:
                continue
            seen.add(i)
            count += 1
            total += sys.getsizeof(o)
            fresh.append(o)
        todo = gc.get_referents(*fresh)
    dt = time.perf_counter() - t0
    return {"seconds": dt, "objects": count, "bytes": total}


def typestats():
    import objgraph
    t0 = time.perf_counter()
    st = objgraph.typestats()
    dt = time.perf_counter() - t0
    return {"seconds": dt, "objects": sum(st.values()), "types": len(st)}


def count(secs):
    n = 0
    t0 = time.perf_counter()
    end = t0 + secs
    while True:
        for _ in range(20000):
            n += 1
        if time.perf_counter() >= end:
            break
    dt = time.perf_counter() - t0
    return {"seconds": dt, "iterations": n, "per_second": n / dt}


def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def main():
    if not sys.argv[1].isdigit():
        # tests/test_walk.c: bench_heap.py OUTDIR N, then OUTDIR/ready
        objs = build(int(sys.argv[2]))
        open(os.path.join(sys.argv[1], "ready"), "w").close()
        while True:
            time.sleep(3600)
    n = int(sys.argv[1])
    t0 = time.perf_counter()
    objs = build(n)
    built = time.perf_counter() - t0
    reply = {"ready": os.getpid(), "n": n, "build_seconds": built}
    reply.update(status())
    print(json.dumps(reply), flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd = words[0]
        if cmd == "closure":
            r = closure()
        elif cmd == "typestats":
            r = typestats()
        elif cmd == "count":
            r = count(float(words[1]))
        elif cmd == "rss":
            r = status()
        elif cmd == "quit":
            break
        else:
            r = {"error": "unknown command %r" % cmd}
        print(json.dumps(r), flush=True)
    del objs


if __name__ == "__main__":
    main()
