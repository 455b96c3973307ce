/* Consistent mode (--freeze): the target's threads are stopped for the
 * scan and always resumed — after a normal scan, on error paths (scan over
 * its time budget, a process that is gone), in the library directly, and
 * when the daemon is SIGKILLed in the middle of a frozen scan (the kernel
 * detaches a dead tracer's tracees). "Resumed" is checked two ways: the
 * target's counter advances again and /proc/PID/status State is not a
 * stop ('t' tracing stop / 'T'). */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "freeze.h"
#include "svcutil.h"
#include "testutil.h"

/* The target runs: not stopped, and its counter moves within 5 s. */
static void assert_running(const struct svc_target *t)
{
    double end = test_now_ms() + 5000;
    long c0 = svc_target_counter(t);
    for (;;) {
        char st = svc_proc_state(t->pid);
        ck_assert_msg(st != 0, "target vanished");
        long c = svc_target_counter(t);
        if (st != 't' && st != 'T' && c > c0)
            return;
        ck_assert_msg(test_now_ms() < end, "target not resumed: state %c, counter %ld -> %ld",
                      st, c0, c);
        test_sleep_ms(20);
    }
}

START_TEST(freeze_scan_resumes)
{
    struct svc e;
    struct svc_target t;
    svc_start_attached(&e, &t, "churn_target.py", "20000");
    for (int i = 0; i < 5; i++) {
        json_t *j = svc_request(&e, "{\"cmd\":\"top\",\"n\":0,\"freeze\":true}");
        svc_expect_ok(j);
        ck_assert(json_is_true(json_object_get(j, "freeze")));
        double pause = json_number_value(json_object_get(j, "pause_ms"));
        json_int_t nthr = json_integer_value(json_object_get(j, "frozen_threads"));
        ck_assert_msg(pause > 0 && pause < 20000, "pause_ms %f", pause);
        /* main thread + two churners */
        ck_assert_msg(nthr >= 3, "only %lld threads frozen", (long long)nthr);
        /* Frozen, the stable population is exact. */
        ck_assert_int_eq(svc_type_count(j, "__main__.Stable"), 20000);
        json_decref(j);
        assert_running(&t);
    }
    /* referrers takes freeze too */
    json_t *r = svc_request(&e, "{\"cmd\":\"referrers\",\"type\":\"__main__.Stable\","
                                "\"freeze\":true}");
    svc_expect_ok(r);
    ck_assert(json_is_true(json_object_get(r, "freeze")));
    ck_assert(json_number_value(json_object_get(r, "pause_ms")) > 0);
    json_decref(r);
    assert_running(&t);
    char *rout, *rerr;
    ck_assert_int_eq(svc_cli(&e, (uid_t)-1, (gid_t)-1, &rout, &rerr, "referrers", "Stable",
                             "--freeze", "--json", NULL), 0);
    ck_assert_msg(strstr(rout, "\"pause_ms\""), "%s", rout);
    free(rout), free(rerr);
    assert_running(&t);
    /* The CLI shows the pause. */
    char *out, *err;
    ck_assert_int_eq(svc_cli(&e, (uid_t)-1, (gid_t)-1, &out, &err, "top", "--freeze", "-n", "3",
                             NULL), 0);
    ck_assert_msg(strstr(out, "frozen: ") && strstr(out, "threads stopped for"), "%s", out);
    free(out), free(err);
    assert_running(&t);
    svc_target_kill(&t);
    svc_fini(&e);
}
END_TEST

START_TEST(freeze_over_budget_resumes)
{
    struct svc e;
    svc_init(&e);
    const char *opts[] = { "--scan-timeout", "30", NULL };
    svc_daemon_start(&e, opts);
    struct svc_target t;
    svc_target_start(&e, &t, "t", "counter_target.py", "1000000", (uid_t)-1, (gid_t)-1);
    svc_attach(&e, t.pid);
    json_t *j = svc_request(&e, "{\"cmd\":\"top\",\"freeze\":true}");
    svc_expect_error(j, "timeout");
    assert_running(&t);
    svc_target_kill(&t);
    svc_fini(&e);
}
END_TEST

