/* Attaching to real processes: Debian's python3.11 and python3.11d, pyenv's
 * shared-libpython 3.11.7 (where present), and the error cases (no such
 * process, not Python, unsupported version, exited, not permitted, deleted
 * executable). Offsets validation is checked against live targets too. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

#define PY "/usr/bin/python3.11"
#define PYD "/usr/bin/python3.11d"
#define PYENV "/root/.pyenv/versions"
#define PYENV311 PYENV "/3.11.7/bin/python3.11"

static const char script[] =
    "import sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)";

/* Start PROG (a Python with the script above, or any program with ARG) and
 * wait until it is running: Pythons say "ready" once initialized. The
 * child dies with the test process (PR_SET_PDEATHSIG). */
static pid_t spawn_ready(const char *prog, const char *arg, bool ready)
{
    ck_assert_msg(access(prog, X_OK) == 0, "%s is missing: install it", prog);
    char *argv[] = { (char *)prog, (char *)(arg ? arg : "-c"), (char *)(arg ? NULL : script),
                     NULL };
    if (ready)
        return test_spawn_ready(argv, true, 20000, NULL);
    pid_t pid = test_spawn(argv, NULL, "/dev/null", (uid_t)-1, (gid_t)-1);
    /* Wait for the exec to have happened. */
    char exe[256], link[64];
    snprintf(link, sizeof link, "/proc/%d/exe", (int)pid);
    for (int i = 0; i < 200; i++) {
        ssize_t n = readlink(link, exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = '\0';
            const char *b = strrchr(prog, '/');
            if (strstr(exe, b ? b + 1 : prog))
                break;
        }
        usleep(10000);
    }
    return pid;
}

/* A Python running the script (ARG NULL), or PROG ARG without a handshake. */
static pid_t spawn(const char *prog, const char *arg)
{
    return spawn_ready(prog, arg, arg == NULL);
}

static bool ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && strcmp(s + a - b, tail) == 0;
}

static pyheap_target *open_ok(pid_t pid, unsigned allowed, double *ms)
{
    pyheap_open_opts o = {.allowed_sources = allowed};
    pyheap_target *t = NULL;
    pyheap_error err = {0};
    double t0 = test_now_ms();
    int rc = pyheap_target_open(pid, &o, &t, &err);
    if (ms)
        *ms = test_now_ms() - t0;
    ck_assert_msg(rc == 0, "open %d: %s: %s", (int)pid, pyheap_errcode_name(err.code),
                  err.msg);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(pyheap_target_pid(t), pid);
    ck_assert_int_eq(pyheap_target_check_alive(t, &err), 0);
    return t;
}

static pyheap_error open_fail(pid_t pid, unsigned allowed)
{
    pyheap_open_opts o = {.allowed_sources = allowed};
    pyheap_target *t = NULL;
    pyheap_error err = {0};
    ck_assert_int_eq(pyheap_target_open(pid, &o, &t, &err), -1);
    ck_assert_ptr_null(t);
    ck_assert_int_ne(err.code, PYHEAP_OK);
    ck_assert_msg(err.msg[0] != '\0', "no message");
    return err;
}

#define ONLY(src) (1u << (src))

/* T's image (pyheap_target_in_image) is the interpreter module's file
 * mappings: it holds the static types and _PyRuntime, and no anonymous
 * mapping (the heap), stack or other file (OTHER, e.g. the launcher of a
 * shared libpython; NULL for none) does. */
