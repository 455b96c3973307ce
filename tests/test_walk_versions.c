/* The walker on CPython 3.13, 3.14 and 3.15: release and Py_DEBUG (-dbg)
 * builds of the cached Debian sid root (tools/sid-root), started with
 * chroot, scanned from the host. Each run checks the accuracy against
 * known_heap.py's in-process ground truth (tests/knownheap.c), the
 * referrers of a module-level list's objects, and, for two of them, the
 * daemon and CLI (`ps --json`, `top --by-type --json`). A missing
 * interpreter fails the test. The figures go to stderr for the CI log. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "knownheap.h"
#include "svcutil.h"
#include "testutil.h"

/* Referrers of __main__.Kept (tests/targets/known_heap.py): 40 objects, a
 * list is their only referrer (by [i] edges), the module's dict holds the
 * list as ['KEPT'], and the shortest path names the variable. */
static void check_referrers(struct kh *k, const pyheap_snapshot *s)
{
    uint32_t *ty = NULL;
    size_t nt = 0;
    pyheap_error e;
    memset(&e, 0, sizeof e);
    ck_assert_msg(pyheap_type_lookup(s, "__main__.Kept", &ty, &nt, &e) == 0, "%s: %s",
                  k->label, e.msg);
    ck_assert_uint_eq(nt, 1);
    pyheap_referrers *r = NULL;
    ck_assert_msg(pyheap_referrers_compute(s, ty, nt, NULL, &r, &e) == 0, "%s: %s", k->label,
                  e.msg);
    fprintf(stderr, "referrers of __main__.Kept: %llu objects, %llu unreachable\n",
            (unsigned long long)r->objects, (unsigned long long)r->unreachable);
    const pyheap_referrer_group *list = NULL, *mod = NULL;
    for (size_t i = 0; i < r->ngroups; i++) {
        const pyheap_referrer_group *g = &r->groups[i];
        fprintf(stderr, "  depth %u %s via %s: %llu\n", g->depth, g->type_name, g->via,
                (unsigned long long)g->count);
        if (g->depth == 1)
            ck_assert_msg(strcmp(g->type_name, "list") == 0, "%s: Kept referred to by %s %s",
                          k->label, g->type_name, g->via);
        if (g->depth == 1 && strcmp(g->type_name, "list") == 0)
            list = g;
        if (g->depth == 2 && strcmp(g->type_name, "dict") == 0 &&
            strcmp(g->via, "['KEPT']") == 0)
            mod = g;
    }
    for (size_t i = 0; i < r->npaths; i++)
        fprintf(stderr, "  path %s (%llu)\n", r->paths[i].path,
                (unsigned long long)r->paths[i].count);
    ck_assert_uint_eq(r->objects, 40);
    ck_assert_uint_eq(r->unreachable, 0);
    ck_assert_msg(list != NULL, "%s: no list referrer of Kept", k->label);
    ck_assert_uint_eq(list->count, 1);
    ck_assert_msg(list->via[0] == '[', "%s: list edge labelled %s", k->label, list->via);
    ck_assert_msg(mod != NULL, "%s: the list is not held by a dict as ['KEPT']", k->label);
    ck_assert_uint_ge(r->npaths, 1);
    ck_assert_msg(strncmp(r->paths[0].path, "__main__.KEPT[", 14) == 0, "%s: path %s",
                  k->label, r->paths[0].path);
    ck_assert_uint_eq(r->paths[0].count, 40);
    pyheap_referrers_free(r);
    free(ty);
}

static void run(const char *python, unsigned sources, pyheap_offsets_source want)
{
    struct kh k;
    kh_start(&k, kh_sid_root(), python, NULL);
    kh_check_accuracy(&k, sources, want, check_referrers);
    kh_stop(&k);
}

#define ALL 0u
#define ONLY(src) (1u << (src))

START_TEST(py313_release)
{
    run("/usr/bin/python3.13", ALL, PYHEAP_OFFSETS_DEBUG_OFFSETS);
}
END_TEST

