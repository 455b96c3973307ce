/*
 * Analyses of a snapshot's object graph (pure computation, no process):
 * type lookup by name, referrers grouped by (referrer type, edge label)
 * over several levels, shortest paths from the roots rendered as Python
 * expressions, and objects reachable from no root. See docs/graph.md.
 *
 * Everything works on flat arrays indexed by object index: per level of
 * referrers, one pass over the forward edges builds a reverse CSR of the
 * strong (non-weak) edges into that level's objects alone; one BFS that
 * stops once the asked objects are reached; (key, object) pairs grouped by
 * a hash of keys and a radix sort. Nothing is allocated per edge.
 *
 * With opts->threads > 1 the passes over the whole heap (the selection of
 * the objects, each level's pass over the edges) are cut in contiguous
 * slices, one per thread, whose results are joined in slice order: the
 * same arrays one thread makes, so the same report.
 */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "snapshot.h"
#include "walk.h"

#define DEFAULT_DEPTH      3
#define MAX_DEPTH          10
#define DEFAULT_GROUPS     20
#define DEFAULT_PATHS      5
/* A referrer type with more distinct str keys than this (e.g. a cache
 * keyed by request id) is grouped as one "[*]" group. */
#define MERGE_STR_KEYS     16
#define MAX_PATH_HOPS      256
#define MAX_PATH_TEXT      1024

/* The group "type" of roots: the objects are held by the interpreter
 * (a module in sys.modules, a frame's local...), named in `via`. */
#define ROOT_TYPE UINT32_MAX

#define IS_ROOT   (UINT32_MAX - 1)

/* Below this many edges the passes are too short to pay for threads. */
#define MIN_PARALLEL_EDGES ((size_t)1 << 20)

/* Sorts of fewer values stay on one thread. */
#define MIN_PARALLEL_ITEMS ((size_t)1 << 16)

static size_t min_parallel_edges = MIN_PARALLEL_EDGES;
static size_t min_parallel_items = MIN_PARALLEL_ITEMS;

void pyheap_graph_set_min_parallel_edges(size_t edges)
{
    min_parallel_edges = edges;
    min_parallel_items = edges ? MIN_PARALLEL_ITEMS : 256;
}

/* ---- threads ---- */

/* Where slice K of N of [0, TOTAL) starts (TOTAL < 2^32: no overflow). */
static size_t slice_at(size_t total, unsigned k, unsigned n)
{
    return total * k / n;
}

/* ---- type lookup ---- */

/* NAME is TYPE_NAME or a dotted suffix of it ("Conn" of "app.db.Conn"). */
static bool short_match(const char *type_name, const char *name)
{
    size_t a = strlen(type_name), b = strlen(name);
    return a > b && type_name[a - b - 1] == '.' && strcmp(type_name + a - b, name) == 0;
}

int pyheap_type_lookup(const pyheap_snapshot *s, const char *name,
                       uint32_t **types, size_t *n, pyheap_error *err)
{
    if (!s || !name || !types || !n || !name[0])
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "pyheap_type_lookup needs a snapshot, a type name and outputs");
    uint64_t *count = calloc(s->ntypes ? s->ntypes : 1, sizeof *count);
    uint32_t *out = malloc((s->ntypes ? s->ntypes : 1) * sizeof *out);
    if (!count || !out) {
        free(count);
        free(out);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0, "out of memory looking up a type");
    }
    size_t m = 0;
    /* An exact name wins (a type index stands for a distinct name). */
    for (size_t t = 0; t < s->ntypes; t++)
        if (strcmp(s->names[t], name) == 0) {
            out[m++] = (uint32_t)t;
            break;
        }
    if (m == 0) {
        /* (only then the counts: a pass over every object) */
        for (size_t i = 0; i < s->n; i++)
            if (s->type[i] < s->ntypes)
                count[s->type[i]]++;
        /* Short names: prefer types that have objects. */
        for (int pass = 0; pass < 2 && m == 0; pass++)
            for (size_t t = 0; t < s->ntypes; t++)
                if ((pass == 1 || count[t] > 0) && short_match(s->names[t], name))
                    out[m++] = (uint32_t)t;
    }
    free(count);
    if (m == 0) {
        free(out);
        return pyheap_err_set(err, PYHEAP_E_NOTFOUND, 0, 0,
                              "no type named '%.200s' in the snapshot (try the qualified "
                              "name shown by `pyheap top`)", name);
    }
    *types = out;
    *n = m;
    return 0;
}

/* ---- object sets ---- */

/* A set of object indices: one bit per object, a per-word rank (set bits
 * before the word) so members get dense numbers, and the smallest and
 * largest member to skip most bit tests when the set is small. */
struct oset {
    uint64_t *bits;
    uint32_t *wrank;
    size_t nwords, count;
    uint32_t lo, hi;
};

static void oset_free(struct oset *o)
{
    free(o->bits);
    free(o->wrank);
    memset(o, 0, sizeof *o);
}

static int oset_init(struct oset *o, size_t n)
{
    memset(o, 0, sizeof *o);
    o->nwords = (n + 63) / 64;
    o->bits = pyheap_alloc_big(o->nwords, sizeof *o->bits, true);
    o->wrank = pyheap_alloc_big(o->nwords, sizeof *o->wrank, false);
    o->lo = UINT32_MAX;
    if (!o->bits || !o->wrank) {
        oset_free(o);
        return -1;
    }
    return 0;
}

static inline bool oset_has(const struct oset *o, uint32_t i)
{
    return (o->bits[i >> 6] >> (i & 63)) & 1;
}

static inline void oset_add(struct oset *o, uint32_t i)
{
    o->bits[i >> 6] |= 1ULL << (i & 63);
    if (i < o->lo)
        o->lo = i;
    if (i > o->hi)
        o->hi = i;
}

/* After the last oset_add: the ranks. */
static void oset_seal(struct oset *o)
{
    size_t c = 0;
    for (size_t w = 0; w < o->nwords; w++) {
        o->wrank[w] = (uint32_t)c;
        c += pyheap_popcount64(o->bits[w]);
    }
    o->count = c;
}

static inline uint32_t oset_rank(const struct oset *o, uint32_t i)
{
    uint64_t below = (1ULL << (i & 63)) - 1;
    return o->wrank[i >> 6] + pyheap_popcount64(o->bits[i >> 6] & below);
}

/* ---- shared context ---- */

/* A referrer to group: (its type, the label's grouping form), the
 * referrer, the edge's flags. */
struct pair {
    uint64_t key;   /* referrer type << 32 | label without flags */
    uint32_t src;
    uint32_t flags;
};

/* The grouping form of a label: positions and int keys become [*]. */
static uint32_t group_label(uint32_t l)
{
    unsigned k = WALK_LBL_KIND(l);
    if (k == LBL_INDEX || k == LBL_KEY_INT)
        return WALK_LBL(LBL_ITEM, 0);
    return WALK_LBL_NOFLAGS(l);
}

