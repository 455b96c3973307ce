/*
 * The snapshot model (private). A snapshot is immutable once built:
 * objects sorted by address in parallel arrays (address, size, type index:
 * 20 bytes per object), a table of type names, and the scan statistics.
 * A type index stands for a distinct *name*: two classes that print the same
 * (e.g. "__main__.Foo" defined twice) share an index, as in objgraph.
 *
 * Edges are CSR arrays indexed by the same object index. The walker appends
 * objects and their edges (target address, label) in discovery order to a
 * struct snapshot_in (packed); the build ranks the addresses with a bitmap
 * index (no sort), resolves targets through it and moves everything to
 * address order, freeing each input as it is consumed. Per object: 24 bytes
 * (address, size, type, edge offset); per edge: 8 bytes (target index,
 * packed label).
 */
#ifndef PYHEAP_SNAPSHOT_H
#define PYHEAP_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pyheap.h"

/* What a walk found, in discovery order, packed as two byte streams of
 * LEB128 varints (~7 bytes per object and ~5 per edge here, against 24 and
 * 12 as arrays): per object, its address as a delta from the previous
 * object's, size, type << 1 | cut, number of edges; per edge, its target
 * as a delta from the previous object's address and its label. The edges
 * appended since the previous object are the edges of the next object
 * appended. A zeroed struct is empty. */
struct snapshot_in {
    size_t n;             /* objects */
    size_t nedges;        /* edges, also those of no object yet */
    size_t obj_edges;     /* edges that belong to an object */
    size_t obj_edgelen;   /* their bytes */
    uint64_t prev;        /* the previous object's address, or 0 */
    unsigned char *obj, *edge;
    size_t objlen, objcap, edgelen, edgecap;
    /* Checkpoints, ascending: places where decoding can start, so that
     * the build can share the streams out between threads. One every
     * cp_every objects (0: SNAPSHOT_IN_CP_EVERY). */
    struct snapshot_in_cp *cp;
    size_t ncp, capcp, cp_every;
    size_t cp_at;         /* the object that gets the next checkpoint */
    /* With tallying set (before the first object): objects and bytes per
     * type index of what was appended, merged by append (the census a
     * walk answers before the build, pyheap_scan_opts.census).
     * tally_lost: out of memory, or objects kept out (snapshot_in_keep). */
    bool tallying, tally_lost;
    struct snapshot_type_total *tally;
    size_t ntally;
};

struct snapshot_type_total {
    uint64_t count, bytes;
};

/* Object N's record starts at byte OBJOFF of the object stream and its
 * edges at byte EDGEOFF of the edge stream; E edges belong to the objects
 * before it; PREV is the address of object N - 1 (0 for the first). */
struct snapshot_in_cp {
    size_t n, e, objoff, edgeoff;
    uint64_t prev;
};

#define SNAPSHOT_IN_CP_EVERY 65536

/* Where the edges end, to drop those of an object given up. */
struct snapshot_in_mark {
    size_t nedges, edgelen;
};

/* Edges into this object are PYHEAP_EDGE_CUT (module, type, code). */
#define SNAPSHOT_IN_CUT 0x80000000u

/* The most bytes one varint takes. */
#define SNAPSHOT_VARINT_MAX 10

/* Room for SNAPSHOT_VARINT_MAX + 5 more bytes of edges; 0, or -1 when out
 * of memory. */
int pyheap_snapshot_in_grow_edges(struct snapshot_in *in);
/* Append an object: TYPE is a name index (below 2^31), SNAPSHOT_IN_CUT or'd
 * in; it owns the edges appended since the previous object. 0, or -1 when
 * out of memory (or 2^32 objects or edges). */
int pyheap_snapshot_in_object(struct snapshot_in *in, uint64_t addr, uint64_t size,
                              uint32_t type);
void pyheap_snapshot_in_free(struct snapshot_in *in);
/* Append the edges of PART (edges only: no object) to IN's, for IN's
 * next object. PART's edges must have been appended as IN's would have
 * been: its prev was IN's. 0, or -1 when out of memory (or 2^32 edges). */
int pyheap_snapshot_in_add_edges(struct snapshot_in *in, const struct snapshot_in *part);

/* Keep the first N objects only: the build drops the edges of the rest.
 * Nothing may be appended afterwards. */
static inline void snapshot_in_keep(struct snapshot_in *in, size_t n)
{
    if (n < in->n) {
        in->n = n;
        in->tally_lost = true;
    }
}

