"""Instances whose attributes the walker reads through the class's shared
keys (3.11: managed values before the object; 3.13+: inline values in it),
for the instance-attribute tests (tests/test_walk.c instance_attributes,
tests/test_walk_versions.c attrs_py3xx).

    python attrs.py OUTDIR

3,000 Holder instances, each with .a (a str), .b (a bytes) and .c (a
tuple); the class gains .d (a float) after 1,000 instances, which every
other later instance has (1,000). Each value is its own object, referred
to by nothing else. Writes OUTDIR/ready and idles.
"""
import os
import sys
import time


class Holder:
    def __init__(self, i):
        self.a = 'attr-a-%d' % i
        self.b = b'attr-b-%d' % i
        self.c = ('attr-c', i)


def main():
    hs = []
    for i in range(3000):
        h = Holder(i)
        if i >= 1000 and i % 2:
            h.d = i + 0.5
        hs.append(h)
    with open(os.path.join(sys.argv[1], 'ready'), 'w') as f:
        f.write('%d\n' % os.getpid())
    while True:
        time.sleep(600)


if __name__ == '__main__':
    main()
