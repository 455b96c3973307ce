/* Protocol limits and concurrency: 1,000 malformed / oversized / truncated
 * requests leave the daemon serving; 50 concurrent clients all get correct
 * replies; the scan time budget stops a scan and says so; the reply cap
 * cuts a reply and says so; --max-clients and --max-request are honoured;
 * a slow scan of one target does not block ps or another target. */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "svcutil.h"
#include "testutil.h"

/* xorshift64* */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static const char *const bad_lines[] = {
    "{", "}", "[]", "null", "42", "\"ping\"", "{\"cmd\":1}", "{\"cmd\":null}",
    "{\"cmd\":\"nope\"}", "{\"cmd\":\"top\",\"n\":-1}", "{\"cmd\":\"top\",\"n\":\"5\"}",
    "{\"cmd\":\"top\",\"pid\":0}", "{\"cmd\":\"top\",\"pid\":1e3}", "{\"cmd\":\"attach\"}",
    "{\"cmd\":\"top\",\"sort\":\"size\"}", "{\"cmd\":\"top\",\"freeze\":1}",
    "{\"cmd\":\"ping\",\"x\":1}", "{\"cmd\":\"ping\",\"cmd\":\"ping\"}", "{\"cmd\":\"p\\u0000ing\"}",
    "{\"cmd\":\"ping\"", "\xff\xfe{}", "{\"cmd\":[\"ping\"]}", "{\"cmd\":{\"a\":1}}",
    "{\"cmd\":\"top\",\"pid\":99999999999999999999}",
};

START_TEST(thousand_bad_requests)
{
    struct svc e;
    svc_init(&e);
    svc_daemon_start(&e, NULL);
    uint64_t seed = 0x1234567;
    int sent = 0, structured = 0;
    char *big = malloc(70000);
    ck_assert_ptr_nonnull(big);
    memset(big, 'a', 70000);
    while (sent < 1000) {
        struct svc_conn c;
        svc_conn_open(&e, &c);
        /* Several bad requests per connection: each gets a structured
         * error and the connection stays usable. */
        for (int k = 0; k < 20 && sent < 1000; k++, sent++) {
            uint64_t r = rnd(&seed);
            char line[512];
            size_t n = sizeof bad_lines / sizeof bad_lines[0];
            if (r % 3 == 0) {
                /* random bytes without newlines */
                size_t len = 1 + rnd(&seed) % 200;
                for (size_t i = 0; i < len; i++) {
                    char ch = (char)(rnd(&seed) & 0xff);
                    line[i] = ch == '\n' || ch == '\r' || ch == 0 ? 'x' : ch;
                }
                line[len] = '\0';
                if (line[0] == '{' && strstr(line, "cmd"))
                    line[0] = 'x';
            } else if (r % 3 == 1) {
                /* a valid request truncated at a random point */
                const char *v = "{\"cmd\":\"top\",\"pid\":12345,\"n\":10,\"sort\":\"count\"}";
                size_t cut = 1 + rnd(&seed) % (strlen(v) - 1);
                memcpy(line, v, cut);
                line[cut] = '\0';
            } else {
                snprintf(line, sizeof line, "%s", bad_lines[rnd(&seed) % n]);
            }
            svc_send(&c, line, strlen(line));
            svc_send(&c, "\n", 1);
            json_t *j = svc_reply(&c);
            ck_assert_msg(j != NULL, "no reply to bad request %d", sent);
            ck_assert_msg(json_is_false(json_object_get(j, "ok")), "bad request %d accepted: %s",
                          sent, line);
            const char *code = json_string_value(json_object_get(j, "error"));
            const char *msg = json_string_value(json_object_get(j, "message"));
            ck_assert(code && *code && msg && *msg);
            structured++;
            json_decref(j);
        }
        /* still usable */
        json_t *p = svc_call(&c, "{\"cmd\":\"ping\"}");
        svc_expect_ok(p);
        json_decref(p);
        /* Every third connection ends with an oversized line: too_long, then
         * closed; or with a truncated line and a hang-up. */
        if (sent % 60 == 0) {
            svc_send(&c, big, 70000);
            svc_send(&c, "\n", 1);
            svc_expect_error(svc_reply(&c), "too_long");
            ck_assert_ptr_null(svc_reply(&c));
        } else {
            svc_send(&c, "{\"cmd\":\"pi", 10);
        }
        svc_conn_close(&c);
    }
    free(big);
    ck_assert_int_eq(structured, 1000);
    json_t *p = svc_request(&e, "{\"cmd\":\"ping\"}");
    svc_expect_ok(p);
    json_decref(p);
    svc_fini(&e);
}
END_TEST

struct client {
    struct svc *e;
    pid_t pid;
    int ok;
    char why[256];
};