/* One set of objects whose referrers are grouped under group PARENT. */
struct item {
    size_t parent;          /* index in ctx.groups, SIZE_MAX at depth 1 */
    uint32_t *members;      /* ascending */
    size_t nm;
};

struct ctx {
    const pyheap_snapshot *s;
    /* reverse CSR of the strong edges into the objects of `in` (one depth
     * at a time): the referrers of object i, r = oset_rank(in, i), are
     * rsrc[roff[r] .. roff[r+1]) with labels rlab[...], in the order of
     * the forward edges (by source, then edge). */
    struct oset in;
    uint32_t *roff, *rsrc, *rlab, *rtype;   /* rtype: the source's type */
    /* Instead, when the depth has one item: its grouping pairs straight
     * from the pass, in source order (no CSR; see build_reverse). */
    bool direct;
    struct pair *dp;
    size_t ndp;
    unsigned depth;
    size_t max_groups;
    unsigned nthreads;      /* threads asked for (>= 1) */
    int paths_busy;         /* atomic: 1 while one of them runs the paths */
    /* (object << 32 | root index), sorted: which objects are roots */
    uint64_t *rootof;
    size_t nrootof;
    struct oset rootobj;    /* the objects that are roots */
    /* output, in the order made (depth by depth); parent = index here */
    pyheap_referrer_group *groups;
    size_t ngroups, capgroups;
};

/* Slices for a pass of the levels: the threads asked for, but the one
 * running the paths beside them while it does. */
static unsigned threads_now(const struct ctx *c)
{
    unsigned busy = (unsigned)__atomic_load_n(&c->paths_busy, __ATOMIC_ACQUIRE);
    return c->nthreads > busy ? c->nthreads - busy : 1;
}

static void reverse_free(struct ctx *c)
{
    oset_free(&c->in);
    free(c->roff);
    free(c->rsrc);
    free(c->rlab);
    free(c->rtype);
    c->roff = c->rsrc = c->rlab = c->rtype = NULL;
    free(c->dp);
    c->dp = NULL;
    c->ndp = 0;
    c->direct = false;
}

/* The source of forward edge E, searching up from object I (eoff[i] <= e):
 * the last object whose edges start at or before E. */
static size_t edge_source(const uint32_t *eoff, size_t n, size_t i, size_t e)
{
    size_t step = 1, hi = i + 1;
    while (hi < n && eoff[hi] <= e) {
        i = hi;
        hi = i + step;
        step *= 2;
    }
    if (hi > n)
        hi = n;
    /* eoff[i] <= e < eoff[hi] (or hi == n) */
    while (hi - i > 1) {
        size_t mid = i + (hi - i) / 2;
        if (eoff[mid] <= e)
            i = mid;
        else
            hi = mid;
    }
    return i;
}

struct redge {
    uint32_t rank, src, label, type;
};

/* One slice of the pass over the forward edges: edges [lo, hi) into the
 * objects of c->in become records in re (sources ascending). */
struct rslice {
    const struct ctx *c;
    const uint64_t *sum;
    bool dense;
    size_t lo, hi;
    struct redge *re;
    size_t nre, capre;
    struct pair *p;         /* c->direct: pairs instead of records */
    size_t np, capp;
    int rc;
};

static void *reverse_slice(void *arg)
{
    struct rslice *sl = arg;
    const struct ctx *c = sl->c;
    const pyheap_snapshot *s = c->s;
    const uint32_t lo = c->in.lo, span = c->in.hi - c->in.lo;
    const uint32_t *et = s->etarget;
    const uint64_t *sum = sl->sum;
    const bool dense = sl->dense;
    size_t src = 0;
    for (size_t e = sl->lo; e < sl->hi; e++) {
        uint32_t t = et[e];
        if (t - lo > span || (!dense && !((sum[t >> 12] >> ((t >> 6) & 63)) & 1)) ||
            !oset_has(&c->in, t))
            continue;
        uint32_t l = s->elabel[e];
        if (WALK_LBL_FLAGS(l) & PYHEAP_EDGE_WEAK)
            continue;
        if (e >= s->eoff[src + 1])
            src = edge_source(s->eoff, s->n, src, e);
        if (c->direct) {
            if (sl->np == sl->capp &&
                !pyheap_grow((void **)&sl->p, &sl->capp, sl->np + 1, sizeof *sl->p)) {
                sl->rc = -1;
                return NULL;
            }
            sl->p[sl->np++] = (struct pair){ ((uint64_t)s->type[src] << 32) | group_label(l),
                                             (uint32_t)src, WALK_LBL_FLAGS(l) };
            continue;
        }
        if (sl->nre == sl->capre &&
            !pyheap_grow((void **)&sl->re, &sl->capre, sl->nre + 1, sizeof *sl->re)) {
            sl->rc = -1;
            return NULL;
        }
        /* sources come in ascending order: type[] is read in order */
        sl->re[sl->nre++] = (struct redge){ oset_rank(&c->in, t), (uint32_t)src, l,
                                            s->type[src] };
    }
    return NULL;
}

/* The reverse edges of the objects of ITEMS: one pass over the forward
 * edges (a bit test each; in c->nthreads slices), then a counting sort by
 * target. Only objects whose referrers are asked for get any: no reverse
 * graph of the heap. With one item (always at depth 1) there is no sort:
 * the pass writes the item's pairs for level() in source order, which is
 * the order group_pairs wants within a key, so that it sorts by key alone. */
