/* One scan of an attached target: identity checks, time budget, optional
 * freeze, CPU priority (see pyheapd.h). */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "freeze.h"
#include "history.h"
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

/* Scans never stop the target (without --freeze), so they compete with it
 * for CPU only: each runs in a thread of its own at nice --scan-nice (19 by
 * default) under SCHED_BATCH, while the connection threads keep the
 * daemon's priority and stay responsive. Nice, not SCHED_IDLE: an idle-class
 * thread gets almost nothing on a busy host and would run into the scan's
 * time budget; nice 19 still gets a small share (weight 15 against 1024 at
 * nice 0). The I/O priority is left alone: a scan reads memory
 * (process_vm_readv), not disks, and the kernel derives the default
 * best-effort I/O level from the nice value anyway. setpriority sets an
 * absolute value per thread; a thread that already runs at that nice or
 * lower (the unit's Nice=19) is left as it is, policy included, so no
 * privilege and no system call the unit's sandbox denies are needed. */
void pyheapd_scan_priority(struct pyheapd *d)
{
    int want = d->cfg.scan_nice;
    if (want <= 0)
        return;
    pid_t tid = gettid();
    const char *what = NULL;
    int err = 0;
    errno = 0;
    int cur = getpriority(PRIO_PROCESS, (id_t)tid);
    if (cur == -1 && errno != 0) {
        what = "getpriority";
        err = errno;
    } else if (cur >= want) {
        return;   /* the operator already runs us this low: leave it */
    } else if (setpriority(PRIO_PROCESS, (id_t)tid, want) < 0) {
        what = "setpriority";
        err = errno;
    }
    int policy;
    struct sched_param sp;
    if (!what && pthread_getschedparam(pthread_self(), &policy, &sp) == 0 &&
        policy == SCHED_OTHER) {
        memset(&sp, 0, sizeof sp);
        int rc = pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
        if (rc != 0) {
            what = "sched_setscheduler(SCHED_BATCH)";
            err = rc;
        }
    }
    if (what && atomic_exchange(&d->prio_warned, 1) == 0)
        pyheapd_logp(4, "cannot lower the priority of scans to nice %d: %s: %s (a seccomp "
                     "filter? the unit denies @resources and sets Nice=19 instead); scans "
                     "run at the daemon's priority", want, what, strerror(err));
}

struct job {
    struct pyheapd *d;
    struct pyheapd_session *s;
    int freeze;
    const struct pyheapd_early *early;
    pyheap_freeze *fz;         /* while the target is stopped */
    pyheap_snapshot *snap;
    pyheap_error err;
    int rc;
    int budget_spent;
    int changed;               /* identity changed while frozen */
    struct pyheapd_scan_info info;
};

/* Resume a frozen target (once): as soon as the walk has read what it
 * reads, or after a scan that failed before. The build that follows
 * competes with the running target: it gets the scans' priority. */
static void resume(void *arg)
{
    struct job *j = arg;
    if (j->fz) {
        j->info.pause_ms = pyheap_freeze_end(j->fz);
        j->fz = NULL;
        pyheapd_scan_priority(j->d);
    }
}

/* The walk's census (issue 7): handed to the caller's early reply when the
 * walk was complete and read the right process. */
static void census(void *arg, const pyheap_census *c)
{
    struct job *j = arg;
    if (pyheap_target_budget_spent(j->s->target) || j->changed ||
        pyheapd_session_check(j->d, j->s) != PYHEAPD_ALIVE)
        return;
    j->early->fn(j->early->arg, c, &j->info);
}

static void run(struct job *j)
{
    struct pyheapd_session *s = j->s;
    memset(&j->err, 0, sizeof j->err);
    j->rc = -1;
    if (j->freeze) {
        if (pyheap_freeze_begin(s->pid, j->d->cfg.freeze_stop_ms, &j->fz, &j->err) < 0)
            return;
        j->info.froze = 1;
        j->info.frozen_threads = pyheap_freeze_threads(j->fz);
        /* Seized the right process? (PID reuse between check and seize.) */
        if (pyheapd_identity_check(s->pid, &s->id) != PYHEAPD_ALIVE) {
            resume(j);
            j->changed = 1;
            return;
        }
    }
    pyheap_target_set_time_budget(s->target, j->d->cfg.scan_budget_ms);
    /* The snapshot is built after the target is resumed: it reads nothing
     * of it. */
    pyheap_scan_opts so = { .threads = j->d->cfg.scan_threads,
                            .walked = j->fz ? resume : NULL, .walked_arg = j,
                            .census = j->early ? census : NULL, .census_arg = j,
                            .stopped = j->fz != NULL };
    j->rc = pyheap_snapshot_take(s->target, &so, &j->snap, &j->err);
    j->budget_spent = pyheap_target_budget_spent(s->target);
    pyheap_target_set_time_budget(s->target, 0);
    resume(j);
}

static void *job_thread(void *arg)
{
    struct job *j = arg;
    /* A frozen target does not compete for CPU, and a slower walk would
     * only stop it for longer: --freeze scans keep the daemon's priority
     * until the target is resumed (resume). */
    if (!j->freeze)
        pyheapd_scan_priority(j->d);
    /* Named after its priority is set: `top -H` and tests/test_nice.c see
     * "pyheapd-scan" only at the priority it walks at (a --freeze scan's
     * drops to the scans' once the target is resumed, for the build). */
    pthread_setname_np(pthread_self(), "pyheapd-scan");
    run(j);
    return NULL;
}

static double ms_between(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

int pyheapd_scan(struct pyheapd *d, struct pyheapd_session *s, int freeze,
                 const struct pyheapd_early *early, pyheap_snapshot **out,
                 struct pyheapd_scan_info *info, pyheap_proto_error *perr)
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
    /* whatever a scan before kept goes now (or is not kept: keep_full) */
    uint64_t gen = pyheapd_history_scan_begin(s->hist);
    struct job j;
    memset(&j, 0, sizeof j);
    j.d = d;
    j.s = s;
    j.freeze = freeze;
    j.early = early && early->fn ? early : NULL;
    /* A thread per scan: with --freeze, because ptrace is per thread and
     * that thread's exit resumes the target whatever happened; without, so
     * that only the scan runs at the low priority (pyheapd_scan_priority)
     * and the caller keeps its own. */
    pthread_t th;
    int rc = pthread_create(&th, NULL, job_thread, &j);
    if (rc == 0) {
        pthread_join(th, NULL);
    } else if (freeze) {
        pthread_mutex_unlock(&s->scan_lock);
        return pyheap_proto_err_set(perr, pyheap_errcode_name(PYHEAP_E_NOMEM),
                                    "cannot start the freeze thread: %s", strerror(rc));
    } else {
        run(&j);   /* no thread to spare (TasksMax): scan here, at our priority */
    }
    *info = j.info;
    info->gen = gen;
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
        /* A scan at low priority on a saturated host gets little CPU: say
         * which knob trades the target's CPU for the scan's time. */
        const char *hint = !freeze && d->cfg.scan_nice > 0
                               ? "; scans run at low CPU priority (pyheapd --scan-nice): on a "
                                 "busy host raise --scan-timeout or lower --scan-nice"
                               : "";
        return pyheap_proto_err_set(perr, PYHEAPD_E_TIMEOUT,
                                    "the scan of process %d was stopped after its time budget "
                                    "of %llu ms (pyheapd --scan-timeout); nothing partial is "
                                    "reported%s", (int)s->pid,
                                    (unsigned long long)d->cfg.scan_budget_ms, hint);
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
