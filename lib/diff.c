/* Object-level diff of two snapshots by address + type name (CPython
 * objects never move), with the referrer ("via") of each new object taken
 * from the newer snapshot's graph. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "snapshot.h"
#include "pyheap_report.h"

#define NONE_VIA "<none>"
#define ROOT_VIA "<root>"

struct rec {
    uint32_t type;
    const char *via_type;
    char *via;
    uint64_t bytes;
};

static int rec_cmp(const void *a, const void *b)
{
    const struct rec *x = a, *y = b;
    if (x->type != y->type)
        return x->type < y->type ? -1 : 1;
    int c = strcmp(x->via_type, y->via_type);
    return c ? c : strcmp(x->via, y->via);
}

static int via_cmp(const void *a, const void *b)
{
    const pyheap_diff_via *x = a, *y = b;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    if (x->bytes != y->bytes)
        return x->bytes > y->bytes ? -1 : 1;
    int c = strcmp(x->type_name, y->type_name);
    return c ? c : strcmp(x->via, y->via);
}

static int type_cmp(const void *a, const void *b)
{
    const pyheap_diff_type *x = a, *y = b;
    if (x->bytes != y->bytes)
        return x->bytes > y->bytes ? -1 : 1;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return strcmp(x->type_name, y->type_name);
}

/* "[17]" -> "[*]": items of one sequence group together. */
static void normalize_label(char *l)
{
    size_t n = strlen(l);
    if (n < 3 || l[0] != '[' || l[n - 1] != ']')
        return;
    for (size_t i = 1; i + 1 < n; i++)
        if (l[i] < '0' || l[i] > '9')
            return;
    strcpy(l, "[*]");
}

/* ---- packed objects (pyheap_snapshot_pack) ---- */

struct pyheap_packed {
    size_t n;
    unsigned char *bytes;   /* per object: varints of the address delta
                             * (>> shift), the size and the type */
    size_t len;
    unsigned shift;         /* 3 when every address is 8-aligned, else 0 */
    char **names;
    size_t ntypes;
    pyheap_scan_stats stats;
    size_t held;            /* bytes allocated for all of it */
};

/* A varint of at most 10 bytes before END; false when it runs past. */
static bool get_varint(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned sh = 0; *p < end && sh < 70; sh += 7) {
        unsigned char c = *(*p)++;
        x |= (uint64_t)(c & 0x7f) << sh;
        if (!(c & 0x80)) {
            *v = x;
            return true;
        }
    }
    return false;
}

void pyheap_packed_free(pyheap_packed *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->ntypes; i++)
        free(p->names[i]);
    free(p->names);
    free(p->bytes);
    free(p);
}

int pyheap_snapshot_pack(const pyheap_snapshot *s, pyheap_packed **out, pyheap_error *err)
{
    if (!s || !out)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0, "pyheap_snapshot_pack: missing argument");
    size_t n = pyheap_snapshot_count(s);
    pyheap_packed *p = calloc(1, sizeof *p);
    if (!p)
        goto oom;
    p->n = n;
    p->stats = *pyheap_snapshot_stats(s);
    p->ntypes = pyheap_snapshot_ntypes(s);
    p->names = calloc(p->ntypes ? p->ntypes : 1, sizeof *p->names);
    if (!p->names) {
        p->ntypes = 0;
        goto oom;
    }
    for (size_t t = 0; t < p->ntypes; t++)
        if (!(p->names[t] = strdup(pyheap_snapshot_type_name(s, (uint32_t)t))))
            goto oom;
    p->shift = 3;
    for (size_t i = 0; i < n && p->shift; i++)
        if (s->addr[i] & 7)
            p->shift = 0;
    /* about 3.5 bytes an object; grown as needed, trimmed at the end */
    size_t cap = n * 4 + 64;
    p->bytes = malloc(cap);
    if (!p->bytes)
        goto oom;
    uint64_t prev = 0;
    for (size_t i = 0; i < n; i++) {
        if (cap - p->len < 30) {
            size_t ncap = cap + cap / 2;
            unsigned char *nb = realloc(p->bytes, ncap);
            if (!nb)
                goto oom;
            p->bytes = nb;
            cap = ncap;
        }
        unsigned char *q = p->bytes + p->len;
        q = snapshot_put_varint(q, (s->addr[i] - prev) >> p->shift);
        q = snapshot_put_varint(q, s->size[i]);
        q = snapshot_put_varint(q, s->type[i]);
        p->len = (size_t)(q - p->bytes);
        prev = s->addr[i];
    }
    unsigned char *nb = realloc(p->bytes, p->len ? p->len : 1);
    if (nb) {
        p->bytes = nb;
        cap = p->len ? p->len : 1;
    }
    p->held = sizeof *p + cap + p->ntypes * sizeof *p->names;
    for (size_t t = 0; t < p->ntypes; t++)
        p->held += strlen(p->names[t]) + 1;
    *out = p;
    return 0;
