/*
 * The walker's private interface: the scan context shared by walk.c and
 * the per-family decoders (decode_*.c), and the snapshot builder.
 *
 * Flow: walk.c seeds a queue with every object on the GC lists and every
 * interpreter / thread root, then pops addresses one by one: it validates
 * the header (refcount sane, ob_type a validated type object), looks up the
 * cached description of the type (walk_type), and hands the object to the
 * decoder of its kind. A decoder computes the object's size (what
 * sys.getsizeof would say) and reports each referent with pyheap_walk_ref (a
 * precise reference) or pyheap_walk_ref_maybe (a word found by a conservative scan).
 * Every remote read goes through the chunk cache and every length and loop
 * is bounded; an object that does not decode is counted in `skipped`.
 */
#ifndef PYHEAP_WALK_H
#define PYHEAP_WALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "internal.h"

/* How the built-in part of an object is decoded (from the first well-known
 * type on its tp_base chain). */
enum walk_kind {
    WALK_UNKNOWN = 0, /* no well-known base: conservative scan */
    WALK_OBJECT,      /* object / None: no built-in referents */
    WALK_TUPLE,
    WALK_LIST,
    WALK_DICT,
    WALK_SET,         /* set and frozenset */
    WALK_STR,
    WALK_BYTES,
    WALK_BYTEARRAY,
    WALK_INT,         /* int and bool */
    WALK_FLOAT,
    WALK_COMPLEX,
    WALK_TYPE,        /* type objects (any metatype) */
    WALK_MODULE,
    WALK_FUNCTION,
    WALK_CODE,
    WALK_CELL,
    WALK_METHOD,
    WALK_FRAME,
    WALK_GEN,         /* generator, coroutine, async generator */
    WALK_DEQUE,       /* collections.deque (private layout, checked by size) */
    WALK_ODICT,       /* collections.OrderedDict: a dict plus its node list */
    WALK_DEFAULTDICT, /* collections.defaultdict: a dict plus default_factory */
    WALK_PARTIAL,     /* functools.partial */
    WALK_WEAKREF,     /* weakref.ReferenceType / ProxyType / CallableProxyType */
    WALK_LOCAL,       /* _thread._local (threading.local) */
    WALK_LOCALDUMMY,  /* _thread._localdummy: a borrowed pointer to a local dict */
    WALK_PROPERTY,    /* property */
    WALK_CLASSMETHOD, /* staticmethod and classmethod */
    WALK_MEMORYVIEW,  /* memoryview */
    WALK_MANAGEDBUF,  /* managedbuffer (what a memoryview holds) */
    WALK_LOCAL_DICTS, /* _thread._local, 3.13+ layout (localdicts dict) */
    WALK_NKINDS
};

/* Bounds on untrusted sizes. */
#define WALK_MAX_TUPLE      ((int64_t)1 << 28)
#define WALK_MAX_LIST       ((int64_t)1 << 28)
#define WALK_MAX_DICT_LOG2  40
#define WALK_MAX_DICT_SCAN  ((int64_t)1 << 26) /* entries actually read */
#define WALK_MAX_SET_MASK   ((int64_t)1 << 30)
#define WALK_MAX_STR        ((int64_t)1 << 34)
#define WALK_MAX_VAR_ITEMS  ((int64_t)1 << 34)
#define WALK_MAX_BASICSIZE  (1 << 20)
#define WALK_MAX_SCAN_BYTES (64 * 1024)    /* conservative scan cap per object */
#define WALK_MAX_MEMBERS    256
#define WALK_MAX_MRO_DEPTH  64
#define WALK_MAX_REFCNT     ((int64_t)1 << 40)

/* Everything the walker needs to know about one type object, computed once
 * per type address. */
