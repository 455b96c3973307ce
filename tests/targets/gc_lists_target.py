"""Target of tests/test_walk.c (gc_lists_both_ends).

Usage: python3 gc_lists_target.py N

With the collector off, builds N Kept objects held by a module-level list
and, in between, N Orphan objects in pairs that refer to each other and to
nothing else: unreachable cycles, on the GC list among the Kept ones, which
only a walk of the GC lists can find. Then prints "ready" and waits for a
signal (nothing allocates: the GC lists stay as they are).
"""
import gc
import signal
import sys


class Kept:
    pass


class Orphan:
    __slots__ = ("other",)


def build(n):
    kept = []
    for i in range(n):
        kept.append(Kept())
        if i % 2:
            a = Orphan()
            b = Orphan()
            a.other = b
            b.other = a
    return kept


def main():
    gc.disable()
    global KEPT
    KEPT = build(int(sys.argv[1]))
    print("ready", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
