/* The immutable snapshot model and the histogram analysis. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "addrset.h"
#include "snapshot.h"
#include "walk.h"

static void free_names(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* ---- what a walk found ---- */

/* Grow *P to NCAP elements of ELEM bytes; on failure *P is unchanged. */
static int grow_to(void **p, size_t ncap, size_t elem)
{
    void *q = realloc(*p, ncap * elem);
    if (!q)
        return -1;
    *p = q;
    return 0;
}

/* The capacity after CAP (doubling) of arrays indexed by uint32_t; 0 when
 * full. */
static size_t next_cap(size_t cap)
{
    const size_t max = (size_t)UINT32_MAX - 1;
    if (cap >= max)
        return 0;
    size_t n = cap ? 2 * cap : 1024;
    return n < max ? n : max;
}

int pyheap_snapshot_in_grow_edges(struct snapshot_in *in)
{
    if (in->nedges < in->capedges)
        return 0;
    size_t cap = next_cap(in->capedges);
    if (!cap || grow_to((void **)&in->etarget, cap, sizeof *in->etarget) < 0 ||
        grow_to((void **)&in->elabel, cap, sizeof *in->elabel) < 0)
        return -1;
    in->capedges = cap;
    return 0;
}

int pyheap_snapshot_in_object(struct snapshot_in *in, uint64_t addr, uint64_t size,
                              uint32_t type)
{
    if (in->n == in->cap) {
        size_t cap = next_cap(in->cap);
        if (!cap || grow_to((void **)&in->addr, cap, sizeof *in->addr) < 0 ||
            grow_to((void **)&in->size, cap, sizeof *in->size) < 0 ||
            grow_to((void **)&in->type, cap, sizeof *in->type) < 0 ||
            grow_to((void **)&in->eend, cap, sizeof *in->eend) < 0)
            return -1;
        in->cap = cap;
    }
    in->addr[in->n] = addr;
    in->size[in->n] = size;
    in->type[in->n] = type;
    in->eend[in->n] = (uint32_t)in->nedges;
    in->n++;
    return 0;
}

void pyheap_snapshot_in_free(struct snapshot_in *in)
{
    free(in->addr);
    free(in->size);
    free(in->type);
    free(in->eend);
    free(in->etarget);
    free(in->elabel);
    memset(in, 0, sizeof *in);
}

/* ---- the build ---- */

#define NO_OBJ UINT32_MAX

static inline bool bit_test(const uint64_t *bits, size_t i)
{
    return (bits[i >> 6] >> (i & 63)) & 1;
}

static inline void bit_set(uint64_t *bits, size_t i)
{
    bits[i >> 6] |= (uint64_t)1 << (i & 63);
}

/* Resolve the targets of IN's edges through X and drop the edges that lose
 * their source or target, in place and in discovery order: afterwards
 * in->eend[i] is the number of edges object i keeps, the first KEPT
 * uint32_t of in->etarget are target indices and the first KEPT labels
 * theirs; both arrays shrink to KEPT. Returns the number dropped. */
static uint64_t resolve_edges(struct snapshot_in *in, const struct addrindex *x,
                              const uint32_t *perm, size_t *kept)
{
    /* The uint32_t targets are written over the uint64_t addresses front
     * to back (the write position never passes the read position); memcpy
     * keeps the two views of one buffer well-defined. */
    unsigned char *tb = (unsigned char *)in->etarget;
    uint64_t dropped = 0;
    size_t w = 0, lo = 0;
    for (size_t i = 0; i < in->n; i++) {
        size_t hi = in->eend[i];
        if (hi < lo || hi > in->nedges)
            hi = lo; /* not what the appender makes: no edges */
        size_t start = w;
        if (perm[i] == NO_OBJ) {
            dropped += hi - lo;
        } else {
            for (size_t e = lo; e < hi; e++) {
                uint64_t a;
                memcpy(&a, tb + e * sizeof a, sizeof a);
                size_t t = pyheap_addrindex_find(x, a);
                if (t == SIZE_MAX) {
                    dropped++;
                    continue;
                }
                uint32_t t32 = (uint32_t)t;
                memcpy(tb + w * sizeof t32, &t32, sizeof t32);
                in->elabel[w] = in->elabel[e];
                w++;
            }
        }
        in->eend[i] = (uint32_t)(w - start);
        lo = hi;
    }
    dropped += in->nedges - lo; /* after the last object: no source */
    /* A shrinking realloc that fails leaves the block as it was. */
    void *p = realloc(in->etarget, (w ? w : 1) * sizeof(uint32_t));
    if (p)
        in->etarget = p;
    p = realloc(in->elabel, (w ? w : 1) * sizeof *in->elabel);
    if (p)
        in->elabel = p;
    in->nedges = in->capedges = w;
    *kept = w;
    return dropped;
}