struct walk_type {
    uint64_t addr;
    uint64_t meta;           /* its ob_type */
    uint64_t flags;          /* tp_flags */
    int64_t basicsize, itemsize, dictoffset, weaklistoffset;
    enum walk_kind kind;
    bool heap;               /* Py_TPFLAGS_HEAPTYPE */
    bool gc;                 /* Py_TPFLAGS_HAVE_GC */
    bool managed_dict;       /* Py_TPFLAGS_MANAGED_DICT */
    bool preheader;          /* 2-word pre-header (MANAGED_DICT, 3.12+ also MANAGED_WEAKREF) */
    bool static_builtin;     /* _Py_TPFLAGS_STATIC_BUILTIN (3.12+) */
    uint32_t name;           /* index into the walk's type-name table */
    uint64_t cached_keys;    /* heap types: ht_cached_keys (for split values) */
    /* Region [scan_lo, scan_hi) of the fixed part not covered by the
     * built-in decoder: subclass slots, extension fields. Words in it at
     * member offsets are precise references, others conservative. */
    uint32_t scan_lo, scan_hi;
    bool scan_items;         /* also scan the variable part conservatively */
    uint32_t nmembers;       /* T_OBJECT / T_OBJECT_EX offsets */
    uint32_t *members;
    uint32_t *member_labels; /* nmembers edge labels (".name"), parallel */
};

/* ---- edge labels ----
 * Every reference a decoder reports carries a label packed in 32 bits:
 * kind (5 bits) | PYHEAP_EDGE_* flags (3 bits) | payload (24 bits). The
 * payload is a small integer or an index into the walk's table of label
 * strings (interned, moved into the snapshot); see docs/graph.md. */
enum walk_label_kind {
    LBL_NONE = 0,  /* unlabelled: "?" */
    LBL_KEY_STR,   /* ['text']: dict value under a str key (payload: string) */
    LBL_KEY_INT,   /* [n]: dict value under an int key 0 <= n < 2^24 */
    LBL_KEY_TEXT,  /* [text]: any other key, e.g. [-5], [<tuple>] (payload: string) */
    LBL_ATTR,      /* .name: attribute, slot or named field (payload: string) */
    LBL_INDEX,     /* [i]: sequence item i */
    LBL_ITEM,      /* [*]: set / deque item */
    LBL_DICT_KEY,  /* (key): the object is a dict key */
    LBL_LOCAL,     /* .f_locals['name']: frame local (payload: string) */
    LBL_OFFSET,    /* <+n>: a conservative-scan word at byte offset n */
    LBL_TEXT,      /* text as is, e.g. "<stack>" (payload: string) */
    LBL_NKINDS
};

#define WALK_LBL_PAYLOAD_MAX ((1u << 24) - 1)
/* The kind of a label left pending during the walk (WALK_KEY_DEFER): its
 * payload indexes the labels resolved after it (snapshot_graph_in.pending);
 * the build replaces it, so no snapshot holds it. */
#define WALK_LBL_PENDING 31u
/* In the resolved labels' table: the text was left out (the budget), an
 * edge with it counts in key_labels_elided. (A flag bit: the build drops
 * the table's flags.) */
#define WALK_LBL_PENDING_ELIDED (1u << 24)
#define WALK_LBL(kind, payload) (((uint32_t)(kind) << 27) | ((uint32_t)(payload) & WALK_LBL_PAYLOAD_MAX))
#define WALK_LBL_KIND(l)    ((unsigned)((l) >> 27))
#define WALK_LBL_FLAGS(l)   ((unsigned)(((l) >> 24) & 7u))
#define WALK_LBL_PAYLOAD(l) ((uint32_t)((l) & WALK_LBL_PAYLOAD_MAX))
#define WALK_LBL_WITH_FLAGS(l, f) ((l) | (((uint32_t)(f) & 7u) << 24))
#define WALK_LBL_NOFLAGS(l) ((l) & ~(7u << 24))

struct walk;

/* ---- walk.c: services for decoders ---- */

/* Cached remote read; 0 or -1 (freed / unmapped / torn). Notes a vanished
 * process so the scan can stop. Inline fast path: a read inside the chunk
 * of the previous one is a memcpy from the walk's window (struct walk
 * starts with it; the reader empties it when it evicts the chunk). */