static int build_reverse(struct ctx *c, const struct item *items, size_t nitems)
{
    const pyheap_snapshot *s = c->s;
    reverse_free(c);
    c->direct = nitems == 1;
    if (oset_init(&c->in, s->n) < 0)
        return -1;
    for (size_t k = 0; k < nitems; k++)
        for (size_t i = 0; i < items[k].nm; i++)
            oset_add(&c->in, items[k].members[i]);
    oset_seal(&c->in);
    /* One bit per word of the set (64 KiB for 32M objects): a sparse set
     * costs no access to its 4 MiB of bits per edge. A dense one (a bit in
     * more than a quarter of the words) is tested directly. */
    size_t nsum = (c->in.nwords + 63) / 64, nonzero = 0;
    uint64_t *sum = calloc(nsum ? nsum : 1, sizeof *sum);
    if (!sum)
        return -1;
    for (size_t w = 0; w < c->in.nwords; w++)
        if (c->in.bits[w]) {
            sum[w >> 6] |= 1ULL << (w & 63);
            nonzero++;
        }
    const bool dense = nonzero * 4 > c->in.nwords;
    unsigned nsl = c->in.count > 0 ? threads_now(c) : 0;
    struct rslice sl[PYHEAP_MAX_SCAN_THREADS];
    for (unsigned k = 0; k < nsl; k++)
        sl[k] = (struct rslice){ c, sum, dense, slice_at(s->nedges, k, nsl),
                                 slice_at(s->nedges, k + 1, nsl), NULL, 0, 0, NULL, 0, 0, 0 };
    if (nsl > 0)
        pyheap_run_slices(reverse_slice, sl, sizeof *sl, nsl);
    free(sum);
    int rc = 0;
    size_t nre = 0;
    for (unsigned k = 0; k < nsl; k++) {
        rc |= sl[k].rc;
        nre += sl[k].nre + sl[k].np;
    }
    if (c->direct) {
        /* The slices in order are the pairs of one pass: the others are
         * appended to the first's, each freed once copied. */
        struct pair *p = nsl > 0 ? sl[0].p : NULL;
        size_t cap = nsl > 0 ? sl[0].capp : 0, at = nsl > 0 ? sl[0].np : 0;
        if (rc == 0 && nre > at && !pyheap_grow((void **)&p, &cap, nre, sizeof *p))
            rc = -1;
        for (unsigned k = 1; k < nsl; k++) {
            if (rc == 0 && sl[k].np) {
                memcpy(p + at, sl[k].p, sl[k].np * sizeof *p);
                at += sl[k].np;
            }
            free(sl[k].p);
        }
        if (rc == 0) {
            c->dp = p;
            c->ndp = nre;
        } else {
            free(p);
        }
        return rc;
    }
    size_t m = c->in.count;
    if (rc == 0) {
        c->roff = calloc(m + 2, sizeof *c->roff);
        c->rsrc = malloc((nre ? nre : 1) * sizeof *c->rsrc);
        c->rlab = malloc((nre ? nre : 1) * sizeof *c->rlab);
        c->rtype = malloc((nre ? nre : 1) * sizeof *c->rtype);
        if (!c->roff || !c->rsrc || !c->rlab || !c->rtype)
            rc = -1;
    }
    if (rc == 0) {
        /* The slices in order are the records of one pass. */
        for (unsigned k = 0; k < nsl; k++)
            for (size_t i = 0; i < sl[k].nre; i++)
                c->roff[sl[k].re[i].rank + 2]++;
        for (size_t r = 0; r < m; r++)
            c->roff[r + 2] += c->roff[r + 1];
        /* roff[r + 1] is where the referrers of rank r start; filling moves
         * it to their end, so that roff[r] .. roff[r + 1] are rank r's. */
        for (unsigned k = 0; k < nsl; k++)
            for (size_t i = 0; i < sl[k].nre; i++) {
                const struct redge *x = &sl[k].re[i];
                uint32_t at = c->roff[x->rank + 1]++;
                c->rsrc[at] = x->src;
                c->rlab[at] = x->label;
                c->rtype[at] = x->type;
            }
    }
    for (unsigned k = 0; k < nsl; k++)
        free(sl[k].re);
    return rc;
}

/* ---- referrer groups ---- */

/* pyheap_radix_sort in NTHREADS slices, one below min_parallel_items. */
static int radix_sort(uint64_t *a, uint64_t *tmp, size_t n, unsigned lo, unsigned nthreads)
{
    return pyheap_radix_sort(a, tmp, n, lo, n < min_parallel_items ? 1 : nthreads);
}

static bool ascending(const uint64_t *a, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if ((a[i] >> 3) < (a[i - 1] >> 3))
            return false;
    return true;
}

/* Sort the packed pairs A (N) above their flags: by key number (NF of
 * them, above bit 3 + SBITS) with a stable counting pass, then by source
 * within each key, where the sources are not in order already (a type's
 * objects and their referrers are often allocated in step). TMP: room
 * for N. The radix passes use NTHREADS threads. */
static int sort_packed(uint64_t *a, uint64_t *tmp, size_t n, size_t nf, unsigned sbits,
                       unsigned nthreads)
{
    if (nf > 1) {
        size_t *at = calloc(nf + 1, sizeof *at);
        if (!at)
            return -1;
        for (size_t i = 0; i < n; i++)
            at[(a[i] >> (3 + sbits)) + 1]++;
        for (size_t k = 0; k < nf; k++)
            at[k + 1] += at[k];
        for (size_t i = 0; i < n; i++)
            tmp[at[a[i] >> (3 + sbits)]++] = a[i];
        memcpy(a, tmp, n * sizeof *a);
        /* at[k] is now the end of key k's run */
        for (size_t k = 0, lo = 0; k < nf; lo = at[k], k++)
            if (!ascending(a + lo, at[k] - lo) &&
                radix_sort(a + lo, tmp, at[k] - lo, 3, nthreads) < 0) {
                free(at);
                return -1;
            }
        free(at);
        return 0;
    }
    return ascending(a, n) ? 0 : radix_sort(a, tmp, n, 3, nthreads);
}

/* Binary search of K in the ascending A (N); N if absent. */
static size_t u64_find(const uint64_t *a, size_t n, uint64_t k)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && a[lo] == k ? lo : n;
}

/* Group P (NP) by (key, src), ascending. A referrer type with many
 * distinct str keys among its groups (a cache keyed by request id, module
 * dicts) would spread over one group per key: when there are more than
 * MERGE_STR_KEYS of them, the keys used by a single referrer object become
 * one "[*]" group (rewritten in P); keys shared by several referrers
 * (['sql'] in 75k row dicts) stay. The distinct keys are found by sorting
 * one key per run of equal keys (the referrers of one object, one list),
 * then numbered densely in key order; the pairs are packed in 64 bits,
 * key number << (3 + source bits) | (src - lowest src) << 3 | flags, and
 * radix-sorted above the flags. Besides the two packed arrays, 25 bytes
 * per distinct key (a cache dict's referrers have one key each). */
