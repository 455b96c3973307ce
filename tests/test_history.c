/* Issue 5 end to end: pyheapd sessions with periodic scans, `pyheap growth`,
 * `stats`, `diff` (live and from two files), `snapshots`, against real
 * /usr/bin/python3.11 targets (tests/targets/growth_target.py). */
#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "proto.h"
#include "testutil.h"

#define PYTHON "/usr/bin/python3.11"

struct henv {
    char dir[64];
    char sock[128];
    pid_t daemon, target;
};

static int wait_file(const char *path, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        if (access(path, F_OK) == 0)
            return 0;
        usleep(10000);
    }
    return -1;
}

static void henv_start(struct henv *e, const char *mode)
{
    memset(e, 0, sizeof *e);
    snprintf(e->dir, sizeof e->dir, "/tmp/pyheap-hist-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(e->dir));
    snprintf(e->sock, sizeof e->sock, "%s/d.sock", e->dir);
    char script[512], dlog[128], bin[512];
    snprintf(script, sizeof script, "%s/tests/targets/growth_target.py", test_srcdir());
    char *targv[] = { PYTHON, script, e->dir, (char *)mode, NULL };
    e->target = test_spawn(targv, NULL, NULL, (uid_t)-1, (gid_t)-1);
    char ready[128];
    snprintf(ready, sizeof ready, "%s/ready", e->dir);
    ck_assert_msg(wait_file(ready, 10000) == 0, PYTHON " target did not start");
    snprintf(bin, sizeof bin, "%s/pyheapd", test_builddir());
    snprintf(dlog, sizeof dlog, "%s/pyheapd.log", e->dir);
    char *dargv[] = { bin, "-s", e->sock, NULL };
    e->daemon = test_spawn(dargv, "/dev/null", dlog, (uid_t)-1, (gid_t)-1);
    ck_assert_msg(wait_file(e->sock, 10000) == 0, "pyheapd did not start");
}

static void henv_stop(struct henv *e)
{
    if (e->target > 0)
        test_reap(e->target);
    kill(e->daemon, SIGTERM);
    waitpid(e->daemon, NULL, 0);
    test_rm_rf(e->dir);
}

/* Run `pyheap -s SOCK ARGS` (printf-style); *status = exit status; returns
 * stdout+stderr (malloc'd). */
static char *run(const struct henv *e, int *status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static char *run(const struct henv *e, int *status, const char *fmt, ...)
{
    char args[1024], cmd[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s/pyheap -s %s %s", test_builddir(), e->sock, args);
    char *buf;
    *status = test_sh(cmd, &buf);
    return buf;
}

static json_t *run_json(const struct henv *e, const char *args)
{
    int st;
    char *out = run(e, &st, "%s --json", args);
    ck_assert_msg(st == 0, "`pyheap %s --json` exited %d: %s", args, st, out);
    json_error_t je;
    json_t *o = json_loads(out, 0, &je);
    ck_assert_msg(o != NULL, "`pyheap %s` printed no JSON (%s): %s", args, je.text, out);
    free(out);
    return o;
}

static long long jget(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

/* Wait until the session of the only target has at least N series points. */
static void wait_points(const struct henv *e, long long n, int ms)
{
    long long have = 0;
    for (int i = 0; i < ms / 100; i++) {
        json_t *o = run_json(e, "snapshots");
        have = jget(o, "series_points");
        json_decref(o);
        if (have >= n)
            return;
        usleep(100000);
    }
    ck_abort_msg("only %lld of %lld series points after %d ms", have, n, ms);
}

static const json_t *find_type(const json_t *types, const char *name)
{
    for (size_t i = 0; i < json_array_size(types); i++)
        if (strcmp(json_string_value(json_object_get(json_array_get(types, i), "type")),
                   name) == 0)
            return json_array_get(types, i);
    return NULL;
}

START_TEST(growth_ranks_steady_leak)
{
    struct henv e;
    henv_start(&e, "leak");
    int st;
    char *out = run(&e, &st, "attach %d", (int)e.target);
    ck_assert_msg(st == 0, "%s", out);
    free(out);
    /* No series yet: a clear refusal. */
    out = run(&e, &st, "growth");
    ck_assert_int_eq(st, 1);
    ck_assert_msg(strstr(out, "at least 2 snapshots"), "%s", out);
    free(out);
    /* Retune the session: periodic scans every 0.3 s. */
    out = run(&e, &st, "attach %d --interval 0.3", (int)e.target);
    ck_assert_msg(st == 0 && strstr(out, "every 0.3 s"), "%s", out);
    free(out);
    wait_points(&e, 12, 20000);
    json_t *g = run_json(&e, "growth -n 0");
    const json_t *types = json_object_get(g, "types");
    ck_assert_uint_ge(json_array_size(types), 1);
    const json_t *first = json_array_get(types, 0);
    ck_assert_str_eq(json_string_value(json_object_get(first, "type")), "__main__.LeakyRecord");
    ck_assert_int_gt(jget(first, "delta_count"), 0);
    ck_assert_int_gt(jget(first, "delta_bytes"), 0);
    ck_assert(json_number_value(json_object_get(first, "per_min_bytes")) > 0);
    ck_assert_int_ge(jget(first, "grew_in"), jget(first, "intervals") - 1);
    ck_assert_int_ge(jget(g, "snapshots"), 12);
    ck_assert_int_eq(jget(g, "pid"), e.target);
    ck_assert(json_number_value(json_object_get(g, "window_s")) > 1.5);
    /* The churning type does not rank. */
    ck_assert_msg(find_type(types, "__main__.ChurnItem") == NULL, "ChurnItem ranked");
    json_decref(g);
    out = run(&e, &st, "growth");
    ck_assert_msg(st == 0 && strstr(out, "__main__.LeakyRecord") && strstr(out, "GREW_IN"), "%s",
                  out);
    free(out);
    henv_stop(&e);
}
END_TEST

START_TEST(stats_tells_native_leak)
{
    struct henv e;
    henv_start(&e, "native");
    int st;
    char *out = run(&e, &st, "attach %d --interval 0.3", (int)e.target);
    ck_assert_msg(st == 0, "%s", out);
    free(out);
    wait_points(&e, 8, 15000);
    json_t *s = run_json(&e, "stats");
    ck_assert_int_gt(jget(s, "rss"), 0);
    ck_assert_int_gt(jget(s, "python_objects_bytes"), 0);
    ck_assert(json_is_integer(json_object_get(s, "not_python_bytes")));
    const json_t *tr = json_object_get(s, "trend");
    ck_assert_msg(json_is_object(tr), "no trend");
    long long d_native = jget(tr, "delta_not_python_bytes");
    long long d_py = jget(tr, "delta_python_objects_bytes");
    /* ~5 MiB/s malloc'd and touched, for >= 2 s. */
    ck_assert_msg(d_native > 4ll << 20, "not-Python growth %lld", d_native);
    ck_assert_msg(d_py < 1ll << 20, "Python objects grew %lld", d_py);
    ck_assert_str_eq(json_string_value(json_object_get(tr, "growing")), "not_python");
    json_decref(s);
    out = run(&e, &st, "stats");
    ck_assert_msg(st == 0 && strstr(out, "not accounted to Python objects") &&
                  strstr(out, "growing: not_python"), "%s", out);
    free(out);
    henv_stop(&e);
}
END_TEST

START_TEST(diff_lists_exactly_the_new)
{
    enum { K = 137 };
    struct henv e;
    henv_start(&e, "append");
    int st;
    char *out = run(&e, &st, "attach %d", (int)e.target);
    ck_assert_msg(st == 0, "%s", out);
    free(out);
    out = run(&e, &st, "diff");
    ck_assert_int_eq(st, 1);
    ck_assert_msg(strstr(out, "no snapshot"), "%s", out);
    free(out);
    /* "snapshot" by hand: without a descriptor, and with a pipe's write end
     * (not a regular file), pyheapd refuses and opens nothing itself. */
    char py[160], cmd[512];
    snprintf(py, sizeof py, "%s/rawsnap.py", e.dir);
    FILE *w = fopen(py, "w");
    ck_assert_ptr_nonnull(w);
    fputs("import os, socket, sys\n"
          "for fds in ([], [os.pipe()[1]]):\n"
          "    s = socket.socket(socket.AF_UNIX)\n"
          "    s.connect(sys.argv[1])\n"
          "    socket.send_fds(s, [b'{\"cmd\":\"snapshot\"}\\n'], fds)\n"
          "    print(s.makefile().readline().strip(), flush=True)\n", w);
    fclose(w);
    snprintf(cmd, sizeof cmd, PYTHON " %s %s", py, e.sock);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char l1[1024] = "", l2[1024] = "";
    ck_assert_ptr_nonnull(fgets(l1, sizeof l1, p));
    ck_assert_ptr_nonnull(fgets(l2, sizeof l2, p));
    pclose(p);
    ck_assert_msg(strstr(l1, "\"invalid\"") && strstr(l1, "none came"), "%s", l1);
    ck_assert_msg(strstr(l2, "\"invalid\"") && strstr(l2, "not a regular file"), "%s", l2);
    char fa[128], fb[128], go[128], done[128];
    snprintf(fa, sizeof fa, "%s/a.snap", e.dir);
    snprintf(fb, sizeof fb, "%s/b.snap", e.dir);
    snprintf(go, sizeof go, "%s/go", e.dir);
    snprintf(done, sizeof done, "%s/done", e.dir);
    out = run(&e, &st, "snapshot -o %s", fa);
    ck_assert_msg(st == 0 && strstr(out, "wrote"), "%s", out);
    free(out);
    FILE *f = fopen(go, "w");
    fprintf(f, "%d\n", K);
    fclose(f);
    ck_assert_int_eq(wait_file(done, 10000), 0);

    json_t *d = run_json(&e, "diff -n 0");
    const json_t *t = find_type(json_object_get(d, "types"), "__main__.AppendedRecord");
    ck_assert_msg(t != NULL, "AppendedRecord not new");
    ck_assert_int_eq(jget(t, "count"), K);
    int via_ok = 0;
    const json_t *via = json_object_get(d, "via");
    for (size_t i = 0; i < json_array_size(via); i++) {
        const json_t *v = json_array_get(via, i);
        if (strcmp(json_string_value(json_object_get(v, "type")), "__main__.AppendedRecord"))
            continue;
        ck_assert_str_eq(json_string_value(json_object_get(v, "via_type")), "list");
        ck_assert_str_eq(json_string_value(json_object_get(v, "via")), "[*]");
        ck_assert_int_eq(jget(v, "count"), K);
        via_ok = 1;
    }
    ck_assert(via_ok);
    ck_assert_int_eq(jget(d, "since"), 1);
    json_decref(d);

    /* --since an ID that is not kept */
    out = run(&e, &st, "diff --since 999");
    ck_assert_int_eq(st, 1);
    ck_assert_msg(strstr(out, "not kept"), "%s", out);
    free(out);

    /* The same from two files, offline. */
    out = run(&e, &st, "snapshot -o %s", fb);
    ck_assert_msg(st == 0, "%s", out);
    free(out);
    char args[300];
    snprintf(args, sizeof args, "diff --file %s --file %s -n 0", fa, fb);
    d = run_json(&e, args);
    t = find_type(json_object_get(d, "types"), "__main__.AppendedRecord");
    ck_assert_msg(t != NULL, "AppendedRecord not new in the file diff");
    ck_assert_int_eq(jget(t, "count"), K);
    json_decref(d);
    /* snapshots lists the kept IDs */
    json_t *l = run_json(&e, "snapshots");
    ck_assert_uint_ge(json_array_size(json_object_get(l, "snapshots")), 2);
    json_decref(l);
    henv_stop(&e);
}
END_TEST

START_TEST(series_ends_when_target_goes)
{
    struct henv e;
    henv_start(&e, "leak");
    int st;
    char *out = run(&e, &st, "attach %d --interval 0.2", (int)e.target);
    ck_assert_msg(st == 0, "%s", out);
    free(out);
    wait_points(&e, 3, 10000);
    kill(e.target, SIGKILL);
    waitpid(e.target, NULL, 0);
    e.target = 0;
    const char *state = "";
    json_t *l = NULL;
    for (int i = 0; i < 50; i++) {
        json_decref(l);
        l = run_json(&e, "snapshots");
        state = json_string_value(json_object_get(l, "series_state"));
        if (strncmp(state, "ended", 5) == 0)
            break;
        usleep(100000);
    }
    ck_assert_msg(strncmp(state, "ended", 5) == 0 && strstr(state, "exited"), "state %s", state);
    json_decref(l);
    /* What was recorded stays readable. */
    json_t *g = run_json(&e, "growth");
    ck_assert_int_ge(jget(g, "snapshots"), 3);
    json_decref(g);
    henv_stop(&e);
}
END_TEST

/* pymalloc as pyheap reads it from outside equals what the idle target's
 * own sys._debugmallocstats() printed (Debian's LTO build: the statics are
 * found in its build-id debug file). */
START_TEST(stats_pymalloc_matches_the_interpreter)
{
    struct henv e;
    henv_start(&e, "idle");
    int st;
    char *out = run(&e, &st, "attach %d", (int)e.target);
    ck_assert_msg(st == 0, "%s", out);
    free(out);
    char path[128];
    snprintf(path, sizeof path, "%s/malloc.txt", e.dir);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    long long arenas = -1, unused = -1;
    while (fgets(line, sizeof line, f)) {
        long long v;
        /* sscanf returns 1 as soon as %lld converted: test the words first */
        if (strstr(line, "# arenas allocated current") &&
            sscanf(line, "# arenas allocated current = %lld", &v) == 1)
            arenas = v;
        if (strstr(line, "unused pools * 16384 bytes") && sscanf(line, "%lld", &v) == 1)
            unused = v;
    }
    fclose(f);
    ck_assert_msg(arenas > 0 && unused >= 0, "malloc.txt not understood");
    json_t *s = run_json(&e, "stats");
    const json_t *pm = json_object_get(s, "pymalloc");
    ck_assert_msg(json_is_object(pm), "pymalloc unknown: %s",
                  json_string_value(json_object_get(s, "pymalloc_note")));
    ck_assert_int_eq(jget(pm, "arenas"), arenas);
    ck_assert_int_eq(jget(pm, "pools_free"), unused);
    ck_assert_int_eq(jget(pm, "arena_bytes"), arenas << 20);
    ck_assert_int_eq(jget(pm, "free_bytes"), unused * 16384);
    json_decref(s);
    henv_stop(&e);
}
END_TEST

/* The new request fields are bounded and only where they belong. */
START_TEST(request_fields)
{
    static const struct { const char *line; int ok; } cases[] = {
        { "{\"cmd\":\"attach\",\"pid\":1,\"interval\":0.3,\"history\":10,\"keep\":2}", 1 },
        { "{\"cmd\":\"attach\",\"pid\":1,\"interval\":0}", 1 },
        { "{\"cmd\":\"attach\",\"pid\":1,\"interval\":0.05}", 0 },
        { "{\"cmd\":\"attach\",\"pid\":1,\"interval\":86401}", 0 },
        { "{\"cmd\":\"attach\",\"pid\":1,\"interval\":\"5\"}", 0 },
        { "{\"cmd\":\"attach\",\"pid\":1,\"history\":1}", 0 },
        { "{\"cmd\":\"attach\",\"pid\":1,\"keep\":33}", 0 },
        { "{\"cmd\":\"top\",\"interval\":1}", 0 },
        { "{\"cmd\":\"diff\",\"since\":3,\"n\":0}", 1 },
        { "{\"cmd\":\"diff\",\"since\":0}", 0 },
        { "{\"cmd\":\"growth\",\"pid\":5,\"n\":3}", 1 },
        { "{\"cmd\":\"growth\",\"since\":3}", 0 },
        { "{\"cmd\":\"snapshot\",\"freeze\":true}", 1 },
        { "{\"cmd\":\"stats\",\"n\":3}", 0 },
        { "{\"cmd\":\"snapshots\"}", 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pyheap_request req;
        pyheap_proto_error perr;
        int rc = pyheap_proto_parse(cases[i].line, strlen(cases[i].line), &req, &perr);
        ck_assert_msg((rc == 0) == cases[i].ok, "%s: %s", cases[i].line,
                      rc ? perr.msg : "accepted");
        if (rc == 0)
            ck_assert_int_eq(req.fd, -1);
    }
}
END_TEST

Suite *suite_history(void)
{
    Suite *s = suite_create("history");
    TCase *tc = tcase_create("sessions");
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, growth_ranks_steady_leak);
    tcase_add_test(tc, stats_tells_native_leak);
    tcase_add_test(tc, diff_lists_exactly_the_new);
    tcase_add_test(tc, series_ends_when_target_goes);
    tcase_add_test(tc, stats_pymalloc_matches_the_interpreter);
    suite_add_tcase(s, tc);
    TCase *tp = tcase_create("protocol");
    tcase_add_test(tp, request_fields);
    suite_add_tcase(s, tp);
    return s;
}
