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
 *   bench-helper sweep PID
 *       What a census by a sweep of pymalloc's pools would cost at least
 *       (docs/performance.md, "The pool sweep"): find the pools (a batch of
 *       header reads at every 16 KiB of the anonymous mappings), copy them
 *       with 1 MiB reads, and classify every allocated block as an object
 *       of a validated type or not, counting objects and basic sizes per
 *       type. No referents, no labels, no objects outside the pools: a
 *       measurement of the sweep's own share, not a census.
 *   bench-helper census PID [CACHE_MIB [THREADS]]
 *       One full census through the library (pyheap_target_open +
 *       pyheap_snapshot_take + pyheap_histogram), timed, with the memory the
 *       snapshot model holds: RSS with the snapshot minus RSS after freeing
 *       it (malloc_trim'd), and this process's peak RSS. census_ms: when the
 *       walk handed out its census (what pyheapd answers `top` with; -1:
 *       none, e.g. a truncated walk); census_cpu_ms: this process's CPU
 *       time (all threads) until then, steadier than the wall time on a
 *       shared machine.
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

struct range {
    uint64_t lo, hi;
};

/* PID's private writable anonymous mappings (the heap, pymalloc arenas,
 * mmap'd blocks): 0 with *OUT (malloc'd) and *N, or 1. */
static int anon_maps(pid_t pid, struct range **out, size_t *nout)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bench-helper: %s: %s\n", path, strerror(errno));
        return 1;
    }
    struct range *maps = NULL;
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
    *out = maps;
    *nout = n;
    return 0;
}

static int floor_copy(pid_t pid)
{
    struct range *maps = NULL;
    size_t n = 0;
    if (anon_maps(pid, &maps, &n) != 0)
        return 1;
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

/* ---- the pool sweep's share (bench-helper sweep) ---- */

#define POOL_SIZE     ((uint64_t)16 << 10)  /* pymalloc's pools (3.10+, 64-bit) */
#define POOL_OVERHEAD 48                    /* struct pool_header, 16-aligned */
#define POOL_BLOCKS   ((POOL_SIZE - POOL_OVERHEAD) / 16)
#define HDR_BATCH     1024                  /* iovecs per header read */
#define TP_FLAGS_AT   168   /* PyTypeObject: tp_flags (3.8-3.15) */
#define TP_BASIC_AT   32    /* tp_basicsize, then tp_itemsize */
#define F_HAVE_GC     (1ULL << 14)
#define F_MANAGED     (1ULL << 4)     /* 3.11: Py_TPFLAGS_MANAGED_DICT */
#define F_TYPE_SUB    (1ULL << 31)

#define SWEEP_RECENT  256

struct sweep_type {
    uint64_t addr;          /* 0: empty slot */
    int verdict;            /* 1 type, 0 not */
    uint64_t flags, basic, item;
    uint64_t count, bytes;
};

struct sweep {
    pid_t pid;
    struct sweep_type *t;
    size_t cap, used;
    uint64_t *pools;        /* sorted */
    size_t npools;
    uint64_t remote;        /* small reads for type verdicts */
    struct sweep_type *recent[SWEEP_RECENT];  /* validated types, by address */
};

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    return x;
}

static bool in_pool(const struct sweep *sw, uint64_t a)
{
    uint64_t p = a & ~(POOL_SIZE - 1);
    size_t lo = 0, hi = sw->npools;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sw->pools[mid] < p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < sw->npools && sw->pools[lo] == p;
}

static struct sweep_type *sweep_slot(struct sweep *sw, uint64_t a)
{
    if ((sw->used + 1) * 2 > sw->cap) {
        size_t ncap = sw->cap ? sw->cap * 2 : 1024;
        struct sweep_type *nt = calloc(ncap, sizeof *nt);
        if (!nt)
            return NULL;
        for (size_t i = 0; i < sw->cap; i++) {
            if (!sw->t[i].addr)
                continue;
            size_t j = mix64(sw->t[i].addr) & (ncap - 1);
            while (nt[j].addr)
                j = (j + 1) & (ncap - 1);
            nt[j] = sw->t[i];
        }
        free(sw->t);
        sw->t = nt;
        sw->cap = ncap;
        memset(sw->recent, 0, sizeof sw->recent);   /* they pointed into the old table */
    }
    size_t j = mix64(a) & (sw->cap - 1);
    while (sw->t[j].addr && sw->t[j].addr != a)
        j = (j + 1) & (sw->cap - 1);
    return &sw->t[j];
}

static bool refcnt_plausible(uint64_t rc)
{
    return rc > 0 && rc < ((uint64_t)1 << 40);
}

/* Whether A is a type object: a plausible header whose metatype is `type`
 * (its own type) or a validated subclass of it. Cached, depth-bounded. */
