/*
 * Consistent mode: stop every thread of a process with PTRACE_SEIZE +
 * PTRACE_INTERRUPT, and resume them all with PTRACE_DETACH.
 *
 * ptrace belongs to the calling *thread*: the thread that froze must be the
 * one that thaws (and it must not exit in between, or the kernel detaches,
 * i.e. resumes, everything itself — which is the last line of defence: run
 * a freeze in a dedicated thread so that whatever happens, its end resumes
 * the target; the same holds when the whole daemon dies).
 */
#ifndef PYHEAP_FREEZE_H
#define PYHEAP_FREEZE_H

#include <sys/types.h>

#include "pyheap.h"

typedef struct pyheap_freeze pyheap_freeze;

/* Stop every thread of PID (threads started meanwhile are caught by
 * re-reading /proc/PID/task until it is stable). Each thread gets at most
 * STOP_TIMEOUT_MS in total to stop. On failure every thread already stopped
 * is resumed before returning -1 (err filled: PERM, GONE, or a timeout as
 * PYHEAP_E_READ with ETIMEDOUT). */
int pyheap_freeze_begin(pid_t pid, unsigned stop_timeout_ms, pyheap_freeze **out,
                        pyheap_error *err);
/* Number of threads stopped. */
size_t pyheap_freeze_threads(const pyheap_freeze *f);
/* Resume every thread (re-delivering signals that arrived during the stop)
 * and free F. Returns the pause in milliseconds (first stop to resume).
 * NULL is a no-op returning 0. */
double pyheap_freeze_end(pyheap_freeze *f);

#endif
