/* JSON reports (lib/report.c): the exact "top" shape from a given
 * histogram, and the report of a real snapshot of a live Python 3.11. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "pyheap_report.h"
#include "testutil.h"

static const char *const top_keys[] = {
    "pid", "python", "offsets_source", "objects", "bytes", "skipped", "scan_ms",
    "scan_truncated", "ntypes", "truncated_types", "types",
};

static void check_top_shape(const json_t *o)
{
    ck_assert(json_is_object(o));
    ck_assert_uint_eq(json_object_size(o), sizeof top_keys / sizeof top_keys[0]);
    for (size_t i = 0; i < sizeof top_keys / sizeof top_keys[0]; i++)
        ck_assert_msg(json_object_get(o, top_keys[i]) != NULL, "missing %s", top_keys[i]);
    ck_assert(json_is_integer(json_object_get(o, "pid")));
    ck_assert(json_is_string(json_object_get(o, "python")));
    ck_assert(json_is_string(json_object_get(o, "offsets_source")));
    ck_assert(json_is_integer(json_object_get(o, "objects")));
    ck_assert(json_is_integer(json_object_get(o, "bytes")));
    ck_assert(json_is_integer(json_object_get(o, "skipped")));
    ck_assert(json_is_number(json_object_get(o, "scan_ms")));
    ck_assert(json_is_boolean(json_object_get(o, "scan_truncated")));
    const json_t *types = json_object_get(o, "types");
    ck_assert(json_is_array(types));
    for (size_t i = 0; i < json_array_size(types); i++) {
        const json_t *e = json_array_get(types, i);
        ck_assert_uint_eq(json_object_size(e), 3);
        ck_assert(json_is_string(json_object_get(e, "type")));
        ck_assert(json_is_integer(json_object_get(e, "count")));
        ck_assert(json_is_integer(json_object_get(e, "bytes")));
    }
}

static const pyheap_type_stat hist4[] = {
    { 0, "dict", 10, 4000 },
    { 1, "str", 100, 3000 },
    { 2, "__main__.Plain", 50, 2000 },
    { 3, "bad\xff\xfename", 1, 16 },
};

START_TEST(top_from_histogram)
{
    pyheap_scan_stats st = { .objects = 161, .bytes = 9016, .skipped = 3,
                             .scan_ms = 12.3456789, .truncated = 0 };
    pyheap_error err;
    json_t *o = pyheap_report_top_hist(1234, "3.11.2", "table", &st, hist4, 4, 0, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    check_top_shape(o);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "pid")), 1234);
    ck_assert_str_eq(json_string_value(json_object_get(o, "python")), "3.11.2");
    ck_assert_str_eq(json_string_value(json_object_get(o, "offsets_source")), "table");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "objects")), 161);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "bytes")), 9016);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "skipped")), 3);
    ck_assert_double_eq_tol(json_number_value(json_object_get(o, "scan_ms")), 12.35, 1e-9);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "ntypes")), 4);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "truncated_types")), 0);
    const json_t *types = json_object_get(o, "types");
    ck_assert_uint_eq(json_array_size(types), 4);
    /* order kept as given */
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(types, 0), "type")), "dict");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(types, 2), "type")),
                     "__main__.Plain");
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(types, 1), "count")), 100);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(types, 1), "bytes")), 3000);
    /* a name that is not UTF-8 is made printable, not dropped */
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(types, 3), "type")),
                     "bad??name");
    /* the wire encoding is one line and keeps the documented key order */
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_null(strchr(s, '\n'));
    ck_assert_msg(strncmp(s, "{\"pid\":1234,\"python\":\"3.11.2\",\"offsets_source\":\"table\","
                             "\"objects\":161,\"bytes\":9016,\"skipped\":3,\"scan_ms\":", 90) == 0,
                  "unexpected encoding %s", s);
    free(s);
    json_decref(o);
}
END_TEST

