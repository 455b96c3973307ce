/*
 * JSON reports built from libpyheap objects (jansson), shared by pyheapd and
 * pyheap. The shapes are documented in docs/protocol.md. Every function
 * returns a NEW reference (caller json_decref's it) or NULL with *err filled.
 */
#ifndef PYHEAP_REPORT_H
#define PYHEAP_REPORT_H

#include <stddef.h>

#include <jansson.h>

#include "pyheap.h"

/* The "top" report from a histogram already computed (pure: no process).
 * HIST has NHIST entries in display order; the first N are listed (0: all).
 * {"pid","python","offsets_source","objects","bytes","skipped","scan_ms",
 *  "scan_truncated","ntypes","truncated_types","types":[{"type","count","bytes"}]} */
json_t *pyheap_report_top_hist(pid_t pid, const char *python,
                               const char *offsets_source,
                               const pyheap_scan_stats *stats,
                               const pyheap_type_stat *hist, size_t nhist,
                               size_t n, pyheap_error *err);

/* The "top" report for snapshot S of target T, sorted by SORT, N types
 * (0: all). */
json_t *pyheap_report_top(const pyheap_target *t, const pyheap_snapshot *s,
                          pyheap_sort sort, size_t n, pyheap_error *err);

/* A target's identity: {"pid","python","offsets_source","offsets_detail",
 * "module"}. */
json_t *pyheap_report_target(const pyheap_target *t, pyheap_error *err);

#endif
