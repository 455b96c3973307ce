/* The immutable snapshot model and the histogram analysis. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "addrset.h"
#include "snapshot.h"
#include "walk.h"

/* Sort key: address, then discovery order (kept in the low bits of a
 * side array), so duplicates keep the first record. */
struct order {
    uint64_t addr;
    uint32_t disc;
};

static void free_names(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Sort ORD[0..n) by address, stably (so duplicates keep discovery order):
 * LSD radix over the 64-bit address in 11-bit digits, skipping digits that
 * are the same for every key (the high bits of one heap usually are). Needs
 * a second array of n entries. 0, or -1 on allocation failure. */
#define RADIX_BITS 11
#define RADIX_SIZE (1u << RADIX_BITS)
#define RADIX_DIGITS 6 /* 66 bits */

static int radix_sort(struct order *ord, size_t n)
{
    if (n < 2)
        return 0;
    struct order *tmp = malloc(n * sizeof *tmp);
    size_t (*count)[RADIX_SIZE] = calloc(RADIX_DIGITS, sizeof *count);
    if (!tmp || !count) {
        free(tmp);
        free(count);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t k = ord[i].addr;
        for (int d = 0; d < RADIX_DIGITS; d++)
            count[d][(k >> (d * RADIX_BITS)) & (RADIX_SIZE - 1)]++;
    }
    struct order *src = ord, *dst = tmp;
    for (int d = 0; d < RADIX_DIGITS; d++) {
        size_t *c = count[d];
        uint64_t first = (src[0].addr >> (d * RADIX_BITS)) & (RADIX_SIZE - 1);
        if (c[first] == n)
            continue; /* one bucket: this digit does not reorder */
        size_t sum = 0;
        for (size_t b = 0; b < RADIX_SIZE; b++) {
            size_t k = c[b];
            c[b] = sum;
            sum += k;
        }
        for (size_t i = 0; i < n; i++) {
            size_t b = (size_t)((src[i].addr >> (d * RADIX_BITS)) & (RADIX_SIZE - 1));
            dst[c[b]++] = src[i];
        }
        struct order *t = src;
        src = dst;
        dst = t;
    }
    if (src != ord)
        memcpy(ord, src, n * sizeof *ord);
    free(tmp);
    free(count);
    return 0;
}

static int build_graph(pyheap_snapshot *s, const uint32_t *perm, size_t nrec,
                       const uint8_t *cut, struct snapshot_graph_in *g)
{
    s->labels = g->labels;
    s->nlabels = g->nlabels;
    g->labels = NULL;
    g->nlabels = 0;
    s->eoff = calloc(s->n + 1, sizeof *s->eoff);
    if (!s->eoff)
        return -1;
    struct addrindex m;
    if (pyheap_addrindex_build(&m, s->addr, s->n) < 0)
        return -1;
    /* Resolve targets once; count per source. */
    uint32_t *tgt = malloc((g->nedges ? g->nedges : 1) * sizeof *tgt);
    if (!tgt) {
        pyheap_addrindex_free(&m);
        return -1;
    }
    size_t kept = 0;
    for (size_t e = 0; e < g->nedges; e++) {
        const struct snapshot_edge_in *in = &g->edges[e];
        size_t src = in->src < nrec ? perm[in->src] : UINT32_MAX;
        size_t t = pyheap_addrindex_find(&m, in->target);
        if (src == UINT32_MAX || t == SIZE_MAX || kept >= UINT32_MAX - 1) {
            tgt[e] = UINT32_MAX;
            s->edges_dropped++;
            continue;
        }
        tgt[e] = (uint32_t)t;
        s->eoff[src + 1]++;
        kept++;
    }
    for (size_t i = 0; i < s->n; i++)
        s->eoff[i + 1] += s->eoff[i];
    s->nedges = kept;
    s->etarget = malloc((kept ? kept : 1) * sizeof *s->etarget);
    s->elabel = malloc((kept ? kept : 1) * sizeof *s->elabel);
    uint32_t *fill = malloc((s->n ? s->n : 1) * sizeof *fill);
    if (!s->etarget || !s->elabel || !fill) {
        free(fill);
        free(tgt);
        pyheap_addrindex_free(&m);
        return -1;
    }
    memcpy(fill, s->eoff, s->n * sizeof *fill);
    for (size_t e = 0; e < g->nedges; e++) {
        if (tgt[e] == UINT32_MAX)
            continue;
        uint32_t src = perm[g->edges[e].src];
        uint32_t k = fill[src]++;
        uint32_t l = g->edges[e].label;
        if (cut[tgt[e]])
            l = WALK_LBL_WITH_FLAGS(l, PYHEAP_EDGE_CUT);
        s->etarget[k] = tgt[e];
        s->elabel[k] = l;
    }
    free(fill);
    free(tgt);
    /* Roots that are objects, in the order given. */
    s->root_obj = malloc((g->nroots ? g->nroots : 1) * sizeof *s->root_obj);
    s->root_name = calloc(g->nroots ? g->nroots : 1, sizeof *s->root_name);
    s->root_prio = malloc(g->nroots ? g->nroots : 1);
    if (!s->root_obj || !s->root_name || !s->root_prio) {
        pyheap_addrindex_free(&m);
        return -1;
    }
    for (size_t r = 0; r < g->nroots; r++) {
        size_t i = pyheap_addrindex_find(&m, g->roots[r].addr);
        if (i == SIZE_MAX) {
            free(g->roots[r].name);
            g->roots[r].name = NULL;
            continue;
        }
        s->root_obj[s->nroots] = (uint32_t)i;
        s->root_name[s->nroots] = g->roots[r].name;
        s->root_prio[s->nroots] = (uint8_t)(g->roots[r].prio ? 1 : 0);
        g->roots[r].name = NULL;
        s->nroots++;
    }
    pyheap_addrindex_free(&m);
    return 0;
}

static void graph_in_release(struct snapshot_graph_in *g)
{
    if (!g)
        return;
    free_names(g->labels, g->nlabels);
    g->labels = NULL;
    g->nlabels = 0;
    for (size_t r = 0; r < g->nroots; r++) {
        free(g->roots[r].name);
        g->roots[r].name = NULL;
    }
}

int pyheap_snapshot_build(struct snapshot_rec *recs, size_t n, char **names,
                          size_t ntypes, struct snapshot_graph_in *g,
                          const pyheap_scan_stats *stats,
                          pyheap_snapshot **out, pyheap_error *err)
{
    pyheap_snapshot *s = calloc(1, sizeof *s);
    if (!s) {
        free_names(names, ntypes);
        graph_in_release(g);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0,
                              "out of memory building a snapshot");
    }
    s->names = names;
    s->ntypes = ntypes;
    s->stats = *stats;
    size_t alloc = n ? n : 1;
    struct order *ord = malloc(alloc * sizeof *ord);
    uint32_t *perm = malloc(alloc * sizeof *perm);
    uint8_t *cut = calloc(alloc, 1);
    s->addr = malloc(alloc * sizeof *s->addr);
    s->size = malloc(alloc * sizeof *s->size);
    s->type = malloc(alloc * sizeof *s->type);
    if (!ord || !perm || !cut || !s->addr || !s->size || !s->type || n >= UINT32_MAX) {
        free(ord);
        free(perm);
        free(cut);
        graph_in_release(g);
        pyheap_snapshot_free(s);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0,
                              "out of memory building a snapshot of %zu objects", n);
    }
    for (size_t i = 0; i < n; i++)
        ord[i] = (struct order){ recs[i].addr, (uint32_t)i };
    if (radix_sort(ord, n) < 0) {
        free(ord);
        free(perm);
        free(cut);
        graph_in_release(g);
        pyheap_snapshot_free(s);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0,
                              "out of memory sorting a snapshot of %zu objects", n);
    }
    size_t m = 0;
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        const struct snapshot_rec *r = &recs[ord[i].disc];
        if (m > 0 && s->addr[m - 1] == r->addr) {
            perm[ord[i].disc] = UINT32_MAX; /* a duplicate: its edges are dropped */
            continue;
        }
        perm[ord[i].disc] = (uint32_t)m;
        s->addr[m] = r->addr;
        s->size[m] = r->size;
        s->type[m] = r->type < ntypes ? r->type : 0;
        cut[m] = (r->flags & SNAPSHOT_REC_CUT) != 0;
        bytes += r->size;
        m++;
    }
    free(ord);
    s->n = m;
    s->stats.objects = m;
    s->stats.bytes = bytes;
    struct snapshot_graph_in empty;
    memset(&empty, 0, sizeof empty);
    int rc = build_graph(s, perm, n, cut, g ? g : &empty);
    free(perm);
    free(cut);
    if (rc < 0) {
        graph_in_release(g);
        pyheap_snapshot_free(s);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0,
                              "out of memory building the object graph of %zu objects", n);
    }
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
    free(s->eoff);
    free(s->etarget);
    free(s->elabel);
    free_names(s->labels, s->nlabels);
    free_names(s->root_name, s->nroots);
    free(s->root_obj);
    free(s->root_prio);
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