static int group_pairs(struct pair *p, size_t np, unsigned nthreads)
{
    uint64_t *sp = pyheap_alloc_big(np, sizeof *sp, false);
    uint64_t *tmp = pyheap_alloc_big(np, sizeof *tmp, false);
    uint64_t *distinct = NULL, *final = NULL;
    uint32_t *first = NULL, *id = NULL;
    uint8_t *refs = NULL;   /* per distinct key: 0 no referrer yet, 1 one (first[]), 2 several */
    int rc = -1;
    if (!sp || !tmp)
        goto out;
    size_t m = 0;
    uint32_t smin = UINT32_MAX, smax = 0;
    for (size_t i = 0; i < np; i++) {
        if (i == 0 || p[i].key != p[i - 1].key)
            sp[m++] = p[i].key;
        if (p[i].src < smin)
            smin = p[i].src;
        if (p[i].src > smax)
            smax = p[i].src;
    }
    if (radix_sort(sp, tmp, m, 0, nthreads) < 0)
        goto out;
    size_t nd = 0;
    for (size_t k = 0; k < m; k++)
        if (nd == 0 || sp[k] != sp[nd - 1])
            sp[nd++] = sp[k];
    size_t room = nd ? nd : 1;
    distinct = malloc(room * sizeof *distinct);
    final = malloc(room * sizeof *final);
    first = malloc(room * sizeof *first);
    id = malloc(room * sizeof *id);
    refs = calloc(room, 1);
    if (!distinct || !final || !first || !id || !refs)
        goto out;
    memcpy(distinct, sp, nd * sizeof *distinct);
    /* Each pair's key number in sp[], and whether several referrers share
     * the key. */
    size_t k = 0;
    for (size_t i = 0; i < np; i++) {
        if (i == 0 || p[i].key != p[i - 1].key)
            k = u64_find(distinct, nd, p[i].key);   /* always there */
        sp[i] = k;
        if (refs[k] == 0) {
            refs[k] = 1;
            first[k] = p[i].src;
        } else if (refs[k] == 1 && first[k] != p[i].src) {
            refs[k] = 2;
        }
    }
    /* The key each key becomes: itself, or its type's [*]. */
    for (size_t i = 0; i < nd;) {
        uint32_t type = (uint32_t)(distinct[i] >> 32);
        size_t j = i, nstr = 0;
        for (; j < nd && (uint32_t)(distinct[j] >> 32) == type; j++)
            nstr += WALK_LBL_KIND((uint32_t)distinct[j]) == LBL_KEY_STR;
        for (size_t q = i; q < j; q++) {
            final[q] = distinct[q];
            if (nstr > MERGE_STR_KEYS && WALK_LBL_KIND((uint32_t)distinct[q]) == LBL_KEY_STR &&
                refs[q] != 2)
                final[q] = ((uint64_t)type << 32) | WALK_LBL(LBL_ITEM, 0);
        }
        i = j;
    }
    /* Number the distinct final keys in order; each key gets its final's.
     * final[] is ascending but for the merged [*] keys. */
    memcpy(distinct, final, nd * sizeof *distinct);
    size_t nf = pyheap_u64_sort_unique(distinct, nd);
    for (size_t q = 0; q < nd; q++)
        id[q] = (uint32_t)u64_find(distinct, nf, final[q]);
    unsigned sbits = smax > smin ? 64 - (unsigned)__builtin_clzll((uint64_t)(smax - smin)) : 0;
    if (np > 0 && 3 + sbits + (nf > 1 ? 64 - (unsigned)__builtin_clzll((uint64_t)nf - 1) : 0) > 64) {
        /* over 2^29 distinct keys and sources 2^32 apart: no room */
        goto out;
    }
    for (size_t i = 0; i < np; i++)
        sp[i] = ((uint64_t)id[sp[i]] << (3 + sbits)) | ((uint64_t)(p[i].src - smin) << 3) |
                (p[i].flags & 7u);
    if (sort_packed(sp, tmp, np, nf, sbits, nthreads) < 0)
        goto out;
    uint64_t smask = sbits ? (~0ULL >> (64 - sbits)) : 0;
    for (size_t i = 0; i < np; i++)
        p[i] = (struct pair){ distinct[sp[i] >> (3 + sbits)],
                              (uint32_t)((sp[i] >> 3) & smask) + smin, (uint32_t)(sp[i] & 7) };
    rc = 0;
out:
    free(distinct);
    free(final);
    free(first);
    free(id);
    free(refs);
    free(sp);
    free(tmp);
    return rc;
}

struct cand {
    size_t lo, hi;  /* run in the pair array */
    uint64_t count, bytes;
    unsigned flags;
};

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    /* Edges analyses of ownership cut (module dicts, globals) go last. */
    bool xc = x->flags & PYHEAP_EDGE_CUT, yc = y->flags & PYHEAP_EDGE_CUT;
    if (xc != yc)
        return xc ? 1 : -1;
    if (x->bytes != y->bytes)
        return x->bytes > y->bytes ? -1 : 1;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

/* Roots among the referrers: pairs (key ROOT_TYPE << 32 | root index,
 * src = the object) for each root that is object O, written to OUT when
 * not NULL. Returns how many. */
static size_t roots_of(const struct ctx *c, uint32_t o, struct pair *out)
{
    if (!oset_has(&c->rootobj, o))
        return 0;
    size_t lo = 0, hi = c->nrootof;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((c->rootof[mid] >> 32) < o)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t n = 0;
    for (; lo < c->nrootof && (c->rootof[lo] >> 32) == o; lo++, n++)
        if (out)
            out[n] = (struct pair){ ((uint64_t)ROOT_TYPE << 32) | (uint32_t)c->rootof[lo], o, 0 };
    return n;
}

/* The root pairs of all the objects of c->in that are roots (roots_of,
 * object by object in c->rootof's order), written to OUT when not NULL.
 * Returns how many. */
static size_t roots_in(const struct ctx *c, struct pair *out)
{
    size_t n = 0;
    for (size_t k = 0; k < c->nrootof; k++) {
        uint32_t o = (uint32_t)(c->rootof[k] >> 32);
        if ((k == 0 || o != (uint32_t)(c->rootof[k - 1] >> 32)) && o < c->s->n &&
            oset_has(&c->in, o))
            n += roots_of(c, o, out ? out + n : NULL);
    }
    return n;
}

static int build_rootof(struct ctx *c)
{
    const pyheap_snapshot *s = c->s;
    c->rootof = malloc((s->nroots ? s->nroots : 1) * sizeof *c->rootof);
    if (!c->rootof || oset_init(&c->rootobj, s->n) < 0)
        return -1;
    for (size_t r = 0; r < s->nroots; r++) {
        c->rootof[r] = ((uint64_t)s->root_obj[r] << 32) | (uint32_t)r;
        if (s->root_obj[r] < s->n)
            oset_add(&c->rootobj, s->root_obj[r]);
    }
    c->nrootof = s->nroots;
    qsort(c->rootof, c->nrootof, sizeof *c->rootof, pyheap_u64_cmp);
    return 0;
}

static int add_group(struct ctx *c, unsigned depth, size_t parent, uint64_t key,
                     const struct cand *cd)
{
    if (!pyheap_grow((void **)&c->groups, &c->capgroups, c->ngroups + 1, sizeof *c->groups))
        return -1;
    const pyheap_snapshot *s = c->s;
    uint32_t type = (uint32_t)(key >> 32);
    uint32_t label = (uint32_t)key;
    char *via;
    if (type == ROOT_TYPE) {
        via = strdup(label < s->nroots ? s->root_name[label] : "?");
        if (!via)
            return -1;
    } else {
        size_t len = pyheap_label_render(s->labels, s->nlabels, label, NULL, 0);
        via = malloc(len + 1);
        if (!via)
            return -1;
        pyheap_label_render(s->labels, s->nlabels, label, via, len + 1);
    }
    pyheap_referrer_group *g = &c->groups[c->ngroups++];
    g->depth = depth;
    g->parent = parent;
    g->type = type;
    g->type_name = type == ROOT_TYPE ? "<root>" : pyheap_snapshot_type_name(s, type);
    g->via = via;
    g->flags = cd->flags;
    g->count = cd->count;
    g->bytes = cd->bytes;
    return 0;
}

