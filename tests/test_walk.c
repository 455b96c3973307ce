/* Accuracy of a whole scan against real interpreters running
 * tests/targets/known_heap.py, which writes its own in-process ground truth
 * (gc.get_objects + gc.get_referents closure, sys.getsizeof). The target
 * keeps running during the scan; the figures go to stderr for the CI log. */
#include <check.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pyheap.h"
#include "snapshot.h"
#include "knownheap.h"
#include "testutil.h"

#define PY_DEBIAN "/usr/bin/python3.11"
#define PY_DEBUG "/usr/bin/python3.11d"
#define PY_PYENV "/root/.pyenv/versions/3.11.7/bin/python3.11"

static void check_accuracy(const char *python, unsigned sources,
                           pyheap_offsets_source want_source)
{
    struct kh k;
    kh_start(&k, NULL, python, NULL);
    kh_check_accuracy(&k, sources, want_source, NULL);
    kh_stop(&k);
}

START_TEST(accuracy_debian_table)
{
    ck_assert_msg(access(PY_DEBIAN, X_OK) == 0, "%s is required", PY_DEBIAN);
    check_accuracy(PY_DEBIAN, 1u << PYHEAP_OFFSETS_TABLE, PYHEAP_OFFSETS_TABLE);
}
END_TEST

START_TEST(accuracy_debug_dwarf)
{
    ck_assert_msg(access(PY_DEBUG, X_OK) == 0, "%s is required", PY_DEBUG);
    check_accuracy(PY_DEBUG, 1u << PYHEAP_OFFSETS_DWARF, PYHEAP_OFFSETS_DWARF);
}
END_TEST

START_TEST(accuracy_pyenv_shared)
{
    if (access(PY_PYENV, X_OK) != 0) {
        fprintf(stderr, "SKIP accuracy_pyenv_shared: %s not present\n", PY_PYENV);
        return;
    }
    check_accuracy(PY_PYENV, 1u << PYHEAP_OFFSETS_DWARF, PYHEAP_OFFSETS_DWARF);
}
END_TEST

/* Roots not named after a frame ("THREAD FN()..."). */
static size_t roots_not_frames(const pyheap_snapshot *s)
{
    size_t n = 0;
    for (size_t r = 0; r < pyheap_snapshot_nroots(s); r++)
        n += strstr(pyheap_snapshot_root_name(s, r), "()") == NULL;
    return n;
}

/* Several walker threads find the same objects, types, sizes and edges
 * as one (the target is idle between the two scans but for its counter). */
static void compare_threads(struct kh *k, const pyheap_snapshot *s1)
{
    pyheap_target *t = NULL;
    pyheap_error e;
    memset(&e, 0, sizeof e);
    ck_assert_msg(pyheap_target_open(k->pid, NULL, &t, &e) == 0, "open: %s", e.msg);
    pyheap_scan_opts so = { .threads = 4 };
    pyheap_snapshot *s4 = NULL;
    ck_assert_msg(pyheap_snapshot_take(t, &so, &s4, &e) == 0, "4 threads: %s", e.msg);
    const pyheap_scan_stats *st = pyheap_snapshot_stats(s4);
    ck_assert_uint_eq(st->threads, 4);
    ck_assert_uint_eq(pyheap_snapshot_stats(s1)->threads, 1);
    ck_assert_int_eq(st->truncated, 0);
    size_t n1 = pyheap_snapshot_count(s1), n4 = pyheap_snapshot_count(s4);
    size_t same = 0, same_edges = 0;
    for (size_t i = 0; i < n1; i++) {
        size_t j = pyheap_snapshot_find(s4, pyheap_snapshot_addr(s1, i));
        if (j == SIZE_MAX)
            continue;
        if (pyheap_snapshot_size(s1, i) == pyheap_snapshot_size(s4, j) &&
            strcmp(pyheap_snapshot_type_name(s1, pyheap_snapshot_type(s1, i)),
                   pyheap_snapshot_type_name(s4, pyheap_snapshot_type(s4, j))) == 0)
            same++;
        if (pyheap_snapshot_nedges(s1, i) == pyheap_snapshot_nedges(s4, j))
            same_edges++;
    }
    fprintf(stderr, "threads: 1 thread %zu objects, 4 threads %zu (built in %u parts); %zu "
            "same address, type and size, %zu same edge count\n", n1, n4, s4->build_parts,
            same, same_edges);
    /* the threads' streams are joined at checkpoints: the build shares out */
    ck_assert_uint_gt(s4->build_parts, 1);
    ck_assert_uint_eq(s1->build_parts, 1);
    /* the walk's seen set less what it did not record was the index */
    ck_assert(s1->build_index_given && s4->build_index_given);
    ck_assert_uint_ge(same * 1000, n1 * 999);
    ck_assert_uint_ge(same_edges * 1000, n1 * 999);
    ck_assert_uint_ge(n4 * 1000, n1 * 999);
    ck_assert_uint_le(n4 * 1000, n1 * 1001);
    /* The same roots but those of the main thread's frames, which differ
     * when a scan finds it in write_file() rather than sleeping. */
    ck_assert_uint_eq(roots_not_frames(s4), roots_not_frames(s1));
    ck_assert_uint_gt(roots_not_frames(s1), 10);
    ck_assert_uint_gt(pyheap_snapshot_nroots(s1), roots_not_frames(s1));   /* frames too */
    ck_assert_uint_gt(pyheap_snapshot_nroots(s4), roots_not_frames(s4));
    pyheap_snapshot_free(s4);
    /* More threads than allowed is refused. */
    so.threads = PYHEAP_MAX_SCAN_THREADS + 1;
    ck_assert_int_eq(pyheap_snapshot_take(t, &so, &s4, &e), -1);
    ck_assert_int_eq(e.code, PYHEAP_E_INVAL);
    pyheap_target_free(t);
}

START_TEST(threads_agree)
{
    ck_assert_msg(access(PY_DEBIAN, X_OK) == 0, "%s is required", PY_DEBIAN);
    struct kh k;
    kh_start(&k, NULL, PY_DEBIAN, NULL);
    kh_check_accuracy(&k, 0, PYHEAP_OFFSETS_DWARF, compare_threads);
    kh_stop(&k);
}
END_TEST

