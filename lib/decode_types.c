/* Type objects: describing a type once (kind, sizes, slots, name) and
 * decoding type objects as objects. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "walk.h"

#define T_OBJECT    6
#define T_OBJECT_EX 16

static uint64_t u64at(const unsigned char *buf, size_t off)
{
    uint64_t v;
    memcpy(&v, buf + off, sizeof v);
    return v;
}

/* The decoder kind of a well-known type address, or WALK_UNKNOWN. */
static enum walk_kind well_known_kind(const pyheap_target *t, uint64_t a)
{
    const struct pyheap_well_known *k = &t->wk;
    struct { uint64_t addr; enum walk_kind kind; } map[] = {
        { k->tuple, WALK_TUPLE }, { k->list, WALK_LIST }, { k->dict, WALK_DICT },
        { k->set, WALK_SET }, { k->frozenset, WALK_SET }, { k->str, WALK_STR },
        { k->bytes, WALK_BYTES }, { k->bytearray, WALK_BYTEARRAY },
        { k->int_, WALK_INT }, { k->bool_, WALK_INT }, { k->float_, WALK_FLOAT },
        { k->complex, WALK_COMPLEX }, { k->type, WALK_TYPE },
        { k->module, WALK_MODULE }, { k->function, WALK_FUNCTION },
        { k->code, WALK_CODE }, { k->cell, WALK_CELL }, { k->method, WALK_METHOD },
        { k->frame, WALK_FRAME }, { k->gen, WALK_GEN }, { k->coro, WALK_GEN },
        { k->async_gen, WALK_GEN }, { k->object, WALK_OBJECT },
        { k->none_type, WALK_OBJECT },
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i].addr && map[i].addr == a)
            return map[i].kind;
    return WALK_UNKNOWN;
}

static int add_member(struct walk_type *out, uint32_t *cap, uint64_t off, uint32_t label)
{
    for (uint32_t i = 0; i < out->nmembers; i++)
        if (out->members[i] == off)
            return 0;
    if (out->nmembers == *cap) {
        uint32_t ncap = *cap ? *cap * 2 : 8;
        uint32_t *n = realloc(out->members, ncap * sizeof *n);
        if (!n)
            return -1;
        out->members = n;
        uint32_t *l = realloc(out->member_labels, ncap * sizeof *l);
        if (!l)
            return -1;
        out->member_labels = l;
        *cap = ncap;
    }
    out->members[out->nmembers] = (uint32_t)off;
    out->member_labels[out->nmembers++] = label;
    return 0;
}

static void free_members(struct walk_type *out)
{
    free(out->members);
    free(out->member_labels);
    out->members = NULL;
    out->member_labels = NULL;
    out->nmembers = 0;
}

/* T_OBJECT / T_OBJECT_EX members of the heap type at TYPE (its own slots). */
static int collect_members(struct walk *w, uint64_t members, int64_t basicsize,
                           struct walk_type *out, uint32_t *cap)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    if (!members)
        return 0;
    unsigned char md[64];
    if (off->member_def > sizeof md)
        return -1;
    for (int i = 0; i < WALK_MAX_MEMBERS; i++) {
        if (pyheap_walk_read(w, members + (uint64_t)i * off->member_def, md, off->member_def) < 0)
            return -1;
        if (u64at(md, off->member_def_name) == 0)
            return 0;
        int32_t type;
        memcpy(&type, md + off->member_def_type, sizeof type);
        int64_t moff = (int64_t)u64at(md, off->member_def_offset);
        if ((type == T_OBJECT || type == T_OBJECT_EX) && moff >= 16 && moff + 8 <= basicsize) {
            char mname[128];
            uint32_t label = WALK_LBL(LBL_NONE, 0);
            if (pyheap_walk_read_cstr(w, u64at(md, off->member_def_name), mname,
                                      sizeof mname) > 0)
                label = pyheap_walk_label(w, LBL_ATTR, mname);
            if (add_member(out, cap, (uint64_t)moff, label) < 0)
                return -1;
        }
    }
    return 0;
}

static void type_name(struct walk *w, uint64_t addr, const unsigned char *tb,
                      bool heap, char *buf, size_t cap)
{
    const pyheap_target *t = pyheap_walk_target(w);
    const struct pyheap_offsets *off = &t->off;
    buf[0] = 0;
    if (heap) {
        char qual[256], mod[256];
        if (pyheap_walk_str_utf8(w, u64at(tb, off->ht_qualname), qual, sizeof qual) == 0 && qual[0]) {
            uint64_t modobj = 0;
            if (pyheap_walk_dict_get_str(w, u64at(tb, off->tp_dict), "__module__", &modobj) == 0 &&
                pyheap_walk_str_utf8(w, modobj, mod, sizeof mod) == 0 && mod[0] &&
                strcmp(mod, "builtins") != 0)
                snprintf(buf, cap, "%s.%s", mod, qual);
            else
                snprintf(buf, cap, "%s", qual);
            return;
        }
    }
    if (pyheap_walk_read_cstr(w, u64at(tb, off->tp_name), buf, cap) <= 0)
        snprintf(buf, cap, "<type at 0x%llx>", (unsigned long long)addr);
}

