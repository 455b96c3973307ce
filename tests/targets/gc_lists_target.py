"""Target of tests/test_walk.c (gc_lists_both_ends).

Usage: python3 gc_lists_target.py N [sub]

With the collector off, builds N Kept objects held by a module-level list
and, in between, N Orphan objects in pairs that refer to each other and to
nothing else: unreachable cycles, on the GC list among the Kept ones, which
only a walk of the GC lists can find. With "sub", a subinterpreter (made
first: it is the newest, at the head of the runtime's list) builds the same
in its own heap, and the main interpreter a quarter as many. Then prints "ready" and waits for a signal (nothing
allocates: the GC lists stay as they are).
"""
import gc
import signal
import sys

BUILD = '''
import gc
gc.disable()


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


KEPT = build(N_OBJECTS)
'''


def main():
    gc.disable()
    n = int(sys.argv[1])
    global SUB
    SUB = None
    if len(sys.argv) > 2 and sys.argv[2] == "sub":
        import _xxsubinterpreters as subinterpreters
        SUB = subinterpreters.create()
        subinterpreters.run_string(SUB, BUILD.replace("N_OBJECTS", str(n)))
    # with a subinterpreter, a quarter as many here: the main interpreter's
    # lists (walked from both ends) are then the smaller part of the heap
    exec(BUILD.replace("N_OBJECTS", str(n // 4 if SUB else n)), globals())
    print("ready", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
