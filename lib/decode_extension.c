/* Extension types whose instance layout is in no installed header but
 * whose contents live outside the instance body, so a conservative scan
 * of the body would miss them. Each is recognised by tp_name and accepted
 * only when tp_basicsize matches the layout below; otherwise the type is
 * scanned conservatively like any other.
 *
 * collections.deque (Modules/_collectionsmodule.c, unchanged 3.8-3.12):
 *   PyObject_VAR_HEAD (ob_size = length); block *leftblock, *rightblock;
 *   Py_ssize_t leftindex, rightindex; ... ; 216 bytes on 64-bit.
 *   block = { block *leftlink; PyObject *data[64]; block *rightlink; }.
 *   deque.__sizeof__ = basicsize + blocks * sizeof(block), blocks =
 *   (leftindex + length + 63) / 64.
 *
 * collections.OrderedDict (Objects/odictobject.c): a PyDictObject, then
 *   _ODictNode *od_first, *od_last; _ODictNode **od_fast_nodes;
 *   Py_ssize_t od_fast_nodes_size; void *od_resize_sentinel; size_t od_state;
 *   PyObject *od_inst_dict, *od_weakreflist; 112 bytes on 64-bit.
 *   Nodes are { next, prev, key, hash } (32 bytes); their keys are the
 *   dict's keys. __sizeof__ = dict's + 8 * od_fast_nodes_size
 *   + 32 * len when not empty.
 *
 * The rest hold their references in fixed fields (layouts of CPython
 * 3.11, 64-bit; each accepted only at the basic size given):
 *   collections.defaultdict (56): a PyDictObject, then default_factory.
 *   functools.partial (heap type, 64): fn, args, kw, dict, weakreflist,
 *     vectorcall at 16..56; 3.14+ (80): phcount and placeholder before
 *     vectorcall, the same fields at the same offsets.
 *   weakref.ReferenceType / ProxyType / CallableProxyType (64):
 *     wr_object (the weak referent), wr_callback, hash, wr_prev, wr_next
 *     (the other weak references to the same object), vectorcall.
 *   _thread._local (heap type, 64): key, args, kw, weakreflist, dummies
 *     (a dict: weak reference to a per-thread dummy -> that thread's
 *     attribute dict), wr_callback.
 *   _thread._local, 3.13+ (heap type, 56): args, kw, weakreflist,
 *     localdicts (a dict: per-thread sentinel localdummy -> that thread's
 *     attribute dict), thread_watchdogs (a set of weak references).
 *   _thread._localdummy (heap type, 32): localdict (a *borrowed* pointer
 *     to the thread's attribute dict: reported as a weak edge, it keeps
 *     nothing alive), weakreflist.
 *   property (64): fget, fset, fdel, doc, name, getter_doc.
 *   staticmethod / classmethod (32): callable, dict.
 *   memoryview (144, items 8): PyObject_VAR_HEAD, mbuf, hash, flags,
 *     exports, Py_buffer view (buf, obj, ...).
 *   managedbuffer (112): flags, exports, Py_buffer master (buf, obj, ...).
 */
#include <string.h>

#include "walk.h"

#define DEQUE_BASICSIZE 216
#define DEQUE_LEFTBLOCK 24
#define DEQUE_LEFTINDEX 40
#define DEQUE_RIGHTINDEX 48
#define BLOCKLEN 64
#define BLOCK_SIZE (8 + BLOCKLEN * 8 + 8)
#define MAX_DEQUE ((int64_t)1 << 32)

#define ODICT_BASICSIZE 112
#define ODICT_FIRST 48
#define ODICT_FAST_SIZE 72
#define ODICT_INST_DICT 96
#define ODICT_NODE_SIZE 32

