/* The walker against a target that churns its heap in two threads as fast
 * as it can (tests/targets/churn_target.py): 100 non-stop scans through the
 * daemon; none may crash or hang it, each is bounded in time, and the
 * count of a population that stays put (N instances of Stable) stays
 * within 1% of N in every scan. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svcutil.h"
#include "testutil.h"

#define N_STABLE 20000
#define SCANS 100
#define MAX_SCAN_MS 10000.0

START_TEST(churn_100_scans)
{
    struct svc e;
    svc_init(&e);
    const char *opts[] = { "--scan-timeout", "20000", NULL };
    svc_daemon_start(&e, opts);
    struct svc_target t;
    char n[32];
    snprintf(n, sizeof n, "%d", N_STABLE);
    svc_target_start(&e, &t, "t", "churn_target.py", n, (uid_t)-1, (gid_t)-1);
    char line[128];
    snprintf(line, sizeof line, "{\"cmd\":\"attach\",\"pid\":%d}", (int)t.pid);
    json_t *j = svc_request(&e, line);
    svc_expect_ok(j);
    json_decref(j);

    struct svc_conn c;
    svc_conn_open(&e, &c);
    long long worst = 0, min = N_STABLE, max = N_STABLE;
    double slowest = 0, total_ms = 0;
    long long skipped = 0;
    for (int i = 0; i < SCANS; i++) {
        double t0 = test_now_ms();
        j = svc_call(&c, "{\"cmd\":\"top\",\"n\":0}");
        double ms = test_now_ms() - t0;
        svc_expect_ok(j);
        long long cnt = svc_type_count(j, "__main__.Stable");
        skipped += json_integer_value(json_object_get(j, "skipped"));
        json_decref(j);
        long long dev = cnt > N_STABLE ? cnt - N_STABLE : N_STABLE - cnt;
        if (dev > worst)
            worst = dev;
        if (cnt < min)
            min = cnt;
        if (cnt > max)
            max = cnt;
        if (ms > slowest)
            slowest = ms;
        total_ms += ms;
        ck_assert_msg(ms < MAX_SCAN_MS, "scan %d took %.0f ms", i, ms);
        ck_assert_msg(dev * 100 <= N_STABLE,
                      "scan %d: %lld Stable objects, expected %d within 1%%", i, cnt, N_STABLE);
        /* the daemon is still there, the target too */
        ck_assert_int_ne(svc_proc_state(t.pid), 0);
    }
    svc_conn_close(&c);
    fprintf(stderr,
            "churn: %d scans, Stable count %lld..%lld (N=%d, worst deviation %lld), "
            "slowest %.0f ms, mean %.0f ms, %lld skipped in total\n",
            SCANS, min, max, N_STABLE, worst, slowest, total_ms / SCANS, skipped);
    j = svc_request(&e, "{\"cmd\":\"ping\"}");
    svc_expect_ok(j);
    json_decref(j);
    svc_target_kill(&t);
    svc_fini(&e);
}
END_TEST

Suite *suite_churn(void)
{
    Suite *s = suite_create("churn");
    TCase *tc = tcase_create("churn");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, churn_100_scans);
    suite_add_tcase(s, tc);
    return s;
}
