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
typedef struct pyheap_census pyheap_census;

typedef struct pyheap_scan_opts {
    /* Upper bound on the objects a snapshot holds (0: default, 100
     * million). A heap with more is cut at exactly that many (which of
     * them depends on the walk's order) and the snapshot says truncated;
     * a heap of exactly that many is whole. */
    uint64_t max_objects;
    /* Upper bound on bytes of target memory cached during the scan, per
     * walker thread (0: default, an eighth of the target's resident memory
     * between 8 and 64 MiB; at least 1 MiB). A bigger cache re-reads less
     * of the target when its heap is scattered, for that much more
     * memory. Besides it, each walker keeps up to 1 MiB of single pages
     * for scattered reads. */
    uint64_t max_cache_bytes;
    /* Walker threads (0: 1; at most PYHEAP_MAX_SCAN_THREADS). Each reads
     * the target through its own cache of max_cache_bytes; the seen set,
     * type descriptions and labels are shared. */
    unsigned threads;
    /* If set, called once as soon as the walk has read all it reads of the
     * target, before the snapshot is built from what it found (the build
     * reads nothing of the target; about a third of a big heap's scan):
     * a caller that stopped the target for the scan resumes it there. Not
     * called when the scan fails before walking. */
    void (*walked)(void *arg);
    void *walked_arg;
    /* If set, called once as soon as the walker threads are done, with
     * what the walk found: the objects and bytes per type that the
     * snapshot will hold, so that a census is answered without waiting for
     * the threads' records to be joined and the snapshot built (see
     * pyheap_census_histogram). Not called when the walk was truncated or
     * failed, when the target is gone, nor when the walk cannot vouch that
     * the snapshot will hold the same objects (then the snapshot's own
     * histogram answers). The scan can still fail after it (out of memory
     * joining the records or building). The census is valid during the
     * call only. */
    void (*census)(void *arg, const struct pyheap_census *c);
    void *census_arg;
    /* Set if the caller stopped the target for the walk (pyheap_freeze):
     * nothing changes under the reader, so a torn GC list is neither
     * waited for (a collection in progress) nor walked again. */
    int stopped;
    /* Bytes of label texts past which the keys of big dicts (4,096
     * entries or more) add no new text (0: default 8 MiB; all label
     * texts count). A value stored under a str or int key is labelled by
     * the key's text (['key'], [12345678901]); once the label texts pass
     * this, a big dict's key whose text is not kept yet labels its value
     * [<str>] or [<int>] instead (counted in key_labels_elided). Smaller
     * dicts' keys, attribute and variable names are always kept. */
    uint64_t max_label_bytes;
} pyheap_scan_opts;

#define PYHEAP_MAX_SCAN_THREADS 64

typedef struct pyheap_scan_stats {
    uint64_t objects;        /* live objects found */
    uint64_t bytes;          /* sum of their sizes (see docs: "bytes") */
    uint64_t skipped;        /* candidates rejected: torn / freed / invalid */
    uint64_t gc_tracked;     /* objects found on the GC lists */
    uint64_t remote_reads;   /* process_vm_readv calls */
    uint64_t remote_bytes;   /* bytes copied from the target */
    double scan_ms;          /* wall time of the scan */
    double build_ms;         /* of which building the snapshot model from
                              * what the walk found */
    int truncated;           /* a limit stopped the scan early */
    unsigned threads;        /* walker threads that ran (1 when the heap
                              * was too small to share out) */
    uint64_t gc_tracked_back; /* of gc_tracked, found walking a list from
                              * its tail (several threads: a second walker
                              * starts there); not kept in snapshot files */
    uint64_t gc_mended;      /* GC list links found torn (the target
                              * changed the list under the reader) and
                              * mended by reading them afresh; not kept in
                              * snapshot files */
    uint64_t gc_again;       /* GC lists walked again, their memory read
                              * afresh, after links torn beyond mending (a
                              * collection during the scan; a pass again
                              * counts in gc_tracked only the objects it
                              * adds); not kept */
    uint64_t shared_arrays;  /* lists and tuples of 131,072 items or more
                              * whose items were offered in chunks to the
                              * other walker threads; not kept */
    uint64_t shared_chunks;  /* of their chunks (65,536 items), those
                              * another thread than the one that found the
                              * container walked; not kept */
    uint64_t key_labels_elided; /* big dicts' values labelled [<str>] or
                              * [<int>] because their key's text would have
                              * passed max_label_bytes (a truncated scan
                              * may count some of objects it cut); not
                              * kept */
    uint64_t key_labels_later; /* dict keys whose label texts were read
                              * after the walk, in address order, as
                              * their memory was not at hand when their
                              * dict was (a churned heap). Read after the
                              * census unless the scan has a `walked`
                              * callback (before it): then their reads
                              * are not in the census's statistics, nor
                              * the values labelled [<str>] for them in
                              * key_labels_elided; not kept */
    uint64_t gc_links_kept;  /* GC list nodes whose links a visit had kept
                              * (found in memory at hand while the lists'
                              * nodes lay scattered: a churned heap), so
                              * that the list's walk did not read them
                              * again; not kept */
} pyheap_scan_stats;

