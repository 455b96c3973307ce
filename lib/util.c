/* Small helpers shared inside lib/: formatting and growing arrays. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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
