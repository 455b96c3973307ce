/* The session table and the command handlers of pyheapd.
 *
 * Locking: d->lock guards the list, refcounts and per-session counters and
 * is only held for short bookkeeping (never during a scan). Each session's
 * scan_lock serializes scans of that one target; "ps" never waits for it. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "history.h"
#include "pyheap_report.h"
#include "pyheapd.h"

int pyheapd_init(struct pyheapd *d)
{
    memset(d, 0, sizeof *d);
    d->listen_fd = -1;
    if (pthread_mutex_init(&d->lock, NULL) != 0)
        return -1;
    if (pthread_mutex_init(&d->conn_lock, NULL) != 0 ||
        pthread_cond_init(&d->conn_cv, NULL) != 0)
        return -1;
    return 0;
}

static void session_free(struct pyheapd_session *s)
{
    if (!s)
        return;
    /* Stops the periodic thread first (it scans s->target). */
    pyheapd_history_free(s->hist);
    pyheap_target_free(s->target);
    pthread_mutex_destroy(&s->scan_lock);
    free(s);
}

/* Drop a reference; caller holds d->lock. Frees when unlinked and unused. */
static struct pyheapd_session *unref_locked(struct pyheapd_session *s)
{
    if (--s->refs == 0)
        return s;          /* caller frees after unlocking */
    return NULL;
}

static void session_unref(struct pyheapd *d, struct pyheapd_session *s)
{
    pthread_mutex_lock(&d->lock);
    struct pyheapd_session *dead = unref_locked(s);
    pthread_mutex_unlock(&d->lock);
    session_free(dead);
}

void pyheapd_fini(struct pyheapd *d)
{
    struct pyheapd_session *s = d->sessions;
    while (s) {
        struct pyheapd_session *next = s->next;
        session_free(s);
        s = next;
    }
    d->sessions = NULL;
    d->nsessions = 0;
    pthread_mutex_destroy(&d->lock);
    pthread_mutex_destroy(&d->conn_lock);
    pthread_cond_destroy(&d->conn_cv);
}

/* Real uid of PID from /proc/PID/status: 0, or -1 with errno. */
static int proc_uid(pid_t pid, uid_t *uid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    char line[256];
    int found = -1;
    while (fgets(line, sizeof line, f)) {
        unsigned long u;
        if (strncmp(line, "Uid:", 4) == 0 && sscanf(line + 4, "%lu", &u) == 1) {
            *uid = (uid_t)u;
            found = 0;
            break;
        }
    }
    fclose(f);
    if (found < 0)
        errno = EINVAL;
    return found;
}

static int authorize(const struct ucred *peer, pid_t pid, const uid_t *known,
                     pyheap_proto_error *perr)
{
    return pyheapd_authorize(peer, pid, known, perr);
}

static struct pyheapd_session *find_locked(struct pyheapd *d, pid_t pid)
{
    for (struct pyheapd_session *s = d->sessions; s; s = s->next)
        if (s->pid == pid)
            return s;
    return NULL;
}

/* Root sees every session, others only their own targets. */
static int visible(const struct ucred *peer, const struct pyheapd_session *s)
{
    return peer->uid == 0 || peer->uid == s->uid || pyheapd_peer_privileged(peer);
}

/* Unlink S from the table; caller holds d->lock and owns the table's ref
 * from now on (to drop with unref_locked). */
static void unlink_locked(struct pyheapd *d, struct pyheapd_session *s)
{
    for (struct pyheapd_session **pp = &d->sessions; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            s->next = NULL;
            d->nsessions--;
            return;
        }
    }
}

struct attach_opts {
    double interval;
    int has_interval;
    size_t history, keep;
};

static json_t *error_reply(const pyheap_proto_error *perr)
{
    return pyheap_proto_error_reply(perr);
}

static json_t *lib_error_reply(const pyheap_error *err)
{
    pyheap_proto_error perr;
    pyheap_proto_err_from_lib(&perr, err);
    return pyheap_proto_error_reply(&perr);
}

static json_t *oom_reply(void)
{
    pyheap_proto_error perr;
    pyheap_proto_err_set(&perr, pyheap_errcode_name(PYHEAP_E_NOMEM),
                         "pyheapd ran out of memory building the reply");
    return pyheap_proto_error_reply(&perr);
}

