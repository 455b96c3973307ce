"""A target with a known heap, for pyheap's integration tests and demos.

    python known_heap.py OUTDIR [--scale N] [--churn]

Builds instances of its own classes and many built-in objects, writes the
in-process ground truth (groundtruth.py: OUTDIR/truth.json and
OUTDIR/objects.tsv), frees every temporary, then writes OUTDIR/ready and
idles, advancing OUTDIR/counter every ~0.1 s so a test can see it runs.

--churn: skip the ground truth and allocate / free objects in a tight
loop after `ready` (for scans that race with a busy target).

Counts of the script's own classes (EXPECTED below, times --scale) are
exact by construction.
"""
import collections
import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import groundtruth  # noqa: E402  (imports ctypes, json before the heap is built)


class Plain:
    def __init__(self, i):
        self.a = i
        self.b = 'p%d' % i
        self.c = None


class Slotted:
    __slots__ = ('x', 'y', 'z')

    def __init__(self, i):
        self.x = i
        self.y = 'slot%d' % i
        self.z = (i, i + 1)


class DictSub(dict):
    pass


class ListSub(list):
    pass


class Wide:
    """More attributes than a shared-keys table holds: a combined dict."""

    def __init__(self, i):
        for k in range(40):
            setattr(self, 'attr_%d' % k, i + k)


class DequeSub(collections.deque):
    """A subclass of an extension type whose items live outside the body."""


class Node:
    def __init__(self, nxt):
        self.next = nxt


class Kept:
    """Held only by the module-level list KEPT (referrers tests: list [*]
    <- module __main__, path __main__.KEPT[i])."""

    def __init__(self, i):
        self.i = i


EXPECTED = {'Plain': 2000, 'Slotted': 1000, 'DictSub': 300, 'ListSub': 300,
            'Wide': 100, 'Node': 500, 'DequeSub': 50, 'Kept': 40}


def gen_fn(n):
    local_list = [n, n * 2]
    for i in range(n):
        yield local_list, i


def frame_of(i):
    """A frame object that outlives its call (it then owns its data)."""
    held = ['frame', i]
    return sys._getframe(), held


def make_closure(i):
    captured = ['cl', i]

    def closure():
        return captured
    return closure


def build(scale):
    h = {}
    h['plain'] = [Plain(i) for i in range(EXPECTED['Plain'] * scale)]
    # Materialize the instance dict of some: split-table dicts.
    for p in h['plain'][::4]:
        p.__dict__['d'] = 1
    h['slotted'] = [Slotted(i) for i in range(EXPECTED['Slotted'] * scale)]
    h['dictsub'] = [DictSub(k=i, s='v%d' % i) for i in range(EXPECTED['DictSub'] * scale)]
    h['listsub'] = [ListSub([i, str(i)]) for i in range(EXPECTED['ListSub'] * scale)]
    h['wide'] = [Wide(i) for i in range(EXPECTED['Wide'] * scale)]
    nxt = None
    for _ in range(EXPECTED['Node'] * scale):
        nxt = Node(nxt)
    h['chain'] = nxt
    n = 1000 * scale
    h['dicts_str'] = [{'name': 'n%d' % i, 'val': i * 1.5} for i in range(n)]
    h['dicts_int'] = [{i: i * 2, i + 1: (i,), (i, 'k'): 'x'} for i in range(n)]
    h['big_dict'] = {'key%d' % i: i for i in range(20000 * scale)}
    h['lists'] = [list(range(i % 50)) for i in range(n)]
    h['tuples'] = [tuple(range(i % 7)) + ('t%d' % i,) for i in range(n)]
    h['ascii'] = ['ascii-%d' % i for i in range(3 * n)]
    h['latin1'] = ['caf\xe9-%d' % i for i in range(n)]
    h['ucs2'] = ['\u20ac-%d' % i for i in range(n)]
    h['ucs4'] = ['\U0001f600-%d' % i for i in range(n)]
    h['ints'] = [10 ** 6 + i for i in range(2 * n)]
    h['bigints'] = [2 ** (64 + i % 200) + i for i in range(n)]
    h['floats'] = [i * 0.25 for i in range(2 * n)]
    h['bytes'] = [b'b%d' % i * (1 + i % 20) for i in range(n)]
    h['sets'] = [{i, i + 1, 'e'} for i in range(n)]
    h['bigsets'] = [set(range(i, i + 100)) for i in range(50 * scale)]
    h['frozensets'] = [frozenset((i, 'f')) for i in range(n // 2)]
    h['closures'] = [make_closure(i) for i in range(n // 2)]
    gens = [gen_fn(i + 2) for i in range(n // 4)]
    for g in gens:
        next(g)
    h['gens'] = gens
    h['frames'] = [frame_of(i)[0] for i in range(n // 20)]
    # Deques hold their items in blocks outside the object: these strs are
    # referenced from nowhere else.
    h['deques'] = [collections.deque('dq%d-%d' % (i, j) for j in range(i % 150))
                   for i in range(n // 10)]
    h['dequesubs'] = [DequeSub(['ds%d' % i]) for i in range(EXPECTED['DequeSub'] * scale)]
    h['odicts'] = [collections.OrderedDict(a=i, b='od%d' % i) for i in range(20)]
    h['bytearrays'] = [bytearray(b'x' * (i % 64)) for i in range(n // 4)]
    KEPT.extend(Kept(i) for i in range(EXPECTED['Kept'] * scale))
    return h


def idle(outdir):
    path = os.path.join(outdir, 'counter')
    count = 0
    while True:
        count += 1
        write_file(path + '.tmp', '%d\n' % count)
        os.replace(path + '.tmp', path)
        time.sleep(0.1)


def churn(outdir):
    path = os.path.join(outdir, 'counter')
    count = 0
    last = 0.0
    while True:
        junk = [{'k': i, 's': 'churn%d' % i, 't': (i, [i])} for i in range(2000)]
        del junk[::2]
        junk = None
        count += 1
        now = time.monotonic()
        if now - last > 0.1:
            write_file(path + '.tmp', '%d\n' % count)
            os.replace(path + '.tmp', path)
            last = now


def write_file(path, text):
    # A helper so no file object outlives the call in main()'s frame.
    with open(path, 'w') as f:
        f.write(text)


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit('usage: known_heap.py OUTDIR [--scale N] [--churn]')
    outdir = args[0]
    scale = int(args[args.index('--scale') + 1]) if '--scale' in args else 1
    mode_churn = '--churn' in args
    HEAP.update(build(scale))
    write_file(os.path.join(outdir, 'expected.txt'),
               ''.join('__main__.%s\t%d\n' % (k, v * scale) for k, v in EXPECTED.items()))
    gc.collect()
    if not mode_churn:
        groundtruth.write(outdir)
    gc.collect()
    write_file(os.path.join(outdir, 'ready'), '%d\n' % os.getpid())
    if mode_churn:
        churn(outdir)
    else:
        idle(outdir)


HEAP = {}
KEPT = []

if __name__ == '__main__':
    main()
