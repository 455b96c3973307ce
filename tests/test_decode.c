/* The walker and decoders on in-memory images: a hand-built 3.11 heap
 * (layout from the generated table) served by pyheap_mem_open_image, with
 * sizes checked against what CPython 3.11's sys.getsizeof returns for the
 * same objects (figures measured with /usr/bin/python3.11), and torn or
 * garbage objects that must be rejected and counted, never crash. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "snapshot.h"

#define BASE 0x10000000ULL
#define HEAP_SIZE (1u << 20)

struct fake {
    unsigned char *buf;
    size_t used;
    pyheap_target *t;
    const struct pyheap_offsets *o;
    uint64_t gen0;       /* gen0 list head */
    uint64_t tail;       /* last GC head linked */
    uint64_t ty_type, ty_int, ty_str, ty_tuple, ty_list, ty_dict, ty_set, ty_float,
        ty_object;
};

static unsigned char *at(struct fake *f, uint64_t addr)
{
    ck_assert(addr >= BASE && addr - BASE < HEAP_SIZE);
    return f->buf + (addr - BASE);
}

static void put64(struct fake *f, uint64_t addr, uint64_t v)
{
    memcpy(at(f, addr), &v, 8);
}

static void put32(struct fake *f, uint64_t addr, uint32_t v)
{
    memcpy(at(f, addr), &v, 4);
}

static uint64_t alloc(struct fake *f, size_t n)
{
    f->used = (f->used + 15) & ~(size_t)15;
    ck_assert(f->used + n <= HEAP_SIZE);
    uint64_t a = BASE + f->used;
    f->used += n;
    return a;
}

static uint64_t cstr(struct fake *f, const char *s)
{
    uint64_t a = alloc(f, strlen(s) + 1);
    memcpy(at(f, a), s, strlen(s) + 1);
    return a;
}

static void header(struct fake *f, uint64_t obj, uint64_t type)
{
    put64(f, obj + f->o->ob_refcnt, 1);
    put64(f, obj + f->o->ob_type, type);
}

/* A static type object; ob_type is `type` (or itself for `type`). */
static uint64_t mktype(struct fake *f, const char *name, int64_t basic, int64_t item,
                       uint64_t flags, uint64_t base)
{
    uint64_t a = alloc(f, f->o->type_object);
    header(f, a, f->ty_type ? f->ty_type : a);
    put64(f, a + f->o->tp_name, cstr(f, name));
    put64(f, a + f->o->tp_basicsize, (uint64_t)basic);
    put64(f, a + f->o->tp_itemsize, (uint64_t)item);
    put64(f, a + f->o->tp_flags, flags);
    put64(f, a + f->o->tp_base, base);
    return a;
}

/* Link a GC object (its head precedes OBJ) at the end of gen0. */
static void gc_link(struct fake *f, uint64_t obj)
{
    uint64_t g = obj - f->o->gc_head;
    put64(f, g + f->o->gc_prev, f->tail);
    put64(f, g + f->o->gc_next, f->gen0);
    put64(f, f->tail + f->o->gc_next, g);
    put64(f, f->gen0 + f->o->gc_prev, g);
    f->tail = g;
}

static uint64_t gc_alloc(struct fake *f, size_t n, uint64_t type)
{
    uint64_t g = alloc(f, f->o->gc_head + n);
    uint64_t obj = g + f->o->gc_head;
    header(f, obj, type);
    gc_link(f, obj);
    return obj;
}

static uint64_t mkint(struct fake *f, int64_t ndigits)
{
    uint64_t a = alloc(f, f->o->long_ob_digit + 4 * (size_t)(ndigits < 0 ? -ndigits : ndigits) + 4);
    header(f, a, f->ty_int);
    put64(f, a + f->o->ob_size, (uint64_t)ndigits);
    return a;
}

/* A compact str of LEN characters of KIND (1, 2, 4); ASCII when ascii. */
static uint64_t mkstr(struct fake *f, int64_t len, unsigned kind, bool ascii)
{
    const struct pyheap_consts *k = &f->t->k;
    size_t hdr = ascii ? f->o->ascii_object : f->o->compact_unicode_object;
    uint64_t a = alloc(f, hdr + (size_t)(len + 1) * kind);
    header(f, a, f->ty_str);
    put64(f, a + f->o->unicode_length, (uint64_t)len);
    put64(f, a + f->o->unicode_hash, (uint64_t)-1);
    uint32_t state = (kind << k->unicode_kind_shift) | (1u << k->unicode_compact_bit) |
                     (ascii ? 1u << k->unicode_ascii_bit : 0) |
                     (1u << (k->unicode_ascii_bit + 1));
    put32(f, a + f->o->unicode_state, state);
    unsigned char *d = at(f, a + hdr);
    for (int64_t i = 0; i < len * kind; i++)
        d[i] = (unsigned char)('a' + i % 26);
    return a;
}