START_TEST(py313_release_table)
{
    run("/usr/bin/python3.13", ONLY(PYHEAP_OFFSETS_TABLE), PYHEAP_OFFSETS_TABLE);
}
END_TEST

START_TEST(py313_debug)
{
    run("/usr/bin/python3.13d", ALL, PYHEAP_OFFSETS_DWARF);
}
END_TEST

START_TEST(py314_release)
{
    run("/usr/bin/python3.14", ALL, PYHEAP_OFFSETS_DEBUG_OFFSETS);
}
END_TEST

START_TEST(py314_release_table)
{
    run("/usr/bin/python3.14", ONLY(PYHEAP_OFFSETS_TABLE), PYHEAP_OFFSETS_TABLE);
}
END_TEST

START_TEST(py314_release_dwarf)
{
    /* DWARF from the separate build-id debug file inside the root */
    run("/usr/bin/python3.14", ONLY(PYHEAP_OFFSETS_DWARF), PYHEAP_OFFSETS_DWARF);
}
END_TEST

START_TEST(py314_debug)
{
    run("/usr/bin/python3.14d", ALL, PYHEAP_OFFSETS_DWARF);
}
END_TEST

START_TEST(py315_release)
{
    run("/usr/bin/python3.15", ALL, PYHEAP_OFFSETS_DEBUG_OFFSETS);
}
END_TEST

START_TEST(py315_release_table)
{
    run("/usr/bin/python3.15", ONLY(PYHEAP_OFFSETS_TABLE), PYHEAP_OFFSETS_TABLE);
}
END_TEST

START_TEST(py315_debug)
{
    run("/usr/bin/python3.15d", ALL, PYHEAP_OFFSETS_DWARF);
}
END_TEST

/* ---- labelled referrers through the ported decoders ---- */

static pyheap_referrers *referrers_of(const pyheap_snapshot *s, const char *name)
{
    uint32_t *ty = NULL;
    size_t nt = 0;
    pyheap_error e;
    memset(&e, 0, sizeof e);
    ck_assert_msg(pyheap_type_lookup(s, name, &ty, &nt, &e) == 0, "%s: %s", name, e.msg);
    pyheap_referrers *r = NULL;
    ck_assert_msg(pyheap_referrers_compute(s, ty, nt, NULL, &r, &e) == 0, "%s: %s", name, e.msg);
    free(ty);
    return r;
}

static void expect_group(const pyheap_referrers *r, const char *what, unsigned depth,
                         const char *type, const char *via)
{
    for (size_t i = 0; i < r->ngroups; i++)
        if (r->groups[i].depth == depth && strcmp(r->groups[i].type_name, type) == 0 &&
            strcmp(r->groups[i].via, via) == 0)
            return;
    for (size_t i = 0; i < r->ngroups; i++)
        fprintf(stderr, "  %s: depth %u %s via %s\n", what, r->groups[i].depth,
                r->groups[i].type_name, r->groups[i].via);
    ck_abort_msg("%s: no referrer group %s via %s at depth %u", what, type, via, depth);
}

static void expect_path(const pyheap_referrers *r, const char *what, const char *prefix)
{
    for (size_t i = 0; i < r->npaths; i++)
        if (strncmp(r->paths[i].path, prefix, strlen(prefix)) == 0)
            return;
    ck_abort_msg("%s: no path starting %s (first: %s)", what, prefix,
                 r->npaths ? r->paths[0].path : "none");
}

/* tests/targets/referrers.py in the chroot: the shapes whose decoders
 * changed with the version (thread-locals: 3.13's localdicts; partial:
 * 3.14's 80-byte layout; generator locals: 3.14's tagged stack refs;
 * materialised instance dicts and inline values; slots; weak refs). */