/* ---- the graph ---- */

size_t pyheap_label_render(char *const *strs, size_t nstrs, uint32_t label,
                           char *buf, size_t cap)
{
    char dummy[1];
    if (!buf || cap == 0) {
        buf = dummy;
        cap = 1;
    }
    uint32_t p = WALK_LBL_PAYLOAD(label);
    const char *str = p < nstrs && strs ? strs[p] : "?";
    int r;
    switch (WALK_LBL_KIND(label)) {
    case LBL_KEY_STR: r = snprintf(buf, cap, "['%s']", str); break;
    case LBL_KEY_INT: r = snprintf(buf, cap, "[%u]", p); break;
    case LBL_KEY_TEXT: r = snprintf(buf, cap, "[%s]", str); break;
    case LBL_ATTR: r = snprintf(buf, cap, ".%s", str); break;
    case LBL_INDEX: r = snprintf(buf, cap, "[%u]", p); break;
    case LBL_ITEM: r = snprintf(buf, cap, "[*]"); break;
    case LBL_DICT_KEY: r = snprintf(buf, cap, "(key)"); break;
    case LBL_LOCAL: r = snprintf(buf, cap, ".f_locals['%s']", str); break;
    case LBL_OFFSET: r = snprintf(buf, cap, "<+%u>", p); break;
    case LBL_TEXT: r = snprintf(buf, cap, "%s", str); break;
    default: r = snprintf(buf, cap, "?"); break;
    }
    return r < 0 ? 0 : (size_t)r;
}

