/*
 * Offsets probe: compiled against one CPython version's internal headers
 * (Py_BUILD_CORE), it prints the C initializer of a built-in offsets table.
 * Driven by tools/gen-offsets; see docs/offsets.md. Never edit its output.
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>
#include <stdio.h>
#include "internal/pycore_runtime.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_frame.h"
#include "internal/pycore_dict.h"
#include "internal/pycore_moduleobject.h"
#include "internal/pycore_gc.h"
#include "structmember.h"

int main(void)
{
#define PYOFF(field, CTYPE, member) \
    printf("    .%s = %zu,\n", #field, (size_t)offsetof(CTYPE, member));
#define PYSIZE(field, CTYPE) \
    printf("    .%s = %zu,\n", #field, (size_t)sizeof(CTYPE));
#include "offsets_fields.h"
#undef PYOFF
#undef PYSIZE
    return 0;
}
