/* Consistent mode (freeze.h). Every thread is seized (no stop yet), then
 * interrupted, then waited for with a bound. Signals that arrive while a
 * thread is stopped are recorded and handed back at detach, so the target
 * does not lose them. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "freeze.h"
#include "internal.h"

#define MAX_THREADS 65536
#define MAX_ROUNDS 64

struct thr {
    pid_t tid;
    bool stopped;   /* in a ptrace-stop: may be detached */
    bool exited;
    int sig;        /* signal to re-deliver at detach */
};

struct pyheap_freeze {
    pid_t pid;
    struct thr *t;
    size_t n, cap;
    struct timespec t0;
};

static double ms_since(const struct timespec *a)
{
    struct timespec b;
    clock_gettime(CLOCK_MONOTONIC, &b);
    return (double)(b.tv_sec - a->tv_sec) * 1e3 + (double)(b.tv_nsec - a->tv_nsec) / 1e6;
}

static bool known(const pyheap_freeze *f, pid_t tid)
{
    for (size_t i = 0; i < f->n; i++)
        if (f->t[i].tid == tid)
            return true;
    return false;
}

/* Seize every thread of /proc/PID/task not seized yet. Returns the number
 * newly seized, or -1 (err filled). */
static long seize_new(pyheap_freeze *f, pyheap_error *err)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)f->pid);
    DIR *d = opendir(path);
    if (!d)
        return pyheap_err_remote(err, errno == ENOENT ? ESRCH : errno, f->pid, 0, 0);
    long added = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end;
        long tid = strtol(de->d_name, &end, 10);
        if (*end || tid <= 0 || known(f, (pid_t)tid))
            continue;
        if (f->n >= MAX_THREADS) {
            closedir(d);
            return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                                  "process %d has more than %d threads; not freezing it",
                                  (int)f->pid, MAX_THREADS);
        }
        if (f->n == f->cap) {
            size_t nc = f->cap ? f->cap * 2 : 16;
            struct thr *nt = realloc(f->t, nc * sizeof *nt);
            if (!nt) {
                closedir(d);
                return pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0, "out of memory");
            }
            f->t = nt;
            f->cap = nc;
        }
        if (ptrace(PTRACE_SEIZE, (pid_t)tid, NULL, NULL) < 0) {
            if (errno == ESRCH)
                continue;   /* the thread exited meanwhile */
            int e = errno;
            closedir(d);
            return pyheap_err_set(err, e == EPERM ? PYHEAP_E_PERM : PYHEAP_E_READ, e, 0,
                                  "cannot freeze thread %ld of process %d: PTRACE_SEIZE: %s%s",
                                  tid, (int)f->pid, strerror(e),
                                  e == EPERM ? " (needs CAP_SYS_PTRACE or the same user, "
                                               "and kernel.yama.ptrace_scope allowing it)" : "");
        }
        f->t[f->n++] = (struct thr){ .tid = (pid_t)tid };
        added++;
        if (ptrace(PTRACE_INTERRUPT, (pid_t)tid, NULL, NULL) < 0 && errno != ESRCH) {
            int e = errno;
            closedir(d);
            return pyheap_err_set(err, PYHEAP_E_READ, e, 0,
                                  "cannot freeze thread %ld of process %d: PTRACE_INTERRUPT: %s",
                                  tid, (int)f->pid, strerror(e));
        }
    }
    closedir(d);
    return added;
}

/* Wait until every seized thread is stopped or has exited, polling until
 * DEADLINE_MS after F->t0. 0, or -1 on timeout (err filled). */
static int wait_stopped(pyheap_freeze *f, double deadline_ms, pyheap_error *err)
{
    for (;;) {
        size_t pending = 0;
        for (size_t i = 0; i < f->n; i++) {
            struct thr *t = &f->t[i];
            if (t->stopped || t->exited)
                continue;
            int st;
            pid_t r = waitpid(t->tid, &st, __WALL | WNOHANG);
            if (r < 0) {
                if (errno == EINTR) {
                    pending++;
                    continue;
                }
                t->exited = true;   /* ECHILD: gone (or never ours) */
                continue;
            }
            if (r == 0) {
                pending++;
                continue;
            }
            if (WIFEXITED(st) || WIFSIGNALED(st)) {
                t->exited = true;
                continue;
            }
            if (WIFSTOPPED(st)) {
                int sig = WSTOPSIG(st);
                int event = st >> 16;
                t->stopped = true;
                /* A signal-delivery-stop: the signal must be given back.
                 * Our interrupt shows as PTRACE_EVENT_STOP (group-stop
                 * signals too, which are not re-sent). */
                if (event == 0 && sig != SIGTRAP)
                    t->sig = sig;
            }
        }
        if (pending == 0)
            return 0;
        if (ms_since(&f->t0) >= deadline_ms)
            return pyheap_err_set(err, PYHEAP_E_READ, ETIMEDOUT, 0,
                                  "%zu threads of process %d did not stop within %.0f ms "
                                  "(uninterruptible sleep?); not freezing it",
                                  pending, (int)f->pid, deadline_ms);
        struct timespec nap = { .tv_sec = 0, .tv_nsec = 200000 };
        nanosleep(&nap, NULL);
    }
}