static void scenarios(const char *python)
{
    struct kh k;
    kh_start_script(&k, kh_sid_root(), python, "referrers.py", NULL);
    pyheap_target *t = NULL;
    pyheap_error e;
    memset(&e, 0, sizeof e);
    ck_assert_msg(pyheap_target_open(k.pid, NULL, &t, &e) == 0, "%s: %s", k.label, e.msg);
    pyheap_snapshot *s = NULL;
    ck_assert_msg(pyheap_snapshot_take(t, NULL, &s, &e) == 0, "%s: %s", k.label, e.msg);
    fprintf(stderr, "\n== scenarios: %s (python %s): %zu objects, %zu roots\n", k.label,
            pyheap_target_version(t), pyheap_snapshot_count(s), pyheap_snapshot_nroots(s));

    pyheap_referrers *r = referrers_of(s, "Seen");
    ck_assert_uint_eq(r->objects, 50);
    expect_group(r, "Seen", 1, "list", "[*]");
    expect_group(r, "Seen", 2, "dict", "['seen_log']");
    expect_path(r, "Seen", "__main__.seen_log[");
    pyheap_referrers_free(r);

    r = referrers_of(s, "__main__.Cyclic");
    ck_assert_uint_eq(r->unreachable, 4);
    expect_group(r, "Cyclic", 1, "__main__.Cyclic", ".other");
    pyheap_referrers_free(r);

    r = referrers_of(s, "TLPayload");
    ck_assert_uint_eq(r->objects, 200);
    ck_assert_uint_eq(r->unreachable, 0);
    expect_group(r, "TLPayload", 3, "_thread._local", ".__dict__");
    expect_path(r, "TLPayload", "__main__.tls.big[");
    pyheap_referrers_free(r);

    r = referrers_of(s, "WorkerItem");
    expect_group(r, "WorkerItem", 3, "_thread._local", ".__dict__");
    expect_path(r, "WorkerItem", "__main__.tls2.items[");
    pyheap_referrers_free(r);

    r = referrers_of(s, "Query");
    expect_group(r, "Query", 2, "collections.deque", "[*]");
    expect_path(r, "Query", "__main__.queries_log[*]['marker']");
    pyheap_referrers_free(r);

    r = referrers_of(s, "Captured");
    expect_group(r, "Captured", 2, "cell", ".cell_contents");
    expect_path(r, "Captured", "__main__.handler.__closure__[0].cell_contents[");
    pyheap_referrers_free(r);

    r = referrers_of(s, "Cached");
    expect_group(r, "Cached", 3, "type", ".__dict__");
    expect_path(r, "Cached", "__main__.Registry.cache['key-");
    pyheap_referrers_free(r);

    r = referrers_of(s, "HeldItem");
    expect_group(r, "HeldItem", 3, "__main__.Holder", ".__dict__");
    expect_path(r, "HeldItem", "__main__.holder.items[");
    pyheap_referrers_free(r);

    r = referrers_of(s, "SlotItem");
    expect_group(r, "SlotItem", 1, "__main__.Slotted", ".payload");
    pyheap_referrers_free(r);

    r = referrers_of(s, "PartialArg");
    expect_group(r, "PartialArg", 2, "functools.partial", ".args");
    expect_path(r, "PartialArg", "__main__.bound.args[0]");
    pyheap_referrers_free(r);

    r = referrers_of(s, "DDItem");
    expect_group(r, "DDItem", 2, "collections.defaultdict", "['k']");
    pyheap_referrers_free(r);

    r = referrers_of(s, "GenItem");
    expect_group(r, "GenItem", 2, "generator", ".gi_frame.f_locals['held']");
    expect_path(r, "GenItem", "__main__.gen.gi_frame.f_locals['held'][");
    pyheap_referrers_free(r);

    r = referrers_of(s, "DescrItem");
    ck_assert_uint_eq(r->objects, 3);
    expect_group(r, "DescrItem", 1, "property", ".fget");
    pyheap_referrers_free(r);

    r = referrers_of(s, "array.array");
    expect_group(r, "array.array", 1, "memoryview", ".obj");
    pyheap_referrers_free(r);

    r = referrers_of(s, "Weakly");
    ck_assert_uint_eq(r->objects, 3);
    for (size_t i = 0; i < r->ngroups; i++)
        ck_assert_msg(strncmp(r->groups[i].type_name, "weakref.", 8) != 0,
                      "weak reference counted as a referrer: %s", r->groups[i].via);
    expect_path(r, "Weakly", "__main__.weak_targets[");
    pyheap_referrers_free(r);

    bool thread_root = false;
    for (size_t i = 0; i < pyheap_snapshot_nroots(s); i++)
        thread_root |= strstr(pyheap_snapshot_root_name(s, i), "idle().f_locals['keep']") != NULL ||
                       strstr(pyheap_snapshot_root_name(s, i), "idle().f_locals['outdir']") != NULL;
    ck_assert_msg(thread_root, "%s: no root for a local of the main thread's idle() frame",
                  k.label);
    pyheap_snapshot_free(s);
    pyheap_target_free(t);
    kh_stop(&k);
}