static void check_image(const pyheap_target *t, const char *other)
{
    ck_assert_uint_ge(t->nimage, 2);
    ck_assert(pyheap_target_in_image(t, t->wk.dict, 8));
    ck_assert(pyheap_target_in_image(t, t->wk.type, 8));
    ck_assert(pyheap_target_in_image(t, t->runtime_addr, 8));
    uint64_t last_end = 0;
    for (size_t i = 0; i < t->nimage; i++) {
        ck_assert_uint_lt(t->image[i].start, t->image[i].end);
        if (t->image[i].end > last_end)
            last_end = t->image[i].end;
    }
    /* a range is in the image only whole */
    ck_assert(!pyheap_target_in_image(t, last_end - 8, 16));
    char path[64], line[4096];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)t->pid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t anon = 0, others = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long long lo, hi;
        char perms[8];
        int name_at = 0;
        if (sscanf(line, "%llx-%llx %7s %*s %*s %*s %n", &lo, &hi, perms, &name_at) < 3 ||
            name_at == 0)
            continue;
        const char *name = line + name_at;
        /* (%n after the skipped fields stands past the newline when the
         * mapping has no name) */
        bool is_anon = *name == '\0' || *name == '\n' || *name == '[';
        bool is_other = other && strncmp(name, other, strlen(other)) == 0 &&
                        name[strlen(other)] == '\n';
        if (!is_anon && !is_other)
            continue;
        anon += is_anon;
        others += is_other;
        uint64_t mid = (lo + (hi - lo) / 2) & ~(uint64_t)7;
        ck_assert_msg(!pyheap_target_in_image(t, lo, 8) && !pyheap_target_in_image(t, mid, 8) &&
                          !pyheap_target_in_image(t, hi - 8, 8),
                      "in the image: %s", line);
    }
    fclose(f);
    ck_assert_uint_gt(anon, 0);
    if (other)
        ck_assert_uint_gt(others, 0);
}

/* The installed debug file of the release binary, if any. */
static bool release_debug_file_present(char *path, size_t len)
{
    FILE *f = popen("LC_ALL=C readelf -n " PY " 2>/dev/null | sed -n 's/.*Build ID: //p'", "r");
    ck_assert_ptr_nonnull(f);
    char id[128] = "";
    if (!fgets(id, sizeof id, f))
        id[0] = '\0';
    pclose(f);
    id[strcspn(id, "\n")] = '\0';
    ck_assert_msg(strlen(id) == 40, "no build-id read from " PY " (binutils missing?)");
    snprintf(path, len, "/usr/lib/debug/.build-id/%.2s/%s.debug", id, id + 2);
    return access(path, R_OK) == 0;
}

START_TEST(release_build)
{
    pid_t pid = spawn(PY, NULL);
    double ms;
    pyheap_target *t = open_ok(pid, 0, &ms);
    ck_assert_str_eq(pyheap_target_version(t), "3.11.2");
    ck_assert_str_eq(pyheap_target_module(t), PY);
    ck_assert_uint_eq(t->module_bias, 0); /* ET_EXEC */
    ck_assert_uint_ne(t->runtime_addr, 0);
    char dbg[256];
    /* python3.11-dbg ships the release binary's DWARF under its build-id;
     * with it installed DWARF comes first, else the built-in table. */
    if (release_debug_file_present(dbg, sizeof dbg)) {
        ck_assert_int_eq(pyheap_target_offsets_source(t), PYHEAP_OFFSETS_DWARF);
        ck_assert_msg(strstr(pyheap_target_offsets_detail(t), dbg),
                      "%s", pyheap_target_offsets_detail(t));
    } else {
        ck_assert_int_eq(pyheap_target_offsets_source(t), PYHEAP_OFFSETS_TABLE);
    }
    fprintf(stderr, "attach: %s default (%s) in %.1f ms\n", PY,
            pyheap_offsets_source_name(pyheap_target_offsets_source(t)), ms);
    pyheap_target_free(t);

    /* The built-in table, forced, validates against the same process. */
    t = open_ok(pid, ONLY(PYHEAP_OFFSETS_TABLE), &ms);
    ck_assert_int_eq(pyheap_target_offsets_source(t), PYHEAP_OFFSETS_TABLE);
    ck_assert_str_eq(pyheap_offsets_source_name(pyheap_target_offsets_source(t)), "table");
    ck_assert_str_eq(pyheap_target_offsets_detail(t),
                     "built-in table for 3.11 (generated from 3.11.2 headers)");
    ck_assert_str_eq(pyheap_target_version(t), "3.11.2");
    fprintf(stderr, "attach: %s table in %.1f ms\n", PY, ms);
    /* Constants and well-known types are filled. */
    ck_assert_uint_eq(t->k.tpflags_have_gc, 1u << 14);
    ck_assert_int_eq(t->k.managed_dict_offset, -24);
    ck_assert_uint_ne(t->wk.type, 0);
    ck_assert_uint_ne(t->wk.none_type, 0);
    ck_assert_uint_ne(t->wk.list, t->wk.tuple);
    check_image(t, NULL);
    pyheap_target_free(t);
    test_reap(pid);
}
END_TEST