static uint64_t mktuple(struct fake *f, size_t n, const uint64_t *items)
{
    uint64_t a = gc_alloc(f, f->o->tuple_ob_item + 8 * n, f->ty_tuple);
    put64(f, a + f->o->ob_size, n);
    for (size_t i = 0; i < n; i++)
        put64(f, a + f->o->tuple_ob_item + 8 * i, items[i]);
    return a;
}

/* A dict keys object of 8 slots holding N entries. */
static uint64_t mkkeys(struct fake *f, unsigned kind, int64_t refcnt, size_t n,
                       const uint64_t *keys, const uint64_t *values)
{
    bool general = kind == f->t->k.dict_kind_general;
    size_t es = general ? f->o->dict_key_entry : f->o->dict_unicode_entry;
    uint64_t a = alloc(f, f->o->dict_keys_object + 8 + 5 * es);
    put64(f, a + f->o->dk_refcnt, (uint64_t)refcnt);
    at(f, a + f->o->dk_log2_size)[0] = 3;
    at(f, a + f->o->dk_log2_index_bytes)[0] = 3;
    at(f, a + f->o->dk_kind)[0] = (unsigned char)kind;
    put64(f, a + f->o->dk_usable, 5 - n);
    put64(f, a + f->o->dk_nentries, n);
    uint64_t e = a + f->o->dk_indices + 8;
    for (size_t i = 0; i < n; i++) {
        if (general) {
            put64(f, e + i * es + f->o->dke_key, keys[i]);
            if (values)
                put64(f, e + i * es + f->o->dke_value, values[i]);
        } else {
            put64(f, e + i * es + f->o->due_key, keys[i]);
            if (values)
                put64(f, e + i * es + f->o->due_value, values[i]);
        }
    }
    return a;
}

static uint64_t mkdict(struct fake *f, uint64_t keys, uint64_t values, int64_t used)
{
    uint64_t a = gc_alloc(f, 48, f->ty_dict);
    put64(f, a + f->o->dict_ma_used, (uint64_t)used);
    put64(f, a + f->o->dict_ma_keys, keys);
    put64(f, a + f->o->dict_ma_values, values);
    return a;
}

static void fake_init(struct fake *f)
{
    memset(f, 0, sizeof *f);
    f->buf = calloc(1, HEAP_SIZE);
    ck_assert_ptr_nonnull(f->buf);
    f->t = calloc(1, sizeof *f->t);
    ck_assert_ptr_nonnull(f->t);
    f->t->major = 3;
    f->t->minor = 11;
    f->t->off = pyheap_table_py3_11.off;
    f->o = &f->t->off;
    pyheap_error e;
    ck_assert_int_eq(pyheap_consts_init(f->t, &e), 0);
    const struct pyheap_consts *k = &f->t->k;
    uint64_t gcf = k->tpflags_have_gc;
    f->ty_type = mktype(f, "type", (int64_t)f->o->heap_type_object, 40,
                        gcf | k->tpflags_type_subclass, 0);
    f->ty_object = mktype(f, "object", 16, 0, 0, 0);
    put64(f, f->ty_type + f->o->tp_base, f->ty_object);
    f->ty_int = mktype(f, "int", 24, 4, k->tpflags_long_subclass, f->ty_object);
    f->ty_str = mktype(f, "str", (int64_t)f->o->unicode_object, 0,
                       k->tpflags_unicode_subclass, f->ty_object);
    f->ty_tuple = mktype(f, "tuple", 24, 8, gcf | k->tpflags_tuple_subclass, f->ty_object);
    f->ty_list = mktype(f, "list", 40, 0, gcf | k->tpflags_list_subclass, f->ty_object);
    f->ty_dict = mktype(f, "dict", 48, 0, gcf | k->tpflags_dict_subclass, f->ty_object);
    f->ty_set = mktype(f, "set", 200, 0, gcf, f->ty_object);
    f->ty_float = mktype(f, "float", 24, 0, 0, f->ty_object);
    struct pyheap_well_known *wk = &f->t->wk;
    wk->type = f->ty_type;
    wk->object = f->ty_object;
    wk->int_ = f->ty_int;
    wk->str = f->ty_str;
    wk->tuple = f->ty_tuple;
    wk->list = f->ty_list;
    wk->dict = f->ty_dict;
    wk->set = f->ty_set;
    wk->float_ = f->ty_float;
    /* Runtime -> one interpreter with empty GC lists and no threads. */
    uint64_t interp = alloc(f, 4096);
    uint64_t runtime = alloc(f, 256);
    put64(f, runtime + f->o->runtime_interpreters_head, interp);
    f->t->runtime_addr = runtime;
    uint64_t gcs = interp + f->o->interp_gc;
    for (int i = 0; i < 4; i++) {
        uint64_t h = i < 3 ? gcs + f->o->gcstate_generations + (uint64_t)i * f->o->gc_generation
                           : gcs + f->o->gcstate_permanent_generation;
        h += f->o->gc_generation_head;
        put64(f, h + f->o->gc_next, h);
        put64(f, h + f->o->gc_prev, h);
    }
    f->gen0 = gcs + f->o->gcstate_generations + f->o->gc_generation_head;
    f->tail = f->gen0;
}

