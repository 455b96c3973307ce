#!/usr/bin/env python3
"""`make bench`: pyheap against in-process censuses and the bulk-copy floor.

Usage: python3 tools/bench.py BUILD_DIR

For each heap size N (instances of tests/targets/bench_heap.py: 4 objects
each) it starts one real target (/usr/bin/python3.11, or $PYTHON) and one
pyheapd attached to it, and measures side by side, RUNS times each:

  census     `pyheap top --by-type` wall time (pyheapd answers it at the
             end of the walk), until the snapshot is built after the answer
             ("built"), and pyheapd's CPU time for both (utime+stime from
             /proc/PID/stat)
  lib        the same census through the library (tools/bench-helper census):
             scan time, snapshot model bytes per object
  floor      copying the target's rw anonymous mappings once in 1 MiB
             process_vm_readv reads (tools/bench-helper floor)
  sweep      not pyheap's census: what a sweep of pymalloc's pools costs at
             least on one thread (find the pools, copy them, classify every
             allocated block by type; tools/bench-helper sweep), and the
             objects it classified, against the census's (docs/performance.md,
             "The pool sweep")
  closure    in the target: gc.get_objects + gc.get_referents closure with
             sys.getsizeof
  typestats  in the target: objgraph.typestats()
  rss        pyheapd's peak RSS (VmHWM) against the target's RSS
  throughput the target's counter loop while pyheap scans it back to back,
             against the same loop undisturbed just before and just after
             (the mean of the two): scans by pyheapd as started (default
             --scan-nice 19), and by a second one at --scan-nice 0; the
             ratio of each run, then their median (the machine's own speed
             drifts between runs)
  referrers  `pyheap referrers bytes` (bytes hold 10% of the objects), with
             a fresh scan each time, and ("reuse") with --max-age answering
             from the snapshot of the census just taken: the analysis alone

Then, apart from the sizes, a heap whose biggest object is a cache (the
most common leak; docs/performance.md "A cache dict"): a dict of N distinct
str keys (tests/targets/cache_dict.py), with its own pyheapd: the census
through pyheapd and through the library (2 threads), their peak RSS against
the target's, pyheapd's after a `referrers float` (half the heap), and the
dict's key texts left out of the labels (key_labels_elided).

Last a heap whose objects lie in no order, as a long-running service's
does after much allocation and release (tests/targets/churned_heap.py N:
N nodes with a name, a dict and 3 random peers, shuffled, half replaced,
half indexed by name; docs/performance.md "A churned heap"): the library's
census (2 threads) against the floor on the same heap, and what it read.

Medians are printed with ratios; everything goes to BUILD_DIR/bench.json.

Environment: BENCH_QUICK=1 (small heaps, short loops), BENCH_SIZES
(comma-separated N, e.g. 1000000,4000000), BENCH_RUNS (default 3),
BENCH_COUNT_SECS (counter loop length), BENCH_SKIP (comma-separated parts to
leave out: inprocess, throughput, referrers; for the one-off 50M-object run),
BENCH_CACHE_DICT (its N keys: default 1000000, 100000 with BENCH_QUICK; 0
leaves it out), BENCH_CHURNED (its N nodes: default 500000, 50000 with
BENCH_QUICK; 0 leaves it out), PYTHON.
"""
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET = os.path.join(ROOT, "tests", "targets", "bench_heap.py")
CACHE_DICT = os.path.join(ROOT, "tests", "targets", "cache_dict.py")
CHURNED = os.path.join(ROOT, "tests", "targets", "churned_heap.py")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# pyheapd's line for a scan complete, snapshot built ("... pid N for uid U:
# X objects, ..., scan Y ms, ..."); not the early answer's ("... walk Y ms").
SCAN_LINE = re.compile(r": (\d+) objects, .*\bscan ([0-9.]+) ms")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def proc_cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    # fields[0] is field 3 (state): utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status_kib(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