START_TEST(debug_build_uses_dwarf)
{
    pid_t pid = spawn(PYD, NULL);
    double ms;
    pyheap_target *t = open_ok(pid, 0, &ms);
    ck_assert_str_eq(pyheap_target_version(t), "3.11.2");
    ck_assert_str_eq(pyheap_target_module(t), PYD);
    ck_assert_int_eq(pyheap_target_offsets_source(t), PYHEAP_OFFSETS_DWARF);
    ck_assert_str_eq(pyheap_offsets_source_name(PYHEAP_OFFSETS_DWARF), "dwarf");
    ck_assert_str_eq(pyheap_target_offsets_detail(t), "DWARF from " PYD);
    fprintf(stderr, "attach: %s dwarf in %.1f ms\n", PYD, ms);
    ck_assert_msg(ms < 2000, "attach took %.0f ms", ms);
    pyheap_target_free(t);

    /* DWARF only: same result; debug_offsets only: 3.11 has none. */
    t = open_ok(pid, ONLY(PYHEAP_OFFSETS_DWARF), NULL);
    ck_assert_int_eq(pyheap_target_offsets_source(t), PYHEAP_OFFSETS_DWARF);
    pyheap_target_free(t);
    pyheap_error err = open_fail(pid, ONLY(PYHEAP_OFFSETS_DEBUG_OFFSETS));
    ck_assert_int_eq(err.code, PYHEAP_E_OFFSETS);
    ck_assert_msg(strstr(err.msg, "_Py_DebugOffsets"), "%s", err.msg);
    test_reap(pid);
}
END_TEST

START_TEST(pyenv_shared_libpython)
{
    if (access(PYENV311, X_OK) != 0) {
        fprintf(stderr, "SKIP: %s not present: pyenv 3.11.7 case not run\n", PYENV311);
        return;
    }
    pid_t pid = spawn(PYENV311, NULL);
    double ms;
    pyheap_target *t = open_ok(pid, 0, &ms);
    ck_assert_str_eq(pyheap_target_version(t), "3.11.7");
    ck_assert_msg(ends_with(pyheap_target_module(t), "/libpython3.11.so.1.0"), "%s",
                  pyheap_target_module(t));
    ck_assert_uint_ne(t->module_bias, 0);
    ck_assert_uint_eq(t->module_bias & 0xfff, 0);
    ck_assert_uint_gt(t->runtime_addr, t->module_bias);
    ck_assert_int_eq(pyheap_target_offsets_source(t), PYHEAP_OFFSETS_DWARF);
    ck_assert_msg(strstr(pyheap_target_offsets_detail(t), "libpython3.11.so.1.0"), "%s",
                  pyheap_target_offsets_detail(t));
    fprintf(stderr, "attach: %s dwarf in %.1f ms\n", PYENV311, ms);
    ck_assert_msg(ms < 2000, "attach took %.0f ms", ms);
    pyheap_target_free(t);

    t = open_ok(pid, ONLY(PYHEAP_OFFSETS_TABLE), &ms);
    ck_assert_int_eq(pyheap_target_offsets_source(t), PYHEAP_OFFSETS_TABLE);
    ck_assert_str_eq(pyheap_target_version(t), "3.11.7");
    check_image(t, PYENV311);
    pyheap_target_free(t);
    test_reap(pid);
}
END_TEST

