/* Target lifecycle: a target that exits (also in the middle of a scan),
 * calls exec (into another program, or into the same interpreter again),
 * or whose PID is reused by a new process must end its session with a
 * clear state ("gone", "exec'd", "pid reused") and never be read again.
 * PID reuse is real: the target is killed and a new process is given its
 * PID through /proc/sys/kernel/ns_last_pid (root only; retried because
 * other processes on the machine may take the PID first). */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "svcutil.h"
#include "testutil.h"

/* The "state" ps shows for PID (static buffer), or NULL if not listed. */
static const char *ps_state(struct svc *e, pid_t pid)
{
    static char st[32];
    json_t *j = svc_request(e, "{\"cmd\":\"ps\"}");
    svc_expect_ok(j);
    const char *r = NULL;
    json_t *arr = json_object_get(j, "targets");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *t = json_array_get(arr, i);
        if (json_integer_value(json_object_get(t, "pid")) == pid) {
            snprintf(st, sizeof st, "%s", json_string_value(json_object_get(t, "state")));
            r = st;
        }
    }
    json_decref(j);
    return r;
}

/* top -p PID must fail "gone" naming STATE. */
static void top_gone(struct svc *e, pid_t pid, const char *state)
{
    char line[96];
    snprintf(line, sizeof line, "{\"cmd\":\"top\",\"pid\":%d}", (int)pid);
    json_t *j = svc_request(e, line);
    const char *m = json_string_value(json_object_get(j, "message"));
    char want[64];
    snprintf(want, sizeof want, "\"%s\"", state);
    ck_assert_msg(m && strstr(m, want), "message does not name state %s: %s", state,
                  m ? m : "(none)");
    svc_expect_error(j, "gone");
}

START_TEST(exit_is_gone)
{
    struct svc e;
    struct svc_target t;
    svc_start_attached(&e, &t, "counter_target.py", "0");
    pid_t pid = t.pid;
    svc_target_kill(&t);
    top_gone(&e, pid, "gone");
    ck_assert_str_eq(ps_state(&e, pid), "gone");
    svc_fini(&e);
}
END_TEST

struct bg_top {
    struct svc *e;
    pid_t pid;
    json_t *reply;
    double ms;
};

static void *bg_top_main(void *arg)
{
    struct bg_top *b = arg;
    char line[96];
    snprintf(line, sizeof line, "{\"cmd\":\"top\",\"pid\":%d,\"n\":5}", (int)b->pid);
    double t0 = test_now_ms();
    b->reply = svc_request(b->e, line);
    b->ms = test_now_ms() - t0;
    return NULL;
}

START_TEST(killed_mid_scan)
{
    struct svc e;
    struct svc_target t;
    /* ~9 million objects: a census takes 0.4-0.6 s on two CPUs here (it
     * took well over a second when this test was written, and 300 ms
     * after the request no longer fell inside it), so the target is
     * killed 100 ms after the request. */
    svc_start_attached(&e, &t, "counter_target.py", "3000000");
    pid_t pid = t.pid;
    struct bg_top b = { .e = &e, .pid = pid };
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, bg_top_main, &b), 0);
    test_sleep_ms(100);
    svc_target_kill(&t);
    pthread_join(th, NULL);
    /* The scan ends with "gone", quickly, and reports nothing. */
    const char *m = json_string_value(json_object_get(b.reply, "message"));
    ck_assert_msg(b.ms < 30000, "scan of a dead target took %.0f ms", b.ms);
    ck_assert_msg(json_is_false(json_object_get(b.reply, "ok")),
                  "a scan of a killed target returned data");
    ck_assert_msg(m && strstr(m, "\"gone\""), "message: %s", m ? m : "(none)");
    svc_expect_error(b.reply, "gone");
    ck_assert_str_eq(ps_state(&e, pid), "gone");
    /* The daemon keeps serving. */
    json_t *p = svc_request(&e, "{\"cmd\":\"ping\"}");
    svc_expect_ok(p);
    json_decref(p);
    svc_fini(&e);
}
END_TEST

