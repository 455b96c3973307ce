/* Offsets: per-version constants, choosing a source (debug_offsets, DWARF,
 * built-in table), resolving well-known type symbols, and validating the
 * chosen offsets against the live target once at attach.
 *
 * Adding a CPython version is one entry in `versions` (its table from
 * tools/gen-offsets, its constants, the fields DWARF may lack). */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "debug_offsets.h"
#include "dwarf_layout.h"
#include "offsets_source.h"

struct version_entry {
    int major, minor;
    const struct pyheap_offsets_table *table;
    bool has_debug_offsets;           /* _Py_DebugOffsets in the runtime */
    void (*consts)(struct pyheap_consts *k);
    /* Fields a DWARF source may lack (NULL-terminated); all others valid
     * for the version (offsets_fields.h ranges) are required, which also
     * rejects DWARF of another version's shape. */
    const char *const *optional;
};

/* Constants of 3.11, checked against /usr/include/python3.11:
 * object.h (Py_TPFLAGS_*), internal/pycore_object.h (managed dict at
 * obj - 3 words, values at obj - 4 words, _PyType_PreHeaderSize),
 * cpython/unicodeobject.h (state: interned:2, kind:3, compact:1, ascii:1,
 * ready:1, allocated from bit 0), internal/pycore_dict.h (DictKeysKind),
 * internal/pycore_frame.h (owner, frame states). */
static void consts_3_11(struct pyheap_consts *k)
{
    memset(k, 0, sizeof *k);
    k->tpflags_heaptype = 1ull << 9;
    k->tpflags_have_gc = 1ull << 14;
    k->tpflags_managed_dict = 1ull << 4;
    k->tpflags_long_subclass = 1ull << 24;
    k->tpflags_list_subclass = 1ull << 25;
    k->tpflags_tuple_subclass = 1ull << 26;
    k->tpflags_bytes_subclass = 1ull << 27;
    k->tpflags_unicode_subclass = 1ull << 28;
    k->tpflags_dict_subclass = 1ull << 29;
    k->tpflags_base_exc_subclass = 1ull << 30;
    k->tpflags_type_subclass = 1ull << 31;
    k->managed_dict_offset = -24;
    k->managed_values_offset = -32;
    k->preheader_managed = 16;
    k->unicode_kind_shift = 2;
    k->unicode_kind_mask = 7;
    k->unicode_compact_bit = 5;
    k->unicode_ascii_bit = 6;
    k->dict_kind_general = 0;
    k->dict_kind_unicode = 1;
    k->dict_kind_split = 2;
    /* added fields */
    k->tpflags_preheader = k->tpflags_managed_dict;
    k->unicode_state_mask = 0xff;
    k->unicode_ready_bit = 7;
    k->unicode_static_bit = UINT_MAX;
    k->frame_owned_by_thread = 0;
    k->frame_owned_by_generator = 1;
    k->frame_owned_by_frame_object = 2;
    k->frame_owned_by_cstack = 3;
    k->frame_owned_by_interpreter = -1;
    k->frame_state_created = -2;
    k->frame_state_suspended = -1;
    k->frame_state_executing = 0;
    k->frame_state_completed = 1;
    k->frame_state_cleared = 4;
    k->gc_generations = 3;
}

/* What 3.13, 3.14 and 3.15 share (sid headers: object.h Py_TPFLAGS_*,
 * internal/pycore_object.h MANAGED_DICT_OFFSET / MANAGED_WEAKREF_OFFSET
 * and _PyType_PreHeaderSize, cpython/unicodeobject.h state bits,
 * internal/pycore_long.h lv_tag, internal/pycore_dict.h DictKeysKind). */
static void consts_3_13_common(struct pyheap_consts *k)
{
    consts_3_11(k);
    k->tpflags_static_builtin = 1ull << 1;
    k->tpflags_inline_values = 1ull << 2;
    k->tpflags_managed_weakref = 1ull << 3;
    k->tpflags_preheader = k->tpflags_managed_dict | k->tpflags_managed_weakref;
    k->managed_values_offset = 0; /* inline values at obj + tp_basicsize */
    k->managed_weakref_offset = -32;
    k->inline_values = true;
    k->static_types_per_interp = true;
    k->unicode_ready_bit = UINT_MAX;
    k->unicode_static_bit = 7;
    k->long_lv_tag = true;
    k->long_ndigits_shift = 3;
    k->long_sign_mask = 3;
}

/* 3.13: immortal refcount is exactly UINT_MAX (object.h); frame owners and
 * states from internal/pycore_frame.h. */
