/*
 * Analyses of a snapshot's object graph (pure computation, no process):
 * type lookup by name, referrers grouped by (referrer type, edge label)
 * over several levels, shortest paths from the roots rendered as Python
 * expressions, and objects reachable from no root. See docs/graph.md.
 *
 * Everything works on flat arrays indexed by object index: one reverse
 * CSR of the strong (non-weak) edges per call, one BFS, and sorted
 * (key, object) pairs for grouping; nothing is allocated per edge.
 */
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

#define NO_PARENT UINT32_MAX
#define IS_ROOT   (UINT32_MAX - 1)

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
    for (size_t i = 0; i < s->n; i++)
        if (s->type[i] < s->ntypes)
            count[s->type[i]]++;
    size_t m = 0;
    /* An exact name wins (a type index stands for a distinct name). */
    for (size_t t = 0; t < s->ntypes; t++)
        if (strcmp(s->names[t], name) == 0) {
            out[m++] = (uint32_t)t;
            break;
        }
    if (m == 0) {
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

/* ---- shared context ---- */

struct ctx {
    const pyheap_snapshot *s;
    /* reverse CSR of strong edges: referrers of object i are
     * rsrc[roff[i] .. roff[i+1]) with labels rlab[...] */
    uint32_t *roff, *rsrc, *rlab;
    unsigned depth;
    size_t max_groups;
    /* (object << 32 | root index), sorted: which objects are roots */
    uint64_t *rootof;
    size_t nrootof;
    /* output */
    pyheap_referrer_group *groups;
    size_t ngroups, capgroups;
};

static int build_reverse(struct ctx *c)
{
    const pyheap_snapshot *s = c->s;
    c->roff = calloc(s->n + 1, sizeof *c->roff);
    if (!c->roff)
        return -1;
    size_t m = 0;
    for (size_t e = 0; e < s->nedges; e++)
        if (!(WALK_LBL_FLAGS(s->elabel[e]) & PYHEAP_EDGE_WEAK)) {
            c->roff[s->etarget[e] + 1]++;
            m++;
        }
    for (size_t i = 0; i < s->n; i++)
        c->roff[i + 1] += c->roff[i];
    c->rsrc = malloc((m ? m : 1) * sizeof *c->rsrc);
    c->rlab = malloc((m ? m : 1) * sizeof *c->rlab);
    uint32_t *fill = malloc((s->n ? s->n : 1) * sizeof *fill);
    if (!c->rsrc || !c->rlab || !fill) {
        free(fill);
        return -1;
    }
    memcpy(fill, c->roff, s->n * sizeof *fill);
    for (size_t i = 0; i < s->n; i++) {
        for (uint32_t e = s->eoff[i]; e < s->eoff[i + 1]; e++) {
            uint32_t l = s->elabel[e];
            if (WALK_LBL_FLAGS(l) & PYHEAP_EDGE_WEAK)
                continue;
            uint32_t k = fill[s->etarget[e]]++;
            c->rsrc[k] = (uint32_t)i;
            c->rlab[k] = l;
        }
    }
    free(fill);
    return 0;
}

/* ---- referrer groups ---- */

struct pair {
    uint64_t key;   /* referrer type << 32 | label without flags */
    uint32_t src;
    uint32_t flags;
};

static int pair_cmp(const void *a, const void *b)
{
    const struct pair *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->src > y->src) - (x->src < y->src);
}