/* Register the image, walk it; the caller frees the snapshot. */
static pyheap_snapshot *fake_walk(struct fake *f, pyheap_error *e)
{
    ck_assert_int_eq(pyheap_mem_open_image(&f->t->mem, e), 0);
    ck_assert_int_eq(pyheap_mem_image_add(f->t->mem, BASE, f->buf, HEAP_SIZE, e), 0);
    pyheap_snapshot *s = NULL;
    ck_assert_msg(pyheap_walk(f->t, NULL, &s, e) == 0, "walk failed: %s", e->msg);
    return s;
}

static void fake_free(struct fake *f)
{
    pyheap_target_free(f->t);
    free(f->buf);
}

/* Size of the object at ADDR in S, or -1 if absent. */
static int64_t size_of(const pyheap_snapshot *s, uint64_t addr)
{
    for (size_t i = 0; i < pyheap_snapshot_count(s); i++)
        if (pyheap_snapshot_addr(s, i) == addr)
            return (int64_t)pyheap_snapshot_size(s, i);
    return -1;
}

static const char *type_of(const pyheap_snapshot *s, uint64_t addr)
{
    for (size_t i = 0; i < pyheap_snapshot_count(s); i++)
        if (pyheap_snapshot_addr(s, i) == addr)
            return pyheap_snapshot_type_name(s, pyheap_snapshot_type(s, i));
    return NULL;
}

START_TEST(tuple_list_scalars)
{
    struct fake f;
    fake_init(&f);
    uint64_t i0 = mkint(&f, 0), i1 = mkint(&f, 1), i3 = mkint(&f, -3);
    uint64_t sa = mkstr(&f, 2, 1, true);     /* 'hi' */
    uint64_t sl = mkstr(&f, 2, 1, false);    /* latin-1 */
    uint64_t s2 = mkstr(&f, 1, 2, false);    /* UCS2 */
    uint64_t s4 = mkstr(&f, 1, 4, false);    /* UCS4 */
    uint64_t fl = alloc(&f, 24);
    header(&f, fl, f.ty_float);
    uint64_t items[] = { i0, i1, i3, sa, sl, s2, s4, fl };
    uint64_t tup = mktuple(&f, 8, items);
    /* A list with 2 items and room for 4, not on a GC list: reached only
     * through the tuple below. */
    uint64_t lst = alloc(&f, 16 + 40) + 16;
    header(&f, lst, f.ty_list);
    uint64_t arr = alloc(&f, 32);
    put64(&f, arr, tup);
    put64(&f, arr + 8, i1);
    put64(&f, lst + f.o->ob_size, 2);
    put64(&f, lst + f.o->list_ob_item, arr);
    put64(&f, lst + f.o->list_allocated, 4);
    uint64_t holder[] = { lst };
    mktuple(&f, 1, holder);
    pyheap_error e;
    pyheap_snapshot *s = fake_walk(&f, &e);
    /* sys.getsizeof: 0 -> 28, 1 -> 28, -(3 digits) -> 36, 'hi' -> 51,
     * 'h\xe9' -> 75, '\u20ac' -> 76, '\U0001f600' -> 80, float 24,
     * 8-tuple 24+64+16, list of 4 slots 40+32+16. */
    ck_assert_int_eq(size_of(s, i0), 28);
    ck_assert_int_eq(size_of(s, i1), 28);
    ck_assert_int_eq(size_of(s, i3), 36);
    ck_assert_int_eq(size_of(s, sa), 51);
    ck_assert_int_eq(size_of(s, sl), 75);
    ck_assert_int_eq(size_of(s, s2), 76);
    ck_assert_int_eq(size_of(s, s4), 80);
    ck_assert_int_eq(size_of(s, fl), 24);
    ck_assert_int_eq(size_of(s, tup), 104);
    ck_assert_int_eq(size_of(s, lst), 88);
    ck_assert_str_eq(type_of(s, sa), "str");
    ck_assert_str_eq(type_of(s, lst), "list");
    /* Types are objects too: static type objects are 408 + GC head. */
    ck_assert_int_eq(size_of(s, f.ty_int), 424);
    ck_assert_str_eq(type_of(s, f.ty_int), "type");
    const pyheap_scan_stats *st = pyheap_snapshot_stats(s);
    ck_assert_uint_eq(st->skipped, 0);
    ck_assert_uint_eq(st->gc_tracked, 2);
    /* 8 scalars + 2 tuples + list + types int, str, float, tuple, list,
     * type and object (tp_base of each) */
    ck_assert_uint_eq(pyheap_snapshot_count(s), 18);
    pyheap_snapshot_free(s);
    fake_free(&f);
}
END_TEST

