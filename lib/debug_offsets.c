/* _Py_DebugOffsets: the table CPython 3.13+ keeps at the start of
 * _PyRuntime (cookie "xdebugpy", PY_VERSION_HEX, free_threaded, then one
 * section per struct: its size and member offsets). Everything in it is
 * target memory: bounded and checked before any value is used. Where each
 * value sits inside the struct comes from the generated table of the
 * version (struct pyheap_debug_layout), never from hand-written numbers. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "debug_offsets.h"

static const struct {
    const char *name;
    uint64_t max;   /* 0: no size member */
} secs[PYHEAP_DBGSEC_COUNT] = {
#define DSEC(section, maxsize, lo, hi) [PYHEAP_DBGSEC_##section] = {#section, maxsize},
#define DOFF(field, section, member, width, lo, hi)
#include "debug_offsets_fields.h"
#undef DSEC
#undef DOFF
};

static const struct {
    const char *name;
    const char *member;
    size_t slot;
    enum pyheap_dbg_sec sec;
    unsigned width;
} fields[PYHEAP_DBG_COUNT] = {
#define DSEC(section, maxsize, lo, hi)
#define DOFF(field, section, member, width, lo, hi) \
    [PYHEAP_DBG_##field] = {#field, #section "." #member, \
                            offsetof(struct pyheap_offsets, field), \
                            PYHEAP_DBGSEC_##section, width},
#include "debug_offsets_fields.h"
#undef DSEC
#undef DOFF
};

const char *pyheap_debug_offsets_field_name(size_t i)
{
    return i < PYHEAP_DBG_COUNT ? fields[i].name : NULL;
}

size_t pyheap_debug_offsets_field_slot(size_t i)
{
    return i < PYHEAP_DBG_COUNT ? fields[i].slot : 0;
}

static uint64_t u64at(const unsigned char *b, size_t at)
{
    uint64_t v;
    memcpy(&v, b + at, sizeof v);
    return v;
}

static int bad(pyheap_error *err, const char *fmt, ...) PYHEAP_PRINTF(2, 3);
static int bad(pyheap_error *err, const char *fmt, ...)
{
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return pyheap_err_set(err, PYHEAP_E_OFFSETS, 0, 0,
                          "_Py_DebugOffsets failed validation: %s", what);
}

int pyheap_debug_offsets_parse(const struct pyheap_offsets_table *tab,
                               const void *buf, size_t len, uint32_t py_version,
                               uint64_t runtime_size, struct pyheap_offsets *out,
                               bool provided[PYHEAP_DBG_COUNT], pyheap_error *err)
{
    const struct pyheap_debug_layout *L = &tab->dbg;
    const unsigned char *b = buf;
    memset(provided, 0, PYHEAP_DBG_COUNT * sizeof provided[0]);
    if (L->size == 0 || L->cookie == PYHEAP_OFF_ABSENT)
        return pyheap_err_set(err, PYHEAP_E_UNSUPPORTED, 0, 0,
                              "Python %d.%d has no _Py_DebugOffsets (3.13+ only)",
                              tab->major, tab->minor);
    if (L->size > PYHEAP_DEBUG_OFFSETS_MAX || L->cookie + 8 > L->size ||
        L->version + 8 > L->size || L->free_threaded + 8 > L->size)
        return pyheap_err_set(err, PYHEAP_E_OFFSETS, 0, 0,
                              "the built-in _Py_DebugOffsets layout of %d.%d is "
                              "inconsistent", tab->major, tab->minor);
    if (!buf || len < L->size)
        return pyheap_err_set(err, PYHEAP_E_CORRUPT, 0, 0,
                              "_Py_DebugOffsets is truncated: %zu of %zu bytes",
                              buf ? len : 0, L->size);
    if (memcmp(b + L->cookie, "xdebugpy", 8) != 0)
        return pyheap_err_set(err, PYHEAP_E_OFFSETS, 0, 0,
                              "_Py_DebugOffsets failed validation: the cookie is "
                              "not \"xdebugpy\" (not a %d.%d runtime, or memory "
                              "overwritten)", tab->major, tab->minor);
    uint64_t ver = u64at(b, L->version);
    if (ver > 0xffffffffu || (ver >> 24) != (uint64_t)tab->major ||
        ((ver >> 16) & 0xff) != (uint64_t)tab->minor ||
        (py_version != 0 && ver != py_version))
        return pyheap_err_set(err, PYHEAP_E_OFFSETS, 0, 0,
                              "_Py_DebugOffsets failed validation: its version "
                              "0x%" PRIx64 " is not the running %d.%d (Py_Version "
                              "0x%08x)", ver, tab->major, tab->minor, py_version);
    uint64_t ft = u64at(b, L->free_threaded);
    if (ft == 1)
        return pyheap_err_set(err, PYHEAP_E_UNSUPPORTED, 0, 0,
                              "free-threaded CPython %d.%dt is not supported "
                              "(_Py_DebugOffsets.free_threaded is 1): its objects "
                              "are not on GC lists and its object header differs",
                              tab->major, tab->minor);
    if (ft != 0)
        return bad(err, "free_threaded is %" PRIu64 " (must be 0 or 1)", ft);

    uint64_t secsize[PYHEAP_DBGSEC_COUNT] = {0};
    for (size_t s = 0; s < PYHEAP_DBGSEC_COUNT; s++) {
        if (L->sec_at[s] == PYHEAP_OFF_ABSENT)
            continue;
        if (L->sec_at[s] + 8 > L->size || secs[s].max == 0)
            return pyheap_err_set(err, PYHEAP_E_OFFSETS, 0, 0,
                                  "the built-in _Py_DebugOffsets layout of %d.%d "
                                  "is inconsistent (section %s)", tab->major,
                                  tab->minor, secs[s].name);
        uint64_t v = u64at(b, L->sec_at[s]);
        if (v == 0 || v > secs[s].max)
            return bad(err, "section %s has size %" PRIu64 " (bound %" PRIu64 ")",
                       secs[s].name, v, secs[s].max);
        secsize[s] = v;
    }

    int n = 0;
    for (size_t i = 0; i < PYHEAP_DBG_COUNT; i++) {
        if (L->at[i] == PYHEAP_OFF_ABSENT)
            continue;
        if (L->at[i] + 8 > L->size)
            return pyheap_err_set(err, PYHEAP_E_OFFSETS, 0, 0,
                                  "the built-in _Py_DebugOffsets layout of %d.%d "
                                  "is inconsistent (%s)", tab->major, tab->minor,
                                  fields[i].member);
        uint64_t v = u64at(b, L->at[i]);
        uint64_t bound = secsize[fields[i].sec] ? secsize[fields[i].sec] : 4096;
        unsigned w = fields[i].width;
        if (w == 0) {
            if (v == 0 || v > bound)
                return bad(err, "%s is %" PRIu64 " (bound %" PRIu64 ")",
                           fields[i].member, v, bound);
        } else if (v > bound || v + w > bound) {
            return bad(err, "%s is %" PRIu64 ", outside its struct of %" PRIu64
                       " bytes", fields[i].member, v, bound);
        } else if (w == 8 && (v & 7) != 0) {
            return bad(err, "%s is %" PRIu64 ", not aligned for a pointer",
                       fields[i].member, v);
        }
        *(size_t *)((char *)out + fields[i].slot) = (size_t)v;
        provided[i] = true;
        n++;
    }

    /* Sizes the table gives must agree with each other. */
    uint64_t rs = secsize[PYHEAP_DBGSEC_runtime_state];
    uint64_t is = secsize[PYHEAP_DBGSEC_interpreter_state];
    if (runtime_size != 0 && rs != runtime_size)
        return bad(err, "runtime_state.size is %" PRIu64 " but _PyRuntime has %"
                   PRIu64 " bytes", rs, runtime_size);
    if (provided[PYHEAP_DBG_interp_gc] && provided[PYHEAP_DBG_gcstate_size] &&
        (uint64_t)out->interp_gc + out->gcstate_size > is)
        return bad(err, "interpreter_state.gc + gc.size exceeds "
                   "interpreter_state.size (%" PRIu64 " > %" PRIu64 ")",
                   (uint64_t)out->interp_gc + out->gcstate_size, is);
    if (provided[PYHEAP_DBG_ob_type] && provided[PYHEAP_DBG_pyobject] &&
        (out->ob_type != 8 || out->pyobject != 16))
        return bad(err, "pyobject.ob_type is %zu and pyobject.size %zu (a 64-bit "
                   "default build has 8 and 16)", out->ob_type, out->pyobject);
    if (provided[PYHEAP_DBG_iframe_localsplus] && provided[PYHEAP_DBG_iframe_size] &&
        out->iframe_localsplus + 8 > out->iframe_size)
        return bad(err, "interpreter_frame.localsplus is %zu beyond the frame "
                   "size %zu", out->iframe_localsplus, out->iframe_size);
    return n;
}
