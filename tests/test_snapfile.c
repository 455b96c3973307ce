/* Snapshot files (lib/snapfile.c): round trips of a hand-built snapshot and
 * of a real python3.11 heap (offline top/referrers equal the reports of the
 * same in-memory snapshot, also through `pyheap --file`), and rejection of
 * truncated, corrupted and crafted files. */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "pyheap.h"
#include "pyheap_report.h"
#include "snapfile.h"
#include "snapshot.h"
#include "testutil.h"
#include "walk.h"

#define PYTHON "/usr/bin/python3.11"

/* ---- helpers ---- */

static unsigned char *write_mem(const pyheap_snapshot *s, int pid, size_t *len)
{
    int fd = memfd_create("snap", MFD_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    pyheap_snapfile_info info;
    memset(&info, 0, sizeof info);
    info.pid = pid;
    info.time_unix = 1700000000;
    snprintf(info.python, sizeof info.python, "3.11.2");
    snprintf(info.offsets_source, sizeof info.offsets_source, "table");
    pyheap_error err;
    ck_assert_msg(pyheap_snapfile_write(s, &info, fd, &err) == 0, "write: %s", err.msg);
    off_t end = lseek(fd, 0, SEEK_END);
    ck_assert_int_gt(end, 0);
    unsigned char *b = malloc((size_t)end);
    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(pread(fd, b, (size_t)end, 0), end);
    close(fd);
    *len = (size_t)end;
    return b;
}

static void assert_same(const pyheap_snapshot *a, const pyheap_snapshot *b)
{
    ck_assert_uint_eq(pyheap_snapshot_count(a), pyheap_snapshot_count(b));
    ck_assert_uint_eq(pyheap_snapshot_ntypes(a), pyheap_snapshot_ntypes(b));
    for (size_t t = 0; t < pyheap_snapshot_ntypes(a); t++)
        ck_assert_str_eq(pyheap_snapshot_type_name(a, (uint32_t)t),
                         pyheap_snapshot_type_name(b, (uint32_t)t));
    size_t n = pyheap_snapshot_count(a);
    char la[256], lb[256];
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(pyheap_snapshot_addr(a, i), pyheap_snapshot_addr(b, i));
        ck_assert_uint_eq(pyheap_snapshot_size(a, i), pyheap_snapshot_size(b, i));
        ck_assert_uint_eq(pyheap_snapshot_type(a, i), pyheap_snapshot_type(b, i));
        ck_assert_uint_eq(pyheap_snapshot_nedges(a, i), pyheap_snapshot_nedges(b, i));
        for (size_t k = 0; k < pyheap_snapshot_nedges(a, i); k++) {
            ck_assert_uint_eq(pyheap_snapshot_edge_target(a, i, k),
                              pyheap_snapshot_edge_target(b, i, k));
            ck_assert_uint_eq(pyheap_snapshot_edge_flags(a, i, k),
                              pyheap_snapshot_edge_flags(b, i, k));
            pyheap_snapshot_edge_label(a, i, k, la, sizeof la);
            pyheap_snapshot_edge_label(b, i, k, lb, sizeof lb);
            ck_assert_str_eq(la, lb);
        }
    }
    ck_assert_uint_eq(pyheap_snapshot_nroots(a), pyheap_snapshot_nroots(b));
    for (size_t r = 0; r < pyheap_snapshot_nroots(a); r++) {
        ck_assert_uint_eq(pyheap_snapshot_root_object(a, r), pyheap_snapshot_root_object(b, r));
        ck_assert_str_eq(pyheap_snapshot_root_name(a, r), pyheap_snapshot_root_name(b, r));
    }
    const pyheap_scan_stats *sa = pyheap_snapshot_stats(a), *sb = pyheap_snapshot_stats(b);
    ck_assert_uint_eq(sa->objects, sb->objects);
    ck_assert_uint_eq(sa->bytes, sb->bytes);
    ck_assert_uint_eq(sa->skipped, sb->skipped);
    ck_assert(sa->scan_ms == sb->scan_ms);
}

