/* The walker's set of seen addresses: a radix tree of bitmaps (addrset.h). */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "addrset.h"
#include "internal.h"

#define TOP_SLOTS   ((size_t)1 << ADDRSET_TOP_BITS)
#define MID_SLOTS   ((size_t)1 << ADDRSET_MID_BITS)
#define ADDR_LIMIT  ((uint64_t)1 << (ADDRSET_TOP_BITS + ADDRSET_MID_BITS + ADDRSET_LEAF_SHIFT))
#define BLOCK_LEAVES 255   /* leaves per slab block (with its header, 256 KiB) */

/* The leaves first: a mapping's start is page-aligned, so each leaf starts
 * on a cache line. Mapped, not malloc'd (new_leaf): invisible to
 * LeakSanitizer, released by pyheap_addrset_free. */
struct addrset_block {
    uint64_t leaves[BLOCK_LEAVES][ADDRSET_LEAF_WORDS];
    struct addrset_block *next;
    size_t nused;
};

/* ADDR's bit in the leaf covering it (one bit per 8 bytes). */
static inline uint64_t leaf_bit(uint64_t addr)
{
    return (addr & (((uint64_t)1 << ADDRSET_LEAF_SHIFT) - 1)) >> 3;
}

static uint64_t *new_leaf(struct addrset *s)
{
    struct addrset_block *b = s->blocks;
    if (!b || b->nused == BLOCK_LEAVES) {
        /* Mapped with its pages written in, not calloc'd: a calloc'd page
         * is the shared zero page until written, so a bit tested before it
         * is set (addrset_set_bit_mt) faults twice, and the second fault
         * flushes the TLBs of the other walker threads' CPUs (an IPI
         * each; ~19k a census of the 8M bench heap). */
        void *m = mmap(NULL, sizeof *b, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        b = m;
        b->next = s->blocks;
        s->blocks = b;
    }
    s->leaves++;
    return b->leaves[b->nused++];
}

/* The leaf covering ADDR; created if CREATE; NULL if absent or no memory. */
static uint64_t *leaf_for(struct addrset *s, uint64_t addr, int create)
{
    uint64_t region = addr >> ADDRSET_LEAF_SHIFT;
    size_t ri = (size_t)region & (ADDRSET_RECENT - 1);
    if (s->recent.leaf[ri] && s->recent.region[ri] == region)
        return s->recent.leaf[ri];
    size_t ti = (size_t)(region >> ADDRSET_MID_BITS);
    size_t mi = (size_t)(region & (MID_SLOTS - 1));
    if (!s->top) {
        if (!create)
            return NULL;
        uint64_t ***top = calloc(TOP_SLOTS, sizeof *top);
        if (!top)
            return NULL;
        /* Release: pyheap_addrset_insert_mt reads the tree without lock. */
        __atomic_store_n(&s->top, top, __ATOMIC_RELEASE);
    }
    uint64_t **mid = s->top[ti];
    if (!mid) {
        if (!create)
            return NULL;
        mid = calloc(MID_SLOTS, sizeof *mid);
        if (!mid)
            return NULL;
        __atomic_store_n(&s->top[ti], mid, __ATOMIC_RELEASE);
    }
    uint64_t *leaf = mid[mi];
    if (!leaf) {
        if (!create)
            return NULL;
        leaf = new_leaf(s);
        if (!leaf)
            return NULL;
        __atomic_store_n(&mid[mi], leaf, __ATOMIC_RELEASE);
    }
    s->recent.region[ri] = region;
    s->recent.leaf[ri] = leaf;
    return leaf;
}

int pyheap_addrset_insert(struct addrset *s, uint64_t addr)
{
    if (addr >= ADDR_LIMIT || (addr & 7))
        return -1;
    uint64_t *leaf = leaf_for(s, addr, 1);
    if (!leaf)
        return -1;
    return addrset_set_bit(&leaf[leaf_bit(addr) >> 6], addr, &s->used);
}

/* The leaf word holding ADDR's bit (and ADDR ^ 8's), through the
 * thread's cursor; NULL for an ADDR out of range or out of memory. */
static uint64_t *word_mt(struct addrset *s, struct addrset_cursor *cur, void *lock,
                         uint64_t addr)
{
    if (addr >= ADDR_LIMIT || (addr & 7))
        return NULL;
    uint64_t region = addr >> ADDRSET_LEAF_SHIFT;
    size_t ri = (size_t)region & (ADDRSET_RECENT - 1);
    uint64_t *leaf = cur->recent.region[ri] == region ? cur->recent.leaf[ri] : NULL;
    if (!leaf) {
        /* Published pointers only ever go from NULL to a table for good. */
        uint64_t ***top = __atomic_load_n(&s->top, __ATOMIC_ACQUIRE);
        uint64_t **mid = top ? __atomic_load_n(&top[region >> ADDRSET_MID_BITS], __ATOMIC_ACQUIRE)
                             : NULL;
        leaf = mid ? __atomic_load_n(&mid[region & (MID_SLOTS - 1)], __ATOMIC_ACQUIRE) : NULL;
        if (!leaf) {
            pthread_mutex_lock(lock);
            /* leaf_for creates what is missing; its remembered leaves are
             * only touched under the lock here. */
            leaf = leaf_for(s, addr, 1);
            pthread_mutex_unlock(lock);
            if (!leaf)
                return NULL;
        }
        cur->recent.region[ri] = region;
        cur->recent.leaf[ri] = leaf;
    }
    uint64_t bit = leaf_bit(addr);
    return &leaf[bit >> 6];
}

int pyheap_addrset_insert_mt(struct addrset *s, struct addrset_cursor *cur, void *lock,
                             uint64_t addr)
{
    uint64_t *w = word_mt(s, cur, lock, addr);
    return w ? addrset_set_bit_mt(w, addr, &cur->inserted) : -1;
}

int pyheap_addrset_claim_mt(struct addrset *s, struct addrset_cursor *cur, void *lock,
                            uint64_t addr)
{
    uint64_t *w = word_mt(s, cur, lock, addr);
    if (!w)
        return -1;
    /* bits 2k and 2k+1 of a word: ADDR's and its partner's */
    unsigned b = (unsigned)(addr >> 3) & 63;
    uint64_t old = __atomic_fetch_or(w, (uint64_t)1 << b, __ATOMIC_ACQ_REL);
    return (int)((old >> b) & 1) | (int)(((old >> (b ^ 1)) & 1) << 1);
}

void pyheap_addrset_remove(struct addrset *s, uint64_t addr)
{
    if (addr >= ADDR_LIMIT || (addr & 7))
        return;
    uint64_t *leaf = leaf_for(s, addr, 0);
    if (!leaf)
        return;
    uint64_t bit = leaf_bit(addr);
    uint64_t mask = (uint64_t)1 << (bit & 63);
    if (leaf[bit >> 6] & mask) {
        leaf[bit >> 6] &= ~mask;
        s->used--;
    }
}

void pyheap_addrset_remove_mt(struct addrset *s, struct addrset_cursor *cur, void *lock,
                              uint64_t addr)
{
    uint64_t *w = word_mt(s, cur, lock, addr);
    if (w)
        __atomic_fetch_and(w, ~((uint64_t)1 << ((addr >> 3) & 63)), __ATOMIC_RELAXED);
}

int pyheap_addrset_has(const struct addrset *s, uint64_t addr)
{
    if (addr >= ADDR_LIMIT || (addr & 7) || !s->top)
        return 0;
    uint64_t region = addr >> ADDRSET_LEAF_SHIFT;
    uint64_t **mid = s->top[region >> ADDRSET_MID_BITS];
    if (!mid)
        return 0;
    const uint64_t *leaf = mid[region & (MID_SLOTS - 1)];
    if (!leaf)
        return 0;
    uint64_t bit = leaf_bit(addr);
    return (leaf[bit >> 6] >> (bit & 63)) & 1;
}

size_t pyheap_addrset_count_except(const struct addrset *s, const uint64_t *drop,
                                   size_t ndrop)
{
    /* Every leaf is in the tree once and in a slab block: the blocks are
     * read in one stream, not the tree's tables. */
    size_t n = 0;
    for (const struct addrset_block *b = s->blocks; b; b = b->next) {
        const uint64_t *words = (const uint64_t *)b->leaves;
        for (size_t w = 0; w < b->nused * ADDRSET_LEAF_WORDS; w++)
            n += pyheap_popcount64(words[w]);
    }
    if (ndrop == 0)
        return n;
    uint64_t *d = malloc(ndrop * sizeof *d);
    if (!d)
        return SIZE_MAX;
    memcpy(d, drop, ndrop * sizeof *d);
    size_t m = pyheap_u64_sort_unique(d, ndrop);
    for (size_t i = 0; i < m; i++)
        n -= (size_t)pyheap_addrset_has(s, d[i]);
    free(d);
    return n;
}

void pyheap_addrset_free(struct addrset *s)
{
    if (s->top) {
        for (size_t i = 0; i < TOP_SLOTS; i++)
            free(s->top[i]);
        free(s->top);
    }
    while (s->blocks) {
        struct addrset_block *n = s->blocks->next;
        munmap(s->blocks, sizeof *s->blocks);
        s->blocks = n;
    }
    *s = (struct addrset){ 0 };
}

/* ---- the rank index ---- */

struct addrindex_leaf {
    uint64_t bits[ADDRSET_LEAF_WORDS];
    uint16_t cum[ADDRSET_LEAF_WORDS]; /* set bits in the words before */
    uint64_t base;                    /* index of the leaf's first address */
    uint64_t region;                  /* its addresses >> ADDRSET_LEAF_SHIFT */
};

static int index_ok(uint64_t addr)
{
    return addr < ADDR_LIMIT && (addr & 7) == 0;
}

/* The i in [lo, hi) with sorted[i] == addr, or SIZE_MAX. */
static size_t bsearch_addr(const uint64_t *sorted, size_t lo, size_t hi, uint64_t addr)
{
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (sorted[mid] < addr)
            lo = mid + 1;
        else if (sorted[mid] > addr)
            hi = mid;
        else
            return mid;
    }
    return SIZE_MAX;
}