/* Objects of type NAME (qualified: module.name) in S. */
static size_t count_type(const pyheap_snapshot *s, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < pyheap_snapshot_count(s); i++)
        n += strcmp(pyheap_snapshot_type_name(s, pyheap_snapshot_type(s, i)), name) == 0;
    return n;
}

/* Start ARGV (it prints "ready" when its heap is built) and open it. */
static pyheap_target *spawn_open(char *const argv[], pid_t *pid)
{
    *pid = test_spawn_ready(argv, false, 60000, NULL);
    pyheap_target *t = NULL;
    pyheap_error e;
    memset(&e, 0, sizeof e);
    ck_assert_msg(pyheap_target_open(*pid, NULL, &t, &e) == 0, "open: %s", e.msg);
    return t;
}

/* With several threads the main interpreter's GC lists are walked from
 * both ends at once until the two walkers meet: every node once, none
 * missed. The target holds 100k Orphan objects in cycles nothing refers
 * to, spread over its GC list among 100k Kept ones (gc disabled, idle), so
 * only the list walk finds them; with SUB a subinterpreter (the newest:
 * first in the runtime's list, walked from its heads only) holds those and
 * the main interpreter a quarter as many. */
/* tests/targets/gc_lists_target.py N [sub], started and opened. */
static pyheap_target *gc_lists_open(const char *n, bool sub, pid_t *pid)
{
    ck_assert_msg(access(PY_DEBIAN, X_OK) == 0, "%s is required", PY_DEBIAN);
    char script[600];
    snprintf(script, sizeof script, "%s/tests/targets/gc_lists_target.py", test_srcdir());
    char *argv[] = { PY_DEBIAN, script, (char *)n, sub ? "sub" : NULL, NULL };
    return spawn_open(argv, pid);
}

static void gc_lists_case(bool sub)
{
    pid_t pid;
    pyheap_target *t = gc_lists_open("100000", sub, &pid);
    pyheap_error e;
    memset(&e, 0, sizeof e);
    static const unsigned threads[] = { 1, 2, 4, 2, 4, 2, 1 };
    const size_t want = sub ? 125000 : 100000;
    uint64_t tracked = 0, back_max_mt = 0;
    for (size_t r = 0; r < sizeof threads / sizeof threads[0]; r++) {
        pyheap_scan_opts so = { .threads = threads[r] };
        pyheap_snapshot *s = NULL;
        ck_assert_msg(pyheap_snapshot_take(t, &so, &s, &e) == 0, "scan: %s", e.msg);
        const pyheap_scan_stats *st = pyheap_snapshot_stats(s);
        size_t orphans = count_type(s, "__main__.Orphan"),
               kept = count_type(s, "__main__.Kept");
        fprintf(stderr, "gc lists%s: %u threads: %" PRIu64 " on the GC lists, %" PRIu64
                " from a tail; %zu Orphan, %zu Kept\n", sub ? " (2 interpreters)" : "",
                st->threads, st->gc_tracked, st->gc_tracked_back, orphans, kept);
        ck_assert_uint_eq(st->threads, threads[r]);
        ck_assert_uint_eq(orphans, want);
        ck_assert_uint_eq(kept, want);
        if (r == 0)
            tracked = st->gc_tracked;
        /* each node once: as many as one thread walking from the head */
        ck_assert_uint_eq(st->gc_tracked, tracked);
        ck_assert_uint_lt(st->gc_tracked_back, st->gc_tracked);
        if (sub) /* the main interpreter's lists only, never the 200k
                  * nodes of the subinterpreter's (4 times as many) */
            ck_assert_uint_le(st->gc_tracked_back, tracked - 200000);
        if (threads[r] == 1)
            ck_assert_uint_eq(st->gc_tracked_back, 0);   /* from the head only */
        else if (st->gc_tracked_back > back_max_mt)
            back_max_mt = st->gc_tracked_back;
        pyheap_snapshot_free(s);
    }
    ck_assert_uint_gt(tracked, want * 2);
    /* threads: the one from the tail takes a share whose size depends on
     * scheduling (none if it starts after the first thread walked it all):
     * some in at least one of the five scans */
    ck_assert_uint_gt(back_max_mt, 0);
    pyheap_target_free(t);
    test_reap(pid);
}

/* Instances that keep their attributes in the class's shared keys (split
 * values, 3.11; tests/targets/attrs.py, kh_check_attrs): each instance's
 * attributes are edges labelled .name to their values, the labels
 * computed once per class and its keys' layout. The class gains an
 * attribute after 1,000 instances, which only some instances have; each
 * attribute holds its own type (a swapped label shows), referred to by
 * nothing else. (The keys do not change during the scans: a changing
 * header is the churning tests'.) 3.13+'s inline values: the same check
 * in test_walk_versions.c. */
START_TEST(instance_attributes)
{
    struct kh k;
    kh_start_script(&k, NULL, PY_DEBIAN, "attrs.py", NULL);
    kh_check_attrs(&k);
    kh_stop(&k);
}
END_TEST

/* The object limit is exact on a still heap: a scan limited to the
 * number of objects there are is whole, one limited to fewer holds that
 * many and says it was truncated, with 1 to 3 threads. (The target sits
 * in signal.pause(): nothing changes between the scans.) */