static json_t *top_json(const pyheap_snapshot *s, pid_t pid)
{
    pyheap_type_stat *hist = NULL;
    size_t nh = 0;
    pyheap_error err;
    ck_assert_int_eq(pyheap_histogram(s, PYHEAP_SORT_BYTES, &hist, &nh, &err), 0);
    json_t *o = pyheap_report_top_hist(pid, "3.11.2", "table", pyheap_snapshot_stats(s), hist,
                                       nh, 0, &err);
    free(hist);
    ck_assert_ptr_nonnull(o);
    return o;
}

static json_t *referrers_json(const pyheap_snapshot *s, pid_t pid, const char *type)
{
    pyheap_error err;
    pyheap_referrers_opts ro = { 0 };
    json_t *o = pyheap_report_referrers(pid, s, type, &ro, &err);
    ck_assert_msg(o != NULL, "referrers %s: %s", type, err.msg);
    return o;
}

static void assert_json_eq(json_t *a, json_t *b, const char *what)
{
    if (!json_equal(a, b)) {
        char *x = json_dumps(a, JSON_COMPACT), *y = json_dumps(b, JSON_COMPACT);
        ck_abort_msg("%s differ:\n%.2000s\n%.2000s", what, x, y);
    }
}

/* A small hand-built heap: a module dict root holding a list of Foo
 * instances, each with a str attribute; a weak edge; a dict key. */
static pyheap_snapshot *synthetic(void)
{
    const char *types[] = { "dict", "list", "__main__.Foo", "str", "weakref.ReferenceType" };
    char **names = calloc(5, sizeof *names);
    for (int i = 0; i < 5; i++)
        names[i] = strdup(types[i]);
    enum { N = 12 };
    struct snapshot_rec recs[N];
    for (int i = 0; i < N; i++)
        recs[i] = (struct snapshot_rec){ .addr = 0x7f0000001000ull + 64 * (uint64_t)(N - i),
                                         .size = 48 + (uint64_t)i, .type = 3 };
    recs[0].type = 0;             /* module dict */
    recs[1].type = 1;             /* list */
    for (int i = 2; i < 6; i++)
        recs[i].type = 2;         /* Foo */
    recs[11].type = 4;            /* weakref */
    char **labels = calloc(3, sizeof *labels);
    labels[0] = strdup("items");
    labels[1] = strdup("name");
    labels[2] = strdup("<stack>");
    struct snapshot_edge_in edges[16];
    size_t ne = 0;
    edges[ne++] = (struct snapshot_edge_in){ recs[1].addr, 0, WALK_LBL(LBL_KEY_STR, 0) };
    edges[ne++] = (struct snapshot_edge_in){ recs[10].addr, 0, WALK_LBL(LBL_DICT_KEY, 0) };
    for (int i = 2; i < 6; i++) {
        edges[ne++] = (struct snapshot_edge_in){ recs[i].addr, 1, WALK_LBL(LBL_INDEX, i - 2) };
        edges[ne++] = (struct snapshot_edge_in){ recs[i + 4].addr, (uint32_t)i,
                                                 WALK_LBL(LBL_ATTR, 1) };
    }
    edges[ne++] = (struct snapshot_edge_in){ recs[2].addr, 11,
                                             WALK_LBL_WITH_FLAGS(WALK_LBL(LBL_TEXT, 2),
                                                                 PYHEAP_EDGE_WEAK) };
    struct snapshot_root_in roots[2] = {
        { recs[0].addr, strdup("__main__"), 0 },
        { recs[11].addr, strdup("<thread 1> main().f_locals['w']"), 1 },
    };
    struct snapshot_graph_in g = { .edges = edges, .nedges = ne, .labels = labels, .nlabels = 3, .roots = roots, .nroots = 2 };
    pyheap_scan_stats st;
    memset(&st, 0, sizeof st);
    st.scan_ms = 12.3456789;
    st.skipped = 7;
    pyheap_snapshot *s = NULL;
    pyheap_error err;
    ck_assert_int_eq(pyheap_snapshot_build(recs, N, names, 5, &g, &st, &s, &err), 0);
    return s;
}

static void expect_reject(const unsigned char *b, size_t len, const char *needle)
{
    pyheap_snapshot *s = NULL;
    pyheap_error err;
    memset(&err, 0, sizeof err);
    int rc = pyheap_snapfile_parse(b, len, &s, NULL, &err);
    ck_assert_msg(rc == -1 && s == NULL, "a bad file (%zu bytes) was accepted", len);
    ck_assert_msg(err.code == PYHEAP_E_CORRUPT || err.code == PYHEAP_E_UNSUPPORTED,
                  "code %d: %s", err.code, err.msg);
    ck_assert_msg(strstr(err.msg, "snapshot file") != NULL, "unclear message: %s", err.msg);
    if (needle)
        ck_assert_msg(strstr(err.msg, needle) != NULL, "expected \"%s\" in: %s", needle,
                      err.msg);
}