static void items_free(struct item *it, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(it[i].members);
    free(it);
}

/* One slice of a level's pairs: members[lo, hi) of an item; first their
 * number (np), then the pairs from p[at]. */
struct lslice {
    const struct ctx *c;
    const uint32_t *members;
    size_t lo, hi;
    size_t np, at;
    struct pair *p;
};

static void *pairs_count(void *arg)
{
    struct lslice *x = arg;
    const struct ctx *c = x->c;
    x->np = 0;
    for (size_t i = x->lo; i < x->hi; i++) {
        uint32_t r = oset_rank(&c->in, x->members[i]);
        x->np += c->roff[r + 1] - c->roff[r] + roots_of(c, x->members[i], NULL);
    }
    return NULL;
}

static void *pairs_fill(void *arg)
{
    struct lslice *x = arg;
    const struct ctx *c = x->c;
    struct pair *p = x->p;
    size_t k = x->at;
    for (size_t i = x->lo; i < x->hi; i++) {
        uint32_t m = x->members[i];
        uint32_t r = oset_rank(&c->in, m);
        for (uint32_t e = c->roff[r]; e < c->roff[r + 1]; e++) {
            p[k].key = ((uint64_t)c->rtype[e] << 32) | group_label(c->rlab[e]);
            p[k].src = c->rsrc[e];
            p[k].flags = WALK_LBL_FLAGS(c->rlab[e]);
            k++;
        }
        k += roots_of(c, m, p + k);
    }
    return NULL;
}

/* Group the referrers of IT's members (their reverse edges are built);
 * the groups that go one level up become items in *NEXT. */
static int level(struct ctx *c, const struct item *it, unsigned depth, struct item **next,
                 size_t *nnext, size_t *capnext)
{
    const pyheap_snapshot *s = c->s;
    size_t np = 0;
    struct pair *p;
    if (c->direct) {
        /* IT is the depth's one item: the pass's pairs, then the roots
         * among its members. */
        size_t nr = roots_in(c, NULL);
        np = c->ndp + nr;
        if (np == 0)
            return 0;
        size_t cap = c->ndp;
        if (!pyheap_grow((void **)&c->dp, &cap, np, sizeof *c->dp))
            return -1;
        p = c->dp;
        c->dp = NULL;
        c->ndp = 0;
        roots_in(c, p + np - nr);
    } else {
        /* The pairs, member by member, in slices: counted, then filled
         * each from its place. */
        unsigned nsl = it->nm < min_parallel_items ? 1 : threads_now(c);
        struct lslice sl[PYHEAP_MAX_SCAN_THREADS];
        for (unsigned k = 0; k < nsl; k++)
            sl[k] = (struct lslice){ c, it->members, slice_at(it->nm, k, nsl),
                                     slice_at(it->nm, k + 1, nsl), 0, 0, NULL };
        pyheap_run_slices(pairs_count, sl, sizeof *sl, nsl);
        for (unsigned k = 0; k < nsl; k++) {
            sl[k].at = np;
            np += sl[k].np;
        }
        if (np == 0)
            return 0;
        p = malloc(np * sizeof *p);
        if (!p)
            return -1;
        for (unsigned k = 0; k < nsl; k++)
            sl[k].p = p;
        pyheap_run_slices(pairs_fill, sl, sizeof *sl, nsl);
    }
    if (group_pairs(p, np, threads_now(c)) < 0) {
        free(p);
        return -1;
    }
    /* Runs of equal keys: distinct referrers, their bytes, common flags. */
    struct cand *cd = NULL;
    size_t ncd = 0, capcd = 0;
    for (size_t i = 0; i < np;) {
        size_t j = i;
        struct cand x = { i, 0, 0, 0, 7u };
        for (; j < np && p[j].key == p[i].key; j++) {
            x.flags &= p[j].flags;
            if (j == i || p[j].src != p[j - 1].src) {
                x.count++;
                x.bytes += (uint32_t)(p[j].key >> 32) == ROOT_TYPE ? 0 : s->size[p[j].src];
            }
        }
        if ((uint32_t)(p[i].key >> 32) == ROOT_TYPE)
            x.count = 1; /* one root, however many of the objects it is */
        x.hi = j;
        if (!pyheap_grow((void **)&cd, &capcd, ncd + 1, sizeof *cd)) {
            free(cd);
            free(p);
            return -1;
        }
        cd[ncd++] = x;
        i = j;
    }
    qsort(cd, ncd, sizeof *cd, cand_cmp);
    if (ncd > c->max_groups)
        ncd = c->max_groups;
    int rc = 0;
    for (size_t g = 0; g < ncd && rc == 0; g++) {
        size_t me = c->ngroups;
        if (add_group(c, depth, it->parent, p[cd[g].lo].key, &cd[g]) < 0) {
            rc = -1;
            break;
        }
        if (depth >= c->depth || (uint32_t)(p[cd[g].lo].key >> 32) == ROOT_TYPE)
            continue;
        uint32_t *sub = malloc(cd[g].count * sizeof *sub);
        if (!sub || !pyheap_grow((void **)next, capnext, *nnext + 1, sizeof **next)) {
            free(sub);
            rc = -1;
            break;
        }
        size_t ns = 0;
        for (size_t i = cd[g].lo; i < cd[g].hi; i++)
            if (i == cd[g].lo || p[i].src != p[i - 1].src)
                sub[ns++] = p[i].src;
        (*next)[(*nnext)++] = (struct item){ me, sub, ns };
    }
    free(cd);
    free(p);
    return rc;
}

/* All levels, depth by depth (one pass over the edges each), then the
 * groups in the documented order: each followed by the groups above it. */
