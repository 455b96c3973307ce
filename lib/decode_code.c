/* Modules, functions, code, cells, bound methods, frames, generators and
 * the interpreter frames (_PyInterpreterFrame) they embed. */
#include <stdio.h>
#include <string.h>

#include "walk.h"


static uint64_t u64at(const unsigned char *buf, size_t off)
{
    uint64_t v;
    memcpy(&v, buf + off, sizeof v);
    return v;
}

static int32_t i32at(const unsigned char *buf, size_t off)
{
    int32_t v;
    memcpy(&v, buf + off, sizeof v);
    return v;
}

/* Bytes of O's fixed part that fit in a buffer of CAP bytes. */
static size_t body_len(const struct walk_obj *o, size_t cap)
{
    size_t n = (size_t)o->type->basicsize;
    return n < cap ? n : cap;
}

/* Read the fixed part of O (its basicsize, capped) into BUF. */
static int read_body(struct walk *w, const struct walk_obj *o, unsigned char *buf, size_t cap)
{
    return pyheap_walk_read(w, o->addr, buf, body_len(o, cap));
}

/* A named pointer field: offset, label text (".name" unless it starts
 * with '<'), extra edge flags. */
struct field {
    size_t off;
    const char *name;
    unsigned flags;
};

/* Report the pointer fields F (skipping absent ones) of BUF. */
static void ref_fields(struct walk *w, const unsigned char *buf, size_t len,
                       const struct field *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (f[i].off == PYHEAP_OFF_ABSENT || f[i].off + 8 > len)
            continue;
        uint64_t v = u64at(buf, f[i].off);
        if (!v)
            continue;
        uint32_t l = pyheap_walk_label(w, f[i].name[0] == '<' ? LBL_TEXT : LBL_ATTR, f[i].name);
        pyheap_walk_edge(w, v, WALK_LBL_WITH_FLAGS(l, f[i].flags));
    }
}

#define NF(a) (sizeof (a) / sizeof (a)[0])

int pyheap_walk_decode_module(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    unsigned char b[256];
    if (read_body(w, o, b, sizeof b) < 0)
        return -1;
    struct field f[] = { { off->module_md_dict, "__dict__", 0 },
                         { off->module_md_name, "__name__", 0 } };
    ref_fields(w, b, body_len(o, sizeof b), f, NF(f));
    return pyheap_walk_decode_fixed(w, o, size);
}

int pyheap_walk_decode_function(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    unsigned char b[512];
    if (read_body(w, o, b, sizeof b) < 0)
        return -1;
    struct field f[] = {
        { off->func_globals, "__globals__", PYHEAP_EDGE_CUT },
        { off->func_builtins, "__builtins__", PYHEAP_EDGE_CUT },
        { off->func_name, "__name__", 0 }, { off->func_qualname, "__qualname__", 0 },
        { off->func_code, "__code__", 0 }, { off->func_defaults, "__defaults__", 0 },
        { off->func_kwdefaults, "__kwdefaults__", 0 }, { off->func_closure, "__closure__", 0 },
        { off->func_doc, "__doc__", 0 }, { off->func_dict, "__dict__", 0 },
        { off->func_module, "__module__", 0 }, { off->func_annotations, "__annotations__", 0 },
        { off->func_typeparams, "__type_params__", 0 },
        { off->func_annotate, "__annotate__", 0 } };
    ref_fields(w, b, body_len(o, sizeof b), f, NF(f));
    return pyheap_walk_decode_fixed(w, o, size);
}

int pyheap_walk_decode_code(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    unsigned char b[512];
    if (read_body(w, o, b, sizeof b) < 0)
        return -1;
    size_t len = body_len(o, sizeof b);
    struct field f[] = {
        { off->code_co_consts, "co_consts", 0 }, { off->code_co_names, "co_names", 0 },
        { off->code_co_exceptiontable, "co_exceptiontable", 0 },
        { off->code_co_localsplusnames, "co_localsplusnames", 0 },
        { off->code_co_localspluskinds, "co_localspluskinds", 0 },
        { off->code_co_filename, "co_filename", 0 }, { off->code_co_name, "co_name", 0 },
        { off->code_co_qualname, "co_qualname", 0 }, { off->code_co_linetable, "co_linetable", 0 },
        { off->code_co_code_cache, "<co_code>", 0 } };
    ref_fields(w, b, len, f, NF(f));
    if (off->code_co_cached != PYHEAP_OFF_ABSENT && off->code_co_cached + 8 <= len) {
        /* 3.12+: co_code, co_varnames... cached in a separate _PyCoCached */
        uint64_t cached = u64at(b, off->code_co_cached);
        struct { size_t off; const char *name; } cf[] = {
            { off->coc_code, "<co_code>" }, { off->coc_varnames, "<co_varnames>" },
            { off->coc_cellvars, "<co_cellvars>" }, { off->coc_freevars, "<co_freevars>" } };
        for (size_t i = 0; cached && i < NF(cf); i++) {
            uint64_t v;
            if (cf[i].off != PYHEAP_OFF_ABSENT && cf[i].off < 256 &&
                pyheap_walk_read_u64(w, cached + cf[i].off, &v) == 0 && v)
                pyheap_walk_edge(w, v, pyheap_walk_label(w, LBL_TEXT, cf[i].name));
        }
    }
    if (off->ob_size + 8 > len)
        return -1;
    int64_t n = (int64_t)u64at(b, off->ob_size);
    if (n < 0 || n > WALK_MAX_VAR_ITEMS)
        return -1;
    /* _PyObject_VAR_SIZE rounds up to pointer size. */
    uint64_t sz = ((uint64_t)(o->type->basicsize + o->type->itemsize * n) + 7) & ~(uint64_t)7;
    if (off->code_co_extra != PYHEAP_OFF_ABSENT && off->code_co_extra + 8 <= len) {
        uint64_t extra = u64at(b, off->code_co_extra);
        uint64_t ce_size;
        if (extra && pyheap_walk_read_u64(w, extra, &ce_size) == 0 && (int64_t)ce_size >= 1 &&
            ce_size < 1024)
            sz += 16 + (ce_size - 1) * 8;
    }
    *size = sz + pyheap_walk_presize(w, o->type);
    return 0;
}

