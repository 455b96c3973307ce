#include <stdlib.h>

#include "testutil.h"

const char *test_srcdir(void)
{
    const char *s = getenv("PYHEAP_SRCDIR");
    return s && *s ? s : ".";
}

const char *test_builddir(void)
{
    const char *s = getenv("PYHEAP_BUILD");
    return s && *s ? s : "build";
}
