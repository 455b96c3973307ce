/* Helpers shared by the test suites (tests/testutil.c). */
#ifndef PYHEAP_TESTUTIL_H
#define PYHEAP_TESTUTIL_H

#include <sys/types.h>
#include <sys/wait.h>

/* Repository root ($PYHEAP_SRCDIR, set by the Makefile; else "."). */
const char *test_srcdir(void);
/* Build directory with pyheapd/pyheap ($PYHEAP_BUILD; else "build"). */
const char *test_builddir(void);

#endif