int pyheap_walk_decode_cell(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    uint64_t v;
    if (pyheap_walk_read_u64(w, o->addr + off->cell_ob_ref, &v) < 0)
        return -1;
    pyheap_walk_edge(w, v, pyheap_walk_label_lit(w, LBL_ATTR, "cell_contents"));
    return pyheap_walk_decode_fixed(w, o, size);
}

int pyheap_walk_decode_method(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    unsigned char b[128];
    if (read_body(w, o, b, sizeof b) < 0)
        return -1;
    struct field f[] = { { off->method_im_func, "__func__", 0 },
                         { off->method_im_self, "__self__", 0 } };
    ref_fields(w, b, body_len(o, sizeof b), f, NF(f));
    return pyheap_walk_decode_fixed(w, o, size);
}

/* co_nlocalsplus + co_stacksize of the code object at CODE, and
 * co_nlocalsplus alone in *nlocals (if not NULL). */
static int code_slots(struct walk *w, uint64_t code, int64_t *slots, int64_t *nlocals)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    int32_t nlp, stack;
    if (!code || pyheap_walk_read(w, code + off->code_co_nlocalsplus, &nlp, 4) < 0 ||
        pyheap_walk_read(w, code + off->code_co_stacksize, &stack, 4) < 0)
        return -1;
    if (nlp < 0 || stack < 0 || nlp > (1 << 20) || stack > (1 << 20))
        return -1;
    *slots = (int64_t)nlp + stack;
    if (nlocals)
        *nlocals = nlp;
    return 0;
}

int pyheap_walk_iframe_refs(struct walk *w, uint64_t iframe, const char *owner)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    unsigned char b[256];
    size_t hdr = off->iframe_localsplus;
    if (hdr > sizeof b || pyheap_walk_read(w, iframe, b, hdr) < 0)
        return -1;
    struct field f[] = {
        { off->iframe_f_func, "f_func", 0 }, { off->iframe_f_globals, "f_globals", PYHEAP_EDGE_CUT },
        { off->iframe_f_builtins, "f_builtins", PYHEAP_EDGE_CUT },
        { off->iframe_f_locals, "f_locals", 0 }, { off->iframe_f_code, "f_code", 0 },
        { off->iframe_frame_obj, "<frame>", 0 } };
    ref_fields(w, b, hdr, f, NF(f));
    /* 3.13+: f_executable and f_funcobj (tagged _PyStackRef in 3.14+). */
    struct field sf[] = { { off->iframe_f_executable, "f_code", 0 },
                          { off->iframe_f_funcobj, "f_func", 0 } };
    for (size_t i = 0; i < NF(sf); i++) {
        if (sf[i].off == PYHEAP_OFF_ABSENT || sf[i].off + 8 > hdr)
            continue;
        uint64_t v = pyheap_walk_stackref(w, u64at(b, sf[i].off));
        if (v)
            pyheap_walk_edge(w, v, pyheap_walk_label(w, LBL_ATTR, sf[i].name));
    }
    int64_t slots, nlocals;
    uint64_t code;
    if (pyheap_walk_iframe_code(w, iframe, &code) < 0 || code_slots(w, code, &slots, &nlocals) < 0)
        return -1;
    int32_t top;
    if (off->iframe_stacktop != PYHEAP_OFF_ABSENT) {
        top = i32at(b, off->iframe_stacktop);
    } else if (off->iframe_stackpointer != PYHEAP_OFF_ABSENT) {
        /* 3.14+: a pointer to the first free slot; stale or NULL while the
         * frame executes, so out of range means "locals only". */
        uint64_t sp = u64at(b, off->iframe_stackpointer), base = iframe + hdr;
        if (sp >= base && sp <= base + (uint64_t)slots * 8 && ((sp - base) & 7) == 0)
            top = (int32_t)((sp - base) / 8);
        else
            top = -1;
    } else {
        return -1;
    }
    if (top > slots)
        return -1;
    /* A frame that is executing has stacktop -1 (3.11, 3.13): its locals are
     * valid, its value stack is not known. */
    if (top < 0)
        top = (int32_t)nlocals;
    /* Local names: co_localsplusnames, a tuple of str. */
    uint64_t names = 0, nnames = 0;
    if (off->code_co_localsplusnames != PYHEAP_OFF_ABSENT &&
        pyheap_walk_read_u64(w, code + off->code_co_localsplusnames, &names) == 0 && names &&
        pyheap_walk_read_u64(w, names + off->ob_size, &nnames) == 0 &&
        (int64_t)nnames > nlocals)
        nnames = (uint64_t)nlocals;
    if ((int64_t)nnames < 0)
        nnames = 0;
    uint32_t stack = pyheap_walk_label_lit(w, LBL_TEXT, "<stack>");
    uint64_t buf[256];
    for (int32_t i = 0; i < top; i += 256) {
        int32_t m = top - i < 256 ? top - i : 256;
        if (pyheap_walk_read(w, iframe + hdr + (uint64_t)i * 8, buf, (size_t)m * 8) < 0)
            return -1;
        for (int32_t j = 0; j < m; j++) {
            buf[j] = pyheap_walk_stackref(w, buf[j]);
            if (!buf[j])
                continue;
            uint64_t k = (uint64_t)(i + j), name;
            uint32_t l = stack;
            if (k < nnames &&
                pyheap_walk_read_u64(w, names + off->tuple_ob_item + k * 8, &name) == 0) {
                l = pyheap_walk_label_key(w, name, 0);
                if (WALK_LBL_KIND(l) != LBL_KEY_STR) {
                    l = stack;
                } else if (owner) {
                    char text[200];
                    snprintf(text, sizeof text, "%s.f_locals['%s']", owner,
                             pyheap_walk_label_text(w, l));
                    l = pyheap_walk_label(w, LBL_ATTR, text);
                } else {
                    l = WALK_LBL(LBL_LOCAL, WALK_LBL_PAYLOAD(l));
                }
            }
            pyheap_walk_edge(w, buf[j], l);
        }
    }
    return 0;
}

