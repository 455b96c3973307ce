/*
 * A set of 8-aligned user-space addresses (the walker's "seen" set), as a
 * radix tree of bitmaps: 32768 top slots (address bits 32..46), 65536 mid
 * slots (bits 16..31, allocated lazily), and a 1 KiB leaf bitmap per
 * 64 KiB of address space (one bit per 8 bytes).
 *
 * Why not a hash set: objects of one heap sit in a few dense regions, so a
 * bitmap costs ~1/64 of the heap (37 MiB for a 2.4 GB heap, against 16
 * bytes per object at half load), needs no rehashing, and consecutive
 * objects hit the same cache lines instead of random ones.
 */
#ifndef PYHEAP_ADDRSET_H
#define PYHEAP_ADDRSET_H

#include <stddef.h>
#include <stdint.h>

#define ADDRSET_TOP_BITS  15
#define ADDRSET_MID_BITS  16
#define ADDRSET_LEAF_SHIFT 16            /* 64 KiB of address space */
#define ADDRSET_LEAF_WORDS ((1u << (ADDRSET_LEAF_SHIFT - 3)) / 64)

struct addrset_block;

/* Leaves remembered by region (addr >> ADDRSET_LEAF_SHIFT), direct-mapped:
 * a walk inserts from several runs of addresses at once (each size class of
 * the allocator is its own), so one remembered leaf would miss on most
 * inserts and cost the three dependent loads of the tree. */
#define ADDRSET_RECENT 32

struct addrset_recent {
    uint64_t region[ADDRSET_RECENT];
    uint64_t *leaf[ADDRSET_RECENT];  /* NULL: the slot is empty */
};

struct addrset {
    uint64_t ***top;        /* [1 << ADDRSET_TOP_BITS] mid tables, or NULL */
    struct addrset_recent recent;
    struct addrset_block *blocks;  /* slab of leaves */
    size_t used;            /* addresses in the set */
    size_t leaves;          /* leaves allocated */
};

/* A zeroed struct addrset is an empty set. ADDR must be 8-aligned and below
 * 2^47 (the caller checks plausibility first). 1 if ADDR was newly inserted,
 * 0 if present, -1 on allocation failure or an ADDR out of range. */
int pyheap_addrset_insert(struct addrset *s, uint64_t addr);
/* 1 if present, 0 if not. */
int pyheap_addrset_has(const struct addrset *s, uint64_t addr);
/* How many addresses S holds that are not among DROP[0..NDROP) (repeats
 * allowed): the size pyheap_addrindex_from_set(S, DROP) would have,
 * without building it. SIZE_MAX when out of memory. */
size_t pyheap_addrset_count_except(const struct addrset *s, const uint64_t *drop,
                                   size_t ndrop);
/* Take ADDR out of S (absent: nothing happens). */
void pyheap_addrset_remove(struct addrset *s, uint64_t addr);
/* The same insert for several threads sharing S: bits are set atomically,
 * tables and leaves are created under LOCK (a pthread_mutex_t), and each
 * thread keeps its own CURSOR (zeroed at first) instead of S's remembered
 * leaves. The cursor counts the thread's inserts (S->used is not kept: one
 * counter written by every thread would cost more than the set). */
struct addrset_cursor {
    struct addrset_recent recent;
    size_t inserted;
};
int pyheap_addrset_insert_mt(struct addrset *s, struct addrset_cursor *cur, void *lock,
                             uint64_t addr);

/* The word of ADDR's bit when ADDR's leaf is remembered in R, else NULL
 * (the callers' inline fast path; ADDR 8-aligned below 2^47). */
static inline uint64_t *addrset_recent_word(const struct addrset_recent *r, uint64_t addr)
{
    uint64_t region = addr >> ADDRSET_LEAF_SHIFT;
    size_t ri = (size_t)region & (ADDRSET_RECENT - 1);
    if (r->region[ri] != region || !r->leaf[ri])
        return NULL;
    uint64_t bit = (addr & (((uint64_t)1 << ADDRSET_LEAF_SHIFT) - 1)) >> 3;
    return &r->leaf[ri][bit >> 6];
}

/* Set ADDR's bit in its word W: 1 if it was clear (counted in *USED), 0
 * if set. The _mt variant with atomics, for words other threads share. */
static inline int addrset_set_bit(uint64_t *w, uint64_t addr, size_t *used)
{
    uint64_t mask = (uint64_t)1 << ((addr >> 3) & 63);
    if (*w & mask)
        return 0;
    *w |= mask;
    ++*used;
    return 1;
}

