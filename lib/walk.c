/*
 * Enumerating the live objects of a target: GC lists and interpreter /
 * thread roots seed a work list; decoders (decode_*.c) report referents
 * until closure. Non-stop: every read may be torn or freed, so every
 * candidate is validated (readable header, sane refcount, ob_type a
 * validated type object), every loop is bounded, and rejects are counted.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "snapshot.h"
#include "walk.h"

#define DEFAULT_MAX_OBJECTS 50000000ULL
#define MAX_INTERPRETERS    256
#define MAX_THREADS         100000
#define MAX_FRAMES          100000
#define MAX_EXC_CHAIN       10000
#define MAX_GC_LIST         200000000ULL

/* Candidates carry a flag in the low bit (object addresses are 8-aligned). */
#define REF_MAYBE 1ULL

/* Open-addressing set of u64 keys (0 never stored). */
struct addrset {
    uint64_t *slots;
    size_t cap; /* power of two */
    size_t used;
};

struct typemap_entry {
    uint64_t addr;
    int32_t idx;  /* index into types; -1 invalid; -2 being described */
};

struct walk {
    pyheap_target *t;
    pyheap_mem *mem;
    uint64_t max_objects;
    bool gone;             /* the process vanished: stop */
    bool truncated;
    bool nomem;

    struct addrset seen;
    uint64_t *stack;
    size_t nstack, capstack;

    struct snapshot_rec *recs;
    size_t nrecs, caprecs;

    struct typemap_entry *tmap;
    size_t tmap_cap, tmap_used;
    struct walk_type **types; /* stable: decoders keep pointers */
    size_t ntypes, captypes;

    char **names;
    size_t nnames, capnames;
    uint32_t *name_slots; /* hash of names -> index + 1 */
    size_t name_cap;

    uint64_t skipped;
    uint64_t gc_tracked;
};

/* ---- small containers ---- */

static inline uint64_t hash64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static int addrset_grow(struct addrset *s)
{
    size_t ncap = s->cap ? s->cap * 2 : 1 << 16;
    uint64_t *n = calloc(ncap, sizeof *n);
    if (!n)
        return -1;
    for (size_t i = 0; i < s->cap; i++) {
        uint64_t k = s->slots[i];
        if (!k)
            continue;
        size_t j = hash64(k) & (ncap - 1);
        while (n[j])
            j = (j + 1) & (ncap - 1);
        n[j] = k;
    }
    free(s->slots);
    s->slots = n;
    s->cap = ncap;
    return 0;
}

/* 1 if newly inserted, 0 if present, -1 on allocation failure. */
static int addrset_insert(struct addrset *s, uint64_t k)
{
    if ((s->used + 1) * 2 > s->cap && addrset_grow(s) < 0)
        return -1;
    size_t j = hash64(k) & (s->cap - 1);
    while (s->slots[j]) {
        if (s->slots[j] == k)
            return 0;
        j = (j + 1) & (s->cap - 1);
    }
    s->slots[j] = k;
    s->used++;
    return 1;
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t ncap = *cap ? *cap : 1024;
    while (ncap < need)
        ncap *= 2;
    void *n = realloc(*p, ncap * elem);
    if (!n)
        return false;
    *p = n;
    *cap = ncap;
    return true;
}

/* ---- services for decoders ---- */

int pyheap_walk_read(struct walk *w, uint64_t addr, void *buf, size_t len)
{
    if (w->gone || addr == 0 || addr + len < addr)
        return -1;
    pyheap_error e;
    if (pyheap_mem_read_cached(w->mem, addr, buf, len, &e) == 0)
        return 0;
    if (e.code == PYHEAP_E_GONE)
        w->gone = true;
    return -1;
}

int pyheap_walk_read_u64(struct walk *w, uint64_t addr, uint64_t *out)
{
    return pyheap_walk_read(w, addr, out, sizeof *out);
}

static bool plausible_addr(uint64_t a)
{
    return a >= 0x1000 && a < 0x800000000000ULL && (a & 7) == 0;
}

static void push(struct walk *w, uint64_t addr, uint64_t flag)
{
    if (!plausible_addr(addr)) {
        if (!flag && addr != 0)
            w->skipped++;
        return;
    }
    int r = addrset_insert(&w->seen, addr);
    if (r < 0) {
        w->nomem = true;
        return;
    }
    if (r == 0)
        return;
    if (w->seen.used > w->max_objects * 2 + 1000000) {
        w->truncated = true;
        return;
    }
    if (!grow((void **)&w->stack, &w->capstack, w->nstack + 1, sizeof *w->stack)) {
        w->nomem = true;
        return;
    }
    w->stack[w->nstack++] = addr | flag;
}