int pyheap_walk_decode_frame(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    unsigned char b[256];
    if (read_body(w, o, b, sizeof b) < 0)
        return -1;
    struct field f[] = { { off->frame_f_back, "f_back", 0 },
                         { off->frame_f_trace, "f_trace", 0 },
                         { off->frame_f_extra_locals, "<f_extra_locals>", 0 },
                         { off->frame_f_locals_cache, "<f_locals_cache>", 0 },
                         { off->frame_f_overwritten_fast_locals, "<f_overwritten_fast_locals>", 0 } };
    ref_fields(w, b, body_len(o, sizeof b), f, NF(f));
    if (off->frame_f_frame + 8 > body_len(o, sizeof b))
        return -1;
    uint64_t iframe = u64at(b, off->frame_f_frame);
    uint64_t code;
    int64_t slots;
    if (!iframe || pyheap_walk_iframe_code(w, iframe, &code) < 0 ||
        code_slots(w, code, &slots, NULL) < 0)
        return -1;
    if (pyheap_walk_iframe_refs(w, iframe, NULL) < 0)
        pyheap_walk_skip(w);
    *size = off->frame_f_frame_data + off->iframe_localsplus + (uint64_t)slots * 8 +
            pyheap_walk_presize(w, o->type);
    return 0;
}

int pyheap_walk_decode_gen(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    unsigned char b[128];
    if (off->gen_iframe > sizeof b || pyheap_walk_read(w, o->addr, b, off->gen_iframe) < 0)
        return -1;
    uint64_t code = 0;
    if (off->gen_code != PYHEAP_OFF_ABSENT)
        code = u64at(b, off->gen_code);
    else if (pyheap_walk_iframe_code(w, o->addr + off->gen_iframe, &code) < 0)
        return -1; /* 3.12+: the code is the embedded frame's f_executable */
    struct field f[] = { { off->gen_code, "gi_code", 0 }, { off->gen_name, "__name__", 0 },
                         { off->gen_qualname, "__qualname__", 0 },
                         { off->gen_exc_state + off->err_stackitem_exc_value, "<exc_state>", 0 } };
    ref_fields(w, b, off->gen_iframe, f, NF(f));
    int64_t slots;
    if (code_slots(w, code, &slots, NULL) < 0)
        return -1;
    int8_t state = (int8_t)b[off->gen_frame_state];
    const pyheap_target *t = pyheap_walk_target(w);
    const char *owner = o->type->addr == t->wk.coro ? "cr_frame"
                        : o->type->addr == t->wk.async_gen ? "ag_frame" : "gi_frame";
    const struct pyheap_consts *k = &t->k;
    /* 3.13+ clear a completed generator's frame too (3.11 kept it). */
    bool live = state < k->frame_state_cleared &&
                (t->minor < 13 || state != k->frame_state_completed);
    if (live && pyheap_walk_iframe_refs(w, o->addr + off->gen_iframe, owner) < 0)
        pyheap_walk_skip(w);
    *size = off->gen_iframe + off->iframe_localsplus + (uint64_t)slots * 8 +
            pyheap_walk_presize(w, o->type);
    return 0;
}
