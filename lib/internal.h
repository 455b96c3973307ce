/*
 * Private interfaces shared inside libpyheap. Not installed.
 * Layering (each depends only on those above it):
 *   error.c      error helpers
 *   mem.c        remote reader (process_vm_readv, chunk cache) + in-memory images for tests
 *   proc.c       /proc/PID: maps, exe, root, start time; finding the interpreter module
 *   elf.c        ELF symbols, sections, build-id, .gnu_debuglink (libelf)
 *   dwarf.c      struct layouts from DWARF (libdw) -> struct pyheap_offsets
 *   offsets.c    choosing a source, built-in tables, validation at attach
 *   target.c     pyheap_target_open / free / accessors
 *   walk.c, decode_*.c   enumerating live objects
 *   snapshot.c   the immutable snapshot model, histogram
 */
#ifndef PYHEAP_INTERNAL_H
#define PYHEAP_INTERNAL_H

#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyheap.h"
#include "offsets.h"

#define PYHEAP_PRINTF(a, b) __attribute__((format(printf, a, b)))

/* ---- error.c ---- */

/* Fill *err (if not NULL) and return -1. The message should say what failed
 * and what to do; the caller formats it. */
int pyheap_err_set(pyheap_error *err, pyheap_errcode code, int sys_errno,
                   uint64_t addr, const char *fmt, ...) PYHEAP_PRINTF(5, 6);

/* Map an errno from a remote read or /proc access of PID to an error code
 * with a standard message naming PID, address, size and errno
 * (ESRCH -> GONE, EPERM/EACCES -> PERM naming ptrace_scope and
 * CAP_SYS_PTRACE, EFAULT/EIO -> READ). Returns -1. */
int pyheap_err_remote(pyheap_error *err, int sys_errno, pid_t pid,
                      uint64_t addr, size_t len);

/* ---- util.c ---- */

/* snprintf into BUF (LEN bytes) whose truncation is reported (false), not
 * warned about. */
bool pyheap_buf_fmt(char *buf, size_t len, const char *f, ...) PYHEAP_PRINTF(3, 4);
/* Make the array *P of *CAP elements of ELEM bytes hold at least NEED,
 * doubling (from 64). false on overflow or out of memory (*P unchanged). */
bool pyheap_grow(void **p, size_t *cap, size_t need, size_t elem);
/* malloc (ZERO: calloc) of N elements of ELEM bytes (N = 0: one) for a big
 * array written soon after: its 2 MiB-aligned interior is asked for
 * transparent huge pages (where the system allows them on request), which
 * fault 512 times less often. NULL on overflow or out of memory. */
void *pyheap_alloc_big(size_t n, size_t elem, bool zero);
/* FN on N (<= PYHEAP_MAX_SCAN_THREADS) slices: the argument of slice k is
 * ARGS + k * SIZE. Slices 1..N-1 run on threads of their own, slice 0 on
 * the caller; a slice whose thread cannot be started runs on the caller
 * afterwards (never an error). Returns when all are done. */
void pyheap_run_slices(void *(*fn)(void *), void *args, size_t size, unsigned n);
/* Stable LSD radix sort of A (N) on bits LO..63, 11 bits a pass, only
 * over the bits that are not the same in every value; TMP has room for N.
 * Each pass is cut in NSLICES (1 to PYHEAP_MAX_SCAN_THREADS) slices run on
 * as many threads: slice k's values with digit d go after those of the
 * slices before it with the same digit, so the passes are stable and the
 * result that of one thread. 0, or -1 (A unchanged) when out of memory. */
int pyheap_radix_sort(uint64_t *a, uint64_t *tmp, size_t n, unsigned lo, unsigned nslices);
/* Sort A[0..N) ascending and drop repeats; the number left. */
size_t pyheap_u64_sort_unique(uint64_t *a, size_t n);
/* qsort comparison of two uint64_t. */
int pyheap_u64_cmp(const void *a, const void *b);

/* ---- mem.c: the remote reader ---- */

typedef struct pyheap_mem pyheap_mem;

/* Reader for a live process. max_cache_bytes caps the chunk cache
 * (0: 64 MiB). */