static inline int addrset_set_bit_mt(uint64_t *w, uint64_t addr, size_t *used)
{
    uint64_t mask = (uint64_t)1 << ((addr >> 3) & 63);
    if (__atomic_load_n(w, __ATOMIC_RELAXED) & mask)
        return 0;
    if (__atomic_fetch_or(w, mask, __ATOMIC_RELAXED) & mask)
        return 0;
    ++*used;
    return 1;
}

/* pyheap_addrset_insert, inline when ADDR's leaf is remembered. */
static inline int addrset_insert_fast(struct addrset *s, uint64_t addr)
{
    uint64_t *w = (addr & 7) == 0 ? addrset_recent_word(&s->recent, addr) : NULL;
    return w ? addrset_set_bit(w, addr, &s->used) : pyheap_addrset_insert(s, addr);
}

/* pyheap_addrset_insert_mt, inline when ADDR's leaf is in CUR. */
static inline int addrset_insert_mt_fast(struct addrset *s, struct addrset_cursor *cur,
                                         void *lock, uint64_t addr)
{
    uint64_t *w = (addr & 7) == 0 ? addrset_recent_word(&cur->recent, addr) : NULL;
    return w ? addrset_set_bit_mt(w, addr, &cur->inserted)
             : pyheap_addrset_insert_mt(s, cur, lock, addr);
}


/* Claims by two parties on one set, made with one atomic OR: ADDR and its
 * partner ADDR ^ 8 share a word, so a claimant of ADDR learns at once
 * whether the partner was claimed before it. Sets ADDR; returns bit 0: ADDR
 * was set already, bit 1: ADDR ^ 8 was; -1 as above. */
int pyheap_addrset_claim_mt(struct addrset *s, struct addrset_cursor *cur, void *lock,
                            uint64_t addr);
/* The same removal for several threads sharing S (an atomic AND). */
void pyheap_addrset_remove_mt(struct addrset *s, struct addrset_cursor *cur, void *lock,
                              uint64_t addr);
void pyheap_addrset_free(struct addrset *s);

/* Address -> index: the rank of an address among a set of distinct
 * addresses (the snapshot's objects), the same tree shape with a rank per
 * leaf: a lookup is two table loads, a bit test and a popcount, and the
 * index costs ~1.3 KiB per 64 KiB of address space that holds objects
 * instead of a hash table of 8 bytes per object. */
struct addrindex_leaf;
struct addrindex {
    uint32_t **top;                 /* mid tables of leaf number + 1; NULL:
                                     * binary search only */
    struct addrindex_leaf *leaves;
    size_t nleaves, capleaves;
    const uint64_t *sorted;         /* borrowed, or `owned` */
    uint64_t *owned;
    size_t n;                       /* distinct addresses: ranks are [0, n) */
    size_t tree_end;                /* sorted[tree_end..n) lie above 2^47 */
};

/* Index the N distinct ascending addresses of SORTED (borrowed: it must
 * outlive the index). Addresses at or above 2^47 are found by binary search
 * (no walk produces them); a misaligned one makes the whole index a binary
 * search. 0, or -1 on allocation failure or input not strictly ascending. */
int pyheap_addrindex_build(struct addrindex *x, const uint64_t *sorted, size_t n);
/* Index the N addresses of ADDRS, in any order and with repeats (not
 * borrowed). x->n is then the number of distinct addresses and find()
 * answers an address's rank among them. 8-aligned addresses below 2^47 (a
 * walk's) go into the tree in one pass; any other makes the index a sorted
 * copy. 0, or -1 on allocation failure. */
int pyheap_addrindex_build_unsorted(struct addrindex *x, const uint64_t *addrs, size_t n);
/* Index the addresses of the set S (which the index does not borrow) but
 * for the NDROP addresses of DROP, without going through them one by one:
 * each leaf of S is copied. 0, or -1 on allocation failure. */
int pyheap_addrindex_from_set(struct addrindex *x, const struct addrset *s,
                              const uint64_t *drop, size_t ndrop);
/* The x->n indexed addresses, ascending, into OUT (room for x->n): in
 * one pass over the index, with no lookup, shared out between up to
 * THREADS threads (0: 1). */
void pyheap_addrindex_addrs(const struct addrindex *x, uint64_t *out, unsigned threads);
/* The i with sorted[i] == ADDR (the rank of ADDR), or SIZE_MAX. */
size_t pyheap_addrindex_find(const struct addrindex *x, uint64_t addr);
void pyheap_addrindex_free(struct addrindex *x);

#endif