START_TEST(top_limit_n)
{
    pyheap_scan_stats st = { .objects = 161, .bytes = 9016, .truncated = 1 };
    pyheap_error err;
    json_t *o = pyheap_report_top_hist(1, "3.11.2", "dwarf", &st, hist4, 4, 2, &err);
    ck_assert_ptr_nonnull(o);
    check_top_shape(o);
    ck_assert_uint_eq(json_array_size(json_object_get(o, "types")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "ntypes")), 4);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "truncated_types")), 2);
    ck_assert(json_is_true(json_object_get(o, "scan_truncated")));
    json_decref(o);

    /* n larger than the histogram: everything, nothing truncated */
    o = pyheap_report_top_hist(1, "3.11.2", "dwarf", &st, hist4, 4, 1000, &err);
    ck_assert_ptr_nonnull(o);
    ck_assert_uint_eq(json_array_size(json_object_get(o, "types")), 4);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "truncated_types")), 0);
    json_decref(o);

    /* an empty histogram is a valid report */
    o = pyheap_report_top_hist(1, "3.11.2", "dwarf", &st, NULL, 0, 25, &err);
    ck_assert_ptr_nonnull(o);
    check_top_shape(o);
    ck_assert_uint_eq(json_array_size(json_object_get(o, "types")), 0);
    json_decref(o);

    /* missing arguments are an error, not a crash */
    ck_assert_ptr_null(pyheap_report_top_hist(1, NULL, "dwarf", &st, NULL, 0, 0, &err));
    ck_assert_int_eq(err.code, PYHEAP_E_INVAL);
    ck_assert_ptr_null(pyheap_report_top_hist(1, "3.11.2", "dwarf", &st, NULL, 3, 0, &err));
}
END_TEST

static const char *const referrers_keys[] = {
    "pid", "type", "objects", "bytes", "scan_ms", "scan_truncated", "referrers", "paths",
    "unreachable",
};

static void check_referrers_shape(const json_t *o)
{
    ck_assert(json_is_object(o));
    ck_assert_uint_eq(json_object_size(o), sizeof referrers_keys / sizeof referrers_keys[0]);
    for (size_t i = 0; i < sizeof referrers_keys / sizeof referrers_keys[0]; i++)
        ck_assert_msg(json_object_get(o, referrers_keys[i]) != NULL, "missing %s",
                      referrers_keys[i]);
    const json_t *g = json_object_get(o, "referrers");
    ck_assert(json_is_array(g));
    for (size_t i = 0; i < json_array_size(g); i++) {
        const json_t *e = json_array_get(g, i);
        ck_assert_uint_eq(json_object_size(e), 7);
        ck_assert(json_is_string(json_object_get(e, "type")));
        ck_assert(json_is_string(json_object_get(e, "via")));
        ck_assert(json_is_integer(json_object_get(e, "count")));
        ck_assert(json_is_integer(json_object_get(e, "bytes")));
        ck_assert(json_is_integer(json_object_get(e, "depth")));
        const json_t *p = json_object_get(e, "parent");
        ck_assert(json_is_null(p) || (json_is_integer(p) && json_integer_value(p) >= 0 &&
                                      (size_t)json_integer_value(p) < i));
        ck_assert(json_is_array(json_object_get(e, "flags")));
    }
    const json_t *p = json_object_get(o, "paths");
    ck_assert(json_is_array(p));
    for (size_t i = 0; i < json_array_size(p); i++) {
        const json_t *e = json_array_get(p, i);
        ck_assert_uint_eq(json_object_size(e), 2);
        ck_assert(json_is_string(json_object_get(e, "path")));
        ck_assert(json_is_integer(json_object_get(e, "count")));
    }
    ck_assert(json_is_integer(json_object_get(o, "unreachable")));
}

