/* JSON reports (docs/protocol.md), built only through the public API. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "proto.h"
#include "pyheap_report.h"

/* A JSON string for text that came from the target or the file system:
 * invalid UTF-8 becomes '?' instead of failing the whole report. */
static json_t *safe_string(const char *s)
{
    if (!s)
        s = "";
    json_t *j = json_string(s);
    if (j)
        return j;
    size_t len = strlen(s);
    char *c = malloc(len + 1);
    if (!c)
        return NULL;
    for (size_t i = 0; i <= len; i++) {
        unsigned char b = (unsigned char)s[i];
        c[i] = (b == 0 || (b >= 0x20 && b < 0x7f)) ? (char)b : '?';
    }
    j = json_string(c);
    free(c);
    return j;
}

static json_t *oom(json_t *o, pyheap_error *err)
{
    json_decref(o);
    pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0, "out of memory building a JSON report");
    return NULL;
}

/* jansson integers are signed 64-bit; our counters never get near 2^63, but
 * clamp rather than wrap if a corrupt value ever does. */
static json_t *jint(uint64_t v)
{
    return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

json_t *pyheap_report_top_hist(pid_t pid, const char *python,
                               const char *offsets_source,
                               const pyheap_scan_stats *stats,
                               const pyheap_type_stat *hist, size_t nhist,
                               size_t n, pyheap_error *err)
{
    if (!python || !offsets_source || !stats || (nhist && !hist))
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "pyheap_report_top_hist: missing argument"), NULL;
    size_t shown = (n == 0 || n > nhist) ? nhist : n;
    /* Two decimals are plenty for a wall time in milliseconds. */
    double ms = isfinite(stats->scan_ms) && stats->scan_ms > 0
                    ? round(stats->scan_ms * 100.0) / 100.0 : 0.0;

    json_t *o = json_object();
    if (!o)
        return oom(NULL, err);
    if (json_object_set_new(o, "pid", json_integer(pid)) < 0 ||
        json_object_set_new(o, "python", safe_string(python)) < 0 ||
        json_object_set_new(o, "offsets_source", json_string(offsets_source)) < 0 ||
        json_object_set_new(o, "objects", jint(stats->objects)) < 0 ||
        json_object_set_new(o, "bytes", jint(stats->bytes)) < 0 ||
        json_object_set_new(o, "skipped", jint(stats->skipped)) < 0 ||
        json_object_set_new(o, "scan_ms", json_real(ms)) < 0 ||
        json_object_set_new(o, "scan_truncated", json_boolean(stats->truncated)) < 0 ||
        json_object_set_new(o, "ntypes", jint(nhist)) < 0 ||
        json_object_set_new(o, "truncated_types", jint(nhist - shown)) < 0)
        return oom(o, err);
    json_t *types = json_array();
    if (!types || json_object_set_new(o, "types", types) < 0)
        return oom(o, err);
    for (size_t i = 0; i < shown; i++) {
        json_t *e = json_object();
        if (!e || json_array_append_new(types, e) < 0)
            return oom(o, err);
        if (json_object_set_new(e, "type", safe_string(hist[i].name)) < 0 ||
            json_object_set_new(e, "count", jint(hist[i].count)) < 0 ||
            json_object_set_new(e, "bytes", jint(hist[i].bytes)) < 0)
            return oom(o, err);
    }
    return o;
}

/* The "top" report of target T from HIST (taken: freed here). */
static json_t *top_of(const pyheap_target *t, const pyheap_scan_stats *stats,
                      pyheap_type_stat *hist, size_t nhist, size_t n, pyheap_error *err)
{
    json_t *o = pyheap_report_top_hist(
        pyheap_target_pid(t), pyheap_target_version(t),
        pyheap_offsets_source_name(pyheap_target_offsets_source(t)),
        stats, hist, nhist, n, err);
    free(hist);
    return o;
}