/* Free what a build takes: NAMES, G's labels and root names. */
static void release_taken(char **names, size_t ntypes, struct snapshot_graph_in *g)
{
    free_names(names, ntypes);
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

int pyheap_snapshot_build_in(struct snapshot_in *in, char **names, size_t ntypes,
                             struct snapshot_graph_in *g, const pyheap_scan_stats *stats,
                             pyheap_snapshot **out, pyheap_error *err)
{
    struct snapshot_graph_in empty;
    memset(&empty, 0, sizeof empty);
    if (!g)
        g = &empty;
    size_t n = in->n;
    struct addrindex x = { 0 };
    uint32_t *perm = NULL;
    uint64_t *bits = NULL;
    pyheap_snapshot *s = calloc(1, sizeof *s);
    if (!s || n >= UINT32_MAX)
        goto fail;
    s->names = names;
    s->ntypes = ntypes;
    names = NULL;
    s->stats = *stats;
    s->labels = g->labels;
    s->nlabels = g->nlabels;
    g->labels = NULL;
    g->nlabels = 0;

    /* Rank the addresses: x maps an address to its object index. */
    if (pyheap_addrindex_build_unsorted(&x, in->addr, n) < 0)
        goto fail;
    size_t m = x.n;
    /* perm: discovery order -> object index; NO_OBJ for a repeat. */
    size_t nbits = m / 64 + 1;
    perm = malloc((n ? n : 1) * sizeof *perm);
    bits = calloc(nbits, sizeof *bits);
    if (!perm || !bits)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        size_t r = pyheap_addrindex_find(&x, in->addr[i]);
        if (bit_test(bits, r)) {
            perm[i] = NO_OBJ;
        } else {
            bit_set(bits, r);
            perm[i] = (uint32_t)r;
        }
    }
    size_t kept;
    s->edges_dropped = resolve_edges(in, &x, perm, &kept);

    /* Objects to address order, one array at a time, each input freed as
     * soon as it is consumed. */
    size_t alloc = m ? m : 1;
    s->addr = malloc(alloc * sizeof *s->addr);
    if (!s->addr)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (perm[i] != NO_OBJ)
            s->addr[perm[i]] = in->addr[i];
    free(in->addr);
    in->addr = NULL;
    s->n = m;
    s->size = malloc(alloc * sizeof *s->size);
    if (!s->size)
        goto fail;
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        if (perm[i] != NO_OBJ) {
            s->size[perm[i]] = in->size[i];
            bytes += in->size[i];
        }
    free(in->size);
    in->size = NULL;
    s->type = malloc(alloc * sizeof *s->type);
    if (!s->type)
        goto fail;
    memset(bits, 0, nbits * sizeof *bits); /* now: edges into the object are cut */
    for (size_t i = 0; i < n; i++) {
        uint32_t p = perm[i];
        if (p == NO_OBJ)
            continue;
        uint32_t ty = in->type[i] & ~SNAPSHOT_IN_CUT;
        s->type[p] = ty < ntypes ? ty : 0;
        if (in->type[i] & SNAPSHOT_IN_CUT)
            bit_set(bits, p);
    }
    free(in->type);
    in->type = NULL;
    s->eoff = malloc((m + 1) * sizeof *s->eoff);
    if (!s->eoff)
        goto fail;
    for (size_t i = 0; i < n; i++)
        if (perm[i] != NO_OBJ)
            s->eoff[perm[i]] = in->eend[i];
    free(in->eend);
    in->eend = NULL;
    uint32_t sum = 0;
    for (size_t i = 0; i < m; i++) {
        uint32_t c = s->eoff[i];
        s->eoff[i] = sum;
        sum += c;
    }
    s->eoff[m] = sum;
    s->nedges = kept;
    s->stats.objects = m;
    s->stats.bytes = bytes;

    /* Edges to address order: each object's run moves to its offset. */
    const uint32_t *tin = (const uint32_t *)(void *)in->etarget;
    s->etarget = malloc((kept ? kept : 1) * sizeof *s->etarget);
    if (!s->etarget)
        goto fail;
    for (size_t i = 0, r = 0; i < n; i++) {
        uint32_t p = perm[i];
        if (p == NO_OBJ)
            continue;
        for (uint32_t k = s->eoff[p]; k < s->eoff[p + 1]; k++)
            s->etarget[k] = tin[r++];
    }
    free(in->etarget);
    in->etarget = NULL;
    s->elabel = malloc((kept ? kept : 1) * sizeof *s->elabel);
    if (!s->elabel)
        goto fail;
    for (size_t i = 0, r = 0; i < n; i++) {
        uint32_t p = perm[i];
        if (p == NO_OBJ)
            continue;
        for (uint32_t k = s->eoff[p]; k < s->eoff[p + 1]; k++) {
            uint32_t l = in->elabel[r++];
            if (bit_test(bits, s->etarget[k]))
                l = WALK_LBL_WITH_FLAGS(l, PYHEAP_EDGE_CUT);
            s->elabel[k] = l;
        }
    }
    free(in->elabel);
    in->elabel = NULL;
    free(perm);
    perm = NULL;
    free(bits);
    bits = NULL;

    /* Roots that are objects, in the order given. */
    s->root_obj = malloc((g->nroots ? g->nroots : 1) * sizeof *s->root_obj);
    s->root_name = calloc(g->nroots ? g->nroots : 1, sizeof *s->root_name);
    s->root_prio = malloc(g->nroots ? g->nroots : 1);
    if (!s->root_obj || !s->root_name || !s->root_prio)
        goto fail;
    for (size_t r = 0; r < g->nroots; r++) {
        size_t i = pyheap_addrindex_find(&x, g->roots[r].addr);
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
    pyheap_addrindex_free(&x);
    pyheap_snapshot_in_free(in);
    *out = s;
    return 0;

fail:
    pyheap_addrindex_free(&x);
    free(perm);
    free(bits);
    pyheap_snapshot_in_free(in);
    release_taken(names, ntypes, g);
    pyheap_snapshot_free(s);
    if (n >= UINT32_MAX)
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0,
                              "too many objects for a snapshot (%zu)", n);
    return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0,
                          "out of memory building a snapshot of %zu objects", n);
}