class Target:
    def __init__(self, python, n):
        self.p, self.info = start_stdin_target(python, TARGET, n)
        self.pid = self.info["ready"]
        self.lock = threading.Lock()

    def cmd(self, text):
        with self.lock:
            self.p.stdin.write(text + "\n")
            self.p.stdin.flush()
            line = self.p.stdout.readline()
        if not line:
            raise RuntimeError("bench target exited during %r" % text)
        return json.loads(line)

    def close(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            self.p.wait(timeout=30)
        except Exception:
            self.p.kill()
            self.p.wait()


class Daemon:
    def __init__(self, build, pid, tmp, extra=(), name="pyheapd"):
        self.build = build
        self.sock = os.path.join(tmp, name + ".sock")
        self.logpath = os.path.join(tmp, name + ".log")
        self.logf = open(self.logpath, "w")
        self.p = subprocess.Popen([os.path.join(build, "pyheapd"), "attach", str(pid),
                                   "--socket", self.sock] + list(extra), stderr=self.logf)
        for _ in range(300):
            if self.p.poll() is not None:
                raise RuntimeError("pyheapd exited; see %s" % self.logpath)
            if self.cli("ps").returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("pyheapd did not come up")

    def cli(self, *args):
        return subprocess.run([os.path.join(self.build, "pyheap"), "--socket", self.sock]
                              + list(args), capture_output=True, text=True)

    def close(self):
        self.p.terminate()
        try:
            self.p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
        self.logf.close()

    def top_timed(self, n):
        """`pyheap top --by-type -n N`: (seconds to the answer, seconds until
        pyheapd logs its snapshot built, the client's result)."""
        k = self.scans_logged()
        w0 = time.perf_counter()
        r = self.cli("top", "--by-type", "-n", str(n))
        w1 = time.perf_counter()
        if r.returncode != 0:
            raise RuntimeError("pyheap top failed: %s" % r.stderr.strip())
        self.wait_scans(k + 1)
        return w1 - w0, time.perf_counter() - w0, r

    def scans_logged(self):
        """How many scans pyheapd has logged as complete (snapshot built)."""
        with open(self.logpath) as f:
            return sum(1 for ln in f if SCAN_LINE.search(ln))

    def wait_scans(self, k, timeout=600):
        """Wait until K scans are logged complete: a fresh top is answered
        at the end of the walk and its snapshot built after the answer."""
        end = time.time() + timeout
        while self.scans_logged() < k:
            if time.time() > end:
                raise RuntimeError("pyheapd did not finish its scan; see %s" % self.logpath)
            time.sleep(0.005)

    def last_scan(self):
        """(objects, scan_ms) from pyheapd's last scan log line
        ("... pid N for uid U: X objects, ..., scan Y ms, ...")."""
        found = (None, None)
        with open(self.logpath) as f:
            for ln in f:
                mt = SCAN_LINE.search(ln)
                if mt:
                    found = (int(mt.group(1)), float(mt.group(2)))
        return found


def helper(build, mode, pid, *args):
    """bench-helper MODE PID [ARGS...]: its JSON line."""
    r = subprocess.run([os.path.join(build, "bench-helper"), mode, str(pid)] +
                       [str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("bench-helper %s: %s" % (mode, r.stderr.strip()))
    return json.loads(r.stdout)


def start_stdin_target(python, script, n):
    """Start SCRIPT N, which prints one JSON line {"ready": PID, "VmRSS":
    KiB, ...} once its heap is built: (process, that line)."""
    p = subprocess.Popen([python, script, str(n)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        if not line:
            raise RuntimeError("%s did not start (N=%d)" % (os.path.basename(script), n))
        info = json.loads(line)
    except BaseException:
        stop_stdin_target(p)
        raise
    return p, info


def stop_stdin_target(p):
    try:
        p.stdin.close()
        p.wait(timeout=30)
    except Exception:
        p.kill()
        p.wait()


def bench_cache_dict(build, python, n, runs, tmp):
    """The cache-dict heap: census and peaks (see the module's doc)."""
    log("== cache dict of %d keys: starting the target" % n)
    res = {"n": n}
    p, info = start_stdin_target(python, CACHE_DICT, n)
    pid = info["ready"]
    res["target_rss_kib"] = info["VmRSS"]
    d = None
    try:
        d = Daemon(build, pid, tmp, ["--scan-nice", "0"], "pyheapd-cache-dict")
        walls, libs = [], []
        for i in range(runs):
            walls.append(d.top_timed(5)[0])
            libs.append(helper(build, "census", pid, 0, 2))
            log("   run %d: census %.3f s, lib %.3f s (peak %.0f MiB), %d objects, "
                "%d key texts left out" % (i + 1, walls[-1], libs[-1]["census_ms"] / 1e3,
                                           libs[-1]["hwm_kib"] / 1024, libs[-1]["objects"],
                                           libs[-1].get("key_labels_elided", 0)))
        res["census_s"] = walls
        res["lib_census_s"] = [x["census_ms"] / 1e3 for x in libs]
        res["lib_hwm_kib"] = [x["hwm_kib"] for x in libs]
        res["objects"] = libs[-1]["objects"]
        res["key_labels_elided"] = libs[-1].get("key_labels_elided")
        res["daemon_hwm_top_kib"] = proc_status_kib(d.p.pid, "VmHWM")
        w0 = time.perf_counter()
        r = d.cli("referrers", "float")
        res["referrers_s"] = time.perf_counter() - w0 if r.returncode == 0 else None
        res["daemon_hwm_referrers_kib"] = proc_status_kib(d.p.pid, "VmHWM")
    finally:
        if d:
            d.close()
        stop_stdin_target(p)
    rss = res["target_rss_kib"]
    res["summary"] = {
        "census_s": median(res["census_s"]),
        "lib_census_s": median(res["lib_census_s"]),
        "lib_hwm_vs_target_rss": median(res["lib_hwm_kib"]) / rss,
        "daemon_hwm_top_vs_target_rss": res["daemon_hwm_top_kib"] / rss,
        "daemon_hwm_referrers_vs_target_rss": res["daemon_hwm_referrers_kib"] / rss,
        "referrers_s": res["referrers_s"],
    }
    return res


def bench_churned(build, python, n, runs):
    """The churned heap: the library's census against the floor."""
    log("== churned heap of %d nodes: starting the target" % n)
    res = {"n": n}
    p, info = start_stdin_target(python, CHURNED, n)
    pid = info["ready"]
    res["target_rss_kib"] = info["VmRSS"]
    try:
        cens, floors = [], []
        for i in range(runs):
            cens.append(helper(build, "census", pid, 0, 2))
            floors.append(helper(build, "floor", pid))
            log("   run %d: census %.3f s (%d objects, %.1f GB read in %d reads, %d key "
                "labels read after the walk, %d GC list nodes not read again), floor %.3f s"
                % (i + 1, cens[-1]["census_ms"] / 1e3, cens[-1]["objects"],
                   cens[-1]["remote_bytes"] / 1e9, cens[-1]["remote_reads"],
                   cens[-1].get("key_labels_later", 0), cens[-1].get("gc_links_kept", 0),
                   floors[-1]["ms"] / 1e3))
        res["census_s"] = [c["census_ms"] / 1e3 for c in cens]
        res["remote_bytes"] = [c["remote_bytes"] for c in cens]
        res["floor_s"] = [f["ms"] / 1e3 for f in floors]
        res["floor_bytes"] = floors[-1]["bytes"]
        res["objects"] = cens[-1]["objects"]
        res["key_labels_later"] = cens[-1].get("key_labels_later")
        res["gc_links_kept"] = cens[-1].get("gc_links_kept")
    finally:
        stop_stdin_target(p)
    res["summary"] = {
        "census_s": median(res["census_s"]),
        "floor_s": median(res["floor_s"]),
        "census_vs_floor": ratio(median(res["census_s"]), median(res["floor_s"])),
        "read_vs_floor": ratio(median(res["remote_bytes"]), res["floor_bytes"]),
    }
    return res


def bench_size(build, python, n, runs, count_secs, tmp, skip=()):
    res = {"n": n, "skipped_parts": sorted(skip)}
    log("== N=%d: starting the target" % n)
    t = Target(python, n)
    d = None
    try:
        res["target_build_seconds"] = t.info["build_seconds"]
        res["target_rss_kib"] = t.cmd("rss")["VmRSS"]
        # Speed is compared at equal CPU priority: the in-process commands
        # and the floor run at nice 0, so this daemon's scans do too
        # (--scan-nice 0); the throughput part below also runs a daemon as
        # shipped (scans at nice 19).
        d = Daemon(build, t.pid, tmp, ["--scan-nice", "0"])
        log("   target pid %d, rss %.0f MiB" % (t.pid, res["target_rss_kib"] / 1024))

        # 1. census through pyheapd; 3. floor; lib census: interleaved.
        # The census is the answer's wall time (pyheapd answers top from
        # the walk, then builds the snapshot): "built" is until the build
        # ended, and the daemon's CPU time includes the build.
        walls, built, cpus, scans, floors, libs, sweeps = [], [], [], [], [], [], []
        objects = None
        for i in range(runs):
            c0 = proc_cpu_s(d.p.pid)
            answered, done, r = d.top_timed(10)
            c1 = proc_cpu_s(d.p.pid)
            walls.append(answered)
            built.append(done)
            cpus.append(c1 - c0)
            objects, scan_ms = d.last_scan()
            scans.append(scan_ms / 1e3 if scan_ms is not None else None)
            floors.append(helper(build, "floor", t.pid))
            sweeps.append(helper(build, "sweep", t.pid))
            libs.append(helper(build, "census", t.pid))
            log("   run %d: census %.3f s (snapshot built at %.3f s, daemon cpu %.2f s), "
                "floor %.3f s, sweep %.3f s (%d objects), lib %.3f s (of which the build %.3f s)"
                % (i + 1, walls[-1], built[-1], cpus[-1], floors[-1]["ms"] / 1e3,
                   sweeps[-1]["ms"] / 1e3, sweeps[-1]["objects"],
                   libs[-1]["ms"] / 1e3, libs[-1].get("build_ms", 0) / 1e3))
        res["census_top_output"] = r.stdout
        res["census_wall_s"] = walls
        res["census_built_s"] = built
        res["census_daemon_cpu_s"] = cpus
        res["census_scan_s"] = scans
        res["census_objects"] = objects
        res["floor_s"] = [f["ms"] / 1e3 for f in floors]
        res["floor_bytes"] = floors[-1]["bytes"]
        res["sweep_s"] = [x["ms"] / 1e3 for x in sweeps]
        res["sweep"] = sweeps[-1]
        res["lib_census_s"] = [x["ms"] / 1e3 for x in libs]
        res["lib"] = libs[-1]
        lib = libs[-1]
        model_kib = lib["rss_with_snapshot_kib"] - lib["rss_after_free_kib"]
        res["snapshot_model_bytes_per_object"] = model_kib * 1024 / max(lib["objects"], 1)
        res["daemon_hwm_kib"] = proc_status_kib(d.p.pid, "VmHWM")

        # 6. referrers: first reusing the snapshot the last census left in
        # the daemon (--max-age; the reply must say so), then fresh.
        if "referrers" not in skip:
            reuse, reuse_cpu = [], []
            for _ in range(runs):
                c0 = proc_cpu_s(d.p.pid)
                w0 = time.perf_counter()
                r = d.cli("referrers", "bytes", "--max-age", "3600")
                w1 = time.perf_counter()
                ok = r.returncode == 0 and "from a snapshot taken" in r.stdout
                reuse.append(w1 - w0 if ok else None)
                reuse_cpu.append(proc_cpu_s(d.p.pid) - c0 if ok else None)
            res["referrers_reuse_s"] = reuse
            res["referrers_reuse_daemon_cpu_s"] = reuse_cpu
            log("   referrers reusing the census: %s s" % fmt(median(reuse)))
        r = d.cli("referrers", "bytes") if "referrers" not in skip else None
        if r is None:
            res["referrers_s"] = None
            res["referrers_note"] = "n/a: skipped (BENCH_SKIP)"
        elif r.returncode == 0:
            ts = []
            for _ in range(runs):
                w0 = time.perf_counter()
                r = d.cli("referrers", "bytes")
                ts.append(time.perf_counter() - w0 if r.returncode == 0 else None)
            res["referrers_s"] = ts
        else:
            res["referrers_s"] = None
            res["referrers_note"] = "n/a: " + (r.stderr.strip().splitlines() or ["?"])[-1]
        res["daemon_hwm_kib"] = proc_status_kib(d.p.pid, "VmHWM")

        # 5. throughput: undisturbed and under continuous scans, alternating:
        # scans by a pyheapd as shipped (its scans at the default --scan-nice
        # 19), then by the one above at --scan-nice 0 (scans at the daemon's
        # own priority: what the default buys).
        calm, busy, nice0, scans_during, scans0 = [], [], [], [], []
        tratio, tratio0 = [], []
        d19 = (Daemon(build, t.pid, tmp, [], "pyheapd-default")
               if "throughput" not in skip else None)
        d0 = d

        def counted_while_scanning(d):
            stop = threading.Event()
            done = [0]

            def scanner():
                while not stop.is_set():
                    if d.cli("top", "--by-type", "-n", "1").returncode == 0:
                        done[0] += 1

            th = threading.Thread(target=scanner)
            th.start()
            time.sleep(0.05)
            rate = t.cmd("count %g" % count_secs)["per_second"]
            stop.set()
            th.join()
            return rate, done[0]

        try:
            for i in range(runs if "throughput" not in skip else 0):
                # undisturbed, scanned, undisturbed, scanned at nice 0,
                # undisturbed: each scanned count against the mean of the
                # undisturbed ones on either side
                before = t.cmd("count %g" % count_secs)["per_second"]
                rate, k = counted_while_scanning(d19)
                busy.append(rate)
                scans_during.append(k)
                mid = t.cmd("count %g" % count_secs)["per_second"]
                rate, k = counted_while_scanning(d0)
                nice0.append(rate)
                scans0.append(k)
                after = t.cmd("count %g" % count_secs)["per_second"]
                calm.append([before, mid, after])
                tratio.append(busy[-1] / ((before + mid) / 2))
                tratio0.append(nice0[-1] / ((mid + after) / 2))
                log("   run %d: counter %.3g/s undisturbed, %.3g/s while scanning (%d scans), "
                    "%.3g/s undisturbed, %.3g/s while scanning with --scan-nice 0 (%d scans), "
                    "%.3g/s undisturbed: ratios %.3f and %.3f"
                    % (i + 1, before, busy[-1], scans_during[-1], mid, nice0[-1], k, after,
                       tratio[-1], tratio0[-1]))
        finally:
            if d19:
                d19.close()
        res["count_undisturbed_per_s"] = calm
        res["count_scanning_per_s"] = busy
        res["count_scanning_nice0_per_s"] = nice0
        res["scans_during_count"] = scans_during
        res["scans_during_count_nice0"] = scans0
        res["throughput_ratios"] = tratio
        res["throughput_ratios_nice0"] = tratio0
        res["daemon_hwm_kib"] = proc_status_kib(d.p.pid, "VmHWM")

        # 2. in-process alternatives (last: the closure grows the target).
        clos, tst = [], []
        for i in range(runs if "inprocess" not in skip else 0):
            c = t.cmd("closure")
            s = t.cmd("typestats")
            clos.append(c)
            tst.append(s)
            log("   run %d: closure %.3f s (%d objects), typestats %.3f s (%d objects)"
                % (i + 1, c["seconds"], c["objects"], s["seconds"], s["objects"]))
        res["closure_s"] = [c["seconds"] for c in clos]
        res["closure_objects"] = clos[-1]["objects"] if clos else None
        res["typestats_s"] = [s["seconds"] for s in tst]
        res["typestats_objects"] = tst[-1]["objects"] if tst else None
        res["target_rss_end_kib"] = t.cmd("rss")["VmRSS"]
    finally:
        if d:
            d.close()
        t.close()
    return res


def ratio(a, b):
    return a / b if a is not None and b else None


def summarize(r):
    m = {k: median(r[k]) for k in ("census_wall_s", "census_built_s", "census_daemon_cpu_s",
                                   "floor_s", "sweep_s",
                                   "lib_census_s", "closure_s", "typestats_s")}
    m["referrers_s"] = median(r["referrers_s"]) if r.get("referrers_s") else None
    for k in ("referrers_reuse_s", "referrers_reuse_daemon_cpu_s"):
        m[k] = median(r[k]) if r.get(k) and None not in r[k] else None
    s = {
        "census_s": m["census_wall_s"],
        "census_built_s": m["census_built_s"],
        "census_built_vs_floor": ratio(m["census_built_s"], m["floor_s"]),
        "census_daemon_cpu_s": m["census_daemon_cpu_s"],
        "lib_census_s": m["lib_census_s"],
        "floor_s": m["floor_s"],
        "sweep_s": m["sweep_s"],
        "sweep_vs_floor": ratio(m["sweep_s"], m["floor_s"]),
        "sweep_objects": r["sweep"]["objects"],
        "closure_s": m["closure_s"],
        "typestats_s": m["typestats_s"],
        "census_vs_closure": ratio(m["census_wall_s"], m["closure_s"]),
        "census_vs_typestats": ratio(m["census_wall_s"], m["typestats_s"]),
        "census_vs_floor": ratio(m["census_wall_s"], m["floor_s"]),
        "daemon_hwm_vs_target_rss": ratio(r["daemon_hwm_kib"], r["target_rss_kib"]),
        "snapshot_bytes_per_object": r["snapshot_model_bytes_per_object"],
        "throughput_ratio": median(r.get("throughput_ratios", [])),
        "throughput_ratio_nice0": median(r.get("throughput_ratios_nice0", [])),
        "referrers_s": m["referrers_s"],
        "referrers_reuse_s": m["referrers_reuse_s"],
        "referrers_reuse_daemon_cpu_s": m["referrers_reuse_daemon_cpu_s"],
    }
    return s


TARGETS = [
    ("census_vs_closure", "<=", 0.1),
    ("census_vs_typestats", "<=", 1.0),
    ("census_vs_floor", "<=", 3.0),
    ("daemon_hwm_vs_target_rss", "<=", 1.0),
    ("snapshot_bytes_per_object", "<=", 48.0),
    ("throughput_ratio", ">=", 0.95),
    ("referrers_reuse_s", "<=", 1.0),
]


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return ("%.3f" % v if v < 100 else "%.0f" % v) + unit
    return str(v) + unit


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1])
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "mem_total_kib": mem, "python": sys.version.split()[0]}


def main():
    # SIGTERM/SIGINT unwind through the finally blocks: targets and daemons
    # are stopped, the temporary directory removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if len(sys.argv) != 2:
        print("usage: bench.py BUILD_DIR", file=sys.stderr)
        return 2
    build = sys.argv[1]
    python = os.environ.get("PYTHON", "/usr/bin/python3.11")
    quick = os.environ.get("BENCH_QUICK") == "1"
    sizes = os.environ.get("BENCH_SIZES")
    if sizes:
        sizes = [int(x) for x in sizes.split(",") if x]
    else:
        sizes = [100000, 400000] if quick else [1000000, 4000000, 8000000]
    runs = int(os.environ.get("BENCH_RUNS", "3"))
    count_secs = float(os.environ.get("BENCH_COUNT_SECS", "1" if quick else "3"))
    skip = set(x for x in os.environ.get("BENCH_SKIP", "").split(",") if x)
    bad = skip - {"inprocess", "throughput", "referrers"}
    if bad:
        print("bench: BENCH_SKIP takes inprocess, throughput, referrers", file=sys.stderr)
        return 2
    for exe in ("pyheapd", "pyheap", "bench-helper"):
        if not os.access(os.path.join(build, exe), os.X_OK):
            print("bench: %s/%s missing; run `make bench`" % (build, exe), file=sys.stderr)
            return 1
    r = subprocess.run([python, "-c", "import objgraph"], capture_output=True)
    if r.returncode != 0:
        print("bench: %s cannot import objgraph (install python3-objgraph: "
              "`make deps`)" % python, file=sys.stderr)
        return 1
    cache_n = int(os.environ.get("BENCH_CACHE_DICT", "100000" if quick else "1000000"))
    churned_n = int(os.environ.get("BENCH_CHURNED", "50000" if quick else "500000"))
    out = {"machine": machine(), "runs": runs, "count_secs": count_secs, "sizes": []}
    tmp = tempfile.mkdtemp(prefix="pyheap-bench.")
    try:
        for n in sizes:
            res = bench_size(build, python, n, runs, count_secs, tmp, skip)
            res["summary"] = summarize(res)
            out["sizes"].append(res)
        if cache_n > 0:
            out["cache_dict"] = bench_cache_dict(build, python, cache_n, runs, tmp)
        if churned_n > 0:
            out["churned"] = bench_churned(build, python, churned_n, runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    path = os.path.join(build, "bench.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)

    mc = out["machine"]
    print("pyheap bench: %d CPUs (%s), kernel %s, python %s; medians of %d runs"
          % (mc["nproc"], mc["cpu"], mc["kernel"], mc["python"], runs))
    hdr = ("N", "objects", "census", "built", "daemon cpu", "closure", "x", "typestats", "x",
           "floor", "x", "sweep", "x", "hwm/rss", "B/obj", "thruput", "nice0", "referrers", "reuse")
    rows = []
    for res in out["sizes"]:
        s = res["summary"]
        rows.append((
            str(res["n"]), fmt(res["census_objects"]), fmt(s["census_s"], "s"),
            fmt(s["census_built_s"], "s"), fmt(s["census_daemon_cpu_s"], "s"), fmt(s["closure_s"], "s"),
            fmt(s["census_vs_closure"]), fmt(s["typestats_s"], "s"),
            fmt(s["census_vs_typestats"]), fmt(s["floor_s"], "s"), fmt(s["census_vs_floor"]),
            fmt(s["sweep_s"], "s"), fmt(s["sweep_vs_floor"]),
            fmt(s["daemon_hwm_vs_target_rss"]), fmt(s["snapshot_bytes_per_object"]),
            fmt(s["throughput_ratio"]), fmt(s["throughput_ratio_nice0"]),
            fmt(s["referrers_s"], "s"), fmt(s["referrers_reuse_s"], "s")))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(hdr)]
    print("  ".join(h.rjust(w) for h, w in zip(hdr, widths)))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
    big = out["sizes"][-1]
    print("targets on N=%d:" % big["n"])
    for key, op, lim in TARGETS:
        v = big["summary"][key]
        ok = v is not None and (v <= lim if op == "<=" else v >= lim)
        note = ""
        if key == "referrers_reuse_s" and v is None:
            note = " (%s)" % big.get("referrers_note", "n/a: no answer from the kept snapshot")
        verdict = "n/a" if v is None else "met" if ok else "NOT met"
        print("  %-26s %s %-5g %-8s %s%s" % (key, op, lim, fmt(v), verdict, note))
    cd = out.get("cache_dict")
    if cd:
        s = cd["summary"]
        print("cache dict of %d keys (tests/targets/cache_dict.py): %s objects, target RSS "
              "%.0f MiB, %s key texts left out of the labels" % (
                  cd["n"], fmt(cd["objects"]), cd["target_rss_kib"] / 1024,
                  fmt(cd["key_labels_elided"])))
        print("  census %s (lib %s); peak RSS against the target's: lib %s, pyheapd %s after "
              "top, %s after referrers float (%s)" % (
                  fmt(s["census_s"], "s"), fmt(s["lib_census_s"], "s"),
                  fmt(s["lib_hwm_vs_target_rss"]), fmt(s["daemon_hwm_top_vs_target_rss"]),
                  fmt(s["daemon_hwm_referrers_vs_target_rss"]), fmt(s["referrers_s"], "s")))
    ch = out.get("churned")
    if ch:
        s = ch["summary"]
        print("churned heap of %d nodes (tests/targets/churned_heap.py): %s objects, target RSS "
              "%.0f MiB" % (ch["n"], fmt(ch["objects"]), ch["target_rss_kib"] / 1024))
        print("  census %s (lib, 2 threads), floor %s: x%s; read %s times the floor's bytes" % (
            fmt(s["census_s"], "s"), fmt(s["floor_s"], "s"), fmt(s["census_vs_floor"]),
            fmt(s["read_vs_floor"])))
    print("details: %s" % path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