START_TEST(freeze_library_paths)
{
    struct svc e;
    svc_init(&e);
    struct svc_target t;
    svc_target_start(&e, &t, "t", "churn_target.py", "100", (uid_t)-1, (gid_t)-1);
    pyheap_error err;
    pyheap_freeze *f = NULL;
    ck_assert_int_eq(pyheap_freeze_begin(t.pid, 2000, &f, &err), 0);
    ck_assert_uint_ge(pyheap_freeze_threads(f), 3);
    char st = svc_proc_state(t.pid);
    ck_assert_msg(st == 't', "frozen target in state %c", st);
    long c0 = svc_target_counter(&t);
    test_sleep_ms(100);
    ck_assert_int_eq(svc_target_counter(&t), c0);   /* really stopped */
    double ms = pyheap_freeze_end(f);
    ck_assert(ms >= 100);
    assert_running(&t);
    /* A signal that arrives while frozen is delivered after: SIGSTOP then
     * SIGCONT leave it running; a SIGTERM while frozen kills it after. */
    ck_assert_int_eq(pyheap_freeze_begin(t.pid, 2000, &f, &err), 0);
    kill(t.pid, SIGTERM);
    test_sleep_ms(50);
    ck_assert_int_ne(svc_proc_state(t.pid), 0);
    pyheap_freeze_end(f);
    int rc = test_wait_exit(t.pid, 5000);
    ck_assert_msg(rc == 128 + SIGTERM, "SIGTERM sent during the freeze not delivered: %d", rc);
    t.pid = -1;
    /* Gone process: an error, nothing left stopped. */
    f = NULL;
    ck_assert_int_eq(pyheap_freeze_begin(999999, 100, &f, &err), -1);
    ck_assert_ptr_null(f);
    /* Not permitted (as nobody, a root process): EPERM before anything is
     * stopped. */
    struct svc_target t2;
    svc_target_start(&e, &t2, "t2", "counter_target.py", "0", (uid_t)-1, (gid_t)-1);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        if (setgid(SVC_NOBODY) < 0 || setuid(SVC_NOBODY) < 0)
            _exit(2);
        pyheap_freeze *g = NULL;
        pyheap_error e2;
        _exit(pyheap_freeze_begin(t2.pid, 100, &g, &e2) == -1 && e2.code == PYHEAP_E_PERM ? 0
                                                                                          : 1);
    }
    ck_assert_int_eq(test_wait_exit(child, 10000), 0);
    assert_running(&t2);
    svc_target_kill(&t2);
    svc_fini(&e);
}
END_TEST

struct bg {
    struct svc *e;
    json_t *reply;
};

static void *bg_main(void *arg)
{
    struct bg *b = arg;
    struct svc_conn c;
    svc_conn_open(b->e, &c);
    svc_send(&c, "{\"cmd\":\"top\",\"freeze\":true}\n", 29);
    b->reply = svc_reply(&c);   /* NULL: the daemon died */
    svc_conn_close(&c);
    return NULL;
}

START_TEST(daemon_killed_mid_freeze)
{
    struct svc e;
    struct svc_target t;
    /* A big heap: a frozen scan lasts seconds. */
    svc_start_attached(&e, &t, "counter_target.py", "2000000");
    struct bg b = { .e = &e };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, bg_main, &b), 0);
    /* Wait until the target is in a tracing stop, then kill the daemon. */
    double end = test_now_ms() + 20000;
    while (svc_proc_state(t.pid) != 't') {
        ck_assert_msg(test_now_ms() < end, "target never frozen");
        test_sleep_ms(2);
    }
    long c0 = svc_target_counter(&t);
    test_sleep_ms(50);
    ck_assert_msg(svc_proc_state(t.pid) == 't' && svc_target_counter(&t) == c0,
                  "target was not frozen long enough to test");
    kill(e.daemon, SIGKILL);
    ck_assert_int_eq(test_wait_exit(e.daemon, 10000), 128 + SIGKILL);
    e.daemon = -1;
    pthread_join(th, NULL);
    ck_assert_ptr_null(b.reply);
    assert_running(&t);
    svc_target_kill(&t);
    svc_fini(&e);
}
END_TEST

Suite *suite_freeze(void)
{
    Suite *s = suite_create("freeze");
    TCase *tc = tcase_create("freeze");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, freeze_scan_resumes);
    tcase_add_test(tc, freeze_over_budget_resumes);
    tcase_add_test(tc, freeze_library_paths);
    tcase_add_test(tc, daemon_killed_mid_freeze);
    suite_add_tcase(s, tc);
    return s;
}
