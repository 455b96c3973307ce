/* Issue 7: top/referrers with "max_age" answer from the session's newest
 * snapshot instead of scanning, and say so. Real /usr/bin/python3.11
 * targets (tests/targets/growth_target.py): "leak" grows a list of
 * LeakyRecord every 50 ms, so a fresh scan always differs from an older
 * one; "append" adds exactly K AppendedRecord on request. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "svcutil.h"
#include "testutil.h"

#define LEAKY "__main__.LeakyRecord"

static json_int_t jint(const json_t *o, const char *k)
{
    const json_t *v = json_object_get(o, k);
    ck_assert_msg(json_is_integer(v), "\"%s\" is not an integer", k);
    return json_integer_value(v);
}

/* Request LINE (printf-style) on a fresh connection; asserts "ok". */
static json_t *ok_request(struct svc *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static json_t *ok_request(struct svc *e, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    json_t *j = svc_request(e, line);
    svc_expect_ok(j);
    return j;
}

static int reused(const json_t *j)
{
    return json_is_true(json_object_get(j, "snapshot_reused"));
}

/* J without the fields that name its snapshot (new reference). */
static json_t *without_snapshot_fields(const json_t *j)
{
    json_t *c = json_deep_copy(j);
    ck_assert_ptr_nonnull(c);
    json_object_del(c, "snapshot_id");
    json_object_del(c, "snapshot_reused");
    json_object_del(c, "snapshot_age_ms");
    return c;
}

START_TEST(reuse_same_answer_and_age)
{
    struct svc e;
    struct svc_target t;
    svc_start_attached(&e, &t, "growth_target.py", "leak");

    /* Without max_age: a fresh scan, the documented shape unchanged. */
    json_t *r0 = ok_request(&e, "{\"cmd\":\"referrers\",\"type\":\"LeakyRecord\"}");
    ck_assert_ptr_null(json_object_get(r0, "snapshot_reused"));
    ck_assert_ptr_null(json_object_get(r0, "snapshot_age_ms"));
    json_int_t n0 = jint(r0, "objects");
    ck_assert_int_gt(n0, 0);

    /* The target keeps growing; max_age answers from r0's snapshot: the
     * same answer, field for field, and its age. */
    test_sleep_ms(400);
    json_t *r1 = ok_request(&e, "{\"cmd\":\"referrers\",\"type\":\"LeakyRecord\",\"max_age\":600}");
    ck_assert_msg(reused(r1), "max_age 600 did not reuse the snapshot just taken");
    double age = json_number_value(json_object_get(r1, "snapshot_age_ms"));
    ck_assert_msg(age >= 400 && age < 600000, "snapshot_age_ms %.1f", age);
    json_int_t id1 = jint(r1, "snapshot_id");
    ck_assert_int_ge(id1, 1);
    json_t *c1 = without_snapshot_fields(r1);
    ck_assert_msg(json_equal(c1, r0), "the reused answer differs from the snapshot's own");
    json_decref(c1);

    /* top reuses the same snapshot: same id, the same LeakyRecord count. */
    json_t *top = ok_request(&e, "{\"cmd\":\"top\",\"n\":0,\"max_age\":600.5}");
    ck_assert(reused(top));
    ck_assert_int_eq(jint(top, "snapshot_id"), id1);
    ck_assert_int_eq(svc_type_count(top, LEAKY), n0);
    json_decref(top);

    /* max_age 0 scans afresh: the heap has grown since. */
    json_t *r2 = ok_request(&e, "{\"cmd\":\"referrers\",\"type\":\"LeakyRecord\",\"max_age\":0}");
    ck_assert_ptr_null(json_object_get(r2, "snapshot_reused"));
    json_int_t n2 = jint(r2, "objects");
    ck_assert_msg(n2 > n0, "fresh scan: %lld LeakyRecord, before %lld", (long long)n2,
                  (long long)n0);

    /* ...and its snapshot replaced the kept one. */
    json_t *r3 = ok_request(&e, "{\"cmd\":\"referrers\",\"type\":\"LeakyRecord\",\"max_age\":600}");
    ck_assert(reused(r3));
    ck_assert_int_gt(jint(r3, "snapshot_id"), id1);
    ck_assert_int_eq(jint(r3, "objects"), n2);

    /* A snapshot older than max_age: a fresh scan, said so (not reused,
     * age about the scan's own time), and newer objects. */
    test_sleep_ms(1300);
    json_t *r4 = ok_request(&e, "{\"cmd\":\"referrers\",\"type\":\"LeakyRecord\",\"max_age\":1}");
    ck_assert_msg(json_is_false(json_object_get(r4, "snapshot_reused")),
                  "a snapshot over 1 s old was reused");
    ck_assert_int_gt(jint(r4, "snapshot_id"), jint(r3, "snapshot_id"));
    ck_assert_double_lt(json_number_value(json_object_get(r4, "snapshot_age_ms")), 1000.0);
    ck_assert_int_gt(jint(r4, "objects"), n2);

    /* The CLI says where the answer came from. */
    char *out, *err;
    int st = svc_cli(&e, (uid_t)-1, (gid_t)-1, &out, &err, "referrers", "LeakyRecord",
                     "--max-age", "600", NULL);
    ck_assert_msg(st == 0, "%s", err);
    ck_assert_msg(strstr(out, "from a snapshot taken ") && strstr(out, " s ago"), "%s", out);
    free(out), free(err);
    st = svc_cli(&e, (uid_t)-1, (gid_t)-1, &out, &err, "top", "--max-age", "600", NULL);
    ck_assert_msg(st == 0 && strstr(out, "from a snapshot taken "), "%s%s", out, err);
    free(out), free(err);
    st = svc_cli(&e, (uid_t)-1, (gid_t)-1, &out, &err, "top", NULL);
    ck_assert_msg(st == 0 && !strstr(out, "from a snapshot"), "%s%s", out, err);
    free(out), free(err);
    char *log = test_slurp(e.log);
    ck_assert_msg(strstr(log, "from snapshot"), "the daemon did not log the reuse:\n%s", log);
    free(log);

    /* A process that is gone is not answered for from its old snapshot. */
    svc_target_kill(&t);
    json_t *g = svc_request(&e, "{\"cmd\":\"referrers\",\"type\":\"LeakyRecord\",\"max_age\":600}");
    svc_expect_error(g, "gone");

    json_decref(r0), json_decref(r1), json_decref(r2), json_decref(r3), json_decref(r4);
    svc_fini(&e);
}
END_TEST

START_TEST(reuse_misses_newer_objects)
{
    enum { K = 137 };
    struct svc e;
    struct svc_target t;
    svc_start_attached(&e, &t, "growth_target.py", "append");
    json_t *top = ok_request(&e, "{\"cmd\":\"top\",\"n\":0}");
    ck_assert_int_eq(svc_type_count(top, "__main__.AppendedRecord"), -1);
    json_decref(top);

    char go[300], done[300];
    snprintf(go, sizeof go, "%s/go", t.dir);
    snprintf(done, sizeof done, "%s/done", t.dir);
    FILE *f = fopen(go, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%d\n", K);
    fclose(f);
    for (int i = 0; i < 1000 && access(done, F_OK) < 0; i++)
        test_sleep_ms(10);
    ck_assert_msg(access(done, F_OK) == 0, "the target did not append");

    /* The kept snapshot predates the new objects: neither top nor
     * referrers from it knows them. */
    top = ok_request(&e, "{\"cmd\":\"top\",\"n\":0,\"max_age\":600}");
    ck_assert(reused(top));
    ck_assert_int_eq(svc_type_count(top, "__main__.AppendedRecord"), -1);
    json_decref(top);
    /* (the class is known to the snapshot, with no instances) */
    json_t *j = ok_request(&e, "{\"cmd\":\"referrers\",\"type\":\"AppendedRecord\","
                               "\"max_age\":600}");
    ck_assert(reused(j));
    ck_assert_int_eq(jint(j, "objects"), 0);
    ck_assert_int_eq(json_array_size(json_object_get(j, "referrers")), 0);
    json_decref(j);

    /* A fresh scan finds all K, held by the list. */
    j = ok_request(&e, "{\"cmd\":\"referrers\",\"type\":\"AppendedRecord\",\"max_age\":0}");
    ck_assert_int_eq(jint(j, "objects"), K);
    const json_t *g0 = json_array_get(json_object_get(j, "referrers"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(g0, "type")), "list");
    json_decref(j);
    /* ...and from now on the reused answer has them too. */
    j = ok_request(&e, "{\"cmd\":\"referrers\",\"type\":\"AppendedRecord\",\"max_age\":600}");
    ck_assert(reused(j));
    ck_assert_int_eq(jint(j, "objects"), K);
    json_decref(j);
    svc_target_kill(&t);
    svc_fini(&e);
}
END_TEST

/* A fresh "top" is answered from the walk's census before the snapshot
 * is built (the daemon logs it; the reply's scan_ms is the walk's alone),
 * and the snapshot built afterwards holds exactly that census: top from it
 * ("max_age") gives the same types, counts and bytes. With "freeze" too. */
START_TEST(top_answered_before_build)
{
    struct svc e;
    struct svc_target t;
    svc_start_attached(&e, &t, "growth_target.py", "leak");
    for (int freeze = 0; freeze <= 1; freeze++) {
        json_t *r0 = ok_request(&e, "{\"cmd\":\"top\",\"n\":0%s}",
                                freeze ? ",\"freeze\":true" : "");
        ck_assert_ptr_null(json_object_get(r0, "snapshot_reused"));
        ck_assert_int_eq(json_is_true(json_object_get(r0, "freeze")), freeze);
        if (freeze)
            ck_assert(json_number_value(json_object_get(r0, "pause_ms")) > 0);
        json_t *r1 = ok_request(&e, "{\"cmd\":\"top\",\"n\":0,\"max_age\":600}");
        ck_assert(reused(r1));
        double walk_ms = json_number_value(json_object_get(r0, "scan_ms"));
        double scan_ms = json_number_value(json_object_get(r1, "scan_ms"));
        ck_assert_msg(walk_ms > 0 && walk_ms < scan_ms, "answered after %.2f ms of a "
                      "%.2f ms scan: not before the build", walk_ms, scan_ms);
        ck_assert_int_gt(jint(r0, "objects"), 10000);
        const char *same[] = { "objects", "bytes", "skipped", "ntypes", "truncated_types",
                               "types", "scan_truncated", "pid", "python", "offsets_source" };
        for (size_t i = 0; i < sizeof same / sizeof *same; i++)
            ck_assert_msg(json_equal(json_object_get(r0, same[i]), json_object_get(r1, same[i])),
                          "\"%s\" differs between the census and its snapshot", same[i]);
        ck_assert_int_gt(json_array_size(json_object_get(r0, "types")), 20);
        json_decref(r0);
        json_decref(r1);
    }
    char *log = test_slurp(e.log);
    const char *say = "answered from the walk before the build";
    const char *a = strstr(log, say);
    ck_assert_msg(a && strstr(a + 1, say), "the daemon did not answer two tops early:\n%s",
                  log);
    free(log);
    svc_target_kill(&t);
    svc_fini(&e);
}
END_TEST

/* A "referrers" (or a "top" after the build) is answered before its
 * snapshot is recorded (histogram, packed copy: tens of ms on this 1M-object
 * heap): "snapshots" sent at once after it lists that snapshot, a "diff"
 * diffs against it, and a "max_age" request reuses it (the answer promised
 * it: they wait for the record) rather than scanning again; and the answer
 * is the one a reuse gives. */
START_TEST(referrers_answered_before_record)
{
    struct svc e;
    struct svc_target t;
    svc_start_attached(&e, &t, "big_arrays.py", NULL);
    const char *fresh = "{\"cmd\":\"referrers\",\"type\":\"float\",\"depth\":1}";
    json_int_t scans = 0;
    for (int round = 0; round < 3; round++) {
        json_t *r0 = ok_request(&e, "%s", fresh);
        scans++;
        ck_assert_ptr_null(json_object_get(r0, "snapshot_reused"));
        json_t *l = ok_request(&e, "{\"cmd\":\"snapshots\"}");
        json_t *snaps = json_object_get(l, "snapshots");
        size_t n = json_array_size(snaps);
        ck_assert_msg(n > 0 && jint(json_array_get(snaps, n - 1), "id") == scans,
                      "round %d: \"snapshots\" right after the answer: %zu listed, the newest "
                      "not snapshot %lld", round, n, (long long)scans);
        json_decref(l);
        json_t *r1 = ok_request(&e, "{\"cmd\":\"referrers\",\"type\":\"float\",\"depth\":1,"
                                    "\"max_age\":600}");
        ck_assert_msg(reused(r1), "round %d: the snapshot the answer promised was not reused",
                      round);
        json_t *c1 = without_snapshot_fields(r1);
        ck_assert_msg(json_equal(r0, c1), "round %d: the reply differs from its snapshot's",
                      round);
        json_decref(c1);
        json_decref(r0);
        json_decref(r1);
    }
    /* "diff" since the snapshot of the answer just given */
    json_decref(ok_request(&e, "%s", fresh));
    scans++;
    json_t *df = ok_request(&e, "{\"cmd\":\"diff\",\"since\":%lld}", (long long)scans);
    ck_assert_int_eq(jint(df, "since"), scans);
    ck_assert_int_eq(jint(df, "snapshot_id"), scans + 1);
    json_decref(df);
    svc_target_kill(&t);
    svc_fini(&e);
}
END_TEST

/* The daemon's log once it has SAY in it, waiting up to MS (the caller
 * frees it; it may lack SAY after all). */
static char *log_once(struct svc *e, const char *say, int ms)
{
    char *log = test_slurp(e->log);
    for (int waited = 0; !strstr(log, say) && waited < ms; waited += 20) {
        test_sleep_ms(20);
        free(log);
        log = test_slurp(e->log);
    }
    return log;
}

/* An early "top" reply bigger than the socket's buffer, to a client that
 * does not read it: the rest waits for the connection's thread, not the
 * scan, so the snapshot is built and kept meanwhile (another client
 * reuses it), and the reply arrives whole once read. */
START_TEST(top_early_slow_reader)
{
    struct svc e;
    struct svc_target t;
    svc_start_attached(&e, &t, "growth_target.py", "types");
    struct svc_conn slow;
    svc_conn_open(&e, &slow);
    const char *req = "{\"cmd\":\"top\",\"n\":0}\n";
    svc_send(&slow, req, strlen(req));
    const char *say = "the rest of the reply follows the build";
    char *log = log_once(&e, say, 60000);
    ck_assert_msg(strstr(log, say), "no partial early reply:\n%s", log);
    free(log);
    /* The slow client has read nothing; the snapshot is there all the same. */
    json_t *r1 = ok_request(&e, "{\"cmd\":\"top\",\"n\":0,\"max_age\":600}");
    ck_assert(reused(r1));
    json_t *r0 = svc_reply(&slow);
    svc_expect_ok(r0);
    ck_assert_int_gt(json_array_size(json_object_get(r0, "types")), 8000);
    ck_assert(json_equal(json_object_get(r0, "types"), json_object_get(r1, "types")));
    ck_assert(json_equal(json_object_get(r0, "objects"), json_object_get(r1, "objects")));
    json_decref(r0);
    json_decref(r1);
    /* the connection still serves */
    json_t *p = svc_call(&slow, "{\"cmd\":\"ping\"}");
    svc_expect_ok(p);
    json_decref(p);
    svc_conn_close(&slow);
    svc_target_kill(&t);
    svc_fini(&e);
}
END_TEST

/* The target exits while the snapshot of a "top" already answered is
 * being built: the scan ends as gone after the answer, nothing is kept,
 * a later "max_age" request says the process is gone (promptly) and the
 * daemon serves on. */
START_TEST(top_early_then_target_exits)
{
    struct svc e;
    struct svc_target t;
    svc_start_attached(&e, &t, "growth_target.py", "bulk");
    json_t *r0 = ok_request(&e, "{\"cmd\":\"top\",\"n\":3}");
    ck_assert_int_gt(jint(r0, "objects"), 2000000);
    json_decref(r0);
    svc_target_kill(&t);   /* (reaped: the identity check after the build fails) */
    double t0 = test_now_ms();
    json_t *r1 = svc_request(&e, "{\"cmd\":\"top\",\"n\":3,\"max_age\":600}");
    svc_expect_error(r1, "gone");   /* (frees r1) */
    ck_assert_msg(test_now_ms() - t0 < 30000, "the max_age request waited %.0f ms",
                  test_now_ms() - t0);
    json_t *p = svc_request(&e, "{\"cmd\":\"ping\"}");
    svc_expect_ok(p);
    json_decref(p);
    /* (the first request's thread logs it once the build is over) */
    const char *say = "answered from the walk, then no snapshot was kept";
    char *log = log_once(&e, say, 10000);
    ck_assert_msg(strstr(log, say), "the target did not exit during the build:\n%s", log);
    free(log);
    svc_fini(&e);
}
END_TEST

START_TEST(reuse_bad_values)
{
    struct svc e;
    struct svc_target t;
    svc_start_attached(&e, &t, "growth_target.py", "append");
    static const char *const bad[] = {
        "{\"cmd\":\"referrers\",\"type\":\"x\",\"max_age\":-1}",
        "{\"cmd\":\"referrers\",\"type\":\"x\",\"max_age\":\"10\"}",
        "{\"cmd\":\"referrers\",\"type\":\"x\",\"max_age\":1e9}",
        "{\"cmd\":\"referrers\",\"type\":\"x\",\"max_age\":true}",
        "{\"cmd\":\"referrers\",\"type\":\"x\",\"max_age\":null}",
        "{\"cmd\":\"top\",\"max_age\":86400.5}",
        "{\"cmd\":\"top\",\"max_age\":[]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = svc_request(&e, bad[i]);
        const char *m = json_string_value(json_object_get(j, "message"));
        ck_assert_msg(m && strstr(m, "\"max_age\" must be a number of seconds between 0"),
                      "%s: %s", bad[i], m ? m : "(no message)");
        svc_expect_error(j, "bad_request");
    }
    /* with freeze, and on commands without it */
    json_t *j = svc_request(&e, "{\"cmd\":\"top\",\"freeze\":true,\"max_age\":5}");
    const char *m = json_string_value(json_object_get(j, "message"));
    ck_assert_msg(m && strstr(m, "give one of them"), "%s", m ? m : "(none)");
    svc_expect_error(j, "bad_request");
    svc_expect_error(svc_request(&e, "{\"cmd\":\"stats\",\"max_age\":5}"), "bad_request");
    svc_expect_error(svc_request(&e, "{\"cmd\":\"snapshot\",\"max_age\":5}"), "bad_request");
    /* max_age 0 is the default: accepted */
    j = svc_request(&e, "{\"cmd\":\"top\",\"n\":1,\"max_age\":0}");
    svc_expect_ok(j);
    json_decref(j);

    static const char *const cli_bad[][4] = {
        { "referrers", "x", "--max-age", "abc" },
        { "referrers", "x", "--max-age", "-1" },
        { "top", "--max-age", "1e9", NULL },
        { "top", "--max-age", "5s", NULL },
    };
    for (size_t i = 0; i < sizeof cli_bad / sizeof cli_bad[0]; i++) {
        char *out, *err;
        int st = svc_cli(&e, (uid_t)-1, (gid_t)-1, &out, &err, cli_bad[i][0], cli_bad[i][1],
                         cli_bad[i][2], cli_bad[i][3], NULL);
        ck_assert_msg(st == 2 && strstr(err, "--max-age takes seconds from 0 to 86400"),
                      "%s %s: %d %s", cli_bad[i][0], cli_bad[i][2], st, err);
        free(out), free(err);
    }
    char *out, *err;
    int st = svc_cli(&e, (uid_t)-1, (gid_t)-1, &out, &err, "top", "--freeze", "--max-age",
                     "5", NULL);
    ck_assert_msg(st == 2 && strstr(err, "no --max-age"), "%d %s", st, err);
    free(out), free(err);
    svc_target_kill(&t);
    svc_fini(&e);
}
END_TEST

/* Concurrent reused requests while other requests and the periodic thread
 * replace the kept snapshot (the reference counting; ASan in SANITIZE=1). */
struct hammer {
    struct svc *e;
    int fresh;
    int failures;
    char why[256];
};

static void *hammer_main(void *arg)
{
    struct hammer *h = arg;
    for (int i = 0; i < 12; i++) {
        struct svc_conn c;
        svc_conn_open(h->e, &c);
        json_t *j = svc_call(&c, h->fresh
                                     ? "{\"cmd\":\"top\",\"n\":1}"
                                     : "{\"cmd\":\"referrers\",\"type\":\"LeakyRecord\","
                                       "\"max_age\":600}");
        if (!json_is_true(json_object_get(j, "ok")) && !h->failures++)
            snprintf(h->why, sizeof h->why, "%s",
                     json_string_value(json_object_get(j, "message")));
        json_decref(j);
        svc_conn_close(&c);
    }
    return NULL;
}

START_TEST(reuse_concurrent)
{
    struct svc e;
    struct svc_target t;
    svc_start_attached(&e, &t, "growth_target.py", "leak");
    svc_attach_every(&e, t.pid, 0.2);
    struct hammer h[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        h[i] = (struct hammer){ &e, i == 0, 0, "" };
        ck_assert_int_eq(pthread_create(&th[i], NULL, hammer_main, &h[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(h[i].failures == 0, "%d failed requests: %s", h[i].failures, h[i].why);
    }
    svc_target_kill(&t);
    svc_fini(&e);
}
END_TEST

Suite *suite_reuse(void)
{
    Suite *s = suite_create("reuse");
    TCase *tc = tcase_create("max_age");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, reuse_same_answer_and_age);
    tcase_add_test(tc, reuse_misses_newer_objects);
    tcase_add_test(tc, reuse_bad_values);
    tcase_add_test(tc, top_answered_before_build);
    tcase_add_test(tc, top_early_slow_reader);
    tcase_add_test(tc, referrers_answered_before_record);
    tcase_add_test(tc, top_early_then_target_exits);
    tcase_add_test(tc, reuse_concurrent);
    suite_add_tcase(s, tc);
    return s;
}