size_t pyheap_snapshot_nedges(const pyheap_snapshot *s, size_t i)
{
    if (!s->eoff || i >= s->n)
        return 0;
    return s->eoff[i + 1] - s->eoff[i];
}

size_t pyheap_snapshot_edge_target(const pyheap_snapshot *s, size_t i, size_t k)
{
    if (k >= pyheap_snapshot_nedges(s, i))
        return SIZE_MAX;
    return s->etarget[s->eoff[i] + k];
}

unsigned pyheap_snapshot_edge_flags(const pyheap_snapshot *s, size_t i, size_t k)
{
    if (k >= pyheap_snapshot_nedges(s, i))
        return 0;
    return WALK_LBL_FLAGS(s->elabel[s->eoff[i] + k]);
}

size_t pyheap_snapshot_edge_label(const pyheap_snapshot *s, size_t i, size_t k,
                                  char *buf, size_t cap)
{
    if (k >= pyheap_snapshot_nedges(s, i)) {
        if (buf && cap)
            buf[0] = 0;
        return 0;
    }
    return pyheap_label_render(s->labels, s->nlabels, s->elabel[s->eoff[i] + k], buf, cap);
}

size_t pyheap_snapshot_find(const pyheap_snapshot *s, uint64_t addr)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->addr[mid] < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n && s->addr[lo] == addr ? lo : SIZE_MAX;
}

size_t pyheap_snapshot_nroots(const pyheap_snapshot *s)
{
    return s->nroots;
}

size_t pyheap_snapshot_root_object(const pyheap_snapshot *s, size_t r)
{
    return r < s->nroots ? s->root_obj[r] : SIZE_MAX;
}

const char *pyheap_snapshot_root_name(const pyheap_snapshot *s, size_t r)
{
    return r < s->nroots ? s->root_name[r] : "";
}

/* ---- loaded snapshots (snapfile.c) ---- */

void pyheap_snapshot_parts_free(struct snapshot_parts *p)
{
    free(p->addr);
    free(p->size);
    free(p->type);
    free_names(p->names, p->ntypes);
    free(p->eoff);
    free(p->etarget);
    free(p->elabel);
    free_names(p->labels, p->nlabels);
    free(p->root_obj);
    free_names(p->root_name, p->nroots);
    free(p->root_prio);
    memset(p, 0, sizeof *p);
}

int pyheap_snapshot_adopt(struct snapshot_parts *p, pyheap_snapshot **out,
                          pyheap_error *err)
{
    pyheap_snapshot *s = calloc(1, sizeof *s);
    if (!s) {
        pyheap_snapshot_parts_free(p);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0, "out of memory loading a snapshot");
    }
    s->n = p->n;
    s->addr = p->addr;
    s->size = p->size;
    s->type = p->type;
    s->ntypes = p->ntypes;
    s->names = p->names;
    s->stats = p->stats;
    s->eoff = p->eoff;
    s->etarget = p->etarget;
    s->elabel = p->elabel;
    s->nedges = p->nedges;
    s->labels = p->labels;
    s->nlabels = p->nlabels;
    s->nroots = p->nroots;
    s->root_obj = p->root_obj;
    s->root_name = p->root_name;
    s->root_prio = p->root_prio;
    memset(p, 0, sizeof *p);
    *out = s;
    return 0;
}
