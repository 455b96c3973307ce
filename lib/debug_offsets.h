/* _Py_DebugOffsets (3.13+): parsing and validating the copy at the start
 * of _PyRuntime as untrusted input. Private. */
#ifndef PYHEAP_DEBUG_OFFSETS_H
#define PYHEAP_DEBUG_OFFSETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal.h"

/* Upper bound on sizeof(_Py_DebugOffsets) we read (3.15: 888). */
#define PYHEAP_DEBUG_OFFSETS_MAX 4096u

/* Parse BUF (LEN bytes copied from &_PyRuntime) with the layout of
 * TAB->dbg (the minor version the target claims). Checks, in order: a
 * layout exists (3.13+), LEN covers it, cookie "xdebugpy", version equals
 * PY_VERSION (Py_Version read from the target; 0: only major/minor are
 * compared with TAB), free_threaded is 0 (1: PYHEAP_E_UNSUPPORTED naming
 * the free-threaded build), every section size in 1..its bound, every
 * offset inside its section (aligned for pointers), sizes consistent
 * (interp gc state inside the interpreter, runtime fields inside the
 * runtime; RUNTIME_SIZE, the size of the _PyRuntime symbol or .PyRuntime
 * section when known (else 0), equals runtime_state.size).
 * On success fills the provided fields of *OUT (others untouched), sets
 * PROVIDED[i] for each enum pyheap_dbg_field i it filled, and returns the
 * count. -1 with err (PYHEAP_E_OFFSETS, _CORRUPT or _UNSUPPORTED) naming
 * the failed check. */
int pyheap_debug_offsets_parse(const struct pyheap_offsets_table *tab,
                               const void *buf, size_t len, uint32_t py_version,
                               uint64_t runtime_size, struct pyheap_offsets *out,
                               bool provided[PYHEAP_DBG_COUNT], pyheap_error *err);

/* The pyheap field name of enum pyheap_dbg_field I, and its byte offset in
 * struct pyheap_offsets. */
const char *pyheap_debug_offsets_field_name(size_t i);
size_t pyheap_debug_offsets_field_slot(size_t i);

#endif
