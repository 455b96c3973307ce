"""A target whose objects are kept alive in known ways, for the referrer
and path tests (tests/test_graph.c).

    python referrers.py OUTDIR [--bench N]

Each scenario uses its own class so a test can ask for the referrers of
exactly those objects; the variable holding them is named after the
scenario. Writes OUTDIR/ready and idles (OUTDIR/counter advances).

--bench N: also build N objects of class Bench (10 % of them reachable
through a dict of lists) among ~10 N other objects, for a timing figure.
"""
import array
import collections
import functools
import gc
import os
import sys
import threading
import time
import weakref


class Seen:
    """Scenario 1: a module-level list that keeps every object it saw."""
    def __init__(self, i):
        self.i = i


class Cyclic:
    """Scenario 2: a cycle held only by itself."""
    def __init__(self):
        self.other = None


class TLPayload:
    """Scenario 3: values of a big dict held by a threading.local."""


class Query:
    """Scenario 4: str values of dicts in a deque; the class marks them."""


class Captured:
    """Scenario 5: items of a list captured by a closure."""


class Cached:
    """Scenario 6: values of a class attribute dict used as a cache."""


class Weakly:
    """Held by a module-level list and by weak references only."""


class Bench:
    pass


class WorkerItem:
    """Held by a threading.local attribute set in another thread."""


class HeldItem:
    """In a list attribute of an instance whose __dict__ was materialised."""


class SlotItem:
    """In a __slots__ member."""


class PartialArg:
    """A bound argument of a functools.partial."""


class DDItem:
    """In a list value of a defaultdict."""


class GenItem:
    """In a local variable of a suspended generator."""


class DescrItem:
    """Wrapped by staticmethod, classmethod and property objects."""


class Descriptors:
    sm = staticmethod(DescrItem())
    cm = classmethod(DescrItem())
    prop = property(DescrItem())


class Holder:
    def __init__(self):
        self.items = [HeldItem() for _ in range(3)]


class Slotted:
    __slots__ = ('payload',)

    def __init__(self):
        self.payload = SlotItem()


def make_gen():
    held = [GenItem() for _ in range(2)]
    yield len(held)
    yield 0


class Dup:
    """Two types print as ...Dup: a short name that is ambiguous."""


OtherDup = type('Dup', (), {'__module__': 'other'})
dups = [Dup(), OtherDup()]


seen_log = []


def remember(obj):
    seen_log.append(obj)
    return obj


tls = threading.local()

queries_log = collections.deque(maxlen=1000)


def make_handler():
    captured_items = [Captured() for _ in range(7)]

    def handler():
        return len(captured_items)
    return handler


handler = make_handler()


class Registry:
    cache = {}


weak_targets = [Weakly() for _ in range(3)]
weak_refs = [weakref.ref(x) for x in weak_targets]
weak_values = weakref.WeakValueDictionary({i: x for i, x in enumerate(weak_targets)})

bench_index = {}

tls2 = threading.local()
worker_ready = threading.Event()


def worker():
    tls2.items = [WorkerItem() for _ in range(5)]
    worker_ready.set()
    while True:
        time.sleep(1)


holder = Holder()
vars(holder)  # materialises the instance dict
slotted = Slotted()
bound = functools.partial(print, PartialArg())
dd = collections.defaultdict(list)
dd['k'].append(DDItem())
gen = make_gen()
next(gen)
exported = array.array('b', [1, 2, 3])
view = memoryview(exported)
del exported


def build(bench):
    for i in range(50):
        remember(Seen(i))
    # a cycle of 4 objects, unreachable once build() returns
    ring = [Cyclic() for _ in range(4)]
    for a, b in zip(ring, ring[1:] + ring[:1]):
        a.other = b
    del ring
    tls.big = {i: TLPayload() for i in range(200)}
    for i in range(30):
        queries_log.append({'sql': 'select %d' % i, 'marker': Query()})
    for i in range(40):
        Registry.cache['key-%d' % i] = Cached()
    if bench:
        keep = []
        for i in range(bench):
            b = Bench()
            if i % 10 == 0:
                bench_index.setdefault(i % 1000, []).append(b)
            else:
                keep.append(b)
            keep.append({'n': i, 's': 'v%d' % i, 't': (i, i + 1)})
            keep.append(['x%d' % i, i * 1.5, None])
        # most Bench objects are kept only through a list in a local of
        # the main thread's idle loop frame
        return keep
    return None


def idle(outdir, keep):
    path = os.path.join(outdir, 'counter')
    n = 0
    while True:
        n += 1
        with open(path, 'w') as f:
            f.write('%d\n' % n)
        time.sleep(0.1)
        if keep is None and n < 0:
            break


def main():
    outdir = sys.argv[1]
    bench = int(sys.argv[sys.argv.index('--bench') + 1]) if '--bench' in sys.argv else 0
    gc.disable()  # keep the unreachable cycle alive for the test
    keep = build(bench)
    threading.Thread(target=worker, daemon=True).start()
    worker_ready.wait()
    with open(os.path.join(outdir, 'ready'), 'w') as f:
        f.write('%d\n' % os.getpid())
    idle(outdir, keep)


if __name__ == '__main__':
    main()
