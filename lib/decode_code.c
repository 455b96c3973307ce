/* Modules, functions, code, cells, bound methods, frames, generators and
 * the interpreter frames (_PyInterpreterFrame) they embed. */
#include <string.h>

#include "walk.h"

#define FRAME_CLEARED 4 /* 3.11 enum _framestate */

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

/* Read the fixed part of O (its basicsize, capped) into BUF. */
static int read_body(struct walk *w, const struct walk_obj *o, unsigned char *buf, size_t cap)
{
    size_t n = (size_t)o->type->basicsize;
    if (n > cap)
        n = cap;
    return pyheap_walk_read(w, o->addr, buf, n);
}

/* Report the pointer fields at OFFS (skipping absent ones) of BUF. */
static void ref_fields(struct walk *w, const unsigned char *buf, size_t len,
                       const size_t *offs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (offs[i] != PYHEAP_OFF_ABSENT && offs[i] + 8 <= len)
            pyheap_walk_ref(w, u64at(buf, offs[i]));
}

int pyheap_walk_decode_module(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    unsigned char b[256];
    if (read_body(w, o, b, sizeof b) < 0)
        return -1;
    size_t f[] = { off->module_md_dict, off->module_md_name };
    ref_fields(w, b, (size_t)o->type->basicsize, f, 2);
    return pyheap_walk_decode_fixed(w, o, size);
}

int pyheap_walk_decode_function(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    unsigned char b[512];
    if (read_body(w, o, b, sizeof b) < 0)
        return -1;
    size_t f[] = { off->func_globals, off->func_builtins, off->func_name,
                   off->func_qualname, off->func_code, off->func_defaults,
                   off->func_kwdefaults, off->func_closure, off->func_doc,
                   off->func_dict, off->func_module, off->func_annotations };
    ref_fields(w, b, (size_t)o->type->basicsize, f, sizeof f / sizeof f[0]);
    return pyheap_walk_decode_fixed(w, o, size);
}

int pyheap_walk_decode_code(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    unsigned char b[512];
    if (read_body(w, o, b, sizeof b) < 0)
        return -1;
    size_t len = (size_t)o->type->basicsize;
    if (len > sizeof b)
        len = sizeof b;
    size_t f[] = { off->code_co_consts, off->code_co_names, off->code_co_exceptiontable,
                   off->code_co_localsplusnames, off->code_co_localspluskinds,
                   off->code_co_filename, off->code_co_name, off->code_co_qualname,
                   off->code_co_linetable, off->code_co_code_cache };
    ref_fields(w, b, len, f, sizeof f / sizeof f[0]);
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
    pyheap_walk_ref(w, v);
    return pyheap_walk_decode_fixed(w, o, size);
}

int pyheap_walk_decode_method(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    unsigned char b[128];
    if (read_body(w, o, b, sizeof b) < 0)
        return -1;
    size_t f[] = { off->method_im_func, off->method_im_self };
    ref_fields(w, b, (size_t)o->type->basicsize, f, 2);
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

int pyheap_walk_iframe_refs(struct walk *w, uint64_t iframe)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    unsigned char b[256];
    size_t hdr = off->iframe_localsplus;
    if (hdr > sizeof b || pyheap_walk_read(w, iframe, b, hdr) < 0)
        return -1;
    size_t f[] = { off->iframe_f_func, off->iframe_f_globals, off->iframe_f_builtins,
                   off->iframe_f_locals, off->iframe_f_code, off->iframe_frame_obj };
    ref_fields(w, b, hdr, f, sizeof f / sizeof f[0]);
    int64_t slots, nlocals;
    int32_t top = i32at(b, off->iframe_stacktop);
    if (code_slots(w, u64at(b, off->iframe_f_code), &slots, &nlocals) < 0 || top > slots)
        return -1;
    /* A frame that is executing has stacktop -1 (3.11): its locals are
     * valid, its value stack is not known. */
    if (top < 0)
        top = (int32_t)nlocals;
    uint64_t buf[256];
    for (int32_t i = 0; i < top; i += 256) {
        int32_t m = top - i < 256 ? top - i : 256;
        if (pyheap_walk_read(w, iframe + hdr + (uint64_t)i * 8, buf, (size_t)m * 8) < 0)
            return -1;
        for (int32_t j = 0; j < m; j++)
            pyheap_walk_ref(w, buf[j]);
    }
    return 0;
}

int pyheap_walk_decode_frame(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    unsigned char b[256];
    if (read_body(w, o, b, sizeof b) < 0)
        return -1;
    size_t f[] = { off->frame_f_back, off->frame_f_trace };
    ref_fields(w, b, (size_t)o->type->basicsize, f, 2);
    uint64_t iframe = u64at(b, off->frame_f_frame);
    uint64_t code;
    int64_t slots;
    if (!iframe || pyheap_walk_read_u64(w, iframe + off->iframe_f_code, &code) < 0 ||
        code_slots(w, code, &slots, NULL) < 0)
        return -1;
    if (pyheap_walk_iframe_refs(w, iframe) < 0)
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
    uint64_t code = u64at(b, off->gen_code);
    size_t f[] = { off->gen_code, off->gen_name, off->gen_qualname,
                   off->gen_exc_state + off->err_stackitem_exc_value };
    ref_fields(w, b, off->gen_iframe, f, sizeof f / sizeof f[0]);
    int64_t slots;
    if (code_slots(w, code, &slots, NULL) < 0)
        return -1;
    int8_t state = (int8_t)b[off->gen_frame_state];
    if (state < FRAME_CLEARED && pyheap_walk_iframe_refs(w, o->addr + off->gen_iframe) < 0)
        pyheap_walk_skip(w);
    *size = off->gen_iframe + off->iframe_localsplus + (uint64_t)slots * 8 +
            pyheap_walk_presize(w, o->type);
    return 0;
}