json_t *pyheap_report_top(const pyheap_target *t, const pyheap_snapshot *s,
                          pyheap_sort sort, size_t n, pyheap_error *err)
{
    pyheap_type_stat *hist = NULL;
    size_t nhist = 0;
    if (pyheap_histogram(s, sort, &hist, &nhist, err) < 0)
        return NULL;
    return top_of(t, pyheap_snapshot_stats(s), hist, nhist, n, err);
}

json_t *pyheap_report_top_census(const pyheap_target *t, const pyheap_census *c,
                                 pyheap_sort sort, size_t n, pyheap_error *err)
{
    pyheap_type_stat *hist = NULL;
    size_t nhist = 0;
    if (pyheap_census_histogram(c, sort, &hist, &nhist, err) < 0)
        return NULL;
    return top_of(t, pyheap_census_stats(c), hist, nhist, n, err);
}

json_t *pyheap_report_target(const pyheap_target *t, pyheap_error *err)
{
    json_t *o = json_object();
    if (!o)
        return oom(NULL, err);
    const char *detail = pyheap_target_offsets_detail(t);
    const char *module = pyheap_target_module(t);
    if (json_object_set_new(o, "pid", json_integer(pyheap_target_pid(t))) < 0 ||
        json_object_set_new(o, "python", safe_string(pyheap_target_version(t))) < 0 ||
        json_object_set_new(o, "offsets_source",
                            json_string(pyheap_offsets_source_name(
                                pyheap_target_offsets_source(t)))) < 0 ||
        json_object_set_new(o, "offsets_detail", safe_string(detail)) < 0 ||
        json_object_set_new(o, "module", safe_string(module)) < 0)
        return oom(o, err);
    return o;
}

/* ---- referrers ---------------------------------------------------------- */

static json_t *flags_array(unsigned flags)
{
    json_t *a = json_array();
    if (!a)
        return NULL;
    if (((flags & PYHEAP_EDGE_WEAK) && json_array_append_new(a, json_string("weak")) < 0) ||
        ((flags & PYHEAP_EDGE_INFERRED) &&
         json_array_append_new(a, json_string("inferred")) < 0) ||
        ((flags & PYHEAP_EDGE_CUT) && json_array_append_new(a, json_string("cut")) < 0)) {
        json_decref(a);
        return NULL;
    }
    return a;
}

json_t *pyheap_report_referrers_data(pid_t pid, const char *type,
                                     const pyheap_referrers *r,
                                     const pyheap_scan_stats *stats,
                                     pyheap_error *err)
{
    if (!type || !r || (r->ngroups && !r->groups) || (r->npaths && !r->paths))
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "pyheap_report_referrers_data: missing argument"), NULL;
    double ms = stats && isfinite(stats->scan_ms) && stats->scan_ms > 0
                    ? round(stats->scan_ms * 100.0) / 100.0 : 0.0;
    json_t *o = json_object();
    if (!o)
        return oom(NULL, err);
    if (json_object_set_new(o, "pid", json_integer(pid)) < 0 ||
        json_object_set_new(o, "type", safe_string(type)) < 0 ||
        json_object_set_new(o, "objects", jint(r->objects)) < 0 ||
        json_object_set_new(o, "bytes", jint(r->bytes)) < 0 ||
        json_object_set_new(o, "scan_ms", json_real(ms)) < 0 ||
        json_object_set_new(o, "scan_truncated",
                            json_boolean(stats && stats->truncated)) < 0)
        return oom(o, err);
    json_t *groups = json_array();
    if (!groups || json_object_set_new(o, "referrers", groups) < 0)
        return oom(o, err);
    for (size_t i = 0; i < r->ngroups; i++) {
        const pyheap_referrer_group *g = &r->groups[i];
        /* A parent must precede its child (the library's contract); any
         * other value is reported as no parent rather than a dangling index. */
        json_t *parent = g->parent < i ? jint(g->parent) : json_null();
        json_t *e = json_object();
        if (!e || json_array_append_new(groups, e) < 0) {
            json_decref(parent);
            return oom(o, err);
        }
        if (json_object_set_new(e, "type", safe_string(g->type_name)) < 0 ||
            json_object_set_new(e, "via", safe_string(g->via)) < 0 ||
            json_object_set_new(e, "count", jint(g->count)) < 0 ||
            json_object_set_new(e, "bytes", jint(g->bytes)) < 0 ||
            json_object_set_new(e, "depth", jint(g->depth)) < 0 ||
            json_object_set_new(e, "parent", parent) < 0 ||
            json_object_set_new(e, "flags", flags_array(g->flags)) < 0)
            return oom(o, err);
    }
    json_t *paths = json_array();
    if (!paths || json_object_set_new(o, "paths", paths) < 0)
        return oom(o, err);
    for (size_t i = 0; i < r->npaths; i++) {
        json_t *e = json_object();
        if (!e || json_array_append_new(paths, e) < 0 ||
            json_object_set_new(e, "path", safe_string(r->paths[i].path)) < 0 ||
            json_object_set_new(e, "count", jint(r->paths[i].count)) < 0)
            return oom(o, err);
    }
    if (json_object_set_new(o, "unreachable", jint(r->unreachable)) < 0)
        return oom(o, err);
    return o;
}