/* The grouping form of a label: positions and int keys become [*]. */
static uint32_t group_label(uint32_t l)
{
    unsigned k = WALK_LBL_KIND(l);
    if (k == LBL_INDEX || k == LBL_KEY_INT)
        return WALK_LBL(LBL_ITEM, 0);
    return WALK_LBL_NOFLAGS(l);
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

/* A referrer type with many distinct str keys among its groups (a cache
 * keyed by request id, module dicts) would spread over one group per key:
 * when there are more than MERGE_STR_KEYS of them, the keys used by a
 * single referrer object become one "[*]" group; keys shared by several
 * referrers (['sql'] in 75k row dicts) stay. P is sorted; returns true
 * when something changed. */
static bool merge_str_keys(struct pair *p, size_t n)
{
    bool changed = false;
    for (size_t i = 0; i < n;) {
        uint32_t type = (uint32_t)(p[i].key >> 32);
        size_t j = i, distinct = 0;
        uint64_t last = UINT64_MAX;
        for (; j < n && (uint32_t)(p[j].key >> 32) == type; j++)
            if (WALK_LBL_KIND((uint32_t)p[j].key) == LBL_KEY_STR && p[j].key != last) {
                distinct++;
                last = p[j].key;
            }
        if (distinct > MERGE_STR_KEYS) {
            for (size_t k = i; k < j;) {
                size_t e = k;
                bool single = true;
                while (e < j && p[e].key == p[k].key) {
                    single &= p[e].src == p[k].src;
                    e++;
                }
                if (single && WALK_LBL_KIND((uint32_t)p[k].key) == LBL_KEY_STR) {
                    for (size_t x = k; x < e; x++)
                        p[x].key = ((uint64_t)type << 32) | WALK_LBL(LBL_ITEM, 0);
                    changed = true;
                }
                k = e;
            }
        }
        i = j;
    }
    return changed;
}

/* Roots among the referrers: pairs (key ROOT_TYPE << 32 | root index,
 * src = the object) for each root that is object O, written to OUT when
 * not NULL. Returns how many. */
static size_t roots_of(const struct ctx *c, uint32_t o, struct pair *out)
{
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

static int u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static int build_rootof(struct ctx *c)
{
    const pyheap_snapshot *s = c->s;
    c->rootof = malloc((s->nroots ? s->nroots : 1) * sizeof *c->rootof);
    if (!c->rootof)
        return -1;
    for (size_t r = 0; r < s->nroots; r++)
        c->rootof[r] = ((uint64_t)s->root_obj[r] << 32) | (uint32_t)r;
    c->nrootof = s->nroots;
    qsort(c->rootof, c->nrootof, sizeof *c->rootof, u64_cmp);
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

/* Group the referrers of MEMBERS[0..NM) and recurse. */
static int level(struct ctx *c, const uint32_t *members, size_t nm, unsigned depth,
                 size_t parent)
{
    const pyheap_snapshot *s = c->s;
    size_t np = 0;
    for (size_t i = 0; i < nm; i++)
        np += c->roff[members[i] + 1] - c->roff[members[i]] + roots_of(c, members[i], NULL);
    if (np == 0)
        return 0;
    struct pair *p = malloc(np * sizeof *p);
    if (!p)
        return -1;
    size_t k = 0;
    for (size_t i = 0; i < nm; i++) {
        uint32_t m = members[i];
        for (uint32_t e = c->roff[m]; e < c->roff[m + 1]; e++) {
            uint32_t src = c->rsrc[e];
            p[k].key = ((uint64_t)s->type[src] << 32) | group_label(c->rlab[e]);
            p[k].src = src;
            p[k].flags = WALK_LBL_FLAGS(c->rlab[e]);
            k++;
        }
        k += roots_of(c, m, p + k);
    }
    qsort(p, np, sizeof *p, pair_cmp);
    if (merge_str_keys(p, np))
        qsort(p, np, sizeof *p, pair_cmp);
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
    uint32_t *sub = NULL;
    for (size_t g = 0; g < ncd && rc == 0; g++) {
        size_t me = c->ngroups;
        if (add_group(c, depth, parent, p[cd[g].lo].key, &cd[g]) < 0) {
            rc = -1;
            break;
        }
        if (depth >= c->depth || (uint32_t)(p[cd[g].lo].key >> 32) == ROOT_TYPE)
            continue;
        free(sub);
        sub = malloc(cd[g].count * sizeof *sub);
        if (!sub) {
            rc = -1;
            break;
        }
        size_t ns = 0;
        for (size_t i = cd[g].lo; i < cd[g].hi; i++)
            if (i == cd[g].lo || p[i].src != p[i - 1].src)
                sub[ns++] = p[i].src;
        rc = level(c, sub, ns, depth + 1, me);
    }
    free(sub);
    free(cd);
    free(p);
    return rc;
}

/* ---- paths from roots ---- */

/* BFS over strong edges: modules first, then the other roots for what
 * modules do not reach. PAR[i]: predecessor, IS_ROOT, or NO_PARENT;
 * PLAB[i]: label of the edge from it (root index for roots). */
static int bfs(const pyheap_snapshot *s, uint32_t *par, uint32_t *plab)
{
    uint32_t *q = malloc((s->n ? s->n : 1) * sizeof *q);
    if (!q)
        return -1;
    for (size_t i = 0; i < s->n; i++)
        par[i] = NO_PARENT;
    size_t head = 0, tail = 0;
    for (int prio = 0; prio < 2; prio++) {
        for (size_t r = 0; r < s->nroots; r++) {
            uint32_t o = s->root_obj[r];
            if (s->root_prio[r] != prio || par[o] != NO_PARENT)
                continue;
            par[o] = IS_ROOT;
            plab[o] = (uint32_t)r;
            q[tail++] = o;
        }
        while (head < tail) {
            uint32_t o = q[head++];
            for (uint32_t e = s->eoff[o]; e < s->eoff[o + 1]; e++) {
                uint32_t t = s->etarget[e];
                if (par[t] != NO_PARENT || (WALK_LBL_FLAGS(s->elabel[e]) & PYHEAP_EDGE_WEAK))
                    continue;
                par[t] = o;
                plab[t] = s->elabel[e];
                q[tail++] = t;
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
static size_t chain(const pyheap_snapshot *s, const uint32_t *par, const uint32_t *plab,
                    uint32_t o, uint32_t *hops, uint32_t *root, bool *cut)
{
    uint32_t rev[MAX_PATH_HOPS];
    size_t n = 0;
    *cut = false;
    while (par[o] != IS_ROOT) {
        if (n == MAX_PATH_HOPS) {
            *cut = true;
            break;
        }
        rev[n++] = WALK_LBL_NOFLAGS(plab[o]);
        o = par[o];
    }
    *root = *cut ? UINT32_MAX : plab[o];
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

struct hobj {
    uint64_t hash;
    uint32_t obj;
};

static int hobj_cmp(const void *a, const void *b)
{
    const struct hobj *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return (x->obj > y->obj) - (x->obj < y->obj);
}

struct prun {
    size_t lo;
    uint64_t count;
};

static int prun_cmp(const void *a, const void *b)
{
    const struct prun *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

static int paths(const pyheap_snapshot *s, const uint32_t *members, size_t nm,
                 size_t max_paths, pyheap_referrers *r)
{
    uint32_t *par = malloc((s->n ? s->n : 1) * sizeof *par);
    uint32_t *plab = malloc((s->n ? s->n : 1) * sizeof *plab);
    struct hobj *h = malloc((nm ? nm : 1) * sizeof *h);
    uint32_t *hops = malloc(MAX_PATH_HOPS * sizeof *hops);
    struct prun *runs = NULL;
    int rc = -1;
    if (!par || !plab || !h || !hops || bfs(s, par, plab) < 0)
        goto out;
    size_t nh = 0;
    for (size_t i = 0; i < nm; i++) {
        uint32_t o = members[i];
        if (par[o] == NO_PARENT) {
            r->unreachable++;
            continue;
        }
        uint32_t root;
        bool cut;
        size_t n = chain(s, par, plab, o, hops, &root, &cut);
        h[nh].hash = shape_hash(hops, n, root, cut);
        h[nh].obj = o;
        nh++;
    }
    qsort(h, nh, sizeof *h, hobj_cmp);
    size_t nruns = 0;
    runs = malloc((nh ? nh : 1) * sizeof *runs);
    if (!runs)
        goto out;
    for (size_t i = 0; i < nh;) {
        size_t j = i;
        while (j < nh && h[j].hash == h[i].hash)
            j++;
        runs[nruns++] = (struct prun){ i, j - i };
        i = j;
    }
    qsort(runs, nruns, sizeof *runs, prun_cmp);
    if (nruns > max_paths)
        nruns = max_paths;
    r->paths = calloc(nruns ? nruns : 1, sizeof *r->paths);
    if (!r->paths)
        goto out;
    for (size_t k = 0; k < nruns; k++) {
        uint32_t root;
        bool cut;
        size_t n = chain(s, par, plab, h[runs[k].lo].obj, hops, &root, &cut);
        r->paths[k].path = render_path(s, hops, n, root, cut);
        if (!r->paths[k].path)
            goto out;
        r->paths[k].count = runs[k].count;
        r->npaths = k + 1;
    }
    rc = 0;
out:
    free(runs);
    free(hops);
    free(h);
    free(plab);
    free(par);
    return rc;
}

/* ---- entry points ---- */

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
    for (size_t i = 0; i < s->n; i++)
        if (s->type[i] < s->ntypes && want[s->type[i]])
            nm++;
    members = malloc((nm ? nm : 1) * sizeof *members);
    if (!members)
        goto out;
    nm = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->type[i] < s->ntypes && want[s->type[i]]) {
            members[nm++] = (uint32_t)i;
            r->objects++;
            r->bytes += s->size[i];
        }
    if (s->eoff) {
        if (build_reverse(&c) < 0 || build_rootof(&c) < 0 ||
            level(&c, members, nm, 1, SIZE_MAX) < 0)
            goto out;
        if (paths(s, members, nm, max_paths, r) < 0)
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
    free(c.roff);
    free(c.rsrc);
    free(c.rlab);
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
