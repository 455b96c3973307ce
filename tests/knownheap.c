/* known_heap.py targets on the host or in the sid chroot, and the accuracy
 * check of a scan against their ground truth (see knownheap.h). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
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

#include "knownheap.h"
#include "testutil.h"

const char *kh_sid_root(void)
{
    const char *r = getenv("PYHEAP_SID_ROOT");
    return r && *r ? r : "/var/cache/pyheap/sid-root";
}

void kh_path(const struct kh *k, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", k->dir, name);
}

long kh_counter(const struct kh *k)
{
    char p[1024];
    kh_path(k, "counter", p, sizeof p);
    FILE *f = fopen(p, "r");
    long v = -1;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb");
    ck_assert_msg(in != NULL, "%s: %s", from, strerror(errno));
    FILE *out = fopen(to, "wb");
    ck_assert_msg(out != NULL, "%s: %s", to, strerror(errno));
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    ck_assert_int_eq(fclose(out), 0);
}

void kh_start(struct kh *k, const char *root, const char *python, const char *extra)
{
    kh_start_script(k, root, python, "known_heap.py", extra);
}

void kh_start_script(struct kh *k, const char *root, const char *python, const char *name,
                     const char *extra)
{
    memset(k, 0, sizeof *k);
    snprintf(k->script, sizeof k->script, "%s", name);
    char script[4096], inner[600];
    if (root) {
        snprintf(k->root, sizeof k->root, "%s", root);
        snprintf(k->label, sizeof k->label, "%s (chroot %s)", python, root);
        char bin[600];
        snprintf(bin, sizeof bin, "%s%s", root, python);
        ck_assert_msg(access(bin, X_OK) == 0, "%s is required: build the sid root with "
                      "tools/sid-root (make check does)", bin);
        snprintf(k->dir, sizeof k->dir, "%s/tmp/pyheap-kh-XXXXXX", root);
        ck_assert_ptr_nonnull(mkdtemp(k->dir));
        chmod(k->dir, 0755);
        const char *files[] = { name, "groundtruth.py" };
        for (size_t i = 0; i < 2; i++) {
            char from[4096], to[700];
            snprintf(from, sizeof from, "%s/tests/targets/%s", test_srcdir(), files[i]);
            snprintf(to, sizeof to, "%s/%s", k->dir, files[i]);
            copy_file(from, to);
        }
        snprintf(inner, sizeof inner, "%s", k->dir + strlen(root));
        snprintf(script, sizeof script, "%s/%s", inner, name);
    } else {
        snprintf(k->label, sizeof k->label, "%s", python);
        ck_assert_msg(access(python, X_OK) == 0, "%s is required", python);
        snprintf(k->dir, sizeof k->dir, "/tmp/pyheap-kh-XXXXXX");
        ck_assert_ptr_nonnull(mkdtemp(k->dir));
        snprintf(inner, sizeof inner, "%s", k->dir);
        snprintf(script, sizeof script, "%s/tests/targets/%s", test_srcdir(), name);
        ck_assert_msg(access(script, R_OK) == 0, "%s not found (PYHEAP_SRCDIR?)", script);
    }
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (root) {
            /* chroot execs Python: the PID stays the target's. -B: no
             * __pycache__ left in the root. */
            char *argv[] = { "chroot", (char *)root, (char *)python, "-B", script, inner,
                             (char *)extra, NULL };
            execvp("chroot", argv);
        } else {
            char *argv[] = { (char *)python, script, inner, (char *)extra, NULL };
            execv(python, argv);
        }
        _exit(127);
    }
    k->pid = pid;
    char ready[1024];
    kh_path(k, "ready", ready, sizeof ready);
    for (int i = 0; i < 1800; i++) {
        if (access(ready, R_OK) == 0)
            return;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            k->pid = 0;
            kh_stop(k);
            ck_abort_msg("%s %s exited (status %d) before it was ready", python, name, st);
        }
        test_sleep_ms(100);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    k->pid = 0;
    kh_stop(k);
    ck_abort_msg("%s %s not ready after 180 s", python, name);
}

