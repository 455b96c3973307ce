"""Targets for the issue 5 tests (growth, diff, stats, snapshot files).

Usage: python3.11 growth_target.py OUTDIR MODE

Writes OUTDIR/ready (its PID) once set up, then per MODE:
  leak    every 50 ms appends 40 LeakyRecord instances to a module-level
          list (steady growth) while a ChurnItem batch of random size is
          built and dropped (churn: allocated and freed);
  native  every 50 ms mallocs 256 KiB through ctypes, touches it and never
          frees it (no Python object keeps it);
  idle    builds 50 000 small objects, writes sys._debugmallocstats() to
          OUTDIR/malloc.txt, then writes ready and sleeps (no allocation);
  append  idles until OUTDIR/go exists, then appends exactly K (the file's
          content) AppendedRecord instances to `held`, writes OUTDIR/done,
          and idles;
  types   defines 8 000 classes with long names, one instance each, then
          idles (a `top -n 0` reply of ~1 MB: more than a socket buffer);
  bulk    holds 1 000 000 (int, str) tuples, then idles (a snapshot
          build long enough to act during it).
"""
import ctypes
import os
import random
import sys
import time


class LeakyRecord:
    __slots__ = ("n",)

    def __init__(self, n):
        self.n = n


class ChurnItem:
    __slots__ = ("n",)

    def __init__(self, n):
        self.n = n


class AppendedRecord:
    pass


leaked = []
held = []
natives = []


def ready(outdir):
    tmp = os.path.join(outdir, "ready.tmp")
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.rename(tmp, os.path.join(outdir, "ready"))


def main():
    outdir, mode = sys.argv[1], sys.argv[2]
    rng = random.Random(5)
    churn = [ChurnItem(i) for i in range(500)]
    if mode == "idle":
        keep = [ChurnItem(i) for i in range(50000)]
        fd = os.open(os.path.join(outdir, "malloc.txt"), os.O_WRONLY | os.O_CREAT, 0o644)
        saved = os.dup(2)
        os.dup2(fd, 2)
        sys._debugmallocstats()
        os.dup2(saved, 2)
        os.close(fd)
        ready(outdir)
        while True:
            time.sleep(1)
        del keep
    if mode == "types":
        for i in range(8000):
            cls = type("ManyTypes_%05d_named_at_length_to_make_the_reply_long" % i, (), {})
            held.append(cls())
    if mode == "bulk":
        held.extend((i, "b%d" % i) for i in range(1000000))
    ready(outdir)
    if mode in ("types", "bulk"):
        while True:
            time.sleep(1)
    if mode == "leak":
        while True:
            for _ in range(40):
                leaked.append(LeakyRecord(None))
            churn = [ChurnItem(None) for _ in range(rng.randint(100, 900))]
            time.sleep(0.05)
    elif mode == "native":
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        libc.malloc.argtypes = [ctypes.c_size_t]
        libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
        while True:
            p = libc.malloc(256 * 1024)
            libc.memset(p, 1, 256 * 1024)
            time.sleep(0.05)
    elif mode == "append":
        go = os.path.join(outdir, "go")
        while not os.path.exists(go):
            time.sleep(0.01)
        with open(go) as f:
            k = int(f.read().strip())
        for _ in range(k):
            held.append(AppendedRecord())
        with open(os.path.join(outdir, "done.tmp"), "w") as f:
            f.write("1")
        os.rename(os.path.join(outdir, "done.tmp"), os.path.join(outdir, "done"))
        while True:
            time.sleep(0.05)
    del churn


if __name__ == "__main__":
    main()
