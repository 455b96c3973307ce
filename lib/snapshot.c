/* The immutable snapshot model and the histogram analysis. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

/* The walk's streams and the build's temporaries are mappings of their
 * own, written front to back, with transparent huge pages on request
 * (MADV_HUGEPAGE; where the system allows them): 2 MiB pages fault 512
 * times less often, and the untouched tail of a mapping costs nothing. */
static void *map_new(size_t len)
{
    void *p = mmap(NULL, len ? len : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    (void)madvise(p, len ? len : 1, MADV_HUGEPAGE); /* a hint */
    return p;
}

static void map_free(void *p, size_t len)
{
    if (p)
        munmap(p, len ? len : 1);
}

/* Room for NEED bytes in the mapping *P of *CAP bytes (doubling); 0, or -1
 * when out of memory. */
static int grow_bytes(unsigned char **p, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : (size_t)256 << 10;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return -1;
        ncap *= 2;
    }
    void *q = *p ? mremap(*p, *cap, ncap, MREMAP_MAYMOVE) : map_new(ncap);
    if (!q || q == MAP_FAILED)
        return -1;
    *p = q;
    *cap = ncap;
    return 0;
}

int pyheap_snapshot_in_grow_edges(struct snapshot_in *in)
{
    return grow_bytes(&in->edge, &in->edgecap, in->edgelen + SNAPSHOT_VARINT_MAX + 5);
}

/* A checkpoint at the next object (its record and edges start where the
 * streams' objects end now). */
static int add_cp(struct snapshot_in *in)
{
    if (in->ncp == in->capcp &&
        !pyheap_grow((void **)&in->cp, &in->capcp, in->ncp + 1, sizeof *in->cp))
        return -1;
    in->cp[in->ncp++] = (struct snapshot_in_cp){ in->n, in->obj_edges, in->objlen,
                                                 in->obj_edgelen, in->prev };
    return 0;
}

/* Room in IN's tally for N types (zeroed), or tally_lost. */
static int tally_grow(struct snapshot_in *in, size_t n)
{
    size_t cap = in->ntally ? in->ntally : 64;
    while (cap < n)
        cap *= 2;
    struct snapshot_type_total *t = cap <= SIZE_MAX / sizeof *t
                                        ? realloc(in->tally, cap * sizeof *t) : NULL;
    if (!t) {
        free(in->tally);
        in->tally = NULL;
        in->ntally = 0;
        in->tally_lost = true;
        return -1;
    }
    memset(t + in->ntally, 0, (cap - in->ntally) * sizeof *t);
    in->tally = t;
    in->ntally = cap;
    return 0;
}

int pyheap_snapshot_in_object(struct snapshot_in *in, uint64_t addr, uint64_t size,
                              uint32_t type)
{
    if (in->n >= (size_t)UINT32_MAX - 1 || in->nedges >= (size_t)UINT32_MAX ||
        grow_bytes(&in->obj, &in->objcap, in->objlen + 4 * SNAPSHOT_VARINT_MAX) < 0)
        return -1;
    if (in->n >= in->cp_at) {   /* no division per object */
        if (in->n > 0 && add_cp(in) < 0)
            return -1;
        in->cp_at = in->n + (in->cp_every ? in->cp_every : SNAPSHOT_IN_CP_EVERY);
    }
    if (in->tallying && !in->tally_lost) {
        uint32_t ty = type & ~SNAPSHOT_IN_CUT;
        if (ty >= in->ntally)
            tally_grow(in, (size_t)ty + 1);   /* on failure the census is lost, not the object */
    }
    snapshot_in_put_object(in, addr, size, type);
    return 0;
}

int pyheap_snapshot_in_add_edges(struct snapshot_in *in, const struct snapshot_in *part)
{
    if (part->nedges == 0)
        return 0;
    if (in->nedges + part->nedges >= (size_t)UINT32_MAX ||
        grow_bytes(&in->edge, &in->edgecap, in->edgelen + part->edgelen) < 0)
        return -1;
    memcpy(in->edge + in->edgelen, part->edge, part->edgelen);
    in->edgelen += part->edgelen;
    in->nedges += part->nedges;
    return 0;
}

void pyheap_snapshot_in_free(struct snapshot_in *in)
{
    map_free(in->obj, in->objcap);
    map_free(in->edge, in->edgecap);
    free(in->cp);
    free(in->tally);
    size_t every = in->cp_every;
    bool tallying = in->tallying;
    memset(in, 0, sizeof *in);
    in->cp_every = every;
    in->tallying = tallying;
}