static uint64_t rd64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void wr32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void wr64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* Offset of section K's (1-based) data. */
static size_t sect_off(const unsigned char *b, unsigned k)
{
    return (size_t)rd64(b + SNAPFILE_HEADER_SIZE + (k - 1) * SNAPFILE_SECT_ENTRY + 8);
}

/* ---- tests ---- */

START_TEST(synthetic_roundtrip)
{
    pyheap_snapshot *s = synthetic();
    size_t len;
    unsigned char *b = write_mem(s, 4242, &len);
    pyheap_snapshot *r = NULL;
    pyheap_snapfile_info info;
    pyheap_error err;
    ck_assert_msg(pyheap_snapfile_parse(b, len, &r, &info, &err) == 0, "%s", err.msg);
    assert_same(s, r);
    ck_assert_int_eq(info.pid, 4242);
    ck_assert_int_eq(info.version, 1);
    ck_assert_int_eq(info.time_unix, 1700000000);
    ck_assert_str_eq(info.python, "3.11.2");
    ck_assert_str_eq(info.offsets_source, "table");
    json_t *a = top_json(s, 1), *c = top_json(r, 1);
    assert_json_eq(a, c, "top reports");
    json_decref(a);
    json_decref(c);
    const char *ts[] = { "Foo", "str", "list" };
    for (int i = 0; i < 3; i++) {
        a = referrers_json(s, 1, ts[i]);
        c = referrers_json(r, 1, ts[i]);
        assert_json_eq(a, c, "referrers reports");
        json_decref(a);
        json_decref(c);
    }
    pyheap_snapshot_free(r);
    pyheap_snapshot_free(s);
    free(b);
}
END_TEST

START_TEST(truncated_everywhere)
{
    pyheap_snapshot *s = synthetic();
    size_t len;
    unsigned char *b = write_mem(s, 1, &len);
    for (size_t l = 0; l < len; l++) {
        unsigned char *c = malloc(l ? l : 1);   /* exact size: ASan sees overreads */
        memcpy(c, b, l);
        expect_reject(c, l, l >= 8 ? "truncated" : NULL);
        free(c);
    }
    /* a byte too many */
    unsigned char *c = malloc(len + 1);
    memcpy(c, b, len);
    c[len] = 0;
    expect_reject(c, len + 1, "trailing bytes");
    free(c);
    pyheap_snapshot_free(s);
    free(b);
}
END_TEST

START_TEST(every_byte_flipped)
{
    pyheap_snapshot *s = synthetic();
    size_t len;
    unsigned char *b = write_mem(s, 1, &len);
    unsigned char *c = malloc(len);
    for (size_t i = 0; i < len; i++) {
        memcpy(c, b, len);
        c[i] ^= 0x5a;
        expect_reject(c, len, NULL);
    }
    /* Resealed (checksums recomputed): the structural checks alone must
     * hold; whatever parses must be safe to use. */
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(c, b, len);
            c[i] ^= (unsigned char)(1u << bit);
            pyheap_snapfile_seal(c, len);
            pyheap_snapshot *r = NULL;
            pyheap_error err;
            if (pyheap_snapfile_parse(c, len, &r, NULL, &err) == 0) {
                json_t *j = top_json(r, 1);
                json_decref(j);
                for (size_t o = 0; o < pyheap_snapshot_count(r); o++)
                    for (size_t k = 0; k < pyheap_snapshot_nedges(r, o); k++)
                        ck_assert_uint_lt(pyheap_snapshot_edge_target(r, o, k),
                                          pyheap_snapshot_count(r));
                pyheap_snapshot_free(r);
            } else {
                ck_assert(err.code == PYHEAP_E_CORRUPT || err.code == PYHEAP_E_UNSUPPORTED);
            }
        }
    }
    free(c);
    pyheap_snapshot_free(s);
    free(b);
}
END_TEST

