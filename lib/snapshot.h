/*
 * The snapshot model (private). A snapshot is immutable once built:
 * objects sorted by address in parallel arrays (address, size, type index:
 * 20 bytes per object), a table of type names, and the scan statistics.
 * A type index stands for a distinct *name*: two classes that print the same
 * (e.g. "__main__.Foo" defined twice) share an index, as in objgraph.
 *
 * Edges are CSR arrays indexed by the same object index: the walker
 * records (source index in discovery order, target address, label);
 * snapshot_build maps discovery order to address order and resolves target
 * addresses through a hash table. Per object: 24 bytes (address, size,
 * type, edge offset); per edge: 8 bytes (target index, packed label).
 */
#ifndef PYHEAP_SNAPSHOT_H
#define PYHEAP_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "pyheap.h"

/* One object as the walker found it (discovery order). */
struct snapshot_rec {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t flags;       /* SNAPSHOT_REC_* */
};

/* Edges into this object are PYHEAP_EDGE_CUT (module, type, code). */
#define SNAPSHOT_REC_CUT 1u

/* One edge as the walker found it: SRC is the index of the source record
 * in discovery order, LABEL a packed label (walk.h: WALK_LBL...). */
struct snapshot_edge_in {
    uint64_t target;
    uint32_t src;
    uint32_t label;
};

struct snapshot_root_in {
    uint64_t addr;
    char *name;           /* owned */
    int prio;             /* 0: modules (searched first), 1: the rest */
};

struct snapshot_graph_in {
    struct snapshot_edge_in *edges; /* borrowed, left unchanged */
    size_t nedges;
    char **labels;        /* label strings: taken (array and strings) */
    size_t nlabels;
    struct snapshot_root_in *roots; /* array borrowed; names taken */
    size_t nroots;
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
};

/* Build a snapshot from N records (reordered in place) and NTYPES names.
 * Takes ownership of NAMES and every string in it (also on failure), and
 * of what G says is taken. G may be NULL (no graph). Duplicate addresses
 * keep the first record. */
int pyheap_snapshot_build(struct snapshot_rec *recs, size_t n, char **names,
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