void kh_stop(struct kh *k)
{
    if (k->pid > 0) {
        kill(k->pid, SIGKILL);
        waitpid(k->pid, NULL, 0);
        k->pid = 0;
    }
    if (!k->dir[0] || strstr(k->dir, "/pyheap-kh-") == NULL)
        return;
    /* Everything in it was made by kh_start and the script. */
    char cmd[800];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", k->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", k->dir);
    k->dir[0] = 0;
}

static bool within(double got, double want, double frac)
{
    double d = got - want;
    if (d < 0)
        d = -d;
    return d <= frac * want;
}

/* Binary search in the address-ordered snapshot. */
static long find_obj(const pyheap_snapshot *s, uint64_t addr)
{
    size_t lo = 0, hi = pyheap_snapshot_count(s);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t a = pyheap_snapshot_addr(s, mid);
        if (a == addr)
            return (long)mid;
        if (a < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

static const pyheap_type_stat *hist_find(const pyheap_type_stat *h, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(h[i].name, name) == 0)
            return &h[i];
    return NULL;
}

static void truth_type(json_t *truth, const char *name, uint64_t *count, uint64_t *bytes)
{
    json_t *t = json_object_get(json_object_get(truth, "types"), name);
    *count = (uint64_t)json_integer_value(json_object_get(t, "count"));
    *bytes = (uint64_t)json_integer_value(json_object_get(t, "bytes"));
}

void kh_check_accuracy(struct kh *kp, unsigned sources, pyheap_offsets_source want_source,
                       void (*more)(struct kh *k, const pyheap_snapshot *s))
{
    struct kh k = *kp;
    const char *python = k.label;
    pyheap_open_opts oo = { .allowed_sources = sources };
    pyheap_target *t = NULL;
    pyheap_error e;
    memset(&e, 0, sizeof e);
    ck_assert_msg(pyheap_target_open(k.pid, &oo, &t, &e) == 0, "open %s: %s", python, e.msg);
    ck_assert_msg(pyheap_target_offsets_source(t) == want_source, "%s: offsets from %s, not %s",
                  python, pyheap_offsets_source_name(pyheap_target_offsets_source(t)),
                  pyheap_offsets_source_name(want_source));
    long c0 = kh_counter(&k);
    pyheap_snapshot *s = NULL;
    ck_assert_msg(pyheap_snapshot_take(t, NULL, &s, &e) == 0, "snapshot %s: %s", python, e.msg);
    const pyheap_scan_stats *st = pyheap_snapshot_stats(s);

    /* The target was not stopped: its counter keeps advancing. */
    long c1 = c0;
    for (int i = 0; i < 50 && c1 <= c0; i++) {
        test_sleep_ms(100);
        c1 = kh_counter(&k);
    }
    ck_assert_msg(c1 > c0, "%s: counter did not advance (%ld -> %ld)", python, c0, c1);

    char p[1024];
    kh_path(&k, "truth.json", p, sizeof p);
    json_error_t je;
    json_t *truth = json_load_file(p, 0, &je);
    ck_assert_msg(truth != NULL, "%s: %s", p, je.text);
    uint64_t t_objects = (uint64_t)json_integer_value(json_object_get(truth, "objects"));
    uint64_t t_bytes = (uint64_t)json_integer_value(json_object_get(truth, "bytes"));

    pyheap_type_stat *h = NULL;
    size_t nh = 0;
    ck_assert_int_eq(pyheap_histogram(s, PYHEAP_SORT_BYTES, &h, &nh, &e), 0);

    fprintf(stderr, "\n== %s (offsets: %s, python %s)\n", python,
            pyheap_offsets_source_name(pyheap_target_offsets_source(t)),
            pyheap_target_version(t));
    fprintf(stderr, "pyheap: objects %" PRIu64 " bytes %" PRIu64 " skipped %" PRIu64
            " gc_tracked %" PRIu64 " scan_ms %.1f reads %" PRIu64 " read_bytes %" PRIu64 "\n",
            st->objects, st->bytes, st->skipped, st->gc_tracked, st->scan_ms,
            st->remote_reads, st->remote_bytes);
    fprintf(stderr, "truth:  objects %" PRIu64 " bytes %" PRIu64 "  (delta objects %+.3f%%, "
            "bytes %+.3f%%)\n", t_objects, t_bytes,
            100.0 * ((double)st->objects - (double)t_objects) / (double)t_objects,
            100.0 * ((double)st->bytes - (double)t_bytes) / (double)t_bytes);
    fprintf(stderr, "%-28s %10s %10s %12s %12s\n", "type", "count", "truth", "bytes", "truth");

    /* The script's own classes: exact. */
    kh_path(&k, "expected.txt", p, sizeof p);
    FILE *ef = fopen(p, "r");
    ck_assert_ptr_nonnull(ef);
    char name[256];
    long want;
    int nexp = 0;
    bool ok = true;
    while (fscanf(ef, "%255s %ld", name, &want) == 2) {
        const pyheap_type_stat *hs = hist_find(h, nh, name);
        uint64_t tc, tb;
        truth_type(truth, name, &tc, &tb);
        uint64_t got = hs ? hs->count : 0;
        fprintf(stderr, "%-28s %10" PRIu64 " %10" PRIu64 " %12" PRIu64 " %12" PRIu64 "\n", name,
                got, tc, hs ? hs->bytes : 0, tb);
        ck_assert_msg(tc == (uint64_t)want, "ground truth has %" PRIu64 " %s, script made %ld",
                      tc, name, want);
        if (got != (uint64_t)want)
            ok = false;
        nexp++;
    }
    fclose(ef);
    ck_assert_int_ge(nexp, 5);

    /* Built-in types: counts and bytes within 2%. */
    const char *builtin[] = { "dict", "list", "tuple", "str", "int", "float", "bytes", "set" };
    char bad[1024] = "";
    for (size_t i = 0; i < sizeof builtin / sizeof builtin[0]; i++) {
        const pyheap_type_stat *hs = hist_find(h, nh, builtin[i]);
        uint64_t tc, tb;
        truth_type(truth, builtin[i], &tc, &tb);
        uint64_t gc = hs ? hs->count : 0, gb = hs ? hs->bytes : 0;
        fprintf(stderr, "%-28s %10" PRIu64 " %10" PRIu64 " %12" PRIu64 " %12" PRIu64
                "  (%+.2f%% / %+.2f%%)\n", builtin[i], gc, tc, gb, tb,
                tc ? 100.0 * ((double)gc - (double)tc) / (double)tc : 0.0,
                tb ? 100.0 * ((double)gb - (double)tb) / (double)tb : 0.0);
        ck_assert_uint_gt(tc, 100);
        if (!within((double)gc, (double)tc, 0.02) || !within((double)gb, (double)tb, 0.02)) {
            size_t l = strlen(bad);
            snprintf(bad + l, sizeof bad - l, " %s", builtin[i]);
        }
    }

    /* Per object: the same addresses, the same sizes as sys.getsizeof. */
    kh_path(&k, "objects.tsv", p, sizeof p);
    FILE *of = fopen(p, "r");
    ck_assert_ptr_nonnull(of);
    uint64_t common = 0, same = 0, lines = 0;
    char line[1024];
    while (fgets(line, sizeof line, of)) {
        unsigned long long addr;
        long long size;
        char tname[512];
        if (sscanf(line, "%llu\t%511[^\t]\t%lld", &addr, tname, &size) != 3)
            continue;
        lines++;
        long i = find_obj(s, addr);
        if (i < 0)
            continue;
        common++;
        if ((long long)pyheap_snapshot_size(s, (size_t)i) == size &&
            strcmp(pyheap_snapshot_type_name(s, pyheap_snapshot_type(s, (size_t)i)), tname) == 0)
            same++;
    }
    fclose(of);
    fprintf(stderr, "per object: %" PRIu64 " of %" PRIu64 " truth objects found at the same "
            "address (%.3f%%); %" PRIu64 " of those have the same type and size (%.3f%%)\n",
            common, lines, 100.0 * (double)common / (double)lines, same,
            100.0 * (double)same / (double)common);

    ck_assert_msg(ok, "%s: counts of known_heap's own classes differ (see stderr)", python);
    ck_assert_msg(bad[0] == 0, "%s: outside 2%% of the ground truth:%s", python, bad);
    ck_assert_msg(within((double)st->bytes, (double)t_bytes, 0.05),
                  "%s: total bytes %" PRIu64 " not within 5%% of %" PRIu64, python, st->bytes,
                  t_bytes);
    ck_assert_msg(within((double)st->objects, (double)t_objects, 0.02),
                  "%s: objects %" PRIu64 " not within 2%% of %" PRIu64, python, st->objects,
                  t_objects);
    ck_assert_msg((double)common >= 0.98 * (double)lines, "%s: only %" PRIu64 " of %" PRIu64
                  " truth objects found", python, common, lines);
    ck_assert_msg((double)same >= 0.995 * (double)common, "%s: only %" PRIu64 " of %" PRIu64
                  " common objects have the truth's type and size", python, same, common);
    ck_assert_msg(st->skipped <= 10 + st->objects / 1000,
                  "%s: %" PRIu64 " objects skipped on an idle target", python, st->skipped);
    ck_assert_int_eq(st->truncated, 0);

    if (more)
        more(&k, s);
    free(h);
    json_decref(truth);
    pyheap_snapshot_free(s);
    pyheap_target_free(t);
}


static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

void kh_check_attrs(struct kh *k)
{
    pyheap_target *t = NULL;
    pyheap_error e;
    memset(&e, 0, sizeof e);
    ck_assert_msg(pyheap_target_open(k->pid, NULL, &t, &e) == 0, "%s: open: %s", k->label,
                  e.msg);
    for (unsigned threads = 1; threads <= 2; threads++) {
        pyheap_scan_opts so = { .threads = threads };
        pyheap_snapshot *s = NULL;
        ck_assert_msg(pyheap_snapshot_take(t, &so, &s, &e) == 0, "%s: scan: %s", k->label,
                      e.msg);
        size_t holders = 0, by[4] = { 0 }, other = 0, nto = 0;
        size_t *tos = malloc(10000 * sizeof *tos);
        ck_assert_ptr_nonnull(tos);
        for (size_t i = 0; i < pyheap_snapshot_count(s); i++) {
            if (strcmp(pyheap_snapshot_type_name(s, pyheap_snapshot_type(s, i)),
                       "__main__.Holder") != 0)
                continue;
            holders++;
            for (size_t j = 0; j < pyheap_snapshot_nedges(s, i); j++) {
                char lb[64];
                pyheap_snapshot_edge_label(s, i, j, lb, sizeof lb);
                size_t to = pyheap_snapshot_edge_target(s, i, j);
                if (nto < 10000)
                    tos[nto++] = to;
                const char *tn = pyheap_snapshot_type_name(s, pyheap_snapshot_type(s, to));
                static const char *const want[4] = { "str", "bytes", "tuple", "float" };
                if (strlen(lb) == 2 && lb[0] == '.' && lb[1] >= 'a' && lb[1] <= 'd' &&
                    strcmp(tn, want[lb[1] - 'a']) == 0)
                    by[lb[1] - 'a']++;
                else
                    other++;
            }
        }
        fprintf(stderr, "instance attributes, %s (python %s, %u threads): %zu Holder, "
                ".a %zu .b %zu .c %zu .d %zu, %zu other edges\n", k->label,
                pyheap_target_version(t), threads, holders, by[0], by[1], by[2], by[3], other);
        ck_assert_uint_eq(holders, 3000);
        ck_assert_uint_eq(by[0], 3000);
        ck_assert_uint_eq(by[1], 3000);
        ck_assert_uint_eq(by[2], 3000);
        ck_assert_uint_eq(by[3], 1000);
        ck_assert_uint_eq(other, 0);
        /* each value is its own object */
        qsort(tos, nto, sizeof *tos, cmp_size);
        size_t distinct = 0;
        for (size_t i = 0; i < nto; i++)
            distinct += i == 0 || tos[i] != tos[i - 1];
        ck_assert_uint_eq(distinct, 10000);
        free(tos);
        pyheap_snapshot_free(s);
    }
    pyheap_target_free(t);
}
