/* Helpers of the production-service suites (svcutil.h). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "svcutil.h"
#include "testutil.h"

void svc_init(struct svc *e)
{
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/pyheap-svc.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(e->dir));
    chmod(e->dir, 0755);
    snprintf(e->sock, sizeof e->sock, "%s/run/pyheapd.sock", e->dir);
    snprintf(e->log, sizeof e->log, "%s/pyheapd.log", e->dir);
    e->daemon = -1;
}

void svc_daemon_start(struct svc *e, const char *const *extra)
{
    char bin[512];
    snprintf(bin, sizeof bin, "%s/pyheapd", test_builddir());
    char *argv[40] = { bin, "--socket", e->sock };
    int argc = 3;
    for (int i = 0; extra && extra[i] && argc < 39; i++)
        argv[argc++] = (char *)extra[i];
    argv[argc] = NULL;
    e->daemon = test_spawn(argv, NULL, e->log, (uid_t)-1, (gid_t)-1);
    svc_daemon_wait(e);
}

void svc_daemon_wait(struct svc *e)
{
    double end = test_now_ms() + 20000;
    for (;;) {
        int fd = test_connect(e->sock);
        if (fd >= 0) {
            close(fd);
            return;
        }
        int st;
        if (waitpid(e->daemon, &st, WNOHANG) == e->daemon) {
            e->daemon = -1;
            ck_abort_msg("pyheapd exited during start-up: %s", test_slurp(e->log));
        }
        ck_assert_msg(test_now_ms() < end, "pyheapd did not start listening on %s", e->sock);
        test_sleep_ms(10);
    }
}

void svc_daemon_stop(struct svc *e)
{
    if (e->daemon <= 0)
        return;
    kill(e->daemon, SIGTERM);
    int st = test_wait_exit(e->daemon, 20000);
    e->daemon = -1;
    char *log = test_slurp(e->log);
    ck_assert_msg(st == 0, "pyheapd exited with %d after SIGTERM; log:\n%s", st, log);
    free(log);
}

void svc_fini(struct svc *e)
{
    svc_daemon_stop(e);
    test_rm_rf(e->dir);
}

void svc_target_start(struct svc *e, struct svc_target *t, const char *name,
                      const char *script, const char *arg, uid_t uid, gid_t gid)
{
    snprintf(t->dir, sizeof t->dir, "%s/%s", e->dir, name);
    ck_assert_int_eq(mkdir(t->dir, 0777), 0);
    chmod(t->dir, 0777);
    char path[512], errf[300];
    snprintf(path, sizeof path, "%s/tests/targets/%s", test_srcdir(), script);
    snprintf(errf, sizeof errf, "%s/stderr", t->dir);
    ck_assert_msg(access(SVC_PYTHON, X_OK) == 0, SVC_PYTHON " is missing: install python3.11");
    char *argv[] = { SVC_PYTHON, path, t->dir, (char *)arg, NULL };
    t->pid = test_spawn(argv, NULL, errf, uid, gid);
    char ready[300];
    snprintf(ready, sizeof ready, "%s/ready", t->dir);
    double end = test_now_ms() + 60000;
    while (access(ready, F_OK) < 0) {
        int st;
        if (waitpid(t->pid, &st, WNOHANG) == t->pid)
            ck_abort_msg("target %s exited during start-up: %s", script, test_slurp(errf));
        ck_assert_msg(test_now_ms() < end, "target %s did not become ready", script);
        test_sleep_ms(10);
    }
}

void svc_attach(struct svc *e, pid_t pid)
{
    svc_attach_every(e, pid, 0);
}

void svc_attach_every(struct svc *e, pid_t pid, double interval)
{
    char line[128];
    if (interval > 0)
        snprintf(line, sizeof line, "{\"cmd\":\"attach\",\"pid\":%d,\"interval\":%g}",
                 (int)pid, interval);
    else
        snprintf(line, sizeof line, "{\"cmd\":\"attach\",\"pid\":%d}", (int)pid);
    json_t *j = svc_request(e, line);
    svc_expect_ok(j);
    json_decref(j);
}

void svc_start_attached(struct svc *e, struct svc_target *t, const char *script,
                        const char *arg)
{
    svc_init(e);
    svc_daemon_start(e, NULL);
    svc_target_start(e, t, "t", script, arg, (uid_t)-1, (gid_t)-1);
    svc_attach(e, t->pid);
}

void svc_target_kill(struct svc_target *t)
{
    if (t->pid > 0) {
        kill(t->pid, SIGKILL);
        waitpid(t->pid, NULL, 0);
        t->pid = -1;
    }
}

long svc_target_counter(const struct svc_target *t)
{
    char path[300];
    snprintf(path, sizeof path, "%s/counter", t->dir);
    char *s = test_slurp(path);
    long v = strtol(s, NULL, 10);
    free(s);
    return v;
}

char svc_proc_state(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *s = test_slurp(path);
    char *p = strstr(s, "State:");
    char c = 0;
    if (p) {
        p += 6;
        while (*p == ' ' || *p == '\t')
            p++;
        c = *p;
    }
    free(s);
    return c;
}

void svc_conn_open(struct svc *e, struct svc_conn *c)
{
    c->fd = test_connect(e->sock);
    ck_assert_msg(c->fd >= 0, "cannot connect to %s: %s", e->sock, strerror(errno));
    struct timeval tv = { .tv_sec = 120 };
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    c->cap = 1 << 16;
    c->buf = malloc(c->cap);
    c->have = 0;
    ck_assert_ptr_nonnull(c->buf);
}

void svc_conn_close(struct svc_conn *c)
{
    close(c->fd);
    free(c->buf);
    c->buf = NULL;
}

void svc_send(struct svc_conn *c, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = send(c->fd, data, len, MSG_NOSIGNAL);
        ck_assert_msg(w > 0, "send: %s", strerror(errno));
        data += w;
        len -= (size_t)w;
    }
}

json_t *svc_reply(struct svc_conn *c)
{
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->have);
        if (nl) {
            json_error_t jerr;
            json_t *j = json_loadb(c->buf, (size_t)(nl - c->buf), 0, &jerr);
            ck_assert_msg(j != NULL, "reply is not JSON: %s", jerr.text);
            size_t used = (size_t)(nl - c->buf) + 1;
            memmove(c->buf, nl + 1, c->have - used);
            c->have -= used;
            return j;
        }
        if (c->have == c->cap) {
            c->cap *= 2;
            c->buf = realloc(c->buf, c->cap);
            ck_assert_ptr_nonnull(c->buf);
        }
        ssize_t n = recv(c->fd, c->buf + c->have, c->cap - c->have, 0);
        if (n < 0 && errno == ECONNRESET)
            n = 0;
        ck_assert_msg(n >= 0, "recv: %s", strerror(errno));
        if (n == 0) {
            ck_assert_msg(c->have == 0, "partial reply at EOF");
            return NULL;
        }
        c->have += (size_t)n;
    }
}

json_t *svc_call(struct svc_conn *c, const char *line)
{
    svc_send(c, line, strlen(line));
    svc_send(c, "\n", 1);
    json_t *j = svc_reply(c);
    ck_assert_msg(j != NULL, "no reply to %.200s", line);
    return j;
}

json_t *svc_request(struct svc *e, const char *line)
{
    struct svc_conn c;
    svc_conn_open(e, &c);
    json_t *j = svc_call(&c, line);
    svc_conn_close(&c);
    return j;
}

void svc_expect_error(json_t *j, const char *code)
{
    ck_assert_msg(json_is_false(json_object_get(j, "ok")), "expected an error reply");
    const char *c = json_string_value(json_object_get(j, "error"));
    const char *m = json_string_value(json_object_get(j, "message"));
    ck_assert_msg(c && strcmp(c, code) == 0, "error %s (%s), expected %s", c ? c : "(none)",
                  m ? m : "", code);
    ck_assert_msg(m && *m, "error reply without a message");
    json_decref(j);
}

void svc_expect_ok(const json_t *j)
{
    const char *m = json_string_value(json_object_get(j, "message"));
    ck_assert_msg(json_is_true(json_object_get(j, "ok")), "request failed: %s", m ? m : "?");
}

long long svc_type_count(const json_t *top, const char *name)
{
    const json_t *types = json_object_get(top, "types");
    for (size_t i = 0; i < json_array_size(types); i++) {
        const json_t *t = json_array_get(types, i);
        const char *n = json_string_value(json_object_get(t, "type"));
        if (n && strcmp(n, name) == 0)
            return (long long)json_integer_value(json_object_get(t, "count"));
    }
    return -1;
}

int svc_cli(struct svc *e, uid_t uid, gid_t gid, char **out, char **err, ...)
{
    static int ncalls;
    char bin[512];
    snprintf(bin, sizeof bin, "%s/pyheap", test_builddir());
    char *argv[32] = { bin, "--socket", e->sock };
    int argc = 3;
    va_list ap;
    va_start(ap, err);
    char *a;
    while ((a = va_arg(ap, char *)) != NULL && argc < 31)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    char o[256], r[256];
    int n = ncalls++;
    snprintf(o, sizeof o, "%s/cli-out.%d", e->dir, n);
    snprintf(r, sizeof r, "%s/cli-err.%d", e->dir, n);
    pid_t pid = test_spawn(argv, o, r, uid, gid);
    int st = test_wait_exit(pid, 120000);
    ck_assert_msg(st != -1, "pyheap timed out");
    char *so = test_slurp(o), *se = test_slurp(r);
    if (out)
        *out = so;
    else
        free(so);
    if (err)
        *err = se;
    else
        free(se);
    return st;
}
