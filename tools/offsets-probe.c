/*
 * Offsets probe: compiled against one CPython version's internal headers
 * (Py_BUILD_CORE), it prints the C initializer of a built-in offsets table.
 * Driven by tools/gen-offsets, which writes probe_body.h (one printf per
 * entry valid for the version); see docs/offsets.md. Never edit its output.
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
#include "internal/pycore_code.h"
#include "internal/pycore_long.h"
#include "internal/pycore_object.h"
#include "internal/pycore_genobject.h"
#include "internal/pycore_function.h"
#if __has_include("internal/pycore_tstate.h")
#include "internal/pycore_tstate.h"
#endif
#if __has_include("internal/pycore_debug_offsets.h")
#include "internal/pycore_debug_offsets.h"
#endif
#include "structmember.h"

int main(void)
{
#include "probe_body.h"
    return 0;
}