START_TEST(dicts)
{
    struct fake f;
    fake_init(&f);
    const struct pyheap_consts *k = &f.t->k;
    uint64_t i1 = mkint(&f, 1), i2 = mkint(&f, 1);
    uint64_t ka = mkstr(&f, 1, 1, true), kb = mkstr(&f, 1, 1, true);
    /* {1: 2}: general keys -> 224 */
    uint64_t gk[] = { i1 }, gv[] = { i2 };
    uint64_t dg = mkdict(&f, mkkeys(&f, k->dict_kind_general, 1, 1, gk, gv), 0, 1);
    /* {'a': 1}: unicode keys -> 184 */
    uint64_t uk[] = { ka }, uv[] = { i1 };
    uint64_t du = mkdict(&f, mkkeys(&f, k->dict_kind_unicode, 1, 1, uk, uv), 0, 1);
    /* A split dict sharing keys (refcnt 2) with a values array: 48 + 16 +
     * (nentries + usable) * 8 = 104. */
    uint64_t sk[] = { ka, kb };
    uint64_t skeys = mkkeys(&f, k->dict_kind_split, 2, 2, sk, NULL);
    uint64_t vals = alloc(&f, 5 * 8);
    put64(&f, vals, i2);
    put64(&f, vals + 8, ka);
    uint64_t ds = mkdict(&f, skeys, vals, 2);
    pyheap_error e;
    pyheap_snapshot *s = fake_walk(&f, &e);
    ck_assert_int_eq(size_of(s, dg), 224);
    ck_assert_int_eq(size_of(s, du), 184);
    ck_assert_int_eq(size_of(s, ds), 104);
    /* Keys and values reached through the dicts only; a split dict holds
     * its values, not the shared keys' names (as gc.get_referents): kb,
     * a name with no value, is not reached. */
    ck_assert_int_eq(size_of(s, i1), 28);
    ck_assert_int_eq(size_of(s, i2), 28);
    ck_assert_int_eq(size_of(s, ka), 50);
    ck_assert_int_eq(size_of(s, kb), -1);
    ck_assert_uint_eq(pyheap_snapshot_stats(s)->skipped, 0);
    pyheap_snapshot_free(s);
    fake_free(&f);
}
END_TEST

static uint64_t mkset(struct fake *f, size_t nslots, const uint64_t *keys, size_t n,
                      size_t ndummy)
{
    uint64_t a = gc_alloc(f, 200, f->ty_set);
    uint64_t small = a + f->o->set_smalltable;
    uint64_t table = nslots == 8 ? small : alloc(f, nslots * f->o->set_entry);
    for (size_t i = 0; i < n + ndummy; i++) {
        uint64_t e = table + i * f->o->set_entry;
        put64(f, e + f->o->setentry_key, i < n ? keys[i] : f->ty_float /* any dummy */);
        put64(f, e + f->o->setentry_hash, i < n ? 1000 + i : (uint64_t)-1);
    }
    put64(f, a + f->o->set_fill, n + ndummy);
    put64(f, a + f->o->set_used, n);
    put64(f, a + f->o->set_mask, nslots - 1);
    put64(f, a + f->o->set_table, table);
    return a;
}