static void consts_3_13(struct pyheap_consts *k)
{
    consts_3_13_common(k);
    k->refcnt_immortal_min = 0xffffffffu;
    k->frame_state_created = -3;
    k->frame_state_suspended = -2;
    k->frame_state_executing = 0;
    k->frame_state_completed = 1;
    k->frame_state_cleared = 4;
}

/* 3.14: object.h splits word 0 (ob_refcnt:32, ob_overflow:16, ob_flags:16;
 * flags IMMORTAL 1, STATICALLY_ALLOCATED 4), refcount.h immortal minimum
 * 1<<31; internal/pycore_interpframe_structs.h owners (3 interpreter,
 * 4 cstack); internal/pycore_stackref.h tags. */
static void consts_3_14(struct pyheap_consts *k)
{
    consts_3_13(k);
    k->refcnt_split = true;
    k->refcnt_immortal_min = 1ull << 31;
    k->ob_flags_valid = 0x5;
    k->frame_owned_by_interpreter = 3;
    k->frame_owned_by_cstack = 4;
    k->stackref_tagged = true;
    k->stackref_tag_mask = 3;
    k->stackref_int_tag = 3;
    k->stackref_null_bits = 1;
}

/* 3.15: ob_flags adds LEGACY_ABI_CHECK 2; no cstack owner; frame states
 * renumbered (internal/pycore_frame.h: CREATED 0, SUSPENDED 1, ...,
 * EXECUTING 4, CLEARED 5, no COMPLETED). */
static void consts_3_15(struct pyheap_consts *k)
{
    consts_3_14(k);
    k->ob_flags_valid = 0x7;
    k->frame_owned_by_cstack = -1;
    k->frame_state_created = 0;
    k->frame_state_suspended = 1;
    k->frame_state_executing = 4;
    k->frame_state_completed = INT_MIN;
    k->frame_state_cleared = 5;
}

static const char *const optional_3_11[] = {NULL};
/* gcstate_young/old exist only in 3.14.0-3.14.4 (generations otherwise). */
static const char *const optional_3_14[] = {"gcstate_young", "gcstate_old",
                                            "gcstate_generations", NULL};

static const struct version_entry versions[] = {
    {3, 11, &pyheap_table_py3_11, false, consts_3_11, optional_3_11},
    {3, 13, &pyheap_table_py3_13, true, consts_3_13, optional_3_11},
    {3, 14, &pyheap_table_py3_14, true, consts_3_14, optional_3_14},
    {3, 15, &pyheap_table_py3_15, true, consts_3_15, optional_3_11},
};
#define NVERSIONS (sizeof versions / sizeof versions[0])

static const struct version_entry *version_find(int major, int minor)
{
    for (size_t i = 0; i < NVERSIONS; i++)
        if (versions[i].major == major && versions[i].minor == minor)
            return &versions[i];
    return NULL;
}

bool pyheap_version_supported(int major, int minor)
{
    return version_find(major, minor) != NULL;
}

const char *pyheap_versions_supported(char *buf, size_t len)
{
    size_t used = 0;
    if (len == 0)
        return buf;
    buf[0] = '\0';
    for (size_t i = 0; i < NVERSIONS; i++) {
        int n = snprintf(buf + used, len - used, "%s%d.%d", i ? ", " : "",
                         versions[i].major, versions[i].minor);
        if (n < 0 || (size_t)n >= len - used)
            break;
        used += (size_t)n;
    }
    return buf;
}

const struct pyheap_offsets_table *pyheap_offsets_table_for(int major, int minor)
{
    const struct version_entry *v = version_find(major, minor);
    return v ? v->table : NULL;
}

int pyheap_consts_init(pyheap_target *t, pyheap_error *err)
{
    const struct version_entry *v = version_find(t->major, t->minor);
    if (!v)
    {
        char sup[64];
        return pyheap_err_set(err, PYHEAP_E_UNSUPPORTED, 0, 0,
                              "Python %d.%d is not supported: pyheap has no offsets or "
                              "constants for it; it supports %s",
                              t->major, t->minor,
                              pyheap_versions_supported(sup, sizeof sup));
    }
    v->consts(&t->k);
    return 0;
}

/* ---- well-known types ---- */

