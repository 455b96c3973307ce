/* Per-session history: periodic scans, the per-type series, kept snapshots
 * (history.h). One lock per history; never held during a scan. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "history.h"
#include "pyheapd.h"

struct point {
    uint64_t id;
    double t;               /* seconds since the history began */
    int64_t wall;
    size_t ntypes;          /* entries of count/bytes (types known then) */
    uint64_t *count, *bytes;
    uint64_t objects, obj_bytes;
    pyheap_mem_stats mem;   /* -1 fields: unknown */
};

struct pyheapd_history {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    struct timespec t0;     /* CLOCK_MONOTONIC origin */
    /* type names seen by this series: id = index; hash of ids */
    char **names;
    size_t nnames, names_cap;
    uint32_t *hash;         /* open addressing, UINT32_MAX = empty */
    size_t hash_cap;
    /* ring of points */
    struct point *pts;
    size_t cap, head, npts; /* oldest at head */
    /* kept snapshots, oldest first */
    struct pyheapd_kept **kept;
    size_t nkept, keep;
    uint64_t next_id;
    /* issue 7: the newest full snapshot, or NULL */
    struct pyheapd_full *full;
    /* scans begun (pyheapd_history_scan_begin): a snapshot is kept only
     * if no scan began after its own */
    uint64_t scan_gen;
    /* scans that answered before their snapshot was built, still
     * building it: full_get waits for them (cv) */
    int pending;
    /* periodic thread */
    double interval;
    int running, stop;
    pthread_t th;
    char state[256];
    uint64_t scans_ok, scans_failed;
    struct pyheapd *d;
    struct pyheapd_session *s;
};

static double now_s(const struct pyheapd_history *h)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)(ts.tv_sec - h->t0.tv_sec) + (double)(ts.tv_nsec - h->t0.tv_nsec) / 1e9;
}

struct pyheapd_history *pyheapd_history_new(size_t cap, size_t keep)
{
    struct pyheapd_history *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    if (pthread_mutex_init(&h->lock, NULL) != 0) {
        free(h);
        return NULL;
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_cond_init(&h->cv, &ca) != 0) {
        pthread_condattr_destroy(&ca);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
    }
    pthread_condattr_destroy(&ca);
    clock_gettime(CLOCK_MONOTONIC, &h->t0);
    h->cap = cap ? cap : PYHEAP_PROTO_DEFAULT_HISTORY;
    h->keep = keep ? keep : PYHEAP_PROTO_DEFAULT_KEEP;
    h->pts = calloc(h->cap, sizeof *h->pts);
    h->kept = calloc(PYHEAP_PROTO_MAX_KEEP + 1, sizeof *h->kept);
    h->next_id = 1;
    snprintf(h->state, sizeof h->state, "off");
    if (!h->pts || !h->kept) {
        free(h->pts);
        free(h->kept);
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
    }
    return h;
}

static void point_clear(struct point *p)
{
    free(p->count);
    free(p->bytes);
    memset(p, 0, sizeof *p);
}

static void kept_unref_locked(struct pyheapd_kept *k, struct pyheapd_kept **dead)
{
    *dead = --k->refs == 0 ? k : NULL;
}

static void kept_free(struct pyheapd_kept *k)
{
    if (!k)
        return;
    pyheap_packed_free(k->objs);
    free(k);
}

static void stop_thread(struct pyheapd_history *h)
{
    pthread_mutex_lock(&h->lock);
    int was = h->running;
    h->stop = 1;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->lock);
    if (was)
        pthread_join(h->th, NULL);
    pthread_mutex_lock(&h->lock);
    h->running = 0;
    h->stop = 0;
    pthread_mutex_unlock(&h->lock);
}