START_TEST(sets)
{
    struct fake f;
    fake_init(&f);
    uint64_t k1 = mkint(&f, 1), k2 = mkint(&f, 2);
    uint64_t keys[] = { k1, k2 };
    uint64_t small = mkset(&f, 8, keys, 2, 1);
    uint64_t big = mkset(&f, 32, keys, 1, 0);
    pyheap_error e;
    pyheap_snapshot *s = fake_walk(&f, &e);
    ck_assert_int_eq(size_of(s, small), 216);           /* sys.getsizeof({1, 2}) */
    ck_assert_int_eq(size_of(s, big), 216 + 32 * 16);    /* + a separate table */
    ck_assert_int_eq(size_of(s, k2), 32);
    /* The dummy entry (hash -1) is not a reference: float's type object is
     * reached only from it, so it must be absent. */
    ck_assert_int_eq(size_of(s, f.ty_float), -1);
    ck_assert_uint_eq(pyheap_snapshot_stats(s)->skipped, 0);
    pyheap_snapshot_free(s);
    fake_free(&f);
}
END_TEST

START_TEST(garbage_is_rejected)
{
    struct fake f;
    fake_init(&f);
    /* A tuple claiming 2^40 items. */
    uint64_t bad = gc_alloc(&f, 32, f.ty_tuple);
    put64(&f, bad + f.o->ob_size, 1ULL << 40);
    /* An object whose type pointer points at garbage / outside the image. */
    uint64_t bt = gc_alloc(&f, 16, BASE + 8);
    uint64_t bt2 = gc_alloc(&f, 16, 0xdead0000ULL);
    /* A list with allocated < size and a dict with absurd log2 size. */
    uint64_t bl = gc_alloc(&f, 40, f.ty_list);
    put64(&f, bl + f.o->ob_size, 10);
    put64(&f, bl + f.o->list_allocated, 2);
    uint64_t keys = alloc(&f, 64);
    put64(&f, keys + f.o->dk_refcnt, 1);
    at(&f, keys + f.o->dk_log2_size)[0] = 60;
    uint64_t bd = mkdict(&f, keys, 0, 1);
    /* A tuple whose item points at unmapped memory and one with a negative
     * refcount. */
    uint64_t neg = mkint(&f, 1);
    put64(&f, neg + f.o->ob_refcnt, (uint64_t)-5);
    uint64_t items[] = { 0x7000deadbeef0ULL, neg };
    uint64_t ok = mktuple(&f, 2, items);
    /* Then a GC link that loops back to an earlier object without the
     * back-link agreeing (torn list): the walk must stop, not spin. */
    uint64_t g = f.tail;
    put64(&f, g + f.o->gc_next, bad - f.o->gc_head);
    pyheap_error e;
    pyheap_snapshot *s = fake_walk(&f, &e);
    const pyheap_scan_stats *st = pyheap_snapshot_stats(s);
    ck_assert_int_eq(size_of(s, bad), -1);
    ck_assert_int_eq(size_of(s, bt), -1);
    ck_assert_int_eq(size_of(s, bt2), -1);
    ck_assert_int_eq(size_of(s, bl), -1);
    ck_assert_int_eq(size_of(s, bd), -1);
    ck_assert_int_eq(size_of(s, neg), -1);
    ck_assert_int_eq(size_of(s, ok), 56);
    /* bad, bt, bt2, bl, bd, the unmapped item, neg, the torn link */
    ck_assert_uint_ge(st->skipped, 8);
    pyheap_snapshot_free(s);
    fake_free(&f);
}
END_TEST

/* An object whose decoding fails half way is dropped with what it
 * reported, but what it referred to can still be reached another way: a
 * list of 600 items whose array runs off the end of the image (its second
 * chunk of 512 cannot be read) points at a str that a tuple, visited
 * after the list, holds too; the str is found. */
START_TEST(half_decoded_referents_found)
{
    struct fake f;
    fake_init(&f);
    uint64_t str = mkstr(&f, 2, 1, true);
    uint64_t items[] = { str };
    /* linked first: seeded first, visited last */
    uint64_t tup = mktuple(&f, 1, items);
    uint64_t lst = gc_alloc(&f, 40, f.ty_list);
    uint64_t arr = BASE + HEAP_SIZE - 512 * 8;
    ck_assert(BASE + f.used <= arr);
    put64(&f, arr + 8 * 7, str);
    put64(&f, lst + f.o->ob_size, 600);
    put64(&f, lst + f.o->list_allocated, 600);
    put64(&f, lst + f.o->list_ob_item, arr);
    pyheap_error e;
    pyheap_snapshot *s = fake_walk(&f, &e);
    ck_assert_int_eq(size_of(s, lst), -1);
    ck_assert_int_eq(size_of(s, tup), 48);   /* sys.getsizeof((x,)) */
    ck_assert_int_eq(size_of(s, str), 51);
    ck_assert_uint_ge(pyheap_snapshot_stats(s)->skipped, 1);
    /* the list is left out of the index copied from the seen set */
    ck_assert(s->build_index_given);
    pyheap_snapshot_free(s);
    fake_free(&f);
}
END_TEST

