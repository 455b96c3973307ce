"""counter_target.py, made non-dumpable first (prctl(PR_SET_DUMPABLE, 0)),
as set-id programs are: only root may ptrace it (tests/test_auth.c).

Usage: python3.11 nondumpable_target.py OUTDIR [ignored]
"""
import ctypes
import os
import runpy
import sys

PR_SET_DUMPABLE = 4
if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
    raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
sys.argv = [os.path.join(os.path.dirname(__file__), "counter_target.py"), sys.argv[1], "0"]
runpy.run_path(sys.argv[0], run_name="__main__")
