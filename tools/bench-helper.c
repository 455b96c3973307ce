/*
 * Helper for `make bench` (tools/bench.py); prints one JSON line.
 *
 *   bench-helper floor PID
 *       The floor: copy every private writable anonymous mapping of PID
 *       (the heap, pymalloc arenas, mmap'd blocks) once, with 1 MiB
 *       process_vm_readv reads into one buffer. {"bytes":..,"ms":..}
 *   bench-helper referrers PID TYPE [RUNS [THREADS]]
 *       One snapshot (2 walker threads), then the referrers report of TYPE
 *       computed RUNS times (default 3) from it with THREADS analysis
 *       threads (default 2): CPU ms and wall ms of each (the analysis
 *       alone).
 *   bench-helper census PID [CACHE_MIB [THREADS]]
 *       One full census through the library (pyheap_target_open +
 *       pyheap_snapshot_take + pyheap_histogram), timed, with the memory the
 *       snapshot model holds: RSS with the snapshot minus RSS after freeing
 *       it (malloc_trim'd), and this process's peak RSS.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>

#include <jansson.h>

#include "pyheap.h"
#include "pyheap_report.h"

#define FLOOR_CHUNK ((size_t)1 << 20)

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static long status_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

static int floor_copy(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bench-helper: %s: %s\n", path, strerror(errno));
        return 1;
    }
    struct { uint64_t lo, hi; } *maps = NULL;
    size_t n = 0, cap = 0;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        unsigned long long lo, hi, off, inode;
        char perms[8], dev[32];
        int pos = 0;
        if (sscanf(line, "%llx-%llx %7s %llx %31s %llu %n", &lo, &hi, perms, &off, dev,
                   &inode, &pos) < 6)
            continue;
        const char *name = line + pos;
        bool anon = inode == 0 && (name[0] == '\n' || name[0] == '\0' ||
                                   strncmp(name, "[heap]", 6) == 0);
        if (!anon || perms[0] != 'r' || perms[1] != 'w' || perms[3] != 'p')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            void *nm = realloc(maps, cap * sizeof *maps);
            if (!nm) {
                fclose(f);
                free(maps);
                return 1;
            }
            maps = nm;
        }
        maps[n].lo = lo;
        maps[n].hi = hi;
        n++;
    }
    fclose(f);
    char *buf = malloc(FLOOR_CHUNK);
    if (!buf) {
        free(maps);
        return 1;
    }
    memset(buf, 0, FLOOR_CHUNK);
    uint64_t bytes = 0, reads = 0;
    double t0 = now_ms();
    for (size_t i = 0; i < n; i++) {
        for (uint64_t a = maps[i].lo; a < maps[i].hi; a += FLOOR_CHUNK) {
            size_t len = maps[i].hi - a < FLOOR_CHUNK ? (size_t)(maps[i].hi - a) : FLOOR_CHUNK;
            struct iovec l = { .iov_base = buf, .iov_len = len };
            struct iovec r = { .iov_base = (void *)(uintptr_t)a, .iov_len = len };
            ssize_t k = process_vm_readv(pid, &l, 1, &r, 1, 0);
            reads++;
            if (k > 0)
                bytes += (uint64_t)k;
        }
    }
    double ms = now_ms() - t0;
    printf("{\"mappings\": %zu, \"reads\": %" PRIu64 ", \"bytes\": %" PRIu64
           ", \"ms\": %.3f}\n", n, reads, bytes, ms);
    free(buf);
    free(maps);
    return 0;
}

static int census(pid_t pid, uint64_t cache_mib, unsigned threads)
{
    pyheap_error err;
    pyheap_target *t = NULL;
    if (pyheap_target_open(pid, NULL, &t, &err) < 0) {
        fprintf(stderr, "bench-helper: %s\n", err.msg);
        return 1;
    }
    malloc_trim(0);
    long rss0 = status_kib("VmRSS");
    pyheap_snapshot *s = NULL;
    double c0 = cpu_ms();
    double t0 = now_ms();
    pyheap_scan_opts opts = { .max_cache_bytes = cache_mib << 20, .threads = threads };
    if (pyheap_snapshot_take(t, &opts, &s, &err) < 0) {
        fprintf(stderr, "bench-helper: %s\n", err.msg);
        pyheap_target_free(t);
        return 1;
    }
    pyheap_type_stat *hist = NULL;
    size_t nh = 0;
    if (pyheap_histogram(s, PYHEAP_SORT_BYTES, &hist, &nh, &err) < 0) {
        fprintf(stderr, "bench-helper: %s\n", err.msg);
        pyheap_snapshot_free(s);
        pyheap_target_free(t);
        return 1;
    }
    double ms = now_ms() - t0;
    double cms = cpu_ms() - c0;
    malloc_trim(0);
    long rss1 = status_kib("VmRSS");
    const pyheap_scan_stats *st = pyheap_snapshot_stats(s);
    uint64_t objects = st->objects, skipped = st->skipped;
    uint64_t reads = st->remote_reads, rbytes = st->remote_bytes;
    uint64_t tracked = st->gc_tracked, back = st->gc_tracked_back;
    unsigned ran = st->threads;
    int truncated = st->truncated;
    double scan_ms = st->scan_ms, build_ms = st->build_ms;
    pyheap_snapshot_free(s);
    free(hist);
    malloc_trim(0);
    long rss2 = status_kib("VmRSS");
    long hwm = status_kib("VmHWM");
    printf("{\"ms\": %.3f, \"cpu_ms\": %.3f, \"scan_ms\": %.3f, \"build_ms\": %.3f, \"objects\": %" PRIu64 ", \"skipped\": %" PRIu64
           ", \"truncated\": %d, \"remote_reads\": %" PRIu64 ", \"remote_bytes\": %" PRIu64
           ", \"threads\": %u, \"gc_tracked\": %" PRIu64 ", \"gc_tracked_back\": %" PRIu64
           ", \"types\": %zu, \"rss_before_kib\": %ld, \"rss_with_snapshot_kib\": %ld"
           ", \"rss_after_free_kib\": %ld, \"hwm_kib\": %ld}\n",
           ms, cms, scan_ms, build_ms, objects, skipped, truncated, reads, rbytes, ran,
           tracked, back, nh, rss0, rss1, rss2, hwm);
    pyheap_target_free(t);
    return 0;
}

/* One snapshot, then the referrers report of TYPE computed RUNS times from
 * it with THREADS threads (what `pyheap referrers --max-age` costs in
 * pyheapd): CPU ms and wall ms of each. */