/* Per-scan time budget: MS milliseconds from now on, every remote read of
 * T fails, so a running scan ends quickly (its result is then incomplete:
 * check pyheap_target_budget_spent). 0 removes the budget. */
void pyheap_target_set_time_budget(pyheap_target *t, uint64_t ms);
/* Did the budget set last run out? */
int pyheap_target_budget_spent(const pyheap_target *t);

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

/* The census a walk hands to pyheap_scan_opts.census: its statistics
 * (objects, bytes, skipped, threads; scan_ms is the walk's wall time, and
 * build_ms 0) and its histogram, equal to pyheap_histogram of the snapshot
 * built next (type indices and names included; names are borrowed from the
 * census and valid during the callback only). */
const pyheap_scan_stats *pyheap_census_stats(const pyheap_census *c);
int pyheap_census_histogram(const pyheap_census *c, pyheap_sort sort,
                            pyheap_type_stat **out, size_t *n, pyheap_error *err);

/* ---- the object graph and referrers (issue 3) --------------------------- */

/* Edge flags. An edge's label is text such as "['key']", ".attr", "[3]",
 * "[*]", "(key)", ".f_locals['x']", ".__closure__", ".cell_contents"
 * (docs/graph.md lists them). */
#define PYHEAP_EDGE_WEAK     0x1u /* weak reference: never keeps its target alive */
#define PYHEAP_EDGE_INFERRED 0x2u /* found by a conservative scan of an unknown type */
#define PYHEAP_EDGE_CUT      0x4u /* into a module, type, code or function globals:
                                     kept, but analyses of ownership may cut it */

/* Forward edges of object i (CSR): for k in [0, n), target index and label. */
size_t pyheap_snapshot_nedges(const pyheap_snapshot *s, size_t i);
size_t pyheap_snapshot_edge_target(const pyheap_snapshot *s, size_t i, size_t k);
unsigned pyheap_snapshot_edge_flags(const pyheap_snapshot *s, size_t i, size_t k);
/* Writes the label into BUF (NUL-terminated, truncated to CAP-1). Returns
 * the untruncated length. */
size_t pyheap_snapshot_edge_label(const pyheap_snapshot *s, size_t i, size_t k,
                                  char *buf, size_t cap);
/* Index of the object at ADDR, or SIZE_MAX. */
size_t pyheap_snapshot_find(const pyheap_snapshot *s, uint64_t addr);

/* Roots: objects the interpreter itself holds (modules in sys.modules,
 * thread frames' locals, thread dicts, builtins, interpreter state,
 * interned strings where found). Each has a name usable as the start of a
 * Python-like path ("mypkg.cache", "<thread 1234> main().f_locals['x']"). */
size_t pyheap_snapshot_nroots(const pyheap_snapshot *s);
size_t pyheap_snapshot_root_object(const pyheap_snapshot *s, size_t r);
const char *pyheap_snapshot_root_name(const pyheap_snapshot *s, size_t r);

/* Resolve a type name: a qualified name ("__main__.Connection", "str") or a
 * short one ("Connection"). On success *types is a malloc'd array of the
 * matching type indices and *n its length: 1 when unambiguous; when a short
 * name matches several qualified names, all of them (the caller lists the
 * candidates). -1 + PYHEAP_E_NOTFOUND when nothing matches. */
int pyheap_type_lookup(const pyheap_snapshot *s, const char *name,
                       uint32_t **types, size_t *n, pyheap_error *err);

typedef struct pyheap_referrers_opts {
    unsigned depth;       /* levels of referrers (0: default 3, max 10) */
    size_t max_groups;    /* per level and parent (0: default 20) */
    size_t max_paths;     /* shortest paths shown (0: default 5) */
    /* Threads for the passes over the whole heap (0: 1; at most
     * PYHEAP_MAX_SCAN_THREADS): the selection of the objects and, per
     * level, the pass over every edge are split in contiguous slices, one
     * per thread, whose results are joined in slice order, so the report
     * is the same whatever the number. Snapshots under 1M edges use one;
     * a thread that cannot start leaves its slice to the caller. */
    unsigned threads;
} pyheap_referrers_opts;