void pyheap_walk_ref(struct walk *w, uint64_t addr)
{
    if (addr)
        push(w, addr, 0);
}

void pyheap_walk_ref_maybe(struct walk *w, uint64_t addr)
{
    push(w, addr, REF_MAYBE);
}

void pyheap_walk_skip(struct walk *w)
{
    w->skipped++;
}

const pyheap_target *pyheap_walk_target(const struct walk *w)
{
    return w->t;
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

uint32_t pyheap_walk_name_intern(struct walk *w, const char *name)
{
    if ((w->nnames + 1) * 2 > w->name_cap) {
        size_t ncap = w->name_cap ? w->name_cap * 2 : 1024;
        uint32_t *n = calloc(ncap, sizeof *n);
        if (!n)
            return UINT32_MAX;
        for (size_t i = 0; i < w->name_cap; i++) {
            if (!w->name_slots[i])
                continue;
            size_t j = str_hash(w->names[w->name_slots[i] - 1]) & (ncap - 1);
            while (n[j])
                j = (j + 1) & (ncap - 1);
            n[j] = w->name_slots[i];
        }
        free(w->name_slots);
        w->name_slots = n;
        w->name_cap = ncap;
    }
    size_t j = str_hash(name) & (w->name_cap - 1);
    while (w->name_slots[j]) {
        if (strcmp(w->names[w->name_slots[j] - 1], name) == 0)
            return w->name_slots[j] - 1;
        j = (j + 1) & (w->name_cap - 1);
    }
    if (!grow((void **)&w->names, &w->capnames, w->nnames + 1, sizeof *w->names))
        return UINT32_MAX;
    char *copy = strdup(name);
    if (!copy)
        return UINT32_MAX;
    w->names[w->nnames] = copy;
    w->name_slots[j] = (uint32_t)(w->nnames + 1);
    return (uint32_t)w->nnames++;
}

/* ---- the type cache ---- */

static struct typemap_entry *tmap_find(struct walk *w, uint64_t addr, bool insert)
{
    if (insert && (w->tmap_used + 1) * 2 > w->tmap_cap) {
        size_t ncap = w->tmap_cap ? w->tmap_cap * 2 : 4096;
        struct typemap_entry *n = calloc(ncap, sizeof *n);
        if (!n)
            return NULL;
        for (size_t i = 0; i < w->tmap_cap; i++) {
            if (!w->tmap[i].addr)
                continue;
            size_t j = hash64(w->tmap[i].addr) & (ncap - 1);
            while (n[j].addr)
                j = (j + 1) & (ncap - 1);
            n[j] = w->tmap[i];
        }
        free(w->tmap);
        w->tmap = n;
        w->tmap_cap = ncap;
    }
    if (!w->tmap_cap)
        return NULL;
    size_t j = hash64(addr) & (w->tmap_cap - 1);
    while (w->tmap[j].addr) {
        if (w->tmap[j].addr == addr)
            return &w->tmap[j];
        j = (j + 1) & (w->tmap_cap - 1);
    }
    if (!insert)
        return NULL;
    w->tmap[j].addr = addr;
    w->tmap[j].idx = -2;
    w->tmap_used++;
    return &w->tmap[j];
}

static bool printable_name(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

static const struct walk_type *type_lookup(struct walk *w, uint64_t addr, int depth)
{
    if (!plausible_addr(addr) || depth > 8)
        return NULL;
    struct typemap_entry *e = tmap_find(w, addr, false);
    if (e)
        return e->idx >= 0 ? w->types[e->idx] : NULL;
    e = tmap_find(w, addr, true);
    if (!e) {
        w->nomem = true;
        return NULL;
    }
    const struct pyheap_offsets *off = &w->t->off;
    uint64_t hdr[2];
    int ok = 0;
    uint64_t meta = 0;
    if (pyheap_walk_read(w, addr, hdr, sizeof hdr) == 0) {
        int64_t refcnt = (int64_t)hdr[0];
        meta = hdr[1];
        if (refcnt > 0 && refcnt < WALK_MAX_REFCNT) {
            if (meta == w->t->wk.type)
                ok = 1;
            else if (meta != addr) {
                const struct walk_type *mt = type_lookup(w, meta, depth + 1);
                ok = mt && (mt->flags & w->t->k.tpflags_type_subclass);
            }
        }
    }
    uint64_t name_ptr = 0;
    if (ok && pyheap_walk_read_u64(w, addr + off->tp_name, &name_ptr) == 0) {
        char name[128];
        ssize_t n = pyheap_mem_read_cstr(w->mem, name_ptr, name, sizeof name, NULL);
        ok = n > 0 && printable_name(name, (size_t)n);
    } else {
        ok = 0;
    }
    struct walk_type wt;
    if (ok && pyheap_walk_type_describe(w, addr, meta, &wt) < 0)
        ok = 0;
    /* The map may have been resized by recursive lookups. */
    e = tmap_find(w, addr, false);
    if (!e)
        return NULL;
    if (!ok) {
        e->idx = -1;
        return NULL;
    }
    struct walk_type *copy = malloc(sizeof *copy);
    if (!copy ||
        !grow((void **)&w->types, &w->captypes, w->ntypes + 1, sizeof *w->types)) {
        free(copy);
        free(wt.members);
        w->nomem = true;
        e->idx = -1;
        return NULL;
    }
    *copy = wt;
    w->types[w->ntypes] = copy;
    e->idx = (int32_t)w->ntypes++;
    return copy;
}

const struct walk_type *pyheap_walk_type_get(struct walk *w, uint64_t addr)
{
    return type_lookup(w, addr, 0);
}

/* ---- visiting one object ---- */

static int decode(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    switch (o->type->kind) {
    case WALK_TUPLE: return pyheap_walk_decode_tuple(w, o, size);
    case WALK_LIST: return pyheap_walk_decode_list(w, o, size);
    case WALK_DICT: return pyheap_walk_decode_dict(w, o, size);
    case WALK_SET: return pyheap_walk_decode_set(w, o, size);
    case WALK_STR: return pyheap_walk_decode_str(w, o, size);
    case WALK_BYTES: return pyheap_walk_decode_bytes(w, o, size);
    case WALK_BYTEARRAY: return pyheap_walk_decode_bytearray(w, o, size);
    case WALK_INT: return pyheap_walk_decode_int(w, o, size);
    case WALK_TYPE: return pyheap_walk_decode_type(w, o, size);
    case WALK_MODULE: return pyheap_walk_decode_module(w, o, size);
    case WALK_FUNCTION: return pyheap_walk_decode_function(w, o, size);
    case WALK_CODE: return pyheap_walk_decode_code(w, o, size);
    case WALK_CELL: return pyheap_walk_decode_cell(w, o, size);
    case WALK_METHOD: return pyheap_walk_decode_method(w, o, size);
    case WALK_FRAME: return pyheap_walk_decode_frame(w, o, size);
    case WALK_GEN: return pyheap_walk_decode_gen(w, o, size);
    case WALK_FLOAT:
    case WALK_COMPLEX:
    case WALK_OBJECT:
    case WALK_UNKNOWN:
    case WALK_NKINDS:
        break;
    }
    return pyheap_walk_decode_fixed(w, o, size);
}

static void visit(struct walk *w, uint64_t item)
{
    uint64_t addr = item & ~REF_MAYBE;
    bool maybe = item & REF_MAYBE;
    uint64_t hdr[2];
    if (pyheap_walk_read(w, addr, hdr, sizeof hdr) < 0) {
        if (!maybe)
            w->skipped++;
        return;
    }
    int64_t refcnt = (int64_t)hdr[0];
    const struct walk_type *t = NULL;
    if (refcnt > 0 && refcnt < WALK_MAX_REFCNT)
        t = type_lookup(w, hdr[1], 0);
    if (!t) {
        if (!maybe)
            w->skipped++;
        return;
    }
    struct walk_obj o = { .addr = addr, .type = t };
    uint64_t size = 0;
    size_t before = w->nstack;
    if (decode(w, &o, &size) < 0) {
        /* Drop what a half-decoded object reported. */
        w->nstack = before;
        if (!maybe)
            w->skipped++;
        return;
    }
    uint32_t name = t->name;
    uint64_t type_addr = t->addr;
    pyheap_walk_decode_extra(w, &o);
    pyheap_walk_ref(w, type_addr);
    if (!grow((void **)&w->recs, &w->caprecs, w->nrecs + 1, sizeof *w->recs)) {
        w->nomem = true;
        return;
    }
    w->recs[w->nrecs++] = (struct snapshot_rec){ .addr = addr, .size = size, .type = name };
    if (w->nrecs >= w->max_objects)
        w->truncated = true;
}

/* ---- discovery: GC lists and roots ---- */

static void walk_gc_list(struct walk *w, uint64_t head)
{
    const struct pyheap_offsets *off = &w->t->off;
    uint64_t prev = head, cur;
    if (pyheap_walk_read_u64(w, head + off->gc_next, &cur) < 0) {
        w->skipped++;
        return;
    }
    cur &= ~(uint64_t)3;
    for (uint64_t n = 0; cur != head; n++) {
        if (n >= MAX_GC_LIST || n >= w->max_objects || w->truncated || w->gone || w->nomem) {
            w->truncated = w->truncated || n >= MAX_GC_LIST || n >= w->max_objects;
            return;
        }
        uint64_t g[2];
        if (!plausible_addr(cur) ||
            pyheap_walk_read(w, cur + off->gc_next, &g[0], 8) < 0 ||
            pyheap_walk_read(w, cur + off->gc_prev, &g[1], 8) < 0 ||
            (g[1] & ~(uint64_t)3) != prev) {
            /* Torn or freed link: the rest of this list is unreliable. */
            w->skipped++;
            return;
        }
        /* An object seen before on a GC list means a cycle (torn links). */
        int fresh = addrset_insert(&w->seen, cur + off->gc_head);
        if (fresh <= 0) {
            if (fresh < 0)
                w->nomem = true;
            else
                w->skipped++;
            return;
        }
        if (!grow((void **)&w->stack, &w->capstack, w->nstack + 1, sizeof *w->stack)) {
            w->nomem = true;
            return;
        }
        w->stack[w->nstack++] = cur + off->gc_head;
        w->gc_tracked++;
        prev = cur;
        cur = g[0] & ~(uint64_t)3;
    }
}

static void ref_at(struct walk *w, uint64_t addr)
{
    uint64_t v;
    if (pyheap_walk_read_u64(w, addr, &v) == 0)
        pyheap_walk_ref(w, v);
}

static void walk_frames(struct walk *w, uint64_t tstate)
{
    const struct pyheap_offsets *off = &w->t->off;
    uint64_t cframe, f;
    if (pyheap_walk_read_u64(w, tstate + off->tstate_cframe, &cframe) < 0 || !cframe ||
        pyheap_walk_read_u64(w, cframe + off->cframe_current_frame, &f) < 0)
        return;
    for (int n = 0; f && n < MAX_FRAMES && !w->gone; n++) {
        if (pyheap_walk_iframe_refs(w, f) < 0) {
            w->skipped++;
            return;
        }
        if (pyheap_walk_read_u64(w, f + off->iframe_previous, &f) < 0)
            return;
    }
}

static void walk_thread(struct walk *w, uint64_t ts)
{
    const struct pyheap_offsets *off = &w->t->off;
    size_t fields[] = { off->tstate_dict, off->tstate_curexc_type,
                        off->tstate_curexc_value, off->tstate_curexc_traceback,
                        off->tstate_async_exc, off->tstate_c_profileobj,
                        off->tstate_c_traceobj, off->tstate_context };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (fields[i] != PYHEAP_OFF_ABSENT)
            ref_at(w, ts + fields[i]);
    uint64_t item;
    if (off->tstate_exc_info != PYHEAP_OFF_ABSENT &&
        pyheap_walk_read_u64(w, ts + off->tstate_exc_info, &item) == 0) {
        for (int n = 0; item && n < MAX_EXC_CHAIN; n++) {
            ref_at(w, item + off->err_stackitem_exc_value);
            if (pyheap_walk_read_u64(w, item + off->err_stackitem_previous_item, &item) < 0)
                break;
        }
    }
    walk_frames(w, ts);
}

static void walk_interp(struct walk *w, uint64_t interp)
{
    const struct pyheap_offsets *off = &w->t->off;
    uint64_t gc = interp + off->interp_gc;
    for (int i = 0; i < 3; i++)
        walk_gc_list(w, gc + off->gcstate_generations + (uint64_t)i * off->gc_generation +
                        off->gc_generation_head);
    if (off->gcstate_permanent_generation != PYHEAP_OFF_ABSENT)
        walk_gc_list(w, gc + off->gcstate_permanent_generation + off->gc_generation_head);
    size_t roots[] = { off->interp_modules, off->interp_modules_by_index,
                       off->interp_sysdict, off->interp_builtins,
                       off->interp_importlib, off->interp_dict,
                       off->interp_builtins_copy, off->interp_import_func,
                       off->interp_codec_search_path, off->interp_codec_search_cache,
                       off->interp_codec_error_registry };
    for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++)
        if (roots[i] != PYHEAP_OFF_ABSENT)
            ref_at(w, interp + roots[i]);
    if (off->gcstate_garbage != PYHEAP_OFF_ABSENT)
        ref_at(w, gc + off->gcstate_garbage);
    if (off->gcstate_callbacks != PYHEAP_OFF_ABSENT)
        ref_at(w, gc + off->gcstate_callbacks);
    uint64_t ts;
    if (pyheap_walk_read_u64(w, interp + off->interp_threads_head, &ts) < 0)
        return;
    for (int n = 0; ts && n < MAX_THREADS && !w->gone; n++) {
        walk_thread(w, ts);
        if (pyheap_walk_read_u64(w, ts + off->tstate_next, &ts) < 0)
            break;
    }
}

static void walk_free(struct walk *w)
{
    free(w->seen.slots);
    free(w->stack);
    free(w->recs);
    free(w->tmap);
    for (size_t i = 0; i < w->ntypes; i++) {
        free(w->types[i]->members);
        free(w->types[i]);
    }
    free(w->types);
    if (w->names)
        for (size_t i = 0; i < w->nnames; i++)
            free(w->names[i]);
    free(w->names);
    free(w->name_slots);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int pyheap_walk(pyheap_target *t, const pyheap_scan_opts *opts,
                pyheap_snapshot **out, pyheap_error *err)
{
    if (!t || !t->mem || !out)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "pyheap_walk needs an opened target");
    double t0 = now_ms();
    struct walk w;
    memset(&w, 0, sizeof w);
    w.t = t;
    w.mem = t->mem;
    w.max_objects = opts && opts->max_objects ? opts->max_objects : DEFAULT_MAX_OBJECTS;
    uint64_t reads0, bytes0;
    pyheap_mem_counters(t->mem, &reads0, &bytes0);
    pyheap_mem_cache_clear(t->mem);

    const struct pyheap_offsets *off = &t->off;
    uint64_t interp = 0;
    if (pyheap_mem_read(t->mem, t->runtime_addr + off->runtime_interpreters_head,
                        &interp, sizeof interp, err) < 0)
        return -1;
    if (!interp)
        return pyheap_err_set(err, PYHEAP_E_CORRUPT, 0, t->runtime_addr,
                              "process %d has no Python interpreter state (exiting or not "
                              "yet initialised); try again", (int)t->pid);
    for (int n = 0; interp && n < MAX_INTERPRETERS && !w.gone; n++) {
        walk_interp(&w, interp);
        if (pyheap_walk_read_u64(&w, interp + off->interp_next, &interp) < 0)
            break;
    }
    while (w.nstack > 0 && !w.gone && !w.nomem && !w.truncated)
        visit(&w, w.stack[--w.nstack]);
    if (w.nstack > 0 && w.truncated)
        w.nstack = 0;

    int rc = 0;
    pyheap_error gone_err;
    if (w.gone || (t->pid > 0 && pyheap_target_check_alive(t, &gone_err) < 0)) {
        if (err) {
            if (w.gone)
                pyheap_err_set(err, PYHEAP_E_GONE, ESRCH, 0,
                               "process %d exited during the scan", (int)t->pid);
            else
                *err = gone_err;
        }
        rc = -1;
    } else if (w.nomem) {
        rc = pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0,
                            "out of memory while scanning process %d (%zu objects so far)",
                            (int)t->pid, w.nrecs);
    }
    if (rc == 0) {
        pyheap_scan_stats st;
        memset(&st, 0, sizeof st);
        st.skipped = w.skipped;
        st.gc_tracked = w.gc_tracked;
        uint64_t reads1, bytes1;
        pyheap_mem_counters(t->mem, &reads1, &bytes1);
        st.remote_reads = reads1 - reads0;
        st.remote_bytes = bytes1 - bytes0;
        st.truncated = w.truncated;
        st.scan_ms = now_ms() - t0;
        char **names = w.names;
        size_t nnames = w.nnames;
        w.names = NULL;
        w.nnames = 0;
        rc = pyheap_snapshot_build(w.recs, w.nrecs, names, nnames, &st, out, err);
    }
    pyheap_mem_cache_clear(t->mem);
    walk_free(&w);
    return rc;
}