int pyheap_mem_open(pid_t pid, uint64_t max_cache_bytes, pyheap_mem **out,
                    pyheap_error *err);
/* Reader over in-memory "images" registered with pyheap_mem_image_add: for
 * unit tests of decoders without a process. Reads outside every image fail
 * like EFAULT. */
int pyheap_mem_open_image(pyheap_mem **out, pyheap_error *err);
/* Register LEN bytes copied from DATA at remote address ADDR. */
int pyheap_mem_image_add(pyheap_mem *m, uint64_t addr, const void *data,
                         size_t len, pyheap_error *err);
void pyheap_mem_free(pyheap_mem *m);

/* Exact uncached read of LEN bytes at ADDR. 0, or -1 with err filled via
 * pyheap_err_remote (EFAULT is normal for freed memory in non-stop mode). */
int pyheap_mem_read(pyheap_mem *m, uint64_t addr, void *buf, size_t len,
                    pyheap_error *err);
/* Whether the chunk holding ADDR is in M's cache now (a read of it would
 * not go to the target); always for images. */
int pyheap_mem_cached(const pyheap_mem *m, uint64_t addr);
/* Same contract as pyheap_mem_read, served from a cache of aligned chunks
 * that are read in bulk; a chunk stays as first read until
 * pyheap_mem_cache_clear (one scan sees one copy of each chunk). */
int pyheap_mem_read_cached(pyheap_mem *m, uint64_t addr, void *buf, size_t len,
                           pyheap_error *err);
void pyheap_mem_cache_clear(pyheap_mem *m);
/* Forget every cached chunk (windows emptied), keeping the buffers: later
 * reads see the target as it is then. */
void pyheap_mem_cache_forget(pyheap_mem *m);
/* A window into one cached chunk, for a caller's inline fast path: LEN
 * bytes at remote BASE are at DATA (data NULL: empty window). */
struct pyheap_mem_window {
    uint64_t base;
    uint64_t len;
    const unsigned char *data;
};
/* Point WIN at the cached chunk holding ADDR (reading it if needed): 0, or
 * -1 when that chunk is not wholly readable (use pyheap_mem_read_cached).
 * WIN must be one of the NWIN windows at WINS: M remembers the array and
 * empties all of them whenever chunk buffers are evicted or freed, so reads
 * from a non-empty window are always valid, until pyheap_mem_window_drop. */
int pyheap_mem_window_get(pyheap_mem *m, uint64_t addr, struct pyheap_mem_window *wins,
                          size_t nwin, struct pyheap_mem_window *win);
void pyheap_mem_window_drop(pyheap_mem *m);
/* Cap the chunk cache at CAP bytes from now on (0: the cap given to
 * pyheap_mem_open; at least 1 MiB). */
void pyheap_mem_set_cache_cap(pyheap_mem *m, uint64_t cap);
/* Time budget: after DEADLINE_NS (CLOCK_MONOTONIC, in ns; 0 = none) every
 * read fails (PYHEAP_E_READ, ETIMEDOUT), so any scan ends quickly; whether
 * that happened is kept until the next call. */
void pyheap_mem_set_deadline(pyheap_mem *m, uint64_t deadline_ns);
int pyheap_mem_deadline_hit(const pyheap_mem *m);
/* The deadline set on M (0: none). */
uint64_t pyheap_mem_deadline(const pyheap_mem *m);
/* M's deadline counts as hit if OTHER's was (a second reader of the same
 * scan, e.g. another walker thread's). */
void pyheap_mem_deadline_merge(pyheap_mem *m, const pyheap_mem *other);
/* Counters since open. */
void pyheap_mem_counters(const pyheap_mem *m, uint64_t *reads, uint64_t *bytes);
/* Read a NUL-terminated string of at most MAX-1 bytes into BUF (always
 * terminated). Returns its length or -1. */
ssize_t pyheap_mem_read_cstr(pyheap_mem *m, uint64_t addr, char *buf,
                             size_t max, pyheap_error *err);

/* ---- the addresses of well-known objects in the interpreter module ---- */

/* Each is the runtime address (load bias applied) of the exported symbol,
 * or 0 when the symbol is absent. Resolved at attach from .dynsym/.symtab. */