START_TEST(referrers_from_data)
{
    char via0[] = "[*]", via1[] = "['conns']", via2[] = ".cache", via3[] = "bad\xffvia";
    pyheap_referrer_group g[] = {
        { 1, SIZE_MAX, 4, "list", via0, 0, 500, 4056 },
        { 2, 0, 2, "dict", via1, PYHEAP_EDGE_CUT, 1, 1176 },
        { 1, SIZE_MAX, 5, "weakref.ReferenceType", via2,
          PYHEAP_EDGE_WEAK | PYHEAP_EDGE_INFERRED, 3, 240 },
        /* a parent that does not precede its child is shown as none */
        { 2, 7, 6, "tuple", via3, 0, 1, 56 },
    };
    char path0[] = "__main__.connections[*]";
    pyheap_root_path paths[] = { { path0, 500 } };
    pyheap_referrers r = { .objects = 500, .bytes = 28000, .unreachable = 7, .groups = g,
                           .ngroups = 4, .paths = paths, .npaths = 1 };
    pyheap_scan_stats st = { .scan_ms = 41.2371, .truncated = 1 };
    pyheap_error err;
    json_t *o = pyheap_report_referrers_data(4321, "__main__.Connection", &r, &st, &err);
    ck_assert_msg(o != NULL, "%s", err.msg);
    check_referrers_shape(o);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "pid")), 4321);
    ck_assert_str_eq(json_string_value(json_object_get(o, "type")), "__main__.Connection");
    ck_assert_int_eq(json_integer_value(json_object_get(o, "objects")), 500);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "bytes")), 28000);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "unreachable")), 7);
    ck_assert_double_eq_tol(json_number_value(json_object_get(o, "scan_ms")), 41.24, 1e-9);
    ck_assert(json_is_true(json_object_get(o, "scan_truncated")));
    const json_t *gs = json_object_get(o, "referrers");
    ck_assert_uint_eq(json_array_size(gs), 4);
    const json_t *e0 = json_array_get(gs, 0), *e1 = json_array_get(gs, 1);
    const json_t *e2 = json_array_get(gs, 2), *e3 = json_array_get(gs, 3);
    ck_assert_str_eq(json_string_value(json_object_get(e0, "type")), "list");
    ck_assert_str_eq(json_string_value(json_object_get(e0, "via")), "[*]");
    ck_assert_int_eq(json_integer_value(json_object_get(e0, "count")), 500);
    ck_assert_int_eq(json_integer_value(json_object_get(e0, "bytes")), 4056);
    ck_assert_int_eq(json_integer_value(json_object_get(e0, "depth")), 1);
    ck_assert(json_is_null(json_object_get(e0, "parent")));
    ck_assert_uint_eq(json_array_size(json_object_get(e0, "flags")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(e1, "parent")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(e1, "depth")), 2);
    ck_assert_str_eq(json_string_value(json_object_get(e1, "via")), "['conns']");
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(e1, "flags"), 0)), "cut");
    const json_t *f2 = json_object_get(e2, "flags");
    ck_assert_uint_eq(json_array_size(f2), 2);
    ck_assert_str_eq(json_string_value(json_array_get(f2, 0)), "weak");
    ck_assert_str_eq(json_string_value(json_array_get(f2, 1)), "inferred");
    ck_assert(json_is_null(json_object_get(e3, "parent")));
    ck_assert_str_eq(json_string_value(json_object_get(e3, "via")), "bad?via");
    const json_t *p0 = json_array_get(json_object_get(o, "paths"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(p0, "path")), "__main__.connections[*]");
    ck_assert_int_eq(json_integer_value(json_object_get(p0, "count")), 500);
    /* the documented key order on the wire */
    char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    ck_assert_ptr_nonnull(s);
    static const char prefix[] = "{\"pid\":4321,\"type\":\"__main__.Connection\","
                                 "\"objects\":500,\"bytes\":28000,\"scan_ms\":";
    ck_assert_msg(strncmp(s, prefix, sizeof prefix - 1) == 0, "encoding %s", s);
    ck_assert_ptr_nonnull(strstr(s, "{\"type\":\"list\",\"via\":\"[*]\",\"count\":500,"
                                    "\"bytes\":4056,\"depth\":1,\"parent\":null,\"flags\":[]}"));
    free(s);
    json_decref(o);

    /* nothing found is a valid report; no stats means scan_ms 0 */
    pyheap_referrers empty = { 0 };
    o = pyheap_report_referrers_data(1, "x.Y", &empty, NULL, &err);
    ck_assert_ptr_nonnull(o);
    check_referrers_shape(o);
    ck_assert_uint_eq(json_array_size(json_object_get(o, "referrers")), 0);
    ck_assert_double_eq(json_number_value(json_object_get(o, "scan_ms")), 0.0);
    json_decref(o);

    /* missing arguments are an error, not a crash */
    ck_assert_ptr_null(pyheap_report_referrers_data(1, NULL, &empty, NULL, &err));
    ck_assert_int_eq(err.code, PYHEAP_E_INVAL);
    pyheap_referrers bad = { .ngroups = 2 };
    ck_assert_ptr_null(pyheap_report_referrers_data(1, "x", &bad, NULL, &err));
    ck_assert_int_eq(err.code, PYHEAP_E_INVAL);
}
END_TEST