#define DEFDICT_BASICSIZE 56
#define DEFDICT_FACTORY 48
#define PARTIAL_BASICSIZE 64
#define PARTIAL_BASICSIZE_314 80
#define WEAKREF_BASICSIZE 64
#define LOCAL_BASICSIZE 64
#define LOCAL_DUMMIES 48
#define LOCAL_BASICSIZE_313 56
#define LOCAL_LOCALDICTS_313 40
#define LOCALDUMMY_BASICSIZE 32
#define PROPERTY_BASICSIZE 64
#define CLASSMETHOD_BASICSIZE 32
#define MEMORYVIEW_BASICSIZE 144
#define MEMORYVIEW_MBUF 24
#define MEMORYVIEW_VIEW_OBJ 64
#define MANAGEDBUF_BASICSIZE 112
#define MANAGEDBUF_MASTER_OBJ 40

static const struct {
    const char *name;
    int64_t basicsize, itemsize;
    enum walk_kind kind;
} known[] = {
    { "collections.defaultdict", DEFDICT_BASICSIZE, 0, WALK_DEFAULTDICT },
    { "functools.partial", PARTIAL_BASICSIZE, 0, WALK_PARTIAL },
    { "functools.partial", PARTIAL_BASICSIZE_314, 0, WALK_PARTIAL },
    { "weakref.ReferenceType", WEAKREF_BASICSIZE, 0, WALK_WEAKREF },
    { "weakref.ProxyType", WEAKREF_BASICSIZE, 0, WALK_WEAKREF },
    { "weakref.CallableProxyType", WEAKREF_BASICSIZE, 0, WALK_WEAKREF },
    { "_thread._local", LOCAL_BASICSIZE, 0, WALK_LOCAL },
    { "_thread._local", LOCAL_BASICSIZE_313, 0, WALK_LOCAL_DICTS },
    { "_thread._localdummy", LOCALDUMMY_BASICSIZE, 0, WALK_LOCALDUMMY },
    { "property", PROPERTY_BASICSIZE, 0, WALK_PROPERTY },
    { "staticmethod", CLASSMETHOD_BASICSIZE, 0, WALK_CLASSMETHOD },
    { "classmethod", CLASSMETHOD_BASICSIZE, 0, WALK_CLASSMETHOD },
    { "memoryview", MEMORYVIEW_BASICSIZE, 8, WALK_MEMORYVIEW },
    { "managedbuffer", MANAGEDBUF_BASICSIZE, 0, WALK_MANAGEDBUF },
};

enum walk_kind pyheap_walk_extension_kind(const char *name, int64_t basicsize,
                                          int64_t itemsize)
{
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(name, known[i].name) == 0 && basicsize == known[i].basicsize &&
            itemsize == known[i].itemsize)
            return known[i].kind;
    if (strcmp(name, "collections.deque") == 0 && basicsize == DEQUE_BASICSIZE &&
        itemsize == 0)
        return WALK_DEQUE;
    if (strcmp(name, "collections.OrderedDict") == 0 && basicsize == ODICT_BASICSIZE &&
        itemsize == 0)
        return WALK_ODICT;
    return WALK_UNKNOWN;
}

int pyheap_walk_decode_deque(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    uint64_t len, block, li, ri;
    if (pyheap_walk_read_u64(w, o->addr + off->ob_size, &len) < 0 ||
        pyheap_walk_read_u64(w, o->addr + DEQUE_LEFTBLOCK, &block) < 0 ||
        pyheap_walk_read_u64(w, o->addr + DEQUE_LEFTINDEX, &li) < 0 ||
        pyheap_walk_read_u64(w, o->addr + DEQUE_RIGHTINDEX, &ri) < 0)
        return -1;
    if ((int64_t)len < 0 || (int64_t)len > MAX_DEQUE || li >= BLOCKLEN || ri >= BLOCKLEN ||
        !block)
        return -1;
    uint64_t nblocks = (li + len + BLOCKLEN - 1) / BLOCKLEN;
    uint64_t left = len, index = li;
    uint64_t data[BLOCKLEN + 2];
    for (uint64_t b = 0; b < nblocks && left > 0; b++) {
        if (!block || pyheap_walk_read(w, block, data, sizeof data) < 0)
            return -1;
        for (; index < BLOCKLEN && left > 0; index++, left--)
            pyheap_walk_edge(w, data[1 + index], WALK_LBL(LBL_ITEM, 0));
        index = 0;
        block = data[BLOCKLEN + 1]; /* rightlink */
    }
    *size = (uint64_t)o->type->basicsize + (nblocks ? nblocks : 0) * BLOCK_SIZE +
            pyheap_walk_presize(w, o->type);
    return 0;
}