START_TEST(object_limit_exact)
{
    pid_t pid;
    pyheap_target *t = gc_lists_open("20000", false, &pid);
    pyheap_error e;
    memset(&e, 0, sizeof e);
    pyheap_snapshot *s = NULL;
    ck_assert_msg(pyheap_snapshot_take(t, NULL, &s, &e) == 0, "scan: %s", e.msg);
    ck_assert_int_eq(pyheap_snapshot_stats(s)->truncated, 0);
    size_t n = pyheap_snapshot_count(s);
    pyheap_snapshot_free(s);
    ck_assert_uint_gt(n, 40000);
    for (unsigned threads = 1; threads <= 3; threads++) {
        const uint64_t limits[] = { n, n - 1, n / 2, 1000, 100 };
        for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
            pyheap_scan_opts so = { .threads = threads, .max_objects = limits[i] };
            ck_assert_msg(pyheap_snapshot_take(t, &so, &s, &e) == 0, "scan: %s", e.msg);
            const pyheap_scan_stats *st = pyheap_snapshot_stats(s);
            fprintf(stderr, "object limit %" PRIu64 " of %zu, %u threads: %zu objects%s\n",
                    limits[i], n, threads, pyheap_snapshot_count(s),
                    st->truncated ? ", truncated" : "");
            ck_assert_int_eq(st->truncated, limits[i] < n);
            ck_assert_uint_eq(pyheap_snapshot_count(s), limits[i]);
            pyheap_snapshot_free(s);
        }
    }
    pyheap_target_free(t);
    test_reap(pid);
}
END_TEST

/* The items of lists and tuples of 131,072 references or more are walked
 * in chunks by all walker threads (tests/targets/big_arrays.py): every
 * item is an edge to its own object, in order, labelled by its index, and
 * the snapshot is the same with 1 to 3 threads; a list one item shorter
 * is not shared out. Two dicts in the same target check the labels of
 * 200,000 distinct keys (the walk's table of label texts grows through
 * many sizes) and of keys whose texts the table has already. */
/* tests/targets/big_arrays.py's ids file: per container its id, length and
 * items (dicts: key and value per entry), then an instance and the value
 * of its attribute, a generator and the value of its local. */
enum { BIG_ARRAYS = 2 * 4 + 300000 + 200000 + 140000 + 131071,
       BIG_DICTS = 2 * 3 + 2 * 200000 + 2 * 200 + 2 * 5000,
       BIG_IDS = BIG_ARRAYS + BIG_DICTS + 4 };
static uint64_t big_ids[BIG_IDS + 16];

static pyheap_target *big_arrays_open(struct kh *k)
{
    kh_start_script(k, NULL, PY_DEBIAN, "big_arrays.py", NULL);
    char path[600];
    kh_path(k, "ids", path, sizeof path);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s", path);
    size_t nids = fread(big_ids, sizeof big_ids[0], sizeof big_ids / sizeof big_ids[0], f);
    fclose(f);
    ck_assert_uint_eq(nids, BIG_IDS);
    pyheap_target *t = NULL;
    pyheap_error e;
    memset(&e, 0, sizeof e);
    ck_assert_msg(pyheap_target_open(k->pid, NULL, &t, &e) == 0, "open: %s", e.msg);
    return t;
}

/* The label of edge J of object I of S. */
static const char *edge_label(const pyheap_snapshot *s, size_t i, size_t j)
{
    static char lb[64];
    pyheap_snapshot_edge_label(s, i, j, lb, sizeof lb);
    return lb;
}

/* Check dict C of big_ids (at *AT, moved past it) in S: each entry is an
 * edge to its value and one to its key labelled (key), in order. The value
 * edge's label goes to LABELS[j] (NULL: not kept). */
static void big_dict_check(const pyheap_snapshot *s, size_t *at, int c, unsigned threads,
                           char (*labels)[32])
{
    uint64_t addr = big_ids[*at], len = big_ids[*at + 1];
    const uint64_t *kv = big_ids + *at + 2;
    *at += 2 + 2 * len;
    size_t i = pyheap_snapshot_find(s, addr);
    ck_assert_msg(i != SIZE_MAX, "dict %d not found", c);
    ck_assert_uint_eq(pyheap_snapshot_nedges(s, i), 2 * len);
    for (size_t j = 0; j < len; j++) {
        uint64_t to_v = pyheap_snapshot_addr(s, pyheap_snapshot_edge_target(s, i, 2 * j));
        uint64_t to_k = pyheap_snapshot_addr(s, pyheap_snapshot_edge_target(s, i, 2 * j + 1));
        ck_assert_msg(to_v == kv[2 * j + 1] && to_k == kv[2 * j] &&
                          strcmp(edge_label(s, i, 2 * j + 1), "(key)") == 0,
                      "dict %d, %u threads: entry %zu's edges are wrong", c, threads, j);
        if (labels)
            pyheap_snapshot_edge_label(s, i, 2 * j, labels[j], sizeof labels[j]);
    }
}

START_TEST(huge_arrays)
{
    struct kh k;
    pyheap_target *t = big_arrays_open(&k);
    pyheap_error e;
    memset(&e, 0, sizeof e);
    static const unsigned threads[] = { 1, 2, 3, 2 };
    static char labels[200000][32];
    size_t objects1 = 0;
    for (size_t r = 0; r < sizeof threads / sizeof threads[0]; r++) {
        pyheap_scan_opts so = { .threads = threads[r] };
        pyheap_snapshot *s = NULL;
        ck_assert_msg(pyheap_snapshot_take(t, &so, &s, &e) == 0, "scan: %s", e.msg);
        const pyheap_scan_stats *st = pyheap_snapshot_stats(s);
        fprintf(stderr, "huge arrays: %u threads: %zu objects, %" PRIu64 " containers shared "
                "out, %" PRIu64 " chunks walked by another thread\n", st->threads,
                pyheap_snapshot_count(s), st->shared_arrays, st->shared_chunks);
        ck_assert_uint_eq(st->threads, threads[r]);
        /* the 300k list, the 200k tuple, the 140k list and the 200k dict */
        ck_assert_uint_eq(st->shared_arrays, threads[r] > 1 ? 4 : 0);
        ck_assert_uint_le(st->shared_chunks, threads[r] > 1 ? 5 + 4 + 3 + 4 : 0);
        ck_assert_uint_eq(st->key_labels_elided, 0);
        if (r == 0)
            objects1 = pyheap_snapshot_count(s);
        ck_assert_uint_eq(pyheap_snapshot_count(s), objects1);
        size_t at = 0;
        for (int c = 0; c < 4; c++) {
            uint64_t addr = big_ids[at], len = big_ids[at + 1];
            const uint64_t *items = big_ids + at + 2;
            at += 2 + len;
            size_t i = pyheap_snapshot_find(s, addr);
            ck_assert_msg(i != SIZE_MAX, "container %d not found", c);
            ck_assert_uint_eq(pyheap_snapshot_nedges(s, i), len);
            for (size_t j = 0; j < len; j++) {
                size_t to = pyheap_snapshot_edge_target(s, i, j);
                char want[32];
                const char *lb = edge_label(s, i, j);
                snprintf(want, sizeof want, "[%zu]", j);
                ck_assert_msg(pyheap_snapshot_addr(s, to) == items[j] && strcmp(lb, want) == 0,
                              "container %d, %u threads: edge %zu is %s to %#" PRIx64
                              ", not %s to %#" PRIx64, c, threads[r], j, lb,
                              pyheap_snapshot_addr(s, to), want, items[j]);
            }
        }
        /* The dicts: values labelled ['text'] by their keys; the second
         * dict's keys are other str objects with the first's texts (the
         * walk interns each text once); the third's are ints. */
        for (int c = 0; c < 3; c++) {
            size_t len = big_ids[at + 1];
            big_dict_check(s, &at, c, threads[r], labels);
            for (size_t j = 0; j < len; j++) {
                char want[32];
                if (c < 2)
                    snprintf(want, sizeof want, "['k%07zu']", c ? j * 1000 : j);
                else
                    snprintf(want, sizeof want, "[%llu]", 1000000000000ULL + 7 * j);
                ck_assert_msg(strcmp(labels[j], want) == 0,
                              "dict %d, %u threads: entry %zu is labelled %s, not %s", c,
                              threads[r], j, labels[j], want);
            }
        }
        pyheap_snapshot_free(s);
    }
    pyheap_target_free(t);
    kh_stop(&k);
}
END_TEST