int pyheap_wk_resolve(pyheap_target *t, const struct pyheap_module *mod,
                      pyheap_error *err)
{
    static const char *const names[] = {
#define PYHEAP_WK_NAME(field, sym) sym,
        PYHEAP_WELL_KNOWN_TYPES(PYHEAP_WK_NAME)
#undef PYHEAP_WK_NAME
    };
    enum { NWK = sizeof names / sizeof names[0] };
    uint64_t values[NWK] = {0};
    pyheap_elf_symbols(mod->elf, names, NWK, values);
    uint64_t *dst = (uint64_t *)&t->wk;
    _Static_assert(sizeof(struct pyheap_well_known) == NWK * sizeof(uint64_t),
                   "pyheap_well_known is one uint64_t per symbol");
    for (size_t i = 0; i < NWK; i++)
        dst[i] = values[i] ? values[i] + mod->bias : 0;
    const char *need[] = {"PyType_Type", "PyUnicode_Type", "PyDict_Type", "PyLong_Type"};
    const uint64_t have[] = {t->wk.type, t->wk.str, t->wk.dict, t->wk.int_};
    for (size_t i = 0; i < 4; i++)
        if (!have[i])
            return pyheap_err_set(err, PYHEAP_E_NOTPYTHON, 0, 0,
                                  "%s defines _PyRuntime but not %s: not a "
                                  "CPython build pyheap understands", mod->path,
                                  need[i]);
    return 0;
}

/* ---- shape of DWARF offsets ---- */

static bool is_optional(const struct version_entry *v, const char *field)
{
    for (const char *const *o = v->optional; *o; o++)
        if (strcmp(*o, field) == 0)
            return true;
    return false;
}

int pyheap_offsets_check_shape(int major, int minor,
                               const struct pyheap_offsets *off, char *why,
                               size_t why_len)
{
    const struct version_entry *v = version_find(major, minor);
    if (!v) {
        pyheap_buf_fmt(why, why_len, "no version entry for %d.%d", major, minor);
        return -1;
    }
    if (off->ob_type != 8 || off->pyobject != 16 || off->gc_head != 16 ||
        off->pyvarobject != 24) {
        pyheap_buf_fmt(why, why_len, "the object header is not the 64-bit %d.%d one "
                 "(ob_type at %zd, sizeof(PyObject) %zd)", major, minor,
                 (ssize_t)off->ob_type, (ssize_t)off->pyobject);
        return -1;
    }
    char missing[256] = "";
    size_t nmissing = 0, used = 0;
    for (size_t i = 0; i < pyheap_dwarf_nfields(); i++) {
        size_t slotoff = pyheap_dwarf_field_slot(i);
        const size_t *slot = (const size_t *)((const char *)off + slotoff);
        const char *name = pyheap_dwarf_field_name(i);
        unsigned lo, hi;
        pyheap_dwarf_field_range(i, &lo, &hi);
        /* Patch-range members (lo/hi with a micro) are never required. */
        if (*slot != PYHEAP_OFF_ABSENT || lo >= 1000 || hi >= 1000 ||
            !pyheap_offsets_range_has(lo, hi, major, minor, -1) ||
            is_optional(v, name))
            continue;
        nmissing++;
        int n = snprintf(missing + used, sizeof missing - used, "%s%s",
                         used ? ", " : "", name);
        if (n > 0 && (size_t)n < sizeof missing - used)
            used += (size_t)n;
    }
    if (v->optional == optional_3_14 && off->gcstate_generations == PYHEAP_OFF_ABSENT &&
        off->gcstate_young == PYHEAP_OFF_ABSENT) {
        nmissing++;
        snprintf(missing + used, sizeof missing - used, "%sgcstate_generations "
                 "(or young/old)", used ? ", " : "");
    }
    if (nmissing) {
        pyheap_buf_fmt(why, why_len, "it is not the %d.%d layout: %zu required "
                 "field(s) missing (%s)", major, minor, nmissing, missing);
        return -1;
    }
    return 0;
}

/* ---- validation against the live target ---- */

static int rd64(pyheap_target *t, uint64_t addr, uint64_t *v, pyheap_error *err)
{
    return pyheap_mem_read(t->mem, addr, v, sizeof *v, err);
}

/* Failed check: set the OFFSETS error (unless the read error says the
 * process is gone or we may not read it, which is the better answer). */
static int check_failed(pyheap_target *t, const pyheap_error *rerr,
                        pyheap_error *err, const char *fmt, ...)
    PYHEAP_PRINTF(4, 5);
static int check_failed(pyheap_target *t, const pyheap_error *rerr,
                        pyheap_error *err, const char *fmt, ...)
{
    if (rerr && (rerr->code == PYHEAP_E_GONE || rerr->code == PYHEAP_E_PERM)) {
        if (err)
            *err = *rerr;
        return -1;
    }
    char what[320];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    const char *todo = t->source == PYHEAP_OFFSETS_TABLE
        ? "this build's layout differs from the built-in table; install its "
          "debug symbols (e.g. python3.11-dbg) so pyheap can read the layout from DWARF"
        : "the DWARF does not describe the running binary; remove the stale "
          "debug file or force the built-in table";
    return pyheap_err_set(err, PYHEAP_E_OFFSETS, rerr ? rerr->sys_errno : 0,
                          rerr ? rerr->addr : 0,
                          "offsets from %s failed validation: %s%s%s; %s",
                          t->source_detail, what, rerr ? ": " : "",
                          rerr ? rerr->msg : "", todo);
}

