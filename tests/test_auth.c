/* Authorization (daemon/auth.c): a client may inspect a process only if the
 * kernel would let it ptrace it: same real/effective/saved uid and gid, a
 * dumpable target — or root. Clients run as uid 65534 (nobody) in forked
 * children; targets run as 65534, as root, as 65534 with another gid, and
 * as a non-dumpable 65534 process. Also the socket's mode and group. */
#include <check.h>
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "svcutil.h"
#include "testutil.h"

/* pyheap attach PID as nobody: exit status; *err gets stderr. */
static int attach_as_nobody(struct svc *e, pid_t pid, char **err)
{
    char p[32];
    snprintf(p, sizeof p, "%d", (int)pid);
    char *out;
    int rc = svc_cli(e, SVC_NOBODY, SVC_NOBODY, &out, err, "attach", p, NULL);
    free(out);
    return rc;
}

START_TEST(nonroot_own_vs_other)
{
    ck_assert_msg(geteuid() == 0, "the authorization tests need root");
    struct svc e;
    svc_init(&e);
    svc_daemon_start(&e, NULL);
    struct svc_target mine, roots;
    svc_target_start(&e, &mine, "mine", "counter_target.py", "0", SVC_NOBODY, SVC_NOBODY);
    svc_target_start(&e, &roots, "roots", "counter_target.py", "0", (uid_t)-1, (gid_t)-1);
    char *err;
    /* Another uid's process: refused. */
    ck_assert_int_ne(attach_as_nobody(&e, roots.pid, &err), 0);
    ck_assert_msg(strstr(err, "uid") && strstr(err, "ptrace"), "stderr: %s", err);
    free(err);
    /* Its own: allowed, and it can scan it. */
    ck_assert_int_eq(attach_as_nobody(&e, mine.pid, &err), 0);
    free(err);
    char p[32];
    snprintf(p, sizeof p, "%d", (int)mine.pid);
    char *out;
    ck_assert_int_eq(svc_cli(&e, SVC_NOBODY, SVC_NOBODY, &out, &err, "top", "-p", p, "-n", "3",
                             NULL), 0);
    ck_assert_ptr_nonnull(strstr(out, "total:"));
    free(out), free(err);
    /* root attaches the root process; nobody may neither scan nor detach
     * nor see it. */
    char rp[32];
    snprintf(rp, sizeof rp, "%d", (int)roots.pid);
    ck_assert_int_eq(svc_cli(&e, (uid_t)-1, (gid_t)-1, NULL, NULL, "attach", rp, NULL), 0);
    ck_assert_int_ne(svc_cli(&e, SVC_NOBODY, SVC_NOBODY, &out, &err, "top", "-p", rp, NULL), 0);
    ck_assert_msg(strstr(err, "uid"), "stderr: %s", err);
    free(out), free(err);
    ck_assert_int_ne(svc_cli(&e, SVC_NOBODY, SVC_NOBODY, &out, &err, "detach", rp, NULL), 0);
    free(out), free(err);
    ck_assert_int_eq(svc_cli(&e, SVC_NOBODY, SVC_NOBODY, &out, &err, "ps", "--json", NULL), 0);
    ck_assert_msg(strstr(out, rp) == NULL, "nobody sees root's target: %s", out);
    free(out), free(err);
    /* freeze is authorized like any scan */
    ck_assert_int_ne(svc_cli(&e, SVC_NOBODY, SVC_NOBODY, &out, &err, "top", "--freeze", "-p", rp,
                             NULL), 0);
    free(out), free(err);
    char st = svc_proc_state(roots.pid);
    ck_assert_msg(st != 't' && st != 'T', "root's target stopped by nobody's request");
    svc_target_kill(&mine);
    svc_target_kill(&roots);
    svc_fini(&e);
}
END_TEST

START_TEST(nonroot_gid_mismatch_and_nondumpable)
{
    ck_assert_msg(geteuid() == 0, "the authorization tests need root");
    struct svc e;
    svc_init(&e);
    svc_daemon_start(&e, NULL);
    /* uid nobody, gid root: the kernel refuses nobody/nogroup to ptrace it. */
    struct svc_target g, nd;
    svc_target_start(&e, &g, "g", "counter_target.py", "0", SVC_NOBODY, 0);
    char *err;
    ck_assert_int_ne(attach_as_nobody(&e, g.pid, &err), 0);
    ck_assert_msg(strstr(err, "gid"), "stderr: %s", err);
    free(err);
    /* A non-dumpable process of nobody's (prctl(PR_SET_DUMPABLE, 0)). */
    svc_target_start(&e, &nd, "nd", "nondumpable_target.py", NULL, SVC_NOBODY, SVC_NOBODY);
    struct stat sb;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)nd.pid);
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_msg(sb.st_uid == 0, "target did not become non-dumpable");
    ck_assert_int_ne(attach_as_nobody(&e, nd.pid, &err), 0);
    ck_assert_msg(strstr(err, "dumpable"), "stderr: %s", err);
    free(err);
    /* root may */
    char p[32];
    snprintf(p, sizeof p, "%d", (int)nd.pid);
    ck_assert_int_eq(svc_cli(&e, (uid_t)-1, (gid_t)-1, NULL, NULL, "attach", p, NULL), 0);
    svc_target_kill(&g);
    svc_target_kill(&nd);
    svc_fini(&e);
}
END_TEST