oom:
    pyheap_packed_free(p);
    return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0,
                          "out of memory packing a snapshot of %zu objects", n);
}

size_t pyheap_packed_count(const pyheap_packed *p)
{
    return p->n;
}

size_t pyheap_packed_bytes(const pyheap_packed *p)
{
    return p->held;
}

const pyheap_scan_stats *pyheap_packed_stats(const pyheap_packed *p)
{
    return &p->stats;
}

/* The older side of a diff in address order: a snapshot's objects, or a
 * packed copy's. */
struct older {
    const pyheap_snapshot *s;
    const pyheap_packed *p;
    size_t i;
    const unsigned char *q;
    uint64_t addr, size;
    uint32_t type;
};

/* The next object into O's addr, size and type; false at the end (or at
 * a packed stream that does not decode: none is made so). */
static bool older_next(struct older *o)
{
    if (o->s) {
        if (o->i >= pyheap_snapshot_count(o->s))
            return false;
        o->addr = pyheap_snapshot_addr(o->s, o->i);
        o->size = pyheap_snapshot_size(o->s, o->i);
        o->type = pyheap_snapshot_type(o->s, o->i);
        o->i++;
        return true;
    }
    const unsigned char *end = o->p->bytes + o->p->len;
    uint64_t delta, size, type;
    if (o->i >= o->p->n || !get_varint(&o->q, end, &delta) || !get_varint(&o->q, end, &size) ||
        !get_varint(&o->q, end, &type))
        return false;
    o->addr += delta << o->p->shift;
    o->size = size;
    o->type = type > UINT32_MAX ? UINT32_MAX : (uint32_t)type;
    o->i++;
    return true;
}

/* Types are matched by name (two types may share one: the first index of
 * each name stands for it). */
struct name_ref {
    const char *name;
    uint32_t idx;
};

static int name_ref_cmp(const void *a, const void *b)
{
    const struct name_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* The first index of NEWER's types named NAME, or UINT32_MAX. */
static uint32_t name_canon(const struct name_ref *sorted, size_t n, const char *name)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(sorted[mid].name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && strcmp(sorted[lo].name, name) == 0 ? sorted[lo].idx : UINT32_MAX;
}

void pyheap_diff_free(pyheap_diff *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->nvias; i++)
        free(d->vias[i].via);
    free(d->vias);
    free(d->types);
    free(d);
}

/* The diff of the objects O yields (in address order, with ONT type names
 * ONAMES) against NEWER. */
