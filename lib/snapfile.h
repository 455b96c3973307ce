/* Snapshot files, private side (tests and the fuzz harness). */
#ifndef PYHEAP_SNAPFILE_H
#define PYHEAP_SNAPFILE_H

#include <stddef.h>
#include <stdint.h>

/* Header and section-table geometry of format version 1
 * (docs/snapshot-format.md). */
#define SNAPFILE_HEADER_SIZE 160u
#define SNAPFILE_SECT_ENTRY 32u
#define SNAPFILE_NSECT 5u

/* Recompute the checksums of the file in BUF (LEN bytes) in place, for
 * sections whose offset and length lie inside it: lets tests and the
 * fuzzer reach the structural checks behind the checksums. Returns 0, or -1
 * if LEN is shorter than the header and section table. */
int pyheap_snapfile_seal(unsigned char *buf, size_t len);

#endif
