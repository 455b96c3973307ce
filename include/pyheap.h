/*
 * libpyheap: inspect the heap of a running CPython process from outside,
 * read-only, without stopping it.
 *
 * Conventions
 *  - Functions return 0 on success and -1 on failure (or a pointer / NULL).
 *    On failure they fill *err when err is not NULL; on success *err is left
 *    alone. Out-parameters are written only on success.
 *  - pyheap_x_free(NULL) is a no-op.
 *  - Strings returned by accessors are owned by the object they came from and
 *    live as long as it does.
 *  - Nothing here writes to the target, stops it, or logs.
 */
#ifndef PYHEAP_H
#define PYHEAP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------ */

typedef enum pyheap_errcode {
    PYHEAP_OK = 0,
    PYHEAP_E_NOPROC,      /* no such process (at open time) */
    PYHEAP_E_GONE,        /* the process exited / exec'd while we worked */
    PYHEAP_E_PERM,        /* not allowed to read it (ptrace_scope, CAP_SYS_PTRACE, uid) */
    PYHEAP_E_NOTPYTHON,   /* no CPython interpreter found in the process */
    PYHEAP_E_UNSUPPORTED, /* a CPython we do not support (version, free-threaded…) */
    PYHEAP_E_OFFSETS,     /* offsets could not be found or failed validation */
    PYHEAP_E_READ,        /* a remote read failed for another reason */
    PYHEAP_E_CORRUPT,     /* remote data or a file is inconsistent beyond repair */
    PYHEAP_E_NOMEM,       /* out of memory, or a configured memory cap was hit */
    PYHEAP_E_IO,          /* local file / socket error */
    PYHEAP_E_INVAL,       /* bad argument */
    PYHEAP_E_NOTFOUND     /* asked-for thing (type, target…) does not exist */
} pyheap_errcode;

typedef struct pyheap_error {
    pyheap_errcode code;
    int sys_errno;        /* errno of the failing system call, or 0 */
    uint64_t addr;        /* remote address involved, or 0 */
    char msg[512];        /* one complete human sentence: what failed, what to do */
} pyheap_error;

/* Short stable identifier of a code ("no_process", "permission", ...), used
 * as the "error" field of protocol replies. Never NULL. */
const char *pyheap_errcode_name(pyheap_errcode code);

/* ---- targets ------------------------------------------------------------ */

typedef struct pyheap_target pyheap_target;

typedef enum pyheap_offsets_source {
    PYHEAP_OFFSETS_NONE = 0,
    PYHEAP_OFFSETS_DEBUG_OFFSETS, /* _Py_DebugOffsets in the runtime (3.13+) */
    PYHEAP_OFFSETS_DWARF,         /* libdw, from the module or its debug file */
    PYHEAP_OFFSETS_TABLE          /* built-in table (tools/gen-offsets) */
} pyheap_offsets_source;

/* "debug_offsets", "dwarf", "table" or "none". */
const char *pyheap_offsets_source_name(pyheap_offsets_source src);

typedef struct pyheap_open_opts {
    /* Which sources may be used, in the fixed order debug_offsets, dwarf,
     * table. 0 means all. Bit (1 << PYHEAP_OFFSETS_x). Tests use this to
     * force a source. */
    unsigned allowed_sources;
} pyheap_open_opts;

/* Attach to PID read-only: find the interpreter, its version and offsets,
 * validate them. opts may be NULL. The target is not stopped. */
int pyheap_target_open(pid_t pid, const pyheap_open_opts *opts,
                       pyheap_target **out, pyheap_error *err);
void pyheap_target_free(pyheap_target *t);

pid_t pyheap_target_pid(const pyheap_target *t);
/* "3.11.2" */
const char *pyheap_target_version(const pyheap_target *t);
pyheap_offsets_source pyheap_target_offsets_source(const pyheap_target *t);
/* Path (as seen by the target) of the ELF module holding the interpreter,
 * e.g. "/usr/bin/python3.11" or ".../libpython3.11.so.1.0". */
const char *pyheap_target_module(const pyheap_target *t);
/* Where the offsets came from in words, e.g. the DWARF file path or
 * "built-in table for 3.11 (headers 3.11.2)". */
const char *pyheap_target_offsets_detail(const pyheap_target *t);
/* 0 if the process is still the one we opened (same PID, same start time,
 * same executable); -1 with PYHEAP_E_GONE otherwise. */
int pyheap_target_check_alive(const pyheap_target *t, pyheap_error *err);

/* ---- snapshots ---------------------------------------------------------- */

typedef struct pyheap_snapshot pyheap_snapshot;

typedef struct pyheap_scan_opts {
    /* Upper bound on objects visited (0: default, 50 million). Beyond it
     * the scan stops and reports truncation. */
    uint64_t max_objects;
    /* Upper bound on bytes of target memory cached during the scan
     * (0: default 512 MiB). */
    uint64_t max_cache_bytes;
} pyheap_scan_opts;

typedef struct pyheap_scan_stats {
    uint64_t objects;        /* live objects found */
    uint64_t bytes;          /* sum of their sizes (see docs: "bytes") */
    uint64_t skipped;        /* candidates rejected: torn / freed / invalid */
    uint64_t gc_tracked;     /* objects found on the GC lists */
    uint64_t remote_reads;   /* process_vm_readv calls */
    uint64_t remote_bytes;   /* bytes copied from the target */
    double scan_ms;          /* wall time of the scan */
    int truncated;           /* a limit stopped the scan early */
} pyheap_scan_stats;

/* Take a snapshot of the target's heap (non-stop: reads race with the
 * target; inconsistent objects are skipped and counted). */
int pyheap_snapshot_take(pyheap_target *t, const pyheap_scan_opts *opts,
                         pyheap_snapshot **out, pyheap_error *err);
void pyheap_snapshot_free(pyheap_snapshot *s);

const pyheap_scan_stats *pyheap_snapshot_stats(const pyheap_snapshot *s);

/* Objects, in ascending address order; index i in [0, count). */
size_t pyheap_snapshot_count(const pyheap_snapshot *s);
uint64_t pyheap_snapshot_addr(const pyheap_snapshot *s, size_t i);
uint64_t pyheap_snapshot_size(const pyheap_snapshot *s, size_t i);
uint32_t pyheap_snapshot_type(const pyheap_snapshot *s, size_t i);

/* Type table; index in [0, ntypes). Names as Python shows them:
 * "str", "__main__.Plain", "collections.OrderedDict". */
size_t pyheap_snapshot_ntypes(const pyheap_snapshot *s);
const char *pyheap_snapshot_type_name(const pyheap_snapshot *s, uint32_t type);

/* ---- analyses ----------------------------------------------------------- */

typedef struct pyheap_type_stat {
    uint32_t type;       /* index into the snapshot's type table */
    const char *name;    /* borrowed from the snapshot */
    uint64_t count;
    uint64_t bytes;
} pyheap_type_stat;

typedef enum pyheap_sort {
    PYHEAP_SORT_BYTES = 0, /* bytes desc, then count desc, then name */
    PYHEAP_SORT_COUNT      /* count desc, then bytes desc, then name */
} pyheap_sort;

/* Histogram by type, sorted. *out is malloc'd (caller frees with free());
 * names are borrowed from the snapshot. Types with zero objects are left out. */
int pyheap_histogram(const pyheap_snapshot *s, pyheap_sort sort,
                     pyheap_type_stat **out, size_t *n, pyheap_error *err);

#ifdef __cplusplus
}
#endif
#endif