/* A real target: /usr/bin/python3.11 that builds some objects and waits. */
static pid_t spawn_python(int *ready_fd)
{
    ck_assert_msg(access("/usr/bin/python3.11", X_OK) == 0,
                  "/usr/bin/python3.11 is missing: install python3.11");
    char *argv[] = { "/usr/bin/python3.11", "-c",
                     "import sys, time\n"
                     "class ReportProbe: pass\n"
                     "keep = [ReportProbe() for _ in range(5000)]\n"
                     "import types\n"
                     "for m in ('alpha_mod', 'beta_mod'):\n"
                     "    mod = types.ModuleType(m)\n"
                     "    exec('class Twin: pass', mod.__dict__)\n"
                     "    mod.keep = mod.Twin()\n"
                     "    sys.modules[m] = mod\n"
                     "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
                     "time.sleep(120)\n",
                     NULL };
    return test_spawn_ready(argv, false, 120000, ready_fd);
}

START_TEST(top_from_live_process)
{
    int fd;
    pid_t pid = spawn_python(&fd);
    pyheap_error err;
    pyheap_target *t = NULL;
    ck_assert_msg(pyheap_target_open(pid, NULL, &t, &err) == 0, "open: %s", err.msg);
    pyheap_snapshot *s = NULL;
    ck_assert_msg(pyheap_snapshot_take(t, NULL, &s, &err) == 0, "snapshot: %s", err.msg);

    json_t *all = pyheap_report_top(t, s, PYHEAP_SORT_BYTES, 0, &err);
    ck_assert_msg(all != NULL, "report: %s", err.msg);
    check_top_shape(all);
    ck_assert_int_eq(json_integer_value(json_object_get(all, "pid")), pid);
    ck_assert_str_eq(json_string_value(json_object_get(all, "python")), "3.11.2");
    ck_assert_str_eq(json_string_value(json_object_get(all, "offsets_source")),
                     pyheap_offsets_source_name(pyheap_target_offsets_source(t)));
    const json_t *types = json_object_get(all, "types");
    ck_assert_int_eq(json_integer_value(json_object_get(all, "truncated_types")), 0);
    ck_assert_uint_eq(json_array_size(types),
                      (size_t)json_integer_value(json_object_get(all, "ntypes")));
    /* with n = 0 the types add up to the totals, sorted by bytes */
    json_int_t sum_count = 0, sum_bytes = 0, prev = INT64_MAX;
    int probe = 0;
    for (size_t i = 0; i < json_array_size(types); i++) {
        const json_t *e = json_array_get(types, i);
        json_int_t b = json_integer_value(json_object_get(e, "bytes"));
        ck_assert_int_le(b, prev);
        prev = b;
        sum_count += json_integer_value(json_object_get(e, "count"));
        sum_bytes += b;
        if (strcmp(json_string_value(json_object_get(e, "type")), "__main__.ReportProbe") == 0) {
            ck_assert_int_eq(json_integer_value(json_object_get(e, "count")), 5000);
            probe = 1;
        }
    }
    ck_assert_msg(probe, "__main__.ReportProbe missing from the report");
    ck_assert_int_eq(sum_count, json_integer_value(json_object_get(all, "objects")));
    ck_assert_int_eq(sum_bytes, json_integer_value(json_object_get(all, "bytes")));
    ck_assert_int_gt(sum_count, 5000);

    json_t *top3 = pyheap_report_top(t, s, PYHEAP_SORT_COUNT, 3, &err);
    ck_assert_ptr_nonnull(top3);
    const json_t *t3 = json_object_get(top3, "types");
    ck_assert_uint_eq(json_array_size(t3), 3);
    ck_assert_int_ge(json_integer_value(json_object_get(json_array_get(t3, 0), "count")),
                     json_integer_value(json_object_get(json_array_get(t3, 1), "count")));
    ck_assert_int_eq(json_integer_value(json_object_get(top3, "truncated_types")),
                     json_integer_value(json_object_get(top3, "ntypes")) - 3);

    json_t *id = pyheap_report_target(t, &err);
    ck_assert_ptr_nonnull(id);
    ck_assert_int_eq(json_integer_value(json_object_get(id, "pid")), pid);
    ck_assert_str_eq(json_string_value(json_object_get(id, "module")), pyheap_target_module(t));
    ck_assert(json_is_string(json_object_get(id, "offsets_detail")));

    /* referrers: a qualified and a short name resolve to the same report */
    pyheap_referrers_opts ro = { .depth = 2 };
    json_t *rq = pyheap_report_referrers(pid, s, "__main__.ReportProbe", &ro, &err);
    ck_assert_msg(rq != NULL, "referrers: %s", err.msg);
    ck_assert(json_is_true(json_object_get(rq, "ok")));
    json_object_del(rq, "ok");
    check_referrers_shape(rq);
    ck_assert_str_eq(json_string_value(json_object_get(rq, "type")), "__main__.ReportProbe");
    ck_assert_int_eq(json_integer_value(json_object_get(rq, "objects")), 5000);
    json_t *rs = pyheap_report_referrers(pid, s, "ReportProbe", &ro, &err);
    ck_assert_ptr_nonnull(rs);
    ck_assert_str_eq(json_string_value(json_object_get(rs, "type")), "__main__.ReportProbe");
    json_decref(rs);
    json_decref(rq);

    /* an ambiguous short name: an error reply listing both, sorted */
    json_t *amb = pyheap_report_referrers(pid, s, "Twin", &ro, &err);
    ck_assert_msg(amb != NULL, "referrers Twin: %s", err.msg);
    ck_assert(json_is_false(json_object_get(amb, "ok")));
    ck_assert_str_eq(json_string_value(json_object_get(amb, "error")), "ambiguous");
    const json_t *cand = json_object_get(amb, "candidates");
    ck_assert_uint_eq(json_array_size(cand), 2);
    ck_assert_str_eq(json_string_value(json_array_get(cand, 0)), "alpha_mod.Twin");
    ck_assert_str_eq(json_string_value(json_array_get(cand, 1)), "beta_mod.Twin");
    const char *m = json_string_value(json_object_get(amb, "message"));
    ck_assert_ptr_nonnull(strstr(m, "alpha_mod.Twin"));
    ck_assert_ptr_nonnull(strstr(m, "beta_mod.Twin"));
    json_decref(amb);
    /* the qualified name is not ambiguous */
    json_t *one = pyheap_report_referrers(pid, s, "beta_mod.Twin", &ro, &err);
    ck_assert_ptr_nonnull(one);
    ck_assert(json_is_true(json_object_get(one, "ok")));
    ck_assert_int_eq(json_integer_value(json_object_get(one, "objects")), 1);
    json_decref(one);

    /* unknown: not_found, with close names suggested */
    json_t *nf = pyheap_report_referrers(pid, s, "ReportProbs", &ro, &err);
    ck_assert_ptr_nonnull(nf);
    ck_assert(json_is_false(json_object_get(nf, "ok")));
    ck_assert_str_eq(json_string_value(json_object_get(nf, "error")), "not_found");
    const json_t *sug = json_object_get(nf, "suggestions");
    ck_assert_uint_ge(json_array_size(sug), 1);
    ck_assert_str_eq(json_string_value(json_array_get(sug, 0)), "__main__.ReportProbe");
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(nf, "message")),
                                 "did you mean: __main__.ReportProbe"));
    json_decref(nf);
    nf = pyheap_report_referrers(pid, s, "Qzxwv_Nothing", &ro, &err);
    ck_assert_ptr_nonnull(nf);
    ck_assert_str_eq(json_string_value(json_object_get(nf, "error")), "not_found");
    ck_assert_uint_eq(json_array_size(json_object_get(nf, "suggestions")), 0);
    json_decref(nf);

    json_decref(id);
    json_decref(top3);
    json_decref(all);
    pyheap_snapshot_free(s);
    pyheap_target_free(t);
    kill(pid, SIGKILL);
    close(fd);
}
END_TEST

Suite *suite_report(void)
{
    Suite *s = suite_create("report");
    TCase *tc = tcase_create("json");
    tcase_add_test(tc, top_from_histogram);
    tcase_add_test(tc, top_limit_n);
    tcase_add_test(tc, referrers_from_data);
    suite_add_tcase(s, tc);
    TCase *live = tcase_create("live");
    tcase_add_test(live, top_from_live_process);
    tcase_set_timeout(live, 60);
    suite_add_tcase(s, live);
    return s;
}
