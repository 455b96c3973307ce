"""A small "service" with a memory leak, for `make demo`.

It handles fake requests in a loop. Each request creates a Request object and
a few strings and dicts; most are dropped, but an audit log kept at module
level by a forgotten debugging aid holds on to every request's parameters,
and a per-user session cache never evicts. Memory grows steadily.
"""
import os
import random
import sys
import time

AUDIT_LOG = []          # the leak: never trimmed
_sessions = {}          # the second leak: never evicted


class Request:
    __slots__ = ("path", "user", "params", "started")

    def __init__(self, path, user, params):
        self.path = path
        self.user = user
        self.params = params
        self.started = time.time()


class Session:
    def __init__(self, user):
        self.user = user
        self.created = time.time()
        self.history = []


def handle(i):
    user = "user%d" % random.randrange(5000)
    req = Request("/api/items/%d" % (i % 997), user,
                  {"q": "term%d" % i, "page": i % 10, "sql": "SELECT * FROM t WHERE id=%d" % i})
    AUDIT_LOG.append(req.params)
    sess = _sessions.get(user)
    if sess is None:
        sess = _sessions[user] = Session(user)
    sess.history.append(req.path)
    return len(req.path)


def main():
    ready = sys.argv[1] if len(sys.argv) > 1 else None
    i = 0
    # Warm up to a visible size, then tell the demo driver we are up.
    while i < 60000:
        handle(i)
        i += 1
    if ready:
        with open(ready, "w") as f:
            f.write(str(os.getpid()))
    while True:
        for _ in range(200):
            handle(i)
            i += 1
        time.sleep(0.05)


if __name__ == "__main__":
    main()
