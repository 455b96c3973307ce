/* The walker's seen-set (lib/addrset.c) against a sorted reference. */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "addrset.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

START_TEST(test_addrset_dense_and_sparse)
{
    struct addrset s = { 0 };
    /* Dense: every 16th byte of 4 MiB, inserted twice. */
    uint64_t base = 0x7f0000000000ull - (4u << 20);
    for (int pass = 0; pass < 2; pass++)
        for (uint64_t a = base; a < base + (4u << 20); a += 16)
            ck_assert_int_eq(pyheap_addrset_insert(&s, a), pass == 0 ? 1 : 0);
    ck_assert_uint_eq(s.used, (4u << 20) / 16);
    ck_assert_int_eq(pyheap_addrset_has(&s, base + 8), 0);
    ck_assert_int_eq(pyheap_addrset_has(&s, base + 16), 1);
    /* Sparse, all over the 47-bit space. */
    enum { N = 20000 };
    uint64_t *keys = malloc(N * sizeof *keys);
    ck_assert_ptr_nonnull(keys);
    size_t fresh = 0;
    for (int i = 0; i < N; i++) {
        keys[i] = (rng() & ((1ull << 47) - 1)) & ~7ull;
        int had = pyheap_addrset_has(&s, keys[i]);
        int r = pyheap_addrset_insert(&s, keys[i]);
        ck_assert_int_eq(r, had ? 0 : 1);
        fresh += (size_t)r;
    }
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(pyheap_addrset_has(&s, keys[i]), 1);
    ck_assert_uint_eq(s.used, (4u << 20) / 16 + fresh);
    /* Out of range or misaligned: refused, never stored. */
    ck_assert_int_eq(pyheap_addrset_insert(&s, 1ull << 47), -1);
    ck_assert_int_eq(pyheap_addrset_insert(&s, base + 4), -1);
    ck_assert_int_eq(pyheap_addrset_has(&s, 1ull << 47), 0);
    free(keys);
    pyheap_addrset_free(&s);
    ck_assert_uint_eq(s.used, 0);
    ck_assert_int_eq(pyheap_addrset_has(&s, base + 16), 0);
    /* Freeing an empty set is fine. */
    pyheap_addrset_free(&s);
}
END_TEST

/* The leaves remembered by region (ADDRSET_RECENT, direct-mapped): inserts
 * that go back and forth between regions sharing a slot, through the
 * inline inserts the walker uses, land in their own leaves. */
START_TEST(test_addrset_recent_regions)
{
    enum { REGIONS = 3 * ADDRSET_RECENT + 5, PER = 40 };
    const uint64_t leaf = (uint64_t)1 << ADDRSET_LEAF_SHIFT;
    /* region r: every ADDRSET_RECENT-th region from a base, so all share
     * slot 0, plus neighbours that share the other slots */
    uint64_t base = 0x7f1200000000ull;
    for (int mt = 0; mt < 2; mt++) {
        struct addrset s = { 0 };
        struct addrset_cursor cur = { 0 };
        pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
        /* first, region 0, which the zeroed slots name (with no leaf):
         * created, then found inline */
        for (int k = 0; k < 2; k++) {
            uint64_t a = 0x1000 + (uint64_t)k * 8;
            ck_assert_int_eq(mt ? addrset_insert_mt_fast(&s, &cur, &lock, a)
                                : addrset_insert_fast(&s, a), 1);
            ck_assert_int_eq(mt ? addrset_insert_mt_fast(&s, &cur, &lock, a)
                                : addrset_insert_fast(&s, a), 0);
            ck_assert_int_eq(pyheap_addrset_has(&s, a), 1);
        }
        size_t inserted = 2;
        for (int pass = 0; pass < 2; pass++)
            for (int k = 0; k < PER; k++)
                for (int r = 0; r < REGIONS; r++) {
                    uint64_t region = (uint64_t)(r % 3) + (uint64_t)(r / 3) * ADDRSET_RECENT;
                    uint64_t a = base + region * leaf + (uint64_t)k * 24;
                    int got = mt ? addrset_insert_mt_fast(&s, &cur, &lock, a)
                                 : addrset_insert_fast(&s, a);
                    ck_assert_int_eq(got, pass == 0 ? 1 : 0);
                    inserted += (size_t)got;
                }
        ck_assert_uint_eq(inserted, (size_t)REGIONS * PER + 2);
        ck_assert_uint_eq(mt ? cur.inserted : s.used, (size_t)REGIONS * PER + 2);
        for (int r = 0; r < REGIONS; r++) {
            uint64_t region = (uint64_t)(r % 3) + (uint64_t)(r / 3) * ADDRSET_RECENT;
            for (int k = 0; k < PER; k++) {
                uint64_t a = base + region * leaf + (uint64_t)k * 24;
                ck_assert_int_eq(pyheap_addrset_has(&s, a), 1);
                ck_assert_int_eq(pyheap_addrset_has(&s, a + 8), 0);
            }
        }
        ck_assert_uint_eq(s.leaves, (size_t)REGIONS + 1);
        /* misaligned and out-of-range addresses take the checked path */
        ck_assert_int_eq(addrset_insert_fast(&s, base + 4), -1);
        ck_assert_int_eq(addrset_insert_mt_fast(&s, &cur, &lock, (uint64_t)1 << 50), -1);
        pyheap_addrset_free(&s);
    }
}
END_TEST

