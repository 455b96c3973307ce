"""A Python target with known leak shapes for `pyheap referrers` tests.

Usage: python3.11 referrers_target.py OUTDIR [N]

Builds the shapes below, writes OUTDIR/ready (its PID) last, then sleeps
until killed. N (default 500) is the number of Connection objects.

- `connections`: a module-level list that keeps every Connection it ever
  saw; each Connection holds a dict of str in its attribute `info`
  (Connection <- list [*] <- module __main__).
- `queries_log`: a deque of dicts of str (str <- dict ['sql'] <- deque).
- `handler`: a closure capturing a list of Captured objects.
- `Registry.cache`: a class attribute dict used as a cache of Cached.
- a thread-local (threading.local) holding a big dict of Local objects, set
  by a thread that stays alive.
- Orphan pairs: reference cycles held by nothing (unreachable from roots).
- `Session` defined in two modules (shard_a, shard_b): an ambiguous short
  name.
- A class whose name holds a quote and a backslash (the walker takes only
  printable type names), held under a dict key that also holds a newline
  (for --dot escaping).
"""
import collections
import gc
import os
import sys
import threading
import time
import types


class Connection:
    def __init__(self, i):
        self.info = {"sql": "SELECT %d FROM t" % i, "host": "db%d" % (i % 7)}


class Captured:
    pass


class Cached:
    pass


class Registry:
    cache = {}


class Local:
    pass


class Orphan:
    pass


connections = []
queries_log = collections.deque()
local_state = threading.local()


def make_handler(n):
    seen = [Captured() for _ in range(n)]

    def handler():
        return len(seen)
    return handler


def shard(name, n):
    mod = types.ModuleType(name)
    exec("class Session:\n    pass\n", mod.__dict__)
    mod.sessions = [mod.Session() for _ in range(n)]
    sys.modules[name] = mod
    return mod


Weird = type('We"ird\\name', (), {})
weird_holder = {'k"e\\y\n': Weird()}


def main():
    gc.disable()   # keep the orphan cycles alive
    outdir = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    for i in range(n):
        connections.append(Connection(i))
    for i in range(200):
        queries_log.append({"sql": "UPDATE t SET x = %d" % i})
    global handler
    handler = make_handler(150)
    for i in range(120):
        Registry.cache["key%d" % i] = Cached()
    shard("shard_a", 3)
    shard("shard_b", 4)
    for _ in range(50):
        a, b = Orphan(), Orphan()
        a.peer, b.peer = b, a
    del a, b

    started = threading.Event()

    def worker():
        local_state.big = {"item%d" % i: Local() for i in range(300)}
        started.set()
        while True:
            time.sleep(1)

    threading.Thread(target=worker, daemon=True).start()
    started.wait()

    tmp = os.path.join(outdir, "ready.tmp")
    with open(tmp, "w") as f:
        f.write("%d\n" % os.getpid())
    os.rename(tmp, os.path.join(outdir, "ready"))
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