/* The leaf of REGION, created (zeroed) if absent; NULL on allocation
 * failure. The pointer is good until the next leaf is created. */
static struct addrindex_leaf *index_leaf(struct addrindex *x, uint64_t region)
{
    size_t ti = (size_t)(region >> ADDRSET_MID_BITS);
    uint32_t *mid = x->top[ti];
    if (!mid) {
        mid = calloc(MID_SLOTS, sizeof *mid);
        if (!mid)
            return NULL;
        x->top[ti] = mid;
    }
    uint32_t *slot = &mid[region & (MID_SLOTS - 1)];
    if (*slot)
        return &x->leaves[*slot - 1];
    if (x->nleaves == x->capleaves) {
        size_t cap = x->capleaves ? 2 * x->capleaves : 64;
        if (cap >= UINT32_MAX)
            return NULL;
        struct addrindex_leaf *l = realloc(x->leaves, cap * sizeof *l);
        if (!l)
            return NULL;
        x->leaves = l;
        x->capleaves = cap;
    }
    struct addrindex_leaf *leaf = &x->leaves[x->nleaves++];
    memset(leaf, 0, sizeof *leaf);
    leaf->region = region;
    *slot = (uint32_t)x->nleaves;
    return leaf;
}

/* The leaf of the index's tree covering ADDR (index_ok), or NULL. */
static inline struct addrindex_leaf *index_leaf_of(const struct addrindex *x, uint64_t addr)
{
    uint64_t region = addr >> ADDRSET_LEAF_SHIFT;
    const uint32_t *mid = x->top[region >> ADDRSET_MID_BITS];
    uint32_t l = mid ? mid[region & (MID_SLOTS - 1)] : 0;
    return l ? &x->leaves[l - 1] : NULL;
}

