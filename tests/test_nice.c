/* Scans run at a low CPU priority whoever starts pyheapd (--scan-nice,
 * daemon/scan.c): while a real target is scanned, the daemon's scanning
 * thread ("pyheapd-scan" in /proc/PID/task/TID/comm) is read from
 * /proc/PID/task/TID/stat — its nice (field 19) and scheduling policy
 * (field 41) — and so is the periodic series thread ("pyheapd-series"). */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "svcutil.h"
#include "testutil.h"

/* What was seen of the threads named NAME of process PID. */
struct seen {
    int n;             /* observations */
    int nice_min, nice_max;
    int policy_min, policy_max;
    int main_nice_max; /* the main thread (TID == PID), for comparison */
    int most;          /* most threads of that name seen at once */
    /* With stopped_target set (a --freeze scan of it): the above counts
     * only passes made while that process stayed in tracing stop, and
     * these the passes made while it ran after such a pass (the build
     * after the walk). */
    pid_t stopped_target;
    bool was_stopped;
    int n_running;
    int running_nice_min, running_nice_max;
};

static void seen_init(struct seen *s)
{
    memset(s, 0, sizeof *s);
    s->nice_min = s->policy_min = 1000;
    s->nice_max = s->policy_max = s->main_nice_max = -1000;
    s->running_nice_min = 1000;
    s->running_nice_max = -1000;
}

/* The state letter of process PID ('t': tracing stop), '?' if unknown. */
static char proc_state(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    char *st = test_slurp(path);
    char *p = strrchr(st, ')');
    char c = p && p[1] == ' ' && p[2] ? p[2] : '?';
    free(st);
    return c;
}

/* Fields 3.. of a stat line start after the last ')' (comm may hold any
 * byte); field 19 is nice, field 41 the policy. 0, or -1 if unreadable
 * (the thread exited). */
static int task_stat(pid_t pid, const char *tid, int *nice, int *policy)
{
    char path[400];
    snprintf(path, sizeof path, "/proc/%d/task/%s/stat", (int)pid, tid);
    char *st = test_slurp(path);
    char *p = strrchr(st, ')');
    int rc = -1;
    if (p) {
        p += 2;   /* field 3 */
        long v[40];
        int k = 0;
        while (k < 39) {
            char *end;
            if (k == 0) {   /* the state letter */
                v[k++] = 0;
                p += 2;
                continue;
            }
            v[k++] = strtol(p, &end, 10);
            if (end == p)
                break;
            p = end;
        }
        if (k >= 39) {
            *nice = (int)v[19 - 3];
            *policy = (int)v[41 - 3];
            rc = 0;
        }
    }
    free(st);
    return rc;
}

static void observe_pass(pid_t pid, const char *name, struct seen *s);

/* One pass over PID's threads: record those named NAME (see
 * stopped_target). */
static void observe(pid_t pid, const char *name, struct seen *s)
{
    if (!s->stopped_target) {
        observe_pass(pid, name, s);
        return;
    }
    char before = proc_state(s->stopped_target);
    struct seen x;
    seen_init(&x);
    observe_pass(pid, name, &x);
    char after = proc_state(s->stopped_target);
    if (x.n == 0 || (before == 't') != (after == 't'))
        return;   /* no scan thread, or it stopped or resumed meanwhile */
    if (before == 't') {
        s->was_stopped = true;
        s->n += x.n;
        s->nice_min = x.nice_min < s->nice_min ? x.nice_min : s->nice_min;
        s->nice_max = x.nice_max > s->nice_max ? x.nice_max : s->nice_max;
        s->policy_min = x.policy_min < s->policy_min ? x.policy_min : s->policy_min;
        s->policy_max = x.policy_max > s->policy_max ? x.policy_max : s->policy_max;
    } else if (s->was_stopped) {
        s->n_running += x.n;
        if (x.nice_min < s->running_nice_min)
            s->running_nice_min = x.nice_min;
        if (x.nice_max > s->running_nice_max)
            s->running_nice_max = x.nice_max;
    }
}