#define WALK_WINDOW_MAX_READ 4096
#define WALK_NWIN 8           /* windows, by bits 16-18 of the address */
#define WALK_WIN_SHIFT 16
/* What the inline helpers see of a walker: the first member of struct walk. */
struct walk_head {
    struct pyheap_mem_window win[WALK_NWIN];
    const pyheap_target *t;
    /* The shared empty keys object (Py_EMPTY_KEYS) once one read and
     * validated in the interpreter's image (static: it stays what it was);
     * 0 until then. Owned by decode_containers.c. */
    uint64_t empty_keys;
};
int pyheap_walk_read_slow(struct walk *w, uint64_t addr, void *buf, size_t len);
static inline int pyheap_walk_read(struct walk *w, uint64_t addr, void *buf, size_t len)
{
    const struct pyheap_mem_window *win = ((const struct walk_head *)(const void *)w)->win +
                                          ((addr >> WALK_WIN_SHIFT) & (WALK_NWIN - 1));
    uint64_t off = addr - win->base;
    if (win->data && off < win->len && len <= win->len - off) {
        memcpy(buf, win->data + off, len);
        return 0;
    }
    return pyheap_walk_read_slow(w, addr, buf, len);
}
/* Read one pointer-sized word. */
static inline int pyheap_walk_read_u64(struct walk *w, uint64_t addr, uint64_t *out)
{
    return pyheap_walk_read(w, addr, out, sizeof *out);
}
/* A NUL-terminated string at ADDR, through this walker thread's reader
 * (never t->mem directly: each thread has its own): its length, or -1. */
ssize_t pyheap_walk_read_cstr(struct walk *w, uint64_t addr, char *buf, size_t cap);
/* A precise reference from the object being decoded. 0 is ignored. */
void pyheap_walk_ref(struct walk *w, uint64_t addr);
/* The same with an edge label (WALK_LBL..., flags included). Outside an
 * object (while the roots are walked) the reference is recorded as a root
 * named by the current root prefix and the label. */
void pyheap_walk_edge(struct walk *w, uint64_t addr, uint32_t label);
/* A label of KIND whose payload is the interned TEXT (LBL_NONE if the
 * table is full or memory runs out). */
uint32_t pyheap_walk_label(struct walk *w, enum walk_label_kind kind, const char *text);
/* pyheap_walk_label for a string literal TEXT, remembered per walker
 * thread by the literal's address (pyheap_walk_label takes the shared lock
 * and hashes the text: once per instance for ".__dict__" otherwise). TEXT
 * must be a literal: its address is never reused for other text. */
uint32_t pyheap_walk_label_lit(struct walk *w, enum walk_label_kind kind, const char *text);
/* The label of a dict value stored under the key object KEY: ['text'] for
 * a str, [n] for an int, [<type>] otherwise; cached per key address. HOW:
 * WALK_KEY_ATTR: .text for str keys (instance attributes);
 * WALK_KEY_BUDGET: a big dict's value, whose key's text is kept only
 * within the scan's budget of label texts (else [<str>] or [<int>],
 * counted in key_labels_elided). */
#define WALK_KEY_ATTR   1u
#define WALK_KEY_BUDGET 2u
/* WALK_KEY_DEFER: the label may be left pending (WALK_LBL_PENDING) when
 * the key's memory is not in the walker's cache, and resolved once the
 * walk is done, the pending keys read in address order (a dict of keys
 * that lie all over a churned heap: one page read per key otherwise).
 * Only for labels that go into edges as they are (dict values). */
#define WALK_KEY_DEFER  4u
/* Dicts of this many entries or more draw their key texts on the budget
 * (class namespaces, keyword arguments, module namespaces of fewer names
 * and most data never do). */
#define WALK_KEY_BUDGET_MIN 4096
uint32_t pyheap_walk_label_key(struct walk *w, uint64_t key, unsigned how);
/* The interned text of a label whose payload is a string ("" if none). */
const char *pyheap_walk_label_text(struct walk *w, uint32_t label);
/* Label for a tuple / list item at index I. */
uint32_t pyheap_walk_label_index(uint64_t i);
/* A word from a conservative scan that may be an object address. */
void pyheap_walk_ref_maybe(struct walk *w, uint64_t addr);
/* Count one rejected / torn item. */
void pyheap_walk_skip(struct walk *w);
/* Report the N references stored contiguously at ITEMS (a list's or
 * tuple's items) as edges labelled by index; a huge array is shared out
 * between the walker threads in chunks (walk.c). -1 if a part does not
 * read (the caller gives the object up). */