int pyheap_walk_decode_odict(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    uint64_t dsize, first, fast, inst, used;
    if (pyheap_walk_decode_dict(w, o, &dsize) < 0 ||
        pyheap_walk_read_u64(w, o->addr + ODICT_FIRST, &first) < 0 ||
        pyheap_walk_read_u64(w, o->addr + ODICT_FAST_SIZE, &fast) < 0 ||
        pyheap_walk_read_u64(w, o->addr + ODICT_INST_DICT, &inst) < 0 ||
        pyheap_walk_read_u64(w, o->addr + off->dict_ma_used, &used) < 0)
        return -1;
    if ((int64_t)fast < 0 || (int64_t)fast > ((int64_t)1 << WALK_MAX_DICT_LOG2) ||
        (int64_t)used < 0 || (int64_t)used > ((int64_t)1 << WALK_MAX_DICT_LOG2))
        return -1;
    if (inst)
        pyheap_walk_edge(w, inst, pyheap_walk_label_lit(w, LBL_ATTR, "__dict__"));
    *size = dsize + fast * 8 + (first ? used * ODICT_NODE_SIZE : 0);
    return 0;
}

/* A pointer field of a decoded object. */
struct xfield {
    uint32_t off;
    const char *name;  /* ".name" unless it starts with '<' or '(' */
    unsigned flags;
};

/* Read the fixed fields F of O (all inside its basic size) and report them. */
static int ref_xfields(struct walk *w, const struct walk_obj *o, const struct xfield *f, size_t n)
{
    unsigned char b[160];
    size_t len = (size_t)o->type->basicsize;
    if (len > sizeof b)
        len = sizeof b;
    if (pyheap_walk_read(w, o->addr, b, len) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        uint64_t v;
        if (f[i].off + 8 > len)
            continue;
        memcpy(&v, b + f[i].off, sizeof v);
        if (!v)
            continue;
        char c = f[i].name[0];
        uint32_t l = pyheap_walk_label(w, c == '<' || c == '(' ? LBL_TEXT : LBL_ATTR, f[i].name);
        pyheap_walk_edge(w, v, WALK_LBL_WITH_FLAGS(l, f[i].flags));
    }
    return 0;
}

#define NX(a) (sizeof (a) / sizeof (a)[0])

int pyheap_walk_decode_defaultdict(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    static const struct xfield f[] = { { DEFDICT_FACTORY, "default_factory", 0 } };
    if (pyheap_walk_decode_dict(w, o, size) < 0 || ref_xfields(w, o, f, NX(f)) < 0)
        return -1;
    return 0;
}

int pyheap_walk_decode_partial(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    static const struct xfield f[] = {
        { 16, "func", 0 }, { 24, "args", 0 }, { 32, "keywords", 0 }, { 40, "__dict__", 0 } };
    if (ref_xfields(w, o, f, NX(f)) < 0)
        return -1;
    return pyheap_walk_decode_fixed(w, o, size);
}

int pyheap_walk_decode_weakref(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    /* The referent is reached by calling the reference: label "()". The
     * neighbours in the referent's list of weak references are weak too. */
    static const struct xfield f[] = {
        { 16, "()", PYHEAP_EDGE_WEAK }, { 24, "__callback__", 0 },
        { 40, "<wr_prev>", PYHEAP_EDGE_WEAK }, { 48, "<wr_next>", PYHEAP_EDGE_WEAK } };
    if (ref_xfields(w, o, f, NX(f)) < 0)
        return -1;
    return pyheap_walk_decode_fixed(w, o, size);
}

