/*
 * The snapshot model (private). A snapshot is immutable once built:
 * objects sorted by address in parallel arrays (address, size, type index:
 * 20 bytes per object), a table of type names, and the scan statistics.
 *
 * Edges (issue 3) will be added as CSR arrays indexed by the same object
 * index: the walker records (source index in discovery order, target
 * address, label); snapshot_build maps discovery order to address order
 * with the permutation it computes and resolves target addresses by binary
 * search over `addr`.
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
    uint32_t pad;
};

struct pyheap_snapshot {
    size_t n;
    uint64_t *addr;       /* ascending */
    uint64_t *size;
    uint32_t *type;
    size_t ntypes;
    char **names;         /* ntypes owned strings */
    pyheap_scan_stats stats;
};

/* Build a snapshot from N records (reordered in place) and NTYPES names.
 * Takes ownership of NAMES and every string in it (also on failure).
 * Duplicate addresses keep the first record. */
int pyheap_snapshot_build(struct snapshot_rec *recs, size_t n, char **names,
                          size_t ntypes, const pyheap_scan_stats *stats,
                          pyheap_snapshot **out, pyheap_error *err);

#endif