int pyheap_walk_ref_array(struct walk *w, uint64_t items, uint64_t n);
/* A container's N items, reported by FN(w, r, from, to) for the items
 * [from, to) (0, or -1 if they do not read); ARG: FN's, copied. */
struct walk_range {
    int (*fn)(struct walk *w, const struct walk_range *r, uint64_t from, uint64_t to);
    uint64_t n;
    uint64_t arg[4];
};
/* Report R's items: a huge container's (WALK_SPLIT_MIN items or more) in
 * chunks shared out between the walker threads, in order (walk.c). -1 if a
 * part does not read (the caller gives the object up). */
#define WALK_SPLIT_MIN 131072
int pyheap_walk_split(struct walk *w, const struct walk_range *r);
/* The validated type at ADDR (NULL if ADDR is not a valid type object). */
const struct walk_type *pyheap_walk_type_get(struct walk *w, uint64_t addr);
/* The target being walked. */
static inline const pyheap_target *pyheap_walk_target(const struct walk *w)
{
    return ((const struct walk_head *)(const void *)w)->t;
}
/* The object a _PyStackRef (3.14+) or plain PyObject* (before) slot
 * holds: 0 for NULL, tagged ints and invalid references. */
uint64_t pyheap_walk_stackref(const struct walk *w, uint64_t bits);
/* The code object of the _PyInterpreterFrame at IFRAME (f_code in 3.11,
 * f_executable untagged and checked to be a code object in 3.13+). 0 or -1. */
int pyheap_walk_iframe_code(struct walk *w, uint64_t iframe, uint64_t *code);
/* Intern a type name; returns its index (UINT32_MAX on allocation failure). */
uint32_t pyheap_walk_name_intern(struct walk *w, const char *name);

/* One object being decoded: header already read and validated. */
struct walk_obj {
    uint64_t addr;
    const struct walk_type *type;
};

/* ---- decoders: each returns 0 with *size set, or -1 when the object does
 * not decode (the caller counts it as skipped). ---- */