static int referrers(pid_t pid, const char *type, int runs, unsigned threads)
{
    pyheap_error err;
    pyheap_target *t = NULL;
    pyheap_snapshot *s = NULL;
    pyheap_scan_opts opts = { .threads = 2 };
    if (pyheap_target_open(pid, NULL, &t, &err) < 0 ||
        pyheap_snapshot_take(t, &opts, &s, &err) < 0) {
        fprintf(stderr, "bench-helper: %s\n", err.msg);
        pyheap_target_free(t);
        return 1;
    }
    pyheap_referrers_opts ro = { .threads = threads };
    double *cpu = calloc(runs > 0 ? (size_t)runs : 1, sizeof *cpu);
    double *wall = calloc(runs > 0 ? (size_t)runs : 1, sizeof *wall);
    int done = 0;
    for (int i = 0; cpu && wall && i < runs; i++) {
        double c0 = cpu_ms(), w0 = now_ms();
        json_t *r = pyheap_report_referrers(pid, s, type, &ro, &err);
        double c1 = cpu_ms(), w1 = now_ms();
        if (!r) {
            fprintf(stderr, "bench-helper: %s\n", err.msg);
            break;
        }
        char *text = json_dumps(r, JSON_COMPACT);
        json_decref(r);
        free(text);
        cpu[i] = c1 - c0;
        wall[i] = w1 - w0;
        done++;
    }
    printf("{\"objects\": %zu, \"referrers_cpu_ms\": [", pyheap_snapshot_count(s));
    for (int i = 0; i < done; i++)
        printf("%s%.1f", i ? ", " : "", cpu[i]);
    printf("], \"threads\": %u, \"referrers_wall_ms\": [", threads);
    for (int i = 0; i < done; i++)
        printf("%s%.1f", i ? ", " : "", wall[i]);
    printf("]}\n");
    free(cpu);
    free(wall);
    pyheap_snapshot_free(s);
    pyheap_target_free(t);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "referrers") == 0)
        return referrers((pid_t)strtol(argv[2], NULL, 10), argv[3],
                         argc >= 5 ? atoi(argv[4]) : 3,
                         argc >= 6 ? (unsigned)strtoul(argv[5], NULL, 10) : 2);
    if (argc != 3 && !((argc == 4 || argc == 5) && strcmp(argv[1], "census") == 0)) {
        fprintf(stderr, "usage: bench-helper floor PID | census PID [CACHE_MIB [THREADS]] | "
                "referrers PID TYPE [RUNS [THREADS]]\n");
        return 2;
    }
    pid_t pid = (pid_t)strtol(argv[2], NULL, 10);
    if (strcmp(argv[1], "floor") == 0)
        return floor_copy(pid);
    if (strcmp(argv[1], "census") == 0)
        return census(pid, argc >= 4 ? strtoull(argv[3], NULL, 10) : 0,
                      argc == 5 ? (unsigned)strtoul(argv[4], NULL, 10) : 0);
    fprintf(stderr, "usage: bench-helper floor|census|referrers PID ...\n");
    return 2;
}