/* One walker on a heap in allocation order whose instances a huge list
 * holds (tests/targets/bench_heap.py, 300,000 instances): it reads the
 * heap about once. Visiting the list's items when the list was found
 * (in the stack's order, from its end) read every chunk again when the GC
 * lists came to them: 2.7 times the resident memory, now 1.1. */
START_TEST(one_walker_reads_once)
{
    struct kh k;
    kh_start_script(&k, NULL, PY_DEBIAN, "bench_heap.py", "300000");
    unsigned long rss_kib = 0;
    char status[64], line[256];
    snprintf(status, sizeof status, "/proc/%d/status", (int)k.pid);
    FILE *f = fopen(status, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lu", &rss_kib) == 1)
            break;
    fclose(f);
    pyheap_target *t = NULL;
    pyheap_error e;
    memset(&e, 0, sizeof e);
    ck_assert_msg(pyheap_target_open(k.pid, NULL, &t, &e) == 0, "open: %s", e.msg);
    pyheap_scan_opts so = { .threads = 1 };
    pyheap_snapshot *s = NULL;
    ck_assert_msg(pyheap_snapshot_take(t, &so, &s, &e) == 0, "scan: %s", e.msg);
    const pyheap_scan_stats *st = pyheap_snapshot_stats(s);
    fprintf(stderr, "one walker, 300,000 instances: %zu objects, %llu bytes read for %lu KiB "
            "resident\n", pyheap_snapshot_count(s), (unsigned long long)st->remote_bytes,
            rss_kib);
    ck_assert_uint_ge(pyheap_snapshot_count(s), 4 * 300000);
    ck_assert_uint_eq(st->truncated, 0);
    ck_assert_uint_le(st->remote_bytes, (uint64_t)rss_kib * 1024 * 3 / 2);
    pyheap_snapshot_free(s);
    pyheap_target_free(t);
    kh_stop(&k);
}
END_TEST

/* Edges of S labelled TEXT. */
static size_t count_labelled(const pyheap_snapshot *s, const char *text)
{
    size_t n = 0;
    for (size_t i = 0; i < pyheap_snapshot_count(s); i++)
        for (size_t j = 0; j < pyheap_snapshot_nedges(s, i); j++)
            n += strcmp(edge_label(s, i, j), text) == 0;
    return n;
}

/* Whether S has an edge from the object at FROM to the one at TO whose
 * label holds TEXT. */
static bool has_edge(const pyheap_snapshot *s, uint64_t from, uint64_t to, const char *text)
{
    size_t i = pyheap_snapshot_find(s, from);
    ck_assert_msg(i != SIZE_MAX, "object %#" PRIx64 " not found", from);
    for (size_t j = 0; j < pyheap_snapshot_nedges(s, i); j++)
        if (pyheap_snapshot_addr(s, pyheap_snapshot_edge_target(s, i, j)) == to &&
            strstr(edge_label(s, i, j), text))
            return true;
    return false;
}

/* pyheap_scan_opts.max_label_bytes: a value of a dict of 4,096 entries or
 * more whose key's text would pass it is labelled by the key's type,
 * counted; smaller dicts' keys, attribute and variable names are kept
 * whatever the budget. */
START_TEST(key_label_budget)
{
    struct kh k;
    pyheap_target *t = big_arrays_open(&k);
    pyheap_error e;
    memset(&e, 0, sizeof e);
    static const struct { uint64_t budget; unsigned threads; } runs[] = {
        { 1, 1 }, { 1, 2 }, { 400000, 1 }, { 400000, 2 }, { 400000, 3 },
    };
    static char keyed[200000][32], again[200][32], ints[5000][32];
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        pyheap_scan_opts so = { .threads = runs[r].threads, .max_label_bytes = runs[r].budget };
        pyheap_snapshot *s = NULL;
        ck_assert_msg(pyheap_snapshot_take(t, &so, &s, &e) == 0, "scan: %s", e.msg);
        const pyheap_scan_stats *st = pyheap_snapshot_stats(s);
        size_t at = BIG_ARRAYS;
        big_dict_check(s, &at, 0, runs[r].threads, keyed);
        big_dict_check(s, &at, 1, runs[r].threads, again);
        big_dict_check(s, &at, 2, runs[r].threads, ints);
        /* every label left out is counted, and only those */
        size_t elided = count_labelled(s, "[<str>]") + count_labelled(s, "[<int>]");
        size_t kept = 0, kept_ints = 0;
        for (size_t j = 0; j < 200000; j++) {
            char want[32];
            snprintf(want, sizeof want, "['k%07zu']", j);
            ck_assert_msg(strcmp(keyed[j], want) == 0 || strcmp(keyed[j], "[<str>]") == 0,
                          "entry %zu is labelled %s", j, keyed[j]);
            kept += keyed[j][1] == '\'';
        }
        /* a dict of 200 entries: every key's text, kept or not above */
        for (size_t j = 0; j < 200; j++) {
            char want[32];
            snprintf(want, sizeof want, "['k%07zu']", j * 1000);
            ck_assert_msg(strcmp(again[j], want) == 0, "budget %" PRIu64 ": entry %zu of the "
                          "small dict is labelled %s", runs[r].budget, j, again[j]);
        }
        for (size_t j = 0; j < 5000; j++) {
            char want[32];
            snprintf(want, sizeof want, "[%llu]", 1000000000000ULL + 7 * j);
            ck_assert_msg(strcmp(ints[j], want) == 0 || strcmp(ints[j], "[<int>]") == 0,
                          "int entry %zu is labelled %s", j, ints[j]);
            kept_ints += ints[j][1] != '<';
        }
        fprintf(stderr, "key label budget %" PRIu64 ", %u threads: %zu of 200000 key texts "
                "kept, %zu of 5000 int keys, %" PRIu64 " left out\n", runs[r].budget,
                runs[r].threads, kept, kept_ints, st->key_labels_elided);
        ck_assert_uint_eq(st->key_labels_elided, elided);
        if (runs[r].budget == 1) {
            /* no text added, but the small dict's, found by the big one's
             * keys when it was walked first */
            for (size_t j = 0; j < 200000; j++)
                ck_assert_msg(keyed[j][1] != '\'' || j % 1000 == 0,
                              "entry %zu's text is kept: %s", j, keyed[j]);
            ck_assert_uint_eq(kept_ints, 0);
            ck_assert_uint_eq(elided, 205000 - kept);
        } else {
            /* 'k0000000' takes 9 bytes; other labels take some of it */
            ck_assert_uint_gt(kept, 10000);
            ck_assert_uint_le(kept + kept_ints, runs[r].budget / 9);
            ck_assert_uint_gt(elided, 205000 - runs[r].budget / 9);
        }
        /* an attribute and a generator's local: always named */
        ck_assert_msg(has_edge(s, big_ids[BIG_IDS - 4], big_ids[BIG_IDS - 3],
                               ".kept_attribute_name"),
                      "budget %" PRIu64 ": the attribute is not labelled by its name",
                      runs[r].budget);
        ck_assert_msg(has_edge(s, big_ids[BIG_IDS - 2], big_ids[BIG_IDS - 1],
                               ".f_locals['kept_local_name']"),
                      "budget %" PRIu64 ": the generator's local is not labelled by its name",
                      runs[r].budget);
        /* the main thread's frame (a root): its locals named */
        bool root = false;
        for (size_t i = 0; i < pyheap_snapshot_nroots(s); i++)
            root |= strstr(pyheap_snapshot_root_name(s, i), "main().f_locals['keyed']") != NULL;
        ck_assert_msg(root, "budget %" PRIu64 ": no root named main().f_locals['keyed']",
                      runs[r].budget);
        pyheap_snapshot_free(s);
    }
    pyheap_target_free(t);
    kh_stop(&k);
}
END_TEST

