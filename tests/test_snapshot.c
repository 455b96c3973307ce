/* The snapshot build (lib/snapshot.c) from a walk's discovery-order input,
 * against a naive reference: repeated addresses, edges to no object, edges
 * after the last object, cut flags, names out of range, and addresses the
 * bitmap index cannot hold (misaligned, above 2^47). No process needed. */
#include <check.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addrset.h"
#include "pyheap.h"
#include "snapshot.h"
#include "walk.h"

static uint64_t rng_state;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

enum { NTYPES = 5, MAXE = 5 };

struct ref_obj {
    uint64_t addr, size;
    uint32_t type;        /* as appended (may be out of range) */
    bool cut;
    size_t ne;
    uint64_t target[MAXE];
    uint32_t label[MAXE];
};

/* The first object at ADDR in REF[0..n), or NULL. */
static const struct ref_obj *ref_find(const struct ref_obj *ref, size_t n, uint64_t addr)
{
    for (size_t i = 0; i < n; i++)
        if (ref[i].addr == addr)
            return &ref[i];
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* How an index comes with the objects (as a walk's does). */
enum given {
    GIVEN_NONE,
    GIVEN_EXACT,    /* the objects' addresses: used (without repeats) */
    GIVEN_EXTRA,    /* one address more: not used */
    GIVEN_MISSING,  /* one address less, one other instead: not used */
    GIVEN_PADDED,   /* as many addresses as objects, but objects repeat
                     * (others pad the count): not used */
};

/* N objects in discovery order with addresses from ADDR_OF, with REPEATS
 * every 13th a repeat of an earlier address, appended in PARTS parts (as
 * walker threads do) with a checkpoint every CP_EVERY objects (0: the
 * default) then joined; build with THREADS threads, with an index as
 * GIVEN says; compare with the reference. */
static void check_build_given(size_t n, uint64_t (*addr_of)(size_t), size_t trailing,
                              size_t parts, bool repeats, unsigned threads, size_t cp_every,
                              enum given given)
{
    struct ref_obj *ref = calloc(n ? n : 1, sizeof *ref);
    ck_assert_ptr_nonnull(ref);
    for (size_t i = 0; i < n; i++) {
        ref[i].addr = (repeats && i % 13 == 12) ? ref[rng() % i].addr : addr_of(i);
        ref[i].size = 16 + rng() % 1000;
        ref[i].type = (uint32_t)(rng() % (NTYPES + 1)); /* NTYPES: out of range */
        ref[i].cut = rng() % 10 == 0;
    }
    for (size_t i = 0; i < n; i++) {
        ref[i].ne = (size_t)(rng() % (MAXE + 1));
        for (size_t k = 0; k < ref[i].ne; k++) {
            /* mostly objects (any, also later ones), sometimes no object */
            ref[i].target[k] = rng() % 8 ? ref[rng() % n].addr : addr_of(n + rng() % 1000) + 8;
            ref[i].label[k] = WALK_LBL(LBL_INDEX, (uint32_t)(rng() % 1000));
            if (rng() % 7 == 0)
                ref[i].label[k] = WALK_LBL_WITH_FLAGS(ref[i].label[k], PYHEAP_EDGE_WEAK);
        }
    }
    struct snapshot_in part[3];
    memset(part, 0, sizeof part);
    ck_assert_uint_le(parts, 3);
    for (size_t k = 0; k < parts; k++)
        part[k].cp_every = cp_every;
    for (size_t i = 0; i < n; i++) {
        struct snapshot_in *in = &part[i * parts / n];
        for (size_t k = 0; k < ref[i].ne; k++)
            ck_assert_int_eq(snapshot_in_edge(in, ref[i].target[k], ref[i].label[k]), 0);
        ck_assert_int_eq(pyheap_snapshot_in_object(in, ref[i].addr, ref[i].size,
                                                   ref[i].type | (ref[i].cut ? SNAPSHOT_IN_CUT : 0)),
                         0);
        /* edges after a part's last object: dropped by the join */
        if (parts > 1 && i + 1 < n && (i + 1) * parts / n != i * parts / n)
            ck_assert_int_eq(snapshot_in_edge(in, ref[0].addr, WALK_LBL(LBL_ITEM, 1)), 0);
    }
    /* trailing edges after the last part's last object: dropped, and
     * counted */
    for (size_t k = 0; k < trailing; k++)
        ck_assert_int_eq(snapshot_in_edge(&part[parts - 1], addr_of(0), WALK_LBL(LBL_ITEM, 0)),
                         0);

    /* Expected: distinct addresses ascending, the first object of each. */
    uint64_t *sorted = malloc((n ? n : 1) * sizeof *sorted);
    ck_assert_ptr_nonnull(sorted);
    for (size_t i = 0; i < n; i++)
        sorted[i] = ref[i].addr;
    qsort(sorted, n, sizeof *sorted, cmp_u64);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (m == 0 || sorted[i] != sorted[m - 1])
            sorted[m++] = sorted[i];

    char **names = calloc(NTYPES, sizeof *names);
    ck_assert_ptr_nonnull(names);
    for (int i = 0; i < NTYPES; i++) {
        names[i] = malloc(8);
        ck_assert_ptr_nonnull(names[i]);
        names[i][0] = (char)('a' + i);
        names[i][1] = 0;
    }
    pyheap_scan_stats st;
    memset(&st, 0, sizeof st);
    pyheap_snapshot *s = NULL;
    pyheap_error err;
    struct snapshot_graph_in g;
    memset(&g, 0, sizeof g);
    struct addrset set = { 0 };
    struct addrindex ix;
    uint64_t drop = 0;
    if (given != GIVEN_NONE) {
        /* a walk's: the set of the addresses, less what it dropped */
        for (size_t i = 0; i < n; i++)
            ck_assert_int_ge(pyheap_addrset_insert(&set, ref[i].addr), 0);
        if (given == GIVEN_EXTRA || given == GIVEN_MISSING)
            ck_assert_int_eq(pyheap_addrset_insert(&set, addr_of(n + 1001)), 1);
        if (given == GIVEN_MISSING)
            drop = ref[n / 2].addr;
        for (size_t k = 0, have = set.used; given == GIVEN_PADDED && have < n; k++)
            have += pyheap_addrset_insert(&set, addr_of(n + 2000 + k)) == 1;
        ck_assert_int_eq(pyheap_addrindex_from_set(&ix, &set, &drop, drop ? 1 : 0), 0);
        pyheap_addrset_free(&set);
        g.index = &ix;
    }
    ck_assert_int_eq(pyheap_snapshot_build_ins(part, parts, names, NTYPES, &g, &st, threads, &s,
                                               &err),
                     0);
    if (given != GIVEN_NONE)
        pyheap_addrindex_free(&ix);
    ck_assert_int_eq(s->build_index_given,
                     (given == GIVEN_EXACT || given == GIVEN_PADDED) && m == n);
    /* shared out when there is enough for each thread between checkpoints */
    size_t every = cp_every ? cp_every : SNAPSHOT_IN_CP_EVERY;
    /* a part per thread, and one more where a stream ends inside a
     * thread's share */
    ck_assert_uint_le(s->build_parts, (threads ? threads : 1) + parts - 1);
    bool has[3] = { false, false, false };
    for (size_t i = 0; i < n; i++)
        has[i * parts / n] = true;
    size_t filled = (size_t)has[0] + has[1] + has[2]; /* streams with objects: a part each */
    ck_assert_uint_ge(s->build_parts, filled ? filled : 1);
    if (threads > 1 && n >= 2 * every * threads && parts == 1)
        ck_assert_uint_eq(s->build_parts, threads);
    if (n < every && parts == 1)
        ck_assert_uint_eq(s->build_parts, 1);
    for (size_t k = 0; k < parts; k++) {
        ck_assert_ptr_null(part[k].obj);
        ck_assert_ptr_null(part[k].edge);
        ck_assert_uint_eq(part[k].n, 0);
    }

    ck_assert_uint_eq(pyheap_snapshot_count(s), m);
    ck_assert_uint_eq(pyheap_snapshot_stats(s)->objects, m);
    uint64_t bytes = 0, kept = 0, total = trailing;
    for (size_t i = 0; i < n; i++)
        total += ref[i].ne;
    for (size_t j = 0; j < m; j++) {
        ck_assert_uint_eq(pyheap_snapshot_addr(s, j), sorted[j]);
        const struct ref_obj *o = ref_find(ref, n, sorted[j]);
        ck_assert_ptr_nonnull(o);
        ck_assert_uint_eq(pyheap_snapshot_size(s, j), o->size);
        ck_assert_uint_eq(pyheap_snapshot_type(s, j), o->type < NTYPES ? o->type : 0);
        bytes += o->size;
        size_t k = 0;
        for (size_t e = 0; e < o->ne; e++) {
            const struct ref_obj *t = ref_find(ref, n, o->target[e]);
            if (!t)
                continue;
            ck_assert_uint_lt(k, pyheap_snapshot_nedges(s, j));
            size_t ti = pyheap_snapshot_edge_target(s, j, k);
            ck_assert_uint_eq(pyheap_snapshot_addr(s, ti), o->target[e]);
            uint32_t want = o->label[e];
            if (t->cut)
                want = WALK_LBL_WITH_FLAGS(want, PYHEAP_EDGE_CUT);
            ck_assert_uint_eq(s->elabel[s->eoff[j] + k], want);
            ck_assert_uint_eq(pyheap_snapshot_edge_flags(s, j, k), WALK_LBL_FLAGS(want));
            k++;
        }
        ck_assert_uint_eq(pyheap_snapshot_nedges(s, j), k);
        kept += k;
    }
    ck_assert_uint_eq(pyheap_snapshot_stats(s)->bytes, bytes);
    ck_assert_uint_eq(s->nedges, kept);
    ck_assert_uint_eq(s->edges_dropped, total - kept);
    pyheap_snapshot_free(s);
    free(sorted);
    free(ref);
}

static void check_build_mt(size_t n, uint64_t (*addr_of)(size_t), size_t trailing, size_t parts,
                           bool repeats, unsigned threads, size_t cp_every)
{
    check_build_given(n, addr_of, trailing, parts, repeats, threads, cp_every, GIVEN_NONE);
}

/* A few dense 64 KiB leaves and some far apart, 16-aligned, in a
 * scrambled order. */
static uint64_t addr_tree(size_t i)
{
    uint64_t base = (i % 3 == 0) ? 0x7f1200000000ull : 0x55d000000000ull;
    return base + ((i * 2654435761u) % 100003) * 16;
}

/* Every 50th misaligned, one above 2^47: the index falls back to a sorted
 * copy. */
static uint64_t addr_odd(size_t i)
{
    if (i == 7)
        return (1ull << 47) + 64;
    return addr_tree(i) + (i % 50 == 0 ? 4 : 0);
}

static void check_build(size_t n, uint64_t (*addr_of)(size_t), size_t trailing, size_t parts)
{
    check_build_mt(n, addr_of, trailing, parts, true, 1, 0);
}

START_TEST(test_build_matches_reference)
{
    rng_state = 0x9E3779B97F4A7C15ull;
    check_build(3000, addr_tree, 0, 1);
    check_build(3000, addr_tree, 3, 1);
    check_build(3000, addr_odd, 2, 1);
    check_build(3000, addr_tree, 1, 3);
    check_build(3000, addr_odd, 0, 2);
    check_build(1, addr_tree, 0, 1);
    check_build(0, addr_tree, 4, 1);
}
END_TEST

/* Built by several threads, between checkpoints: the same snapshot. With
 * repeats, who wins a repeated address is settled in discovery order. */
START_TEST(test_build_threads)
{
    rng_state = 0x2545F4914F6CDD1Dull;
    check_build_mt(3000, addr_tree, 0, 1, false, 4, 64);
    check_build_mt(3000, addr_tree, 3, 3, false, 2, 50);
    check_build_mt(3000, addr_tree, 2, 1, true, 3, 100);
    check_build_mt(3000, addr_odd, 2, 2, true, 3, 100);
    check_build_mt(3000, addr_odd, 0, 1, false, 4, 64);
    check_build_mt(3000, addr_tree, 1, 3, false, 4, 7);
    check_build_mt(3000, addr_tree, 0, 3, true, 8, 1);
    check_build_mt(5, addr_tree, 0, 1, false, 4, 1);
    check_build_mt(0, addr_tree, 2, 1, false, 4, 1);
    check_build_mt(3000, addr_tree, 0, 1, false, 2, 0); /* under one default interval */
    /* streams with no object, or only edges after their last */
    check_build_mt(2, addr_tree, 2, 3, false, 2, 0);
    check_build_mt(1, addr_tree, 1, 3, false, 4, 1);
    check_build_mt(3000, addr_odd, 1, 3, true, 2, 64);
}
END_TEST

/* With the index a walk gives (its seen set less what it did not record):
 * used when it holds the objects' addresses and nothing else, and the
 * snapshot is the same; otherwise (an address more, or one less and one
 * other, or repeated objects) the build indexes the objects itself. */
START_TEST(test_build_index_given)
{
    rng_state = 0x853C49E6748FEA9Bull;
    static const enum given modes[] = { GIVEN_EXACT, GIVEN_EXTRA, GIVEN_MISSING };
    for (size_t k = 0; k < 3; k++) {
        check_build_given(3000, addr_tree, 0, 1, false, 1, 0, modes[k]);
        check_build_given(3000, addr_tree, 2, 3, false, 4, 64, modes[k]);
        check_build_given(3000, addr_tree, 1, 2, true, 2, 50, modes[k]);
        check_build_given(1, addr_tree, 0, 1, false, 1, 0, modes[k]);
    }
    check_build_given(0, addr_tree, 3, 1, false, 2, 0, GIVEN_EXACT);
    /* a repeated object, the count right: the repeat is caught */
    check_build_given(3000, addr_tree, 1, 2, true, 2, 50, GIVEN_PADDED);
    check_build_given(2000, addr_tree, 0, 1, true, 1, 0, GIVEN_PADDED);
}
END_TEST

/* A snapshot of N records and NE edges (in any order) with the type names
 * "x" and "y", through the records' entry point. */
static pyheap_snapshot *build_xy(const struct snapshot_rec *recs, size_t n,
                                 struct snapshot_edge_in *edges, size_t ne)
{
    char **names = calloc(2, sizeof *names);
    ck_assert_ptr_nonnull(names);
    names[0] = strdup("x");
    names[1] = strdup("y");
    struct snapshot_graph_in g = { .edges = edges, .nedges = ne };
    pyheap_scan_stats st;
    memset(&st, 0, sizeof st);
    pyheap_snapshot *s = NULL;
    pyheap_error err;
    ck_assert_int_eq(pyheap_snapshot_build(recs, n, names, 2, &g, &st, &s, &err), 0);
    return s;
}

/* The old entry point (edges in any order, by source index) gives the same
 * snapshot; sources that are no record are dropped. */
START_TEST(test_build_from_records)
{
    struct snapshot_rec recs[3] = {
        { 0x7f0000002000ull, 10, 1, 0 },
        { 0x7f0000001000ull, 20, 0, SNAPSHOT_REC_CUT },
        { 0x7f0000003000ull, 30, 1, 0 },
    };
    struct snapshot_edge_in edges[] = {
        { 0x7f0000001000ull, 2, WALK_LBL(LBL_INDEX, 0) },
        { 0x7f0000003000ull, 0, WALK_LBL(LBL_INDEX, 1) },
        { 0x7f0000001000ull, 0, WALK_LBL(LBL_INDEX, 2) },
        { 0x7f0000003000ull, 9, WALK_LBL(LBL_INDEX, 3) },  /* no such source */
        { 0x7f0000009000ull, 2, WALK_LBL(LBL_INDEX, 4) },  /* no such target */
    };
    pyheap_snapshot *s = build_xy(recs, 3, edges, 5);
    ck_assert_uint_eq(pyheap_snapshot_count(s), 3);
    /* object 1 (0x...2000): edges to 0x...3000 then 0x...1000 (cut) */
    ck_assert_uint_eq(pyheap_snapshot_nedges(s, 0), 0);
    ck_assert_uint_eq(pyheap_snapshot_nedges(s, 1), 2);
    ck_assert_uint_eq(pyheap_snapshot_edge_target(s, 1, 0), 2);
    ck_assert_uint_eq(pyheap_snapshot_edge_target(s, 1, 1), 0);
    ck_assert_uint_eq(pyheap_snapshot_edge_flags(s, 1, 0), 0);
    ck_assert_uint_eq(pyheap_snapshot_edge_flags(s, 1, 1), PYHEAP_EDGE_CUT);
    ck_assert_uint_eq(pyheap_snapshot_nedges(s, 2), 1);
    ck_assert_uint_eq(pyheap_snapshot_edge_target(s, 2, 0), 0);
    ck_assert_uint_eq(WALK_LBL_PAYLOAD(s->elabel[s->eoff[2]]), 0);
    ck_assert_uint_eq(s->edges_dropped, 2);
    pyheap_snapshot_free(s);
}
END_TEST

/* Diffs against a packed copy (pyheap_snapshot_pack) and against the
 * snapshot itself are the same, and both what a naive reference finds:
 * objects at one address are the same when their types' names are. Types
 * 0 and 3 share the name "a"; the two snapshots number their types alike,
 * or (as two walks do) differently, with names only one of them has;
 * addresses 8-aligned (packed as deltas / 8) or not. */
static pyheap_snapshot *build_named(struct snapshot_rec *recs, size_t n,
                                    const char *const nm[4])
{
    char **names = calloc(4, sizeof *names);
    ck_assert_ptr_nonnull(names);
    for (int i = 0; i < 4; i++)
        names[i] = strdup(nm[i]);
    pyheap_scan_stats st;
    memset(&st, 0, sizeof st);
    st.objects = n;
    pyheap_snapshot *s = NULL;
    pyheap_error err;
    ck_assert_int_eq(pyheap_snapshot_build(recs, n, names, 4, NULL, &st, &s, &err), 0);
    return s;
}

static void check_diff(const pyheap_diff *d, uint64_t no, uint64_t nb, uint64_t go, uint64_t gb,
                       const uint64_t cnt[4], const uint64_t byt[4])
{
    ck_assert_uint_eq(d->new_objects, no);
    ck_assert_uint_eq(d->new_bytes, nb);
    ck_assert_uint_eq(d->gone_objects, go);
    ck_assert_uint_eq(d->gone_bytes, gb);
    size_t want = 0;
    for (int t = 0; t < 4; t++)
        want += cnt[t] != 0;
    ck_assert_uint_eq(d->ntypes, want);
    for (size_t i = 0; i < d->ntypes; i++) {
        ck_assert_uint_lt(d->types[i].type, 4);
        ck_assert_uint_eq(d->types[i].count, cnt[d->types[i].type]);
        ck_assert_uint_eq(d->types[i].bytes, byt[d->types[i].type]);
    }
}

START_TEST(test_diff_packed)
{
    static const char *const same[4] = { "a", "b", "c", "a" };
    static const char *const older_nm[4] = { "a", "b", "y", "a" };  /* "y": older only */
    static const char *const newer_nm[4] = { "c", "x", "a", "b" };  /* "x": newer only */
    enum { CAND = 30000, N = 20000 };
    for (int round = 0; round < 3; round++) {
        int aligned = round != 1;
        const char *const *onm = round < 2 ? same : older_nm;
        const char *const *nnm = round < 2 ? same : newer_nm;
        rng_state = 0x1234567ull + (uint64_t)round;
        struct snapshot_rec *r[2];
        for (int k = 0; k < 2; k++) {
            r[k] = calloc(N, sizeof *r[k]);
            ck_assert_ptr_nonnull(r[k]);
            /* N distinct candidates of CAND, in a random order */
            bool *used = calloc(CAND, 1);
            ck_assert_ptr_nonnull(used);
            for (size_t i = 0; i < N; i++) {
                size_t c;
                do
                    c = (size_t)(rng() % CAND);
                while (used[c]);
                used[c] = true;
                r[k][i].addr = 0x7f0000000000ull + (uint64_t)c * 48 + (aligned ? 0 : 1 + c % 7);
                r[k][i].size = 16 + rng() % 300;
                r[k][i].type = (uint32_t)(rng() % 4);
            }
            free(used);
        }
        pyheap_snapshot *older = build_named(r[0], N, onm), *newer = build_named(r[1], N, nnm);
        /* the reference, by search */
        uint64_t no = 0, nb = 0, go = 0, gb = 0, cnt[4] = { 0 }, byt[4] = { 0 };
        for (size_t j = 0; j < N; j++) {
            size_t k = pyheap_snapshot_find(older, pyheap_snapshot_addr(newer, j));
            uint32_t t = pyheap_snapshot_type(newer, j);
            if (k != SIZE_MAX && strcmp(onm[pyheap_snapshot_type(older, k)], nnm[t]) == 0)
                continue;
            no++;
            nb += pyheap_snapshot_size(newer, j);
            cnt[t]++;
            byt[t] += pyheap_snapshot_size(newer, j);
        }
        for (size_t k = 0; k < N; k++) {
            size_t j = pyheap_snapshot_find(newer, pyheap_snapshot_addr(older, k));
            if (j == SIZE_MAX || strcmp(onm[pyheap_snapshot_type(older, k)],
                                        nnm[pyheap_snapshot_type(newer, j)]) != 0) {
                go++;
                gb += pyheap_snapshot_size(older, k);
            }
        }
        ck_assert_uint_gt(no, 1000);
        ck_assert_uint_gt(go, 1000);
        ck_assert_uint_lt(no, N - 1000);
        pyheap_error err;
        pyheap_diff *d = NULL;
        ck_assert_int_eq(pyheap_diff_compute(older, newer, &d, &err), 0);
        check_diff(d, no, nb, go, gb, cnt, byt);
        pyheap_diff_free(d);
        pyheap_packed *p = NULL;
        ck_assert_int_eq(pyheap_snapshot_pack(older, &p, &err), 0);
        pyheap_snapshot_free(older);   /* the packed copy needs none of it */
        ck_assert_uint_eq(pyheap_packed_count(p), N);
        ck_assert_uint_eq(pyheap_packed_stats(p)->objects, N);
        /* deltas of ~72 bytes, sizes below 316, 4 types: 4-5 bytes an
         * object (deltas / 8 take 1 byte when aligned, 2 when not) */
        ck_assert_uint_le(pyheap_packed_bytes(p), (size_t)N * (aligned ? 4 : 5) + 512);
        ck_assert_int_eq(pyheap_diff_packed(p, newer, &d, &err), 0);
        check_diff(d, no, nb, go, gb, cnt, byt);
        pyheap_diff_free(d);
        /* against itself: nothing new, nothing gone */
        pyheap_packed *q = NULL;
        ck_assert_int_eq(pyheap_snapshot_pack(newer, &q, &err), 0);
        ck_assert_int_eq(pyheap_diff_packed(q, newer, &d, &err), 0);
        ck_assert_uint_eq(d->new_objects + d->gone_objects + d->ntypes, 0);
        pyheap_diff_free(d);
        pyheap_packed_free(q);
        pyheap_packed_free(p);
        pyheap_snapshot_free(newer);
        free(r[0]);
        free(r[1]);
    }
}
END_TEST

/* A slim snapshot shares its objects with the snapshot it was made of and
 * outlives it, in either order of freeing (ASan checks what is read and
 * that nothing leaks). */
START_TEST(test_slim_shares)
{
    for (int order = 0; order < 3; order++) {
        struct snapshot_rec recs[3] = {
            { 0x7f0000002000ull, 10, 1, 0 },
            { 0x7f0000001000ull, 20, 0, 0 },
            { 0x7f0000003000ull, 30, 1, 0 },
        };
        struct snapshot_edge_in edges[] = { { 0x7f0000001000ull, 2, WALK_LBL(LBL_INDEX, 0) } };
        pyheap_snapshot *s = build_xy(recs, 3, edges, 1), *v = NULL, *vv = NULL;
        pyheap_error err;
        ck_assert_int_eq(pyheap_snapshot_slim(s, &v, &err), 0);
        ck_assert_int_eq(pyheap_snapshot_slim(v, &vv, &err), 0); /* a view of a view */
        ck_assert_ptr_eq(v->addr, s->addr); /* shared, not copied */
        ck_assert_ptr_null(v->eoff);
        if (order == 0) {
            pyheap_snapshot_free(s);
            s = NULL;
        } else if (order == 1) {
            pyheap_snapshot_free(v);
            v = NULL;
        }
        pyheap_snapshot *live = v ? v : vv;
        ck_assert_uint_eq(pyheap_snapshot_count(live), 3);
        ck_assert_uint_eq(pyheap_snapshot_addr(live, 2), 0x7f0000003000ull);
        ck_assert_uint_eq(pyheap_snapshot_size(live, 0), 20);
        ck_assert_str_eq(pyheap_snapshot_type_name(live, pyheap_snapshot_type(live, 1)), "y");
        ck_assert_uint_eq(pyheap_snapshot_stats(live)->objects, 3);
        pyheap_snapshot_free(vv);
        pyheap_snapshot_free(v);
        pyheap_snapshot_free(s);
    }
}
END_TEST

/* The histogram of H's snapshot, sorted by bytes, into H. */
struct hist_call {
    pyheap_snapshot *s;
    pyheap_type_stat *h;
    size_t n;
    int rc;
};

static void *hist_run(void *arg)
{
    struct hist_call *c = arg;
    c->rc = pyheap_histogram(c->s, PYHEAP_SORT_BYTES, &c->h, &c->n, NULL);
    return NULL;
}

/* The per-type totals are made once per snapshot's objects (kept with
 * them, shared with its views) and give the same histograms as ever, also
 * to requests asking at the same time (ASan: no leak when one loses the
 * race to publish them). */
START_TEST(test_histogram_kept)
{
    struct snapshot_rec recs[4] = {
        { 0x7f0000002000ull, 10, 1, 0 },
        { 0x7f0000001000ull, 20, 0, 0 },
        { 0x7f0000003000ull, 30, 1, 0 },
        { 0x7f0000004000ull, 5, 1, 0 },
    };
    for (int round = 0; round < 50; round++) {
        pyheap_snapshot *s = build_xy(recs, 4, NULL, 0), *v = NULL;
        ck_assert_int_eq(pyheap_snapshot_slim(s, &v, NULL), 0);
        struct hist_call c[4];
        pthread_t th[4];
        for (int k = 0; k < 4; k++) {
            c[k] = (struct hist_call){ k % 2 ? v : s, NULL, 0, -1 };
            ck_assert_int_eq(pthread_create(&th[k], NULL, hist_run, &c[k]), 0);
        }
        for (int k = 0; k < 4; k++) {
            pthread_join(th[k], NULL);
            ck_assert_int_eq(c[k].rc, 0);
            ck_assert_uint_eq(c[k].n, 2);
            ck_assert_str_eq(c[k].h[0].name, "y");       /* 45 bytes in 3 */
            ck_assert_uint_eq(c[k].h[0].count, 3);
            ck_assert_uint_eq(c[k].h[0].bytes, 45);
            ck_assert_str_eq(c[k].h[1].name, "x");
            ck_assert_uint_eq(c[k].h[1].bytes, 20);
            free(c[k].h);
        }
        ck_assert_ptr_nonnull(s->totals);   /* kept with the objects */
        ck_assert_ptr_null(v->totals);      /* the view uses its base's */
        pyheap_type_stat *h = NULL;
        size_t n = 0;
        ck_assert_int_eq(pyheap_histogram(v, PYHEAP_SORT_COUNT, &h, &n, NULL), 0);
        ck_assert_uint_eq(n, 2);
        ck_assert_uint_eq(h[0].count, 3);
        ck_assert_uint_eq(h[1].count, 1);
        free(h);
        if (round % 2) {
            pyheap_snapshot_free(s);
            pyheap_snapshot_free(v);
        } else {
            pyheap_snapshot_free(v);
            pyheap_snapshot_free(s);
        }
    }
}
END_TEST

/* The rank index over unsorted input with repeats. */
START_TEST(test_addrindex_unsorted)
{
    uint64_t a[] = { 0x7f0000010010ull, 0x1000, 0x7f0000010008ull, 0x1000, 0x55d000000000ull,
                     0x7f0000020000ull };
    struct addrindex x;
    ck_assert_int_eq(pyheap_addrindex_build_unsorted(&x, a, 6), 0);
    ck_assert_uint_eq(x.n, 5);
    ck_assert_uint_eq(pyheap_addrindex_find(&x, 0x1000), 0);
    ck_assert_uint_eq(pyheap_addrindex_find(&x, 0x55d000000000ull), 1);
    ck_assert_uint_eq(pyheap_addrindex_find(&x, 0x7f0000010008ull), 2);
    ck_assert_uint_eq(pyheap_addrindex_find(&x, 0x7f0000010010ull), 3);
    ck_assert_uint_eq(pyheap_addrindex_find(&x, 0x7f0000020000ull), 4);
    ck_assert_uint_eq(pyheap_addrindex_find(&x, 0x7f0000010000ull), SIZE_MAX);
    ck_assert_uint_eq(pyheap_addrindex_find(&x, 1ull << 47), SIZE_MAX);
    uint64_t all[6];
    pyheap_addrindex_addrs(&x, all, 2);
    static const uint64_t want[] = { 0x1000, 0x55d000000000ull, 0x7f0000010008ull,
                                     0x7f0000010010ull, 0x7f0000020000ull };
    for (size_t i = 0; i < 5; i++)
        ck_assert_uint_eq(all[i], want[i]);
    pyheap_addrindex_free(&x);
    /* one misaligned: the same ranks from a sorted copy */
    a[1] = 0x1004;
    ck_assert_int_eq(pyheap_addrindex_build_unsorted(&x, a, 6), 0);
    ck_assert_uint_eq(x.n, 6);
    ck_assert_uint_eq(pyheap_addrindex_find(&x, 0x1000), 0);
    ck_assert_uint_eq(pyheap_addrindex_find(&x, 0x1004), 1);
    ck_assert_uint_eq(pyheap_addrindex_find(&x, 0x7f0000020000ull), 5);
    pyheap_addrindex_addrs(&x, all, 2);
    ck_assert_uint_eq(all[0], 0x1000);
    ck_assert_uint_eq(all[1], 0x1004);
    ck_assert_uint_eq(all[5], 0x7f0000020000ull);
    pyheap_addrindex_free(&x);
    /* sorted input: a tree below 2^47, binary search above */
    const uint64_t sorted[] = { 0x1000, 0x7f0000010008ull, (1ull << 47) + 8, (1ull << 48) };
    ck_assert_int_eq(pyheap_addrindex_build(&x, sorted, 4), 0);
    ck_assert_ptr_nonnull(x.top);
    pyheap_addrindex_addrs(&x, all, 2);
    for (size_t i = 0; i < 4; i++)
        ck_assert_uint_eq(all[i], sorted[i]);
    pyheap_addrindex_free(&x);
    ck_assert_int_eq(pyheap_addrindex_build_unsorted(&x, a, 0), 0);
    ck_assert_uint_eq(x.n, 0);
    ck_assert_uint_eq(pyheap_addrindex_find(&x, 0x1000), SIZE_MAX);
    pyheap_addrindex_free(&x);
}
END_TEST

Suite *suite_snapshot(void)
{
    Suite *su = suite_create("snapshot");
    TCase *tc = tcase_create("build");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_build_matches_reference);
    tcase_add_test(tc, test_build_threads);
    tcase_add_test(tc, test_build_index_given);
    tcase_add_test(tc, test_build_from_records);
    tcase_add_test(tc, test_slim_shares);
    tcase_add_test(tc, test_histogram_kept);
    tcase_add_test(tc, test_addrindex_unsorted);
    tcase_add_test(tc, test_diff_packed);
    suite_add_tcase(su, tc);
    return su;
}