START_TEST(no_such_process)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);
    ck_assert_int_eq(kill(pid, 0), -1);
    ck_assert_int_eq(errno, ESRCH);
    pyheap_error err = open_fail(pid, 0);
    ck_assert_int_eq(err.code, PYHEAP_E_NOPROC);
    ck_assert_str_eq(pyheap_errcode_name(err.code), "no_process");
    char want[32];
    snprintf(want, sizeof want, "%d", (int)pid);
    ck_assert_msg(strstr(err.msg, want), "%s", err.msg);
    err = open_fail(0, 0);
    ck_assert_int_eq(err.code, PYHEAP_E_INVAL);
}
END_TEST

START_TEST(not_python)
{
    pid_t pid = spawn("/bin/sleep", "60");
    pyheap_error err = open_fail(pid, 0);
    ck_assert_int_eq(err.code, PYHEAP_E_NOTPYTHON);
    char want[64];
    snprintf(want, sizeof want, "process %d (", (int)pid);
    ck_assert_msg(strstr(err.msg, want) && strstr(err.msg, "sleep") &&
                  strstr(err.msg, "not a CPython process"), "%s", err.msg);
    test_reap(pid);
}
END_TEST

START_TEST(unsupported_versions)
{
    /* Older ones lack _PyRuntime (< 3.7) or Py_Version (< 3.11): the
     * version then comes from the library name and its PY_VERSION string. */
    const char *const vers[] = {"2.7.18", "3.6.15", "3.7.16", "3.8.18", "3.9.18",
                                "3.10.13", "3.12.1"};
    int ran = 0;
    for (size_t i = 0; i < sizeof vers / sizeof vers[0]; i++) {
        char prog[256];
        int mm = (int)(strchr(strchr(vers[i], '.') + 1, '.') - vers[i]);
        snprintf(prog, sizeof prog, PYENV "/%s/bin/python%.*s", vers[i], mm, vers[i]);
        if (access(prog, X_OK) != 0) {
            fprintf(stderr, "SKIP: %s not present\n", prog);
            continue;
        }
        pid_t pid = spawn(prog, NULL);
        pyheap_error err = open_fail(pid, 0);
        ck_assert_msg(err.code == PYHEAP_E_UNSUPPORTED, "%s: %s", prog, err.msg);
        char want[64];
        snprintf(want, sizeof want, "Python %s (module ", vers[i]);
        ck_assert_msg(strstr(err.msg, want) && strstr(err.msg, "supports 3.11, 3.13"),
                      "%s", err.msg);
        fprintf(stderr, "unsupported: %s\n", err.msg);
        test_reap(pid);
        ran++;
    }
    if (ran == 0)
        fprintf(stderr, "SKIP: no other pyenv Python present\n");
}
END_TEST

/* Two modules define _PyRuntime: pyenv's 3.13.0 running, with pyenv's
 * libpython3.11 loaded by ctypes but never initialized (mapped below it, so
 * tried first). The one whose offsets validate is kept; with 3.12.1 running
 * instead, the refusal names 3.12, not the idle 3.11 library. */
START_TEST(second_libpython_is_skipped)
{
    const char *lib311 = PYENV "/3.11.7/lib/libpython3.11.so.1.0";
    const char *const progs[] = {PYENV "/3.13.0/bin/python3.13",
                                 PYENV "/3.12.1/bin/python3.12"};
    if (access(lib311, R_OK) != 0 || access(progs[0], X_OK) != 0 ||
        access(progs[1], X_OK) != 0) {
        fprintf(stderr, "SKIP: pyenv 3.11.7, 3.12.1 or 3.13.0 not present\n");
        return;
    }
    char code[512];
    snprintf(code, sizeof code, "import ctypes, sys, time; ctypes.CDLL('%s'); "
             "sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(60)", lib311);
    for (int i = 0; i < 2; i++) {
        char *argv[] = { (char *)progs[i], "-c", code, NULL };
        int fd;
        pid_t pid = test_spawn_ready(argv, false, 20000, &fd);
        close(fd);
        if (i == 0) {
            pyheap_target *t = open_ok(pid, 0, NULL);
            ck_assert_str_eq(pyheap_target_version(t), "3.13.0");
            ck_assert_msg(strstr(pyheap_target_module(t), "libpython3.13"), "%s",
                          pyheap_target_module(t));
            pyheap_target_free(t);
        } else {
            pyheap_error err = open_fail(pid, 0);
            ck_assert_msg(err.code == PYHEAP_E_UNSUPPORTED && strstr(err.msg, "3.12.1"),
                          "%s", err.msg);
        }
        test_reap(pid);
    }
}
END_TEST