static int levels(struct ctx *c, uint32_t *members, size_t nm)
{
    struct item *cur = malloc(sizeof *cur);
    size_t ncur = 1;
    if (!cur)
        return -1;
    cur[0] = (struct item){ SIZE_MAX, members, nm };
    int rc = 0;
    for (unsigned depth = 1; rc == 0 && ncur > 0; depth++) {
        struct item *next = NULL;
        size_t nnext = 0, capnext = 0;
        rc = build_reverse(c, cur, ncur);
        for (size_t i = 0; rc == 0 && i < ncur; i++)
            rc = level(c, &cur[i], depth, &next, &nnext, &capnext);
        if (depth == 1)
            cur[0].members = NULL;   /* the caller's */
        items_free(cur, ncur);
        cur = next;
        ncur = nnext;
    }
    items_free(cur, ncur);
    reverse_free(c);
    if (rc < 0)
        return -1;
    /* Pre-order: children in the order made, under their parent. */
    size_t n = c->ngroups;
    size_t *first = malloc((n + 1) * sizeof *first);
    size_t *kids = malloc((n ? n : 1) * sizeof *kids);
    size_t *stack = malloc((n ? n : 1) * sizeof *stack);
    size_t *newidx = malloc((n ? n : 1) * sizeof *newidx);
    pyheap_referrer_group *out = malloc((n ? n : 1) * sizeof *out);
    if (!first || !kids || !stack || !newidx || !out) {
        free(first), free(kids), free(stack), free(newidx), free(out);
        return -1;
    }
    /* first[g + 1]: children of g; the top level is parent n */
    memset(first, 0, (n + 1) * sizeof *first);
    size_t ntop = 0;
    for (size_t g = 0; g < n; g++) {
        if (c->groups[g].parent == SIZE_MAX)
            ntop++;
        else
            first[c->groups[g].parent + 1]++;
    }
    for (size_t g = 0; g < n; g++)
        first[g + 1] += first[g];
    size_t *fill = stack;   /* borrowed for the fill positions */
    memcpy(fill, first, n * sizeof *fill);
    for (size_t g = 0; g < n; g++)
        if (c->groups[g].parent != SIZE_MAX)
            kids[fill[c->groups[g].parent]++] = g;
    size_t sp = 0, m = 0;
    for (size_t t = ntop; t-- > 0;) {
        /* top-level groups are the first NTOP made */
        stack[sp++] = t;
    }
    while (sp > 0) {
        size_t g = stack[--sp];
        newidx[g] = m;
        out[m] = c->groups[g];
        if (out[m].parent != SIZE_MAX)
            out[m].parent = newidx[out[m].parent];
        m++;
        for (size_t k = first[g + 1]; k-- > first[g];)
            stack[sp++] = kids[k];
    }
    free(c->groups);
    c->groups = out;
    c->capgroups = n;
    free(first), free(kids), free(stack), free(newidx);
    return 0;
}

/* ---- paths from roots ---- */

/* A BFS predecessor: the object it was reached from (IS_ROOT for roots)
 * and the label of that edge (the root index for roots). Together, so a
 * discovery costs one cache miss. */
struct pred {
    uint32_t par, lab;
};

/* BFS over strong edges: modules first, then the other roots for what
 * modules do not reach. SEEN gets the objects reached, P[i] their
 * predecessor (only those are written). It stops once every object of
 * WANT (NWANT of them) is reached: their paths are settled then, whatever
 * the rest of the heap holds. */
static int bfs(const pyheap_snapshot *s, const struct oset *want, size_t nwant,
               struct oset *seen, struct pred *p)
{
    uint32_t *q = pyheap_alloc_big(s->n, sizeof *q, false);
    if (!q)
        return -1;
    uint64_t *bits = seen->bits;
    size_t head = 0, tail = 0, found = 0;
    for (int prio = 0; prio < 2 && found < nwant; prio++) {
        for (size_t r = 0; r < s->nroots; r++) {
            uint32_t o = s->root_obj[r];
            if (s->root_prio[r] != prio || oset_has(seen, o))
                continue;
            bits[o >> 6] |= 1ULL << (o & 63);
            p[o] = (struct pred){ IS_ROOT, (uint32_t)r };
            q[tail++] = o;
            found += oset_has(want, o);
        }
        while (head < tail && found < nwant) {
            uint32_t o = q[head++];
            for (uint32_t e = s->eoff[o]; e < s->eoff[o + 1]; e++) {
                uint32_t t = s->etarget[e];
                uint64_t bit = 1ULL << (t & 63);
                if (bits[t >> 6] & bit)
                    continue;
                uint32_t l = s->elabel[e];
                if (WALK_LBL_FLAGS(l) & PYHEAP_EDGE_WEAK)
                    continue;
                bits[t >> 6] |= bit;
                p[t] = (struct pred){ o, l };
                q[tail++] = t;
                found += oset_has(want, t);
            }
        }
    }
    free(q);
    return 0;
}

static bool is_identifier(const char *k)
{
    if (!k || !((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || *k == '_'))
        return false;
    for (k++; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || *k == '_' ||
              (*k >= '0' && *k <= '9')))
            return false;
    return true;
}

static bool is_dict_attr(const pyheap_snapshot *s, uint32_t l)
{
    uint32_t p = WALK_LBL_PAYLOAD(l);
    return WALK_LBL_KIND(l) == LBL_ATTR && p < s->nlabels && strcmp(s->labels[p], "__dict__") == 0;
}

/* The chain of labels from the root to O into HOPS (root first), with
 * `.__dict__['name']` folded into `.name`. Returns the number of hops and
 * the root index in *root; *cut when the chain was longer than MAX_PATH_HOPS. */
static size_t chain(const pyheap_snapshot *s, const struct pred *pr,
                    uint32_t o, uint32_t *hops, uint32_t *root, bool *cut)
{
    uint32_t rev[MAX_PATH_HOPS];
    size_t n = 0;
    *cut = false;
    while (pr[o].par != IS_ROOT) {
        if (n == MAX_PATH_HOPS) {
            *cut = true;
            break;
        }
        rev[n++] = WALK_LBL_NOFLAGS(pr[o].lab);
        o = pr[o].par;
    }
    *root = *cut ? UINT32_MAX : pr[o].lab;
    size_t m = 0;
    for (size_t i = n; i-- > 0;) {
        uint32_t l = rev[i];
        if (i > 0 && is_dict_attr(s, l) && WALK_LBL_KIND(rev[i - 1]) == LBL_KEY_STR) {
            uint32_t p = WALK_LBL_PAYLOAD(rev[i - 1]);
            if (p < s->nlabels && is_identifier(s->labels[p])) {
                hops[m++] = WALK_LBL(LBL_ATTR, p);
                i--;
                continue;
            }
        }
        hops[m++] = l;
    }
    return m;
}

/* Shape of a label: subscripts become [*]. */
static uint32_t shape_label(uint32_t l)
{
    switch (WALK_LBL_KIND(l)) {
    case LBL_INDEX:
    case LBL_KEY_INT:
    case LBL_KEY_STR:
    case LBL_KEY_TEXT:
    case LBL_ITEM:
        return WALK_LBL(LBL_ITEM, 0);
    default:
        return l;
    }
}

