"""A heap whose biggest object is a cache: one dict of N distinct str keys
(29 characters each) to floats, 2N + ~20k objects (docs/performance.md,
"A cache dict").

Usage: python3.11 cache_dict.py N

Prints one JSON line {"ready": PID, "VmRSS": KiB, "VmHWM": KiB} once the
dict is built, then idles until stdin closes.
"""
import json
import os
import sys


def status():
    out = {}
    with open('/proc/self/status') as f:
        for line in f:
            key, value = line.split(':', 1)
            if key in ('VmRSS', 'VmHWM'):
                out[key] = int(value.split()[0])
    return out


def main():
    n = int(sys.argv[1])
    cache = {}
    for i in range(n):
        cache['user-session-%017d' % i] = float(i)
    print(json.dumps({'ready': os.getpid(), **status()}), flush=True)
    sys.stdin.read()
    return len(cache)


if __name__ == '__main__':
    main()