void pyheapd_history_free(struct pyheapd_history *h)
{
    if (!h)
        return;
    stop_thread(h);
    pyheapd_history_drop_full(h);
    for (size_t i = 0; i < h->cap; i++)
        point_clear(&h->pts[i]);
    free(h->pts);
    for (size_t i = 0; i < h->nkept; i++) {
        struct pyheapd_kept *dead;
        kept_unref_locked(h->kept[i], &dead);
        kept_free(dead);
    }
    free(h->kept);
    for (size_t i = 0; i < h->nnames; i++)
        free(h->names[i]);
    free(h->names);
    free(h->hash);
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

/* Drop kept snapshots beyond KEEP or the byte bound; lock held. Returns
 * those whose last reference went (to free unlocked) in DEAD[]. */
static size_t trim_kept_locked(struct pyheapd_history *h, struct pyheapd_kept **dead)
{
    size_t nd = 0;
    for (;;) {
        uint64_t bytes = 0;
        for (size_t i = 0; i < h->nkept; i++)
            bytes += pyheap_packed_bytes(h->kept[i]->objs);
        if (h->nkept == 0 || (h->nkept <= h->keep && bytes <= PYHEAPD_KEEP_MAX_BYTES) ||
            h->nkept == 1)
            break;
        struct pyheapd_kept *k = h->kept[0];
        memmove(h->kept, h->kept + 1, (h->nkept - 1) * sizeof *h->kept);
        h->nkept--;
        kept_unref_locked(k, &dead[nd]);
        if (dead[nd])
            nd++;
    }
    return nd;
}

void pyheapd_history_limits(struct pyheapd_history *h, size_t cap, size_t keep)
{
    struct pyheapd_kept *dead[PYHEAP_PROTO_MAX_KEEP + 1];
    size_t nd = 0;
    pthread_mutex_lock(&h->lock);
    if (keep) {
        h->keep = keep;
        nd = trim_kept_locked(h, dead);
    }
    if (cap && cap != h->cap) {
        struct point *np = calloc(cap, sizeof *np);
        if (np) {
            /* keep the newest min(cap, npts) points */
            size_t drop = h->npts > cap ? h->npts - cap : 0;
            for (size_t i = 0; i < h->npts; i++) {
                struct point *p = &h->pts[(h->head + i) % h->cap];
                if (i < drop)
                    point_clear(p);
                else
                    np[i - drop] = *p;
            }
            free(h->pts);
            h->pts = np;
            h->npts -= drop;
            h->head = 0;
            h->cap = cap;
        }
    }
    pthread_mutex_unlock(&h->lock);
    for (size_t i = 0; i < nd; i++)
        kept_free(dead[i]);
}

static uint64_t fnv(const char *s)
{
    uint64_t x = 1469598103934665603ull;
    for (; *s; s++)
        x = (x ^ (unsigned char)*s) * 1099511628211ull;
    return x;
}

/* Id of type NAME in the series, adding it; UINT32_MAX on OOM. Lock held. */
static uint32_t type_id_locked(struct pyheapd_history *h, const char *name)
{
    if (h->nnames * 2 >= h->hash_cap) {
        size_t ncap = h->hash_cap ? h->hash_cap * 2 : 1024;
        uint32_t *nh = malloc(ncap * sizeof *nh);
        if (!nh)
            return UINT32_MAX;
        memset(nh, 0xff, ncap * sizeof *nh);
        for (size_t i = 0; i < h->nnames; i++) {
            size_t j = fnv(h->names[i]) & (ncap - 1);
            while (nh[j] != UINT32_MAX)
                j = (j + 1) & (ncap - 1);
            nh[j] = (uint32_t)i;
        }
        free(h->hash);
        h->hash = nh;
        h->hash_cap = ncap;
    }
    size_t j = fnv(name) & (h->hash_cap - 1);
    while (h->hash[j] != UINT32_MAX) {
        if (strcmp(h->names[h->hash[j]], name) == 0)
            return h->hash[j];
        j = (j + 1) & (h->hash_cap - 1);
    }
    if (h->nnames == h->names_cap) {
        size_t nc = h->names_cap ? h->names_cap * 2 : 256;
        char **nn = realloc(h->names, nc * sizeof *nn);
        if (!nn)
            return UINT32_MAX;
        h->names = nn;
        h->names_cap = nc;
    }
    char *c = strdup(name);
    if (!c)
        return UINT32_MAX;
    h->names[h->nnames] = c;
    h->hash[j] = (uint32_t)h->nnames;
    return (uint32_t)h->nnames++;
}

uint64_t pyheapd_history_record(struct pyheapd_history *h, pid_t pid,
                                const pyheap_snapshot *snap)
{
    pyheap_type_stat *hist = NULL;
    size_t nhist = 0;
    pyheap_packed *objs = NULL;
    struct pyheapd_kept *k = calloc(1, sizeof *k);
    if (!k || pyheap_histogram(snap, PYHEAP_SORT_BYTES, &hist, &nhist, NULL) < 0 ||
        pyheap_snapshot_pack(snap, &objs, NULL) < 0) {
        free(k);
        free(hist);
        return 0;
    }
    struct point p;
    memset(&p, 0, sizeof p);
    if (pyheap_mem_stats_read(pid, &p.mem, NULL) < 0)
        p.mem = (pyheap_mem_stats){ -1, -1, -1, -1, -1, -1, -1 };
    const pyheap_scan_stats *st = pyheap_snapshot_stats(snap);
    p.objects = st->objects;
    p.obj_bytes = st->bytes;
    p.wall = (int64_t)time(NULL);

    struct pyheapd_kept *dead[PYHEAP_PROTO_MAX_KEEP + 1];
    size_t nd = 0;
    pthread_mutex_lock(&h->lock);
    uint32_t *ids = malloc((nhist ? nhist : 1) * sizeof *ids);
    int ok = ids != NULL;
    for (size_t i = 0; ok && i < nhist; i++)
        ok = (ids[i] = type_id_locked(h, hist[i].name)) != UINT32_MAX;
    if (ok) {
        p.ntypes = h->nnames;
        p.count = calloc(p.ntypes ? p.ntypes : 1, sizeof *p.count);
        p.bytes = calloc(p.ntypes ? p.ntypes : 1, sizeof *p.bytes);
        ok = p.count && p.bytes;
    }
    uint64_t id = 0;
    if (ok) {
        for (size_t i = 0; i < nhist; i++) {
            p.count[ids[i]] += hist[i].count;
            p.bytes[ids[i]] += hist[i].bytes;
        }
        id = p.id = h->next_id++;
        p.t = now_s(h);
        if (h->npts == h->cap) {
            point_clear(&h->pts[h->head]);
            h->head = (h->head + 1) % h->cap;
            h->npts--;
        }
        h->pts[(h->head + h->npts) % h->cap] = p;
        h->npts++;
        k->id = id;
        k->t = p.t;
        k->wall = p.wall;
        k->objs = objs;
        k->refs = 1;
        h->kept[h->nkept++] = k;
        nd = trim_kept_locked(h, dead);
        k = NULL;
        objs = NULL;
    } else {
        point_clear(&p);
    }
    pthread_mutex_unlock(&h->lock);
    for (size_t i = 0; i < nd; i++)
        kept_free(dead[i]);
    free(ids);
    free(hist);
    free(k);
    pyheap_packed_free(objs);
    return id;
}

struct pyheapd_kept *pyheapd_history_get(struct pyheapd_history *h, uint64_t id)
{
    struct pyheapd_kept *k = NULL;
    pthread_mutex_lock(&h->lock);
    for (size_t i = 0; i < h->nkept; i++)
        if (id == 0 || h->kept[i]->id == id) {
            k = h->kept[i];
            k->refs++;
            break;
        }
    pthread_mutex_unlock(&h->lock);
    return k;
}

void pyheapd_history_put(struct pyheapd_history *h, struct pyheapd_kept *k)
{
    if (!k)
        return;
    struct pyheapd_kept *dead;
    pthread_mutex_lock(&h->lock);
    kept_unref_locked(k, &dead);
    pthread_mutex_unlock(&h->lock);
    kept_free(dead);
}

/* ---- issue 7: the newest full snapshot ---- */

static void full_free(struct pyheapd_full *f)
{
    if (!f)
        return;
    pyheap_snapshot_free(f->snap);
    free(f);
}

/* Drop one reference; lock held. Returns F when that was the last (to
 * free unlocked: freeing 32M objects takes a while). */
static struct pyheapd_full *full_unref_locked(struct pyheapd_full *f)
{
    return f && --f->refs == 0 ? f : NULL;
}

void pyheapd_history_keep_full(struct pyheapd_history *h, uint64_t id, uint64_t gen,
                               pyheap_snapshot *snap)
{
    if (!snap)
        return;
    struct pyheapd_full *f = calloc(1, sizeof *f);
    if (!f) {
        pyheap_snapshot_free(snap);
        return;
    }
    /* The age counts from the start of the scan: nothing in the snapshot
     * is older news than that. */
    double took = pyheap_snapshot_stats(snap)->scan_ms / 1e3;
    if (!(took >= 0 && took < 1e6))
        took = 0;
    f->id = id;
    f->snap = snap;
    f->refs = 1;
    f->wall = (int64_t)time(NULL) - (int64_t)took;
    pthread_mutex_lock(&h->lock);
    f->t = now_s(h) - took;
    struct pyheapd_full *old = f;
    int pid = h->s ? (int)h->s->pid : 0;   /* (set with an interval only) */
    if (gen == h->scan_gen) {
        old = full_unref_locked(h->full);
        h->full = f;
    }   /* else a newer scan is walking: it must not share the memory with this one */
    pthread_cond_broadcast(&h->cv);   /* requests waiting for it (full_get) */
    pthread_mutex_unlock(&h->lock);
    if (old == f) {
        char who[32] = "";
        if (pid)
            snprintf(who, sizeof who, " of pid %d", pid);
        pyheapd_log("snapshot %llu%s not kept for max_age: a newer scan began",
                    (unsigned long long)id, who);
    }
    full_free(old);
}

uint64_t pyheapd_history_scan_begin(struct pyheapd_history *h)
{
    /* Numbered first: a snapshot kept before this is dropped below, one
     * kept after it finds the number moved on (keep_full). */
    pthread_mutex_lock(&h->lock);
    uint64_t gen = ++h->scan_gen;
    pthread_mutex_unlock(&h->lock);
    pyheapd_history_drop_full(h);
    return gen;
}

void pyheapd_history_drop_full(struct pyheapd_history *h)
{
    pthread_mutex_lock(&h->lock);
    struct pyheapd_full *old = full_unref_locked(h->full);
    h->full = NULL;
    pthread_mutex_unlock(&h->lock);
    full_free(old);
}

void pyheapd_history_pending(struct pyheapd_history *h, int delta)
{
    pthread_mutex_lock(&h->lock);
    h->pending += delta;
    if (h->pending <= 0) {
        h->pending = 0;
        pthread_cond_broadcast(&h->cv);   /* (the periodic thread re-checks its time) */
    }
    pthread_mutex_unlock(&h->lock);
}

void pyheapd_history_settle(struct pyheapd_history *h)
{
    pthread_mutex_lock(&h->lock);
    while (h->pending > 0)
        pthread_cond_wait(&h->cv, &h->lock);
    pthread_mutex_unlock(&h->lock);
}

struct pyheapd_full *pyheapd_history_full_get(struct pyheapd_history *h, double max_age,
                                              double *age_s)
{
    struct pyheapd_full *f = NULL;
    pthread_mutex_lock(&h->lock);
    /* A snapshot promised by an answer already given: wait for its build
     * (the rest of that scan: it reads nothing more of the target, and its
     * early reply never blocks it) rather than scan again. */
    while (!h->full && h->pending > 0)
        pthread_cond_wait(&h->cv, &h->lock);
    if (h->full) {
        double age = now_s(h) - h->full->t;
        if (age < 0)
            age = 0;
        if (age <= max_age) {
            f = h->full;
            f->refs++;
            *age_s = age;
        }
    }
    pthread_mutex_unlock(&h->lock);
    return f;
}

void pyheapd_history_full_put(struct pyheapd_history *h, struct pyheapd_full *f)
{
    if (!f)
        return;
    pthread_mutex_lock(&h->lock);
    struct pyheapd_full *dead = full_unref_locked(f);
    pthread_mutex_unlock(&h->lock);
    full_free(dead);
}

/* ---- the periodic thread ---- */

static void *series_thread(void *arg)
{
    struct pyheapd_history *h = arg;
    /* Background work for nobody waiting: the scans' low priority. */
    pyheapd_scan_priority(h->d);
    pthread_setname_np(pthread_self(), "pyheapd-series");
    pthread_mutex_lock(&h->lock);
    double next = now_s(h);   /* first scan at once */
    while (!h->stop) {
        double now = now_s(h);
        if (now < next) {
            double at = next;
            struct timespec ts = h->t0;
            double whole = floor(at);
            ts.tv_sec += (time_t)whole;
            ts.tv_nsec += (long)((at - whole) * 1e9);
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&h->cv, &h->lock, &ts);
            continue;
        }
        next = now + h->interval;
        pthread_mutex_unlock(&h->lock);

        pyheap_snapshot *snap = NULL;
        struct pyheapd_scan_info info;
        pyheap_proto_error perr;
        pyheapd_history_drop_full(h);
        int rc = pyheapd_scan(h->d, h->s, 0, NULL, &snap, &info, &perr);
        if (rc == 0) {
            uint64_t id = pyheapd_history_record(h, h->s->pid, snap);
            const pyheap_scan_stats *st = pyheap_snapshot_stats(snap);
            pthread_mutex_lock(&h->d->lock);
            h->s->scans++;
            h->s->last_scan_ms = st->scan_ms;
            pthread_mutex_unlock(&h->d->lock);
            pyheapd_history_keep_full(h, id, info.gen, snap);
        }
        pthread_mutex_lock(&h->lock);
        if (rc == 0) {
            h->scans_ok++;
            snprintf(h->state, sizeof h->state, "running");
        } else {
            h->scans_failed++;
            if (strcmp(perr.code, pyheap_errcode_name(PYHEAP_E_GONE)) == 0) {
                /* The target went away: the series ends here, kept as is. */
                snprintf(h->state, sizeof h->state, "ended: %.240s", perr.msg);
                pyheapd_logp(5, "pid %d: periodic scans end: %s", (int)h->s->pid, perr.code);
                break;
            }
            snprintf(h->state, sizeof h->state, "running (last scan failed: %s)", perr.code);
        }
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

int pyheapd_history_set_interval(struct pyheapd *d, struct pyheapd_session *s, double interval)
{
    struct pyheapd_history *h = s->hist;
    pthread_mutex_lock(&h->lock);
    int running = h->running;
    if (running && interval > 0) {
        h->interval = interval;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->lock);
        return 0;
    }
    pthread_mutex_unlock(&h->lock);
    if (running)
        stop_thread(h);
    pthread_mutex_lock(&h->lock);
    h->interval = interval;
    if (interval <= 0) {
        snprintf(h->state, sizeof h->state, "off");
        pthread_mutex_unlock(&h->lock);
        return 0;
    }
    h->d = d;
    h->s = s;
    h->stop = 0;
    int rc = pthread_create(&h->th, NULL, series_thread, h);
    if (rc == 0) {
        h->running = 1;
        snprintf(h->state, sizeof h->state, "running");
    } else {
        snprintf(h->state, sizeof h->state, "off (cannot start a thread: %s)", strerror(rc));
    }
    pthread_mutex_unlock(&h->lock);
    return rc == 0 ? 0 : -1;
}

/* ---- replies ---- */

static json_t *jint(uint64_t v)
{
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static json_t *jmem(int64_t v)
{
    return v < 0 ? json_null() : json_integer(v);
}

int pyheapd_history_ps(struct pyheapd_history *h, json_t *e)
{
    pthread_mutex_lock(&h->lock);
    int rc = json_object_set_new(e, "interval_s", json_real(h->running ? h->interval : 0)) |
             json_object_set_new(e, "series_points", jint(h->npts)) |
             json_object_set_new(e, "series_state", json_string(h->state));
    pthread_mutex_unlock(&h->lock);
    return rc;
}

static const struct point *pt(const struct pyheapd_history *h, size_t i)
{
    return &h->pts[(h->head + i) % h->cap];
}

int pyheapd_history_growth(struct pyheapd_history *h, size_t n, json_t *o, pyheap_error *err)
{
    pthread_mutex_lock(&h->lock);
    size_t np = h->npts, nt = h->nnames;
    if (np < 2) {
        char state[256];
        memcpy(state, h->state, sizeof state);
        pthread_mutex_unlock(&h->lock);
        snprintf(err->msg, sizeof err->msg,
                 "growth needs at least 2 snapshots, %zu recorded so far (series: %s): "
                 "attach with an interval (`pyheap attach PID --interval 60`) or run "
                 "`pyheap top` twice", np, state);
        err->code = PYHEAP_E_INVAL;
        return -1;
    }
    pyheap_growth_point *gp = calloc(np, sizeof *gp);
    uint64_t *cnt = calloc(np * (nt ? nt : 1), sizeof *cnt);
    uint64_t *byt = calloc(np * (nt ? nt : 1), sizeof *byt);
    if (!gp || !cnt || !byt) {
        pthread_mutex_unlock(&h->lock);
        free(gp);
        free(cnt);
        free(byt);
        err->code = PYHEAP_E_NOMEM;
        snprintf(err->msg, sizeof err->msg, "out of memory scoring growth");
        return -1;
    }
    for (size_t i = 0; i < np; i++) {
        const struct point *p = pt(h, i);
        memcpy(cnt + i * nt, p->count, p->ntypes * sizeof *cnt);
        memcpy(byt + i * nt, p->bytes, p->ntypes * sizeof *byt);
        gp[i] = (pyheap_growth_point){ p->t, cnt + i * nt, byt + i * nt };
    }
    double window = pt(h, np - 1)->t - pt(h, 0)->t;
    double interval = h->running ? h->interval : 0;
    char state[256];
    memcpy(state, h->state, sizeof state);
    pyheap_growth_row *rows = NULL;
    size_t nrows = 0;
    int rc = pyheap_growth_rank(gp, np, nt, &rows, &nrows, err);
    json_t *types = json_array();
    if (rc == 0 && types) {
        size_t shown = n && n < nrows ? n : nrows;
        for (size_t i = 0; i < shown; i++) {
            const pyheap_growth_row *r = &rows[i];
            json_t *e = json_object();
            if (!e || json_array_append_new(types, e) < 0 ||
                json_object_set_new(e, "type", json_string(h->names[r->type])) < 0 ||
                json_object_set_new(e, "count", jint(r->count)) < 0 ||
                json_object_set_new(e, "bytes", jint(r->bytes)) < 0 ||
                json_object_set_new(e, "delta_count", json_integer(r->delta_count)) < 0 ||
                json_object_set_new(e, "delta_bytes", json_integer(r->delta_bytes)) < 0 ||
                json_object_set_new(e, "per_min_bytes", json_real(round(r->per_min_bytes))) < 0 ||
                json_object_set_new(e, "grew_in", json_integer(r->grew_in)) < 0 ||
                json_object_set_new(e, "intervals", json_integer(r->intervals)) < 0 ||
                json_object_set_new(e, "score", json_real(r->score)) < 0) {
                rc = -1;
                break;
            }
        }
    }
    pthread_mutex_unlock(&h->lock);
    free(gp);
    free(cnt);
    free(byt);
    free(rows);
    if (rc < 0 || !types ||
        json_object_set_new(o, "window_s", json_real(round(window * 1000) / 1000)) < 0 ||
        json_object_set_new(o, "snapshots", jint(np)) < 0 ||
        json_object_set_new(o, "interval_s", json_real(interval)) < 0 ||
        json_object_set_new(o, "series_state", json_string(state)) < 0 ||
        json_object_set_new(o, "types", types) < 0) {
        if (rc == 0) {
            err->code = PYHEAP_E_NOMEM;
            snprintf(err->msg, sizeof err->msg, "out of memory building the growth reply");
        }
        return -1;
    }
    return 0;
}

int pyheapd_history_list(struct pyheapd_history *h, json_t *o)
{
    json_t *arr = json_array();
    if (!arr || json_object_set_new(o, "snapshots", arr) < 0)
        return -1;
    pthread_mutex_lock(&h->lock);
    int rc = 0;
    for (size_t i = 0; i < h->nkept && rc == 0; i++) {
        const struct pyheapd_kept *k = h->kept[i];
        const pyheap_scan_stats *st = pyheap_packed_stats(k->objs);
        json_t *e = json_object();
        rc = (!e || json_array_append_new(arr, e) < 0 ||
              json_object_set_new(e, "id", jint(k->id)) < 0 ||
              json_object_set_new(e, "time", json_integer(k->wall)) < 0 ||
              json_object_set_new(e, "age_s", json_real(round((now_s(h) - k->t) * 10) / 10)) < 0 ||
              json_object_set_new(e, "objects", jint(st->objects)) < 0 ||
              json_object_set_new(e, "bytes", jint(st->bytes)) < 0) ? -1 : 0;
    }
    if (rc == 0)
        rc = (json_object_set_new(o, "series_points", jint(h->npts)) < 0 ||
              json_object_set_new(o, "series_state", json_string(h->state)) < 0 ||
              json_object_set_new(o, "interval_s", json_real(h->running ? h->interval : 0)) < 0)
                 ? -1 : 0;
    pthread_mutex_unlock(&h->lock);
    return rc;
}

static json_t *mem_obj(const struct point *p)
{
    json_t *e = json_object();
    int64_t anon = p->mem.anon;
    int64_t rest = anon >= 0 ? anon - (int64_t)p->obj_bytes : -1;
    if (!e || json_object_set_new(e, "t", json_real(round(p->t * 1000) / 1000)) < 0 ||
        json_object_set_new(e, "rss", jmem(p->mem.rss)) < 0 ||
        json_object_set_new(e, "anon", jmem(anon)) < 0 ||
        json_object_set_new(e, "python_objects_bytes", jint(p->obj_bytes)) < 0 ||
        json_object_set_new(e, "not_python_bytes", jmem(rest < 0 && anon >= 0 ? 0 : rest)) < 0) {
        json_decref(e);
        return NULL;
    }
    return e;
}

int pyheapd_history_trend(struct pyheapd_history *h, json_t *o)
{
    pthread_mutex_lock(&h->lock);
    size_t np = h->npts;
    int rc = 0;
    if (np >= 2) {
        const struct point *a = pt(h, 0), *b = pt(h, np - 1);
        json_t *tr = json_object();
        json_t *first = mem_obj(a), *last = mem_obj(b);
        double win = b->t - a->t;
        int known = a->mem.anon >= 0 && b->mem.anon >= 0;
        int64_t d_py = (int64_t)b->obj_bytes - (int64_t)a->obj_bytes;
        int64_t d_rss = known ? b->mem.rss - a->mem.rss : 0;
        int64_t d_rest = known ? (b->mem.anon - (int64_t)b->obj_bytes) -
                                 (a->mem.anon - (int64_t)a->obj_bytes) : 0;
        /* Which part grew: each must grow by more than 1 MiB and a tenth
         * of the RSS growth to count (docs/growth.md). */
        int64_t floor_b = 1 << 20;
        int64_t tenth = d_rss / 10;
        int py_grew = d_py > floor_b && d_py > tenth;
        int native_grew = known && d_rest > floor_b && d_rest > tenth;
        const char *verdict = !known ? "unknown"
                            : py_grew && native_grew ? "both"
                            : py_grew ? "python_objects"
                            : native_grew ? "not_python"
                            : "flat";
        if (!tr || !first || !last || json_object_set_new(o, "trend", tr) < 0 ||
            json_object_set_new(tr, "points", jint(np)) < 0 ||
            json_object_set_new(tr, "window_s", json_real(round(win * 1000) / 1000)) < 0 ||
            json_object_set_new(tr, "first", first) < 0 ||
            json_object_set_new(tr, "last", last) < 0 ||
            json_object_set_new(tr, "delta_rss", known ? json_integer(d_rss) : json_null()) < 0 ||
            json_object_set_new(tr, "delta_python_objects_bytes", json_integer(d_py)) < 0 ||
            json_object_set_new(tr, "delta_not_python_bytes",
                                known ? json_integer(d_rest) : json_null()) < 0 ||
            json_object_set_new(tr, "growing", json_string(verdict)) < 0)
            rc = -1;
    } else if (json_object_set_new(o, "trend", json_null()) < 0) {
        rc = -1;
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}