/* tests/targets/churned_heap.py's index dict (its index file): the
 * address, then per entry the value's address and the key's text. */
struct churned_index {
    uint64_t addr;
    size_t n;
    uint64_t *value;
    char (*key)[16];
};

static void churned_index_read(struct kh *k, struct churned_index *x)
{
    char path[600];
    kh_path(k, "index", path, sizeof path);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s", path);
    ck_assert_int_eq(fscanf(f, "%" SCNx64 " %zu", &x->addr, &x->n), 2);
    ck_assert_uint_gt(x->n, 1000);
    x->value = calloc(x->n, sizeof *x->value);
    x->key = calloc(x->n, sizeof *x->key);
    ck_assert(x->value && x->key);
    for (size_t j = 0; j < x->n; j++)
        ck_assert_int_eq(fscanf(f, "%" SCNx64 " %15s", &x->value[j], x->key[j]), 2);
    fclose(f);
}

/* Each entry of X in S: an edge to its value labelled ['key'], then one to
 * its key labelled (key). */
static void churned_index_check(const pyheap_snapshot *s, const struct churned_index *x,
                                unsigned threads)
{
    size_t i = pyheap_snapshot_find(s, x->addr);
    ck_assert_msg(i != SIZE_MAX, "the index dict is not found");
    ck_assert_uint_eq(pyheap_snapshot_nedges(s, i), 2 * x->n);
    for (size_t j = 0; j < x->n; j++) {
        char want[32];
        snprintf(want, sizeof want, "['%s']", x->key[j]);
        uint64_t to = pyheap_snapshot_addr(s, pyheap_snapshot_edge_target(s, i, 2 * j));
        const char *lb = edge_label(s, i, 2 * j);
        ck_assert_msg(to == x->value[j] && strcmp(lb, want) == 0,
                      "%u threads: index entry %zu is %s to %#" PRIx64 ", not %s to %#" PRIx64,
                      threads, j, lb, to, want, x->value[j]);
        ck_assert_str_eq(edge_label(s, i, 2 * j + 1), "(key)");
    }
}

/* A census callback that kills the target (ARG: its struct kh) once the
 * walk is done. */
static void kill_at_census(void *arg, const pyheap_census *c)
{
    (void)c;
    struct kh *k = arg;
    if (k->pid > 0) {
        kill(k->pid, SIGKILL);
        waitpid(k->pid, NULL, 0);
        k->pid = 0;
    }
}

