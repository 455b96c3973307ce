/* Helpers shared by the test suites (tests/testutil.c). */
#ifndef PYHEAP_TESTUTIL_H
#define PYHEAP_TESTUTIL_H

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

#endif
