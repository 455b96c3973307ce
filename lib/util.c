/* Small helpers shared inside lib/: formatting and growing arrays. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

bool pyheap_buf_fmt(char *buf, size_t len, const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(buf, len, f, ap);
    va_end(ap);
    return n >= 0 && (size_t)n < len;
}

bool pyheap_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return false;
        ncap *= 2;
    }
    if (elem && ncap > SIZE_MAX / elem)
        return false;
    void *n = realloc(*p, ncap * elem);
    if (!n)
        return false;
    *p = n;
    *cap = ncap;
    return true;
}

int pyheap_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

size_t pyheap_u64_sort_unique(uint64_t *a, size_t n)
{
    qsort(a, n, sizeof *a, pyheap_u64_cmp);
    size_t m = 0;
    for (size_t k = 0; k < n; k++)
        if (m == 0 || a[k] != a[m - 1])
            a[m++] = a[k];
    return m;
}

void *pyheap_alloc_big(size_t n, size_t elem, bool zero)
{
    if (n == 0)
        n = 1;
    if (elem && n > SIZE_MAX / elem)
        return NULL;
    size_t len = n * elem;
    void *p = zero ? calloc(n, elem) : malloc(len);
    const uintptr_t huge = (uintptr_t)2 << 20;
    if (p && len >= 2 * huge) {
        uintptr_t lo = ((uintptr_t)p + huge - 1) & ~(huge - 1);
        uintptr_t hi = ((uintptr_t)p + len) & ~(huge - 1);
        if (hi > lo)
            (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE); /* a hint */
    }
    return p;
}

void pyheap_run_slices(void *(*fn)(void *), void *args, size_t size, unsigned n)
{
    pthread_t th[PYHEAP_MAX_SCAN_THREADS];
    bool started[PYHEAP_MAX_SCAN_THREADS];
    if (n > PYHEAP_MAX_SCAN_THREADS)
        n = PYHEAP_MAX_SCAN_THREADS;
    for (unsigned k = 1; k < n; k++)
        started[k] = pthread_create(&th[k], NULL, fn, (char *)args + k * size) == 0;
    fn(args);
    for (unsigned k = 1; k < n; k++) {
        if (started[k])
            pthread_join(th[k], NULL);
        else
            fn((char *)args + k * size);
    }
}

/* ---- radix sort (pyheap_radix_sort) ---- */

enum { DIGIT = 11, BUCKETS = 1 << DIGIT };

/* One slice of a radix pass: from[lo, hi) counted by digit (at bit SH),
 * then scattered to `to` from the positions in cnt. */
struct rxslice {
    const uint64_t *from;
    uint64_t *to;
    size_t lo, hi;
    unsigned sh;
    size_t *cnt;    /* BUCKETS */
};

static void *radix_count(void *arg)
{
    struct rxslice *x = arg;
    memset(x->cnt, 0, BUCKETS * sizeof *x->cnt);
    for (size_t i = x->lo; i < x->hi; i++)
        x->cnt[(x->from[i] >> x->sh) & (BUCKETS - 1)]++;
    return NULL;
}

static void *radix_scatter(void *arg)
{
    struct rxslice *x = arg;
    for (size_t i = x->lo; i < x->hi; i++)
        x->to[x->cnt[(x->from[i] >> x->sh) & (BUCKETS - 1)]++] = x->from[i];
    return NULL;
}

int pyheap_radix_sort(uint64_t *a, uint64_t *tmp, size_t n, unsigned lo, unsigned nslices)
{
    uint64_t all_or = 0, all_and = ~0ULL;
    for (size_t i = 0; i < n; i++) {
        all_or |= a[i];
        all_and &= a[i];
    }
    uint64_t vary = (all_or ^ all_and) >> lo << lo;
    if (!vary)
        return 0;
    unsigned first = (unsigned)__builtin_ctzll(vary), last = 63 - (unsigned)__builtin_clzll(vary);
    unsigned nsl = nslices < 1 ? 1 : nslices > PYHEAP_MAX_SCAN_THREADS ? PYHEAP_MAX_SCAN_THREADS
                                                                      : nslices;
    size_t *cnt = malloc((size_t)nsl * BUCKETS * sizeof *cnt);
    if (!cnt)
        return -1;
    struct rxslice sl[PYHEAP_MAX_SCAN_THREADS];
    uint64_t *from = a, *to = tmp;
    for (unsigned sh = first; sh <= last; sh += DIGIT) {
        for (unsigned k = 0; k < nsl; k++)
            sl[k] = (struct rxslice){ from, to, n * k / nsl, n * (k + 1) / nsl, sh,
                                      cnt + (size_t)k * BUCKETS };
        pyheap_run_slices(radix_count, sl, sizeof *sl, nsl);
        size_t pos = 0;
        for (size_t d = 0; d < BUCKETS; d++)
            for (unsigned k = 0; k < nsl; k++) {
                size_t c = sl[k].cnt[d];
                sl[k].cnt[d] = pos;
                pos += c;
            }
        pyheap_run_slices(radix_scatter, sl, sizeof *sl, nsl);
        uint64_t *x = from;
        from = to;
        to = x;
    }
    if (from != a)
        memcpy(a, from, n * sizeof *a);
    free(cnt);
    return 0;
}