/* decode_containers.c */
int pyheap_walk_decode_tuple(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_list(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_dict(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_set(struct walk *w, const struct walk_obj *o, uint64_t *size);
/* Report the values (and keys) of the split/combined dict at DICT without
 * sizing it; also used for managed dicts. */
/* Size in bytes of a keys object (PyDictKeysObject + indices + entries), as
 * _PyDict_KeysSize computes it; 0 if unreadable. */
uint64_t pyheap_walk_dict_keys_size(struct walk *w, uint64_t keys);
/* Report the values of an inline values array for keys object KEYS,
 * labelled as attributes (.name). */
void pyheap_walk_values_refs(struct walk *w, uint64_t values, uint64_t keys);
/* A walker thread's cache of the attribute labels of one class's shared
 * keys, keyed by the keys object's address and layout. */
#define WALK_SPLIT_MAX 32
#define WALK_KEYS_HDR_MAX 64       /* bytes of a keys object's header kept */
struct walk_split_cache {
    uint64_t keys;             /* 0: empty */
    int64_t nentries, usable;
    unsigned log2_size, kind;
    uint32_t label[WALK_SPLIT_MAX];
    /* The header as last validated (hdrlen 0: none): a keys object that
     * reads the same but for its reference count needs no validation. */
    size_t hdrlen;
    unsigned char hdr[WALK_KEYS_HDR_MAX];
};
/* The slot for KEYS (direct-mapped: check its fields). */
struct walk_split_cache *pyheap_walk_split_cache(struct walk *w, uint64_t keys);
/* Report the keys of the keys object KEYS (a class's shared keys), with
 * LABEL. */
void pyheap_walk_keys_refs(struct walk *w, uint64_t keys, uint32_t label);
/* Visit the live entries of the dict at DICT: FN(w, key, value, arg) until
 * it returns nonzero (returned). 0, or -1 if the dict does not read. */
int pyheap_walk_dict_foreach(struct walk *w, uint64_t dict,
                             int (*fn)(struct walk *w, uint64_t key, uint64_t value, void *arg),
                             void *arg);
/* Find KEY (an ASCII str) in the dict at DICT; 0 with *value, or -1. */
int pyheap_walk_dict_get_str(struct walk *w, uint64_t dict, const char *key,
                      uint64_t *value);

/* decode_scalars.c */
int pyheap_walk_decode_str(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_bytes(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_bytearray(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_int(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_fixed(struct walk *w, const struct walk_obj *o, uint64_t *size);
/* Copy the text of the str at ADDR as UTF-8 into BUF (NUL-terminated,
 * truncated to CAP-1 bytes). 0 or -1 (not a readable str). */
int pyheap_walk_str_utf8(struct walk *w, uint64_t addr, char *buf, size_t cap);

/* decode_types.c */
int pyheap_walk_decode_type(struct walk *w, const struct walk_obj *o, uint64_t *size);
/* Build the description of the type at ADDR (already known to be a type
 * object whose metatype is valid). 0 or -1. */
int pyheap_walk_type_describe(struct walk *w, uint64_t addr, uint64_t meta,
                       struct walk_type *out);

/* decode_code.c */
int pyheap_walk_decode_module(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_function(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_code(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_cell(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_method(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_frame(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_gen(struct walk *w, const struct walk_obj *o, uint64_t *size);
/* Report the references of the _PyInterpreterFrame at IFRAME (f_func,
 * globals, builtins, locals, code, frame object, localsplus[0..stacktop)).
 * Locals are labelled .f_locals['x'], or OWNER.f_locals['x'] when OWNER
 * is not NULL (a generator's "gi_frame"). 0 or -1. */
int pyheap_walk_iframe_refs(struct walk *w, uint64_t iframe, const char *owner);

/* decode_extension.c: extension types whose layout is not in any header;
 * recognised by tp_name and a basic size that matches the known layout. */
/* The kind for the static type named NAME of basic size BASICSIZE, or
 * WALK_UNKNOWN. */
enum walk_kind pyheap_walk_extension_kind(const char *name, int64_t basicsize,
                                          int64_t itemsize);
int pyheap_walk_decode_deque(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_odict(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_defaultdict(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_partial(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_weakref(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_local(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_local_dicts(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_localdummy(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_property(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_classmethod(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_memoryview(struct walk *w, const struct walk_obj *o, uint64_t *size);
int pyheap_walk_decode_managedbuf(struct walk *w, const struct walk_obj *o, uint64_t *size);

/* decode_generic.c */
/* The parts a subclass / extension type adds beyond the built-in decoder:
 * slot members, instance dict (managed or tp_dictoffset), conservative
 * scan of the rest. */
void pyheap_walk_decode_extra(struct walk *w, const struct walk_obj *o);
/* Whether pyheap_walk_decode_extra has anything to do for instances of T
 * (most built-in types: nothing). */
static inline bool pyheap_walk_has_extra(const struct walk_type *t)
{
    return t->managed_dict || t->nmembers > 0 || (t->heap && t->dictoffset < 0) ||
           t->scan_hi > t->scan_lo || t->scan_items;
}
/* Bytes that sys.getsizeof adds before the object (GC head, managed dict
 * pre-header) for an instance of T. */
static inline uint64_t pyheap_walk_presize(const struct walk *w, const struct walk_type *t)
{
    const pyheap_target *tg = pyheap_walk_target(w);
    return (t->gc ? tg->off.gc_head : 0) + (t->preheader ? tg->k.preheader_managed : 0);
}
/* object.__sizeof__: basicsize + itemsize * |ob_size|; -1 if unreadable. */
int pyheap_walk_object_sizeof(struct walk *w, const struct walk_obj *o, uint64_t *size);

#endif