static uint64_t shape_hash(const uint32_t *hops, size_t n, uint32_t root, bool cut)
{
    uint64_t h = 1469598103934665603ULL ^ root ^ ((uint64_t)cut << 40);
    for (size_t i = 0; i < n; i++) {
        h ^= shape_label(hops[i]);
        h *= 1099511628211ULL;
        h ^= h >> 29;
    }
    return h;
}

static char *render_path(const pyheap_snapshot *s, const uint32_t *hops, size_t n,
                         uint32_t root, bool cut)
{
    char *buf = malloc(MAX_PATH_TEXT);
    if (!buf)
        return NULL;
    size_t len = (size_t)snprintf(buf, MAX_PATH_TEXT, "%s",
                                  cut ? "..." : root < s->nroots ? s->root_name[root] : "?");
    for (size_t i = 0; i < n && len + 1 < MAX_PATH_TEXT; i++)
        len += pyheap_label_render(s->labels, s->nlabels, hops[i], buf + len, MAX_PATH_TEXT - len);
    if (len + 1 >= MAX_PATH_TEXT)
        memcpy(buf + MAX_PATH_TEXT - 4, "...", 4);
    return buf;
}

/* One path shape: how many objects have it, and the first of them (the
 * lowest index: members come in ascending order) whose path is shown. */
struct shape {
    uint64_t hash;
    uint32_t obj;
    uint64_t count;
};

static int shape_cmp(const void *a, const void *b)
{
    const struct shape *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return (x->hash > y->hash) - (x->hash < y->hash);
}

/* One slice of the path shapes: the hash of the shape of members[lo, hi)
 * that the BFS reached, into h[]. */
struct hslice {
    const pyheap_snapshot *s;
    const struct pred *pr;
    const struct oset *seen;
    const uint32_t *members;
    size_t lo, hi;
    uint64_t *h;
};

static void *shape_slice(void *arg)
{
    struct hslice *x = arg;
    uint32_t hops[MAX_PATH_HOPS];
    for (size_t i = x->lo; i < x->hi; i++) {
        if (!oset_has(x->seen, x->members[i]))
            continue;
        uint32_t root;
        bool cut;
        size_t n = chain(x->s, x->pr, x->members[i], hops, &root, &cut);
        x->h[i] = shape_hash(hops, n, root, cut);
    }
    return NULL;
}

static int paths(const pyheap_snapshot *s, const uint32_t *members, size_t nm,
                 size_t max_paths, unsigned nthreads, pyheap_referrers *r)
{
    /* Only the objects reached are written: no pass over all of it. */
    struct pred *pr = pyheap_alloc_big(s->n, sizeof *pr, false);
    uint32_t *hops = malloc(MAX_PATH_HOPS * sizeof *hops);
    struct oset want, seen;
    struct shape *tab = NULL, *sh = NULL;
    uint64_t *hs = NULL;
    size_t cap = 64;
    int rc = -1;
    memset(&want, 0, sizeof want);
    memset(&seen, 0, sizeof seen);
    if (!pr || !hops || oset_init(&want, s->n) < 0 || oset_init(&seen, s->n) < 0)
        goto out;
    for (size_t i = 0; i < nm; i++)
        oset_add(&want, members[i]);
    tab = calloc(cap, sizeof *tab);   /* count 0: empty slot */
    if (!tab || bfs(s, &want, nm, &seen, pr) < 0)
        goto out;
    /* The members' shapes (hashed in slices, walking their chains), then
     * counted by hash (open addressing, doubled at half load: shapes are
     * few, however many objects) in member order. */
    hs = malloc((nm ? nm : 1) * sizeof *hs);
    if (!hs)
        goto out;
    struct hslice hsl[PYHEAP_MAX_SCAN_THREADS];
    for (unsigned k = 0; k < nthreads; k++)
        hsl[k] = (struct hslice){ s, pr, &seen, members, slice_at(nm, k, nthreads),
                                  slice_at(nm, k + 1, nthreads), hs };
    pyheap_run_slices(shape_slice, hsl, sizeof *hsl, nthreads);
    size_t nsh = 0;
    for (size_t i = 0; i < nm; i++) {
        uint32_t o = members[i];
        if (!oset_has(&seen, o)) {
            r->unreachable++;
            continue;
        }
        uint64_t h = hs[i];
        size_t j = (size_t)(h ^ (h >> 31)) & (cap - 1);
        while (tab[j].count && tab[j].hash != h)
            j = (j + 1) & (cap - 1);
        if (!tab[j].count) {
            if ((nsh + 1) * 2 > cap) {
                struct shape *big = calloc(cap * 2, sizeof *big);
                if (!big)
                    goto out;
                for (size_t x = 0; x < cap; x++) {
                    if (!tab[x].count)
                        continue;
                    size_t y = (size_t)(tab[x].hash ^ (tab[x].hash >> 31)) & (cap * 2 - 1);
                    while (big[y].count)
                        y = (y + 1) & (cap * 2 - 1);
                    big[y] = tab[x];
                }
                free(tab);
                tab = big;
                cap *= 2;
                j = (size_t)(h ^ (h >> 31)) & (cap - 1);
                while (tab[j].count)
                    j = (j + 1) & (cap - 1);
            }
            tab[j] = (struct shape){ h, o, 0 };
            nsh++;
        }
        tab[j].count++;
    }
    sh = malloc((nsh ? nsh : 1) * sizeof *sh);
    if (!sh)
        goto out;
    size_t k = 0;
    for (size_t j = 0; j < cap; j++)
        if (tab[j].count)
            sh[k++] = tab[j];
    qsort(sh, nsh, sizeof *sh, shape_cmp);
    if (nsh > max_paths)
        nsh = max_paths;
    r->paths = calloc(nsh ? nsh : 1, sizeof *r->paths);
    if (!r->paths)
        goto out;
    for (k = 0; k < nsh; k++) {
        uint32_t root;
        bool cut;
        size_t n = chain(s, pr, sh[k].obj, hops, &root, &cut);
        r->paths[k].path = render_path(s, hops, n, root, cut);
        if (!r->paths[k].path)
            goto out;
        r->paths[k].count = sh[k].count;
        r->npaths = k + 1;
    }
    rc = 0;
out:
    free(hs);
    free(sh);
    free(tab);
    oset_free(&want);
    oset_free(&seen);
    free(hops);
    free(pr);
    return rc;
}

/* paths() on a thread of its own; BUSY (if not NULL) is cleared when it
 * is done. */
struct paths_job {
    const pyheap_snapshot *s;
    const uint32_t *members;
    size_t nm, max_paths;
    unsigned nthreads;
    pyheap_referrers *r;
    int *busy;
    int rc;
};

static void *paths_run(void *arg)
{
    struct paths_job *j = arg;
    j->rc = paths(j->s, j->members, j->nm, j->max_paths, j->nthreads, j->r);
    if (j->busy)
        __atomic_store_n(j->busy, 0, __ATOMIC_RELEASE);
    return NULL;
}

