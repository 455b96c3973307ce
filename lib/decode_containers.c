/* Containers: tuple, list, dict (combined, split, managed values), set. */
#include <string.h>

#include "walk.h"

#define CHUNK_WORDS 512

static uint64_t u64at(const unsigned char *buf, size_t off)
{
    uint64_t v;
    memcpy(&v, buf + off, sizeof v);
    return v;
}

static int read_ssize(struct walk *w, uint64_t addr, int64_t *out)
{
    uint64_t v;
    if (pyheap_walk_read_u64(w, addr, &v) < 0)
        return -1;
    *out = (int64_t)v;
    return 0;
}

int pyheap_walk_decode_tuple(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    int64_t n;
    if (read_ssize(w, o->addr + off->ob_size, &n) < 0 || n < 0 || n > WALK_MAX_TUPLE)
        return -1;
    if (pyheap_walk_ref_array(w, o->addr + off->tuple_ob_item, (uint64_t)n) < 0)
        return -1;
    *size = (uint64_t)(o->type->basicsize + o->type->itemsize * n) + pyheap_walk_presize(w, o->type);
    return 0;
}

int pyheap_walk_decode_list(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    int64_t n, alloc;
    uint64_t items;
    if (read_ssize(w, o->addr + off->ob_size, &n) < 0 ||
        read_ssize(w, o->addr + off->list_allocated, &alloc) < 0 ||
        pyheap_walk_read_u64(w, o->addr + off->list_ob_item, &items) < 0)
        return -1;
    if (n < 0 || alloc < 0 || n > alloc || alloc > WALK_MAX_LIST || (alloc > 0 && !items))
        return -1;
    if (n > 0 && pyheap_walk_ref_array(w, items, (uint64_t)n) < 0)
        return -1;
    *size = (uint64_t)(o->type->basicsize + alloc * 8) + pyheap_walk_presize(w, o->type);
    return 0;
}

/* A validated copy of a keys object's header. */
struct dkeys {
    int64_t refcnt;
    unsigned log2_size, log2_index_bytes, kind;
    int64_t usable, nentries;
    uint64_t entries;    /* address of the first entry */
    size_t entry_size;
    bool general;
};

static int parse_keys(const pyheap_target *t, uint64_t keys, const unsigned char *kb,
                      struct dkeys *d);

/* The header of the keys object at KEYS into KB (WALK_KEYS_HDR_MAX
 * bytes); 0, or -1 if it does not read. */
static int read_keys_header(struct walk *w, uint64_t keys, unsigned char *kb)
{
    size_t len = pyheap_walk_target(w)->off.dict_keys_object;
    return keys && len <= WALK_KEYS_HDR_MAX && pyheap_walk_read(w, keys, kb, len) == 0 ? 0 : -1;
}

static int read_keys(struct walk *w, uint64_t keys, struct dkeys *d)
{
    unsigned char kb[WALK_KEYS_HDR_MAX];
    if (read_keys_header(w, keys, kb) < 0)
        return -1;
    return parse_keys(pyheap_walk_target(w), keys, kb, d);
}

/* Validate the header KB of the keys object at KEYS into D. */
static int parse_keys(const pyheap_target *t, uint64_t keys, const unsigned char *kb,
                      struct dkeys *d)
{
    const struct pyheap_offsets *off = &t->off;
    d->refcnt = (int64_t)u64at(kb, off->dk_refcnt);
    d->log2_size = kb[off->dk_log2_size];
    d->log2_index_bytes = kb[off->dk_log2_index_bytes];
    d->kind = kb[off->dk_kind];
    d->usable = (int64_t)u64at(kb, off->dk_usable);
    d->nentries = (int64_t)u64at(kb, off->dk_nentries);
    /* The shared empty keys object (Py_EMPTY_KEYS) has log2_size 0 (and
     * log2_index_bytes 0 in 3.11, 3 in 3.13+). */
    bool empty = d->log2_size == 0 && d->log2_index_bytes <= 3 && d->nentries == 0 &&
                 d->usable == 0;
    if ((d->log2_size < 3 && !empty) || d->log2_size > WALK_MAX_DICT_LOG2 ||
        d->log2_index_bytes < d->log2_size || d->log2_index_bytes > d->log2_size + 3)
        return -1;
    int64_t cap = (int64_t)((((uint64_t)1 << d->log2_size) << 1) / 3);
    /* Py_EMPTY_KEYS is immortal: dk_refcnt 0xFFFFFFFF (3.13), 1<<63 (3.14+). */
    if ((d->refcnt <= 0 && !empty) || d->nentries < 0 || d->nentries > cap || d->usable < 0 ||
        d->usable > cap)
        return -1;
    if (d->kind == t->k.dict_kind_general) {
        d->general = true;
        d->entry_size = off->dict_key_entry;
    } else if (d->kind == t->k.dict_kind_unicode || d->kind == t->k.dict_kind_split) {
        d->general = false;
        d->entry_size = off->dict_unicode_entry;
    } else {
        return -1;
    }
    d->entries = keys + off->dk_indices + ((uint64_t)1 << d->log2_index_bytes);
    return 0;
}