static void *client_main(void *arg)
{
    struct client *cl = arg;
    int fd = test_connect(cl->e->sock);
    if (fd < 0) {
        snprintf(cl->why, sizeof cl->why, "connect: %s", strerror(errno));
        return NULL;
    }
    FILE *f = fdopen(fd, "r+");
    char line[128];
    snprintf(line, sizeof line,
             "{\"cmd\":\"ping\"}\n{\"cmd\":\"ps\"}\n{\"cmd\":\"top\",\"pid\":%d,\"n\":0}\n",
             (int)cl->pid);
    if (fputs(line, f) < 0 || fflush(f) != 0) {
        snprintf(cl->why, sizeof cl->why, "send failed");
        fclose(f);
        return NULL;
    }
    size_t cap = 1 << 22;
    char *buf = malloc(cap);
    int good = 0;
    for (int i = 0; i < 3 && buf && fgets(buf, (int)cap, f); i++) {
        json_error_t jerr;
        json_t *j = json_loads(buf, 0, &jerr);
        if (!j || !json_is_true(json_object_get(j, "ok"))) {
            snprintf(cl->why, sizeof cl->why, "reply %d: %.200s", i, buf);
            json_decref(j);
            break;
        }
        if (i == 2 && svc_type_count(j, "__main__.DaemonProbe") != 3000) {
            snprintf(cl->why, sizeof cl->why, "top: %lld DaemonProbe",
                     svc_type_count(j, "__main__.DaemonProbe"));
            json_decref(j);
            break;
        }
        json_decref(j);
        good++;
    }
    free(buf);
    fclose(f);
    cl->ok = good == 3;
    return NULL;
}

START_TEST(fifty_concurrent_clients)
{
    struct svc e;
    struct svc_target t;
    svc_start_attached(&e, &t, "counter_target.py", "0");
    enum { N = 50 };
    struct client cl[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        cl[i] = (struct client){ .e = &e, .pid = t.pid };
        ck_assert_int_eq(pthread_create(&th[i], NULL, client_main, &cl[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += cl[i].ok;
        ck_assert_msg(cl[i].ok, "client %d: %s", i, cl[i].why);
    }
    ck_assert_int_eq(ok, N);
    svc_target_kill(&t);
    svc_fini(&e);
}
END_TEST

START_TEST(scan_time_budget)
{
    struct svc e;
    svc_init(&e);
    const char *opts[] = { "--scan-timeout", "50", NULL };
    svc_daemon_start(&e, opts);
    struct svc_target t;
    svc_target_start(&e, &t, "t", "counter_target.py", "1000000", (uid_t)-1, (gid_t)-1);
    svc_attach(&e, t.pid);
    double t0 = test_now_ms();
    json_t *j = svc_request(&e, "{\"cmd\":\"top\"}");
    double ms = test_now_ms() - t0;
    const char *m = json_string_value(json_object_get(j, "message"));
    ck_assert_msg(m && strstr(m, "time budget"), "message: %s", m ? m : "(none)");
    svc_expect_error(j, "timeout");
    ck_assert_msg(ms < 5000, "a 50 ms budget took %.0f ms to stop", ms);
    /* the session is fine afterwards */
    j = svc_request(&e, "{\"cmd\":\"ps\"}");
    svc_expect_ok(j);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(j, "targets"), 0), "state")),
                     "attached");
    json_decref(j);
    svc_target_kill(&t);
    svc_fini(&e);
}
END_TEST

START_TEST(reply_cap)
{
    struct svc e;
    svc_init(&e);
    const char *opts[] = { "--max-reply", "1024", NULL };
    svc_daemon_start(&e, opts);
    struct svc_target t;
    svc_target_start(&e, &t, "t", "counter_target.py", "0", (uid_t)-1, (gid_t)-1);
    svc_attach(&e, t.pid);
    struct svc_conn c;
    svc_conn_open(&e, &c);
    svc_send(&c, "{\"cmd\":\"top\",\"n\":0}\n", 21);
    /* measure the raw line */
    json_t *j = svc_reply(&c);
    svc_expect_ok(j);
    ck_assert(json_is_true(json_object_get(j, "reply_truncated")));
    ck_assert_int_gt(json_integer_value(json_object_get(j, "reply_dropped")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "reply_max_bytes")), 1024);
    char *s = json_dumps(j, JSON_COMPACT);
    ck_assert_uint_le(strlen(s), 1024);
    free(s);
    json_decref(j);
    svc_conn_close(&c);
    /* the CLI says so */
    char *out, *err;
    ck_assert_int_eq(svc_cli(&e, (uid_t)-1, (gid_t)-1, &out, &err, "top", "-n", "0", NULL), 0);
    ck_assert_msg(strstr(out, "--max-reply"), "%s", out);
    free(out), free(err);
    svc_target_kill(&t);
    svc_fini(&e);
}
END_TEST