#define PYHEAP_WELL_KNOWN_TYPES(X)          \
    X(type, "PyType_Type")                  \
    X(object, "PyBaseObject_Type")          \
    X(tuple, "PyTuple_Type")                \
    X(list, "PyList_Type")                  \
    X(dict, "PyDict_Type")                  \
    X(set, "PySet_Type")                    \
    X(frozenset, "PyFrozenSet_Type")        \
    X(str, "PyUnicode_Type")                \
    X(bytes, "PyBytes_Type")                \
    X(bytearray, "PyByteArray_Type")        \
    X(int_, "PyLong_Type")                  \
    X(bool_, "PyBool_Type")                 \
    X(float_, "PyFloat_Type")               \
    X(complex, "PyComplex_Type")            \
    X(module, "PyModule_Type")              \
    X(function, "PyFunction_Type")          \
    X(code, "PyCode_Type")                  \
    X(cell, "PyCell_Type")                  \
    X(method, "PyMethod_Type")              \
    X(frame, "PyFrame_Type")                \
    X(gen, "PyGen_Type")                    \
    X(coro, "PyCoro_Type")                  \
    X(async_gen, "PyAsyncGen_Type")         \
    X(none_type, "_PyNone_Type")            \
    X(classmethod, "PyClassMethod_Type")    \
    X(staticmethod, "PyStaticMethod_Type")  \
    X(property, "PyProperty_Type")          \
    X(weakref, "_PyWeakref_RefType")        \
    X(memoryview, "PyMemoryView_Type")      \
    X(range, "PyRange_Type")                \
    X(slice, "PySlice_Type")                \
    X(cfunction, "PyCFunction_Type")        \
    X(cmethod, "PyCMethod_Type")            \
    X(method_descr, "PyMethodDescr_Type")   \
    X(member_descr, "PyMemberDescr_Type")   \
    X(getset_descr, "PyGetSetDescr_Type")   \
    X(wrapper_descr, "PyWrapperDescr_Type") \
    X(classmethod_descr, "PyClassMethodDescr_Type") \
    X(dictproxy, "PyDictProxy_Type")

struct pyheap_well_known {
#define PYHEAP_WK_FIELD(field, sym) uint64_t field;
    PYHEAP_WELL_KNOWN_TYPES(PYHEAP_WK_FIELD)
#undef PYHEAP_WK_FIELD
};

/* Version-dependent constants that are not struct offsets (flag bits, the
 * managed-dict pre-header, unicode state bits). Filled at attach from the
 * version. */
struct pyheap_consts {
    uint64_t tpflags_heaptype;        /* Py_TPFLAGS_HEAPTYPE (1<<9) */
    uint64_t tpflags_have_gc;         /* Py_TPFLAGS_HAVE_GC (1<<14) */
    uint64_t tpflags_managed_dict;    /* 3.11: 1<<4; 0 if none */
    uint64_t tpflags_long_subclass;   /* 1<<24 */
    uint64_t tpflags_list_subclass;   /* 1<<25 */
    uint64_t tpflags_tuple_subclass;  /* 1<<26 */
    uint64_t tpflags_bytes_subclass;  /* 1<<27 */
    uint64_t tpflags_unicode_subclass;/* 1<<28 */
    uint64_t tpflags_dict_subclass;   /* 1<<29 */
    uint64_t tpflags_base_exc_subclass;/* 1<<30 */
    uint64_t tpflags_type_subclass;   /* 1<<31 */
    /* 3.11: managed dict pointer at obj - 3 words, values at obj - 4 words. */
    int64_t managed_dict_offset;      /* bytes relative to the object, e.g. -24 */
    int64_t managed_values_offset;    /* e.g. -32 */
    size_t preheader_managed;         /* bytes before the GC head: 16 in 3.11 */
    /* PyASCIIObject.state bit layout */
    /* kind = (state >> kind_shift) & kind_mask; compact/ascii are bit numbers */
    unsigned unicode_kind_shift, unicode_kind_mask;
    unsigned unicode_compact_bit, unicode_ascii_bit;
    /* dk_kind values */
    unsigned dict_kind_general, dict_kind_unicode, dict_kind_split;

