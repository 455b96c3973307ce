/* Choosing where struct offsets come from, per CPython version. Private. */
#ifndef PYHEAP_OFFSETS_SOURCE_H
#define PYHEAP_OFFSETS_SOURCE_H

#include <stdbool.h>
#include <stddef.h>

#include "internal.h"
#include "proc_maps.h"

/* Whether pyheap knows MAJOR.MINOR (has a version entry). */
bool pyheap_version_supported(int major, int minor);
/* "3.11" (comma-separated): the versions pyheap supports, for messages;
 * written to BUF, which is returned. */
const char *pyheap_versions_supported(char *buf, size_t len);

/* Resolve PYHEAP_WELL_KNOWN_TYPES in MOD into t->wk (bias applied). */
int pyheap_wk_resolve(pyheap_target *t, const struct pyheap_module *mod,
                      pyheap_error *err);

/* Fill t->off, t->source and t->source_detail from the first allowed
 * source that loads and validates against the live target: debug_offsets
 * (3.13+), DWARF (the module or its debug file), the built-in table.
 * Needs t->pid, t->major/minor, t->k, t->wk, t->runtime_addr, t->mem. */
int pyheap_offsets_load(pyheap_target *t, const struct pyheap_module *mod,
                        unsigned allowed_sources, pyheap_error *err);

/* Does OFF (from DWARF, with MISSING fields absent) have the shape of
 * MAJOR.MINOR: every required field present and the version's marker
 * fields there? 0, or -1 with a reason in WHY. */
int pyheap_offsets_check_shape(int major, int minor,
                               const struct pyheap_offsets *off, char *why,
                               size_t why_len);

/* The built-in table for MAJOR.MINOR, or NULL. */
const struct pyheap_offsets_table *pyheap_offsets_table_for(int major, int minor);

#endif