/* Removal: the address alone goes (its neighbours in the word stay), a
 * second removal or one of an absent or invalid address changes nothing,
 * and the address can be inserted anew; the same with the threads'
 * variant. */
START_TEST(test_addrset_remove)
{
    struct addrset s = { 0 };
    const uint64_t a = 0x7f0000001000ull;
    for (uint64_t x = a; x < a + 64 * 8; x += 8)
        ck_assert_int_eq(pyheap_addrset_insert(&s, x), 1);
    pyheap_addrset_remove(&s, a + 8 * 5);
    pyheap_addrset_remove(&s, a + 8 * 5);
    pyheap_addrset_remove(&s, a + 0x100000);   /* no leaf */
    pyheap_addrset_remove(&s, a + 3);          /* misaligned */
    ck_assert_uint_eq(s.used, 63);
    for (uint64_t x = a; x < a + 64 * 8; x += 8)
        ck_assert_int_eq(pyheap_addrset_has(&s, x), x != a + 8 * 5);
    ck_assert_int_eq(pyheap_addrset_insert(&s, a + 8 * 5), 1);
    pyheap_addrset_free(&s);

    struct addrset m = { 0 };
    struct addrset_cursor c = { 0 };
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    for (uint64_t x = a; x < a + 64 * 8; x += 8)
        ck_assert_int_eq(pyheap_addrset_insert_mt(&m, &c, &lock, x), 1);
    pyheap_addrset_remove_mt(&m, &c, &lock, a + 8 * 63);
    pyheap_addrset_remove_mt(&m, &c, &lock, a + 3);
    for (uint64_t x = a; x < a + 64 * 8; x += 8)
        ck_assert_int_eq(pyheap_addrset_insert_mt(&m, &c, &lock, x), x == a + 8 * 63);
    pyheap_addrset_free(&m);
}
END_TEST

/* Claims of two parties: a node's address and its address ^ 8 share a
 * word, so each claimant learns with its own claim whether the other was
 * first. */