START_TEST(max_clients_and_request)
{
    struct svc e;
    svc_init(&e);
    const char *opts[] = { "--max-clients", "2", "--max-request", "100", NULL };
    svc_daemon_start(&e, opts);
    struct svc_conn a, b, c;
    /* The start-up probe's connection may still count for a moment:
     * retry until two clients are in. */
    double end = test_now_ms() + 10000;
    for (int in = 0; in < 2;) {
        struct svc_conn *x = in == 0 ? &a : &b;
        svc_conn_open(&e, x);
        /* A refused client gets "busy" unasked; an accepted one nothing. */
        struct pollfd pf = { .fd = x->fd, .events = POLLIN };
        json_t *j = poll(&pf, 1, 300) == 1 ? svc_reply(x) : NULL;
        if (j) {
            ck_assert_msg(!json_is_true(json_object_get(j, "ok")), "unexpected reply");
            json_decref(j);
            svc_conn_close(x);
            ck_assert_msg(test_now_ms() < end, "never got two clients in");
            test_sleep_ms(20);
            continue;
        }
        in++;
    }
    json_t *j = svc_call(&a, "{\"cmd\":\"ping\"}");
    svc_expect_ok(j);
    json_decref(j);
    j = svc_call(&b, "{\"cmd\":\"ping\"}");
    svc_expect_ok(j);
    json_decref(j);
    svc_conn_open(&e, &c);
    svc_expect_error(svc_reply(&c), "busy");
    svc_conn_close(&c);
    /* 101 bytes: too long for --max-request 100 */
    char line[128];
    memset(line, ' ', 101);
    memcpy(line, "{\"cmd\":\"ping\"", 13);
    line[100] = '}';
    line[101] = '\n';
    svc_send(&a, line, 102);
    svc_expect_error(svc_reply(&a), "too_long");
    svc_conn_close(&a);
    svc_conn_close(&b);
    svc_fini(&e);
}
END_TEST

struct slow {
    struct svc *e;
    pid_t pid;
    double ms;
    int ok;
};

static void *slow_main(void *arg)
{
    struct slow *s = arg;
    char line[96];
    snprintf(line, sizeof line, "{\"cmd\":\"top\",\"pid\":%d}", (int)s->pid);
    double t0 = test_now_ms();
    json_t *j = svc_request(s->e, line);
    s->ms = test_now_ms() - t0;
    s->ok = json_is_true(json_object_get(j, "ok"));
    json_decref(j);
    return NULL;
}

START_TEST(slow_scan_blocks_nothing_else)
{
    struct svc e;
    svc_init(&e);
    svc_daemon_start(&e, NULL);
    struct svc_target big, small;
    svc_target_start(&e, &big, "big", "counter_target.py", "1500000", (uid_t)-1, (gid_t)-1);
    svc_target_start(&e, &small, "small", "counter_target.py", "0", (uid_t)-1, (gid_t)-1);
    svc_attach(&e, big.pid);
    svc_attach(&e, small.pid);
    struct slow s = { .e = &e, .pid = big.pid };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, slow_main, &s), 0);
    test_sleep_ms(100);
    double t0 = test_now_ms();
    json_t *j = svc_request(&e, "{\"cmd\":\"ps\"}");
    double ps_ms = test_now_ms() - t0;
    svc_expect_ok(j);
    json_decref(j);
    char line[96];
    snprintf(line, sizeof line, "{\"cmd\":\"top\",\"pid\":%d}", (int)small.pid);
    t0 = test_now_ms();
    j = svc_request(&e, line);
    double small_ms = test_now_ms() - t0;
    svc_expect_ok(j);
    json_decref(j);
    pthread_join(th, NULL);
    ck_assert(s.ok);
    fprintf(stderr, "limits: big scan %.0f ms; meanwhile ps %.0f ms, small top %.0f ms\n", s.ms,
            ps_ms, small_ms);
    ck_assert_msg(ps_ms < s.ms / 2 && small_ms < s.ms / 2,
                  "ps (%.0f ms) or the small target (%.0f ms) waited for the big scan (%.0f ms)",
                  ps_ms, small_ms, s.ms);
    svc_target_kill(&big);
    svc_target_kill(&small);
    svc_fini(&e);
}
END_TEST

Suite *suite_limits(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("limits");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, thousand_bad_requests);
    tcase_add_test(tc, fifty_concurrent_clients);
    tcase_add_test(tc, scan_time_budget);
    tcase_add_test(tc, reply_cap);
    tcase_add_test(tc, max_clients_and_request);
    tcase_add_test(tc, slow_scan_blocks_nothing_else);
    suite_add_tcase(s, tc);
    return s;
}