START_TEST(exited_target_is_gone)
{
    pid_t pid = spawn(PY, NULL);
    pyheap_target *t = open_ok(pid, ONLY(PYHEAP_OFFSETS_TABLE), NULL);
    pyheap_error err = {0};
    ck_assert_int_eq(pyheap_target_check_alive(t, &err), 0);
    kill(pid, SIGKILL);
    /* Not reaped yet: a zombie is gone too. */
    int rc = 0;
    for (int i = 0; i < 200 && rc == 0; i++) {
        rc = pyheap_target_check_alive(t, &err);
        if (rc == 0)
            usleep(10000);
    }
    ck_assert_int_eq(rc, -1);
    ck_assert_int_eq(err.code, PYHEAP_E_GONE);
    waitpid(pid, NULL, 0);
    memset(&err, 0, sizeof err);
    ck_assert_int_eq(pyheap_target_check_alive(t, &err), -1);
    ck_assert_int_eq(err.code, PYHEAP_E_GONE);
    ck_assert_str_eq(pyheap_errcode_name(err.code), "gone");
    pyheap_target_free(t);
    pyheap_target_free(NULL);
}
END_TEST

START_TEST(not_permitted)
{
    pid_t target = spawn(PY, NULL);
    int p[2];
    ck_assert_int_eq(pipe(p), 0);
    pid_t c = fork();
    ck_assert_int_ge(c, 0);
    if (c == 0) {
        close(p[0]);
        if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
            dprintf(p[1], "setuid failed: %s", strerror(errno));
            _exit(2);
        }
        pyheap_target *t = NULL;
        pyheap_error err = {0};
        int rc = pyheap_target_open(target, NULL, &t, &err);
        dprintf(p[1], "%d %d %s", rc, (int)err.code, err.msg);
        pyheap_target_free(t);
        _exit(0);
    }
    close(p[1]);
    char buf[1024] = "";
    size_t got = 0;
    ssize_t r;
    while ((r = read(p[0], buf + got, sizeof buf - 1 - got)) > 0)
        got += (size_t)r;
    close(p[0]);
    int st;
    waitpid(c, &st, 0);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s", buf);
    int rc = 0, code = 0, n = 0;
    ck_assert_int_eq(sscanf(buf, "%d %d %n", &rc, &code, &n), 2);
    ck_assert_msg(rc == -1 && code == PYHEAP_E_PERM, "got rc %d code %d: %s", rc, code, buf + n);
    ck_assert_msg(strstr(buf, "ptrace_scope") && strstr(buf, "CAP_SYS_PTRACE"), "%s", buf);
    test_reap(target);
}
END_TEST

START_TEST(deleted_executable)
{
    char dir[] = "/tmp/pyheap-target-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char prog[64], cmd[256];
    snprintf(prog, sizeof prog, "%s/python3.11", dir);
    snprintf(cmd, sizeof cmd, "cp " PY " '%s'", prog);
    ck_assert_int_eq(system(cmd), 0);
    pid_t pid = spawn(prog, NULL);
    ck_assert_int_eq(unlink(prog), 0);
    ck_assert_int_eq(rmdir(dir), 0);
    /* The file is gone: pyheap reads it through /proc/PID/exe. */
    pyheap_target *t = open_ok(pid, 0, NULL);
    ck_assert_str_eq(pyheap_target_module(t), prog);
    ck_assert_str_eq(pyheap_target_version(t), "3.11.2");
    pyheap_target_free(t);
    test_reap(pid);
}
END_TEST

