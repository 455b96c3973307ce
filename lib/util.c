/* Small helpers shared inside lib/: formatting and growing arrays. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

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