/* Set the bits of ADDRS[0..n) (all index_ok) in the tree. */
static int index_insert(struct addrindex *x, const uint64_t *addrs, size_t n)
{
    struct addrindex_leaf *leaf = NULL;
    uint64_t prev = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        uint64_t a = addrs[i];
        uint64_t region = a >> ADDRSET_LEAF_SHIFT;
        if (region != prev) {
            leaf = index_leaf(x, region);
            if (!leaf)
                return -1;
            prev = region;
        }
        uint64_t bit = leaf_bit(a);
        leaf->bits[bit >> 6] |= (uint64_t)1 << (bit & 63);
    }
    return 0;
}

/* Give the leaves their ranks, in address order; the number of addresses. */
static size_t index_rank(struct addrindex *x)
{
    size_t total = 0;
    for (size_t ti = 0; ti < TOP_SLOTS; ti++) {
        const uint32_t *mid = x->top[ti];
        if (!mid)
            continue;
        for (size_t mi = 0; mi < MID_SLOTS; mi++) {
            if (!mid[mi])
                continue;
            struct addrindex_leaf *leaf = &x->leaves[mid[mi] - 1];
            leaf->base = total;
            unsigned c = 0;
            for (size_t w = 0; w < ADDRSET_LEAF_WORDS; w++) {
                leaf->cum[w] = (uint16_t)c;
                c += pyheap_popcount64(leaf->bits[w]);
            }
            total += c;
        }
    }
    return total;
}

