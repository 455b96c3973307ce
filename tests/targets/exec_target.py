"""A target that calls exec when told to (tests/test_lifecycle.c).

Usage: python3.11 exec_target.py OUTDIR MODE

Writes OUTDIR/ready (its PID), then waits for OUTDIR/go and calls exec:
MODE "sleep" execs /bin/sleep (another program), MODE "self" execs the same
interpreter again on a tiny script (same program, new address space).
"""
import os
import sys
import time

outdir, mode = sys.argv[1], sys.argv[2]
keep = [object() for _ in range(1000)]
tmp = os.path.join(outdir, "ready.tmp")
with open(tmp, "w") as f:
    f.write(str(os.getpid()))
os.rename(tmp, os.path.join(outdir, "ready"))
while not os.path.exists(os.path.join(outdir, "go")):
    time.sleep(0.005)
if mode == "sleep":
    os.execv("/bin/sleep", ["sleep", "600"])
else:
    os.execv(sys.executable, [sys.executable, "-c",
                              "import os, time\n"
                              "open(os.path.join(%r, 'execd'), 'w').close()\n"
                              "time.sleep(600)\n" % outdir])