int pyheap_snapshot_build(const struct snapshot_rec *recs, size_t n, char **names,
                          size_t ntypes, struct snapshot_graph_in *g,
                          const pyheap_scan_stats *stats,
                          pyheap_snapshot **out, pyheap_error *err)
{
    struct snapshot_in in;
    memset(&in, 0, sizeof in);
    size_t ne = g ? g->nedges : 0;
    /* The edges grouped by source, each group in the given order (a
     * counting sort); those whose source is no record go after the last
     * object, where the build drops them. */
    size_t *end = calloc(n + 2, sizeof *end);
    size_t *order = malloc((ne ? ne : 1) * sizeof *order);
    bool ok = end && order;
    for (size_t e = 0; ok && e < ne; e++)
        end[(g->edges[e].src < n ? g->edges[e].src : n) + 1]++;
    for (size_t i = 0; ok && i <= n; i++)
        end[i + 1] += end[i];
    for (size_t e = 0; ok && e < ne; e++)
        order[end[g->edges[e].src < n ? g->edges[e].src : n]++] = e;
    /* end[i] is now the end of source i's group. */
    for (size_t i = 0, k = 0; ok && i <= n; i++) {
        for (; ok && k < end[i]; k++) {
            const struct snapshot_edge_in *ed = &g->edges[order[k]];
            ok = snapshot_in_edge(&in, ed->target, ed->label) == 0;
        }
        uint32_t ty = (recs && i < n) ? recs[i].type & ~SNAPSHOT_IN_CUT : 0;
        if (ok && i < n && (recs[i].flags & SNAPSHOT_REC_CUT))
            ty |= SNAPSHOT_IN_CUT;
        if (ok && i < n)
            ok = pyheap_snapshot_in_object(&in, recs[i].addr, recs[i].size, ty) == 0;
    }
    free(end);
    free(order);
    if (!ok) {
        pyheap_snapshot_in_free(&in);
        release_taken(names, ntypes, g);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0,
                              "out of memory building a snapshot of %zu objects", n);
    }
    return pyheap_snapshot_build_in(&in, names, ntypes, g, stats, out, err);
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