/* A heap whose objects lie in no order (tests/targets/churned_heap.py: a
 * long-running service's heap after much allocation and release): the
 * walk finds the objects of the in-process closure, and with a cache of
 * 1 MiB reads at most 200 times the target's resident memory (20-70 times
 * now, with the machine's load). Following
 * each reference at once, with a 64 KiB chunk read for almost every
 * object, read 360-500 times as much (20-28 GB for a 55 MiB target):
 * now far objects wait to be visited in address order and scattered
 * reads take a page (walk.c drain, read_slow). The values of its index
 * dict are labelled by their keys, whose texts lie all over the heap:
 * most are read after the walk, in address order (key_labels_later),
 * and label the right values. A target that exits while they are read
 * (after the census) fails the scan, as one that exits during the walk. */
START_TEST(churned_heap)
{
    ck_assert_msg(access(PY_DEBIAN, X_OK) == 0, "%s is required", PY_DEBIAN);
    struct kh k;
    kh_start_script(&k, NULL, PY_DEBIAN, "churned_heap.py", "60000");
    char path[600];
    kh_path(&k, "truth", path, sizeof path);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "%s", path);
    unsigned long truth = 0, tracked = 0;
    ck_assert_int_eq(fscanf(f, "objects %lu gc %lu", &truth, &tracked), 2);
    fclose(f);
    ck_assert_uint_gt(truth, 400000);
    ck_assert_uint_gt(tracked, 100000);
    unsigned long rss_kib = 0;
    char status[64], line[256];
    snprintf(status, sizeof status, "/proc/%d/status", (int)k.pid);
    f = fopen(status, "r");
    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %lu", &rss_kib) == 1)
            break;
    fclose(f);
    ck_assert_uint_gt(rss_kib, 20000);
    pyheap_target *t = NULL;
    pyheap_error e;
    memset(&e, 0, sizeof e);
    struct churned_index x;
    churned_index_read(&k, &x);
    ck_assert_msg(pyheap_target_open(k.pid, NULL, &t, &e) == 0, "open: %s", e.msg);
    for (unsigned threads = 1; threads <= 2; threads++) {
        pyheap_scan_opts so = { .threads = threads, .max_cache_bytes = 1u << 20 };
        pyheap_snapshot *s = NULL;
        ck_assert_msg(pyheap_snapshot_take(t, &so, &s, &e) == 0, "scan: %s", e.msg);
        const pyheap_scan_stats *st = pyheap_snapshot_stats(s);
        size_t n = pyheap_snapshot_count(s);
        fprintf(stderr, "churned heap: %u threads: %zu objects (closure %lu), %llu bytes read "
                "in %llu reads for %lu KiB resident, %.0f ms; %llu key labels read after "
                "the walk (the index dict: %zu keys); %llu of %llu GC list nodes' links "
                "kept by their visits\n", threads, n, truth,
                (unsigned long long)st->remote_bytes, (unsigned long long)st->remote_reads,
                rss_kib, st->scan_ms, (unsigned long long)st->key_labels_later, x.n,
                (unsigned long long)st->gc_links_kept, (unsigned long long)st->gc_tracked);
        ck_assert_int_eq(st->truncated, 0);
        /* the closure's objects and the few it does not reach (types of
         * the interpreter, objects only C holds) */
        ck_assert_uint_ge(n, truth);
        ck_assert_uint_le(n, truth + truth / 20);
        ck_assert_uint_le(st->remote_bytes, (uint64_t)rss_kib * 1024 * 200);
        churned_index_check(s, &x, threads);
        ck_assert_uint_ge(st->key_labels_later, x.n / 2);
        /* the lists' nodes lie scattered: most were not read again, and
         * the lists were walked whole */
        ck_assert_uint_ge(st->gc_links_kept, st->gc_tracked / 2);
        ck_assert_uint_ge(st->gc_tracked, tracked - tracked / 100);
        ck_assert_uint_le(st->gc_tracked, tracked + tracked / 100);
        pyheap_snapshot_free(s);
    }
    pyheap_scan_opts so = { .threads = 2, .max_cache_bytes = 1u << 20,
                            .census = kill_at_census, .census_arg = &k };
    pyheap_snapshot *s = NULL;
    memset(&e, 0, sizeof e);
    ck_assert_int_eq(pyheap_snapshot_take(t, &so, &s, &e), -1);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(k.pid, 0);   /* (the census came) */
    ck_assert_msg(e.code == PYHEAP_E_GONE, "%d: %s", (int)e.code, e.msg);
    free(x.value);
    free(x.key);
    pyheap_target_free(t);
    kh_stop(&k);
}
END_TEST

START_TEST(gc_lists_both_ends)
{
    gc_lists_case(false);
}
END_TEST

START_TEST(gc_lists_subinterpreter)
{
    gc_lists_case(true);
}
END_TEST

/* The walked callback (pyheapd resumes a frozen target there) comes once
 * per scan, after the walk and before the build: the snapshot's build
 * falls entirely between the callback and the return, with any threads. */
struct walked_probe {
    int calls;
    double at;
};

static void walked_probe_cb(void *arg)
{
    struct walked_probe *p = arg;
    p->calls++;
    p->at = test_now_ms();
}

START_TEST(walked_before_build)
{
    pid_t pid;
    pyheap_target *t = gc_lists_open("100000", false, &pid);
    pyheap_error e;
    memset(&e, 0, sizeof e);
    for (unsigned threads = 1; threads <= 2; threads++) {
        struct walked_probe p = { 0, 0 };
        pyheap_scan_opts so = { .threads = threads, .walked = walked_probe_cb, .walked_arg = &p };
        pyheap_snapshot *s = NULL;
        double t0 = test_now_ms();
        ck_assert_msg(pyheap_snapshot_take(t, &so, &s, &e) == 0, "scan: %s", e.msg);
        double t1 = test_now_ms();
        const pyheap_scan_stats *st = pyheap_snapshot_stats(s);
        fprintf(stderr, "walked: %u threads: callback at %.1f ms of %.1f, build %.1f ms\n",
                threads, p.at - t0, t1 - t0, st->build_ms);
        ck_assert_int_eq(p.calls, 1);
        ck_assert(p.at >= t0);
        ck_assert_uint_gt(st->objects, 200000);
        ck_assert(st->build_ms > 0);
        ck_assert_msg(t1 - p.at >= st->build_ms, "the build (%.1f ms) began before the "
                      "callback (%.1f ms before the return)", st->build_ms, t1 - p.at);
        pyheap_snapshot_free(s);
    }
    pyheap_target_free(t);
    test_reap(pid);
}
END_TEST