static void observe_pass(pid_t pid, const char *name, struct seen *s)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/task", (int)pid);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    int now = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[400];
        snprintf(path, sizeof path, "%s/%s/comm", dir, de->d_name);
        char *comm = test_slurp(path);
        comm[strcspn(comm, "\n")] = '\0';
        int nice, policy;
        if (strcmp(comm, name) == 0 && task_stat(pid, de->d_name, &nice, &policy) == 0) {
            s->n++;
            now++;
            if (nice < s->nice_min)
                s->nice_min = nice;
            if (nice > s->nice_max)
                s->nice_max = nice;
            if (policy < s->policy_min)
                s->policy_min = policy;
            if (policy > s->policy_max)
                s->policy_max = policy;
        }
        if (atoi(de->d_name) == (int)pid && task_stat(pid, de->d_name, &nice, &policy) == 0 &&
            nice > s->main_nice_max)
            s->main_nice_max = nice;
        free(comm);
    }
    closedir(d);
    if (now > s->most)
        s->most = now;
}

/* Send REQ and watch the daemon's "pyheapd-scan" threads until the reply
 * comes; repeat (up to 5 requests) until a scan thread was seen (while
 * STOPPED, if not 0, was in tracing stop: see struct seen). */
static void watch_scans(struct svc *e, const char *req, struct seen *s, pid_t stopped)
{
    seen_init(s);
    s->stopped_target = stopped;
    for (int round = 0; round < 5 && s->n == 0; round++) {
        s->was_stopped = false;
        struct svc_conn c;
        svc_conn_open(e, &c);
        svc_send(&c, req, strlen(req));
        svc_send(&c, "\n", 1);
        struct pollfd pfd = { .fd = c.fd, .events = POLLIN };
        double end = test_now_ms() + 120000;
        while (poll(&pfd, 1, 0) == 0) {
            ck_assert_msg(test_now_ms() < end, "no reply to %s", req);
            observe(e->daemon, "pyheapd-scan", s);
            usleep(500);
        }
        json_t *j = svc_reply(&c);
        ck_assert_ptr_nonnull(j);
        svc_expect_ok(j);
        fprintf(stderr, "nice: %s: scan %.0f ms, %d observations of the scan thread\n", req,
                json_number_value(json_object_get(j, "scan_ms")), s->n);
        json_decref(j);
        svc_conn_close(&c);
    }
    ck_assert_msg(s->n > 0, "no thread named pyheapd-scan seen during 5 scans");
}

/* A daemon started with EXTRA options, attached to a target of about 2M
 * objects (a scan takes hundreds of ms). */
static void start(struct svc *e, struct svc_target *t, const char *const *extra)
{
    svc_init(e);
    svc_daemon_start(e, extra);
    svc_target_start(e, t, "t", "counter_target.py", "1000000", (uid_t)-1, (gid_t)-1);
    svc_attach(e, t->pid);
}

static void stop(struct svc *e, struct svc_target *t)
{
    svc_target_kill(t);
    svc_fini(e);
}

/* The test's own nice, which the daemon inherits (0 unless the suite runs
 * under nice). */
static int base_nice(void)
{
    errno = 0;
    int n = getpriority(PRIO_PROCESS, 0);
    ck_assert_msg(!(n == -1 && errno), "getpriority");
    ck_assert_msg(n < 19, "the suite runs at nice %d: nothing left to lower", n);
    return n;
}

/* The daemon's log says TEXT (PRESENT), or does not. */
static void expect_log(const struct svc *e, const char *text, bool present)
{
    char *log = test_slurp(e->log);
    ck_assert_msg(!strstr(log, text) == !present, "log %s \"%s\": %s",
                  present ? "lacks" : "has", text, log);
    free(log);
}

static const char TOP[] = "{\"cmd\":\"top\",\"n\":3}";