static int diff_core(struct older *old, char *const *onames, size_t ont,
                     const pyheap_snapshot *newer, pyheap_diff **out, pyheap_error *err)
{
    size_t n = pyheap_snapshot_count(newer);
    size_t nt = pyheap_snapshot_ntypes(newer);
    pyheap_diff *d = calloc(1, sizeof *d);
    /* isnew[j]: 1 new, then 2 once its via is known. */
    uint8_t *isnew = calloc(n ? n : 1, 1);
    uint32_t *via_src = malloc((n ? n : 1) * sizeof *via_src);
    uint32_t *via_k = malloc((n ? n : 1) * sizeof *via_k);
    uint64_t *tcount = calloc(nt ? nt : 1, sizeof *tcount);
    uint64_t *tbytes = calloc(nt ? nt : 1, sizeof *tbytes);
    struct rec *recs = NULL;
    struct name_ref *byname = calloc(nt ? nt : 1, sizeof *byname);
    uint32_t *ncanon = calloc(nt ? nt : 1, sizeof *ncanon);
    uint32_t *ocanon = calloc(ont ? ont : 1, sizeof *ocanon);
    if (!d || !isnew || !via_src || !via_k || !tcount || !tbytes || !byname || !ncanon ||
        !ocanon) {
        free(byname);
        free(ncanon);
        free(ocanon);
        goto oom;
    }
    /* An object is in both when the other holds one at its address whose
     * type has the same name ("?" for an index beyond the names). */
    for (size_t t = 0; t < nt; t++)
        byname[t] = (struct name_ref){ pyheap_snapshot_type_name(newer, (uint32_t)t), (uint32_t)t };
    qsort(byname, nt, sizeof *byname, name_ref_cmp);
    for (size_t t = 0; t < nt; t++)
        ncanon[t] = name_canon(byname, nt, pyheap_snapshot_type_name(newer, (uint32_t)t));
    /* a type index beyond the names reads "?" (pyheap_snapshot_type_name):
     * the newer's type of that name, or one of its own past the others */
    uint32_t qcanon = name_canon(byname, nt, "?");
    if (qcanon == UINT32_MAX)
        qcanon = (uint32_t)nt;
    for (size_t t = 0; t < ont; t++)
        ocanon[t] = strcmp(onames[t], "?") == 0 ? qcanon : name_canon(byname, nt, onames[t]);
    /* Both in address order: one pass. */
    bool have = older_next(old);
    for (size_t j = 0; j < n || have;) {
        uint64_t na = j < n ? pyheap_snapshot_addr(newer, j) : 0;
        if (have && (j >= n || old->addr < na)) {
            d->gone_objects++;   /* only in the older */
            d->gone_bytes += old->size;
            have = older_next(old);
            continue;
        }
        uint32_t t = pyheap_snapshot_type(newer, j);
        bool same = false;
        if (have && old->addr == na) {
            uint32_t oc = old->type < ont ? ocanon[old->type] : qcanon;
            same = oc != UINT32_MAX && oc == (t < nt ? ncanon[t] : qcanon);
            if (!same) {
                d->gone_objects++;   /* another object at its address */
                d->gone_bytes += old->size;
            }
            have = older_next(old);
        }
        /* (the build gives every object a type below ntypes: one beyond
         * would have no row to count in) */
        if (!same && t < nt) {
            isnew[j] = 1;
            d->new_objects++;
            d->new_bytes += pyheap_snapshot_size(newer, j);
            tcount[t]++;
            tbytes[t] += pyheap_snapshot_size(newer, j);
        }
        j++;
    }
    free(byname);
    free(ncanon);
    free(ocanon);
    /* Referrers: the first strong edge found into each new object; a weak
     * one only if nothing else refers to it. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            size_t ne = pyheap_snapshot_nedges(newer, i);
            for (size_t k = 0; k < ne; k++) {
                size_t t = pyheap_snapshot_edge_target(newer, i, k);
                if (t >= n || isnew[t] != 1)
                    continue;
                unsigned f = pyheap_snapshot_edge_flags(newer, i, k);
                if (pass == 0 && (f & PYHEAP_EDGE_WEAK))
                    continue;
                isnew[t] = 2;
                via_src[t] = (uint32_t)i;
                via_k[t] = (uint32_t)k;
            }
        }
    }
    size_t nr = pyheap_snapshot_nroots(newer);
    for (size_t r = 0; r < nr; r++) {
        size_t o = pyheap_snapshot_root_object(newer, r);
        if (o < n && isnew[o] == 1) {
            isnew[o] = 3;
            via_src[o] = (uint32_t)r;
        }
    }
    recs = calloc(d->new_objects ? d->new_objects : 1, sizeof *recs);
    if (!recs)
        goto oom;
    size_t m = 0;
    for (size_t j = 0; j < n; j++) {
        if (!isnew[j])
            continue;
        struct rec *r = &recs[m++];
        r->type = pyheap_snapshot_type(newer, j);
        r->bytes = pyheap_snapshot_size(newer, j);
        if (isnew[j] == 2) {
            char lbl[256];
            pyheap_snapshot_edge_label(newer, via_src[j], via_k[j], lbl, sizeof lbl);
            normalize_label(lbl);
            r->via_type = pyheap_snapshot_type_name(newer, pyheap_snapshot_type(newer, via_src[j]));
            r->via = strdup(lbl);
        } else if (isnew[j] == 3) {
            r->via_type = ROOT_VIA;
            r->via = strdup(pyheap_snapshot_root_name(newer, via_src[j]));
        } else {
            r->via_type = NONE_VIA;
            r->via = strdup("");
        }
        if (!r->via)
            goto oom;
    }
    qsort(recs, m, sizeof *recs, rec_cmp);
    d->vias = calloc(m ? m : 1, sizeof *d->vias);
    if (!d->vias)
        goto oom;
    for (size_t i = 0; i < m; i++) {
        pyheap_diff_via *v = d->nvias ? &d->vias[d->nvias - 1] : NULL;
        if (v && v->type == recs[i].type && strcmp(v->via_type, recs[i].via_type) == 0 &&
            strcmp(v->via, recs[i].via) == 0) {
            v->count++;
            v->bytes += recs[i].bytes;
            free(recs[i].via);
            recs[i].via = NULL;
            continue;
        }
        v = &d->vias[d->nvias++];
        v->type = recs[i].type;
        v->type_name = pyheap_snapshot_type_name(newer, recs[i].type);
        v->via_type = recs[i].via_type;
        v->via = recs[i].via;   /* moved */
        recs[i].via = NULL;
        v->count = 1;
        v->bytes = recs[i].bytes;
    }
    qsort(d->vias, d->nvias, sizeof *d->vias, via_cmp);
    size_t ntn = 0;
    for (size_t t = 0; t < nt; t++)
        ntn += tcount[t] != 0;
    d->types = calloc(ntn ? ntn : 1, sizeof *d->types);
    if (!d->types)
        goto oom;
    for (size_t t = 0; t < nt; t++)
        if (tcount[t])
            d->types[d->ntypes++] = (pyheap_diff_type){
                (uint32_t)t, pyheap_snapshot_type_name(newer, (uint32_t)t), tcount[t], tbytes[t] };
    qsort(d->types, d->ntypes, sizeof *d->types, type_cmp);
    free(recs);
    free(isnew);
    free(via_src);
    free(via_k);
    free(tcount);
    free(tbytes);
    *out = d;
    return 0;