START_TEST(gc_cycle_terminates)
{
    struct fake f;
    fake_init(&f);
    /* b links forward to a again instead of the list head. */
    uint64_t a = gc_alloc(&f, 24, f.ty_tuple);
    uint64_t b = gc_alloc(&f, 24, f.ty_tuple);
    uint64_t ga = a - f.o->gc_head, gb = b - f.o->gc_head;
    put64(&f, gb + f.o->gc_next, ga);
    pyheap_error e;
    pyheap_snapshot *s = fake_walk(&f, &e);
    ck_assert_int_eq(size_of(s, a), 40);
    ck_assert_int_eq(size_of(s, b), 40);
    ck_assert_uint_ge(pyheap_snapshot_stats(s)->skipped, 1);
    pyheap_snapshot_free(s);
    fake_free(&f);
}
END_TEST

START_TEST(histogram_order)
{
    struct fake f;
    fake_init(&f);
    for (int i = 0; i < 5; i++)
        gc_alloc(&f, 24, f.ty_tuple);          /* 5 x 40 bytes */
    uint64_t big[1];
    big[0] = mkint(&f, 100);                    /* one int of 424 bytes */
    mktuple(&f, 1, big);
    pyheap_error e;
    pyheap_snapshot *s = fake_walk(&f, &e);
    pyheap_type_stat *h = NULL;
    size_t n = 0;
    ck_assert_int_eq(pyheap_histogram(s, PYHEAP_SORT_COUNT, &h, &n, &e), 0);
    ck_assert_uint_ge(n, 3);
    ck_assert_str_eq(h[0].name, "tuple");
    ck_assert_uint_eq(h[0].count, 6);
    for (size_t i = 1; i < n; i++)
        ck_assert(h[i - 1].count >= h[i].count);
    free(h);
    ck_assert_int_eq(pyheap_histogram(s, PYHEAP_SORT_BYTES, &h, &n, &e), 0);
    for (size_t i = 1; i < n; i++)
        ck_assert(h[i - 1].bytes >= h[i].bytes);
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += h[i].bytes;
    ck_assert_uint_eq(total, pyheap_snapshot_stats(s)->bytes);
    free(h);
    ck_assert_int_eq(pyheap_histogram(s, (pyheap_sort)7, &h, &n, &e), -1);
    ck_assert_int_eq(e.code, PYHEAP_E_INVAL);
    pyheap_snapshot_free(s);
    fake_free(&f);
}
END_TEST

/* xorshift64*: deterministic pseudo-random words for the fuzz case. */
static uint64_t rnd(uint64_t *st)
{
    *st ^= *st >> 12;
    *st ^= *st << 25;
    *st ^= *st >> 27;
    return *st * 2685821657736338717ULL;
}

START_TEST(random_garbage_never_crashes)
{
    for (uint64_t seed = 1; seed <= 40; seed++) {
        struct fake f;
        fake_init(&f);
        uint64_t st = seed * 0x9E3779B97F4A7C15ULL;
        uint64_t types[] = { f.ty_type, f.ty_int, f.ty_str, f.ty_tuple, f.ty_list,
                             f.ty_dict, f.ty_set, f.ty_float, f.ty_object };
        /* A region of random words: pointers into the region, to types, to
         * nowhere, small and huge numbers. */
        size_t words = 32768;
        uint64_t region = alloc(&f, words * 8);
        for (size_t i = 0; i < words; i++) {
            uint64_t r = rnd(&st), v;
            switch (r % 6) {
            case 0: v = region + (rnd(&st) % words) * 8; break;
            case 1: v = types[rnd(&st) % 9]; break;
            case 2: v = rnd(&st) % 64; break;
            case 3: v = (uint64_t)-1 - rnd(&st) % 8; break;
            case 4: v = 1; break;
            default: v = rnd(&st); break;
            }
            put64(&f, region + i * 8, v);
        }
        /* Objects with plausible headers scattered in it, on the GC list. */
        for (int i = 0; i < 200; i++) {
            uint64_t obj = region + 16 + (rnd(&st) % (words - 64)) * 8;
            obj &= ~(uint64_t)15;
            put64(&f, obj + f.o->ob_refcnt, 1 + rnd(&st) % 4);
            put64(&f, obj + f.o->ob_type, types[rnd(&st) % 9]);
            if (rnd(&st) % 2)
                gc_link(&f, obj);
        }
        pyheap_error e;
        ck_assert_int_eq(pyheap_mem_open_image(&f.t->mem, &e), 0);
        ck_assert_int_eq(pyheap_mem_image_add(f.t->mem, BASE, f.buf, HEAP_SIZE, &e), 0);
        pyheap_snapshot *s = NULL;
        ck_assert_msg(pyheap_walk(f.t, NULL, &s, &e) == 0, "seed %llu: %s",
                      (unsigned long long)seed, e.msg);
        ck_assert_uint_le(pyheap_snapshot_count(s), HEAP_SIZE / 16);
        pyheap_snapshot_free(s);
        fake_free(&f);
    }
}
END_TEST

