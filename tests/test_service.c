/* pyheapd as a systemd service: the units pass `systemd-analyze verify` and
 * score as hardened in `systemd-analyze security` (offline); socket
 * activation (LISTEN_PID/LISTEN_FDS, fd 3) and readiness notification to
 * $NOTIFY_SOCKET (an abstract '@' address) work as systemd drives them;
 * journald priority prefixes when stderr is the journal stream; and
 * `make install DESTDIR=...` puts binaries, units and man pages in place. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "svcutil.h"
#include "testutil.h"

/* Units with @SBINDIR@ pointing at the build's pyheapd, in DIR. */
static void units_in(const char *dir)
{
    char cmd[2048], *out;
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && sed 's|@SBINDIR@|%s|' '%s/systemd/pyheapd.service' > "
             "'%s/pyheapd.service' && cp '%s/systemd/pyheapd.socket' '%s/'",
             dir, test_builddir(), test_srcdir(), dir, test_srcdir(), dir);
    ck_assert_msg(test_sh(cmd, &out) == 0, "%s", out);
    free(out);
}

START_TEST(units_verify_and_security)
{
    ck_assert_msg(access("/usr/bin/systemd-analyze", X_OK) == 0,
                  "systemd-analyze is missing: install systemd");
    struct svc e;
    svc_init(&e);
    char dir[256], cmd[1024], *out;
    snprintf(dir, sizeof dir, "%s/units", e.dir);
    units_in(dir);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && systemd-analyze verify --man=no ./pyheapd.socket ./pyheapd.service", dir);
    int rc = test_sh(cmd, &out);
    ck_assert_msg(rc == 0 && out[0] == '\0', "systemd-analyze verify (%d): %s", rc, out);
    free(out);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && systemd-analyze security --offline=yes --no-pager ./pyheapd.service",
             dir);
    rc = test_sh(cmd, &out);
    char *p = strstr(out, "Overall exposure level for pyheapd.service: ");
    ck_assert_msg(p, "no score (%d): %s", rc, out);
    double score = strtod(p + strlen("Overall exposure level for pyheapd.service: "), NULL);
    fprintf(stderr, "service: systemd-analyze security: exposure %.1f\n", score);
    /* 10 is an unhardened root service; "OK" is below 4. */
    ck_assert_msg(score > 0 && score <= 2.5, "exposure level %.1f", score);
    /* The filter allows process_vm_readv and ptrace, denies process_vm_writev. */
    snprintf(cmd, sizeof cmd, "%s/pyheapd.service", dir);
    char *unit = test_slurp(cmd);
    ck_assert_ptr_nonnull(strstr(unit, "SystemCallFilter=@system-service ptrace"));
    ck_assert_ptr_nonnull(strstr(unit, "process_vm_writev"));
    ck_assert_ptr_nonnull(strstr(unit, "CapabilityBoundingSet=CAP_SYS_PTRACE CAP_DAC_READ_SEARCH"));
    free(unit);
    free(out);
    /* process_vm_readv comes with @ipc, which @system-service includes. */
    rc = test_sh("systemd-analyze syscall-filter @system-service | grep -qw @ipc && "
            "systemd-analyze syscall-filter @ipc | grep -qw process_vm_readv", &out);
    ck_assert_msg(rc == 0, "process_vm_readv is not in @system-service here: %s", out);
    free(out);
    svc_fini(&e);
}
END_TEST

START_TEST(socket_activation_and_notify)
{
    struct svc e;
    svc_init(&e);
    /* The "systemd" side: a listening socket and a notify socket. */
    char path[108];
    snprintf(path, sizeof path, "%s/act.sock", e.dir);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sun, sizeof sun), 0);
    ck_assert_int_eq(listen(lfd, 16), 0);
    int nfd = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un nsun = { .sun_family = AF_UNIX };
    char abstract[64];
    int alen = snprintf(abstract, sizeof abstract, "pyheap-notify-%d", (int)getpid());
    memcpy(nsun.sun_path + 1, abstract, (size_t)alen);
    ck_assert_int_eq(bind(nfd, (struct sockaddr *)&nsun,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + alen)), 0);
    char bin[512];
    snprintf(bin, sizeof bin, "%s/pyheapd", test_builddir());
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (dup2(lfd, 3) < 0)
            _exit(126);
        if (lfd != 3)
            close(lfd);
        char v[32], n[80];
        snprintf(v, sizeof v, "%d", (int)getpid());
        snprintf(n, sizeof n, "@%s", abstract);
        setenv("LISTEN_PID", v, 1);
        setenv("LISTEN_FDS", "1", 1);
        setenv("NOTIFY_SOCKET", n, 1);
        int errfd = open(e.log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(errfd, 2);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* --socket names a path it must NOT bind: the passed socket wins */
        char other[160];
        snprintf(other, sizeof other, "%s/not-used.sock", e.dir);
        execl(bin, bin, "--socket", other, (char *)NULL);
        _exit(127);
    }
    close(lfd);
    /* READY=1 arrives */
    struct pollfd pf = { .fd = nfd, .events = POLLIN };
    ck_assert_msg(poll(&pf, 1, 20000) == 1, "no notification; log: %s", test_slurp(e.log));
    char msg[512];
    ssize_t n = recv(nfd, msg, sizeof msg - 1, 0);
    ck_assert_int_gt(n, 0);
    msg[n] = '\0';
    ck_assert_msg(strstr(msg, "READY=1") && strstr(msg, "STATUS="), "notification: %s", msg);
    /* It serves on the passed socket. */
    snprintf(e.sock, sizeof e.sock, "%s", path);
    json_t *j = svc_request(&e, "{\"cmd\":\"ping\"}");
    svc_expect_ok(j);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "daemon_pid")), pid);
    json_decref(j);
    char other[160];
    snprintf(other, sizeof other, "%s/not-used.sock", e.dir);
    ck_assert_int_ne(access(other, F_OK), 0);
    /* SIGTERM: STOPPING=1, exit 0, and the socket file is systemd's: kept. */
    kill(pid, SIGTERM);
    ck_assert_int_eq(test_wait_exit(pid, 20000), 0);
    ck_assert_int_eq(poll(&pf, 1, 5000), 1);
    n = recv(nfd, msg, sizeof msg - 1, 0);
    ck_assert_int_gt(n, 0);
    msg[n] = '\0';
    ck_assert_msg(strstr(msg, "STOPPING=1"), "notification: %s", msg);
    ck_assert_int_eq(access(path, F_OK), 0);
    char *log = test_slurp(e.log);
    ck_assert_msg(strstr(log, "socket activation"), "log: %s", log);
    free(log);
    close(nfd);
    svc_fini(&e);
}
END_TEST

