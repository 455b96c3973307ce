/* Per-session history (issue 5): periodic scans in a background thread, a
 * bounded series of per-type histograms + memory figures, and the last few
 * snapshots' objects (address, size, type: no graph) for object diffs.
 * docs/growth.md describes the bounds. */
#ifndef PYHEAPD_HISTORY_H
#define PYHEAPD_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pyheap.h"

struct pyheapd;
struct pyheapd_session;
struct pyheapd_history;

/* Total bytes of kept (packed) snapshots per session, beyond which the
 * oldest are dropped (the newest is always kept). */
#define PYHEAPD_KEEP_MAX_BYTES (512ull << 20)

/* A kept snapshot (objects and types only), reference-counted so a diff
 * can use it while the thread records newer ones. */
struct pyheapd_kept {
    uint64_t id;
    double t;               /* seconds since the session began (monotonic) */
    int64_t wall;           /* unix time */
    pyheap_packed *objs;    /* its objects, packed: no graph */
    unsigned refs;          /* history lock */
};

/* issue 7: the newest full snapshot of the session (graph included), kept
 * so top/referrers with "max_age" can answer without a scan. At most one
 * per session: a newer scan replaces it, and a scan that starts releases
 * it first so two full snapshots never coexist (unless a request is still
 * using the old one). Reference-counted like pyheapd_kept. */
struct pyheapd_full {
    uint64_t id;            /* the history id the scan was recorded under */
    double t;               /* when its scan began, seconds since the session
                             * began (monotonic) */
    int64_t wall;           /* unix time of the same moment */
    pyheap_snapshot *snap;  /* full */
    unsigned refs;          /* history lock */
};

struct pyheapd_history *pyheapd_history_new(size_t cap, size_t keep);
/* Stop the periodic thread (waits for a running scan) and free. */
void pyheapd_history_free(struct pyheapd_history *h);
/* Change history cap / keep (0: unchanged). */
void pyheapd_history_limits(struct pyheapd_history *h, size_t cap, size_t keep);
/* Start, retune or stop (INTERVAL 0) the periodic scans of S. 0 or -1. */
int pyheapd_history_set_interval(struct pyheapd *d, struct pyheapd_session *s, double interval);
/* Record a fresh snapshot of S (any command's scan); returns its id. */
uint64_t pyheapd_history_record(struct pyheapd_history *h, pid_t pid,
                                const pyheap_snapshot *snap);
/* The kept snapshot ID (0: the oldest kept), with a reference; NULL if not
 * kept. */
struct pyheapd_kept *pyheapd_history_get(struct pyheapd_history *h, uint64_t id);
void pyheapd_history_put(struct pyheapd_history *h, struct pyheapd_kept *k);
/* issue 7: keep SNAP (taken: freed now, on failure, or later) as the
 * session's full snapshot, recorded as ID (0 if it could not be), replacing
 * the previous one; unless a scan began after SNAP's own (GEN, from
 * pyheapd_history_scan_begin): then SNAP is freed, so that the newer scan
 * never runs beside a kept full snapshot (two of them and a walk would
 * take pyheapd past the target's own size on a big heap). */
void pyheapd_history_keep_full(struct pyheapd_history *h, uint64_t id, uint64_t gen,
                               pyheap_snapshot *snap);
/* Release the kept full snapshot (a new scan begins). */
void pyheapd_history_drop_full(struct pyheapd_history *h);
/* A scan of the session begins (its scan lock held): release the kept full
 * snapshot and return the scan's generation for keep_full. */
uint64_t pyheapd_history_scan_begin(struct pyheapd_history *h);
/* A scan answered before building its snapshot (+1), and has kept it or
 * failed (-1): until then full_get waits for it. */
void pyheapd_history_pending(struct pyheapd_history *h, int delta);
/* Wait until no snapshot promised by an answer already given is still
 * being built or recorded (the commands that read the history: snapshots,
 * growth, diff). */
void pyheapd_history_settle(struct pyheapd_history *h);
/* The kept full snapshot if its scan began at most MAX_AGE seconds ago,
 * with a reference and its age in *AGE_S; NULL otherwise. Waits for a
 * snapshot being built after an early answer (pyheapd_history_pending). */
struct pyheapd_full *pyheapd_history_full_get(struct pyheapd_history *h, double max_age,
                                              double *age_s);
void pyheapd_history_full_put(struct pyheapd_history *h, struct pyheapd_full *f);
/* Fields for "ps": interval_s, series_points, series_state. */
int pyheapd_history_ps(struct pyheapd_history *h, json_t *entry);
/* {"pid","window_s","snapshots","interval_s","state","types":[...]} into O,
 * N types (0: all); -1 with *err (fewer than 2 points: PYHEAP_E_INVAL). */
int pyheapd_history_growth(struct pyheapd_history *h, size_t n, json_t *o, pyheap_error *err);
/* "snapshots": the kept snapshots and the series. */
int pyheapd_history_list(struct pyheapd_history *h, json_t *o);
/* "stats" trend: the series' memory figures, first vs last. */
int pyheapd_history_trend(struct pyheapd_history *h, json_t *o);

#endif