START_TEST(scan_default_nice19)
{
    /* the daemon starts at the test's priority: nobody asks for a low
     * priority but pyheapd itself */
    int base = base_nice();
    struct svc e;
    struct svc_target t;
    start(&e, &t, NULL);
    struct seen s;
    watch_scans(&e, TOP, &s, 0);
    ck_assert_msg(s.nice_min == 19 && s.nice_max == 19,
                  "scan thread at nice %d..%d, expected 19", s.nice_min, s.nice_max);
    ck_assert_msg(s.policy_min == SCHED_BATCH && s.policy_max == SCHED_BATCH,
                  "scan thread policy %d..%d, expected SCHED_BATCH", s.policy_min,
                  s.policy_max);
    /* the rest of the daemon keeps its priority */
    ck_assert_int_eq(s.main_nice_max, base);

    /* --freeze stops the target for the walk: the scan keeps the daemon's
     * priority while it is stopped, so that the pause is not stretched;
     * once it runs again (the build), the scans' priority */
    watch_scans(&e, "{\"cmd\":\"top\",\"n\":3,\"freeze\":true}", &s, t.pid);
    ck_assert_msg(s.nice_min == base && s.nice_max == base && s.policy_max == SCHED_OTHER,
                  "scan at nice %d..%d policy %d while the target was stopped", s.nice_min,
                  s.nice_max, s.policy_max);
    fprintf(stderr, "nice: frozen scans: %d observations while stopped, %d after (nice "
            "%d..%d)\n", s.n, s.n_running, s.running_nice_min, s.running_nice_max);
    /* (the first passes after the target resumes may see the thread a
     * moment before it lowers its priority) */
    if (s.n_running > 10)
        ck_assert_msg(s.running_nice_max == 19,
                      "the build after the freeze at nice %d..%d, expected 19",
                      s.running_nice_min, s.running_nice_max);

    /* the log says at which priority scans run */
    expect_log(&e, "scans run at nice 19 with SCHED_BATCH", true);
    stop(&e, &t);
}
END_TEST

START_TEST(scan_nice_value)
{
    int want = base_nice() > 7 ? base_nice() : 7;   /* never raised */
    struct svc e;
    struct svc_target t;
    static const char *const opt[] = { "--scan-nice", "7", NULL };
    start(&e, &t, opt);
    struct seen s;
    watch_scans(&e, TOP, &s, 0);
    ck_assert_msg(s.nice_min == want && s.nice_max == want,
                  "scan thread at nice %d..%d, expected %d", s.nice_min, s.nice_max, want);
    if (want == 7)
        ck_assert_int_eq(s.policy_max, SCHED_BATCH);
    stop(&e, &t);
}
END_TEST

START_TEST(scan_nice_zero)
{
    int base = base_nice();
    struct svc e;
    struct svc_target t;
    static const char *const opt[] = { "--scan-nice", "0", NULL };
    start(&e, &t, opt);
    struct seen s;
    watch_scans(&e, TOP, &s, 0);
    ck_assert_msg(s.nice_min == base && s.nice_max == base && s.policy_max == SCHED_OTHER,
                  "--scan-nice 0: scan thread at nice %d..%d, policy %d", s.nice_min,
                  s.nice_max, s.policy_max);
    stop(&e, &t);
}
END_TEST

START_TEST(series_thread_nice)
{
    /* periodic scans: the series thread and its scans are low too */
    struct svc e;
    struct svc_target t;
    start(&e, &t, NULL);
    svc_attach_every(&e, t.pid, 0.2);
    struct seen series, scan;
    seen_init(&series);
    seen_init(&scan);
    double end = test_now_ms() + 60000;
    while ((series.n == 0 || scan.n == 0) && test_now_ms() < end) {
        observe(e.daemon, "pyheapd-series", &series);
        observe(e.daemon, "pyheapd-scan", &scan);
        usleep(500);
    }
    ck_assert_msg(series.n > 0, "no pyheapd-series thread");
    ck_assert_msg(scan.n > 0, "no periodic scan seen in 60 s");
    ck_assert_msg(series.nice_min == 19 && series.nice_max == 19 &&
                  series.policy_max == SCHED_BATCH,
                  "series thread at nice %d..%d policy %d", series.nice_min, series.nice_max,
                  series.policy_max);
    ck_assert_msg(scan.nice_min == 19 && scan.nice_max == 19,
                  "periodic scan at nice %d..%d", scan.nice_min, scan.nice_max);
    ck_assert_int_eq(series.main_nice_max, base_nice());
    stop(&e, &t);
}
END_TEST

/* " nice N" of /proc/PID/autogroup, or -100: no such file (a kernel
 * without CONFIG_SCHED_AUTOGROUP) or an empty one (a process in the root
 * autogroup, such as init's session, which CI runners may inherit). */
static int autogroup_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/autogroup", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -100;
    char s[128] = "";
    size_t n = fread(s, 1, sizeof s - 1, f);
    fclose(f);
    s[n] = '\0';
    const char *p = strstr(s, " nice ");
    return p ? atoi(p + 6) : -100;
}