START_TEST(scenarios_py313)
{
    scenarios("/usr/bin/python3.13");
}
END_TEST

START_TEST(scenarios_py314)
{
    scenarios("/usr/bin/python3.14");
}
END_TEST

START_TEST(scenarios_py315)
{
    scenarios("/usr/bin/python3.15");
}
END_TEST

/* tests/targets/attrs.py in the chroot: instance attributes in 3.13+'s
 * inline values (in the object, after its header), which 3.11's test
 * (test_walk.c instance_attributes) does not reach. */
static void attrs(const char *python)
{
    struct kh k;
    kh_start_script(&k, kh_sid_root(), python, "attrs.py", NULL);
    kh_check_attrs(&k);
    kh_stop(&k);
}

START_TEST(attrs_py313)
{
    attrs("/usr/bin/python3.13");
}
END_TEST

START_TEST(attrs_py314)
{
    attrs("/usr/bin/python3.14");
}
END_TEST

START_TEST(attrs_py315_debug)
{
    attrs("/usr/bin/python3.15d");
}
END_TEST

/* ---- the daemon and the CLI on a chroot target ---- */

static bool can_connect(const char *path)
{
    int fd = test_connect(path);
    if (fd >= 0)
        close(fd);
    return fd >= 0;
}

static void daemon_cli(const char *python, const char *want_version, const char *want_source)
{
    struct kh k;
    kh_start(&k, kh_sid_root(), python, NULL);
    char dir[] = "/tmp/pyheap-wv.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char sock[128], log[128], pid[32], pyheapd[512], cli[512];
    snprintf(sock, sizeof sock, "%s/pyheapd.sock", dir);
    snprintf(log, sizeof log, "%s/pyheapd.log", dir);
    snprintf(pid, sizeof pid, "%d", (int)k.pid);
    snprintf(pyheapd, sizeof pyheapd, "%s/pyheapd", test_builddir());
    snprintf(cli, sizeof cli, "%s/pyheap", test_builddir());
    pid_t d = fork();
    ck_assert_int_ge(d, 0);
    if (d == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0)
            dup2(fd, 2);
        execl(pyheapd, pyheapd, "attach", pid, "--socket", sock, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 2000 && !can_connect(sock); i++) {
        int st;
        ck_assert_msg(waitpid(d, &st, WNOHANG) == 0, "pyheapd exited (see %s)", log);
        test_sleep_ms(10);
    }
    ck_assert_msg(can_connect(sock), "pyheapd did not listen on %s", sock);

    char *out;
    char *ps[] = { cli, "--socket", sock, "ps", "--json", NULL };
    ck_assert_int_eq(test_capture(ps, &out), 0);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    ck_assert_msg(j != NULL, "ps --json: %s: %s", je.text, out);
    const json_t *t0 = json_array_get(json_object_get(j, "targets"), 0);
    ck_assert_ptr_nonnull(t0);
    const char *ver = json_string_value(json_object_get(t0, "python"));
    const char *src = json_string_value(json_object_get(t0, "offsets_source"));
    fprintf(stderr, "\n== daemon: %s: ps --json: python %s, offsets %s\n", k.label,
            ver ? ver : "?", src ? src : "?");
    ck_assert_msg(ver && strncmp(ver, want_version, strlen(want_version)) == 0,
                  "ps: python %s, expected %s", ver ? ver : "(none)", want_version);
    ck_assert_msg(src && strcmp(src, want_source) == 0, "ps: offsets %s, expected %s",
                  src ? src : "(none)", want_source);
    json_decref(j);
    free(out);

    char *top[] = { cli, "--socket", sock, "top", "--by-type", "-n", "0", "--json", NULL };
    ck_assert_int_eq(test_capture(top, &out), 0);
    j = json_loads(out, 0, &je);
    ck_assert_msg(j != NULL, "top --json: %s", je.text);
    char tp[1024];
    kh_path(&k, "truth.json", tp, sizeof tp);
    json_t *truth = json_load_file(tp, 0, &je);
    ck_assert_msg(truth != NULL, "%s: %s", tp, je.text);
    double got = (double)json_integer_value(json_object_get(j, "bytes"));
    double want = (double)json_integer_value(json_object_get(truth, "bytes"));
    fprintf(stderr, "daemon: top --by-type --json: %lld objects, %.0f bytes (truth %lld, %.0f), "
            "Kept %lld, scan %.1f ms\n", (long long)json_integer_value(json_object_get(j, "objects")),
            got, (long long)json_integer_value(json_object_get(truth, "objects")), want,
            (long long)svc_type_count(j, "__main__.Kept"),
            json_number_value(json_object_get(j, "scan_ms")));
    ck_assert_str_eq(json_string_value(json_object_get(j, "python")),
                     json_string_value(json_object_get(truth, "python")));
    ck_assert_int_eq(svc_type_count(j, "__main__.Kept"), 40);
    ck_assert_int_eq(svc_type_count(j, "__main__.Plain"), 2000);
    ck_assert_msg(got >= want * 0.95 && got <= want * 1.05, "top bytes %.0f vs truth %.0f",
                  got, want);
    json_decref(truth);
    json_decref(j);
    free(out);

    kill(d, SIGTERM);
    int st;
    ck_assert_int_eq(waitpid(d, &st, 0), d);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "pyheapd exit status %d", st);
    unlink(log);
    unlink(sock);
    rmdir(dir);
    kh_stop(&k);
}