/* Can UID/GID connect to PATH? 1 yes, 0 EACCES, -1 other error. */
static int can_connect_as(const char *path, uid_t uid, gid_t gid)
{
    pid_t c = fork();
    ck_assert_int_ge(c, 0);
    if (c == 0) {
        if (setgroups(0, NULL) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
            _exit(3);
        int fd = test_connect(path);
        if (fd >= 0)
            _exit(1);
        _exit(errno == EACCES ? 0 : 2);
    }
    int rc = test_wait_exit(c, 10000);
    return rc == 1 ? 1 : rc == 0 ? 0 : -1;
}

START_TEST(socket_mode_and_group)
{
    ck_assert_msg(geteuid() == 0, "the authorization tests need root");
    struct group *gr = getgrgid(SVC_NOBODY);
    ck_assert_msg(gr != NULL, "no group with gid 65534 (nogroup)");
    struct svc e;
    svc_init(&e);
    const char *opts[] = { "--socket-mode", "0660", "--socket-group", gr->gr_name, NULL };
    svc_daemon_start(&e, opts);
    struct stat sb;
    ck_assert_int_eq(stat(e.sock, &sb), 0);
    ck_assert_msg((sb.st_mode & 07777) == 0660, "mode %o", (unsigned)(sb.st_mode & 07777));
    ck_assert_int_eq(sb.st_gid, SVC_NOBODY);
    /* A member of the group may connect; another user may not. */
    ck_assert_int_eq(can_connect_as(e.sock, SVC_NOBODY, SVC_NOBODY), 1);
    ck_assert_int_eq(can_connect_as(e.sock, 1, 1), 0);
    svc_fini(&e);

    /* The default as root: 0666 (every request is authorized anyway). */
    svc_init(&e);
    svc_daemon_start(&e, NULL);
    ck_assert_int_eq(stat(e.sock, &sb), 0);
    ck_assert_uint_eq(sb.st_mode & 07777, 0666);
    ck_assert_int_eq(can_connect_as(e.sock, 1, 1), 1);
    svc_fini(&e);

    /* Bad values are refused at start. */
    char bin[512];
    snprintf(bin, sizeof bin, "%s/pyheapd", test_builddir());
    char *bad1[] = { bin, "--socket-mode", "999", NULL };
    char *bad2[] = { bin, "--socket-group", "no-such-group-pyheap", NULL };
    ck_assert_int_eq(test_wait_exit(test_spawn(bad1, "/dev/null", "/dev/null", (uid_t)-1,
                                             (gid_t)-1), 10000), 2);
    ck_assert_int_eq(test_wait_exit(test_spawn(bad2, "/dev/null", "/dev/null", (uid_t)-1,
                                             (gid_t)-1), 10000), 2);
}
END_TEST

/* In a child: become nobody keeping only CAP_SYS_PTRACE (effective if
 * WITH_CAP), ask the daemon to attach PID; exit 0 if allowed, 1 if refused
 * with "permission", 2+ on setup trouble. */
static int attach_as_nobody_with_cap(struct svc *e, pid_t pid, int with_cap)
{
    pid_t c = fork();
    ck_assert_int_ge(c, 0);
    if (c == 0) {
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || setgroups(0, NULL) < 0 ||
            setgid(SVC_NOBODY) < 0 || setuid(SVC_NOBODY) < 0)
            _exit(3);
        struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct d[2];
        memset(d, 0, sizeof d);
        d[0].permitted = 1u << CAP_SYS_PTRACE;
        d[0].effective = with_cap ? 1u << CAP_SYS_PTRACE : 0;
        if (syscall(SYS_capset, &h, d) < 0)
            _exit(4);
        int fd = test_connect(e->sock);
        if (fd < 0)
            _exit(5);
        char line[96];
        int n = snprintf(line, sizeof line, "{\"cmd\":\"attach\",\"pid\":%d}\n", (int)pid);
        if (write(fd, line, (size_t)n) != n)
            _exit(6);
        char buf[4096];
        ssize_t r = read(fd, buf, sizeof buf - 1);
        if (r <= 0)
            _exit(7);
        buf[r] = '\0';
        if (strstr(buf, "\"ok\":true"))
            _exit(0);
        _exit(strstr(buf, "\"permission\"") ? 1 : 8);
    }
    return test_wait_exit(c, 20000);
}

START_TEST(cap_sys_ptrace_peer)
{
    ck_assert_msg(geteuid() == 0, "the authorization tests need root");
    struct svc e;
    svc_init(&e);
    svc_daemon_start(&e, NULL);
    struct svc_target roots;
    svc_target_start(&e, &roots, "roots", "counter_target.py", "0", (uid_t)-1, (gid_t)-1);
    /* nobody without the capability in its effective set: refused */
    ck_assert_int_eq(attach_as_nobody_with_cap(&e, roots.pid, 0), 1);
    /* nobody with CAP_SYS_PTRACE effective: allowed, like ptrace itself */
    ck_assert_int_eq(attach_as_nobody_with_cap(&e, roots.pid, 1), 0);
    svc_target_kill(&roots);
    svc_fini(&e);
}
END_TEST

Suite *suite_auth(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("auth");
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, nonroot_own_vs_other);
    tcase_add_test(tc, nonroot_gid_mismatch_and_nondumpable);
    tcase_add_test(tc, socket_mode_and_group);
    tcase_add_test(tc, cap_sys_ptrace_peer);
    suite_add_tcase(s, tc);
    return s;
}