/* Whether a process leading a new session gets an autogroup of its own:
 * the kernel has autogroup, whatever the suite's own session shows. */
static bool new_session_autogroup(void)
{
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0)
        _exit(setsid() >= 0 && autogroup_of(getpid()) != -100 ? 0 : 1);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return false;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* Start pyheapd leading a session of its own (setsid), with --scan-nice
 * NICE (NULL: the default). HIDE: its /proc/PID/autogroup is an empty file
 * (/dev/null bound over it in a mount namespace of its own), which is what
 * the daemon meets where the kernel shows no autogroup. */
static void start_own_session(struct svc *e, const char *nice, bool hide)
{
    svc_init(e);
    char bin[512];
    snprintf(bin, sizeof bin, "%s/pyheapd", test_builddir());
    char *plain[] = { "/usr/bin/setsid", bin, "--socket", e->sock, "--scan-nice",
                      (char *)nice, NULL };
    if (!nice)
        plain[4] = NULL;
    /* unshare(1) and sh exec in place: the daemon keeps the spawned PID */
    char *hidden[] = { "/usr/bin/unshare", "-m", "/bin/sh", "-c",
                       "mount --bind /dev/null /proc/$$/autogroup && "
                       "exec /usr/bin/setsid \"$0\" --socket \"$1\"",
                       bin, e->sock, NULL };
    ck_assert(!(hide && nice));
    e->daemon = test_spawn(hide ? hidden : plain, NULL, e->log, (uid_t)-1, (gid_t)-1);
    svc_daemon_wait(e);
    /* setsid(1) execs in place when not a group leader: same PID */
    ck_assert_int_eq(getsid(e->daemon), e->daemon);
}

/* Where the kernel shows no autogroup (CONFIG_SCHED_AUTOGROUP off; here
 * simulated when it has one), a daemon leading its own session starts, says
 * at which nice its scans run, claims nothing about an autogroup and serves
 * requests. */
START_TEST(autogroup_absent)
{
    bool have = new_session_autogroup();
    int mine = autogroup_of(getpid());
    struct svc e;
    start_own_session(&e, NULL, have);
    /* what the daemon saw: nothing; here the real one is left as it was
     * (a new session's autogroup starts at nice 0) */
    if (have)
        ck_assert_int_lt(autogroup_of(e.daemon), 19);
    json_t *j = svc_request(&e, "{\"cmd\":\"ps\"}");
    svc_expect_ok(j);
    json_decref(j);
    expect_log(&e, "scans run at nice 19 with SCHED_BATCH", true);
    expect_log(&e, "autogroup", false);
    svc_fini(&e);
    /* the test's own view is untouched by the daemon's namespace */
    ck_assert_int_eq(autogroup_of(getpid()), mine);
}
END_TEST

START_TEST(autogroup_own_session)
{
    /* Autogroup shares the CPU between sessions first: a daemon leading a
     * session of its own (systemd, setsid) lowers that session to the scan
     * nice; one started inside someone else's session leaves it alone.
     * Registered only where the kernel has autogroup (see main). The
     * suite's own session may be in the root autogroup (-100: an empty
     * file), as under a CI runner started by init. */
    int mine = autogroup_of(getpid());
    ck_assert_msg(mine < 19, "the suite's session is at autogroup nice %d already", mine);

    /* in the test's session (not its leader): untouched */
    struct svc e;
    svc_init(&e);
    svc_daemon_start(&e, NULL);
    ck_assert_int_eq(autogroup_of(e.daemon), mine);
    ck_assert_int_eq(autogroup_of(getpid()), mine);
    expect_log(&e, "autogroup", false);
    svc_fini(&e);

    /* leading its own session: the session's autogroup gets nice 19; with
     * --scan-nice 0 it stays */
    static const char *const nices[] = { NULL, "0", "12" };
    static const int want[] = { 19, -1, 12 };
    for (int k = 0; k < 3; k++) {
        start_own_session(&e, nices[k], false);
        int expect = want[k] < 0 ? autogroup_of(e.daemon) : want[k];
        ck_assert_msg(autogroup_of(e.daemon) == expect, "daemon's autogroup at nice %d, "
                      "expected %d", autogroup_of(e.daemon), expect);
        if (want[k] < 0)
            ck_assert_int_lt(autogroup_of(e.daemon), 19);
        ck_assert_int_eq(autogroup_of(getpid()), mine);
        expect_log(&e, "its own session (autogroup) at nice", true);
        svc_fini(&e);
    }
}
END_TEST