/* The part of a qualified name after its last dot. */
static const char *short_name(const char *q)
{
    const char *d = strrchr(q, '.');
    return d ? d + 1 : q;
}

/* Case-insensitive Levenshtein distance of the first 64 bytes of A and B. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strnlen(a, 64), lb = strnlen(b, 64);
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            int same = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]);
            size_t best = diag + (same ? 0 : 1);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

struct suggestion {
    size_t score;
    const char *name;
};

static int cmp_suggestion(const void *pa, const void *pb)
{
    const struct suggestion *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score < b->score ? -1 : 1;
    return strcmp(a->name, b->name);
}

#define MAX_SUGGESTIONS 5

/* Up to MAX_SUGGESTIONS type names of S close to NAME, best first: same
 * short name ignoring case, NAME inside the type name, or a short name a
 * few edits away. New reference (array) or NULL on OOM. */
static json_t *suggest_types(const pyheap_snapshot *s, const char *name)
{
    struct suggestion best[MAX_SUGGESTIONS + 1];
    size_t nbest = 0;
    const char *want = short_name(name);
    size_t wlen = strlen(want);
    size_t limit = wlen < 8 ? 1 : wlen / 4;
    size_t nt = pyheap_snapshot_ntypes(s);
    for (size_t i = 0; i < nt; i++) {
        const char *tn = pyheap_snapshot_type_name(s, (uint32_t)i);
        if (!tn || !*tn)
            continue;
        size_t score;
        if (strcasecmp(short_name(tn), want) == 0 || strcasecmp(tn, name) == 0)
            score = 0;
        else if (wlen >= 3 && strcasestr(tn, want))
            score = 1;
        else {
            size_t d = edit_distance(short_name(tn), want);
            if (d > limit)
                continue;
            score = 1 + d;
        }
        best[nbest++] = (struct suggestion){ score, tn };
        qsort(best, nbest, sizeof best[0], cmp_suggestion);
        if (nbest > MAX_SUGGESTIONS)
            nbest = MAX_SUGGESTIONS;
    }
    json_t *a = json_array();
    for (size_t i = 0; a && i < nbest; i++)
        if (json_array_append_new(a, safe_string(best[i].name)) < 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

static int cmp_str(const void *pa, const void *pb)
{
    return strcmp(*(const char *const *)pa, *(const char *const *)pb);
}

/* Append the names of ARR (strings) to BUF as "a, b, c", bounded. */
static void join_names(const json_t *arr, char *buf, size_t sz)
{
    size_t len = strlen(buf);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        int w = snprintf(buf + len, sz - len, "%s%s", i ? ", " : "",
                         json_string_value(json_array_get(arr, i)));
        if (w < 0 || (size_t)w >= sz - len) {
            if (sz > 4)
                memcpy(buf + sz - 4, "...", 4);
            return;
        }
        len += (size_t)w;
    }
}

/* {"ok":false,"error":CODE,"message":MSG,KEY:LIST} (steals LIST). */
static json_t *type_error(const char *code, const char *msg, const char *key, json_t *list,
                          pyheap_error *err)
{
    json_t *o = json_object();
    if (!o || !list) {
        json_decref(list);
        return oom(o, err);
    }
    if (json_object_set_new(o, "ok", json_false()) < 0 ||
        json_object_set_new(o, "error", json_string(code)) < 0 ||
        json_object_set_new(o, "message", safe_string(msg)) < 0 ||
        json_object_set_new(o, key, list) < 0)
        return oom(o, err);
    return o;
}

json_t *pyheap_report_referrers(pid_t pid, const pyheap_snapshot *s, const char *name,
                                const pyheap_referrers_opts *opts, pyheap_error *err)
{
    if (!s || !name)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "pyheap_report_referrers: missing argument"), NULL;
    uint32_t *types = NULL;
    size_t ntypes = 0;
    pyheap_error lerr;
    char msg[sizeof lerr.msg];
    if (pyheap_type_lookup(s, name, &types, &ntypes, &lerr) < 0) {
        if (lerr.code != PYHEAP_E_NOTFOUND) {
            if (err)
                *err = lerr;
            return NULL;
        }
        ntypes = 0;
    }
    if (ntypes == 0) {
        free(types);
        json_t *sug = suggest_types(s, name);
        snprintf(msg, sizeof msg,
                 "no live object has a type named '%.256s' in process %d", name, (int)pid);
        if (sug && json_array_size(sug) > 0) {
            size_t l = strlen(msg);
            snprintf(msg + l, sizeof msg - l, "; did you mean: ");
            join_names(sug, msg, sizeof msg);
            l = strlen(msg);
            if (l + 1 < sizeof msg)
                snprintf(msg + l, sizeof msg - l, "?");
        } else {
            size_t l = strlen(msg);
            snprintf(msg + l, sizeof msg - l,
                     " (type names are as `pyheap top` shows them, e.g. "
                     "'mypkg.models.User' or 'User')");
        }
        return type_error(pyheap_errcode_name(PYHEAP_E_NOTFOUND), msg, "suggestions", sug, err);
    }
    if (ntypes > 1) {
        const char **names = malloc(ntypes * sizeof *names);
        json_t *cand = json_array();
        if (!names || !cand) {
            free(names);
            free(types);
            json_decref(cand);
            return oom(NULL, err);
        }
        for (size_t i = 0; i < ntypes; i++) {
            names[i] = pyheap_snapshot_type_name(s, types[i]);
            if (!names[i])
                names[i] = "?";
        }
        qsort(names, ntypes, sizeof *names, cmp_str);
        for (size_t i = 0; i < ntypes; i++)
            if (json_array_append_new(cand, safe_string(names[i])) < 0) {
                json_decref(cand);
                cand = NULL;
                break;
            }
        free(names);
        free(types);
        snprintf(msg, sizeof msg, "'%.256s' names %zu types in process %d; "
                 "ask for one by its qualified name: ", name, ntypes, (int)pid);
        if (cand)
            join_names(cand, msg, sizeof msg);
        return type_error(PYHEAP_PROTO_E_AMBIGUOUS, msg, "candidates", cand, err);
    }
    pyheap_referrers *r = NULL;
    if (pyheap_referrers_compute(s, types, ntypes, opts, &r, err) < 0) {
        free(types);
        return NULL;
    }
    json_t *rep = pyheap_report_referrers_data(pid, pyheap_snapshot_type_name(s, types[0]),
                                               r, pyheap_snapshot_stats(s), err);
    free(types);
    pyheap_referrers_free(r);
    if (!rep)
        return NULL;
    json_t *o = json_object();
    if (!o || json_object_set_new(o, "ok", json_true()) < 0 || json_object_update(o, rep) < 0) {
        json_decref(rep);
        return oom(o, err);
    }
    json_decref(rep);
    return o;
}