START_TEST(test_addrset_claims)
{
    struct addrset s = { 0 };
    struct addrset_cursor c1 = { 0 }, c2 = { 0 };
    pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
    for (uint64_t a = 0x7f0000000000ull; a < 0x7f0000000000ull + 4096; a += 16) {
        uint64_t mine = a & 32 ? a ^ 8 : a, theirs = mine ^ 8;
        ck_assert_int_eq(pyheap_addrset_claim_mt(&s, &c1, &lock, mine), 0);
        ck_assert_int_eq(pyheap_addrset_claim_mt(&s, &c2, &lock, theirs), 2);  /* after me */
        ck_assert_int_eq(pyheap_addrset_claim_mt(&s, &c1, &lock, mine), 3);    /* again */
    }
    /* a node's claims leave its neighbours' alone */
    ck_assert_int_eq(pyheap_addrset_claim_mt(&s, &c1, &lock, 0x7f0000002000ull), 0);
    ck_assert_int_eq(pyheap_addrset_claim_mt(&s, &c1, &lock, 0x7f0000002010ull), 0);
    ck_assert_int_eq(pyheap_addrset_claim_mt(&s, &c2, &lock, 0x7f0000002018ull), 2);
    ck_assert_int_eq(pyheap_addrset_claim_mt(&s, &c2, &lock, 0x7f0000002028ull), 0);
    ck_assert_int_eq(pyheap_addrset_claim_mt(&s, &c1, &lock, 0x7f0000000001ull), -1);
    ck_assert_int_eq(pyheap_addrset_claim_mt(&s, &c1, &lock, 1ull << 47), -1);
    pyheap_addrset_free(&s);
}
END_TEST

/* An index copied from a set, less the addresses to drop: the ranks of
 * the sorted rest; dropped, never-set and out-of-range addresses absent. */
START_TEST(test_addrindex_from_set)
{
    enum { N = 100000 };
    uint64_t *a = malloc(N * sizeof *a), *keep = malloc(N * sizeof *keep),
             *drop = malloc((N + 2) * sizeof *drop);
    ck_assert(a && keep && drop);
    struct addrset s = { 0 };
    uint64_t x = 0x7f0000000000ull;
    size_t nkeep = 0, ndrop = 0;
    for (int i = 0; i < N; i++) {
        uint64_t r = rng();
        x += (r & 7) == 0 ? ((r >> 8) & 0xfffff) * 16 + 16 : ((r >> 8) & 3) * 16 + 16;
        a[i] = x;
    }
    /* inserted in a scrambled order; every 7th dropped (some twice) */
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(pyheap_addrset_insert(&s, a[(size_t)i * 7919 % N]), 1);
    for (int i = 0; i < N; i++) {
        if (i % 7 == 3) {
            drop[ndrop++] = a[i];
            if (i % 2)
                drop[ndrop++] = a[i];
        } else {
            keep[nkeep++] = a[i];
        }
    }
    drop[ndrop++] = 0x1000;            /* in no leaf */
    uint64_t extra = (1ull << 47) + 8; /* out of the tree's range */
    drop[ndrop++] = extra;
    /* the count the census checks without building the index */
    ck_assert_uint_eq(pyheap_addrset_count_except(&s, drop, ndrop), nkeep);
    ck_assert_uint_eq(pyheap_addrset_count_except(&s, NULL, 0), N);
    ck_assert_uint_eq(pyheap_addrset_count_except(&s, drop + ndrop - 2, 2), N);
    struct addrindex ix;
    ck_assert_int_eq(pyheap_addrindex_from_set(&ix, &s, drop, ndrop), 0);
    ck_assert_uint_eq(ix.n, nkeep);
    for (size_t i = 0; i < nkeep; i++)
        ck_assert_uint_eq(pyheap_addrindex_find(&ix, keep[i]), i);
    for (size_t i = 0; i < ndrop; i++)
        ck_assert_uint_eq(pyheap_addrindex_find(&ix, drop[i]), SIZE_MAX);
    ck_assert_uint_eq(pyheap_addrindex_find(&ix, a[0] + 8), SIZE_MAX);
    uint64_t *back = malloc((nkeep ? nkeep : 1) * sizeof *back);
    ck_assert_ptr_nonnull(back);
    ck_assert_uint_ge(ix.nleaves, 8 * 64);   /* enough to be shared out */
    static const unsigned threads[] = { 1, 2, 3, 8 };
    for (size_t t = 0; t < sizeof threads / sizeof threads[0]; t++) {
        memset(back, 0, (nkeep ? nkeep : 1) * sizeof *back);
        pyheap_addrindex_addrs(&ix, back, threads[t]);
        for (size_t i = 0; i < nkeep; i++)
            ck_assert_uint_eq(back[i], keep[i]);
    }
    pyheap_addrindex_free(&ix);
    /* an empty set */
    struct addrset e = { 0 };
    ck_assert_int_eq(pyheap_addrindex_from_set(&ix, &e, NULL, 0), 0);
    ck_assert_uint_eq(ix.n, 0);
    ck_assert_uint_eq(pyheap_addrset_count_except(&e, drop, ndrop), 0);
    ck_assert_uint_eq(pyheap_addrindex_find(&ix, a[0]), SIZE_MAX);
    pyheap_addrindex_free(&ix);
    pyheap_addrset_free(&s);
    free(back);
    free(a);
    free(keep);
    free(drop);
}
END_TEST