/* pyheapd OPTION with each of the N values BAD exits 2 saying WHY. */
static void refused(const char *option, const char *const *bad, size_t n, const char *why)
{
    for (size_t i = 0; i < n; i++) {
        char cmd[600], *out;
        snprintf(cmd, sizeof cmd, "'%s/pyheapd' %s '%s' --socket /nonexistent/x.sock",
                 test_builddir(), option, bad[i]);
        int rc = test_sh(cmd, &out);
        ck_assert_msg(rc == 2, "%s '%s': exit %d, expected 2: %s", option, bad[i], rc, out);
        ck_assert_msg(strstr(out, why), "%s '%s': %s", option, bad[i], out);
        free(out);
    }
}

/* --scan-threads: the walker threads of a scan (named after the scan
 * thread that starts them) all run at the scans' priority. */
START_TEST(scan_threads)
{
    base_nice();
    static const char *const extra[] = { "--scan-threads", "3", NULL };
    struct svc e;
    struct svc_target t;
    start(&e, &t, extra);
    struct seen s;
    seen_init(&s);
    for (int i = 0; i < 5 && s.most < 3; i++) {
        struct seen one;
        watch_scans(&e, TOP, &one, 0);
        if (one.most > s.most)
            s = one;
    }
    ck_assert_msg(s.most == 3, "at most %d scan threads at once, expected 3", s.most);
    ck_assert_msg(s.nice_min == 19 && s.nice_max == 19 && s.policy_min == SCHED_BATCH,
                  "walker threads at nice %d..%d policy %d", s.nice_min, s.nice_max,
                  s.policy_min);
    expect_log(&e, "3 walker threads per scan", true);
    stop(&e, &t);
    static const char *const bad[] = { "0", "65", "x" };
    refused("--scan-threads", bad, sizeof bad / sizeof bad[0], "--scan-threads takes 1..64");
}
END_TEST

START_TEST(scan_nice_invalid)
{
    static const char *const bad[] = { "20", "-1", "abc", "", "19x", "100" };
    refused("--scan-nice", bad, sizeof bad / sizeof bad[0],
            "--scan-nice takes a nice value 0..19");
    /* and the help lists it */
    char cmd[600], *out;
    snprintf(cmd, sizeof cmd, "'%s/pyheapd' --help", test_builddir());
    ck_assert_int_eq(test_sh(cmd, &out), 0);
    ck_assert_msg(strstr(out, "--scan-nice N"), "help: %s", out);
    free(out);
}
END_TEST

Suite *suite_nice(void)
{
    Suite *s = suite_create("nice");
    TCase *tc = tcase_create("nice");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, scan_default_nice19);
    tcase_add_test(tc, scan_nice_value);
    tcase_add_test(tc, scan_nice_zero);
    tcase_add_test(tc, series_thread_nice);
    /* setting the autogroup's nice can only be tested where the kernel has
     * one; what pyheapd does without is tested everywhere */
    bool autogroup = new_session_autogroup();
    if (autogroup)
        tcase_add_test(tc, autogroup_own_session);
    else
        fprintf(stderr, "nice: autogroup_own_session NOT RUN: a new session shows no "
                "/proc/self/autogroup (CONFIG_SCHED_AUTOGROUP off); autogroup_absent "
                "tests what pyheapd does without one\n");
    /* without autogroup, the real case; with it, simulated in a mount
     * namespace (root with CAP_SYS_ADMIN, as in CI and here) */
    if (!autogroup ||
        system("/usr/bin/unshare -m /bin/sh -c "
               "'mount --bind /dev/null /proc/$$/autogroup' >/dev/null 2>&1") == 0)
        tcase_add_test(tc, autogroup_absent);
    else
        fprintf(stderr, "nice: autogroup_absent NOT RUN: the kernel has autogroup and a "
                "kernel without cannot be simulated here (unshare -m and mount --bind "
                "over /proc/PID/autogroup fail)\n");
    tcase_add_test(tc, scan_nice_invalid);
    tcase_add_test(tc, scan_threads);
    suite_add_tcase(s, tc);
    return s;
}