START_TEST(crafted_files)
{
    pyheap_snapshot *s = synthetic();
    size_t len;
    unsigned char *b = write_mem(s, 1, &len);
    unsigned char *c = malloc(len);
    size_t n = pyheap_snapshot_count(s);

    memcpy(c, b, len);
    c[0] = 'X';
    expect_reject(c, len, "bad magic");

    memcpy(c, b, len);
    wr32(c + 8, 2);
    expect_reject(c, len, "format version 2");

    memcpy(c, b, len);
    c[40] ^= 1;     /* time field, checksum not fixed */
    expect_reject(c, len, "header checksum");

    /* object type index beyond the type table */
    memcpy(c, b, len);
    wr32(c + sect_off(c, 2) + 16 * n, 99);
    pyheap_snapfile_seal(c, len);
    expect_reject(c, len, "beyond the type table");

    /* addresses out of order */
    memcpy(c, b, len);
    wr64(c + sect_off(c, 2) + 8, 1);
    pyheap_snapfile_seal(c, len);
    expect_reject(c, len, "ascending");

    /* edge target beyond the objects */
    memcpy(c, b, len);
    wr32(c + sect_off(c, 3) + 4 * (n + 1), (uint32_t)n);
    pyheap_snapfile_seal(c, len);
    expect_reject(c, len, "beyond the objects");

    /* a section that claims to extend past the end */
    memcpy(c, b, len);
    wr64(c + SNAPFILE_HEADER_SIZE + 2 * SNAPFILE_SECT_ENTRY + 16, (uint64_t)len);
    pyheap_snapfile_seal(c, len);
    expect_reject(c, len, "outside the file");

    /* a huge count with a small section */
    memcpy(c, b, len);
    wr64(c + SNAPFILE_HEADER_SIZE + 0 * SNAPFILE_SECT_ENTRY + 24, 1ull << 60);
    pyheap_snapfile_seal(c, len);
    expect_reject(c, len, "types");

    /* a type-name length past its section */
    memcpy(c, b, len);
    wr32(c + sect_off(c, 1), 0x7fffffff);
    pyheap_snapfile_seal(c, len);
    expect_reject(c, len, "types string 0");

    /* root naming an object beyond the objects */
    memcpy(c, b, len);
    wr32(c + sect_off(c, 5), 1000);
    pyheap_snapfile_seal(c, len);
    expect_reject(c, len, "root 0");

    /* the loader names the file */
    char path[] = "/tmp/pyheap-snapfile-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, b, len / 2), (ssize_t)(len / 2));
    close(fd);
    pyheap_snapshot *r = NULL;
    pyheap_error err;
    ck_assert_int_eq(pyheap_snapfile_load(path, &r, NULL, &err), -1);
    ck_assert_int_eq(err.code, PYHEAP_E_CORRUPT);
    ck_assert_msg(strstr(err.msg, path) && strstr(err.msg, "truncated"), "%s", err.msg);
    unlink(path);
    ck_assert_int_eq(pyheap_snapfile_load("/nonexistent/x.snap", &r, NULL, &err), -1);
    ck_assert_int_eq(err.code, PYHEAP_E_IO);

    free(c);
    pyheap_snapshot_free(s);
    free(b);
}
END_TEST

/* ---- a real heap ---- */

static pid_t spawn_counter(char *dir)
{
    ck_assert_ptr_nonnull(mkdtemp(dir));
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char script[512];
        snprintf(script, sizeof script, "%s/tests/targets/counter_target.py", test_srcdir());
        execl(PYTHON, PYTHON, script, dir, (char *)NULL);
        _exit(127);
    }
    char ready[128];
    snprintf(ready, sizeof ready, "%s/ready", dir);
    for (int i = 0; i < 1000 && access(ready, F_OK) != 0; i++)
        usleep(10000);
    ck_assert_msg(access(ready, F_OK) == 0, PYTHON " target did not start");
    return pid;
}

static void stop(pid_t pid, const char *dir)
{
    test_reap(pid);
    test_rm_rf(dir);
}

/* Run the CLI, return its stdout parsed as JSON. */
static json_t *cli_json(const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/pyheap %s", test_builddir(), args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    json_error_t je;
    json_t *o = json_loadf(p, 0, &je);
    int st = pclose(p);
    ck_assert_msg(o != NULL, "`%s` printed no JSON: %s", cmd, je.text);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "`%s` failed", cmd);
    return o;
}