    /* ---- added for 3.12+ (issue 4); 3.11 values in brackets ---- */
    uint64_t tpflags_static_builtin;  /* _Py_TPFLAGS_STATIC_BUILTIN 1<<1 (3.12+) [0] */
    uint64_t tpflags_inline_values;   /* Py_TPFLAGS_INLINE_VALUES 1<<2 (3.13+) [0] */
    uint64_t tpflags_managed_weakref; /* Py_TPFLAGS_MANAGED_WEAKREF 1<<3 (3.12+) [0] */
    /* Any of these flags puts the 2-word pre-header (preheader_managed
     * bytes) before the GC head: MANAGED_DICT|MANAGED_WEAKREF (3.12+)
     * [MANAGED_DICT]. */
    uint64_t tpflags_preheader;
    /* Weakref list of MANAGED_WEAKREF objects, bytes relative to the
     * object: -32 (3.12+) [0 = none]. In 3.13+ managed_values_offset is 0
     * (no values pointer): INLINE_VALUES types keep a PyDictValues at
     * obj + tp_basicsize, keys in the type's ht_cached_keys. */
    int64_t managed_weakref_offset;
    bool inline_values;               /* 3.13+ */
    /* Static builtin types keep tp_dict/tp_subclasses/tp_weaklist in
     * interp->types.builtins.initialized[] (tp_subclasses holds an index);
     * 3.12+ [false]. */
    bool static_types_per_interp;

    /* Reference counts (word 0 of every object).
     * refcnt_split (3.14+): word 0 = uint32 ob_refcnt | uint16 ob_overflow
     * << 32 | uint16 ob_flags << 48 (GIL build); the count is the low 32
     * bits, ob_overflow must be 0, ob_flags & ~ob_flags_valid must be 0.
     * Immortal iff count >= refcnt_immortal_min (3.14+: 1<<31 on the low
     * 32 bits; 3.13: == 0xFFFFFFFF; 3.12: >= 0x3FFFFFFF; [0 = none]). */
    bool refcnt_split;
    uint64_t refcnt_immortal_min;
    uint64_t ob_flags_valid;          /* 3.14: 0x5, 3.15: 0x7 [0] */

    /* PyASCIIObject.state: mask before use (upper 24 bits are not zeroed
     * in 3.12+): 0xff; ready bit 7 (3.11) or UINT_MAX (none, 3.12+, every
     * str is ready); statically_allocated bit 7 (3.12+) [UINT_MAX]. */
    unsigned unicode_state_mask;
    unsigned unicode_ready_bit;
    unsigned unicode_static_bit;

    /* int: 3.12+ lv_tag encoding (ndigits = lv_tag >> long_ndigits_shift,
     * sign = lv_tag & long_sign_mask: 0 positive, 1 zero, 2 negative);
     * [false: ob_size is the signed digit count]. */
    bool long_lv_tag;
    unsigned long_ndigits_shift, long_sign_mask;

    /* _PyInterpreterFrame.owner values; -1 where the version has none.
     * Frames owned by CSTACK / INTERPRETER are entry/sentinel frames with
     * no code object: skip them.
     * 3.11: 0 thread, 1 generator, 2 frame object, 3 cstack
     * 3.13: same; 3.14: 3 interpreter, 4 cstack; 3.15: 3 interpreter. */
    int frame_owned_by_thread, frame_owned_by_generator;
    int frame_owned_by_frame_object, frame_owned_by_cstack;
    int frame_owned_by_interpreter;
    /* gi_frame_state values (int8); INT_MIN where absent.
     * 3.11: created -2, suspended -1, executing 0, completed 1, cleared 4
     * 3.13/3.14: created -3, suspended -2, executing 0, completed 1, cleared 4
     * 3.15: created 0, suspended 1, executing 4, completed none, cleared 5.
     * A generator's embedded frame is valid iff state < frame_state_cleared
     * (and != completed where that exists). */
    int frame_state_created, frame_state_suspended, frame_state_executing;
    int frame_state_completed, frame_state_cleared;