static uint64_t keys_size(const pyheap_target *t, const struct dkeys *d)
{
    uint64_t usable = ((((uint64_t)1 << d->log2_size) << 1) / 3);
    return t->off.dict_keys_object + ((uint64_t)1 << d->log2_index_bytes) +
           usable * d->entry_size;
}

uint64_t pyheap_walk_dict_keys_size(struct walk *w, uint64_t keys)
{
    struct dkeys d;
    if (read_keys(w, keys, &d) < 0)
        return 0;
    return keys_size(pyheap_walk_target(w), &d);
}

/* Visit the entries of D: FN(w, key, value, arg) for each live one, or until
 * FN returns nonzero (returned). VALUES non-zero: a split table. */
typedef int (*entry_fn)(struct walk *w, uint64_t key, uint64_t value, void *arg);

/* The entries of D to visit. */
static int64_t entries_scanned(const struct dkeys *d)
{
    return d->nentries < WALK_MAX_DICT_SCAN ? d->nentries : WALK_MAX_DICT_SCAN;
}

/* Call FN for each entry in [FROM, TO) with a value (KEYS_ONLY: with a
 * key; the shared keys of split dicts hold no values). */
static int for_entries_range(struct walk *w, const struct dkeys *d, uint64_t values,
                             int64_t from, int64_t to, entry_fn fn, void *arg, bool keys_only)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    unsigned char buf[4096];
    uint64_t vbuf[CHUNK_WORDS];
    size_t per = sizeof buf / d->entry_size;
    if (per > CHUNK_WORDS)
        per = CHUNK_WORDS;
    for (int64_t i = from; i < to; i += (int64_t)per) {
        size_t m = (size_t)(to - i) < per ? (size_t)(to - i) : per;
        if (pyheap_walk_read(w, d->entries + (uint64_t)i * d->entry_size, buf, m * d->entry_size) < 0)
            return -1;
        if (values && pyheap_walk_read(w, values + off->dict_values_values + (uint64_t)i * 8,
                                       vbuf, m * 8) < 0)
            return -1;
        for (size_t j = 0; j < m; j++) {
            const unsigned char *e = buf + j * d->entry_size;
            uint64_t key = u64at(e, d->general ? off->dke_key : off->due_key);
            uint64_t value = values ? vbuf[j]
                                    : u64at(e, d->general ? off->dke_value : off->due_value);
            if (keys_only ? !key : !value)
                continue;
            int r = fn(w, key, value, arg);
            if (r)
                return r;
        }
    }
    return 0;
}

static int for_entries_x(struct walk *w, const struct dkeys *d, uint64_t values,
                         entry_fn fn, void *arg, bool keys_only)
{
    return for_entries_range(w, d, values, 0, entries_scanned(d), fn, arg, keys_only);
}

static int for_entries(struct walk *w, const struct dkeys *d, uint64_t values,
                       entry_fn fn, void *arg)
{
    return for_entries_x(w, d, values, fn, arg, false);
}

/* The values and their keys. ARG: the labels' pyheap_walk_label_key HOW
 * (an unsigned). */
static int ref_entry(struct walk *w, uint64_t key, uint64_t value, void *arg)
{
    pyheap_walk_edge(w, value,
                     pyheap_walk_label_key(w, key, *(const unsigned *)arg | WALK_KEY_DEFER));
    pyheap_walk_edge(w, key, WALK_LBL(LBL_DICT_KEY, 0));
    return 0;
}

/* Split values (a class's shared keys): the dict or instance holds only
 * the values, as gc.get_referents sees it; the class reports the names
 * (pyheap_walk_keys_refs). ARG: as ref_entry's. */
static int ref_value(struct walk *w, uint64_t key, uint64_t value, void *arg)
{
    pyheap_walk_edge(w, value,
                     pyheap_walk_label_key(w, key, *(const unsigned *)arg | WALK_KEY_DEFER));
    return 0;
}

/* The entries [FROM, TO) of a combined table (R: entry_range's). */
static int entry_range(struct walk *w, const struct walk_range *r, uint64_t from, uint64_t to)
{
    struct dkeys d = { .entries = r->arg[0], .entry_size = (size_t)r->arg[1],
                       .general = r->arg[2] != 0 };
    unsigned how = (unsigned)r->arg[3];
    return for_entries_range(w, &d, 0, (int64_t)from, (int64_t)to, ref_entry, &how, false) < 0
               ? -1 : 0;
}