/* A known_heap.py --churn target (allocating and freeing in a tight loop),
 * opened. */
static pyheap_target *churning_target(struct kh *k)
{
    ck_assert_msg(access(PY_DEBIAN, X_OK) == 0, "%s is required", PY_DEBIAN);
    kh_start(k, NULL, PY_DEBIAN, "--churn");
    pyheap_target *t = NULL;
    pyheap_error e;
    memset(&e, 0, sizeof e);
    ck_assert_msg(pyheap_target_open(k->pid, NULL, &t, &e) == 0, "open: %s", e.msg);
    return t;
}

/* The census handed out before the build (what pyheapd answers "top"
 * with) is what the snapshot then holds: per type index, the same name,
 * count and bytes, counted here from the snapshot's objects one by one. */
struct census_probe {
    int calls;
    double at;
    pyheap_scan_stats st;
    size_t n;
    struct { char name[128]; uint32_t type; uint64_t count, bytes; } *rows;
};

static void census_probe_cb(void *arg, const pyheap_census *c)
{
    struct census_probe *p = arg;
    p->calls++;
    p->at = test_now_ms();
    p->st = *pyheap_census_stats(c);
    pyheap_type_stat *h = NULL;
    size_t n = 0;
    pyheap_error e;
    ck_assert_msg(pyheap_census_histogram(c, PYHEAP_SORT_COUNT, &h, &n, &e) == 0, "%s", e.msg);
    free(p->rows);
    p->rows = calloc(n ? n : 1, sizeof *p->rows);
    ck_assert_ptr_nonnull(p->rows);
    for (size_t i = 0; i < n; i++) {
        snprintf(p->rows[i].name, sizeof p->rows[i].name, "%s", h[i].name);
        p->rows[i].type = h[i].type;
        p->rows[i].count = h[i].count;
        p->rows[i].bytes = h[i].bytes;
        /* sorted by count, as asked */
        ck_assert(i == 0 || h[i - 1].count >= h[i].count);
    }
    p->n = n;
    free(h);
}

static void census_matches(const struct census_probe *p, const pyheap_snapshot *s)
{
    size_t nt = pyheap_snapshot_ntypes(s), n = pyheap_snapshot_count(s);
    uint64_t *cnt = calloc(nt + 1, sizeof *cnt), *byt = calloc(nt + 1, sizeof *byt);
    ck_assert(cnt && byt);
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t ty = pyheap_snapshot_type(s, i);
        ck_assert_uint_lt(ty, nt);
        cnt[ty]++;
        byt[ty] += pyheap_snapshot_size(s, i);
        bytes += pyheap_snapshot_size(s, i);
    }
    const pyheap_scan_stats *st = pyheap_snapshot_stats(s);
    ck_assert_uint_eq(p->st.objects, n);
    ck_assert_uint_eq(p->st.objects, st->objects);
    ck_assert_uint_eq(p->st.bytes, bytes);
    ck_assert_uint_eq(p->st.bytes, st->bytes);
    ck_assert_uint_eq(p->st.skipped, st->skipped);
    ck_assert_int_eq(p->st.truncated, 0);
    size_t types = 0;
    for (size_t i = 0; i < nt; i++)
        types += cnt[i] > 0;
    ck_assert_uint_eq(p->n, types);
    /* the snapshot's own histogram (its totals are the walk's tally) */
    pyheap_type_stat *h = NULL;
    size_t nh = 0;
    pyheap_error e;
    ck_assert_msg(pyheap_histogram(s, PYHEAP_SORT_BYTES, &h, &nh, &e) == 0, "%s", e.msg);
    ck_assert_uint_eq(nh, types);
    for (size_t i = 0; i < nh; i++)
        ck_assert_msg(h[i].count == cnt[h[i].type] && h[i].bytes == byt[h[i].type],
                      "%s: histogram %" PRIu64 " objects %" PRIu64 " bytes, snapshot %" PRIu64
                      " and %" PRIu64, h[i].name, h[i].count, h[i].bytes, cnt[h[i].type],
                      byt[h[i].type]);
    free(h);
    for (size_t i = 0; i < p->n; i++) {
        uint32_t ty = p->rows[i].type;
        ck_assert_uint_lt(ty, nt);
        ck_assert_str_eq(p->rows[i].name, pyheap_snapshot_type_name(s, ty));
        ck_assert_msg(p->rows[i].count == cnt[ty] && p->rows[i].bytes == byt[ty],
                      "%s: census %" PRIu64 " objects %" PRIu64 " bytes, snapshot %" PRIu64
                      " and %" PRIu64, p->rows[i].name, p->rows[i].count, p->rows[i].bytes,
                      cnt[ty], byt[ty]);
    }
    free(cnt);
    free(byt);
}