START_TEST(test_addrindex_ranks)
{
    enum { N = 200000 };
    uint64_t *a = malloc((N + 2) * sizeof *a);
    ck_assert_ptr_nonnull(a);
    /* Dense runs and far jumps, ascending and distinct. */
    uint64_t x = 0x10000;
    for (int i = 0; i < N; i++) {
        uint64_t r = rng();
        x += (r & 3) == 0 ? ((r >> 8) & 0xffffff) * 8 + 8 : ((r >> 8) & 7) * 8 + 8;
        a[i] = x;
    }
    a[N] = 1ull << 47;      /* above the tree: binary search */
    a[N + 1] = 1ull << 48;
    struct addrindex ix;
    ck_assert_int_eq(pyheap_addrindex_build(&ix, a, N + 2), 0);
    for (int i = 0; i < N + 2; i++) {
        ck_assert_uint_eq(pyheap_addrindex_find(&ix, a[i]), (size_t)i);
        if (i < N && a[i] + 8 != a[i + 1])
            ck_assert_uint_eq(pyheap_addrindex_find(&ix, a[i] + 8), SIZE_MAX);
    }
    ck_assert_uint_eq(pyheap_addrindex_find(&ix, a[0] - 8), SIZE_MAX);
    ck_assert_uint_eq(pyheap_addrindex_find(&ix, a[5] + 4), SIZE_MAX);
    ck_assert_uint_eq(pyheap_addrindex_find(&ix, (1ull << 47) + 8), SIZE_MAX);
    pyheap_addrindex_free(&ix);
    /* Misaligned addresses: a binary search over all. */
    uint64_t odd[] = { 0x1000, 0x1004, 0x2000, 1ull << 50 };
    ck_assert_int_eq(pyheap_addrindex_build(&ix, odd, 4), 0);
    for (size_t i = 0; i < 4; i++)
        ck_assert_uint_eq(pyheap_addrindex_find(&ix, odd[i]), i);
    ck_assert_uint_eq(pyheap_addrindex_find(&ix, 0x1008), SIZE_MAX);
    pyheap_addrindex_free(&ix);
    /* Unsorted or duplicate input is refused. */
    uint64_t bad1[] = { 0x2000, 0x1000 }, bad2[] = { 0x2000, 0x2000 };
    ck_assert_int_eq(pyheap_addrindex_build(&ix, bad1, 2), -1);
    ck_assert_int_eq(pyheap_addrindex_build(&ix, bad2, 2), -1);
    /* Empty. */
    ck_assert_int_eq(pyheap_addrindex_build(&ix, a, 0), 0);
    ck_assert_uint_eq(pyheap_addrindex_find(&ix, a[0]), SIZE_MAX);
    pyheap_addrindex_free(&ix);
    free(a);
}
END_TEST

Suite *suite_addrset(void)
{
    Suite *su = suite_create("addrset");
    TCase *tc = tcase_create("core");
    /* Millions of inserts: ~15 s under ASan on a loaded 2-core machine. */
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_addrset_dense_and_sparse);
    tcase_add_test(tc, test_addrset_claims);
    tcase_add_test(tc, test_addrset_remove);
    tcase_add_test(tc, test_addrset_recent_regions);
    tcase_add_test(tc, test_addrindex_ranks);
    tcase_add_test(tc, test_addrindex_from_set);
    suite_add_tcase(su, tc);
    return su;
}