/* Reading the streams back. They are ours, but a reader never runs past
 * the end: a truncated varint reads as what it has. */
struct reader {
    const unsigned char *p, *end;
};

static struct reader reader_of(const unsigned char *p, size_t len)
{
    return p ? (struct reader){ p, p + len } : (struct reader){ NULL, NULL };
}

static inline uint64_t get_varint(struct reader *r)
{
    const unsigned char *p = r->p;
    if (p && r->end - p >= SNAPSHOT_VARINT_MAX) {
        /* Room for the longest: no bound checks (the same value and
         * length as the loop below, which most varints, a byte or two,
         * leave after the first or second test). */
        uint64_t b = p[0];
        if (b < 0x80) {
            r->p = p + 1;
            return b;
        }
        uint64_t v = b & 0x7f;
        for (unsigned k = 1; k < SNAPSHOT_VARINT_MAX; k++) {
            b = p[k];
            v |= (b & 0x7f) << (7 * k);
            if (b < 0x80) {
                r->p = p + k + 1;
                return v;
            }
        }
        r->p = p + SNAPSHOT_VARINT_MAX;
        return v;
    }
    uint64_t v = 0;
    for (unsigned shift = 0; r->p < r->end && shift < 64; shift += 7) {
        unsigned char b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    return v;
}

static inline uint64_t delta_decode(uint64_t v, uint64_t base)
{
    uint64_t zz = v & (((uint64_t)1 << 61) - 1);
    uint64_t q = (zz >> 1) ^ (0 - (zz & 1));
    return base + ((q << 3) | (v >> 61));
}

static inline uint32_t label_decode(uint64_t v)
{
    return (uint32_t)((v >> 8) & 0xffffffu) | (uint32_t)(v & 0xff) << 24;
}

struct obj_rec {
    uint64_t addr, size;
    uint32_t type;
    bool cut;
    size_t nedges;
};

/* The next object; *PREV (the previous object's address) becomes its. */
static inline void get_obj(struct reader *r, uint64_t *prev, struct obj_rec *o)
{
    o->addr = delta_decode(get_varint(r), *prev);
    *prev = o->addr;
    o->size = get_varint(r);
    uint64_t t = get_varint(r);
    o->type = (uint32_t)(t >> 1) & ~SNAPSHOT_IN_CUT;
    o->cut = t & 1;
    o->nedges = (size_t)get_varint(r);
}

/* Add a walk's TALLY (NTALLY type indices) to TOT, per-type totals over
 * NNAMES names, typed as the build types the objects (phase_sizes: an
 * index past the names is type 0). */
static void totals_add(struct snapshot_type_total *tot, const struct snapshot_type_total *tally,
                       size_t ntally, size_t nnames)
{
    for (size_t i = 0; nnames && i < ntally; i++) {
        size_t ty = i < nnames ? i : 0;
        tot[ty].count += tally[i].count;
        tot[ty].bytes += tally[i].bytes;
    }
}

/* TALLY as per-type totals over NNAMES names (totals_add): a new array,
 * or NULL when out of memory. */
static struct snapshot_type_total *totals_by_name(const struct snapshot_type_total *tally,
                                                  size_t ntally, size_t nnames)
{
    struct snapshot_type_total *tot = calloc(nnames ? nnames : 1, sizeof *tot);
    if (tot)
        totals_add(tot, tally, ntally, nnames);
    return tot;
}

/* The tallies of the NIN streams INS added up the same way: NULL when a
 * stream has no tally (or lost it), or out of memory. */
static struct snapshot_type_total *totals_of_streams(const struct snapshot_in *ins, size_t nin,
                                                     size_t nnames)
{
    for (size_t k = 0; k < nin; k++)
        if (!ins[k].tallying || ins[k].tally_lost)
            return NULL;
    struct snapshot_type_total *tot = calloc(nnames ? nnames : 1, sizeof *tot);
    for (size_t k = 0; tot && k < nin; k++)
        totals_add(tot, ins[k].tally, ins[k].ntally, nnames);
    return tot;
}

/* ---- the build ---- */

#define NO_OBJ UINT32_MAX

static inline bool bit_test(const uint64_t *bits, size_t i)
{
    return (bits[i >> 6] >> (i & 63)) & 1;
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
    if (g->index)
        pyheap_addrindex_free(g->index);
}

/* The build runs in phases; each but the index and the offsets' running
 * sum is shared out between threads by parts of the discovery order, cut
 * at the streams' checkpoints. A part writes only its own objects' slots
 * (object indices are distinct) and its own range of the edge arrays, so
 * the result does not depend on the number of parts. */
struct part {
    const struct snapshot_in *in; /* the stream its objects are in */
    /* where its objects start: n and e count over all the streams, the
     * offsets and prev are in its own */
    struct snapshot_in_cp at;
    size_t end;                 /* the object after its last */
    size_t ebudget;             /* edges its objects may own */
    size_t kept, read, dups;
    uint64_t dropped, bytes;
    uint64_t elided;            /* kept edges with a pending label elided */
};

/* A part per thread, and one more where a stream ends inside a thread's
 * share. */
#define BUILD_PARTS (2 * PYHEAP_MAX_SCAN_THREADS)

struct build {
    size_t n;                   /* objects, in all the streams */
    pyheap_snapshot *s;
    struct addrindex x;
    size_t ntypes;
    uint64_t *daddr;            /* discovery order */
    uint32_t *perm;             /* discovery order -> index, or NO_OBJ */
    uint64_t *bits;             /* per index: taken (perm), then cut */
    uint32_t *tgt, *lab;        /* kept edges, by part, discovery order */
    const uint32_t *pending;    /* snapshot_graph_in's */
    size_t npending;
    struct part part[BUILD_PARTS];
    unsigned nparts;
    unsigned nthreads;          /* that run the parts */
    unsigned next;              /* atomic: the next part a phase's thread takes */
};

static inline bool bit_set_atomic(uint64_t *bits, size_t i)
{
    uint64_t m = (uint64_t)1 << (i & 63);
    return __atomic_fetch_or(&bits[i >> 6], m, __ATOMIC_RELAXED) & m;
}

/* The reader of the part's objects in its object stream. */
static struct reader part_objects(const struct part *pt)
{
    const struct snapshot_in *in = pt->in;
    return reader_of(in->obj ? in->obj + pt->at.objoff : NULL, in->objlen - pt->at.objoff);
}

static void phase_decode(struct build *b, struct part *pt)
{
    struct reader r = part_objects(pt);
    uint64_t prev = pt->at.prev;
    struct obj_rec o;
    for (size_t i = pt->at.n; i < pt->end; i++) {
        get_obj(&r, &prev, &o);
        b->daddr[i] = o.addr;
    }
}

/* Object I (at ADDR) takes its rank unless it has none or another object
 * took it first (then it is counted in the part's dups). */
static inline void rank_once(struct build *b, struct part *pt, size_t i, uint64_t addr)
{
    size_t p = pyheap_addrindex_find(&b->x, addr);
    if (p == SIZE_MAX || bit_set_atomic(b->bits, p)) {
        b->perm[i] = NO_OBJ;
        pt->dups++;
    } else {
        b->perm[i] = (uint32_t)p;
    }
}

/* Ranks. Without repeats (a walk's: as many ranks as objects) a lookup
 * each; with, several parts race for a repeated address: who wins is
 * redone in order (phase_perm_serial) when any part saw one. */
static void phase_perm(struct build *b, struct part *pt)
{
    if (b->x.n == b->n) {
        for (size_t i = pt->at.n; i < pt->end; i++)
            b->perm[i] = (uint32_t)pyheap_addrindex_find(&b->x, b->daddr[i]);
        return;
    }
    for (size_t i = pt->at.n; i < pt->end; i++)
        rank_once(b, pt, i, b->daddr[i]);
}

/* Ranks from an index given with the objects: every object must be in it
 * once (misses and repeats are counted in dups, and the index is not
 * used). */
static void phase_perm_given(struct build *b, struct part *pt)
{
    struct reader r = part_objects(pt);
    uint64_t prev = pt->at.prev;
    struct obj_rec o;
    for (size_t i = pt->at.n; i < pt->end; i++) {
        get_obj(&r, &prev, &o);
        rank_once(b, pt, i, o.addr);
    }
}

static void phase_perm_serial(struct build *b, size_t n)
{
    memset(b->bits, 0, (b->x.n / 64 + 1) * sizeof *b->bits);
    for (size_t i = 0; i < n; i++) {
        size_t p = pyheap_addrindex_find(&b->x, b->daddr[i]);
        b->perm[i] = bit_set_atomic(b->bits, p) ? NO_OBJ : (uint32_t)p;
    }
}

/* Resolve the part's edges: kept ones to tgt/lab from its first edge on;
 * eoff[i] counts object i's. */
static void phase_edges(struct build *b, struct part *pt)
{
    const struct snapshot_in *in = pt->in;
    pyheap_snapshot *s = b->s;
    struct reader r = part_objects(pt);
    struct reader re = reader_of(in->edge ? in->edge + pt->at.edgeoff : NULL,
                                 in->edgelen - pt->at.edgeoff);
    uint64_t prev = pt->at.prev;
    uint32_t *tgt = b->tgt + pt->at.e, *lab = b->lab + pt->at.e;
    size_t kept = 0, read = 0;
    uint64_t dropped = 0;
    struct obj_rec o;
    for (size_t i = pt->at.n; i < pt->end; i++) {
        uint64_t base = prev; /* the edges' deltas are from the previous object */
        get_obj(&r, &prev, &o);
        size_t ne = o.nedges <= pt->ebudget - read ? o.nedges : pt->ebudget - read;
        read += ne;
        uint32_t p = b->perm[i];
        if (p == NO_OBJ) {
            for (size_t k = 0; k < ne; k++) {
                (void)get_varint(&re);
                (void)get_varint(&re);
            }
            dropped += ne;
            continue;
        }
        size_t start = kept;
        for (size_t k = 0; k < ne; k++) {
            uint64_t a = delta_decode(get_varint(&re), base);
            uint64_t l = get_varint(&re);
            size_t t = pyheap_addrindex_find(&b->x, a);
            if (t == SIZE_MAX) {
                dropped++;
                continue;
            }
            tgt[kept] = (uint32_t)t;
            lab[kept] = label_decode(l);
            if (WALK_LBL_KIND(lab[kept]) == WALK_LBL_PENDING) {
                uint32_t pi = WALK_LBL_PAYLOAD(lab[kept]);
                uint32_t res = pi < b->npending ? b->pending[pi] : 0;
                pt->elided += (res & WALK_LBL_PENDING_ELIDED) != 0;
                lab[kept] = WALK_LBL_WITH_FLAGS(WALK_LBL_NOFLAGS(res), WALK_LBL_FLAGS(lab[kept]));
            }
            kept++;
        }
        s->eoff[p] = (uint32_t)(kept - start);
    }
    pt->kept = kept;
    pt->read = read;
    pt->dropped = dropped;
}

/* The part's objects' sizes, types and cut flags. */
static void phase_sizes(struct build *b, struct part *pt)
{
    pyheap_snapshot *s = b->s;
    struct reader r = part_objects(pt);
    uint64_t prev = pt->at.prev, bytes = 0;
    struct obj_rec o;
    for (size_t i = pt->at.n; i < pt->end; i++) {
        get_obj(&r, &prev, &o);
        uint32_t p = b->perm[i];
        if (p == NO_OBJ)
            continue;
        s->size[p] = o.size;
        s->type[p] = o.type < b->ntypes ? o.type : 0;
        if (o.cut)
            (void)bit_set_atomic(b->bits, p);
        bytes += o.size;
    }
    pt->bytes = bytes;
}

/* Edges to address order: each object's run of targets (or LABELS, with
 * the cut flag of their target) moves to its offset. */
static inline void move_edges(struct build *b, const struct part *pt, bool labels)
{
    const pyheap_snapshot *s = b->s;
    const uint32_t *from = (labels ? b->lab : b->tgt) + pt->at.e;
    for (size_t i = pt->at.n; i < pt->end; i++) {
        uint32_t p = b->perm[i];
        if (p == NO_OBJ)
            continue;
        for (uint32_t k = s->eoff[p]; k < s->eoff[p + 1]; k++) {
            uint32_t v = *from++;
            if (!labels)
                s->etarget[k] = v;
            else
                s->elabel[k] = bit_test(b->bits, s->etarget[k])
                                   ? WALK_LBL_WITH_FLAGS(v, PYHEAP_EDGE_CUT) : v;
        }
    }
}

static void phase_move_targets(struct build *b, struct part *pt)
{
    move_edges(b, pt, false);
}

static void phase_move_labels(struct build *b, struct part *pt)
{
    move_edges(b, pt, true);
}

typedef void (*phase_fn)(struct build *, struct part *);

struct phase_arg {
    struct build *b;
    phase_fn fn;
};

/* FN over the parts that are left, one at a time. */
static void *phase_thread(void *arg)
{
    struct phase_arg *a = arg;
    for (;;) {
        unsigned j = __atomic_fetch_add(&a->b->next, 1, __ATOMIC_RELAXED);
        if (j >= a->b->nparts)
            return NULL;
        a->fn(a->b, &a->b->part[j]);
    }
}

/* FN over every part, on up to nthreads threads (pyheap_run_slices). */
static void run_phase(struct build *b, phase_fn fn)
{
    struct phase_arg arg[PYHEAP_MAX_SCAN_THREADS];
    unsigned nt = b->nthreads < b->nparts ? b->nthreads : b->nparts;
    b->next = 0;
    for (unsigned j = 0; j < nt; j++)
        arg[j] = (struct phase_arg){ b, fn };
    pyheap_run_slices(phase_thread, arg, sizeof *arg, nt);
}

/* The part that starts at AT in stream IN, whose first object is object
 * N0 and first edge edge E0 of all the streams. */
static void part_open(struct build *b, const struct snapshot_in *in, struct snapshot_in_cp at,
                      size_t n0, size_t e0)
{
    at.n += n0;
    at.e += e0;
    b->part[b->nparts++] = (struct part){ .in = in, .at = at };
}

/* End the last part at object END, edge EEND (of all the streams). */
static void part_close(struct build *b, size_t end, size_t eend)
{
    struct part *pt = &b->part[b->nparts - 1];
    pt->end = end;
    pt->ebudget = eend - pt->at.e; /* a stream's last part may read up to its last edge */
}

/* Cut the NIN streams INS (b->n objects in all) into parts of about
 * b->n / THREADS objects at their checkpoints; a part lies in one stream,
 * so a stream's end also cuts. */
static void make_parts(struct build *b, const struct snapshot_in *ins, size_t nin,
                       unsigned threads)
{
    if (threads == 0)
        threads = 1;
    if (threads > PYHEAP_MAX_SCAN_THREADS)
        threads = PYHEAP_MAX_SCAN_THREADS;
    b->nthreads = threads;
    b->nparts = 0;
    size_t n0 = 0, e0 = 0; /* where stream k starts */
    unsigned j = 1;        /* the next cut wanted: at b->n / threads * j */
    for (size_t k = 0; k < nin; k++) {
        const struct snapshot_in *in = &ins[k];
        size_t nk = in->n;
        if (nk > 0) {
            part_open(b, in, (struct snapshot_in_cp){ 0, 0, 0, 0, 0 }, n0, e0);
            size_t c = 0;
            for (; j < threads; j++) {
                size_t want = b->n / threads * j;
                if (want >= n0 + nk)
                    break;   /* in a later stream */
                while (c < in->ncp && n0 + in->cp[c].n < want)
                    c++;
                if (c == in->ncp || in->cp[c].n >= nk)
                    break;   /* no checkpoint left in this stream */
                if (n0 + in->cp[c].n > b->part[b->nparts - 1].at.n) {
                    part_close(b, n0 + in->cp[c].n, e0 + in->cp[c].e);
                    part_open(b, in, in->cp[c], n0, e0);
                }
            }
            part_close(b, n0 + nk, e0 + in->nedges);
        }
        n0 += nk;
        e0 += in->nedges;
        while (j < threads && b->n / threads * j <= n0)
            j++;   /* (cuts wanted inside this stream and not made, or at its end) */
    }
    if (b->nparts == 0) {   /* no object: one empty part */
        part_open(b, nin ? &ins[0] : NULL, (struct snapshot_in_cp){ 0, 0, 0, 0, 0 }, 0, 0);
        part_close(b, 0, e0);
    }
}

/* Free the NIN streams INS. */
static void ins_free(struct snapshot_in *ins, size_t nin)
{
    for (size_t k = 0; k < nin; k++)
        pyheap_snapshot_in_free(&ins[k]);
}

int pyheap_snapshot_build_in(struct snapshot_in *in, char **names, size_t ntypes,
                             struct snapshot_graph_in *g, const pyheap_scan_stats *stats,
                             unsigned threads, pyheap_snapshot **out, pyheap_error *err)
{
    return pyheap_snapshot_build_ins(in, 1, names, ntypes, g, stats, threads, out, err);
}

int pyheap_snapshot_build_ins(struct snapshot_in *ins, size_t nin, char **names, size_t ntypes,
                              struct snapshot_graph_in *g, const pyheap_scan_stats *stats,
                              unsigned threads, pyheap_snapshot **out, pyheap_error *err)
{
    struct snapshot_graph_in empty;
    memset(&empty, 0, sizeof empty);
    if (!g)
        g = &empty;
    struct snapshot_in none;
    memset(&none, 0, sizeof none);
    if (nin == 0) {
        ins = &none;
        nin = 1;
    }
    if (nin > PYHEAP_MAX_SCAN_THREADS) {
        ins_free(ins, nin);
        release_taken(names, ntypes, g);
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "a snapshot is built from at most %d streams, not %zu",
                              PYHEAP_MAX_SCAN_THREADS, nin);
    }
    /* Edges after a stream's last object would pass for the next one's
     * (the last stream's are the build's to drop, and count). */
    size_t n = 0, nedges = 0;
    for (size_t k = 0; k < nin; k++) {
        if (k + 1 < nin) {
            ins[k].nedges = ins[k].obj_edges;
            ins[k].edgelen = ins[k].obj_edgelen;
        }
        n += ins[k].n;
        nedges += ins[k].nedges;
    }
    struct build b;
    memset(&b, 0, sizeof b);
    b.n = n;
    b.ntypes = ntypes;
    b.pending = g->pending;
    b.npending = g->npending;
    size_t nbits = 0;
    pyheap_snapshot *s = calloc(1, sizeof *s);
    if (!s || n >= UINT32_MAX || nedges >= UINT32_MAX)
        goto fail;
    b.s = s;
    s->names = names;
    s->ntypes = ntypes;
    names = NULL;
    s->stats = *stats;
    s->labels = g->labels;
    s->nlabels = g->nlabels;
    g->labels = NULL;
    g->nlabels = 0;
    make_parts(&b, ins, nin, threads);
    s->build_parts = b.nparts;

    /* Rank the addresses: x maps an address to its object index. A
     * walk's index comes with the objects: it serves if each object is in
     * it once and nothing else is. */
    b.perm = map_new(n * sizeof *b.perm);
    if (!b.perm)
        goto fail;
    size_t m = n;
    bool given = false;
    if (g->index) {
        b.x = *g->index;
        *g->index = (struct addrindex){ 0 };
        if (b.x.n == n) {
            nbits = n / 64 + 1;
            b.bits = calloc(nbits, sizeof *b.bits);
            if (!b.bits)
                goto fail;
            run_phase(&b, phase_perm_given);
            given = true;
            for (unsigned j = 0; j < b.nparts; j++)
                given = given && b.part[j].dups == 0;
        }
        if (!given) {
            pyheap_addrindex_free(&b.x);
            free(b.bits);
            b.bits = NULL;
            for (unsigned j = 0; j < b.nparts; j++)
                b.part[j].dups = 0;
        }
    }
    if (!given) {
        b.daddr = map_new(n * sizeof *b.daddr);
        if (!b.daddr)
            goto fail;
        run_phase(&b, phase_decode);
        if (pyheap_addrindex_build_unsorted(&b.x, b.daddr, n) < 0)
            goto fail;
        m = b.x.n;
        nbits = m / 64 + 1;
        b.bits = calloc(nbits, sizeof *b.bits);
        if (!b.bits)
            goto fail;
    }
    s->addr = pyheap_alloc_big(m, sizeof *s->addr, false);
    s->eoff = pyheap_alloc_big(m + 1, sizeof *s->eoff, true);
    if (!s->addr || !s->eoff)
        goto fail;
    if (!given) {
        run_phase(&b, phase_perm);
        size_t dups = 0;
        for (unsigned j = 0; j < b.nparts; j++)
            dups += b.part[j].dups;
        if (dups && b.nparts > 1)
            phase_perm_serial(&b, n); /* the first of each repeat wins, as with one part */
    }
    s->build_index_given = given;
    /* With the walk's index, the objects are its records one for one: its
     * tally is their per-type totals (type_totals need not count them
     * again; NULL when out of memory, and it does). */
    if (given)
        s->totals = totals_of_streams(ins, nin, ntypes);
    pyheap_addrindex_addrs(&b.x, s->addr, b.nthreads);
    s->n = m;
    map_free(b.daddr, n * sizeof *b.daddr);
    b.daddr = NULL;

    /* The edges, then (their stream freed) sizes, types and cut flags. */
    b.tgt = map_new(nedges * sizeof *b.tgt); /* only the kept edges' pages are touched */
    b.lab = map_new(nedges * sizeof *b.lab);
    if (!b.tgt || !b.lab)
        goto fail;
    run_phase(&b, phase_edges);
    size_t kept = 0, read = 0;
    uint64_t dropped = 0, bytes = 0;
    for (unsigned j = 0; j < b.nparts; j++) {
        kept += b.part[j].kept;
        read += b.part[j].read;
        dropped += b.part[j].dropped;
        s->stats.key_labels_elided += b.part[j].elided;
    }
    dropped += nedges - read; /* after the last object: no source */
    s->edges_dropped = dropped;
    for (size_t k = 0; k < nin; k++) {
        map_free(ins[k].edge, ins[k].edgecap);
        ins[k].edge = NULL;
    }
    s->size = pyheap_alloc_big(m, sizeof *s->size, false);
    s->type = pyheap_alloc_big(m, sizeof *s->type, false);
    if (!s->size || !s->type)
        goto fail;
    memset(b.bits, 0, nbits * sizeof *b.bits); /* now: edges into the object are cut */
    run_phase(&b, phase_sizes);
    for (unsigned j = 0; j < b.nparts; j++)
        bytes += b.part[j].bytes;
    for (size_t k = 0; k < nin; k++) {
        map_free(ins[k].obj, ins[k].objcap);
        ins[k].obj = NULL;
    }
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

    s->etarget = pyheap_alloc_big(kept, sizeof *s->etarget, false);
    if (!s->etarget)
        goto fail;
    run_phase(&b, phase_move_targets);
    map_free(b.tgt, nedges * sizeof *b.tgt);
    b.tgt = NULL;
    s->elabel = pyheap_alloc_big(kept, sizeof *s->elabel, false);
    if (!s->elabel)
        goto fail;
    run_phase(&b, phase_move_labels);
    map_free(b.lab, nedges * sizeof *b.lab);
    b.lab = NULL;
    map_free(b.perm, n * sizeof *b.perm);
    b.perm = NULL;
    free(b.bits);
    b.bits = NULL;

    /* Roots that are objects, in the order given. */
    s->root_obj = malloc((g->nroots ? g->nroots : 1) * sizeof *s->root_obj);
    s->root_name = calloc(g->nroots ? g->nroots : 1, sizeof *s->root_name);
    s->root_prio = malloc(g->nroots ? g->nroots : 1);
    if (!s->root_obj || !s->root_name || !s->root_prio)
        goto fail;
    for (size_t k = 0; k < g->nroots; k++) {
        size_t i = pyheap_addrindex_find(&b.x, g->roots[k].addr);
        if (i == SIZE_MAX) {
            free(g->roots[k].name);
            g->roots[k].name = NULL;
            continue;
        }
        s->root_obj[s->nroots] = (uint32_t)i;
        s->root_name[s->nroots] = g->roots[k].name;
        s->root_prio[s->nroots] = (uint8_t)(g->roots[k].prio ? 1 : 0);
        g->roots[k].name = NULL;
        s->nroots++;
    }
    pyheap_addrindex_free(&b.x);
    ins_free(ins, nin);
    *out = s;
    return 0;

fail:
    pyheap_addrindex_free(&b.x);
    map_free(b.daddr, n * sizeof *b.daddr);
    map_free(b.perm, n * sizeof *b.perm);
    free(b.bits);
    map_free(b.tgt, nedges * sizeof *b.tgt);
    map_free(b.lab, nedges * sizeof *b.lab);
    ins_free(ins, nin);
    release_taken(names, ntypes, g);
    pyheap_snapshot_free(s);
    if (n >= UINT32_MAX || nedges >= UINT32_MAX)
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0,
                              "too many objects or edges for a snapshot (%zu, %zu)", n, nedges);
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
    return pyheap_snapshot_build_in(&in, names, ntypes, g, stats, 1, out, err);
}