START_TEST(real_heap_roundtrip)
{
    char dir[] = "/tmp/pyheap-snapfile-t-XXXXXX";
    pid_t pid = spawn_counter(dir);
    pyheap_target *t = NULL;
    pyheap_error err;
    ck_assert_msg(pyheap_target_open(pid, NULL, &t, &err) == 0, "%s", err.msg);
    pyheap_snapshot *s = NULL;
    ck_assert_msg(pyheap_snapshot_take(t, NULL, &s, &err) == 0, "%s", err.msg);
    ck_assert_uint_gt(pyheap_snapshot_count(s), 10000);

    char file[192];
    snprintf(file, sizeof file, "%s/heap.snap", dir);
    int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    pyheap_snapfile_info info;
    memset(&info, 0, sizeof info);
    info.pid = pid;
    info.time_unix = (int64_t)time(NULL);
    snprintf(info.python, sizeof info.python, "%s", pyheap_target_version(t));
    snprintf(info.offsets_source, sizeof info.offsets_source, "%s",
             pyheap_offsets_source_name(pyheap_target_offsets_source(t)));
    ck_assert_int_eq(pyheap_snapfile_write(s, &info, fd, &err), 0);
    close(fd);

    pyheap_snapshot *r = NULL;
    pyheap_snapfile_info ri;
    ck_assert_msg(pyheap_snapfile_load(file, &r, &ri, &err) == 0, "%s", err.msg);
    assert_same(s, r);
    ck_assert_int_eq(ri.pid, pid);

    /* The "live" reports, from the very snapshot written. */
    json_t *live = pyheap_report_top(t, s, PYHEAP_SORT_BYTES, 0, &err);
    ck_assert_ptr_nonnull(live);
    json_t *off;
    char args[512];
    snprintf(args, sizeof args, "top --file %s -n 0 --json", file);
    off = cli_json(args);
    assert_json_eq(live, off, "live top vs `pyheap top --file`");
    json_decref(live);
    json_decref(off);

    const char *types[] = { "DaemonProbe", "dict", "str" };
    for (int i = 0; i < 3; i++) {
        live = referrers_json(s, pid, types[i]);
        json_object_del(live, "ok");
        snprintf(args, sizeof args, "referrers %s --file %s --json", types[i], file);
        off = cli_json(args);
        assert_json_eq(live, off, "live referrers vs `pyheap referrers --file`");
        json_decref(live);
        json_decref(off);
    }

    /* Prefixes of a real file are rejected too. */
    struct stat stt;
    ck_assert_int_eq(stat(file, &stt), 0);
    size_t len = (size_t)stt.st_size;
    unsigned char *b = malloc(len);
    fd = open(file, O_RDONLY);
    ck_assert_int_eq(read(fd, b, len), (ssize_t)len);
    close(fd);
    for (size_t k = 1; k < 200; k++) {
        size_t l = len * k / 200;
        unsigned char *c = malloc(l ? l : 1);
        memcpy(c, b, l);
        expect_reject(c, l, NULL);
        free(c);
    }
    free(b);

    /* The CLI says what is wrong and exits 1. */
    ck_assert_int_eq(truncate(file, (off_t)(len - 1)), 0);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s/pyheap top --file %s 2>&1", test_builddir(), file);
    FILE *p = popen(cmd, "r");
    char out[1024] = "";
    size_t got = fread(out, 1, sizeof out - 1, p);
    out[got] = 0;
    int st = pclose(p);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 1, "exit %d: %s", st, out);
    ck_assert_msg(strstr(out, "not a valid pyheap snapshot file") && strstr(out, "truncated"),
                  "%s", out);

    pyheap_snapshot_free(r);
    pyheap_snapshot_free(s);
    pyheap_target_free(t);
    stop(pid, dir);
}
END_TEST

Suite *suite_snapfile(void)
{
    Suite *s = suite_create("snapfile");
    TCase *tc = tcase_create("file");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, synthetic_roundtrip);
    tcase_add_test(tc, truncated_everywhere);
    tcase_add_test(tc, every_byte_flipped);
    tcase_add_test(tc, crafted_files);
    tcase_add_test(tc, real_heap_roundtrip);
    suite_add_tcase(s, tc);
    return s;
}
