/* One scan of an attached target: identity checks, time budget, optional
 * freeze (see pyheapd.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "freeze.h"
#include "pyheapd.h"

#define PYHEAPD_E_TIMEOUT "timeout"

enum pyheapd_state pyheapd_session_check(struct pyheapd *d, struct pyheapd_session *s)
{
    enum pyheapd_state st = pyheapd_identity_check(s->pid, &s->id);
    if (st != PYHEAPD_ALIVE) {
        pthread_mutex_lock(&d->lock);
        if (!s->gone) {
            s->gone = 1;
            s->state = st;
            pyheapd_logp(5, "pid %d: session ends: %s", (int)s->pid, pyheapd_state_name(st));
        }
        st = s->state;
        pthread_mutex_unlock(&d->lock);
    }
    return st;
}

static int state_error(const struct pyheapd_session *s, enum pyheapd_state st,
                       pyheap_proto_error *perr)
{
    const char *why = st == PYHEAPD_EXECD ? "called exec: it runs another program now"
                    : st == PYHEAPD_PID_REUSED ? "exited, and its PID now belongs to "
                                                 "another process"
                    : "has exited";
    return pyheap_proto_err_set(perr, pyheap_errcode_name(PYHEAP_E_GONE),
                                "process %d %s (session state \"%s\"); nothing was read "
                                "from it: detach it with `pyheap detach %d`",
                                (int)s->pid, why, pyheapd_state_name(st), (int)s->pid);
}

struct job {
    struct pyheapd *d;
    struct pyheapd_session *s;
    int freeze;
    pyheap_snapshot *snap;
    pyheap_error err;
    int rc;
    int budget_spent;
    int changed;               /* identity changed while frozen */
    struct pyheapd_scan_info info;
};

static void run(struct job *j)
{
    struct pyheapd_session *s = j->s;
    pyheap_freeze *fz = NULL;
    memset(&j->err, 0, sizeof j->err);
    j->rc = -1;
    if (j->freeze) {
        if (pyheap_freeze_begin(s->pid, j->d->cfg.freeze_stop_ms, &fz, &j->err) < 0)
            return;
        j->info.froze = 1;
        j->info.frozen_threads = pyheap_freeze_threads(fz);
        /* Seized the right process? (PID reuse between check and seize.) */
        if (pyheapd_identity_check(s->pid, &s->id) != PYHEAPD_ALIVE) {
            j->info.pause_ms = pyheap_freeze_end(fz);
            j->changed = 1;
            return;
        }
    }
    pyheap_target_set_time_budget(s->target, j->d->cfg.scan_budget_ms);
    j->rc = pyheap_snapshot_take(s->target, NULL, &j->snap, &j->err);
    j->budget_spent = pyheap_target_budget_spent(s->target);
    pyheap_target_set_time_budget(s->target, 0);
    if (fz)
        j->info.pause_ms = pyheap_freeze_end(fz);
}

static void *job_thread(void *arg)
{
    run(arg);
    return NULL;
}

static double ms_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

int pyheapd_scan(struct pyheapd *d, struct pyheapd_session *s, int freeze,
                 pyheap_snapshot **out, struct pyheapd_scan_info *info,
                 pyheap_proto_error *perr)
{
    memset(info, 0, sizeof *info);
    struct timespec w0, w1;
    clock_gettime(CLOCK_MONOTONIC, &w0);
    pthread_mutex_lock(&s->scan_lock);
    enum pyheapd_state st = pyheapd_session_check(d, s);
    if (st != PYHEAPD_ALIVE) {
        pthread_mutex_unlock(&s->scan_lock);
        return state_error(s, st, perr);
    }
    struct job j;
    memset(&j, 0, sizeof j);
    j.d = d;
    j.s = s;
    j.freeze = freeze;
    if (freeze) {
        /* ptrace is per thread: freeze, scan and thaw in a thread of their
         * own, whose exit resumes the target whatever happened. */
        pthread_t th;
        int rc = pthread_create(&th, NULL, job_thread, &j);
        if (rc != 0) {
            pthread_mutex_unlock(&s->scan_lock);
            return pyheap_proto_err_set(perr, pyheap_errcode_name(PYHEAP_E_NOMEM),
                                        "cannot start the freeze thread: %s", strerror(rc));
        }
        pthread_join(th, NULL);
    } else {
        run(&j);
    }
    *info = j.info;
    /* After the scan: was it still the same process all along? */
    st = pyheapd_session_check(d, s);
    pthread_mutex_unlock(&s->scan_lock);
    clock_gettime(CLOCK_MONOTONIC, &w1);
    info->wall_ms = ms_between(&w0, &w1);
    if (j.changed && st == PYHEAPD_ALIVE)
        st = PYHEAPD_PID_REUSED;
    if (st != PYHEAPD_ALIVE) {
        /* Never report what was read from another process. */
        pyheap_snapshot_free(j.snap);
        return state_error(s, st, perr);
    }
    if (j.budget_spent) {
        pyheap_snapshot_free(j.snap);
        pyheapd_logp(4, "scan of pid %d stopped: time budget of %llu ms spent",
                     (int)s->pid, (unsigned long long)d->cfg.scan_budget_ms);
        return pyheap_proto_err_set(perr, PYHEAPD_E_TIMEOUT,
                                    "the scan of process %d was stopped after its time budget "
                                    "of %llu ms (pyheapd --scan-timeout); nothing partial is "
                                    "reported", (int)s->pid,
                                    (unsigned long long)d->cfg.scan_budget_ms);
    }
    if (j.rc < 0) {
        if (j.err.code == PYHEAP_E_GONE) {
            st = pyheapd_session_check(d, s);
            if (st == PYHEAPD_ALIVE) {
                pthread_mutex_lock(&d->lock);
                s->gone = 1;
                s->state = PYHEAPD_GONE;
                pthread_mutex_unlock(&d->lock);
                st = PYHEAPD_GONE;
            }
            return state_error(s, st, perr);
        }
        pyheapd_logp(4, "scan of pid %d failed: %s: %s", (int)s->pid,
                     pyheap_errcode_name(j.err.code), j.err.msg);
        return pyheap_proto_err_from_lib(perr, &j.err);
    }
    *out = j.snap;
    return 0;
}