static struct sweep_type *type_at(struct sweep *sw, uint64_t a, int depth)
{
    if (a < 0x1000 || a >= 0x800000000000ULL || (a & 7) || depth > 4)
        return NULL;
    struct sweep_type **c = &sw->recent[(a >> 4) & (SWEEP_RECENT - 1)];
    if (*c && (*c)->addr == a)
        return *c;
    if (in_pool(sw, a))   /* types are larger than pymalloc's blocks */
        return NULL;
    struct sweep_type *e = sweep_slot(sw, a);
    if (!e)
        return NULL;
    if (e->addr) {
        if (e->verdict && depth == 0)
            *c = e;
        return e->verdict ? e : NULL;
    }
    e->addr = a;
    sw->used++;
    e->verdict = 0;
    uint64_t w[TP_FLAGS_AT / 8 + 1];
    struct iovec l = { .iov_base = w, .iov_len = sizeof w };
    struct iovec r = { .iov_base = (void *)(uintptr_t)a, .iov_len = sizeof w };
    sw->remote++;
    if (process_vm_readv(sw->pid, &l, 1, &r, 1, 0) != (ssize_t)sizeof w ||
        !refcnt_plausible(w[0]))
        return NULL;
    uint64_t meta = w[1], flags = w[TP_FLAGS_AT / 8];
    bool ok = meta == a;
    if (!ok) {
        struct sweep_type *m = type_at(sw, meta, depth + 1);
        ok = m && (m->flags & F_TYPE_SUB);
    }
    e = sweep_slot(sw, a);   /* the table may have grown */
    if (!e || !ok)
        return NULL;
    e->verdict = 1;
    e->flags = flags;
    e->basic = w[TP_BASIC_AT / 8];
    e->item = w[TP_BASIC_AT / 8 + 1];
    return e;
}

static bool pool_header_ok(uint64_t p, const unsigned char *h)
{
    uint32_t count, arenaindex, szidx, next, maxnext;
    uint64_t freeblock;
    memcpy(&count, h, 4);
    memcpy(&freeblock, h + 8, 8);
    memcpy(&arenaindex, h + 32, 4);
    memcpy(&szidx, h + 36, 4);
    memcpy(&next, h + 40, 4);
    memcpy(&maxnext, h + 44, 4);
    (void)arenaindex;
    if (szidx >= 32)
        return false;
    uint32_t size = (szidx + 1) * 16;
    if (maxnext != POOL_SIZE - size || next < POOL_OVERHEAD || next > maxnext + size ||
        (next - POOL_OVERHEAD) % size != 0)
        return false;
    if (count == 0 || count > (next - POOL_OVERHEAD) / size)
        return false;
    return freeblock == 0 ||
           (freeblock >= p + POOL_OVERHEAD && freeblock < p + next &&
            (freeblock - p - POOL_OVERHEAD) % size == 0);
}

/* Every 16 KiB-aligned address of MAPS whose header reads as a pool in
 * use, by batches of 48-byte reads. */