START_TEST(corrupt_offsets_refused)
{
    struct fake f;
    fake_init(&f);
    f.t->off.tp_flags = 5000;           /* outside PyTypeObject */
    pyheap_error e;
    memset(&e, 0, sizeof e);
    ck_assert_int_eq(pyheap_mem_open_image(&f.t->mem, &e), 0);
    ck_assert_int_eq(pyheap_mem_image_add(f.t->mem, BASE, f.buf, HEAP_SIZE, &e), 0);
    pyheap_snapshot *s = NULL;
    ck_assert_int_eq(pyheap_walk(f.t, NULL, &s, &e), -1);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(e.code, PYHEAP_E_OFFSETS);
    f.t->off.tp_flags = pyheap_table_py3_11.off.tp_flags;
    f.t->off.dk_kind = PYHEAP_OFF_ABSENT;
    ck_assert_int_eq(pyheap_walk(f.t, NULL, &s, &e), -1);
    ck_assert_int_eq(e.code, PYHEAP_E_OFFSETS);
    ck_assert_msg(strstr(e.msg, "dk_kind") != NULL, "message: %s", e.msg);
    fake_free(&f);
}
END_TEST

START_TEST(deque_blocks)
{
    struct fake f;
    fake_init(&f);
    uint64_t dq_type = mktype(&f, "collections.deque", 216, 0, f.t->k.tpflags_have_gc,
                              f.ty_object);
    /* 70 ints from index 40 of the first block: 24 + 46 in two blocks. */
    uint64_t b1 = alloc(&f, 528), b2 = alloc(&f, 528);
    put64(&f, b1 + 8 + 64 * 8, b2);
    put64(&f, b2, b1);
    uint64_t last = 0;
    for (int i = 0; i < 70; i++) {
        uint64_t v = mkint(&f, 1);
        int slot = 40 + i;
        put64(&f, (slot < 64 ? b1 : b2) + 8 + (uint64_t)(slot % 64) * 8, v);
        last = v;
    }
    uint64_t dq = gc_alloc(&f, 216, dq_type);
    put64(&f, dq + f.o->ob_size, 70);
    put64(&f, dq + 24, b1);
    put64(&f, dq + 32, b2);
    put64(&f, dq + 40, 40);
    put64(&f, dq + 48, (40 + 70 - 1) % 64);
    pyheap_error e;
    pyheap_snapshot *s = fake_walk(&f, &e);
    /* sys.getsizeof: 216 + 2 blocks of 528 + GC head */
    ck_assert_int_eq(size_of(s, dq), 216 + 2 * 528 + 16);
    ck_assert_str_eq(type_of(s, dq), "collections.deque");
    ck_assert_int_eq(size_of(s, last), 28);
    ck_assert_uint_eq(pyheap_snapshot_stats(s)->skipped, 0);
    pyheap_snapshot_free(s);
    fake_free(&f);
}
END_TEST

/* The label of the first edge from the object at SRC to the one at DST,
 * with its flags in *flags; NULL if there is none. */
static const char *edge_label(const pyheap_snapshot *s, uint64_t src, uint64_t dst,
                              char *buf, size_t cap, unsigned *flags)
{
    size_t i = pyheap_snapshot_find(s, src), j = pyheap_snapshot_find(s, dst);
    ck_assert_uint_ne(i, SIZE_MAX);
    ck_assert_uint_ne(j, SIZE_MAX);
    for (size_t k = 0; k < pyheap_snapshot_nedges(s, i); k++)
        if (pyheap_snapshot_edge_target(s, i, k) == j) {
            pyheap_snapshot_edge_label(s, i, k, buf, cap);
            *flags = pyheap_snapshot_edge_flags(s, i, k);
            return buf;
        }
    return NULL;
}

#define EXPECT_EDGE(s, a, b, want, wflags)                                               \
    do {                                                                                 \
        char lb_[64];                                                                    \
        unsigned fl_ = 99;                                                               \
        const char *got_ = edge_label((s), (a), (b), lb_, sizeof lb_, &fl_);            \
        ck_assert_msg(got_ != NULL, "no edge for %s", (want));                          \
        ck_assert_str_eq(got_, (want));                                                  \
        ck_assert_uint_eq(fl_, (wflags));                                                \
    } while (0)