static int ref_key(struct walk *w, uint64_t key, uint64_t value, void *arg)
{
    (void)value;
    pyheap_walk_edge(w, key, *(const uint32_t *)arg);
    return 0;
}

void pyheap_walk_keys_refs(struct walk *w, uint64_t keys, uint32_t label)
{
    struct dkeys d;
    if (!keys)
        return;
    if (read_keys(w, keys, &d) < 0) {
        pyheap_walk_skip(w);
        return;
    }
    if (for_entries_x(w, &d, 0, ref_key, &label, true) < 0)
        pyheap_walk_skip(w);
}

/* The dict at DICT: its keys object (validated into *D) and its split
 * values array (0 for a combined table). 0 or -1. */
static int read_dict_ptrs(struct walk *w, uint64_t dict, uint64_t *keys, uint64_t *values)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    return dict && pyheap_walk_read_u64(w, dict + off->dict_ma_keys, keys) == 0 &&
                   pyheap_walk_read_u64(w, dict + off->dict_ma_values, values) == 0
               ? 0 : -1;
}

static int read_dict(struct walk *w, uint64_t dict, uint64_t *keys, uint64_t *values,
                     struct dkeys *d)
{
    if (read_dict_ptrs(w, dict, keys, values) < 0)
        return -1;
    return read_keys(w, *keys, d);
}

int pyheap_walk_dict_foreach(struct walk *w, uint64_t dict,
                             int (*fn)(struct walk *w, uint64_t key, uint64_t value, void *arg),
                             void *arg)
{
    uint64_t keys, values;
    struct dkeys d;
    if (read_dict(w, dict, &keys, &values, &d) < 0)
        return -1;
    int r = for_entries(w, &d, values, fn, arg);
    return r < 0 ? -1 : r;
}

int pyheap_walk_decode_dict(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const pyheap_target *t = pyheap_walk_target(w);
    struct walk_head *h = (struct walk_head *)(void *)w;
    const struct pyheap_offsets *off = &t->off;
    uint64_t keys, values;
    struct dkeys d;
    /* An empty dict shares the static empty keys: nothing to read there
     * once they have been validated (parse_keys) in the image. */
    if (read_dict_ptrs(w, o->addr, &keys, &values) < 0)
        return -1;
    if (keys && keys == h->empty_keys && !values) {
        *size = (uint64_t)o->type->basicsize + pyheap_walk_presize(w, o->type);
        return 0;
    }
    if (read_keys(w, keys, &d) < 0)
        return -1;
    if (!h->empty_keys && d.log2_size == 0 && d.nentries == 0 && d.usable == 0 &&
        pyheap_target_in_image(t, keys, off->dict_keys_object))
        h->empty_keys = keys;
    unsigned plain = 0, how = d.nentries >= WALK_KEY_BUDGET_MIN ? WALK_KEY_BUDGET : 0;
    if (values ? for_entries(w, &d, values, ref_value, &plain) < 0
               : pyheap_walk_split(w, &(struct walk_range){
                     .fn = entry_range, .n = (uint64_t)entries_scanned(&d),
                     .arg = { d.entries, d.entry_size, d.general, how } }) < 0)
        return -1;
    uint64_t sz = (uint64_t)o->type->basicsize;
    if (values)
        sz += (uint64_t)(d.nentries + d.usable) * 8;
    if (d.refcnt == 1)
        sz += keys_size(t, &d);
    *size = sz + pyheap_walk_presize(w, o->type);
    return 0;
}

/* Report the N values at VALUES with C's labels. 0, or -1 if they do not
 * read. */
static int split_values_report(struct walk *w, uint64_t values,
                               const struct walk_split_cache *c, size_t n)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    uint64_t v[WALK_SPLIT_MAX];
    if (n && pyheap_walk_read(w, values + off->dict_values_values, v, n * 8) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (v[i])
            pyheap_walk_edge(w, v[i], c->label[i]);
    return 0;
}

/* Instances of one class share its keys: their attribute labels are
 * computed once per thread and keys layout (a shared keys object only ever
 * grows: same size, kind and entry counts mean the same entries). KB is
 * the keys' header D was validated from. 0, or -1 to take the general
 * path. */
