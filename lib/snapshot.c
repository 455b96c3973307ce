/* The immutable snapshot model and the histogram analysis. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "snapshot.h"

static int rec_cmp(const void *a, const void *b)
{
    const struct snapshot_rec *x = a, *y = b;
    return (x->addr > y->addr) - (x->addr < y->addr);
}

static void free_names(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int pyheap_snapshot_build(struct snapshot_rec *recs, size_t n, char **names,
                          size_t ntypes, const pyheap_scan_stats *stats,
                          pyheap_snapshot **out, pyheap_error *err)
{
    pyheap_snapshot *s = calloc(1, sizeof *s);
    if (!s) {
        free_names(names, ntypes);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0,
                              "out of memory building a snapshot");
    }
    s->names = names;
    s->ntypes = ntypes;
    s->stats = *stats;
    if (n > 0)
        qsort(recs, n, sizeof *recs, rec_cmp);
    size_t alloc = n ? n : 1;
    s->addr = malloc(alloc * sizeof *s->addr);
    s->size = malloc(alloc * sizeof *s->size);
    s->type = malloc(alloc * sizeof *s->type);
    if (!s->addr || !s->size || !s->type) {
        pyheap_snapshot_free(s);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0,
                              "out of memory building a snapshot of %zu objects", n);
    }
    size_t m = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (m > 0 && s->addr[m - 1] == recs[i].addr)
            continue;
        s->addr[m] = recs[i].addr;
        s->size[m] = recs[i].size;
        s->type[m] = recs[i].type < ntypes ? recs[i].type : 0;
        bytes += recs[i].size;
        m++;
    }
    s->n = m;
    s->stats.objects = m;
    s->stats.bytes = bytes;
    *out = s;
    return 0;
}

int pyheap_snapshot_take(pyheap_target *t, const pyheap_scan_opts *opts,
                         pyheap_snapshot **out, pyheap_error *err)
{
    if (!t || !out)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "pyheap_snapshot_take needs a target and an output pointer");
    return pyheap_walk(t, opts, out, err);
}

void pyheap_snapshot_free(pyheap_snapshot *s)
{
    if (!s)
        return;
    free(s->addr);
    free(s->size);
    free(s->type);
    free_names(s->names, s->ntypes);
    free(s);
}

const pyheap_scan_stats *pyheap_snapshot_stats(const pyheap_snapshot *s)
{
    return &s->stats;
}

size_t pyheap_snapshot_count(const pyheap_snapshot *s)
{
    return s->n;
}

uint64_t pyheap_snapshot_addr(const pyheap_snapshot *s, size_t i)
{
    return i < s->n ? s->addr[i] : 0;
}

uint64_t pyheap_snapshot_size(const pyheap_snapshot *s, size_t i)
{
    return i < s->n ? s->size[i] : 0;
}

uint32_t pyheap_snapshot_type(const pyheap_snapshot *s, size_t i)
{
    return i < s->n ? s->type[i] : 0;
}

size_t pyheap_snapshot_ntypes(const pyheap_snapshot *s)
{
    return s->ntypes;
}

const char *pyheap_snapshot_type_name(const pyheap_snapshot *s, uint32_t type)
{
    return type < s->ntypes ? s->names[type] : "?";
}

static int stat_cmp(const pyheap_type_stat *x, const pyheap_type_stat *y,
                    pyheap_sort sort)
{
    uint64_t a1 = sort == PYHEAP_SORT_COUNT ? x->count : x->bytes;
    uint64_t b1 = sort == PYHEAP_SORT_COUNT ? y->count : y->bytes;
    uint64_t a2 = sort == PYHEAP_SORT_COUNT ? x->bytes : x->count;
    uint64_t b2 = sort == PYHEAP_SORT_COUNT ? y->bytes : y->count;
    if (a1 != b1)
        return a1 > b1 ? -1 : 1;
    if (a2 != b2)
        return a2 > b2 ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_bytes(const void *a, const void *b)
{
    return stat_cmp(a, b, PYHEAP_SORT_BYTES);
}

static int cmp_count(const void *a, const void *b)
{
    return stat_cmp(a, b, PYHEAP_SORT_COUNT);
}

int pyheap_histogram(const pyheap_snapshot *s, pyheap_sort sort,
                     pyheap_type_stat **out, size_t *n, pyheap_error *err)
{
    if (!s || !out || !n)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "pyheap_histogram needs a snapshot and output pointers");
    if (sort != PYHEAP_SORT_BYTES && sort != PYHEAP_SORT_COUNT)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "unknown histogram sort order %d", (int)sort);
    size_t nt = s->ntypes ? s->ntypes : 1;
    pyheap_type_stat *all = calloc(nt, sizeof *all);
    if (!all)
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0,
                              "out of memory for a histogram of %zu types", nt);
    for (size_t i = 0; i < s->ntypes; i++) {
        all[i].type = (uint32_t)i;
        all[i].name = s->names[i];
    }
    for (size_t i = 0; i < s->n; i++) {
        uint32_t ty = s->type[i];
        if (ty >= s->ntypes)
            continue;
        all[ty].count++;
        all[ty].bytes += s->size[i];
    }
    size_t m = 0;
    for (size_t i = 0; i < s->ntypes; i++)
        if (all[i].count > 0)
            all[m++] = all[i];
    if (m > 0)
        qsort(all, m, sizeof *all, sort == PYHEAP_SORT_COUNT ? cmp_count : cmp_bytes);
    *out = all;
    *n = m;
    return 0;
}
