/* libFuzzer harness: the walker and every object decoder fed "remote
 * memory" made from the input, through the in-memory image reader
 * (pyheap_mem_open_image) and a target filled with the CPython 3.11 table.
 *
 * A fixed part of the image holds real-looking type objects (type, object,
 * int, str, tuple, list, dict, set, float, a heap type with slots) and an
 * interpreter whose GC generation 0 lists objects in the fuzzed region. The
 * region itself is built from the input as 9-byte records (a tag and a
 * value): the tag turns the value into a pointer into the region, a type
 * pointer, a small number, -1-ish, or leaves it raw, so mutations reach the
 * decoders' interesting paths instead of failing the first pointer check.
 * The input's first byte says how many region words become GC-linked
 * objects (at offsets from the input's last bytes, each given a plausible
 * header whose type the input picks). Whatever the bytes, the walk must end without a sanitizer report
 * and within the image's bounds. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "offsets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BASE 0x10000000ULL
#define FIXED (256u * 1024)
#define REGION_WORDS 8192u
#define IMAGE (FIXED + REGION_WORDS * 8)

struct img {
    unsigned char *buf;
    size_t used;
    const struct pyheap_offsets *o;
    pyheap_target *t;
    uint64_t types[10];
    size_t ntypes;
    uint64_t gen0, tail;
};

static void put64(struct img *m, uint64_t addr, uint64_t v)
{
    if (addr < BASE || addr + 8 > BASE + IMAGE)
        abort();   /* a harness bug, not a finding */
    memcpy(m->buf + (addr - BASE), &v, 8);
}

static uint64_t alloc(struct img *m, size_t n)
{
    m->used = (m->used + 15) & ~(size_t)15;
    if (m->used + n > FIXED)
        abort();
    uint64_t a = BASE + m->used;
    m->used += n;
    return a;
}

static uint64_t cstr(struct img *m, const char *s)
{
    uint64_t a = alloc(m, strlen(s) + 1);
    memcpy(m->buf + (a - BASE), s, strlen(s) + 1);
    return a;
}

static uint64_t mktype(struct img *m, uint64_t meta, const char *name, int64_t basic,
                       int64_t item, uint64_t flags, uint64_t base)
{
    uint64_t a = alloc(m, m->o->heap_type_object + 64);
    put64(m, a + m->o->ob_refcnt, 100);
    put64(m, a + m->o->ob_type, meta ? meta : a);
    put64(m, a + m->o->tp_name, cstr(m, name));
    put64(m, a + m->o->tp_basicsize, (uint64_t)basic);
    put64(m, a + m->o->tp_itemsize, (uint64_t)item);
    put64(m, a + m->o->tp_flags, flags);
    put64(m, a + m->o->tp_base, base);
    m->types[m->ntypes++] = a;
    return a;
}

static int build(struct img *m)
{
    memset(m, 0, sizeof *m);
    m->buf = calloc(1, IMAGE);
    m->t = calloc(1, sizeof *m->t);
    if (!m->buf || !m->t)
        return -1;
    m->t->pid = 0;
    m->t->major = 3;
    m->t->minor = 11;
    m->t->off = pyheap_table_py3_11.off;
    m->o = &m->t->off;
    pyheap_error e;
    if (pyheap_consts_init(m->t, &e) < 0)
        return -1;
    const struct pyheap_consts *k = &m->t->k;
    uint64_t gcf = k->tpflags_have_gc;
    uint64_t ty_type = mktype(m, 0, "type", (int64_t)m->o->heap_type_object, 40,
                              gcf | k->tpflags_type_subclass, 0);
    uint64_t ty_object = mktype(m, ty_type, "object", 16, 0, 0, 0);
    put64(m, ty_type + m->o->tp_base, ty_object);
    struct pyheap_well_known *wk = &m->t->wk;
    wk->type = ty_type;
    wk->object = ty_object;
    wk->int_ = mktype(m, ty_type, "int", 24, 4, k->tpflags_long_subclass, ty_object);
    wk->str = mktype(m, ty_type, "str", (int64_t)m->o->unicode_object, 0,
                     k->tpflags_unicode_subclass, ty_object);
    wk->tuple = mktype(m, ty_type, "tuple", 24, 8, gcf | k->tpflags_tuple_subclass, ty_object);
    wk->list = mktype(m, ty_type, "list", 40, 0, gcf | k->tpflags_list_subclass, ty_object);
    wk->dict = mktype(m, ty_type, "dict", 48, 0, gcf | k->tpflags_dict_subclass, ty_object);
    wk->set = mktype(m, ty_type, "set", 200, 0, gcf, ty_object);
    wk->float_ = mktype(m, ty_type, "float", 24, 0, 0, ty_object);
    /* A heap type subclassing object with a managed dict. */
    mktype(m, ty_type, "Fuzzed", 16, 0, gcf | k->tpflags_heaptype, ty_object);

    uint64_t interp = alloc(m, 8192);
    uint64_t runtime = alloc(m, 512);
    put64(m, runtime + m->o->runtime_interpreters_head, interp);
    m->t->runtime_addr = runtime;
    uint64_t gcs = interp + m->o->interp_gc;
    for (int i = 0; i < 4; i++) {
        uint64_t h = i < 3 ? gcs + m->o->gcstate_generations + (uint64_t)i * m->o->gc_generation
                           : gcs + m->o->gcstate_permanent_generation;
        h += m->o->gc_generation_head;
        put64(m, h + m->o->gc_next, h);
        put64(m, h + m->o->gc_prev, h);
    }
    m->gen0 = gcs + m->o->gcstate_generations + m->o->gc_generation_head;
    m->tail = m->gen0;
    return 0;
}

