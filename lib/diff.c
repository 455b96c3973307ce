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

/* Is object J of NEWER (an index) present in OLDER with the same type name? */
static int in_older(const pyheap_snapshot *older, const pyheap_snapshot *newer, size_t j)
{
    size_t k = pyheap_snapshot_find(older, pyheap_snapshot_addr(newer, j));
    if (k == SIZE_MAX)
        return 0;
    return strcmp(pyheap_snapshot_type_name(older, pyheap_snapshot_type(older, k)),
                  pyheap_snapshot_type_name(newer, pyheap_snapshot_type(newer, j))) == 0;
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

int pyheap_diff_compute(const pyheap_snapshot *older, const pyheap_snapshot *newer,
                        pyheap_diff **out, pyheap_error *err)
{
    if (!older || !newer || !out)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0, "pyheap_diff_compute: missing argument");
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
    if (!d || !isnew || !via_src || !via_k || !tcount || !tbytes)
        goto oom;
    for (size_t j = 0; j < n; j++) {
        if (in_older(older, newer, j))
            continue;
        isnew[j] = 1;
        uint32_t t = pyheap_snapshot_type(newer, j);
        d->new_objects++;
        d->new_bytes += pyheap_snapshot_size(newer, j);
        tcount[t]++;
        tbytes[t] += pyheap_snapshot_size(newer, j);
    }
    size_t no = pyheap_snapshot_count(older);
    for (size_t k = 0; k < no; k++) {
        size_t j = pyheap_snapshot_find(newer, pyheap_snapshot_addr(older, k));
        if (j == SIZE_MAX ||
            strcmp(pyheap_snapshot_type_name(older, pyheap_snapshot_type(older, k)),
                   pyheap_snapshot_type_name(newer, pyheap_snapshot_type(newer, j))) != 0) {
            d->gone_objects++;
            d->gone_bytes += pyheap_snapshot_size(older, k);
        }
    }
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