static int find_pools(struct sweep *sw, const struct range *maps, size_t n, uint64_t *reads)
{
    static unsigned char hdr[HDR_BATCH][POOL_OVERHEAD];
    struct iovec l[HDR_BATCH], r[HDR_BATCH];
    uint64_t at[HDR_BATCH];
    size_t cap = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t a = (maps[i].lo + POOL_SIZE - 1) & ~(POOL_SIZE - 1);
        while (a + POOL_SIZE <= maps[i].hi) {
            size_t k = 0;
            for (; k < HDR_BATCH && a + POOL_SIZE <= maps[i].hi; k++, a += POOL_SIZE) {
                l[k] = (struct iovec){ .iov_base = hdr[k], .iov_len = POOL_OVERHEAD };
                r[k] = (struct iovec){ .iov_base = (void *)(uintptr_t)a, .iov_len = POOL_OVERHEAD };
                at[k] = a;
            }
            ssize_t got = process_vm_readv(sw->pid, l, k, r, k, 0);
            (*reads)++;
            for (size_t j = 0; got > 0 && j < k && (ssize_t)((j + 1) * POOL_OVERHEAD) <= got;
                 j++) {
                if (!pool_header_ok(at[j], hdr[j]))
                    continue;
                if (sw->npools == cap) {
                    cap = cap ? cap * 2 : 4096;
                    void *np = realloc(sw->pools, cap * sizeof *sw->pools);
                    if (!np)
                        return 1;
                    sw->pools = np;
                }
                sw->pools[sw->npools++] = at[j];
            }
        }
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Classify the blocks of the pool copied at BUF (remote address P). */
static void sweep_pool(struct sweep *sw, uint64_t p, const unsigned char *buf,
                       uint64_t *blocks, uint64_t *objects)
{
    uint32_t szidx, next;
    uint64_t freeblock;
    memcpy(&freeblock, buf + 8, 8);
    memcpy(&szidx, buf + 36, 4);
    memcpy(&next, buf + 40, 4);
    uint32_t size = (szidx + 1) * 16;
    size_t nb = (next - POOL_OVERHEAD) / size;
    uint64_t freed[POOL_BLOCKS / 64 + 1] = { 0 };
    /* the free list, through the copy (bounded by the pool's blocks) */
    for (size_t k = 0; freeblock && k < nb; k++) {
        if (freeblock < p + POOL_OVERHEAD || freeblock >= p + next ||
            (freeblock - p - POOL_OVERHEAD) % size != 0)
            break;
        size_t bi = (freeblock - p - POOL_OVERHEAD) / size;
        freed[bi / 64] |= 1ULL << (bi % 64);
        memcpy(&freeblock, buf + (freeblock - p), 8);
    }
    for (size_t bi = 0; bi < nb; bi++) {
        if (freed[bi / 64] >> (bi % 64) & 1)
            continue;
        (*blocks)++;
        const unsigned char *b = buf + POOL_OVERHEAD + bi * size;
        /* An object at the block (not GC), after its GC head, or after
         * the managed dict's two words and its GC head (3.11). */
        uint64_t w[6] = { 0 };
        memcpy(w, b, size >= 48 ? 48 : size);
        const unsigned char *o = NULL;
        struct sweep_type *t;
        if (refcnt_plausible(w[0]) && (t = type_at(sw, w[1], 0)) && !(t->flags & F_HAVE_GC))
            o = b;
        else if (size >= 32 && refcnt_plausible(w[2]) && (t = type_at(sw, w[3], 0)) &&
                 (t->flags & F_HAVE_GC) && !(t->flags & F_MANAGED))
            o = b + 16;
        else if (size >= 48 && refcnt_plausible(w[4]) && (t = type_at(sw, w[5], 0)) &&
                 (t->flags & F_HAVE_GC) && (t->flags & F_MANAGED))
            o = b + 32;
        if (!o)
            continue;
        uint64_t sz = t->basic;
        if (t->item && (size_t)(o - b) + 24 <= size) {   /* ob_size, inside the block */
            int64_t n;
            memcpy(&n, o + 16, 8);
            sz += t->item * (n < 0 ? 0 - (uint64_t)n : (uint64_t)n);
        }
        t->count++;
        t->bytes += sz;
        (*objects)++;
    }
}

static int sweep(pid_t pid)
{
    struct range *maps = NULL;
    size_t n = 0;
    if (anon_maps(pid, &maps, &n) != 0)
        return 1;
    struct sweep sw = { .pid = pid };
    uint64_t hreads = 0, reads = 0, bytes = 0, blocks = 0, objects = 0;
    unsigned char *buf = malloc(FLOOR_CHUNK);
    double t0 = now_ms(), c0 = cpu_ms();
    int rc = buf ? find_pools(&sw, maps, n, &hreads) : 1;
    double t1 = now_ms();
    if (rc == 0 && sw.npools > 1)
        qsort(sw.pools, sw.npools, sizeof *sw.pools, cmp_u64);
    /* runs of consecutive pools, copied 1 MiB at a time */
    for (size_t i = 0; rc == 0 && i < sw.npools;) {
        size_t j = i + 1;
        while (j < sw.npools && sw.pools[j] == sw.pools[j - 1] + POOL_SIZE &&
               (j - i + 1) * POOL_SIZE <= FLOOR_CHUNK)
            j++;
        size_t len = (j - i) * POOL_SIZE;
        struct iovec l = { .iov_base = buf, .iov_len = len };
        struct iovec r = { .iov_base = (void *)(uintptr_t)sw.pools[i], .iov_len = len };
        ssize_t got = process_vm_readv(pid, &l, 1, &r, 1, 0);
        reads++;
        if (got > 0)
            bytes += (uint64_t)got;
        for (size_t k = i; k < j && got >= (ssize_t)((k - i + 1) * POOL_SIZE); k++) {
            const unsigned char *pb = buf + (k - i) * POOL_SIZE;
            if (pool_header_ok(sw.pools[k], pb))   /* it may have changed */
                sweep_pool(&sw, sw.pools[k], pb, &blocks, &objects);
        }
        i = j;
    }
    double ms = now_ms() - t0, cms = cpu_ms() - c0;
    size_t types = 0;
    for (size_t i = 0; i < sw.cap; i++)
        types += sw.t && sw.t[i].addr && sw.t[i].verdict && sw.t[i].count;
    if (rc == 0)
        printf("{\"ms\": %.3f, \"cpu_ms\": %.3f, \"find_ms\": %.3f, \"pools\": %zu"
               ", \"header_reads\": %" PRIu64 ", \"reads\": %" PRIu64 ", \"bytes\": %" PRIu64
               ", \"blocks\": %" PRIu64 ", \"objects\": %" PRIu64 ", \"types\": %zu"
               ", \"type_reads\": %" PRIu64 "}\n",
               ms, cms, t1 - t0, sw.npools, hreads, reads, bytes, blocks, objects, types,
               sw.remote);
    free(buf);
    free(sw.t);
    free(sw.pools);
    free(maps);
    return rc;
}

/* The census callback: when the walk's answer came (ms since T0). */
struct census_probe {
    double t0, c0, ms, cpu_ms;
    uint64_t objects;
};

static void census_probe(void *arg, const pyheap_census *c)
{
    struct census_probe *p = arg;
    p->ms = now_ms() - p->t0;
    p->cpu_ms = cpu_ms() - p->c0;
    p->objects = pyheap_census_stats(c)->objects;
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
    struct census_probe probe = { .t0 = t0, .c0 = c0, .ms = -1, .cpu_ms = -1 };
    pyheap_scan_opts opts = { .max_cache_bytes = cache_mib << 20, .threads = threads,
                              .census = census_probe, .census_arg = &probe };
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
    /* what pyheapd keeps of it for diff */
    double p0 = now_ms();
    pyheap_packed *packed = NULL;
    if (pyheap_snapshot_pack(s, &packed, &err) < 0) {
        fprintf(stderr, "bench-helper: %s\n", err.msg);
        pyheap_snapshot_free(s);
        pyheap_target_free(t);
        return 1;
    }
    double pack_ms = now_ms() - p0;
    size_t packed_bytes = pyheap_packed_bytes(packed);
    pyheap_packed_free(packed);
    const pyheap_scan_stats *st = pyheap_snapshot_stats(s);
    uint64_t objects = st->objects, skipped = st->skipped;
    uint64_t reads = st->remote_reads, rbytes = st->remote_bytes;
    uint64_t tracked = st->gc_tracked, back = st->gc_tracked_back;
    uint64_t shared = st->shared_arrays, helped = st->shared_chunks;
    uint64_t elided = st->key_labels_elided, later = st->key_labels_later;
    uint64_t links = st->gc_links_kept;
    unsigned ran = st->threads;
    int truncated = st->truncated;
    double scan_ms = st->scan_ms, build_ms = st->build_ms;
    pyheap_snapshot_free(s);
    free(hist);
    malloc_trim(0);
    long rss2 = status_kib("VmRSS");
    long hwm = status_kib("VmHWM");
    printf("{\"ms\": %.3f, \"cpu_ms\": %.3f, \"census_ms\": %.3f, \"census_cpu_ms\": %.3f"
           ", \"census_objects\": %" PRIu64
           ", \"scan_ms\": %.3f, \"build_ms\": %.3f, \"objects\": %" PRIu64 ", \"skipped\": %" PRIu64
           ", \"truncated\": %d, \"remote_reads\": %" PRIu64 ", \"remote_bytes\": %" PRIu64
           ", \"threads\": %u, \"gc_tracked\": %" PRIu64 ", \"gc_tracked_back\": %" PRIu64
           ", \"types\": %zu, \"rss_before_kib\": %ld, \"rss_with_snapshot_kib\": %ld"
           ", \"rss_after_free_kib\": %ld, \"hwm_kib\": %ld, \"pack_ms\": %.3f"
           ", \"packed_bytes\": %zu, \"shared_arrays\": %" PRIu64 ", \"shared_chunks\": %" PRIu64
           ", \"key_labels_elided\": %" PRIu64 ", \"key_labels_later\": %" PRIu64
           ", \"gc_links_kept\": %" PRIu64 "}\n",
           ms, cms, probe.ms, probe.cpu_ms, probe.objects, scan_ms, build_ms, objects, skipped, truncated, reads, rbytes, ran,
           tracked, back, nh, rss0, rss1, rss2, hwm, pack_ms, packed_bytes, shared, helped, elided,
           later, links);
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
        fprintf(stderr, "usage: bench-helper floor PID | sweep PID | census PID [CACHE_MIB [THREADS]] | "
                "referrers PID TYPE [RUNS [THREADS]]\n");
        return 2;
    }
    pid_t pid = (pid_t)strtol(argv[2], NULL, 10);
    if (strcmp(argv[1], "floor") == 0)
        return floor_copy(pid);
    if (strcmp(argv[1], "sweep") == 0)
        return sweep(pid);
    if (strcmp(argv[1], "census") == 0)
        return census(pid, argc >= 4 ? strtoull(argv[3], NULL, 10) : 0,
                      argc == 5 ? (unsigned)strtoul(argv[4], NULL, 10) : 0);
    fprintf(stderr, "usage: bench-helper floor|sweep|census|referrers PID ...\n");
    return 2;
}