START_TEST(foreign_listen_pid_and_journal_prefix)
{
    struct svc e;
    svc_init(&e);
    char bin[512];
    snprintf(bin, sizeof bin, "%s/pyheapd", test_builddir());
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int errfd = open(e.log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(errfd, 2);
        struct stat st;
        fstat(2, &st);
        char js[64];
        snprintf(js, sizeof js, "%llu:%llu", (unsigned long long)st.st_dev,
                 (unsigned long long)st.st_ino);
        setenv("JOURNAL_STREAM", js, 1);
        setenv("LISTEN_PID", "1", 1);   /* not us */
        setenv("LISTEN_FDS", "1", 1);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl(bin, bin, "--socket", e.sock, (char *)NULL);
        _exit(127);
    }
    e.daemon = pid;
    double end = test_now_ms() + 20000;
    int fd;
    while ((fd = test_connect(e.sock)) < 0) {
        ck_assert_msg(test_now_ms() < end, "did not bind its own socket: %s", test_slurp(e.log));
        test_sleep_ms(10);
    }
    close(fd);
    svc_daemon_stop(&e);
    char *log = test_slurp(e.log);
    /* Every line has a <N> prefix; the foreign LISTEN_PID is a warning (4). */
    ck_assert_msg(strncmp(log, "<6>", 3) == 0, "log: %s", log);
    ck_assert_msg(strstr(log, "<4>LISTEN_PID=1 is not us"), "log: %s", log);
    for (char *l = log; *l; l = strchr(l, '\n') + 1) {
        ck_assert_msg(l[0] == '<' && l[2] == '>', "line without a priority: %s", l);
        if (!strchr(l, '\n'))
            break;
    }
    free(log);
    svc_fini(&e);
}
END_TEST

START_TEST(make_install_destdir)
{
    struct svc e;
    svc_init(&e);
    char cmd[2048], *out;
#if defined(__SANITIZE_ADDRESS__)
    const char *san = "1";
#else
    const char *san = "0";
#endif
    snprintf(cmd, sizeof cmd,
             "make -s -C '%s' install BUILD='%s' SANITIZE=%s DESTDIR='%s/root' PREFIX=/usr",
             test_srcdir(), test_builddir(), san, e.dir);
    int rc = test_sh(cmd, &out);
    ck_assert_msg(rc == 0, "make install: %s", out);
    free(out);
    static const char *const files[] = {
        "usr/bin/pyheap", "usr/sbin/pyheapd", "usr/share/man/man1/pyheap.1",
        "usr/share/man/man8/pyheapd.8", "usr/lib/systemd/system/pyheapd.service",
        "usr/lib/systemd/system/pyheapd.socket", "usr/lib/sysusers.d/pyheapd.conf",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[512];
        snprintf(p, sizeof p, "%s/root/%s", e.dir, files[i]);
        ck_assert_msg(access(p, R_OK) == 0, "not installed: %s", files[i]);
    }
    char p[512];
    snprintf(p, sizeof p, "%s/root/usr/lib/systemd/system/pyheapd.service", e.dir);
    char *unit = test_slurp(p);
    ck_assert_ptr_nonnull(strstr(unit, "ExecStart=/usr/sbin/pyheapd "));
    ck_assert_ptr_null(strstr(unit, "@SBINDIR@"));
    free(unit);
    snprintf(cmd, sizeof cmd, "'%s/root/usr/sbin/pyheapd' --version", e.dir);
    ck_assert_int_eq(test_sh(cmd, &out), 0);
    ck_assert_ptr_nonnull(strstr(out, "pyheapd "));
    free(out);
    snprintf(cmd, sizeof cmd, "man --warnings -l '%s/root/usr/share/man/man8/pyheapd.8' "
                              "'%s/root/usr/share/man/man1/pyheap.1' 2>&1 >/dev/null",
             e.dir, e.dir);
    rc = test_sh(cmd, &out);
    ck_assert_msg(rc == 0 && out[0] == '\0', "man page warnings: %s", out);
    free(out);
    svc_fini(&e);
}
END_TEST

Suite *suite_service(void)
{
    Suite *s = suite_create("service");
    TCase *tc = tcase_create("service");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, units_verify_and_security);
    tcase_add_test(tc, socket_activation_and_notify);
    tcase_add_test(tc, foreign_listen_pid_and_journal_prefix);
    tcase_add_test(tc, make_install_destdir);
    suite_add_tcase(s, tc);
    return s;
}
