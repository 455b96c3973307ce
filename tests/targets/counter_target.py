"""A long-running Python target for the daemon tests.

Usage: python3.11 counter_target.py OUTDIR [EXTRA]

Builds a small known heap, writes OUTDIR/ready (its PID), then loops
forever: increments a counter, writes it to OUTDIR/counter about every
millisecond, and churns a few objects so scans race with a mutating heap.
The tests read the counter to prove the process keeps running while it is
being scanned. EXTRA (default 0) adds that many small objects (tuples of an
int and a str) so that a scan takes long enough to be observed.
"""
import os
import sys
import time


class DaemonProbe:
    def __init__(self, i):
        self.i = i
        self.name = "probe-%d" % i


def main():
    outdir = sys.argv[1]
    keep = [DaemonProbe(i) for i in range(3000)]
    table = {"k%d" % i: [i, str(i), float(i)] for i in range(2000)}
    extra = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    bulk = [(i, "b%d" % i) for i in range(extra)]
    fd = os.open(os.path.join(outdir, "counter"), os.O_WRONLY | os.O_CREAT, 0o644)
    tmp = os.path.join(outdir, "ready.tmp")
    with open(tmp, "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(tmp, os.path.join(outdir, "ready"))
    counter = 0
    churn = []
    while True:
        counter += 1
        # Same-or-longer text at offset 0: a reader never sees a shorter,
        # stale tail.
        os.pwrite(fd, b"%d\n" % counter, 0)
        churn.append({"n": counter, "s": "x" * (counter % 64)})
        if len(churn) > 500:
            del churn[:250]
        time.sleep(0.001)
    # unreachable; keeps the objects alive for the scan
    print(keep, table, bulk)


if __name__ == "__main__":
    main()
