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
/* The same report from a walk's census (pyheap_scan_opts.census), before
 * the snapshot is built. */
json_t *pyheap_report_top_census(const pyheap_target *t, const pyheap_census *c,
                                 pyheap_sort sort, size_t n, pyheap_error *err);

/* A target's identity: {"pid","python","offsets_source","offsets_detail",
 * "module"}. */
json_t *pyheap_report_target(const pyheap_target *t, pyheap_error *err);

/* The "referrers" report (pure: no process). TYPE is the resolved qualified
 * name. {"pid","type","objects","bytes","scan_ms","scan_truncated",
 *  "referrers":[{"type","via","count","bytes","depth","parent","flags"}],
 *  "paths":[{"path","count"}],"unreachable"}. "parent" is the index in
 * "referrers" of the group referred to (null at depth 1); "flags" lists
 * "weak", "inferred", "cut" as they apply. STATS may be NULL (scan_ms 0). */
json_t *pyheap_report_referrers_data(pid_t pid, const char *type,
                                     const pyheap_referrers *r,
                                     const pyheap_scan_stats *stats,
                                     pyheap_error *err);

/* Resolve NAME in S and compute its referrers. Returns a complete reply
 * (new reference): {"ok":true, ...the report above} on success;
 * {"ok":false,"error":"not_found","message","suggestions":[names]} when no
 * type matches (suggestions: up to 5 close names); {"ok":false,
 * "error":"ambiguous","message","candidates":[qualified names]} when a
 * short name matches several types. NULL with *err for other failures. */
json_t *pyheap_report_referrers(pid_t pid, const pyheap_snapshot *s, const char *name,
                                const pyheap_referrers_opts *opts, pyheap_error *err);

/* issue 5: the "diff" report (pure): {"pid","new_objects","new_bytes",
 * "gone_objects","gone_bytes","types":[{"type","count","bytes"}],
 * "via":[{"type","via_type","via","count","bytes"}]}; N rows of each list
 * (0: all), "truncated_types"/"truncated_via" say how many were left out. */
json_t *pyheap_report_diff(pid_t pid, const pyheap_diff *d, size_t n, pyheap_error *err);

#endif