    /* _PyStackRef (3.14+): frame f_executable, f_funcobj and localsplus
     * slots are tagged: bits 0 or stackref_null_bits = no object; (bits &
     * stackref_tag_mask) == stackref_int_tag: a tagged int, not an object;
     * == 2: invalid (3.15 debug); else the object is bits & ~tag_mask.
     * [false: plain PyObject*]. */
    bool stackref_tagged;
    uint64_t stackref_tag_mask, stackref_int_tag, stackref_null_bits;

    /* GC: number of generation lists before the permanent one (3). The
     * 3.14.0-3.14.4 incremental GC (young + old[2]) keeps the same list
     * heads at the same bytes; gc_incremental says that layout was seen
     * (by patch release or DWARF members). Mask the low 2 bits of both
     * _gc_next and _gc_prev. */
    unsigned gc_generations;
    bool gc_incremental;
};

/* ---- the target (target.c; filled by proc/elf/dwarf/offsets) ---- */

struct pyheap_target {
    pid_t pid;
    unsigned long long start_time;   /* /proc/PID/stat field 22 */
    char exe[PATH_MAX];              /* readlink /proc/PID/exe at open */
    char module[PATH_MAX];           /* interpreter module, target's view */
    uint64_t module_bias;            /* load bias of that module */
    uint64_t runtime_addr;           /* &_PyRuntime in the target */
    bool runtime_by_cookie;          /* found by scanning for "xdebugpy" */
    int major, minor, micro;
    char version[32];                /* "3.11.2" */
    uint32_t py_version;             /* Py_Version (PY_VERSION_HEX); 0 unknown */
    pyheap_offsets_source source;
    char source_detail[PATH_MAX + 64];
    struct pyheap_offsets off;
    struct pyheap_consts k;
    struct pyheap_well_known wk;
    pyheap_mem *mem;                 /* owned */
    /* The interpreter module's file mappings at open (nimage of them): its
     * static storage, never freed while the target lives. */
#define PYHEAP_IMAGE_MAX 8
    struct { uint64_t start, end; } image[PYHEAP_IMAGE_MAX];
    size_t nimage;
};

/* Set bits of X. Without -mpopcnt __builtin_popcountll is a libgcc call;
 * this is a few ALU ops (and vectorises in loops). */
static inline unsigned pyheap_popcount64(uint64_t x)
{
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
    return (unsigned)((x * 0x0101010101010101ULL) >> 56);
}

/* Whether [ADDR, ADDR + LEN) lies in one of T's image mappings. */
static inline bool pyheap_target_in_image(const pyheap_target *t, uint64_t addr, uint64_t len)
{
    for (size_t i = 0; i < t->nimage; i++)
        if (addr >= t->image[i].start && addr < t->image[i].end &&
            len <= t->image[i].end - addr)
            return true;
    return false;
}

/* ---- offsets.c ---- */

/* Fill t->k for t->major/minor. -1 + PYHEAP_E_UNSUPPORTED if unknown. */
int pyheap_consts_init(pyheap_target *t, pyheap_error *err);
/* Check t->off against the live target: PyType_Type's type is itself,
 * tp_name of well-known types reads back "type", "str", "dict", the runtime
 * has an interpreter with a thread state, GC list heads are self-consistent.
 * -1 + PYHEAP_E_OFFSETS naming the failed check. */
int pyheap_offsets_validate(pyheap_target *t, pyheap_error *err);

/* ---- target.c ---- */

/* Whether the walker (walk.c, decode_*.c) handles T's version: 3.11 and
 * 3.13-3.15, the versions tested end to end (not 3.12). pyheap_walk
 * refuses a target with PYHEAP_E_UNSUPPORTED when this is false. */
bool pyheap_target_walk_supported(const pyheap_target *t);

/* ---- walk.c ---- */

/* The implementation behind pyheap_snapshot_take. */
int pyheap_walk(pyheap_target *t, const pyheap_scan_opts *opts,
                pyheap_snapshot **out, pyheap_error *err);

/* ---- graph.c ---- */

/* Snapshots with fewer edges than this are analysed on one thread,
 * whatever pyheap_referrers_opts.threads says (default 1M). For tests:
 * 0 splits the passes of any snapshot, and sorts of 256 values or more
 * (64k otherwise). Not thread-safe: set it before computing. */
void pyheap_graph_set_min_parallel_edges(size_t edges);

#endif