static int read_name(pyheap_target *t, uint64_t type_addr, char *buf, size_t len,
                     pyheap_error *err)
{
    uint64_t p;
    if (rd64(t, type_addr + t->off.tp_name, &p, err) != 0)
        return -1;
    if (p == 0)
        return pyheap_err_set(err, PYHEAP_E_READ, 0, type_addr, "tp_name is NULL");
    return pyheap_mem_read_cstr(t->mem, p, buf, len, err) < 0 ? -1 : 0;
}

/* A type object: its type is `type` or a metaclass whose type is `type`
 * (a few levels), and its tp_name reads as printable text. */
static bool is_type_object(pyheap_target *t, uint64_t addr)
{
    if (addr == 0 || (addr & 7))
        return false;
    uint64_t cur = addr;
    bool ok = false;
    for (int depth = 0; depth < 4; depth++) {
        uint64_t mt;
        if (rd64(t, cur + t->off.ob_type, &mt, NULL) != 0)
            return false;
        if (mt == t->wk.type) {
            ok = true;
            break;
        }
        if (mt == 0 || (mt & 7))
            return false;
        cur = mt;
    }
    if (!ok)
        return false;
    char name[128];
    if (read_name(t, addr, name, sizeof name, NULL) != 0 || name[0] == '\0')
        return false;
    for (const char *c = name; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
            return false;
    return true;
}

/* The checks that read state the running target changes (thread and GC
 * lists): one attempt. */
static int validate_dynamic(pyheap_target *t, const struct version_entry *v,
                            pyheap_error *err)
{
    (void)v;
    pyheap_error r = {0};
    const struct pyheap_offsets *o = &t->off;
    uint64_t interp;
    if (rd64(t, t->runtime_addr + o->runtime_interpreters_head, &interp, &r) != 0)
        return check_failed(t, &r, err, "reading _PyRuntime.interpreters.head");
    if (interp == 0)
        /* Types checked out: the runtime is just not running Python. */
        return pyheap_err_set(err, PYHEAP_E_NOTPYTHON, 0, t->runtime_addr,
                              "process %d has no initialized Python interpreter "
                              "(_PyRuntime.interpreters.head is NULL): it is "
                              "starting, finalizing, or embeds libpython without "
                              "running it; try again once it runs Python code",
                              (int)t->pid);
    if (interp & 7)
        return check_failed(t, NULL, err, "_PyRuntime.interpreters.head is 0x%llx, "
                            "not an interpreter", (unsigned long long)interp);
    uint64_t ts;
    if (rd64(t, interp + o->interp_threads_head, &ts, &r) != 0)
        return check_failed(t, &r, err, "reading the interpreter's threads.head");
    if (ts == 0 || (ts & 7))
        return check_failed(t, NULL, err, "the interpreter's threads.head is "
                            "0x%llx, not a thread state", (unsigned long long)ts);
    uint64_t back;
    if (rd64(t, ts + o->tstate_interp, &back, &r) != 0)
        return check_failed(t, &r, err, "reading the thread state's interp");
    if (back != interp)
        return check_failed(t, NULL, err, "the first thread state's interp is "
                            "0x%llx, not its interpreter 0x%llx",
                            (unsigned long long)back, (unsigned long long)interp);

    if (o->interp_runtime != PYHEAP_OFF_ABSENT) {
        if (rd64(t, interp + o->interp_runtime, &back, &r) != 0)
            return check_failed(t, &r, err, "reading the interpreter's runtime");
        if (back != t->runtime_addr)
            return check_failed(t, NULL, err, "the interpreter's runtime is 0x%llx, "
                                "not &_PyRuntime 0x%llx", (unsigned long long)back,
                                (unsigned long long)t->runtime_addr);
    }

    uint64_t gcstate = interp + o->interp_gc;
    unsigned ngen = t->k.gc_generations;
    for (unsigned g = 0; g <= ngen; g++) {
        uint64_t head = g < ngen
            ? gcstate + o->gcstate_generations + g * o->gc_generation
            : gcstate + o->gcstate_permanent_generation;
        head += o->gc_generation_head;
        uint64_t next;
        if (rd64(t, head + o->gc_next, &next, &r) != 0)
            return check_failed(t, &r, err, "reading GC generation %u", g);
        next &= ~(uint64_t)3;
        if (next == head)
            continue;
        uint64_t type;
        if (next == 0 ||
            rd64(t, next + o->gc_head + o->ob_type, &type, &r) != 0 ||
            !is_type_object(t, type))
            return check_failed(t, NULL, err, "the first object of GC generation "
                                "%u (head 0x%llx, next 0x%llx) has no valid type",
                                g, (unsigned long long)head,
                                (unsigned long long)next);
    }
    return 0;
}

int pyheap_offsets_validate(pyheap_target *t, pyheap_error *err)
{
    const struct version_entry *v = version_find(t->major, t->minor);
    if (!v)
        return pyheap_err_set(err, PYHEAP_E_UNSUPPORTED, 0, 0,
                              "Python %s is not supported", t->version);
    pyheap_error r = {0};
    const struct pyheap_offsets *o = &t->off;

    uint64_t tt;
    if (rd64(t, t->wk.type + o->ob_type, &tt, &r) != 0)
        return check_failed(t, &r, err, "reading PyType_Type.ob_type");
    if (tt != t->wk.type)
        return check_failed(t, NULL, err, "PyType_Type.ob_type is 0x%llx, not "
                            "&PyType_Type 0x%llx", (unsigned long long)tt,
                            (unsigned long long)t->wk.type);

    /* PyType_Type is statically allocated and immortal: its refcount word
     * has the version's shape (3.14+: split word with flags). */
    uint64_t rcw;
    if (rd64(t, t->wk.type + o->ob_refcnt, &rcw, &r) != 0)
        return check_failed(t, &r, err, "reading PyType_Type.ob_refcnt");
    if (t->k.refcnt_split) {
        uint64_t flags = rcw >> 48, overflow = (rcw >> 32) & 0xffff;
        if ((rcw & 0xffffffffu) < t->k.refcnt_immortal_min || overflow != 0 ||
            (flags & ~t->k.ob_flags_valid) != 0 || !(flags & 1))
            return check_failed(t, NULL, err, "PyType_Type's refcount word is "
                                "0x%llx, not an immortal static object's "
                                "(refcnt >= 2^31, no overflow, flags within 0x%llx)",
                                (unsigned long long)rcw,
                                (unsigned long long)t->k.ob_flags_valid);
    } else if (t->k.refcnt_immortal_min) {
        if (rcw < t->k.refcnt_immortal_min || rcw > 0xffffffffu)
            return check_failed(t, NULL, err, "PyType_Type's refcount is 0x%llx, "
                                "not immortal", (unsigned long long)rcw);
    } else if (rcw == 0 || rcw > (1ull << 40)) {
        return check_failed(t, NULL, err, "PyType_Type's refcount is 0x%llx, "
                            "implausible", (unsigned long long)rcw);
    }

    const struct { uint64_t addr; const char *name; } names[] = {
        {t->wk.type, "type"}, {t->wk.str, "str"}, {t->wk.dict, "dict"},
        {t->wk.int_, "int"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char buf[64];
        if (read_name(t, names[i].addr, buf, sizeof buf, &r) != 0)
            return check_failed(t, &r, err, "reading tp_name of the %s type",
                                names[i].name);
        if (strcmp(buf, names[i].name) != 0)
            return check_failed(t, NULL, err, "tp_name of the %s type reads "
                                "\"%.40s\"", names[i].name, buf);
    }

    uint64_t bs;
    if (rd64(t, t->wk.dict + o->tp_basicsize, &bs, &r) != 0)
        return check_failed(t, &r, err, "reading PyDict_Type.tp_basicsize");
    if (bs < o->dict_ma_values + 8 || bs > 1024)
        return check_failed(t, NULL, err, "PyDict_Type.tp_basicsize is %llu, "
                            "implausible for a dict", (unsigned long long)bs);

    /* The target runs on: a list may change under us. Retry a torn read. */
    int rc = -1;
    for (int attempt = 0; attempt < 3 && rc != 0; attempt++) {
        rc = validate_dynamic(t, v, err);
        if (rc != 0 && err && (err->code == PYHEAP_E_GONE || err->code == PYHEAP_E_PERM))
            break;
    }
    return rc;
}

/* ---- choosing a source ---- */

static bool allowed(unsigned mask, pyheap_offsets_source s)
{
    return mask == 0 || (mask & (1u << s)) != 0;
}

/* Validate the offsets just loaded into T. 0; -1 with WHY when they are
 * wrong (another source may serve); -2 with *ERR when the process died or
 * cannot be read (no source can). */
static int validate_source(pyheap_target *t, char *why, size_t why_len,
                           pyheap_error *err)
{
    pyheap_error e = {0};
    if (pyheap_offsets_validate(t, &e) == 0)
        return 0;
    if (e.code == PYHEAP_E_GONE || e.code == PYHEAP_E_PERM) {
        if (err)
            *err = e;
        return -2;
    }
    pyheap_buf_fmt(why, why_len, "%s", e.msg);
    return -1;
}

/* Try DWARF: locate, load, check the shape, validate. On failure WHY says
 * what went wrong; *found tells whether DWARF was there at all. */
static int debug_offsets_read(pyheap_target *t, const struct version_entry *v,
                              const struct pyheap_module *mod,
                              const struct pyheap_offsets *ref, const char *refname,
                              struct pyheap_offsets *got, int *nout, uint64_t *atout,
                              char *why, size_t why_len, pyheap_error *err);

static int try_dwarf(pyheap_target *t, const struct pyheap_module *mod,
                     bool *found, char *why, size_t why_len, pyheap_error *err)
{
    pyheap_elf *dbg;
    char where[PATH_MAX + 32];
    pyheap_error e = {0};
    *found = false;
    if (pyheap_dwarf_locate(t->pid, mod->path, mod->elf, &dbg, where, sizeof where,
                            &e) != 0) {
        pyheap_buf_fmt(why, why_len, "%s", e.msg);
        return -1;
    }
    *found = true;
    struct pyheap_offsets off;
    char missing[512];
    size_t nmissing = 0;
    int rc = pyheap_dwarf_offsets(dbg, t->major, t->minor, &off, missing,
                                  sizeof missing, &nmissing, &e);
    pyheap_elf_close(dbg);
    if (rc != 0) {
        pyheap_buf_fmt(why, why_len, "DWARF from %s: %s", where, e.msg);
        return -1;
    }
    char shape[400];
    if (pyheap_offsets_check_shape(t->major, t->minor, &off, shape, sizeof shape) != 0) {
        pyheap_buf_fmt(why, why_len, "DWARF from %s rejected: %s", where, shape);
        return -1;
    }
    /* Layout by members: the 3.14.0-3.14.4 incremental GC has young +
     * old[2] where later releases have generations[3] (same bytes). */
    const char *gc_layout = "";
    if (off.gcstate_generations == PYHEAP_OFF_ABSENT && off.gcstate_young != PYHEAP_OFF_ABSENT) {
        off.gcstate_generations = off.gcstate_young;
        t->k.gc_incremental = true;
        gc_layout = "; GC layout young/old[2] (incremental GC)";
    } else if (off.gcstate_generations != PYHEAP_OFF_ABSENT) {
        t->k.gc_incremental = false;
        gc_layout = t->minor == 14 ? "; GC layout generations[3]" : "";
    }
    /* 3.13+: the runtime's own _Py_DebugOffsets must agree with the DWARF
     * (a stale or foreign debug file would not). */
    char confirmed[64] = "";
    const struct version_entry *v = version_find(t->major, t->minor);
    if (v && v->has_debug_offsets) {
        struct pyheap_offsets got;
        int n = 0;
        uint64_t at = 0;
        char dwhy[400];
        int drc = debug_offsets_read(t, v, mod, &off, "DWARF", &got, &n, &at, dwhy,
                                     sizeof dwhy, err);
        if (drc == -2)
            return -2;
        if (drc == -3) {
            pyheap_buf_fmt(why, why_len, "DWARF from %s rejected: %s", where, dwhy);
            return -1;
        }
        if (drc == 0)
            pyheap_buf_fmt(confirmed, sizeof confirmed, "; %d fields confirmed by "
                "_Py_DebugOffsets", n);
    }
    t->off = off;
    t->source = PYHEAP_OFFSETS_DWARF;
    pyheap_buf_fmt(t->source_detail, sizeof t->source_detail, "DWARF from %s%s%s", where,
        gc_layout, confirmed);
    return validate_source(t, why, why_len, err);
}

/* The 3.14 patch releases with the incremental GC's young/old[2]. */
static bool incremental_gc_release(const pyheap_target *t)
{
    return t->major == 3 && t->minor == 14 && t->micro >= 0 && t->micro <= 4;
}

/* Read _Py_DebugOffsets (bounded) from &_PyRuntime, validate it, and
 * compare every value it gives with the version's built-in table. 0: they
 * agree (*GOT = table overlaid with them, *N provided); -1: unreadable or
 * invalid (WHY); -3: valid but different from the table (WHY names the
 * fields: another build configuration); -2: a refusal (free-threaded) or a
 * dead process (err set). */
static int debug_offsets_read(pyheap_target *t, const struct version_entry *v,
                              const struct pyheap_module *mod,
                              const struct pyheap_offsets *ref, const char *refname,
                              struct pyheap_offsets *got, int *nout, uint64_t *atout,
                              char *why, size_t why_len, pyheap_error *err)
{
    const struct pyheap_offsets_table *tab = v->table;
    size_t len = tab->dbg.size;
    unsigned char buf[PYHEAP_DEBUG_OFFSETS_MAX];
    pyheap_error e = {0};
    if (len == 0 || len > sizeof buf) {
        pyheap_buf_fmt(why, why_len, "no _Py_DebugOffsets layout for %d.%d", v->major, v->minor);
        return -1;
    }
    uint64_t at = t->runtime_addr + tab->off.runtime_debug_offsets;
    *atout = at;
    if (pyheap_mem_read(t->mem, at, buf, len, &e) != 0) {
        if (e.code == PYHEAP_E_GONE || e.code == PYHEAP_E_PERM) {
            if (err)
                *err = e;
            return -2;
        }
        pyheap_buf_fmt(why, why_len, "reading _Py_DebugOffsets at 0x%llx: %s",
            (unsigned long long)at, e.msg);
        return -1;
    }
    uint64_t rsize = 0, rsym;
    if (pyheap_elf_symbol(mod->elf, "_PyRuntime", &rsym, &rsize) != 0 &&
        pyheap_elf_section(mod->elf, ".PyRuntime", &rsym, &rsize, NULL) != 0)
        rsize = 0;
    *got = *ref;
    bool provided[PYHEAP_DBG_COUNT];
    int n = pyheap_debug_offsets_parse(tab, buf, len, t->py_version, rsize, got,
                                       provided, &e);
    if (n < 0) {
        if (e.code == PYHEAP_E_UNSUPPORTED) {
            if (err)
                *err = e;
            return -2;
        }
        pyheap_buf_fmt(why, why_len, "%s", e.msg);
        return -1;
    }
    *nout = n;
    char diff[300] = "";
    size_t used = 0, ndiff = 0;
    for (size_t i = 0; i < PYHEAP_DBG_COUNT; i++) {
        if (!provided[i])
            continue;
        size_t slot = pyheap_debug_offsets_field_slot(i);
        size_t a = *(const size_t *)((const char *)got + slot);
        size_t b = *(const size_t *)((const char *)ref + slot);
        if (a == b)
            continue;
        ndiff++;
        int k = snprintf(diff + used, sizeof diff - used, "%s%s %zu (%s %zd)",
                         used ? ", " : "", pyheap_debug_offsets_field_name(i), a,
                         refname, (ssize_t)b);
        if (k > 0 && (size_t)k < sizeof diff - used)
            used += (size_t)k;
    }
    if (ndiff && ref != &tab->off) {
        pyheap_buf_fmt(why, why_len, "_Py_DebugOffsets of the running binary differs from "
            "the %s in %zu field(s) (%s)", refname, ndiff, diff);
        return -3;
    }
    if (ndiff) {
        pyheap_buf_fmt(why, why_len, "_Py_DebugOffsets is valid but differs from the built-in "
            "%d.%d table (%s headers) in %zu field(s) (%s): another build "
            "configuration (e.g. Py_DEBUG) or patch release, which the table "
            "does not describe", v->major, v->minor, v->table->headers_version,
            ndiff, diff);
        return -3;
    }
    return 0;
}

/* Try _Py_DebugOffsets; the table supplies the fields it lacks. -1 with
 * WHY on failure, -2 for a refusal or a dead process (err set). */
static int try_debug_offsets(pyheap_target *t, const struct version_entry *v,
                             const struct pyheap_module *mod, char *why,
                             size_t why_len, pyheap_error *err)
{
    const struct pyheap_offsets_table *tab = v->table;
    struct pyheap_offsets got;
    int n = 0;
    uint64_t at = 0;
    int rc = debug_offsets_read(t, v, mod, &tab->off, "table", &got, &n, &at, why,
                                why_len, err);
    if (rc == -2)
        return -2;
    if (rc != 0)
        return -1;
    t->off = got;
    t->source = PYHEAP_OFFSETS_DEBUG_OFFSETS;
    size_t total = 0;
    for (size_t i = 0; i < pyheap_dwarf_nfields(); i++) {
        unsigned lo, hi;
        pyheap_dwarf_field_range(i, &lo, &hi);
        if (pyheap_offsets_range_has(lo, hi, t->major, t->minor, t->micro))
            total++;
    }
    t->k.gc_incremental = incremental_gc_release(t);
    pyheap_buf_fmt(t->source_detail, sizeof t->source_detail,
        "_Py_DebugOffsets at 0x%llx%s (%d fields: runtime, interpreter, thread, "
        "frame, code, type, tuple, list, dict, int, str, gc sizes...); the other "
        "~%zu fields from the built-in table for %d.%d (generated from %s "
        "headers)%s", (unsigned long long)at,
        t->runtime_by_cookie ? " (_PyRuntime found by its cookie: no symbol or "
        ".PyRuntime section)" : "", n, total > (size_t)n ? total - (size_t)n : 0,
        v->major, v->minor, tab->headers_version,
        t->k.gc_incremental ? "; GC layout young/old[2] (3.14.0-3.14.4)" : "");
    return validate_source(t, why, why_len, err);
}

int pyheap_offsets_load(pyheap_target *t, const struct pyheap_module *mod,
                        unsigned allowed_sources, pyheap_error *err)
{
    const struct version_entry *v = version_find(t->major, t->minor);
    char sup[64];
    if (!v)
        return pyheap_err_set(err, PYHEAP_E_UNSUPPORTED, 0, 0,
                              "Python %s (module %s) is not supported: pyheap "
                              "supports %s", t->version, mod->path,
                              pyheap_versions_supported(sup, sizeof sup));
    char dbg_why[600] = "";
    char dwarf_why[700] = "";
    bool dwarf_found = false;
    bool tried_any = false;

    if (allowed(allowed_sources, PYHEAP_OFFSETS_DEBUG_OFFSETS) && v->has_debug_offsets) {
        tried_any = true;
        int rc = try_debug_offsets(t, v, mod, dbg_why, sizeof dbg_why, err);
        if (rc == 0)
            return 0;
        if (rc == -2)
            return -1;
    }
    if (allowed(allowed_sources, PYHEAP_OFFSETS_DWARF)) {
        tried_any = true;
        int rc = try_dwarf(t, mod, &dwarf_found, dwarf_why, sizeof dwarf_why, err);
        if (rc == 0)
            return 0;
        if (rc == -2)
            return -1;
    }
    if (allowed(allowed_sources, PYHEAP_OFFSETS_TABLE) && v->table) {
        if (v->has_debug_offsets && !dbg_why[0]) {
            /* Not tried above (forced table): the runtime's own debug
             * offsets still tell whether the table describes this build. */
            struct pyheap_offsets got;
            int n = 0;
            uint64_t at = 0;
            int rc = debug_offsets_read(t, v, mod, &v->table->off, "table", &got,
                                        &n, &at, dbg_why,
                                        sizeof dbg_why, err);
            if (rc == -2)
                return -1;
            if (rc == -3)
                return pyheap_err_set(err, PYHEAP_E_OFFSETS, 0, 0,
                                      "the built-in table for %d.%d does not "
                                      "describe Python %s in %s: %s; use its "
                                      "DWARF (debug symbols)", v->major, v->minor,
                                      t->version, mod->path, dbg_why);
            dbg_why[0] = '\0';
        }
        t->off = v->table->off;
        t->source = PYHEAP_OFFSETS_TABLE;
        t->k.gc_incremental = incremental_gc_release(t);
        pyheap_buf_fmt(t->source_detail, sizeof t->source_detail,
                 "built-in table for %d.%d (generated from %s headers)%s%s%.300s%s%.600s",
                 v->major, v->minor, v->table->headers_version,
                 t->k.gc_incremental ? "; GC layout young/old[2] (3.14.0-3.14.4)" : "",
                 dbg_why[0] ? "; not _Py_DebugOffsets: " : "", dbg_why,
                 dwarf_found ? "; not DWARF: " : "", dwarf_found ? dwarf_why : "");
        return pyheap_offsets_validate(t, err);
    }
    t->source = PYHEAP_OFFSETS_NONE;
    if (!tried_any)
        return pyheap_err_set(err, PYHEAP_E_OFFSETS, 0, 0,
                              "no allowed source of offsets for Python %s "
                              "(allowed mask 0x%x%s)", t->version, allowed_sources,
                              v->has_debug_offsets ? "" : "; before 3.13 there is "
                              "no _Py_DebugOffsets");
    return pyheap_err_set(err, PYHEAP_E_OFFSETS, 0, 0,
                          "no usable offsets for Python %s in %s: %s%s%s; allow the "
                          "built-in table or install the interpreter's debug "
                          "symbols", t->version, mod->path,
                          dbg_why[0] ? dbg_why : "", dbg_why[0] && dwarf_why[0] ? "; " : "",
                          dwarf_why[0] ? dwarf_why : (dbg_why[0] ? "" : "no source left"));
}
