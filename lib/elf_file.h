/* ELF files of the target (libelf): symbols, sections, program headers,
 * build-id and .gnu_debuglink. Private to libpyheap.
 *
 * Every file is untrusted input: a truncated, garbage or hostile file gives
 * a clean error (PYHEAP_E_CORRUPT, or PYHEAP_E_IO when it cannot be opened)
 * and every count taken from it is bounded. Files are read with pread, never
 * mmap'd, so a file shrinking under us cannot raise SIGBUS. */
#ifndef PYHEAP_ELF_FILE_H
#define PYHEAP_ELF_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <gelf.h>

#include "internal.h"

typedef struct pyheap_elf pyheap_elf;

/* Longest build-id we accept (GNU uses 20 bytes for sha1). */
#define PYHEAP_BUILD_ID_MAX 64

/* Open PATH. Only 64-bit ELF files for the host's machine are accepted.
 * *out is owned by the caller (pyheap_elf_close). */
int pyheap_elf_open(const char *path, pyheap_elf **out, pyheap_error *err);
void pyheap_elf_close(pyheap_elf *e);

/* The path it was opened with. */
const char *pyheap_elf_path(const pyheap_elf *e);
/* The libelf handle (borrowed; valid until pyheap_elf_close), for libdw. */
Elf *pyheap_elf_handle(const pyheap_elf *e);
/* ET_EXEC, ET_DYN, ... */
unsigned pyheap_elf_type(const pyheap_elf *e);

/* Look up a defined symbol by exact name in .dynsym, then .symtab.
 * 0 and *value (st_value, before load bias) / *size, or -1 if absent. */
int pyheap_elf_symbol(const pyheap_elf *e, const char *name, uint64_t *value,
                      uint64_t *size);
/* The same for N names at once (one pass over each table): values[i] is
 * set for names found and left alone for the others. Returns how many of
 * the N were found. */
size_t pyheap_elf_symbols(const pyheap_elf *e, const char *const *names,
                          size_t n, uint64_t *values);

/* Find a section by name: 0 and its address, size and type, or -1. */
int pyheap_elf_section(const pyheap_elf *e, const char *name, uint64_t *addr,
                       uint64_t *size, unsigned *type);
/* Contents of a section by name, borrowed until pyheap_elf_close: 0, or -1
 * when absent, empty, NOBITS or outside the file. */
int pyheap_elf_section_bytes(const pyheap_elf *e, const char *name,
                             const void **data, size_t *size);
/* True when the file has a .debug_info section with contents. */
bool pyheap_elf_has_debug_info(const pyheap_elf *e);

/* The PT_LOAD segment with the lowest file offset: its p_offset and
 * p_vaddr, from which the load bias follows. 0, or -1 (CORRUPT) if none. */
int pyheap_elf_first_load(const pyheap_elf *e, uint64_t *p_offset,
                          uint64_t *p_vaddr, pyheap_error *err);

/* GNU build-id: 0 and its bytes/length, or -1 if the file has none. */
int pyheap_elf_build_id(const pyheap_elf *e, uint8_t *buf, size_t max,
                        size_t *len);
/* .gnu_debuglink: 0 and the file name and CRC32, or -1 if absent/invalid. */
int pyheap_elf_debuglink(const pyheap_elf *e, char *name, size_t max,
                         uint32_t *crc);

/* CRC32 (the .gnu_debuglink polynomial) of the file at PATH. */
int pyheap_elf_file_crc(const char *path, uint32_t *crc, pyheap_error *err);

#endif