static void gc_link(struct img *m, uint64_t obj)
{
    uint64_t g = obj - m->o->gc_head;
    put64(m, g + m->o->gc_prev, m->tail);
    put64(m, g + m->o->gc_next, m->gen0);
    put64(m, m->tail + m->o->gc_next, g);
    put64(m, m->gen0 + m->o->gc_prev, g);
    m->tail = g;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct img m;
    if (build(&m) < 0)
        abort();
    const uint64_t region = BASE + FIXED;
    size_t nlink = size ? data[0] % 64 : 0;
    size_t pos = size ? 1 : 0;
    /* The region's words from 9-byte records. */
    for (size_t w = 0; w < REGION_WORDS && pos + 9 <= size; w++, pos += 9) {
        uint8_t tag = data[pos];
        uint64_t v;
        memcpy(&v, data + pos + 1, 8);
        switch (tag % 6) {
        case 0: v = region + (v % REGION_WORDS) * 8; break;
        case 1: v = m.types[v % m.ntypes]; break;
        case 2: v %= 64; break;
        case 3: v = (uint64_t)-1 - v % 8; break;
        case 4: v = 1; break;
        default: break;
        }
        put64(&m, region + w * 8, v);
    }
    /* GC-linked objects at offsets taken from the input's tail. */
    for (size_t i = 0; i < nlink; i++) {
        size_t off = 0;
        if (size >= 2 * (i + 1))
            off = ((size_t)data[size - 1 - 2 * i] << 8) | data[size - 2 - 2 * i];
        uint64_t obj = region + 16 + (off % (REGION_WORDS - 512)) * 8;
        obj &= ~(uint64_t)15;
        /* A plausible header (refcount, a real type chosen by the input),
         * so the decoders, not the header check, see the fuzzed bodies;
         * the body stays what the input made it. */
        uint8_t sel = size > 1 + i ? data[1 + i] : 0;
        put64(&m, obj + m.o->ob_refcnt, 1 + (sel >> 4));
        put64(&m, obj + m.o->ob_type, m.types[sel % m.ntypes]);
        gc_link(&m, obj);
    }
    pyheap_error e;
    if (pyheap_mem_open_image(&m.t->mem, &e) < 0 ||
        pyheap_mem_image_add(m.t->mem, BASE, m.buf, IMAGE, &e) < 0)
        abort();
    pyheap_scan_opts so = { .max_objects = 200000 };
    pyheap_snapshot *s = NULL;
    if (pyheap_walk(m.t, &so, &s, &e) == 0) {
        size_t n = pyheap_snapshot_count(s);
        for (size_t i = 0; i < n; i++) {
            uint64_t a = pyheap_snapshot_addr(s, i);
            if (a < BASE || a >= BASE + IMAGE)
                abort();   /* an object outside every image cannot have been read */
            if (pyheap_snapshot_type(s, i) >= pyheap_snapshot_ntypes(s))
                abort();
        }
        pyheap_snapshot_free(s);
    }
    pyheap_target_free(m.t);
    free(m.buf);
    return 0;
}