static inline unsigned char *snapshot_put_varint(unsigned char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

/* An address delta as a varint: zigzag of the delta / 8 (small for nearby
 * 8-aligned addresses), the low 3 bits in bits 61..63. */
static inline uint64_t snapshot_delta_code(uint64_t addr, uint64_t base)
{
    uint64_t d = addr - base;
    uint64_t q = (d >> 3) | ((0 - (d >> 63)) << 61); /* d / 8, rounded down */
    return ((q << 1) ^ (0 - (q >> 63))) | ((d & 7) << 61);
}

/* The label's kind and flags (bits 24..31) in the low byte: common labels
 * take one or two bytes. */
static inline uint64_t snapshot_label_code(uint32_t label)
{
    return (uint64_t)(label >> 24) | ((uint64_t)(label & 0xffffffu) << 8);
}

static inline int snapshot_in_edge(struct snapshot_in *in, uint64_t target, uint32_t label)
{
    if (in->edgecap - in->edgelen < SNAPSHOT_VARINT_MAX + 5 &&
        pyheap_snapshot_in_grow_edges(in) < 0)
        return -1;
    unsigned char *p = in->edge + in->edgelen;
    p = snapshot_put_varint(p, snapshot_delta_code(target, in->prev));
    p = snapshot_put_varint(p, snapshot_label_code(label));
    in->edgelen = (size_t)(p - in->edge);
    in->nedges++;
    return 0;
}

/* Append an object's record, with room for it and its type in the tally
 * (pyheap_snapshot_in_object sees to both). */
static inline void snapshot_in_put_object(struct snapshot_in *in, uint64_t addr, uint64_t size,
                                          uint32_t type)
{
    uint32_t ty = type & ~SNAPSHOT_IN_CUT;
    unsigned char *p = in->obj + in->objlen;
    p = snapshot_put_varint(p, snapshot_delta_code(addr, in->prev));
    p = snapshot_put_varint(p, size);
    p = snapshot_put_varint(p, (uint64_t)ty << 1 | ((type & SNAPSHOT_IN_CUT) ? 1 : 0));
    p = snapshot_put_varint(p, in->nedges - in->obj_edges);
    in->objlen = (size_t)(p - in->obj);
    in->obj_edges = in->nedges;
    in->obj_edgelen = in->edgelen;
    in->prev = addr;
    in->n++;
    if (in->tallying && !in->tally_lost) {
        in->tally[ty].count++;
        in->tally[ty].bytes += size;
    }
}

/* pyheap_snapshot_in_object, inline when there is room, no checkpoint is
 * due and the type is in the tally already (almost every object). */
static inline int snapshot_in_object(struct snapshot_in *in, uint64_t addr, uint64_t size,
                                     uint32_t type)
{
    if (in->objcap - in->objlen < 4 * SNAPSHOT_VARINT_MAX || in->n >= in->cp_at ||
        in->n >= (size_t)UINT32_MAX - 1 || in->nedges >= (size_t)UINT32_MAX ||
        (in->tallying && !in->tally_lost && (type & ~SNAPSHOT_IN_CUT) >= in->ntally))
        return pyheap_snapshot_in_object(in, addr, size, type);
    snapshot_in_put_object(in, addr, size, type);
    return 0;
}

static inline struct snapshot_in_mark snapshot_in_mark(const struct snapshot_in *in)
{
    return (struct snapshot_in_mark){ in->nedges, in->edgelen };
}

/* Drop the edges appended since M (taken since the last object). */
static inline void snapshot_in_rollback(struct snapshot_in *in, struct snapshot_in_mark m)
{
    in->nedges = m.nedges;
    in->edgelen = m.edgelen;
}

/* One object and one edge in the form of pyheap_snapshot_build (any order:
 * SRC is the index of the source record). */
struct snapshot_rec {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t flags;       /* SNAPSHOT_REC_* */
};

/* Edges into this object are PYHEAP_EDGE_CUT (module, type, code). */
#define SNAPSHOT_REC_CUT 1u

struct snapshot_edge_in {
    uint64_t target;
    uint32_t src;
    uint32_t label;       /* packed (walk.h: WALK_LBL...) */
};

struct snapshot_root_in {
    uint64_t addr;
    char *name;           /* owned */
    int prio;             /* 0: modules (searched first), 1: the rest */
};

struct addrindex;

struct snapshot_graph_in {
    struct snapshot_edge_in *edges; /* borrowed, left unchanged; read by
                                     * pyheap_snapshot_build only */
    size_t nedges;
    char **labels;        /* label strings: taken (array and strings) */
    size_t nlabels;
    struct snapshot_root_in *roots; /* array borrowed; names taken */
    size_t nroots;
    /* If not NULL: the addresses of the objects, indexed (a walk's seen
     * set less what it did not record), taken. The build checks it
     * against the objects and indexes them itself when it does not match. */
    struct addrindex *index;
    /* The labels of a walk's pending keys (WALK_LBL_PENDING), by payload:
     * borrowed; an edge label beyond them becomes LBL_NONE. Each edge
     * kept whose label is flagged WALK_LBL_PENDING_ELIDED counts in the
     * snapshot's key_labels_elided. */
    const uint32_t *pending;
    size_t npending;
};

/* What a walk found, before the build (pyheap_scan_opts.census). */
struct pyheap_census {
    pyheap_scan_stats stats;
    const struct snapshot_type_total *tally; /* by type index */
    size_t ntally;
    char *const *names;
    size_t nnames;
};

struct pyheap_snapshot {
    size_t n;
    uint64_t *addr;       /* ascending */
    uint64_t *size;
    uint32_t *type;
    size_t ntypes;
    char **names;         /* ntypes owned strings */
    pyheap_scan_stats stats;

    /* Forward edges, CSR: the edges of object i are [eoff[i], eoff[i+1]). */
    uint32_t *eoff;       /* n + 1 */
    uint32_t *etarget;    /* object index */
    uint32_t *elabel;     /* packed label, flags included */
    size_t nedges;
    uint64_t edges_dropped; /* edges to addresses that are no object */
    char **labels;        /* label strings */
    size_t nlabels;
    size_t nroots;
    uint32_t *root_obj;   /* object index */
    char **root_name;
    uint8_t *root_prio;
    unsigned build_parts; /* parts it was built in (between checkpoints and
                           * streams), by up to `threads` threads */
    bool build_index_given; /* its index came with the walk's objects */
    /* Slim views (pyheap_snapshot_slim) share addr, size, type and names
     * with the snapshot they were made of (their base) instead of copying
     * them. views (atomic) counts the holders of those arrays beyond the
     * base itself: freeing the base frees its graph at once and its
     * objects when the last view goes. */
    struct pyheap_snapshot *base;
    unsigned views;
    /* Objects and bytes per type, made by the first pyheap_histogram of
     * the objects' holder (the base of views) and kept with the objects
     * (published atomically: concurrent requests share a snapshot). */
    struct snapshot_type_total *totals;
};

/* Build a snapshot from what a walk found. Takes IN's streams (also on
 * failure; IN is left empty), NAMES and every string in it, and what G
 * says is taken; G's edges are not read. G may be NULL (no labels, no
 * roots). Duplicate addresses keep the first object; edges to addresses
 * that are no object, and the edges of a duplicate, are dropped. Up to
 * THREADS threads (0: 1) share the work out between IN's checkpoints; the
 * snapshot is the same whatever their number. */
int pyheap_snapshot_build_in(struct snapshot_in *in, char **names, size_t ntypes,
                             struct snapshot_graph_in *g, const pyheap_scan_stats *stats,
                             unsigned threads, pyheap_snapshot **out, pyheap_error *err);
/* The same from the NIN streams INS (at most PYHEAP_MAX_SCAN_THREADS; the
 * records of a walk's threads), taken in their order as if appended one to
 * the other: the objects of INS[0], then those of INS[1], ...; edges after
 * the last object of a stream but the last are dropped and not counted.
 * The streams are not copied: each part of the build lies in one. */
int pyheap_snapshot_build_ins(struct snapshot_in *ins, size_t nin, char **names, size_t ntypes,
                              struct snapshot_graph_in *g, const pyheap_scan_stats *stats,
                              unsigned threads, pyheap_snapshot **out, pyheap_error *err);

/* The same from N records and G's edges in any order (hand-built
 * snapshots): RECS and G's edges are borrowed; the rest as above. */
int pyheap_snapshot_build(const struct snapshot_rec *recs, size_t n, char **names,
                          size_t ntypes, struct snapshot_graph_in *g,
                          const pyheap_scan_stats *stats,
                          pyheap_snapshot **out, pyheap_error *err);

/* Render the packed LABEL with label strings STRS[0..NSTRS) into BUF
 * (NUL-terminated, truncated to CAP-1; CAP may be 0). Returns the
 * untruncated length. */
size_t pyheap_label_render(char *const *strs, size_t nstrs, uint32_t label,
                           char *buf, size_t cap);

/* The label of edge E (index into etarget/elabel) of S. */
static inline uint32_t snapshot_elabel(const pyheap_snapshot *s, size_t e)
{
    return s->elabel[e];
}

/* A loaded snapshot's arrays (snapfile.c), already validated: N objects
 * ascending by address; CSR edges; label and root strings. */
struct snapshot_parts {
    size_t n;
    uint64_t *addr, *size;
    uint32_t *type;
    size_t ntypes;
    char **names;
    uint32_t *eoff, *etarget, *elabel;
    size_t nedges;
    char **labels;
    size_t nlabels;
    size_t nroots;
    uint32_t *root_obj;
    char **root_name;
    uint8_t *root_prio;
    pyheap_scan_stats stats;
};

/* Free every array and string P holds and zero it. */
void pyheap_snapshot_parts_free(struct snapshot_parts *p);

/* Make a snapshot of P's arrays; takes every array and string of P (also on
 * failure; P is zeroed). */
int pyheap_snapshot_adopt(struct snapshot_parts *p, pyheap_snapshot **out,
                          pyheap_error *err);

#endif