/* One aggregated group: objects of type `type` that refer, through edges
 * labelled `via`, to the objects of the parent group (depth 1: to the
 * objects of the asked-for type). A group with type UINT32_MAX and
 * type_name "<root>" says that some of those objects are roots themselves
 * (e.g. a list that only a running frame's local holds); `via` is then the
 * root's name, count 1, bytes 0, and it has no children. */
typedef struct pyheap_referrer_group {
    unsigned depth;       /* 1 = direct referrers */
    size_t parent;        /* index of the parent group, SIZE_MAX at depth 1 */
    uint32_t type;
    const char *type_name;/* borrowed from the snapshot */
    char *via;            /* owned: "['sql']", ".conn", "[*]"... */
    unsigned flags;       /* PYHEAP_EDGE_* common to all its edges */
    uint64_t count;       /* distinct referrer objects */
    uint64_t bytes;       /* their sizes */
} pyheap_referrer_group;

typedef struct pyheap_root_path {
    char *path;           /* "myapp.server._connections[17]._conn_handler" */
    uint64_t count;       /* objects of the type reached by this path shape */
} pyheap_root_path;

typedef struct pyheap_referrers {
    uint64_t objects;     /* objects of the asked-for type(s) */
    uint64_t bytes;
    uint64_t unreachable; /* of them, reachable from no root by strong edges */
    pyheap_referrer_group *groups;  /* depth-first order: a parent precedes its children */
    size_t ngroups;
    pyheap_root_path *paths;
    size_t npaths;
} pyheap_referrers;

/* Referrers of every object whose type is in TYPES[0..ntypes). */
int pyheap_referrers_compute(const pyheap_snapshot *s, const uint32_t *types,
                             size_t ntypes, const pyheap_referrers_opts *opts,
                             pyheap_referrers **out, pyheap_error *err);
void pyheap_referrers_free(pyheap_referrers *r);


/* ---- over time: snapshot files, diffs, growth, memory stats (issue 5) ---- */

/* Identity written into a snapshot file's header (docs/snapshot-format.md). */
typedef struct pyheap_snapfile_info {
    uint32_t version;       /* format version of the file */
    int32_t pid;
    int64_t time_unix;      /* when the snapshot was taken (seconds) */
    char python[32];        /* "3.11.2" */
    char offsets_source[32];/* "dwarf", "table"... */
} pyheap_snapfile_info;

/* Write snapshot S to FD (any writable fd, written sequentially from its
 * current position) in the versioned binary format of
 * docs/snapshot-format.md. INFO gives the header's identity (version is
 * ignored). -1 with PYHEAP_E_IO on a write error. */
int pyheap_snapfile_write(const pyheap_snapshot *s, const pyheap_snapfile_info *info,
                          int fd, pyheap_error *err);
/* Parse a snapshot file held in memory (BUF, LEN bytes). Every count,
 * length and offset is checked against LEN; a truncated or corrupted file
 * fails with PYHEAP_E_CORRUPT and a message naming what is wrong. *info
 * (may be NULL) receives the header. */
int pyheap_snapfile_parse(const void *buf, size_t len, pyheap_snapshot **out,
                          pyheap_snapfile_info *info, pyheap_error *err);
/* Read and parse the file at PATH (PYHEAP_E_IO if it cannot be read). */
int pyheap_snapfile_load(const char *path, pyheap_snapshot **out,
                         pyheap_snapfile_info *info, pyheap_error *err);

/* Object diff (CPython objects do not move): objects of NEWER whose
 * (address, type) is not in OLDER, grouped by type and by "via" — the type
 * of one referrer in NEWER and the label of its edge ("<root>" and the root
 * name when a root holds it, "<none>" when nothing found refers to it). */
typedef struct pyheap_diff_via {
    uint32_t type;          /* type of the new objects (index into NEWER) */
    const char *type_name;  /* borrowed from NEWER */
    const char *via_type;   /* borrowed from NEWER, or "<root>" / "<none>" */
    char *via;              /* owned: label or root name */
    uint64_t count;
    uint64_t bytes;
} pyheap_diff_via;

typedef struct pyheap_diff_type {
    uint32_t type;
    const char *type_name;  /* borrowed from NEWER */
    uint64_t count, bytes;  /* new objects of this type */
} pyheap_diff_type;