START_TEST(daemon_py314_release)
{
    daemon_cli("/usr/bin/python3.14", "3.14.", "debug_offsets");
}
END_TEST

START_TEST(daemon_py315_debug)
{
    daemon_cli("/usr/bin/python3.15d", "3.15.", "dwarf");
}
END_TEST

Suite *suite_walk_versions(void)
{
    Suite *s = suite_create("walk_versions");
    TCase *tc = tcase_create("chroot");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, py313_release);
    tcase_add_test(tc, py313_release_table);
    tcase_add_test(tc, py313_debug);
    tcase_add_test(tc, py314_release);
    tcase_add_test(tc, py314_release_table);
    tcase_add_test(tc, py314_release_dwarf);
    tcase_add_test(tc, py314_debug);
    tcase_add_test(tc, py315_release);
    tcase_add_test(tc, py315_release_table);
    tcase_add_test(tc, py315_debug);
    tcase_add_test(tc, scenarios_py313);
    tcase_add_test(tc, scenarios_py314);
    tcase_add_test(tc, scenarios_py315);
    tcase_add_test(tc, attrs_py313);
    tcase_add_test(tc, attrs_py314);
    tcase_add_test(tc, attrs_py315_debug);
    tcase_add_test(tc, daemon_py314_release);
    tcase_add_test(tc, daemon_py315_debug);
    suite_add_tcase(s, tc);
    return s;
}
