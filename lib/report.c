/* JSON reports (docs/protocol.md), built only through the public API. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
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

json_t *pyheap_report_top(const pyheap_target *t, const pyheap_snapshot *s,
                          pyheap_sort sort, size_t n, pyheap_error *err)
{
    pyheap_type_stat *hist = NULL;
    size_t nhist = 0;
    if (pyheap_histogram(s, sort, &hist, &nhist, err) < 0)
        return NULL;
    json_t *o = pyheap_report_top_hist(
        pyheap_target_pid(t), pyheap_target_version(t),
        pyheap_offsets_source_name(pyheap_target_offsets_source(t)),
        pyheap_snapshot_stats(s), hist, nhist, n, err);
    free(hist);
    return o;
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