int pyheap_snapshot_take(pyheap_target *t, const pyheap_scan_opts *opts,
                         pyheap_snapshot **out, pyheap_error *err)
{
    if (!t || !out)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "pyheap_snapshot_take needs a target and an output pointer");
    return pyheap_walk(t, opts, out, err);
}

/* The snapshot whose objects S has: itself, or the base of a view. */
static pyheap_snapshot *objects_holder(const pyheap_snapshot *s)
{
    return s->base ? s->base : (pyheap_snapshot *)s;
}

/* One holder of S's objects lets go: the last frees them, and S. */
static void objects_release(pyheap_snapshot *s)
{
    if (__atomic_fetch_sub(&s->views, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    free(s->addr);
    free(s->size);
    free(s->type);
    free_names(s->names, s->ntypes);
    free(s->totals);
    free(s);
}

void pyheap_snapshot_free(pyheap_snapshot *s)
{
    if (!s)
        return;
    if (s->base) {   /* a slim view: its base's objects */
        pyheap_snapshot *b = s->base;
        free(s);
        objects_release(b);
        return;
    }
    free(s->eoff);
    free(s->etarget);
    free(s->elabel);
    free_names(s->labels, s->nlabels);
    free_names(s->root_name, s->nroots);
    free(s->root_obj);
    free(s->root_prio);
    s->eoff = s->etarget = s->elabel = NULL;
    s->labels = s->root_name = NULL;
    s->root_obj = NULL;
    s->root_prio = NULL;
    s->nedges = s->nlabels = s->nroots = 0;
    objects_release(s);
}

int pyheap_snapshot_slim(const pyheap_snapshot *s, pyheap_snapshot **out, pyheap_error *err)
{
    pyheap_snapshot *v = calloc(1, sizeof *v);
    if (!v)
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0, "out of memory copying a snapshot");
    /* The objects are immutable; only their holders' count changes. */
    pyheap_snapshot *b = objects_holder(s);
    __atomic_fetch_add(&b->views, 1, __ATOMIC_RELAXED);
    v->base = b;
    v->n = s->n;
    v->addr = s->addr;
    v->size = s->size;
    v->type = s->type;
    v->ntypes = s->ntypes;
    v->names = s->names;
    v->stats = s->stats;
    *out = v;
    return 0;
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

/* The per-type totals of S's objects: one pass over them the first time,
 * kept with the objects after that (a daemon's census records a series
 * and answers from the same snapshot). NULL when out of memory. */
static const struct snapshot_type_total *type_totals(const pyheap_snapshot *s)
{
    pyheap_snapshot *b = objects_holder(s);
    struct snapshot_type_total *tot = __atomic_load_n(&b->totals, __ATOMIC_ACQUIRE);
    if (tot)
        return tot;
    tot = calloc(b->ntypes ? b->ntypes : 1, sizeof *tot);
    if (!tot)
        return NULL;
    for (size_t i = 0; i < b->n; i++) {
        uint32_t ty = b->type[i];
        if (ty >= b->ntypes)
            continue;
        tot[ty].count++;
        tot[ty].bytes += b->size[i];
    }
    struct snapshot_type_total *none = NULL;
    if (!__atomic_compare_exchange_n(&b->totals, &none, tot, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        free(tot);   /* another request made them first */
        tot = none;
    }
    return tot;
}

/* Sorted histogram of the types with objects in TOT (NTYPES entries,
 * named by NAMES). */
static int histogram_of(const struct snapshot_type_total *tot, size_t ntypes,
                        char *const *names, pyheap_sort sort,
                        pyheap_type_stat **out, size_t *n, pyheap_error *err)
{
    pyheap_type_stat *all = calloc(ntypes ? ntypes : 1, sizeof *all);
    if (!tot || !all) {
        free(all);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0,
                              "out of memory for a histogram of %zu types", ntypes);
    }
    size_t m = 0;
    for (size_t i = 0; i < ntypes; i++)
        if (tot[i].count > 0)
            all[m++] = (pyheap_type_stat){ .type = (uint32_t)i, .name = names[i],
                                           .count = tot[i].count, .bytes = tot[i].bytes };
    if (m > 0)
        qsort(all, m, sizeof *all, sort == PYHEAP_SORT_COUNT ? cmp_count : cmp_bytes);
    *out = all;
    *n = m;
    return 0;
}

static int histogram_args(const void *what, pyheap_sort sort, pyheap_type_stat **out,
                          size_t *n, const char *fn, pyheap_error *err)
{
    if (!what || !out || !n)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "%s needs its input and output pointers", fn);
    if (sort != PYHEAP_SORT_BYTES && sort != PYHEAP_SORT_COUNT)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "unknown histogram sort order %d", (int)sort);
    return 0;
}

int pyheap_histogram(const pyheap_snapshot *s, pyheap_sort sort,
                     pyheap_type_stat **out, size_t *n, pyheap_error *err)
{
    if (histogram_args(s, sort, out, n, "pyheap_histogram", err) < 0)
        return -1;
    return histogram_of(type_totals(s), s->ntypes, s->names, sort, out, n, err);
}

const pyheap_scan_stats *pyheap_census_stats(const pyheap_census *c)
{
    return &c->stats;
}

int pyheap_census_histogram(const pyheap_census *c, pyheap_sort sort,
                            pyheap_type_stat **out, size_t *n, pyheap_error *err)
{
    if (histogram_args(c, sort, out, n, "pyheap_census_histogram", err) < 0)
        return -1;
    struct snapshot_type_total *tot = totals_by_name(c->tally, c->ntally, c->nnames);
    int rc = histogram_of(tot, c->nnames, c->names, sort, out, n, err);
    free(tot);
    return rc;
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