static void exec_case(const char *mode)
{
    struct svc e;
    svc_init(&e);
    svc_daemon_start(&e, NULL);
    struct svc_target t;
    svc_target_start(&e, &t, "t", "exec_target.py", mode, (uid_t)-1, (gid_t)-1);
    svc_attach(&e, t.pid);
    json_t *j = svc_request(&e, "{\"cmd\":\"top\",\"n\":3}");
    svc_expect_ok(j);
    json_decref(j);
    char go[300];
    snprintf(go, sizeof go, "%s/go", t.dir);
    FILE *f = fopen(go, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    /* Wait until the exec happened (comm changes / marker file). */
    char marker[300];
    snprintf(marker, sizeof marker, "%s/execd", t.dir);
    double end = test_now_ms() + 20000;
    for (;;) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/comm", (int)t.pid);
        char *comm = test_slurp(path);
        int done = strcmp(mode, "sleep") == 0 ? strncmp(comm, "sleep", 5) == 0
                                               : access(marker, F_OK) == 0;
        free(comm);
        if (done)
            break;
        ck_assert_msg(test_now_ms() < end, "target did not exec");
        test_sleep_ms(10);
    }
    top_gone(&e, t.pid, "exec'd");
    ck_assert_str_eq(ps_state(&e, t.pid), "exec'd");
    svc_target_kill(&t);
    svc_fini(&e);
}

START_TEST(exec_other_program)
{
    exec_case("sleep");
}
END_TEST

START_TEST(exec_same_interpreter)
{
    exec_case("self");
}
END_TEST

/* Fork a child that blocks on a pipe and then execs python (a plausible
 * Python target) and see whether it got PID WANT. */
static pid_t spawn_at_pid(pid_t want, const char *dir)
{
    for (int attempt = 0; attempt < 200; attempt++) {
        int fd = open("/proc/sys/kernel/ns_last_pid", O_RDWR | O_CLOEXEC);
        ck_assert_msg(fd >= 0, "cannot open ns_last_pid: %s", strerror(errno));
        /* Serialize with CRIU-like users of the same file. */
        flock(fd, LOCK_EX);
        char buf[32];
        int n = snprintf(buf, sizeof buf, "%d", (int)want - 1);
        ck_assert_int_eq(write(fd, buf, (size_t)n), n);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            char script[512];
            snprintf(script, sizeof script, "%s/tests/targets/counter_target.py", test_srcdir());
            char *argv[] = { SVC_PYTHON, script, (char *)dir, "0", NULL };
            execv(argv[0], argv);
            _exit(127);
        }
        flock(fd, LOCK_UN);
        close(fd);
        if (pid == want)
            return pid;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return -1;
}

START_TEST(pid_reused)
{
    ck_assert_msg(geteuid() == 0, "the PID reuse test needs root (ns_last_pid)");
    struct svc e;
    struct svc_target t;
    svc_start_attached(&e, &t, "counter_target.py", "0");
    pid_t pid = t.pid;
    svc_target_kill(&t);

    char dir2[256];
    snprintf(dir2, sizeof dir2, "%s/t2", e.dir);
    ck_assert_int_eq(mkdir(dir2, 0777), 0);
    pid_t again = spawn_at_pid(pid, dir2);
    ck_assert_msg(again == pid, "could not recycle PID %d through ns_last_pid", (int)pid);
    /* Let the new process become a real Python process. */
    char ready[300];
    snprintf(ready, sizeof ready, "%s/ready", dir2);
    double end = test_now_ms() + 30000;
    while (access(ready, F_OK) < 0) {
        ck_assert_msg(test_now_ms() < end, "recycled target did not start");
        test_sleep_ms(10);
    }
    top_gone(&e, pid, "pid reused");
    ck_assert_str_eq(ps_state(&e, pid), "pid reused");
    /* freeze must not stop the unrelated process either */
    char line[96];
    snprintf(line, sizeof line, "{\"cmd\":\"top\",\"pid\":%d,\"freeze\":true}", (int)pid);
    svc_expect_error(svc_request(&e, line), "gone");
    char st = svc_proc_state(pid);
    ck_assert_msg(st != 't' && st != 'T', "unrelated process left in state %c", st);
    /* Attaching again attaches the new process. */
    svc_attach(&e, pid);
    json_t *j = svc_request(&e, "{\"cmd\":\"top\",\"n\":3}");
    svc_expect_ok(j);
    json_decref(j);
    ck_assert_str_eq(ps_state(&e, pid), "attached");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    svc_fini(&e);
}
END_TEST

Suite *suite_lifecycle(void)
{
    Suite *s = suite_create("lifecycle");
    TCase *tc = tcase_create("lifecycle");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, exit_is_gone);
    tcase_add_test(tc, killed_mid_scan);
    tcase_add_test(tc, exec_other_program);
    tcase_add_test(tc, exec_same_interpreter);
    tcase_add_test(tc, pid_reused);
    suite_add_tcase(s, tc);
    return s;
}
