/* Growth scoring over a series of per-type histograms (docs/growth.md).
 * A leak grows steadily: growing intervals dominate, the values rise in
 * rank order (Kendall's tau), the robust (Theil-Sen) slope is positive and
 * well above the typical step, and the net growth keeps most of the peak. A type that
 * churns or grows then shrinks back fails one of these. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int dcmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int row_cmp(const void *a, const void *b)
{
    const pyheap_growth_row *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    if (x->delta_bytes != y->delta_bytes)
        return x->delta_bytes > y->delta_bytes ? -1 : 1;
    return x->type < y->type ? -1 : x->type > y->type;
}

/* Median of the pairwise slopes of (t, v) — Theil-Sen; SLOPES has room for
 * npts*(npts-1)/2 values. */
static double theil_sen(const pyheap_growth_point *pts, size_t npts, size_t type,
                        double *slopes)
{
    size_t m = 0;
    for (size_t i = 0; i < npts; i++)
        for (size_t j = i + 1; j < npts; j++) {
            double dt = pts[j].t - pts[i].t;
            if (dt <= 0)
                continue;
            slopes[m++] = ((double)pts[j].bytes[type] - (double)pts[i].bytes[type]) / dt;
        }
    if (m == 0)
        return 0;
    qsort(slopes, m, sizeof *slopes, dcmp);
    return m % 2 ? slopes[m / 2] : (slopes[m / 2 - 1] + slopes[m / 2]) / 2;
}

/* Kendall's tau of bytes against time over PTS[0..NPTS): +1 when every
 * later point is above every earlier one. */
static double kendall_tau(const pyheap_growth_point *pts, size_t npts, size_t type)
{
    long s = 0, pairs = 0;
    for (size_t i = 0; i < npts; i++)
        for (size_t j = i + 1; j < npts; j++) {
            uint64_t a = pts[i].bytes[type], b = pts[j].bytes[type];
            s += b > a ? 1 : b < a ? -1 : 0;
            pairs++;
        }
    return pairs ? (double)s / (double)pairs : 0;
}

/* Median of |b[i] - b[i-1]|: the typical step, noise included. */
static double median_step(const pyheap_growth_point *pts, size_t npts, size_t type,
                          double *tmp)
{
    size_t m = 0;
    for (size_t i = 1; i < npts; i++)
        tmp[m++] = fabs((double)pts[i].bytes[type] - (double)pts[i - 1].bytes[type]);
    if (m == 0)
        return 0;
    qsort(tmp, m, sizeof *tmp, dcmp);
    return m % 2 ? tmp[m / 2] : (tmp[m / 2 - 1] + tmp[m / 2]) / 2;
}

int pyheap_growth_rank(const pyheap_growth_point *pts, size_t npts, size_t ntypes,
                       pyheap_growth_row **out, size_t *n, pyheap_error *err)
{
    if (!pts || !out || !n || npts < 2)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "growth needs at least 2 snapshots (have %zu)", npts);
    if (npts > 100000)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0, "too many points (%zu)", npts);
    /* Theil-Sen over the last 64 points at most: O(k^2) per type. */
    size_t first = npts > 64 ? npts - 64 : 0;
    size_t k = npts - first;
    double *slopes = malloc((k * (k - 1) / 2 + k) * sizeof *slopes);
    pyheap_growth_row *rows = calloc(ntypes ? ntypes : 1, sizeof *rows);
    if (!slopes || !rows) {
        free(slopes);
        free(rows);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0, "out of memory scoring growth");
    }
    size_t m = 0;
    unsigned intervals = (unsigned)(npts - 1);
    double window = pts[npts - 1].t - pts[0].t;
    for (size_t t = 0; t < ntypes; t++) {
        uint64_t c0 = pts[0].count[t], b0 = pts[0].bytes[t];
        uint64_t c1 = pts[npts - 1].count[t], b1 = pts[npts - 1].bytes[t];
        uint64_t peak = b0;
        unsigned grew = 0, shrank = 0;
        for (size_t i = 1; i < npts; i++) {
            uint64_t bp = pts[i - 1].bytes[t], bi = pts[i].bytes[t];
            if (bi > bp || (bi == bp && pts[i].count[t] > pts[i - 1].count[t]))
                grew++;
            else if (bi < bp)
                shrank++;
            if (bi > peak)
                peak = bi;
        }
        if (b1 <= b0 || c1 < c0)
            continue;
        /* Growing intervals outnumber shrinking ones two to one (flat
         * intervals of a slow, stepwise leak count for neither). */
        if (grew <= 2 * shrank)
            continue;
        /* The net growth keeps at least half of the peak's. */
        if ((double)(b1 - b0) < 0.5 * (double)(peak - b0))
            continue;
        double slope = theil_sen(pts + first, k, t, slopes);
        if (!(slope > 0))
            continue;
        /* A trend, not noise: ranks agree (Kendall's tau >= 0.7) and the
         * fitted rise over the window is at least twice the typical step
         * (once with 2 points). */
        if (kendall_tau(pts + first, k, t) < 0.7)
            continue;
        double span = pts[npts - 1].t - pts[first].t;
        double step = median_step(pts + first, k, t, slopes);
        if (slope * span < fmin(2.0, (double)(k - 1)) * step)
            continue;
        pyheap_growth_row *r = &rows[m++];
        r->type = t;
        r->count = c1;
        r->bytes = b1;
        r->delta_count = (int64_t)c1 - (int64_t)c0;
        r->delta_bytes = (int64_t)(b1 - b0);
        r->per_min_bytes = slope * 60.0;
        r->grew_in = grew;
        r->intervals = intervals;
        double mono = (double)grew / (double)intervals;
        /* Robust rate, weighted by steadiness; the net rate over the window
         * caps a slope a few outliers inflated. */
        double net = window > 0 ? (double)(b1 - b0) / window : slope;
        r->score = fmin(slope, net > 0 ? net * 2 : slope) * mono * mono;
    }
    free(slopes);
    qsort(rows, m, sizeof *rows, row_cmp);
    *out = rows;
    *n = m;
    return 0;
}