int pyheap_freeze_begin(pid_t pid, unsigned stop_timeout_ms, pyheap_freeze **out,
                        pyheap_error *err)
{
    if (pid <= 0 || !out)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0, "invalid PID %d", (int)pid);
    pyheap_freeze *f = calloc(1, sizeof *f);
    if (!f)
        return pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0, "out of memory");
    f->pid = pid;
    clock_gettime(CLOCK_MONOTONIC, &f->t0);
    double deadline = stop_timeout_ms ? (double)stop_timeout_ms : 1000.0;
    /* New threads may appear until every existing one is stopped: repeat
     * until a round finds none. */
    int rounds = 0;
    for (;;) {
        long added = seize_new(f, err);
        if (added < 0)
            goto fail;
        if (wait_stopped(f, deadline, err) < 0)
            goto fail;
        if (added == 0)
            break;
        if (++rounds >= MAX_ROUNDS) {
            pyheap_err_set(err, PYHEAP_E_READ, EAGAIN, 0,
                           "process %d keeps starting threads; not freezing it", (int)pid);
            goto fail;
        }
    }
    size_t alive = 0;
    for (size_t i = 0; i < f->n; i++)
        alive += f->t[i].stopped;
    if (alive == 0) {
        pyheap_err_set(err, PYHEAP_E_GONE, ESRCH, 0, "process %d has exited", (int)pid);
        goto fail;
    }
    *out = f;
    return 0;
fail:
    pyheap_freeze_end(f);
    return -1;
}

size_t pyheap_freeze_threads(const pyheap_freeze *f)
{
    size_t k = 0;
    for (size_t i = 0; f && i < f->n; i++)
        k += f->t[i].stopped;
    return k;
}

double pyheap_freeze_end(pyheap_freeze *f)
{
    if (!f)
        return 0.0;
    for (size_t i = 0; i < f->n; i++) {
        struct thr *t = &f->t[i];
        if (t->exited)
            continue;
        if (!t->stopped) {
            /* Seized but not (yet) stopped: a running tracee cannot be
             * detached. Wait for its stop a little longer, then detach. If
             * it still does not stop, the kernel detaches it when this
             * thread exits (freeze.h). */
            for (int k = 0; k < 2000 && !t->stopped && !t->exited; k++) {
                int st;
                pid_t r = waitpid(t->tid, &st, __WALL | WNOHANG);
                if (r < 0 && errno != EINTR)
                    t->exited = true;
                else if (r > 0 && (WIFEXITED(st) || WIFSIGNALED(st)))
                    t->exited = true;
                else if (r > 0 && WIFSTOPPED(st)) {
                    t->stopped = true;
                    if ((st >> 16) == 0 && WSTOPSIG(st) != SIGTRAP)
                        t->sig = WSTOPSIG(st);
                } else {
                    struct timespec nap = { .tv_sec = 0, .tv_nsec = 500000 };
                    nanosleep(&nap, NULL);
                }
            }
            if (t->exited)
                continue;
        }
        if (ptrace(PTRACE_DETACH, t->tid, NULL, (void *)(long)t->sig) == 0)
            continue;
        /* ESRCH: the thread is not in a stop any more — typically a fatal
         * signal that another, already resumed thread took down the whole
         * process with. A traced thread that exits waits for its tracer:
         * reap it (bounded), or detach it if it stops again. */
        for (int k = 0; k < 2000; k++) {
            int st;
            pid_t r = waitpid(t->tid, &st, __WALL | WNOHANG);
            if (r < 0 && errno != EINTR)
                break;
            if (r > 0 && (WIFEXITED(st) || WIFSIGNALED(st)))
                break;
            if (r > 0 && WIFSTOPPED(st) &&
                ptrace(PTRACE_DETACH, t->tid, NULL, (void *)(long)t->sig) == 0)
                break;
            struct timespec nap = { .tv_sec = 0, .tv_nsec = 500000 };
            nanosleep(&nap, NULL);
        }
    }
    double ms = ms_since(&f->t0);
    free(f->t);
    free(f);
    return ms;
}