static void iso_time(time_t t, char *buf, size_t sz)
{
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(buf, sz, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(buf, sz, "%lld", (long long)t);
}

/* Add the fields of *src into *dst (both objects); steals nothing. */
static int merge(json_t *dst, json_t *src)
{
    return json_object_update(dst, src);
}

/* Open PID and insert a session. *already is set if a live session existed.
 * Returns the session's identity report (new ref) or NULL with *perr. */
/* Apply the session options of an attach request to S (issue 5). */
static void apply_series(struct pyheapd *d, struct pyheapd_session *s,
                         const struct attach_opts *ao)
{
    pyheapd_history_limits(s->hist, ao->history, ao->keep);
    if (ao->has_interval)
        pyheapd_history_set_interval(d, s, ao->interval);
}

static json_t *do_attach(struct pyheapd *d, pid_t pid, const struct attach_opts *ao,
                         int *already, pyheap_proto_error *perr)
{
    *already = 0;
    pthread_mutex_lock(&d->lock);
    struct pyheapd_session *old = find_locked(d, pid);
    if (old && !old->gone) {
        pyheap_error err;
        json_t *rep = pyheap_report_target(old->target, &err);
        old->refs++;
        pthread_mutex_unlock(&d->lock);
        if (rep)
            apply_series(d, old, ao);
        session_unref(d, old);
        if (!rep) {
            pyheap_proto_err_from_lib(perr, &err);
            return NULL;
        }
        *already = 1;
        return rep;
    }
    size_t n = d->nsessions - (old ? 1 : 0);
    pthread_mutex_unlock(&d->lock);
    if (n >= PYHEAPD_MAX_SESSIONS) {
        pyheap_proto_err_set(perr, pyheap_errcode_name(PYHEAP_E_NOMEM),
                             "pyheapd already has %d targets attached: detach one first",
                             PYHEAPD_MAX_SESSIONS);
        return NULL;
    }

    /* Opening reads ELF/DWARF and can take a while: no lock held. */
    pyheap_error err;
    pyheap_target *t = NULL;
    if (pyheap_target_open(pid, NULL, &t, &err) < 0) {
        pyheap_proto_err_from_lib(perr, &err);
        return NULL;
    }
    uid_t uid = 0;
    struct pyheapd_identity id;
    if (proc_uid(pid, &uid) < 0 || pyheapd_identity_read(pid, &id) < 0 ||
        pyheap_target_check_alive(t, NULL) < 0) {
        pyheap_target_free(t);
        pyheap_proto_err_set(perr, pyheap_errcode_name(PYHEAP_E_GONE),
                             "process %d exited while being attached", (int)pid);
        return NULL;
    }
    json_t *rep = pyheap_report_target(t, &err);
    if (!rep) {
        pyheap_target_free(t);
        pyheap_proto_err_from_lib(perr, &err);
        return NULL;
    }
    struct pyheapd_session *s = calloc(1, sizeof *s);
    if (s)
        s->hist = pyheapd_history_new(ao->history, ao->keep);
    if (!s || !s->hist || pthread_mutex_init(&s->scan_lock, NULL) != 0) {
        if (s)
            pyheapd_history_free(s->hist);
        free(s);
        pyheap_target_free(t);
        json_decref(rep);
        pyheap_proto_err_set(perr, pyheap_errcode_name(PYHEAP_E_NOMEM),
                             "pyheapd ran out of memory attaching process %d", (int)pid);
        return NULL;
    }
    s->target = t;
    s->pid = pid;
    s->uid = uid;
    s->id = id;
    s->attached_at = time(NULL);
    s->refs = 1;   /* the table's */

    struct pyheapd_session *dead = NULL;
    pthread_mutex_lock(&d->lock);
    old = find_locked(d, pid);
    if (old && !old->gone) {
        /* Someone attached it while we were opening: keep theirs. */
        pthread_mutex_unlock(&d->lock);
        session_free(s);
        *already = 1;
        return rep;
    }
    if (old) {
        unlink_locked(d, old);
        dead = unref_locked(old);
    }
    s->next = d->sessions;
    d->sessions = s;
    d->nsessions++;
    s->refs++;
    pthread_mutex_unlock(&d->lock);
    session_free(dead);
    if (ao->has_interval && ao->interval > 0)
        pyheapd_history_set_interval(d, s, ao->interval);
    session_unref(d, s);
    pyheapd_log("attached to pid %d (python %s, offsets %s, module %s)",
                (int)pid, pyheap_target_version(t),
                pyheap_offsets_source_name(pyheap_target_offsets_source(t)),
                pyheap_target_module(t));
    return rep;
}

int pyheapd_attach_initial(struct pyheapd *d, pid_t pid, double interval, size_t history,
                           size_t keep, pyheap_proto_error *perr)
{
    int already;
    struct attach_opts ao = { interval, interval > 0, history, keep };
    json_t *rep = do_attach(d, pid, &ao, &already, perr);
    if (!rep)
        return -1;
    json_decref(rep);
    return 0;
}

static json_t *cmd_ping(struct pyheapd *d)
{
    json_t *o = pyheap_proto_ok_reply();
    if (!o)
        return NULL;
    pthread_mutex_lock(&d->lock);
    size_t n = d->nsessions;
    pthread_mutex_unlock(&d->lock);
    if (json_object_set_new(o, "version", json_string(PYHEAP_VERSION)) < 0 ||
        json_object_set_new(o, "protocol", json_integer(PYHEAP_PROTO_VERSION)) < 0 ||
        json_object_set_new(o, "daemon_pid", json_integer(getpid())) < 0 ||
        json_object_set_new(o, "targets", json_integer((json_int_t)n)) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *cmd_attach(struct pyheapd *d, const struct ucred *peer,
                          const pyheap_request *req)
{
    pid_t pid = req->pid;
    pyheap_proto_error perr;
    if (authorize(peer, pid, NULL, &perr) < 0)
        return error_reply(&perr);
    int already;
    struct attach_opts ao = { req->interval, req->has_interval, req->history, req->keep };
    json_t *rep = do_attach(d, pid, &ao, &already, &perr);
    if (!rep) {
        pyheapd_log("attach pid %d failed: %s: %s", (int)pid, perr.code, perr.msg);
        return error_reply(&perr);
    }
    json_t *o = pyheap_proto_ok_reply();
    if (!o || merge(o, rep) < 0 ||
        json_object_set_new(o, "already_attached", json_boolean(already)) < 0) {
        json_decref(o);
        json_decref(rep);
        return NULL;
    }
    json_decref(rep);
    pthread_mutex_lock(&d->lock);
    struct pyheapd_session *s = find_locked(d, pid);
    if (s)
        s->refs++;
    pthread_mutex_unlock(&d->lock);
    if (s) {
        pyheapd_history_ps(s->hist, o);
        session_unref(d, s);
    }
    return o;
}

static json_t *cmd_detach(struct pyheapd *d, const struct ucred *peer, pid_t pid)
{
    pyheap_proto_error perr;
    pthread_mutex_lock(&d->lock);
    struct pyheapd_session *s = find_locked(d, pid);
    if (!s) {
        pthread_mutex_unlock(&d->lock);
        pyheap_proto_err_set(&perr, pyheap_errcode_name(PYHEAP_E_NOTFOUND),
                             "process %d is not attached", (int)pid);
        return error_reply(&perr);
    }
    uid_t known = s->uid;
    pthread_mutex_unlock(&d->lock);
    if (authorize(peer, pid, &known, &perr) < 0)
        return error_reply(&perr);

    struct pyheapd_session *dead = NULL;
    pthread_mutex_lock(&d->lock);
    s = find_locked(d, pid);
    if (s) {
        unlink_locked(d, s);
        dead = unref_locked(s);   /* a running scan keeps its own ref */
    }
    pthread_mutex_unlock(&d->lock);
    session_free(dead);
    if (s)
        pyheapd_log("detached from pid %d", (int)pid);
    json_t *o = pyheap_proto_ok_reply();
    if (o && json_object_set_new(o, "pid", json_integer(pid)) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *cmd_ps(struct pyheapd *d, const struct ucred *peer)
{
    json_t *o = pyheap_proto_ok_reply();
    json_t *arr = json_array();
    if (!o || !arr || json_object_set_new(o, "targets", arr) < 0) {
        json_decref(o);
        return NULL;
    }
    pthread_mutex_lock(&d->lock);
    for (struct pyheapd_session *s = d->sessions; s; s = s->next) {
        if (!visible(peer, s))
            continue;
        /* Refresh liveness from /proc (never touches the target, never
         * waits for a scan). */
        if (!s->gone) {
            enum pyheapd_state st = pyheapd_identity_check(s->pid, &s->id);
            if (st != PYHEAPD_ALIVE) {
                s->gone = 1;
                s->state = st;
                pyheapd_logp(5, "pid %d: session ends: %s", (int)s->pid,
                             pyheapd_state_name(st));
            }
        }
        pyheap_error err;
        json_t *e = pyheap_report_target(s->target, &err);
        char when[64];
        iso_time(s->attached_at, when, sizeof when);
        if (!e || json_array_append_new(arr, e) < 0 ||
            json_object_set_new(e, "state", json_string(pyheapd_state_name(s->gone ? s->state : PYHEAPD_ALIVE))) < 0 ||
            json_object_set_new(e, "attached_at", json_string(when)) < 0 ||
            json_object_set_new(e, "uid", json_integer(s->uid)) < 0 ||
            json_object_set_new(e, "scans", json_integer((json_int_t)s->scans)) < 0 ||
            json_object_set_new(e, "last_scan_ms", json_real(s->last_scan_ms)) < 0 ||
            pyheapd_history_ps(s->hist, e) < 0) {
            pthread_mutex_unlock(&d->lock);
            json_decref(o);
            return NULL;
        }
    }
    pthread_mutex_unlock(&d->lock);
    return o;
}

/* Pick the session for "top" and take a reference, or fill *perr. Without
 * a pid, only the sessions the client may see are candidates. */
static struct pyheapd_session *pick_session(struct pyheapd *d, const struct ucred *peer,
                                            pid_t pid, pyheap_proto_error *perr)
{
    pthread_mutex_lock(&d->lock);
    struct pyheapd_session *s = NULL;
    size_t nvis = 0;
    for (struct pyheapd_session *it = d->sessions; it; it = it->next)
        if (visible(peer, it)) {
            nvis++;
            s = it;
        }
    if (pid) {
        s = find_locked(d, pid);
        if (!s)
            pyheap_proto_err_set(perr, pyheap_errcode_name(PYHEAP_E_NOTFOUND),
                                 "process %d is not attached: run `pyheap attach %d` first",
                                 (int)pid, (int)pid);
    } else if (nvis == 0) {
        s = NULL;
        pyheap_proto_err_set(perr, pyheap_errcode_name(PYHEAP_E_NOTFOUND),
                             "no process is attached: run `pyheap attach PID` first");
    } else if (nvis > 1) {
        s = NULL;
        char list[256] = "";
        size_t len = 0, shown = 0;
        for (struct pyheapd_session *it = d->sessions; it && len < sizeof list - 16; it = it->next) {
            if (!visible(peer, it))
                continue;
            int w = snprintf(list + len, sizeof list - len, "%s%d", shown ? ", " : "", (int)it->pid);
            if (w < 0 || (size_t)w >= sizeof list - len)
                break;
            len += (size_t)w;
            shown++;
        }
        pyheap_proto_err_set(perr, PYHEAP_PROTO_E_AMBIGUOUS,
                             "%zu processes are attached (%s%s): say which one with "
                             "\"pid\" (pyheap ... -p PID)",
                             nvis, list, shown < nvis ? ", ..." : "");
    }
    if (s)
        s->refs++;
    pthread_mutex_unlock(&d->lock);
    return s;
}

/* Builds the reply of a scanning command from a fresh snapshot: a complete
 * reply (new reference; ok or error) or NULL with *err. D: the daemon's
 * configuration (analysis threads). */
typedef json_t *(*snapshot_reply_fn)(const struct pyheapd *d, const struct pyheapd_session *s,
                                     const pyheap_snapshot *snap,
                                     const pyheap_request *req, pyheap_error *err);

/* The ok reply around REP (consumed), or NULL with *err. */
static json_t *ok_with(json_t *rep, pyheap_error *err)
{
    if (!rep)
        return NULL;
    json_t *reply = pyheap_proto_ok_reply();
    if (!reply || merge(reply, rep) < 0) {
        json_decref(reply);
        reply = NULL;
        err->code = PYHEAP_E_NOMEM;
        err->sys_errno = 0;
        err->addr = 0;
        snprintf(err->msg, sizeof err->msg, "pyheapd ran out of memory building the reply");
    }
    json_decref(rep);
    return reply;
}

static json_t *top_reply(const struct pyheapd *d, const struct pyheapd_session *s,
                         const pyheap_snapshot *snap,
                         const pyheap_request *req, pyheap_error *err)
{
    (void)d;
    return ok_with(pyheap_report_top(s->target, snap, req->sort, req->n, err), err);
}

/* The reply of a freshly scanned request gets the freeze's figures. */
static int say_freeze(json_t *reply, const struct pyheapd_scan_info *info)
{
    if (!info->froze)
        return 0;
    return json_object_set_new(reply, "freeze", json_true()) < 0 ||
           json_object_set_new(reply, "pause_ms", json_real(info->pause_ms)) < 0 ||
           json_object_set_new(reply, "frozen_threads",
                               json_integer((json_int_t)info->frozen_threads)) < 0 ? -1 : 0;
}

/* "top" answered at the end of the walk, from its census, while the scan
 * thread goes on to build the snapshot (kept for referrers, diff,
 * --max-age) — issue 7: the answer does not wait for the build. */
struct early_top {
    struct pyheapd *d;
    const struct pyheapd_session *s;
    const struct ucred *peer;
    const pyheap_request *req;
    struct pyheapd_reply_to *to;
};

static void top_early(void *arg, const pyheap_census *c, const struct pyheapd_scan_info *info)
{
    struct early_top *e = arg;
    const pyheap_scan_stats *st = pyheap_census_stats(c);
    pyheap_error err;
    memset(&err, 0, sizeof err);
    json_t *reply = ok_with(pyheap_report_top_census(e->s->target, c, e->req->sort, e->req->n,
                                                     &err), &err);
    if (!reply || say_freeze(reply, info) < 0) {
        json_decref(reply);
        return;   /* answered after the build instead */
    }
    /* The snapshot is promised: a request for it ("max_age") made once
     * this answer arrives waits for the build instead of scanning again. */
    pyheapd_history_pending(e->s->hist, 1);
    pyheapd_send_early(e->d, e->to, reply);
    pyheapd_log("top of pid %d for uid %lu: answered from the walk before the build: "
                "%llu objects, %llu bytes, %llu skipped, walk %.1f ms%s",
                (int)e->s->pid, (unsigned long)e->peer->uid, (unsigned long long)st->objects,
                (unsigned long long)st->bytes, (unsigned long long)st->skipped, st->scan_ms,
                e->to->send_rc < 0 ? " (the client was gone)"
                : e->to->rest ? " (the rest of the reply follows the build)" : "");
}

static json_t *referrers_reply(const struct pyheapd *d, const struct pyheapd_session *s,
                               const pyheap_snapshot *snap,
                               const pyheap_request *req, pyheap_error *err)
{
    pyheap_referrers_opts opts = {
        .depth = req->depth, .max_groups = req->max_groups, .max_paths = req->max_paths,
        /* as many as a scan's walkers: --scan-threads */
        .threads = d->cfg.scan_threads,
    };
    return pyheap_report_referrers(s->pid, snap, req->type, &opts, err);
}

/* Name the snapshot a top/referrers reply came from (issue 7), when the
 * request gave "max_age": its id, whether it was reused, its age. */
static int say_snapshot(json_t *reply, uint64_t id, int reused, double age_s)
{
    return json_object_set_new(reply, "snapshot_id", json_integer((json_int_t)id)) < 0 ||
           json_object_set_new(reply, "snapshot_reused", json_boolean(reused)) < 0 ||
           json_object_set_new(reply, "snapshot_age_ms", json_real(age_s * 1e3)) < 0 ? -1 : 0;
}

/* issue 7: answer from the session's kept snapshot if it is at most
 * req->max_age seconds old. Returns the reply (new reference, ok or error),
 * or NULL with *tried == 0 when there is no such snapshot (scan afresh). */
static json_t *reuse_command(struct pyheapd *d, struct pyheapd_session *s,
                             const struct ucred *peer, const pyheap_request *req,
                             snapshot_reply_fn fn, int *tried)
{
    *tried = 0;
    /* A session whose process is gone answers as a scan would: with the
     * state error (pyheapd_scan gives it). */
    if (pyheapd_session_check(d, s) != PYHEAPD_ALIVE)
        return NULL;
    double age = 0;
    struct pyheapd_full *f = pyheapd_history_full_get(s->hist, req->max_age, &age);
    if (!f)
        return NULL;
    *tried = 1;
    struct timespec a0, a1;
    clock_gettime(CLOCK_MONOTONIC, &a0);
    pyheap_error err;
    memset(&err, 0, sizeof err);
    json_t *reply = fn(d, s, f->snap, req, &err);
    clock_gettime(CLOCK_MONOTONIC, &a1);
    uint64_t id = f->id;
    pyheapd_history_full_put(s->hist, f);
    pyheapd_log("%s of pid %d for uid %lu: from snapshot %llu taken %.1f s ago, "
                "request %.1f ms", pyheap_proto_cmd_name(req->cmd), (int)s->pid,
                (unsigned long)peer->uid, (unsigned long long)id, age,
                (double)(a1.tv_sec - a0.tv_sec) * 1e3 + (double)(a1.tv_nsec - a0.tv_nsec) / 1e6);
    if (!reply)
        return lib_error_reply(&err);
    if (json_is_true(json_object_get(reply, "ok")) && say_snapshot(reply, id, 1, age) < 0) {
        json_decref(reply);
        return oom_reply();
    }
    return reply;
}

/* The session REQ names, if PEER may read its process: a reference
 * (session_unref when done), or NULL with *REPLY the error reply. */
static struct pyheapd_session *session_for(struct pyheapd *d, const struct ucred *peer,
                                           const pyheap_request *req, json_t **reply)
{
    pyheap_proto_error perr;
    struct pyheapd_session *s = pick_session(d, peer, req->pid, &perr);
    if (s && authorize(peer, s->pid, &s->uid, &perr) < 0) {
        session_unref(d, s);
        s = NULL;
    }
    if (!s)
        *reply = error_reply(&perr);
    return s;
}

/* Take a fresh snapshot of the chosen target (pyheapd_scan: identity
 * checks, time budget, optional freeze), build the reply with FN, and keep
 * the snapshot as the session's newest (issue 7). With req->max_age, the
 * kept snapshot answers instead when it is recent enough. */
static json_t *scan_command(struct pyheapd *d, const struct ucred *peer,
                            const pyheap_request *req, snapshot_reply_fn fn,
                            struct pyheapd_reply_to *to)
{
    json_t *reply = NULL;
    struct pyheapd_session *s = session_for(d, peer, req, &reply);
    if (!s)
        return reply;
    pyheap_proto_error perr;
    if (req->max_age > 0) {
        int tried;
        reply = reuse_command(d, s, peer, req, fn, &tried);
        if (tried)
            goto out;
    }
    /* The kept snapshot goes before the scan: two full snapshots of one
     * session never coexist (but for requests still using the old one). */
    pyheapd_history_drop_full(s->hist);
    pyheap_snapshot *snap = NULL;
    struct pyheapd_scan_info info;
    /* "top" without "max_age" (which names the snapshot, known after the
     * build) answers from the walk's census. */
    struct early_top et = { d, s, peer, req, to };
    struct pyheapd_early early = { top_early, &et };
    int early_ok = to && req->cmd == PYHEAP_CMD_TOP && req->max_age <= 0;
    int rc = pyheapd_scan(d, s, req->freeze, early_ok ? &early : NULL, &snap, &info, &perr);
    int answered = to && to->sent;
    if (rc < 0) {
        if (answered) {
            pyheapd_history_pending(s->hist, -1);
            pyheapd_logp(4, "top of pid %d: answered from the walk, then no snapshot was "
                         "kept: %s: %s", (int)s->pid, perr.code, perr.msg);
            goto out;
        }
        /* Error replies keep their three fields; the session's state
         * ("gone", "exec'd", "pid reused") is named in the message and
         * shown by "ps". */
        reply = error_reply(&perr);
        goto out;
    }
    pyheap_error err;
    memset(&err, 0, sizeof err);
    /* "top" (after the build) and "referrers" without "max_age" say
     * nothing of the snapshot: their reply goes before it is recorded
     * (its histogram and packed copy: 0.2-0.35 s at 32M objects), as an
     * early "top" does; a request with "max_age" arriving meanwhile waits
     * for it (pending). */
    int first_oom = 0;
    if (!answered && to && req->max_age <= 0 &&
        (req->cmd == PYHEAP_CMD_TOP || req->cmd == PYHEAP_CMD_REFERRERS)) {
        json_t *first = fn(d, s, snap, req, &err);
        if (!first) {
            first = lib_error_reply(&err);
        } else if (json_is_true(json_object_get(first, "ok")) && say_freeze(first, &info) < 0) {
            json_decref(first);
            first = oom_reply();
        }
        if (first) {
            pyheapd_history_pending(s->hist, 1);
            pyheapd_send_early(d, to, first);
            answered = 1;
        } else {
            first_oom = 1;   /* (answered below, as before) */
        }
    }
    uint64_t snap_id = pyheapd_history_record(s->hist, s->pid, snap);
    reply = answered ? NULL : first_oom ? oom_reply() : fn(d, s, snap, req, &err);
    const pyheap_scan_stats *st = pyheap_snapshot_stats(snap);
    double ms = st->scan_ms;
    pyheapd_log("%s of pid %d for uid %lu: %llu objects, %llu bytes, %llu skipped, "
                "scan %.1f ms, request %.1f ms%s%s%s",
                pyheap_proto_cmd_name(req->cmd),
                (int)s->pid, (unsigned long)peer->uid, (unsigned long long)st->objects,
                (unsigned long long)st->bytes, (unsigned long long)st->skipped, ms, info.wall_ms,
                st->truncated ? " (truncated)" : "", info.froze ? " (frozen)" : "",
                answered && to->send_rc < 0 ? " (the client was gone)" : "");
    if (info.froze)
        pyheapd_log("froze pid %d: %zu threads stopped for %.1f ms", (int)s->pid,
                    info.frozen_threads, info.pause_ms);
    pyheapd_history_keep_full(s->hist, snap_id, info.gen, snap);   /* takes snap */
    snap = NULL;
    if (answered)
        pyheapd_history_pending(s->hist, -1);

    pthread_mutex_lock(&d->lock);
    s->scans++;
    s->last_scan_ms = ms;
    pthread_mutex_unlock(&d->lock);

    if (answered) {
        /* sent already */
    } else if (!reply) {
        reply = lib_error_reply(&err);
    } else if (json_is_true(json_object_get(reply, "ok"))) {
        /* top/referrers keep their documented shape; the issue 5 commands
         * name the snapshot they recorded, and so do top/referrers asked
         * with "max_age" (issue 7). */
        int say_id = snap_id && (req->cmd == PYHEAP_CMD_SNAPSHOT || req->cmd == PYHEAP_CMD_STATS);
        if ((say_id && json_object_set_new(reply, "snapshot_id", json_integer((json_int_t)snap_id)) < 0) ||
            (req->max_age > 0 && say_snapshot(reply, snap_id, 0, ms / 1e3) < 0) ||
            say_freeze(reply, &info) < 0) {
            json_decref(reply);
            reply = NULL;
        }
    }
out:
    session_unref(d, s);
    return reply;
}

/* ---- issue 5: snapshot files, stats, growth, snapshots, diff ---- */

static json_t *lib_fail(pyheap_error *err, const char *what)
{
    err->code = PYHEAP_E_NOMEM;
    err->sys_errno = 0;
    err->addr = 0;
    snprintf(err->msg, sizeof err->msg, "pyheapd ran out of memory building the %s reply", what);
    return NULL;
}

/* Before any scan: "snapshot" needs a regular file open for writing,
 * passed with the request (a pipe nobody reads would block this thread). */
static int snapshot_fd_check(const pyheap_request *req, pyheap_proto_error *perr)
{
    if (req->fd < 0)
        return pyheap_proto_err_set(perr, pyheap_errcode_name(PYHEAP_E_INVAL),
                                    "\"snapshot\" writes into a file descriptor passed with "
                                    "the request (SCM_RIGHTS); none came: use `pyheap "
                                    "snapshot -o FILE`");
    int fl = fcntl(req->fd, F_GETFL);
    struct stat fst;
    if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY || fstat(req->fd, &fst) < 0 ||
        !S_ISREG(fst.st_mode))
        return pyheap_proto_err_set(perr, pyheap_errcode_name(PYHEAP_E_INVAL),
                                    "the file descriptor passed with \"snapshot\" is not a "
                                    "regular file open for writing");
    return 0;
}

static json_t *snapshot_reply(const struct pyheapd *d, const struct pyheapd_session *s,
                              const pyheap_snapshot *snap,
                              const pyheap_request *req, pyheap_error *err)
{
    (void)d;
    pyheap_snapfile_info info;
    memset(&info, 0, sizeof info);
    info.pid = s->pid;
    info.time_unix = (int64_t)time(NULL);
    snprintf(info.python, sizeof info.python, "%s", pyheap_target_version(s->target));
    snprintf(info.offsets_source, sizeof info.offsets_source, "%s",
             pyheap_offsets_source_name(pyheap_target_offsets_source(s->target)));
    off_t start = lseek(req->fd, 0, SEEK_CUR);
    if (pyheap_snapfile_write(snap, &info, req->fd, err) < 0)
        return NULL;
    off_t end = lseek(req->fd, 0, SEEK_CUR);
    const pyheap_scan_stats *st = pyheap_snapshot_stats(snap);
    json_t *o = pyheap_proto_ok_reply();
    if (!o || json_object_set_new(o, "pid", json_integer(s->pid)) < 0 ||
        json_object_set_new(o, "objects", json_integer((json_int_t)st->objects)) < 0 ||
        json_object_set_new(o, "bytes", json_integer((json_int_t)st->bytes)) < 0 ||
        json_object_set_new(o, "edges", json_integer((json_int_t)0)) < 0 ||
        json_object_set_new(o, "file_bytes", start >= 0 && end >= start
                                ? json_integer((json_int_t)(end - start)) : json_null()) < 0) {
        json_decref(o);
        return lib_fail(err, "snapshot");
    }
    size_t ne = 0, n = pyheap_snapshot_count(snap);
    for (size_t i = 0; i < n; i++)
        ne += pyheap_snapshot_nedges(snap, i);
    json_object_set_new(o, "edges", json_integer((json_int_t)ne));
    return o;
}

static json_t *jbytes(int64_t v)
{
    return v < 0 ? json_null() : json_integer(v);
}

static json_t *stats_reply(const struct pyheapd *d, const struct pyheapd_session *s,
                           const pyheap_snapshot *snap,
                           const pyheap_request *req, pyheap_error *err)
{
    (void)d;
    (void)req;
    pyheap_mem_stats m;
    if (pyheap_mem_stats_read(s->pid, &m, err) < 0)
        return NULL;
    /* pymalloc reads the target: serialized with scans of it. */
    struct pyheapd_session *ms = (struct pyheapd_session *)s;
    pyheap_pymalloc pm;
    pyheap_error pmerr;
    memset(&pmerr, 0, sizeof pmerr);
    pthread_mutex_lock(&ms->scan_lock);
    int pm_ok = pyheap_pymalloc_read(ms->target, &pm, &pmerr) == 0;
    pthread_mutex_unlock(&ms->scan_lock);
    json_t *jpm = json_null();
    if (pm_ok)
        jpm = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s}",
                        "arenas", (json_int_t)pm.arenas, "arena_size", (json_int_t)pm.arena_size,
                        "pool_size", (json_int_t)pm.pool_size,
                        "arena_bytes", (json_int_t)pm.arena_bytes,
                        "pools_used", (json_int_t)pm.pools_used,
                        "pools_free", (json_int_t)pm.pools_free,
                        "used_bytes", (json_int_t)pm.used_bytes,
                        "free_bytes", (json_int_t)pm.free_bytes,
                        "symbols_from", pm.symbols_from);
    const pyheap_scan_stats *st = pyheap_snapshot_stats(snap);
    int64_t py = (int64_t)st->bytes;
    int64_t rest = m.anon >= 0 ? (m.anon > py ? m.anon - py : 0) : -1;
    json_t *o = pyheap_proto_ok_reply();
    if (!o || json_object_set_new(o, "pid", json_integer(s->pid)) < 0 ||
        json_object_set_new(o, "rss", jbytes(m.rss)) < 0 ||
        json_object_set_new(o, "pss", jbytes(m.pss)) < 0 ||
        json_object_set_new(o, "pss_anon", jbytes(m.pss_anon)) < 0 ||
        json_object_set_new(o, "pss_file", jbytes(m.pss_file)) < 0 ||
        json_object_set_new(o, "anon", jbytes(m.anon)) < 0 ||
        json_object_set_new(o, "file", jbytes(m.file)) < 0 ||
        json_object_set_new(o, "swap", jbytes(m.swap)) < 0 ||
        json_object_set_new(o, "python_objects", json_integer((json_int_t)st->objects)) < 0 ||
        json_object_set_new(o, "python_objects_bytes", json_integer(py)) < 0 ||
        json_object_set_new(o, "not_python_bytes", jbytes(rest)) < 0 ||
        json_object_set_new(o, "pymalloc", jpm ? jpm : json_null()) < 0 ||
        (!pm_ok && json_object_set_new(o, "pymalloc_note", json_string(pmerr.msg)) < 0) ||
        pyheapd_history_trend(s->hist, o) < 0) {
        json_decref(o);
        return lib_fail(err, "stats");
    }
    return o;
}

/* A command that needs no scan: pick the session, authorize, call FN. */
static json_t *history_command(struct pyheapd *d, const struct ucred *peer,
                               const pyheap_request *req)
{
    json_t *reply = NULL;
    struct pyheapd_session *s = session_for(d, peer, req, &reply);
    if (!s)
        return reply;
    /* A snapshot whose answer went before it was recorded is listed */
    pyheapd_history_settle(s->hist);
    reply = pyheap_proto_ok_reply();
    if (!reply || json_object_set_new(reply, "pid", json_integer(s->pid)) < 0) {
        json_decref(reply);
        reply = NULL;
        goto out;
    }
    if (req->cmd == PYHEAP_CMD_GROWTH) {
        pyheap_error err;
        memset(&err, 0, sizeof err);
        if (pyheapd_history_growth(s->hist, req->n, reply, &err) < 0) {
            json_decref(reply);
            reply = err.code == PYHEAP_E_INVAL ? NULL : lib_error_reply(&err);
            if (!reply) {
                pyheap_proto_error perr;
                pyheap_proto_err_set(&perr, "not_enough_snapshots", "%s", err.msg);
                reply = error_reply(&perr);
            }
        }
    } else if (pyheapd_history_list(s->hist, reply) < 0) {
        json_decref(reply);
        reply = NULL;
    }
out:
    session_unref(d, s);
    return reply;
}

static json_t *cmd_diff(struct pyheapd *d, const struct ucred *peer, const pyheap_request *req)
{
    json_t *reply = NULL;
    struct pyheapd_session *s = session_for(d, peer, req, &reply);
    if (!s)
        return reply;
    pyheap_proto_error perr;
    pyheap_snapshot *snap = NULL;
    uint64_t id = 0;
    pyheapd_history_settle(s->hist);   /* (as history_command) */
    struct pyheapd_kept *k = pyheapd_history_get(s->hist, req->since);
    if (!k) {
        if (req->since)
            pyheap_proto_err_set(&perr, pyheap_errcode_name(PYHEAP_E_NOTFOUND),
                                 "snapshot %llu of process %d is not kept (any more): "
                                 "`pyheap snapshots -p %d` lists those kept",
                                 (unsigned long long)req->since, (int)s->pid, (int)s->pid);
        else
            pyheap_proto_err_set(&perr, "not_enough_snapshots",
                                 "no snapshot of process %d is kept yet to diff against: take "
                                 "one (`pyheap top`, or attach with --interval) and run "
                                 "`pyheap diff` later", (int)s->pid);
        reply = error_reply(&perr);
        goto out;
    }
    struct pyheapd_scan_info info;
    pyheapd_history_drop_full(s->hist);
    if (pyheapd_scan(d, s, req->freeze, NULL, &snap, &info, &perr) < 0) {
        reply = error_reply(&perr);
        goto out;
    }
    id = pyheapd_history_record(s->hist, s->pid, snap);
    pyheap_error err;
    memset(&err, 0, sizeof err);
    pyheap_diff *df = NULL;
    json_t *rep = NULL;
    if (pyheap_diff_packed(k->objs, snap, &df, &err) == 0)
        rep = pyheap_report_diff(s->pid, df, req->n, &err);
    pyheap_diff_free(df);
    if (!rep) {
        reply = lib_error_reply(&err);
        goto out;
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    reply = pyheap_proto_ok_reply();
    if (!reply || merge(reply, rep) < 0 ||
        json_object_set_new(reply, "since", json_integer((json_int_t)k->id)) < 0 ||
        json_object_set_new(reply, "since_time", json_integer(k->wall)) < 0 ||
        json_object_set_new(reply, "snapshot_id", json_integer((json_int_t)id)) < 0 ||
        json_object_set_new(reply, "window_s", json_integer(now.tv_sec - k->wall)) < 0) {
        json_decref(reply);
        reply = NULL;
    }
    json_decref(rep);
out:
    if (snap)
        pyheapd_history_keep_full(s->hist, id, info.gen, snap);   /* takes snap */
    pyheapd_history_put(s->hist, k);
    session_unref(d, s);
    return reply;
}

json_t *pyheapd_handle(struct pyheapd *d, const struct ucred *peer,
                       const pyheap_request *req, struct pyheapd_reply_to *to)
{
    json_t *r = NULL;
    switch (req->cmd) {
    case PYHEAP_CMD_PING:
        r = cmd_ping(d);
        break;
    case PYHEAP_CMD_ATTACH:
        r = cmd_attach(d, peer, req);
        break;
    case PYHEAP_CMD_DETACH:
        r = cmd_detach(d, peer, req->pid);
        break;
    case PYHEAP_CMD_PS:
        r = cmd_ps(d, peer);
        break;
    case PYHEAP_CMD_TOP:
        r = scan_command(d, peer, req, top_reply, to);
        break;
    case PYHEAP_CMD_REFERRERS:
        r = scan_command(d, peer, req, referrers_reply, to);
        break;
    case PYHEAP_CMD_SNAPSHOT: {
        pyheap_proto_error perr;
        if (snapshot_fd_check(req, &perr) < 0)
            r = error_reply(&perr);
        else
            r = scan_command(d, peer, req, snapshot_reply, to);
        break;
    }
    case PYHEAP_CMD_STATS:
        r = scan_command(d, peer, req, stats_reply, to);
        break;
    case PYHEAP_CMD_GROWTH:
    case PYHEAP_CMD_SNAPSHOTS:
        r = history_command(d, peer, req);
        break;
    case PYHEAP_CMD_DIFF:
        r = cmd_diff(d, peer, req);
        break;
    }
    if (!r && to && to->sent)
        return NULL;
    return r ? r : oom_reply();
}