int pyheap_addrindex_build(struct addrindex *x, const uint64_t *sorted, size_t n)
{
    *x = (struct addrindex){ 0 };
    x->sorted = sorted;
    x->n = n;
    x->tree_end = n;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && sorted[i] <= sorted[i - 1])
            return -1;
        if (!index_ok(sorted[i])) {
            if (sorted[i] & 7)
                return 0; /* no tree: binary search over everything */
            x->tree_end = i; /* the rest lies above the tree's range */
            break;
        }
    }
    x->top = calloc(TOP_SLOTS, sizeof *x->top);
    if (!x->top || index_insert(x, sorted, x->tree_end) < 0) {
        pyheap_addrindex_free(x);
        return -1;
    }
    index_rank(x);
    return 0;
}


int pyheap_addrindex_build_unsorted(struct addrindex *x, const uint64_t *addrs, size_t n)
{
    *x = (struct addrindex){ 0 };
    size_t i = 0;
    while (i < n && index_ok(addrs[i]))
        i++;
    if (i < n) {
        /* Not a walk's addresses: index a sorted copy without repeats. */
        uint64_t *copy = malloc(n * sizeof *copy);
        if (!copy)
            return -1;
        memcpy(copy, addrs, n * sizeof *copy);
        size_t m = pyheap_u64_sort_unique(copy, n);
        if (pyheap_addrindex_build(x, copy, m) < 0) {
            free(copy);
            return -1;
        }
        x->owned = copy;
        return 0;
    }
    x->top = calloc(TOP_SLOTS, sizeof *x->top);
    if (!x->top || index_insert(x, addrs, n) < 0) {
        pyheap_addrindex_free(x);
        return -1;
    }
    x->n = x->tree_end = index_rank(x);
    return 0;
}