/* Whether the word at OFF of T's instances is reported precisely (a
 * member) or never a reference (the weak list). */
static bool known_word(const struct walk_type *t, uint32_t off)
{
    if (t->weaklistoffset == (int64_t)off)
        return true;
    for (uint32_t i = 0; i < t->nmembers; i++)
        if (t->members[i] == off)
            return true;
    return false;
}

int pyheap_walk_type_describe(struct walk *w, uint64_t addr, uint64_t meta, struct walk_type *out)
{
    const pyheap_target *t = pyheap_walk_target(w);
    const struct pyheap_offsets *off = &t->off;
    const struct pyheap_consts *k = &t->k;
    unsigned char tb[2048];
    if (off->heap_type_object > sizeof tb || off->type_object > off->heap_type_object ||
        off->tp_itemsize + 8 > off->type_object)
        return -1;
    memset(out, 0, sizeof *out);
    if (pyheap_walk_read(w, addr, tb, off->type_object) < 0)
        return -1;
    out->addr = addr;
    out->meta = meta;
    out->flags = u64at(tb, off->tp_flags);
    out->heap = (out->flags & k->tpflags_heaptype) != 0;
    if (out->heap && pyheap_walk_read(w, addr, tb, off->heap_type_object) < 0)
        return -1;
    out->gc = (out->flags & k->tpflags_have_gc) != 0;
    out->managed_dict = k->tpflags_managed_dict && (out->flags & k->tpflags_managed_dict);
    out->preheader = k->tpflags_preheader && (out->flags & k->tpflags_preheader);
    out->static_builtin = k->tpflags_static_builtin && (out->flags & k->tpflags_static_builtin);
    out->basicsize = (int64_t)u64at(tb, off->tp_basicsize);
    out->itemsize = (int64_t)u64at(tb, off->tp_itemsize);
    out->dictoffset = (int64_t)u64at(tb, off->tp_dictoffset);
    out->weaklistoffset = (int64_t)u64at(tb, off->tp_weaklistoffset);
    if (out->basicsize < 16 || out->basicsize > WALK_MAX_BASICSIZE ||
        out->itemsize < 0 || out->itemsize > 65536)
        return -1;
    if (out->heap)
        out->cached_keys = u64at(tb, off->ht_cached_keys);

    /* Find the first well-known type on the tp_base chain; collect the slot
     * members of the heap types before it. */
    uint32_t cap = 0;
    enum walk_kind kind = WALK_UNKNOWN;
    int64_t base_size = 16, base_item = 0;
    uint64_t cur = addr;
    unsigned char cb[2048];
    for (int depth = 0; cur && depth < WALK_MAX_MRO_DEPTH; depth++) {
        kind = well_known_kind(t, cur);
        if (kind != WALK_UNKNOWN) {
            if (cur == addr) {
                base_size = out->basicsize;
                base_item = out->itemsize;
            } else if (pyheap_walk_read(w, cur, cb, off->tp_itemsize + 8) == 0) {
                base_size = (int64_t)u64at(cb, off->tp_basicsize);
                base_item = (int64_t)u64at(cb, off->tp_itemsize);
            } else {
                kind = WALK_UNKNOWN;
            }
            break;
        }
        if (pyheap_walk_read(w, cur, cb, off->type_object) < 0)
            break;
        bool cur_heap = (u64at(cb, off->tp_flags) & k->tpflags_heaptype) != 0;
        {
            /* An extension type with a layout we know? Static types by
             * tp_name; heap types only when tp_name is dotted as
             * PyType_FromSpec makes it (a Python class's tp_name has no
             * dot). */
            char tn[64];
            int64_t bs = (int64_t)u64at(cb, off->tp_basicsize);
            int64_t is = (int64_t)u64at(cb, off->tp_itemsize);
            if (pyheap_walk_read_cstr(w, u64at(cb, off->tp_name), tn, sizeof tn) > 0 &&
                (!cur_heap || strchr(tn, '.'))) {
                kind = pyheap_walk_extension_kind(tn, bs, is);
                if (kind != WALK_UNKNOWN) {
                    base_size = bs;
                    base_item = is;
                    break;
                }
            }
        }
        if ((u64at(cb, off->tp_flags) & k->tpflags_heaptype) &&
            collect_members(w, u64at(cb, off->tp_members), out->basicsize, out, &cap) < 0) {
            free_members(out);
            return -1;
        }
        cur = u64at(cb, off->tp_base);
    }
    if (kind == WALK_UNKNOWN) {
        base_size = 16;
        base_item = 0;
    }
    out->kind = kind;
    if (base_size < 16 || base_size > out->basicsize)
        base_size = out->basicsize;
    /* A dict slot added by a heap type (not managed) is a precise member. */
    if (out->heap && !out->managed_dict && out->dictoffset > 0 &&
        out->dictoffset + 8 <= out->basicsize &&
        add_member(out, &cap, (uint64_t)out->dictoffset,
                   pyheap_walk_label_lit(w, LBL_ATTR, "__dict__")) < 0) {
        free_members(out);
        return -1;
    }
    if (base_item == 0) {
        out->scan_lo = (uint32_t)((base_size + 7) & ~(int64_t)7);
        out->scan_hi = (uint32_t)out->basicsize;
        out->scan_items = out->itemsize > 0;
        /* Words at either end that are the weak list or members need no
         * conservative scan (usually the whole region: __weakref__ and
         * slots). */
        while (out->scan_lo + 8 <= out->scan_hi && known_word(out, out->scan_lo))
            out->scan_lo += 8;
        while (out->scan_hi >= out->scan_lo + 8 && ((out->scan_hi - out->scan_lo) & 7) == 0 &&
               known_word(out, out->scan_hi - 8))
            out->scan_hi -= 8;
    }

    char name[600];
    type_name(w, addr, tb, out->heap, name, sizeof name);
    out->name = pyheap_walk_name_intern(w, name);
    if (out->name == UINT32_MAX) {
        free_members(out);
        return -1;
    }
    return 0;
}