START_TEST(census_before_build)
{
    struct kh k;
    pyheap_target *t = churning_target(&k);
    pyheap_error e = { 0 };
    for (unsigned i = 0; i < 6; i++) {
        unsigned threads = 1 + i % 3;   /* threads racing with a mutating heap too */
        struct census_probe p;
        memset(&p, 0, sizeof p);
        pyheap_scan_opts so = { .threads = threads, .census = census_probe_cb,
                                .census_arg = &p };
        pyheap_snapshot *s = NULL;
        ck_assert_msg(pyheap_snapshot_take(t, &so, &s, &e) == 0, "scan: %s", e.msg);
        double t1 = test_now_ms();
        const pyheap_scan_stats *st = pyheap_snapshot_stats(s);
        fprintf(stderr, "census: %u threads: %zu types, %" PRIu64 " objects, callback %.1f "
                "ms before the return, build %.1f ms\n", threads, p.n, p.st.objects,
                t1 - p.at, st->build_ms);
        ck_assert_int_eq(p.calls, 1);
        ck_assert_uint_gt(p.st.objects, 50000);
        ck_assert_uint_gt(p.n, 20);
        ck_assert_msg(t1 - p.at >= st->build_ms, "the build (%.1f ms) began before the "
                      "census (%.1f ms before the return)", st->build_ms, t1 - p.at);
        ck_assert(p.st.scan_ms > 0 && p.st.scan_ms <= st->scan_ms);
        /* the build found the records distinct and the index exact, as
         * the census assumed, and took the tally as its per-type totals */
        ck_assert(s->build_index_given);
        ck_assert_ptr_nonnull(s->totals);
        census_matches(&p, s);
        free(p.rows);
        pyheap_snapshot_free(s);
    }
    /* A truncated walk has no census: the snapshot answers. */
    struct census_probe p;
    memset(&p, 0, sizeof p);
    pyheap_scan_opts so = { .max_objects = 5000, .census = census_probe_cb, .census_arg = &p };
    pyheap_snapshot *s = NULL;
    ck_assert_msg(pyheap_snapshot_take(t, &so, &s, &e) == 0, "scan: %s", e.msg);
    ck_assert_int_eq(pyheap_snapshot_stats(s)->truncated, 1);
    ck_assert_int_eq(p.calls, 0);
    pyheap_snapshot_free(s);
    pyheap_target_free(t);
    kh_stop(&k);
}
END_TEST

/* Scans racing with a target that allocates and frees in a tight loop:
 * they complete, stay bounded, report what they skipped; limits truncate;
 * a vanished target is reported as gone. */
START_TEST(scan_while_churning)
{
    struct kh k;
    pyheap_error e;
    memset(&e, 0, sizeof e);
    pyheap_target *t = churning_target(&k);
    for (int i = 0; i < 12; i++) {
        pyheap_snapshot *s = NULL;
        pyheap_scan_opts to = { .threads = i % 2 ? 3 : 1 }; /* threads racing too */
        ck_assert_msg(pyheap_snapshot_take(t, &to, &s, &e) == 0, "churn scan %d: %s", i, e.msg);
        const pyheap_scan_stats *st = pyheap_snapshot_stats(s);
        /* The _ast module's singletons (ast.Load(), ...) are held by its C
         * state alone: found through their GC list only, also when a
         * collection reorders that list during the scan (a third of the
         * scans lost them before the lists were walked again). */
        uint64_t ast_load = 0;
        for (size_t j = 0; j < pyheap_snapshot_count(s); j++)
            ast_load += strcmp(pyheap_snapshot_type_name(s, pyheap_snapshot_type(s, j)),
                               "ast.Load") == 0;
        fprintf(stderr, "churn scan %d: %u threads, objects %" PRIu64 " bytes %" PRIu64
                " skipped %" PRIu64 " scan_ms %.1f, GC links mended %" PRIu64 ", lists "
                "walked again %" PRIu64 ", ast.Load %" PRIu64 "\n", i, st->threads, st->objects,
                st->bytes, st->skipped, st->scan_ms, st->gc_mended, st->gc_again, ast_load);
        ck_assert_uint_eq(ast_load, 1);
        ck_assert_uint_gt(st->objects, 50000);
        ck_assert(st->scan_ms < 30000);
        ck_assert_int_eq(st->truncated, 0);
        /* what was skipped (torn, freed) was left out of the seen set's
         * copy that indexes the objects */
        ck_assert(s->build_index_given);
        for (size_t j = 1; j < pyheap_snapshot_count(s); j++)
            ck_assert(pyheap_snapshot_addr(s, j - 1) < pyheap_snapshot_addr(s, j));
        pyheap_snapshot_free(s);
    }
    pyheap_scan_opts so = { .max_objects = 1000 };
    pyheap_snapshot *s = NULL;
    ck_assert_int_eq(pyheap_snapshot_take(t, &so, &s, &e), 0);
    ck_assert_int_eq(pyheap_snapshot_stats(s)->truncated, 1);
    ck_assert_uint_eq(pyheap_snapshot_count(s), 1000);
    ck_assert(!s->build_index_given);   /* seen, not visited: indexed anew */
    pyheap_snapshot_free(s);
    /* The limit holds with threads too (they count in batches). */
    so.max_objects = 20000;
    so.threads = 3;
    ck_assert_int_eq(pyheap_snapshot_take(t, &so, &s, &e), 0);
    ck_assert_int_eq(pyheap_snapshot_stats(s)->truncated, 1);
    ck_assert_uint_eq(pyheap_snapshot_count(s), 20000);
    pyheap_snapshot_free(s);

    long c = kh_counter(&k);
    ck_assert_int_gt(c, 0);
    kill(k.pid, SIGKILL);
    waitpid(k.pid, NULL, 0);
    k.pid = 0;
    s = NULL;
    ck_assert_int_eq(pyheap_snapshot_take(t, NULL, &s, &e), -1);
    ck_assert_ptr_null(s);
    ck_assert_msg(e.code == PYHEAP_E_GONE, "expected gone, got %s: %s",
                  pyheap_errcode_name(e.code), e.msg);
    pyheap_target_free(t);
    kh_stop(&k);
}
END_TEST

Suite *suite_walk(void)
{
    Suite *s = suite_create("walk");
    TCase *tc = tcase_create("live");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, accuracy_debian_table);
    tcase_add_test(tc, accuracy_debug_dwarf);
    tcase_add_test(tc, accuracy_pyenv_shared);
    tcase_add_test(tc, scan_while_churning);
    tcase_add_test(tc, walked_before_build);
    tcase_add_test(tc, census_before_build);
    tcase_add_test(tc, threads_agree);
    tcase_add_test(tc, huge_arrays);
    tcase_add_test(tc, key_label_budget);
    tcase_add_test(tc, churned_heap);
    tcase_add_test(tc, one_walker_reads_once);
    tcase_add_test(tc, gc_lists_both_ends);
    tcase_add_test(tc, gc_lists_subinterpreter);
    tcase_add_test(tc, instance_attributes);
    tcase_add_test(tc, object_limit_exact);
    suite_add_tcase(s, tc);
    return s;
}