oom:
    if (recs)
        for (size_t i = 0; i < d->new_objects; i++)
            free(recs[i].via);
    free(recs);
    free(isnew);
    free(via_src);
    free(via_k);
    free(tcount);
    free(tbytes);
    pyheap_diff_free(d);
    return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0, "out of memory diffing snapshots");
}

int pyheap_diff_compute(const pyheap_snapshot *older, const pyheap_snapshot *newer,
                        pyheap_diff **out, pyheap_error *err)
{
    if (!older || !newer || !out)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0, "pyheap_diff_compute: missing argument");
    struct older o = { .s = older };
    return diff_core(&o, older->names, older->ntypes, newer, out, err);
}

int pyheap_diff_packed(const pyheap_packed *older, const pyheap_snapshot *newer,
                       pyheap_diff **out, pyheap_error *err)
{
    if (!older || !newer || !out)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0, "pyheap_diff_packed: missing argument");
    struct older o = { .p = older, .q = older->bytes };
    return diff_core(&o, older->names, older->ntypes, newer, out, err);
}

/* ---- the JSON report ---- */

static json_t *jint(uint64_t v)
{
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

json_t *pyheap_report_diff(pid_t pid, const pyheap_diff *d, size_t n, pyheap_error *err)
{
    size_t nt = n && n < d->ntypes ? n : d->ntypes;
    size_t nv = n && n < d->nvias ? n : d->nvias;
    json_t *o = json_object(), *types = json_array(), *via = json_array();
    if (!o || !types || !via || json_object_set_new(o, "pid", json_integer(pid)) < 0 ||
        json_object_set_new(o, "new_objects", jint(d->new_objects)) < 0 ||
        json_object_set_new(o, "new_bytes", jint(d->new_bytes)) < 0 ||
        json_object_set_new(o, "gone_objects", jint(d->gone_objects)) < 0 ||
        json_object_set_new(o, "gone_bytes", jint(d->gone_bytes)) < 0 ||
        json_object_set_new(o, "types", types) < 0 ||
        json_object_set_new(o, "truncated_types", jint(d->ntypes - nt)) < 0 ||
        json_object_set_new(o, "via", via) < 0 ||
        json_object_set_new(o, "truncated_via", jint(d->nvias - nv)) < 0)
        goto oom;
    for (size_t i = 0; i < nt; i++) {
        json_t *e = json_object();
        if (!e || json_array_append_new(types, e) < 0 ||
            json_object_set_new(e, "type", json_string(d->types[i].type_name)) < 0 ||
            json_object_set_new(e, "count", jint(d->types[i].count)) < 0 ||
            json_object_set_new(e, "bytes", jint(d->types[i].bytes)) < 0)
            goto oom;
    }
    for (size_t i = 0; i < nv; i++) {
        json_t *e = json_object();
        if (!e || json_array_append_new(via, e) < 0 ||
            json_object_set_new(e, "type", json_string(d->vias[i].type_name)) < 0 ||
            json_object_set_new(e, "via_type", json_string(d->vias[i].via_type)) < 0 ||
            json_object_set_new(e, "via", json_string(d->vias[i].via)) < 0 ||
            json_object_set_new(e, "count", jint(d->vias[i].count)) < 0 ||
            json_object_set_new(e, "bytes", jint(d->vias[i].bytes)) < 0)
            goto oom;
    }
    return o;
oom:
    json_decref(o);
    if (!o) {
        json_decref(types);
        json_decref(via);
    }
    return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0, "out of memory building the diff report"),
           NULL;
}
