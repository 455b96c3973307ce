"""Huge lists and tuples, whose items the walker threads share out in
chunks (tests/test_walk.c huge_arrays).

    python big_arrays.py OUTDIR

A list of 300,000 distinct floats, a tuple of 200,000 distinct str, a
list of 140,000 references to three objects only (None, True and one
str) and a list of 131,071 ints (one item short of being shared out).
Writes OUTDIR/ids: per container its id() and length, then the id() of
each of its items, as native 64-bit words. Then two dicts whose values
the walker labels by their keys' text (tests/test_walk.c huge_dicts): one
of 200,000 distinct str keys, one of 200 keys with the same texts as
every 1000th of those but str objects of their own, then a dict of 5,000
int keys above 2**24 (labelled by their text too); per dict its id() and
length, then per entry the id() of its key and of its value. Last an
instance of a class and the value of its attribute
`kept_attribute_name`, and a suspended generator and the value of its
local `kept_local_name` (tests/test_walk.c key_label_budget: attribute
and variable names are labels the budget of key texts never leaves out,
nor are the keys of dicts under 4,096 entries). Then OUTDIR/ready, and
idles.
"""
import array
import os
import sys
import time


class Holder:
    pass


def pending(kept_local_name):
    yield
    return kept_local_name


def main():
    out = sys.argv[1]
    floats = [float(i) + 0.5 for i in range(300000)]
    texts = tuple('item-%d' % i for i in range(200000))
    few = (None, True, 'few-' + str(len(sys.argv)))
    repeated = [few[i % 3] for i in range(140000)]
    short = list(range(1000, 1000 + 131071))
    ids = array.array('Q')
    for c in (floats, texts, repeated, short):
        ids.append(id(c))
        ids.append(len(c))
        ids.extend(id(x) for x in c)
    keyed = {'k%07d' % i: float(i) + 0.25 for i in range(200000)}
    again = {''.join(['k', '%07d' % i]): float(-i) for i in range(0, 200000, 1000)}
    bigints = {10**12 + 7 * i: float(i) + 0.75 for i in range(5000)}
    for d in (keyed, again, bigints):
        ids.append(id(d))
        ids.append(len(d))
        for k, v in d.items():
            ids.append(id(k))
            ids.append(id(v))
    holder = Holder()
    holder.kept_attribute_name = ['held']
    ids.append(id(holder))
    ids.append(id(holder.kept_attribute_name))
    suspended = pending(['kept'])
    next(suspended)
    ids.append(id(suspended))
    ids.append(id(suspended.gi_frame.f_locals['kept_local_name']))
    with open(os.path.join(out, 'ids'), 'wb') as f:
        ids.tofile(f)
    with open(os.path.join(out, 'ready'), 'w') as f:
        f.write('%d\n' % os.getpid())
    while True:
        time.sleep(600)


if __name__ == '__main__':
    main()