typedef struct pyheap_diff {
    uint64_t new_objects, new_bytes;
    uint64_t gone_objects, gone_bytes; /* in OLDER, not in NEWER */
    pyheap_diff_type *types;   /* bytes desc */
    size_t ntypes;
    pyheap_diff_via *vias;     /* count desc */
    size_t nvias;
} pyheap_diff;

/* S with its objects (address, size, type), type names and stats only —
 * no graph: enough to be the OLDER side of a diff. Shares S's arrays (no
 * copy) and may outlive S: freeing S frees its graph, and its objects (20
 * bytes each) go with the last slim snapshot made of it. Thread-safe. */
int pyheap_snapshot_slim(const pyheap_snapshot *s, pyheap_snapshot **out,
                         pyheap_error *err);

/* Diff OLDER against NEWER; *out is freed with pyheap_diff_free. */
int pyheap_diff_compute(const pyheap_snapshot *older, const pyheap_snapshot *newer,
                        pyheap_diff **out, pyheap_error *err);

/* S's objects (address, size, type) packed as varints, with its type
 * names and stats: a copy that needs no part of S (about 3-4 bytes an
 * object instead of a slim view's 20), for keeping as the OLDER side of
 * a diff (pyheap_diff_packed). Thread-safe. */
typedef struct pyheap_packed pyheap_packed;
int pyheap_snapshot_pack(const pyheap_snapshot *s, pyheap_packed **out, pyheap_error *err);
size_t pyheap_packed_count(const pyheap_packed *p);
/* The memory P holds, in bytes. */
size_t pyheap_packed_bytes(const pyheap_packed *p);
const pyheap_scan_stats *pyheap_packed_stats(const pyheap_packed *p);
void pyheap_packed_free(pyheap_packed *p);
/* pyheap_diff_compute with the older side packed: the same diff. */
int pyheap_diff_packed(const pyheap_packed *older, const pyheap_snapshot *newer,
                       pyheap_diff **out, pyheap_error *err);
void pyheap_diff_free(pyheap_diff *d);

/* Growth scoring over a series of per-type histograms (docs/growth.md). */
typedef struct pyheap_growth_point {
    double t;                  /* seconds (any origin, ascending) */
    const uint64_t *count;     /* per series type, NTYPES entries */
    const uint64_t *bytes;
} pyheap_growth_point;

typedef struct pyheap_growth_row {
    size_t type;               /* series type index */
    uint64_t count, bytes;     /* at the last point */
    int64_t delta_count, delta_bytes; /* last - first */
    double per_min_bytes;      /* Theil-Sen slope of bytes, per minute */
    unsigned grew_in;          /* intervals in which bytes (or count) grew */
    unsigned intervals;        /* points - 1 */
    double score;
} pyheap_growth_row;

/* Rank types by steady growth over NPTS points of NTYPES types. Only
 * types that qualify (docs/growth.md) are returned, best first; *out is
 * malloc'd. NPTS < 2 fails with PYHEAP_E_INVAL. */
int pyheap_growth_rank(const pyheap_growth_point *pts, size_t npts, size_t ntypes,
                       pyheap_growth_row **out, size_t *n, pyheap_error *err);

/* Memory of a process from /proc/PID/smaps_rollup (bytes; -1: unknown). */
typedef struct pyheap_mem_stats {
    int64_t rss, pss, pss_anon, pss_file, anon, file, swap;
} pyheap_mem_stats;
int pyheap_mem_stats_read(pid_t pid, pyheap_mem_stats *out, pyheap_error *err);

/* pymalloc's arenas (CPython 3.11: obmalloc's static `arenas`,
 * `maxarenas`, `narenas_currently_allocated`, found in the .symtab of the
 * interpreter module or of its DWARF debug file). Bytes. */
typedef struct pyheap_pymalloc {
    uint64_t arenas;             /* allocated arenas */
    uint64_t arena_size, pool_size;
    uint64_t arena_bytes;        /* arenas * arena_size */
    uint64_t pools_used, pools_free;
    uint64_t used_bytes;         /* pools in use * pool_size */
    uint64_t free_bytes;         /* free pools * pool_size (whole free pools
                                    only; free blocks inside used pools are
                                    not counted) */
    char symbols_from[256];      /* file the symbols came from */
} pyheap_pymalloc;
/* -1 + PYHEAP_E_UNSUPPORTED (other versions) or PYHEAP_E_NOTFOUND (no
 * symbol table: a stripped build without its debug file) rather than a
 * guess. Reads T's memory: the caller serializes this with scans of T. */
int pyheap_pymalloc_read(pyheap_target *t, pyheap_pymalloc *out, pyheap_error *err);

#ifdef __cplusplus
}
#endif
#endif
