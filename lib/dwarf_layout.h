/* Struct layouts from DWARF (libdw) into struct pyheap_offsets. Private. */
#ifndef PYHEAP_DWARF_LAYOUT_H
#define PYHEAP_DWARF_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "elf_file.h"
#include "internal.h"

/* Find a file with DWARF for MODULE (opened by the caller; MODULE_PATH is
 * the path as the target sees it). In order: the module itself when it has
 * .debug_info; a separate debug file by build-id
 * (/usr/lib/debug/.build-id/xx/rest.debug); by .gnu_debuglink (the module's
 * directory, its .debug/ subdirectory, /usr/lib/debug/<dir>/). Each is
 * looked up inside /proc/PID/root first (PID > 0), then on the host. A
 * separate file must carry the module's build-id (or, without one, match
 * the debuglink CRC). On success *out is a new handle (caller closes it)
 * and WHERE names the file. -1 with PYHEAP_E_NOTFOUND when there is none;
 * TRIED then lists what was looked at (may be truncated). */
int pyheap_dwarf_locate(pid_t pid, const char *module_path,
                        const pyheap_elf *module, pyheap_elf **out,
                        char *where, size_t where_len, pyheap_error *err);

/* Fill every field of *OFF valid for MAJOR.MINOR (any patch release; see
 * offsets_fields.h) from the DWARF in DBG. Fields outside their version
 * range, and fields the DWARF does not describe, are PYHEAP_OFF_ABSENT; the
 * latter their names are written to MISSING as a
 * comma-separated list (truncated to MISSING_LEN) and counted in
 * *NMISSING. -1 (PYHEAP_E_NOTFOUND: no DWARF; PYHEAP_E_CORRUPT: libdw
 * cannot read it) when no offsets at all could be read. */
int pyheap_dwarf_offsets(const pyheap_elf *dbg, int major, int minor,
                         struct pyheap_offsets *off, char *missing,
                         size_t missing_len, size_t *nmissing, pyheap_error *err);

/* The spec table built from offsets_fields.h, for tests and tools. */
size_t pyheap_dwarf_nfields(void);
/* Name of field I ("tp_name") and its byte offset in struct pyheap_offsets. */
const char *pyheap_dwarf_field_name(size_t i);
size_t pyheap_dwarf_field_slot(size_t i);
/* Its version range LO..HI as written in offsets_fields.h. */
void pyheap_dwarf_field_range(size_t i, unsigned *lo, unsigned *hi);

/* Does the range LO..HI (offsets_fields.h encoding) include
 * MAJOR.MINOR.MICRO? MICRO < 0: any patch release of MAJOR.MINOR. */
bool pyheap_offsets_range_has(unsigned lo, unsigned hi, int major, int minor,
                              int micro);

#endif
