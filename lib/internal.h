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
/* Same contract, served from a cache of aligned chunks that are read in
 * bulk; a chunk stays as first read until pyheap_mem_cache_clear (one scan
 * sees one copy of each chunk). */
int pyheap_mem_read_cached(pyheap_mem *m, uint64_t addr, void *buf, size_t len,
                           pyheap_error *err);
void pyheap_mem_cache_clear(pyheap_mem *m);
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
};

/* ---- the target (target.c; filled by proc/elf/dwarf/offsets) ---- */

struct pyheap_target {
    pid_t pid;
    unsigned long long start_time;   /* /proc/PID/stat field 22 */
    char exe[PATH_MAX];              /* readlink /proc/PID/exe at open */
    char module[PATH_MAX];           /* interpreter module, target's view */
    uint64_t module_bias;            /* load bias of that module */
    uint64_t runtime_addr;           /* &_PyRuntime in the target */
    int major, minor, micro;
    char version[32];                /* "3.11.2" */
    pyheap_offsets_source source;
    char source_detail[PATH_MAX + 64];
    struct pyheap_offsets off;
    struct pyheap_consts k;
    struct pyheap_well_known wk;
    pyheap_mem *mem;                 /* owned */
};

/* ---- offsets.c ---- */

/* Fill t->k for t->major/minor. -1 + PYHEAP_E_UNSUPPORTED if unknown. */
int pyheap_consts_init(pyheap_target *t, pyheap_error *err);
/* Check t->off against the live target: PyType_Type's type is itself,
 * tp_name of well-known types reads back "type", "str", "dict", the runtime
 * has an interpreter with a thread state, GC list heads are self-consistent.
 * -1 + PYHEAP_E_OFFSETS naming the failed check. */
int pyheap_offsets_validate(pyheap_target *t, pyheap_error *err);

/* ---- walk.c ---- */

/* The implementation behind pyheap_snapshot_take. */
int pyheap_walk(pyheap_target *t, const pyheap_scan_opts *opts,
                pyheap_snapshot **out, pyheap_error *err);

#endif