/* pyheap_offsets_validate catches wrong offsets and names the check. */
START_TEST(validation_rejects_wrong_offsets)
{
    pid_t pid = spawn(PY, NULL);
    pyheap_target *t = open_ok(pid, ONLY(PYHEAP_OFFSETS_TABLE), NULL);
    const struct pyheap_offsets good = t->off;
    pyheap_error err = {0};
    ck_assert_int_eq(pyheap_offsets_validate(t, &err), 0);

    struct {
        size_t *field;
        size_t value;
        const char *expect;
    } cases[] = {
        {&t->off.ob_type, 0, "PyType_Type.ob_type"},
        {&t->off.tp_name, 32, "tp_name"},
        {&t->off.tp_basicsize, 48, "tp_basicsize"},
        {&t->off.runtime_interpreters_head, 8, "interpreters.head"},
        {&t->off.interp_threads_head, 24, "thread"},
        {&t->off.tstate_interp, 24, "interp"},
        {&t->off.interp_gc, 640 + 4096, "GC generation"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        t->off = good;
        *cases[i].field = cases[i].value;
        memset(&err, 0, sizeof err);
        ck_assert_msg(pyheap_offsets_validate(t, &err) == -1, "case %zu (%s) passed",
                      i, cases[i].expect);
        ck_assert_msg(err.code == PYHEAP_E_OFFSETS, "case %zu: %s", i, err.msg);
        ck_assert_msg(strstr(err.msg, cases[i].expect), "case %zu: %s", i, err.msg);
        ck_assert_msg(strstr(err.msg, "built-in table for 3.11"), "%s", err.msg);
    }
    t->off = good;
    ck_assert_int_eq(pyheap_offsets_validate(t, &err), 0);
    pyheap_target_free(t);
    test_reap(pid);
}
END_TEST

/* The command name in /proc/PID/stat may hold ") (": fields are parsed
 * after the last ')'. */
START_TEST(odd_command_name)
{
    char dir[] = "/tmp/pyheap-comm-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char link[96];
    snprintf(link, sizeof link, "%s/p) S 1 (x", dir);
    ck_assert_int_eq(symlink(PY, link), 0);
    pid_t pid = spawn(link, NULL);
    char statp[64], buf[512];
    snprintf(statp, sizeof statp, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(statp, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(buf, sizeof buf, f));
    fclose(f);
    ck_assert_msg(strstr(buf, "(p) S 1 (x)"), "comm not as planned: %s", buf);
    pyheap_target *t = open_ok(pid, ONLY(PYHEAP_OFFSETS_TABLE), NULL);
    ck_assert_str_eq(pyheap_target_version(t), "3.11.2");
    /* The start time is field 22 counted after the real ')'. */
    const char *c = strrchr(buf, ')') + 2; /* field 3 */
    for (int k = 3; k < 22; k++) {
        c = strchr(c, ' ');
        ck_assert_ptr_nonnull(c);
        c++;
    }
    unsigned long long want = strtoull(c, NULL, 10);
    ck_assert_uint_gt(want, 0);
    ck_assert_uint_eq(t->start_time, want);
    pyheap_target_free(t);
    test_reap(pid);
    ck_assert_int_eq(unlink(link), 0);
    ck_assert_int_eq(rmdir(dir), 0);
}
END_TEST

/* A process that calls exec after we opened it is no longer our target. */
START_TEST(exec_is_gone)
{
    ck_assert_msg(access(PY, X_OK) == 0, "install python3.11");
    char *argv[] = { PY, "-c",
                     "import os, sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); "
                     "time.sleep(1.0); os.execv('/bin/sleep', ['sleep', '60'])",
                     NULL };
    pid_t pid = test_spawn_ready(argv, false, 20000, NULL);
    pyheap_target *t = open_ok(pid, ONLY(PYHEAP_OFFSETS_TABLE), NULL);
    pyheap_error err = {0};
    int rc = 0;
    for (int i = 0; i < 500 && rc == 0; i++) {
        rc = pyheap_target_check_alive(t, &err);
        if (rc == 0)
            usleep(10000);
    }
    ck_assert_int_eq(rc, -1);
    ck_assert_int_eq(err.code, PYHEAP_E_GONE);
    ck_assert_msg(strstr(err.msg, "exec") && strstr(err.msg, "sleep"), "%s", err.msg);
    pyheap_target_free(t);
    test_reap(pid);
}
END_TEST

/* A C program linked with Debian's shared libpython3.11: before
 * Py_Initialize it is "not Python (yet)"; after, it attaches like python. */
static const char embed_src[] =
    "#include <Python.h>\n"
    "#include <stdio.h>\n"
    "#include <string.h>\n"
    "#include <unistd.h>\n"
    "int main(int argc, char **argv) {\n"
    "  if (argc > 1 && strcmp(argv[1], \"init\") == 0) Py_Initialize();\n"
    "  fputs(\"ready\\n\", stdout); fflush(stdout); sleep(60); return 0;\n"
    "}\n";

START_TEST(embedded_libpython)
{
    ck_assert_msg(access("/usr/include/python3.11/Python.h", R_OK) == 0 &&
                  access("/usr/lib/x86_64-linux-gnu/libpython3.11.so", R_OK) == 0,
                  "install libpython3.11-dev");
    char dir[] = "/tmp/pyheap-embed-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char src[64], prog[64], cmd[512];
    snprintf(src, sizeof src, "%s/embed.c", dir);
    snprintf(prog, sizeof prog, "%s/embed", dir);
    FILE *f = fopen(src, "w");
    ck_assert_ptr_nonnull(f);
    fputs(embed_src, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "${CC:-cc} -w -I/usr/include/python3.11 -o %s %s -lpython3.11",
             prog, src);
    ck_assert_int_eq(system(cmd), 0);

    pid_t pid = spawn_ready(prog, "noinit", true);
    pyheap_error err = open_fail(pid, 0);
    ck_assert_msg(err.code == PYHEAP_E_NOTPYTHON && strstr(err.msg, "no initialized"),
                  "%s", err.msg);
    test_reap(pid);

    pid = spawn_ready(prog, "init", true);
    double ms;
    pyheap_target *t = open_ok(pid, 0, &ms);
    ck_assert_str_eq(pyheap_target_module(t), "/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0");
    ck_assert_str_eq(pyheap_target_version(t), "3.11.2");
    ck_assert_uint_ne(t->module_bias, 0);
    fprintf(stderr, "attach: embedded libpython3.11 (%s) in %.1f ms: %s\n",
            pyheap_offsets_source_name(pyheap_target_offsets_source(t)), ms,
            pyheap_target_offsets_detail(t));
    pyheap_target_free(t);
    t = open_ok(pid, ONLY(PYHEAP_OFFSETS_TABLE), NULL);
    ck_assert_int_eq(pyheap_target_offsets_source(t), PYHEAP_OFFSETS_TABLE);
    pyheap_target_free(t);
    test_reap(pid);
    test_rm_rf(dir);
}
END_TEST

Suite *suite_target(void)
{
    Suite *s = suite_create("target");
    TCase *tc = tcase_create("target");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, release_build);
    tcase_add_test(tc, debug_build_uses_dwarf);
    tcase_add_test(tc, pyenv_shared_libpython);
    tcase_add_test(tc, no_such_process);
    tcase_add_test(tc, not_python);
    tcase_add_test(tc, unsupported_versions);
    tcase_add_test(tc, second_libpython_is_skipped);
    tcase_add_test(tc, exited_target_is_gone);
    tcase_add_test(tc, not_permitted);
    tcase_add_test(tc, deleted_executable);
    tcase_add_test(tc, validation_rejects_wrong_offsets);
    tcase_add_test(tc, embedded_libpython);
    tcase_add_test(tc, odd_command_name);
    tcase_add_test(tc, exec_is_gone);
    suite_add_tcase(s, tc);
    return s;
}