/* ---- entry points ---- */

/* One slice of the selection of the objects: those of [lo, hi) whose type
 * is asked for, ascending, with their count and bytes. */
struct mslice {
    const pyheap_snapshot *s;
    const uint32_t *types;
    size_t ntypes;
    const uint8_t *want;
    size_t lo, hi;
    uint32_t *members;
    size_t nm, capm;
    uint64_t bytes;
    int rc;
};

static void *members_slice(void *arg)
{
    struct mslice *sl = arg;
    const pyheap_snapshot *s = sl->s;
    for (size_t i = sl->lo; i < sl->hi; i++)
        if ((sl->ntypes == 1 ? s->type[i] == sl->types[0]
                             : s->type[i] < s->ntypes && sl->want[s->type[i]]) &&
            s->type[i] < s->ntypes) {
            if (sl->nm == sl->capm &&
                !pyheap_grow((void **)&sl->members, &sl->capm, sl->nm + 1, sizeof *sl->members)) {
                sl->rc = -1;
                return NULL;
            }
            sl->members[sl->nm++] = (uint32_t)i;
            sl->bytes += s->size[i];
        }
    return NULL;
}

/* The objects of the asked-for types, ascending, in c->nthreads slices
 * joined in order; r->objects and r->bytes. */
static int select_members(const struct ctx *c, const uint32_t *types, size_t ntypes,
                          const uint8_t *want, pyheap_referrers *r, uint32_t **members,
                          size_t *nm)
{
    const pyheap_snapshot *s = c->s;
    unsigned nsl = c->nthreads;
    struct mslice sl[PYHEAP_MAX_SCAN_THREADS];
    for (unsigned k = 0; k < nsl; k++)
        sl[k] = (struct mslice){ s, types, ntypes, want, slice_at(s->n, k, nsl),
                                 slice_at(s->n, k + 1, nsl), NULL, 0, 0, 0, 0 };
    pyheap_run_slices(members_slice, sl, sizeof *sl, nsl);
    int rc = 0;
    size_t n = 0;
    for (unsigned k = 0; k < nsl; k++) {
        rc |= sl[k].rc;
        n += sl[k].nm;
        r->bytes += sl[k].bytes;
    }
    uint32_t *out = NULL;
    if (rc == 0 && nsl == 1) {
        out = sl[0].members;   /* NULL when there are none, as before */
        sl[0].members = NULL;
    } else if (rc == 0 && n > 0) {
        out = malloc(n * sizeof *out);
        if (!out)
            rc = -1;
        size_t at = 0;
        for (unsigned k = 0; out && k < nsl; k++) {
            if (sl[k].nm)   /* (members NULL when none) */
                memcpy(out + at, sl[k].members, sl[k].nm * sizeof *out);
            at += sl[k].nm;
        }
    }
    for (unsigned k = 0; k < nsl; k++)
        free(sl[k].members);
    if (rc < 0)
        return -1;
    r->objects = n;
    *members = out;
    *nm = n;
    return 0;
}

void pyheap_referrers_free(pyheap_referrers *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->ngroups; i++)
        free(r->groups[i].via);
    free(r->groups);
    for (size_t i = 0; i < r->npaths; i++)
        free(r->paths[i].path);
    free(r->paths);
    free(r);
}

int pyheap_referrers_compute(const pyheap_snapshot *s, const uint32_t *types,
                             size_t ntypes, const pyheap_referrers_opts *opts,
                             pyheap_referrers **out, pyheap_error *err)
{
    if (!s || !out || (ntypes && !types))
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "pyheap_referrers_compute needs a snapshot, types and an output");
    if (opts && opts->depth > MAX_DEPTH)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "referrer depth %u is more than the maximum %d",
                              opts->depth, MAX_DEPTH);
    struct ctx c;
    memset(&c, 0, sizeof c);
    c.s = s;
    c.depth = opts && opts->depth ? opts->depth : DEFAULT_DEPTH;
    c.max_groups = opts && opts->max_groups ? opts->max_groups : DEFAULT_GROUPS;
    c.nthreads = opts && opts->threads ? opts->threads : 1;
    if (c.nthreads > PYHEAP_MAX_SCAN_THREADS)
        c.nthreads = PYHEAP_MAX_SCAN_THREADS;
    if (s->nedges < min_parallel_edges)
        c.nthreads = 1;
    size_t max_paths = opts && opts->max_paths ? opts->max_paths : DEFAULT_PATHS;
    pyheap_referrers *r = calloc(1, sizeof *r);
    uint8_t *want = calloc(s->ntypes ? s->ntypes : 1, 1);
    uint32_t *members = NULL;
    int rc = -1;
    if (!r || !want)
        goto out;
    for (size_t i = 0; i < ntypes; i++)
        if (types[i] < s->ntypes)
            want[types[i]] = 1;
    size_t nm = 0;
    if (select_members(&c, types, ntypes, want, r, &members, &nm) < 0)
        goto out;
    if (s->eoff) {
        /* The groups and the paths read the snapshot only and write apart
         * (c, and r's paths): with threads, the paths' BFS (one thread)
         * runs beside the levels. */
        struct paths_job pj = { s, members, nm, max_paths, c.nthreads, r, NULL, -1 };
        pthread_t th;
        bool beside = false;
        if (c.nthreads > 1) {
            /* The threads asked for in all: one of them runs the paths, and
             * the levels' passes get it back when it is done. */
            pj.nthreads = 1;
            pj.busy = &c.paths_busy;
            c.paths_busy = 1;
            beside = pthread_create(&th, NULL, paths_run, &pj) == 0;
            if (!beside) {
                pj.nthreads = c.nthreads;
                pj.busy = NULL;
                c.paths_busy = 0;
            }
        }
        int lrc = build_rootof(&c) < 0 || levels(&c, members, nm) < 0 ? -1 : 0;
        if (beside)
            pthread_join(th, NULL);
        else if (lrc == 0)
            paths_run(&pj);
        if (lrc < 0 || pj.rc < 0)
            goto out;
    } else {
        r->unreachable = nm;
    }
    r->groups = c.groups;
    r->ngroups = c.ngroups;
    c.groups = NULL;
    c.ngroups = 0;
    rc = 0;
out:
    for (size_t i = 0; i < c.ngroups; i++)
        free(c.groups[i].via);
    free(c.groups);
    reverse_free(&c);
    oset_free(&c.rootobj);
    free(c.rootof);
    free(members);
    free(want);
    if (rc < 0) {
        pyheap_referrers_free(r);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0,
                              "out of memory computing the referrers of %zu type(s)", ntypes);
    }
    *out = r;
    return 0;
}
