/* Helpers shared by the test suites (tests/testutil.c). */
#ifndef PYHEAP_TESTUTIL_H
#define PYHEAP_TESTUTIL_H

#include <stdbool.h>
#include <sys/types.h>
#include <sys/wait.h>

/* Repository root ($PYHEAP_SRCDIR, set by the Makefile; else "."). */
const char *test_srcdir(void);
/* Build directory with pyheapd/pyheap ($PYHEAP_BUILD; else "build"). */
const char *test_builddir(void);

/* Monotonic clock in milliseconds. */
double test_now_ms(void);
void test_sleep_ms(int ms);
/* Whole file (malloc'd; "" when unreadable). */
char *test_slurp(const char *path);
/* fork + exec ARGV with stdout/stderr to OUT/ERR (NULL: inherit), stdin
 * from /dev/null, as UID/GID ((uid_t)-1: unchanged; GID (gid_t)-1: UID),
 * with PR_SET_PDEATHSIG. */
pid_t test_spawn(char *const argv[], const char *out, const char *err, uid_t uid, gid_t gid);
/* Exit status, 128+signal, or -1 after TIMEOUT_MS (then killed). */
int test_wait_exit(pid_t pid, int timeout_ms);
/* Connect to the Unix socket PATH; -1 on failure (errno kept). */
int test_connect(const char *path);
/* SIGKILL PID and reap it. */
void test_reap(pid_t pid);
/* fork + exec ARGV (PATH searched) with stdout to a pipe and, when QUIET,
 * stderr to /dev/null; the child dies with the test process. Waits up to
 * TIMEOUT_MS for its first output, which must start with "ready". The
 * pipe's read end goes to *READY_FD (if not NULL) and otherwise stays open
 * until the test process exits: a target writing more never dies of EPIPE. */
pid_t test_spawn_ready(char *const argv[], bool quiet, int timeout_ms, int *ready_fd);
/* `rm -rf 'DIR'`; asserts success. */
void test_rm_rf(const char *dir);
/* Run ARGV to completion (at most 120 s, then it is killed and the test
 * fails); its stdout (malloc'd) in *OUT, stderr inherited. Exit status. */
int test_capture(char *const argv[], char **out);
/* Run the shell command CMD; its stdout and stderr (malloc'd) in *OUT.
 * Exit status, -1 if killed by a signal. */
int test_sh(const char *cmd, char **out);

#endif