static int local_dict(struct walk *w, uint64_t key, uint64_t value, void *arg)
{
    (void)key;
    pyheap_walk_edge(w, value, *(const uint32_t *)arg);
    return 0;
}

int pyheap_walk_decode_local(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    static const struct xfield f[] = {
        { 16, "<key>", 0 }, { 24, "<args>", 0 }, { 32, "<kw>", 0 },
        { LOCAL_DUMMIES, "<dummies>", 0 }, { 56, "<wr_callback>", 0 } };
    if (ref_xfields(w, o, f, NX(f)) < 0)
        return -1;
    /* Each thread's attribute dict, as `local.__dict__` shows it in that
     * thread: the values of the dummies dict. */
    uint64_t dummies;
    if (pyheap_walk_read_u64(w, o->addr + LOCAL_DUMMIES, &dummies) == 0 && dummies) {
        uint32_t l = pyheap_walk_label_lit(w, LBL_ATTR, "__dict__");
        if (pyheap_walk_dict_foreach(w, dummies, local_dict, &l) < 0)
            pyheap_walk_skip(w);
    }
    return pyheap_walk_decode_fixed(w, o, size);
}

int pyheap_walk_decode_local_dicts(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    static const struct xfield f[] = {
        { 16, "<args>", 0 }, { 24, "<kw>", 0 }, { LOCAL_LOCALDICTS_313, "<localdicts>", 0 },
        { 48, "<thread_watchdogs>", 0 } };
    if (ref_xfields(w, o, f, NX(f)) < 0)
        return -1;
    /* Each thread's attribute dict: the values of localdicts. */
    uint64_t dicts;
    if (pyheap_walk_read_u64(w, o->addr + LOCAL_LOCALDICTS_313, &dicts) == 0 && dicts) {
        uint32_t l = pyheap_walk_label_lit(w, LBL_ATTR, "__dict__");
        if (pyheap_walk_dict_foreach(w, dicts, local_dict, &l) < 0)
            pyheap_walk_skip(w);
    }
    return pyheap_walk_decode_fixed(w, o, size);
}

int pyheap_walk_decode_localdummy(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    static const struct xfield f[] = { { 16, "<localdict>", PYHEAP_EDGE_WEAK } };
    if (ref_xfields(w, o, f, NX(f)) < 0)
        return -1;
    return pyheap_walk_decode_fixed(w, o, size);
}

int pyheap_walk_decode_property(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    static const struct xfield f[] = {
        { 16, "fget", 0 }, { 24, "fset", 0 }, { 32, "fdel", 0 }, { 40, "__doc__", 0 },
        { 48, "<name>", 0 } };
    if (ref_xfields(w, o, f, NX(f)) < 0)
        return -1;
    return pyheap_walk_decode_fixed(w, o, size);
}

int pyheap_walk_decode_classmethod(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    static const struct xfield f[] = { { 16, "__func__", 0 }, { 24, "__dict__", 0 } };
    if (ref_xfields(w, o, f, NX(f)) < 0)
        return -1;
    return pyheap_walk_decode_fixed(w, o, size);
}

int pyheap_walk_decode_memoryview(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    static const struct xfield f[] = { { MEMORYVIEW_MBUF, "<mbuf>", 0 },
                                       { MEMORYVIEW_VIEW_OBJ, "obj", 0 } };
    if (ref_xfields(w, o, f, NX(f)) < 0)
        return -1;
    return pyheap_walk_decode_fixed(w, o, size);
}

int pyheap_walk_decode_managedbuf(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    static const struct xfield f[] = { { MANAGEDBUF_MASTER_OBJ, "obj", 0 } };
    if (ref_xfields(w, o, f, NX(f)) < 0)
        return -1;
    return pyheap_walk_decode_fixed(w, o, size);
}
