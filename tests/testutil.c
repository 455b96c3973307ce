#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

const char *test_srcdir(void)
{
    const char *s = getenv("PYHEAP_SRCDIR");
    return s && *s ? s : ".";
}

const char *test_builddir(void)
{
    const char *s = getenv("PYHEAP_BUILD");
    return s && *s ? s : "build";
}

double test_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void test_sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

char *test_slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    ck_assert_ptr_nonnull(buf);
    size_t r;
    while ((r = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += r;
        if (cap - len < 2) {
            cap *= 2;
            buf = realloc(buf, cap);
            ck_assert_ptr_nonnull(buf);
        }
    }
    buf[len] = '\0';
    fclose(f);
    return buf;
}

pid_t test_spawn(char *const argv[], const char *out, const char *err, uid_t uid, gid_t gid)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (out) {
            int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0666);
            if (fd < 0 || dup2(fd, 1) < 0)
                _exit(126);
            close(fd);
        }
        if (err) {
            int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0666);
            if (fd < 0 || dup2(fd, 2) < 0)
                _exit(126);
            close(fd);
        }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0)
            dup2(devnull, 0);
        if (uid != (uid_t)-1 &&
            (setgroups(0, NULL) < 0 || setgid(gid == (gid_t)-1 ? uid : gid) < 0 ||
             setuid(uid) < 0))
            _exit(125);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1)
            _exit(124);
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

int test_wait_exit(pid_t pid, int timeout_ms)
{
    double end = test_now_ms() + timeout_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (test_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            return -1;
        }
        test_sleep_ms(5);
    }
}

int test_connect(const char *path)
{
    struct sockaddr_un sun = { .sun_family = AF_UNIX };
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

void test_reap(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

pid_t test_spawn_ready(char *const argv[], bool quiet, int timeout_ms, int *ready_fd)
{
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        if (quiet) {
            int null = open("/dev/null", O_WRONLY);
            if (null >= 0)
                dup2(null, 2);
        }
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    char buf[16] = "";
    ck_assert_msg(poll(&pfd, 1, timeout_ms) == 1, "%s did not start", argv[0]);
    ck_assert_int_gt(read(p[0], buf, sizeof buf - 1), 0);
    ck_assert_msg(strncmp(buf, "ready", 5) == 0, "%s said %s", argv[0], buf);
    if (ready_fd)
        *ready_fd = p[0];
    return pid;
}

void test_rm_rf(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

int test_sh(const char *cmd, char **out)
{
    char full[4096];
    char tmp[] = "/tmp/pyheap-sh.XXXXXX";
    int fd = mkstemp(tmp);
    ck_assert_int_ge(fd, 0);
    close(fd);
    snprintf(full, sizeof full, "(%s) >%s 2>&1", cmd, tmp);
    int st = system(full);
    *out = test_slurp(tmp);
    unlink(tmp);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int test_capture(char *const argv[], char **out)
{
    char path[] = "/tmp/pyheap-capture.XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    pid_t pid = test_spawn(argv, path, NULL, (uid_t)-1, (gid_t)-1);
    int st = test_wait_exit(pid, 120000);
    *out = test_slurp(path);
    unlink(path);
    ck_assert_msg(st != -1, "%s timed out", argv[0]);
    return st;
}