static int split_values_refs(struct walk *w, uint64_t values, uint64_t keys,
                             const struct dkeys *d, const unsigned char *kb)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    if (d->nentries > WALK_SPLIT_MAX || d->entry_size > 64)
        return -1;
    size_t n = (size_t)d->nentries;
    struct walk_split_cache *c = pyheap_walk_split_cache(w, keys);
    if (c->keys != keys || c->nentries != d->nentries || c->usable != d->usable ||
        c->log2_size != d->log2_size || c->kind != d->kind) {
        unsigned char eb[WALK_SPLIT_MAX * 64];
        c->keys = 0;
        c->hdrlen = 0;
        if (n && pyheap_walk_read(w, d->entries, eb, n * d->entry_size) < 0)
            return -1;
        for (size_t i = 0; i < n; i++)
            c->label[i] = pyheap_walk_label_key(
                w, u64at(eb + i * d->entry_size, d->general ? off->dke_key : off->due_key),
                WALK_KEY_ATTR);
        c->keys = keys;
        c->nentries = d->nentries;
        c->usable = d->usable;
        c->log2_size = d->log2_size;
        c->kind = d->kind;
    }
    /* its reference count leads the header (all versions): the rest is
     * compared next time */
    if (off->dk_refcnt == 0 && off->dict_keys_object <= sizeof c->hdr) {
        memcpy(c->hdr, kb, off->dict_keys_object);
        c->hdrlen = off->dict_keys_object;
    }
    return split_values_report(w, values, c, n);
}

void pyheap_walk_values_refs(struct walk *w, uint64_t values, uint64_t keys)
{
    const pyheap_target *t = pyheap_walk_target(w);
    struct dkeys d;
    unsigned char kb[WALK_KEYS_HDR_MAX];
    if (!values)
        return;
    if (read_keys_header(w, keys, kb) < 0) {
        pyheap_walk_skip(w);
        return;
    }
    /* The class's shared keys as they were validated for its last
     * instance: the same labels, the same number of values (and a live
     * reference count: a freed block's first word may be cleared). */
    const struct walk_split_cache *c = pyheap_walk_split_cache(w, keys);
    if (c->keys == keys && c->hdrlen == t->off.dict_keys_object &&
        ((int64_t)u64at(kb, 0) > 0 || c->nentries == 0) &&
        memcmp(kb + 8, c->hdr + 8, c->hdrlen - 8) == 0 &&
        split_values_report(w, values, c, (size_t)c->nentries) == 0)
        return;
    if (parse_keys(t, keys, kb, &d) < 0) {
        pyheap_walk_skip(w);
        return;
    }
    if (split_values_refs(w, values, keys, &d, kb) == 0)
        return;
    unsigned attr = WALK_KEY_ATTR;
    if (for_entries(w, &d, values, ref_value, &attr) < 0)
        pyheap_walk_skip(w);
}

struct find_arg {
    const char *key;
    uint64_t value;
};

static int find_entry(struct walk *w, uint64_t key, uint64_t value, void *arg)
{
    struct find_arg *f = arg;
    char buf[64];
    if (pyheap_walk_str_utf8(w, key, buf, sizeof buf) == 0 && strcmp(buf, f->key) == 0) {
        f->value = value;
        return 1;
    }
    return 0;
}

int pyheap_walk_dict_get_str(struct walk *w, uint64_t dict, const char *key, uint64_t *value)
{
    struct find_arg f = { key, 0 };
    if (pyheap_walk_dict_foreach(w, dict, find_entry, &f) != 1)
        return -1;
    *value = f.value;
    return 0;
}

int pyheap_walk_decode_set(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    int64_t fill, used, mask;
    uint64_t table;
    if (read_ssize(w, o->addr + off->set_fill, &fill) < 0 ||
        read_ssize(w, o->addr + off->set_used, &used) < 0 ||
        read_ssize(w, o->addr + off->set_mask, &mask) < 0 ||
        pyheap_walk_read_u64(w, o->addr + off->set_table, &table) < 0)
        return -1;
    if (mask < 7 || mask > WALK_MAX_SET_MASK || ((mask + 1) & mask) != 0 || used < 0 ||
        fill < used || fill > mask + 1 || !table)
        return -1;
    uint64_t small = o->addr + off->set_smalltable;
    if (table == small && mask != 7)
        return -1;
    unsigned char buf[4096];
    size_t es = off->set_entry;
    if (es < 16 || es > 64)
        return -1;
    size_t per = sizeof buf / es;
    uint64_t n = (uint64_t)mask + 1;
    for (uint64_t i = 0; i < n; i += per) {
        size_t m = n - i < per ? (size_t)(n - i) : per;
        if (pyheap_walk_read(w, table + i * es, buf, m * es) < 0)
            return -1;
        for (size_t j = 0; j < m; j++) {
            uint64_t key = u64at(buf + j * es, off->setentry_key);
            int64_t hash = (int64_t)u64at(buf + j * es, off->setentry_hash);
            if (key && hash != -1) /* hash -1 marks the dummy of a deleted key */
                pyheap_walk_edge(w, key, WALK_LBL(LBL_ITEM, 0));
        }
    }
    uint64_t sz = (uint64_t)o->type->basicsize;
    if (table != small)
        sz += n * es;
    *size = sz + pyheap_walk_presize(w, o->type);
    return 0;
}
