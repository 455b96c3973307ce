"""A target that churns its heap in two threads as fast as it can, next to
a stable population (tests/test_churn.c, tests/test_freeze.c).

Usage: python3.11 churn_target.py OUTDIR [N]

Keeps N (default 20000) instances of class Stable alive for its whole life
and never creates or frees one after start-up. Two threads allocate and drop
lists, dicts, tuples, strings and Churn objects in a tight loop; the main
thread writes a counter to OUTDIR/counter about every millisecond. Writes
OUTDIR/ready (its PID) when the population exists and the threads run.
"""
import os
import sys
import threading
import time


class Stable:
    __slots__ = ("i", "tag")

    def __init__(self, i):
        self.i = i
        self.tag = i * 7


class Churn:
    def __init__(self, i):
        self.i = i
        self.payload = [i, str(i), {"k": i}]


def churn(seed):
    keep = []
    i = seed
    while True:
        i += 1
        keep.append(Churn(i))
        keep.append({"a": [i] * (i % 17), "b": (i, str(i))})
        keep.append("x" * (i % 300))
        if len(keep) > 3000:
            # Drop a big slice at once: many frees between two scans' reads.
            del keep[: 1500 + (i % 1000)]


def main():
    outdir = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    stable = [Stable(i) for i in range(n)]
    for s in range(2):
        threading.Thread(target=churn, args=(s * 1000000,), daemon=True).start()
    fd = os.open(os.path.join(outdir, "counter"), os.O_WRONLY | os.O_CREAT, 0o644)
    tmp = os.path.join(outdir, "ready.tmp")
    with open(tmp, "w") as f:
        f.write(str(os.getpid()))
    os.rename(tmp, os.path.join(outdir, "ready"))
    count = 0
    while True:
        count += 1
        os.pwrite(fd, (str(count) + "\n").encode(), 0)
        time.sleep(0.001)
        if stable[0].i != 0:
            break


main()