int pyheap_walk_decode_type(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const pyheap_target *t = pyheap_walk_target(w);
    const struct pyheap_offsets *off = &t->off;
    const struct walk_type *self = pyheap_walk_type_get(w, o->addr);
    if (!self)
        return -1;
    bool heap = self->heap;
    uint64_t keys = self->cached_keys;
    unsigned char tb[2048];
    size_t len = heap ? off->heap_type_object : off->type_object;
    if (len > sizeof tb || pyheap_walk_read(w, o->addr, tb, len) < 0)
        return -1;
    struct { size_t off; const char *name; } refs[] = {
        { off->tp_dict, "__dict__" }, { off->tp_cache, "<tp_cache>" }, { off->tp_mro, "__mro__" },
        { off->tp_bases, "__bases__" }, { off->tp_base, "__base__" },
        { off->tp_subclasses, "<tp_subclasses>" } };
    for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) {
        uint64_t v = u64at(tb, refs[i].off);
        /* 3.12+ static builtin types: tp_subclasses holds an index into
         * the interpreter's table (walked as a root), not a pointer. */
        if (self->static_builtin && refs[i].off == off->tp_subclasses)
            continue;
        if (v)
            pyheap_walk_edge(w, v, pyheap_walk_label(w, refs[i].name[0] == '<' ? LBL_TEXT : LBL_ATTR,
                                                     refs[i].name));
    }
    uint64_t sz;
    if (heap) {
        struct { size_t off; const char *name; } hrefs[] = {
            { off->ht_name, "__name__" }, { off->ht_slots, "__slots__" },
            { off->ht_qualname, "__qualname__" }, { off->ht_module, "<ht_module>" } };
        for (size_t i = 0; i < sizeof hrefs / sizeof hrefs[0]; i++) {
            uint64_t v = u64at(tb, hrefs[i].off);
            if (v)
                pyheap_walk_edge(w, v, pyheap_walk_label(w, hrefs[i].name[0] == '<' ? LBL_TEXT : LBL_ATTR,
                                                         hrefs[i].name));
        }
        sz = off->heap_type_object;
        if (keys) {
            sz += pyheap_walk_dict_keys_size(w, keys);
            /* The attribute names its instances' split values are under. */
            pyheap_walk_keys_refs(w, keys, pyheap_walk_label_lit(w, LBL_TEXT, "<cached_keys>"));
        }
    } else {
        sz = off->type_object;
    }
    /* sys.getsizeof adds the pre-header of the metatype (its GC head): for
     * static types too in 3.11; in 3.12+ only for GC objects, and a static
     * type is not one (type_is_gc). */
    if (heap || !t->k.static_types_per_interp)
        sz += pyheap_walk_presize(w, o->type);
    *size = sz;
    return 0;
}