START_TEST(edge_labels)
{
    struct fake f;
    fake_init(&f);
    const struct pyheap_consts *k = &f.t->k;
    uint64_t gcf = k->tpflags_have_gc;
    uint64_t i1 = mkint(&f, 1), i2 = mkint(&f, 1), i3 = mkint(&f, 1), i4 = mkint(&f, 1);
    put32(&f, i1 + f.o->long_ob_digit, 7); /* the int 7 */
    uint64_t ka = mkstr(&f, 3, 1, true);   /* 'abc' */
    /* {'abc': i2} and {7: i3} */
    uint64_t uk[] = { ka }, uv[] = { i2 };
    uint64_t du = mkdict(&f, mkkeys(&f, k->dict_kind_unicode, 1, 1, uk, uv), 0, 1);
    uint64_t gk[] = { i1 }, gv[] = { i3 };
    uint64_t dg = mkdict(&f, mkkeys(&f, k->dict_kind_general, 1, 1, gk, gv), 0, 1);
    /* a weak reference to i4 with no callback */
    uint64_t wr_type = mktype(&f, "weakref.ReferenceType", 64, 0, gcf, f.ty_object);
    uint64_t wr = gc_alloc(&f, 64, wr_type);
    put64(&f, wr + 16, i4);
    /* a defaultdict({'abc': i2}, factory i3) */
    uint64_t dd_type = mktype(&f, "collections.defaultdict", 56, 0,
                              gcf | k->tpflags_dict_subclass, f.ty_dict);
    uint64_t dd = gc_alloc(&f, 56, dd_type);
    put64(&f, dd + f.o->dict_ma_used, 1);
    put64(&f, dd + f.o->dict_ma_keys, mkkeys(&f, k->dict_kind_unicode, 1, 1, uk, uv));
    put64(&f, dd + 48, i3);
    /* an extension type nobody knows, holding i1 at offset 16 */
    uint64_t ext_type = mktype(&f, "ext.Thing", 32, 0, 0, f.ty_object);
    uint64_t ext = alloc(&f, 32);
    header(&f, ext, ext_type);
    put64(&f, ext + 16, i1);
    put64(&f, ext + 24, 0x12345678);
    uint64_t items[] = { du, ext };
    uint64_t tup = mktuple(&f, 2, items);
    pyheap_error e;
    pyheap_snapshot *s = fake_walk(&f, &e);
    EXPECT_EDGE(s, du, i2, "['abc']", 0);
    EXPECT_EDGE(s, du, ka, "(key)", 0);
    EXPECT_EDGE(s, dg, i3, "[7]", 0);
    EXPECT_EDGE(s, tup, du, "[0]", 0);
    EXPECT_EDGE(s, tup, ext, "[1]", 0);
    EXPECT_EDGE(s, wr, i4, "()", PYHEAP_EDGE_WEAK);
    EXPECT_EDGE(s, dd, i2, "['abc']", 0);
    EXPECT_EDGE(s, dd, i3, ".default_factory", 0);
    EXPECT_EDGE(s, ext, i1, "<+16>", PYHEAP_EDGE_INFERRED);
    /* ob_type is followed but kept as no edge: the dict has its two */
    ck_assert_uint_eq(pyheap_snapshot_nedges(s, pyheap_snapshot_find(s, du)), 2);
    ck_assert_str_eq(type_of(s, dd), "collections.defaultdict");
    ck_assert_int_eq(size_of(s, dd), 56 + 16 + (int64_t)(f.o->dict_keys_object + 8 + 5 * f.o->dict_unicode_entry));
    ck_assert_uint_eq(pyheap_snapshot_stats(s)->skipped, 0);
    pyheap_snapshot_free(s);
    fake_free(&f);
}
END_TEST

Suite *suite_decode(void)
{
    Suite *s = suite_create("decode");
    TCase *tc = tcase_create("image");
    tcase_add_test(tc, tuple_list_scalars);
    tcase_add_test(tc, dicts);
    tcase_add_test(tc, sets);
    tcase_add_test(tc, garbage_is_rejected);
    tcase_add_test(tc, half_decoded_referents_found);
    tcase_add_test(tc, gc_cycle_terminates);
    tcase_add_test(tc, histogram_order);
    tcase_add_test(tc, deque_blocks);
    tcase_add_test(tc, edge_labels);
    tcase_add_test(tc, random_garbage_never_crashes);
    tcase_add_test(tc, corrupt_offsets_refused);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