int pyheap_addrindex_from_set(struct addrindex *x, const struct addrset *s,
                              const uint64_t *drop, size_t ndrop)
{
    *x = (struct addrindex){ 0 };
    x->top = calloc(TOP_SLOTS, sizeof *x->top);
    if (!x->top)
        return -1;
    for (size_t ti = 0; s->top && ti < TOP_SLOTS; ti++) {
        uint64_t **mid = s->top[ti];
        for (size_t mi = 0; mid && mi < MID_SLOTS; mi++) {
            if (!mid[mi])
                continue;
            struct addrindex_leaf *leaf = index_leaf(x, (uint64_t)ti << ADDRSET_MID_BITS | mi);
            if (!leaf) {
                pyheap_addrindex_free(x);
                return -1;
            }
            memcpy(leaf->bits, mid[mi], sizeof leaf->bits);
        }
    }
    for (size_t i = 0; i < ndrop; i++) {
        uint64_t a = drop[i];
        struct addrindex_leaf *leaf = index_ok(a) ? index_leaf_of(x, a) : NULL;
        if (!leaf)
            continue;
        uint64_t bit = leaf_bit(a);
        leaf->bits[bit >> 6] &= ~((uint64_t)1 << (bit & 63));
    }
    x->n = x->tree_end = index_rank(x);
    return 0;
}

/* Leaves [lo, hi) of an index's tree write their addresses to out, each
 * from its rank on. */
struct addrs_slice {
    const struct addrindex *x;
    uint64_t *out;
    size_t lo, hi;
};

static void *addrs_slice(void *arg)
{
    const struct addrs_slice *sl = arg;
    for (size_t l = sl->lo; l < sl->hi; l++) {
        const struct addrindex_leaf *leaf = &sl->x->leaves[l];
        uint64_t *o = sl->out + leaf->base;
        uint64_t base = leaf->region << ADDRSET_LEAF_SHIFT;
        for (size_t w = 0; w < ADDRSET_LEAF_WORDS; w++)
            for (uint64_t v = leaf->bits[w]; v; v &= v - 1)
                *o++ = base + ((uint64_t)(w * 64 + (unsigned)__builtin_ctzll(v)) << 3);
    }
    return NULL;
}

void pyheap_addrindex_addrs(const struct addrindex *x, uint64_t *out, unsigned threads)
{
    if (x->top) {
        /* (the leaves are the tree's: each knows its rank) */
        struct addrs_slice sl[PYHEAP_MAX_SCAN_THREADS];
        unsigned nsl = threads == 0 ? 1 : threads > PYHEAP_MAX_SCAN_THREADS
                                              ? PYHEAP_MAX_SCAN_THREADS : threads;
        if (x->nleaves < 64 * (size_t)nsl)
            nsl = 1;
        for (unsigned k = 0; k < nsl; k++)
            sl[k] = (struct addrs_slice){ x, out, x->nleaves * k / nsl,
                                          x->nleaves * (k + 1) / nsl };
        pyheap_run_slices(addrs_slice, sl, sizeof *sl, nsl);
    }
    /* the sorted part: all of it without a tree, or what lies above it */
    for (size_t i = x->top ? x->tree_end : 0; i < x->n; i++)
        out[i] = x->sorted[i];
}

size_t pyheap_addrindex_find(const struct addrindex *x, uint64_t addr)
{
    if (!x->top)
        return bsearch_addr(x->sorted, 0, x->n, addr);
    if (!index_ok(addr))
        return addr & 7 ? SIZE_MAX : bsearch_addr(x->sorted, x->tree_end, x->n, addr);
    const struct addrindex_leaf *leaf = index_leaf_of(x, addr);
    if (!leaf)
        return SIZE_MAX;
    uint64_t bit = leaf_bit(addr);
    uint64_t word = leaf->bits[bit >> 6];
    uint64_t below = (uint64_t)1 << (bit & 63);
    if (!(word & below))
        return SIZE_MAX;
    return (size_t)(leaf->base + leaf->cum[bit >> 6] + pyheap_popcount64(word & (below - 1)));
}

void pyheap_addrindex_free(struct addrindex *x)
{
    if (!x)
        return;
    if (x->top) {
        for (size_t i = 0; i < TOP_SLOTS; i++)
            free(x->top[i]);
        free(x->top);
    }
    free(x->leaves);
    free(x->owned);
    *x = (struct addrindex){ 0 };
}
