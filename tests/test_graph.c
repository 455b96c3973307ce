/* The object graph, referrers and paths: unit tests on hand-built
 * snapshots (labels, CSR, grouping, paths, unreachable) and integration
 * tests against tests/targets/referrers.py on real 3.11 interpreters
 * (one scenario per class there). Timing figures go to stderr. */
#include <check.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "internal.h"
#include "pyheap.h"
#include "pyheap_report.h"
#include "snapshot.h"
#include "testutil.h"
#include "walk.h"

#define PY_DEBIAN "/usr/bin/python3.11"
#define PY_DEBUG "/usr/bin/python3.11d"
#define PY_PYENV "/root/.pyenv/versions/3.11.7/bin/python3.11"

/* ---- a hand-built snapshot ---- */

struct hb {
    struct snapshot_rec *recs;
    size_t n, cap;
    struct snapshot_edge_in *edges;
    size_t ne, capne;
    char **labels;
    size_t nl;
    struct snapshot_root_in roots[16];
    size_t nr;
    char **names;
    size_t nnames;
};

static void hb_init(struct hb *h, const char *const *types, size_t ntypes)
{
    memset(h, 0, sizeof *h);
    h->names = calloc(ntypes, sizeof *h->names);
    ck_assert_ptr_nonnull(h->names);
    for (size_t i = 0; i < ntypes; i++)
        h->names[i] = strdup(types[i]);
    h->nnames = ntypes;
}

/* Object number I (address 0x1000 + 16 * I: discovery order = address
 * order reversed, so the permutation is exercised). */
static uint64_t hb_addr(size_t i)
{
    return 0x100000 - 16 * (uint64_t)i;
}

static size_t hb_obj(struct hb *h, uint32_t type, uint64_t size)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 64;
        h->recs = realloc(h->recs, h->cap * sizeof *h->recs);
        ck_assert_ptr_nonnull(h->recs);
    }
    h->recs[h->n] = (struct snapshot_rec){ .addr = hb_addr(h->n), .size = size, .type = type };
    return h->n++;
}

static uint32_t hb_str(struct hb *h, enum walk_label_kind kind, const char *text)
{
    for (size_t i = 0; i < h->nl; i++)
        if (strcmp(h->labels[i], text) == 0)
            return WALK_LBL(kind, i);
    h->labels = realloc(h->labels, (h->nl + 1) * sizeof *h->labels);
    ck_assert_ptr_nonnull(h->labels);
    h->labels[h->nl] = strdup(text);
    return WALK_LBL(kind, h->nl++);
}

static void hb_edge(struct hb *h, size_t src, size_t dst, uint32_t label)
{
    if (h->ne == h->capne) {
        h->capne = h->capne ? h->capne * 2 : 64;
        h->edges = realloc(h->edges, h->capne * sizeof *h->edges);
        ck_assert_ptr_nonnull(h->edges);
    }
    h->edges[h->ne++] = (struct snapshot_edge_in){ .target = hb_addr(dst),
                                                   .src = (uint32_t)src, .label = label };
}

static void hb_root(struct hb *h, size_t obj, const char *name, int prio)
{
    ck_assert_uint_lt(h->nr, 16);
    h->roots[h->nr++] = (struct snapshot_root_in){ .addr = hb_addr(obj), .name = strdup(name),
                                                   .prio = prio };
}

static pyheap_snapshot *hb_build(struct hb *h)
{
    struct snapshot_graph_in g = { .edges = h->edges, .nedges = h->ne, .labels = h->labels,
                                   .nlabels = h->nl, .roots = h->roots, .nroots = h->nr };
    pyheap_scan_stats st;
    memset(&st, 0, sizeof st);
    pyheap_snapshot *s = NULL;
    pyheap_error e;
    ck_assert_int_eq(pyheap_snapshot_build(h->recs, h->n, h->names, h->nnames, &g, &st, &s, &e), 0);
    free(h->recs);
    free(h->edges);
    return s;
}

/* The snapshot index of hand-built object I. */
static size_t idx(const pyheap_snapshot *s, size_t i)
{
    size_t k = pyheap_snapshot_find(s, hb_addr(i));
    ck_assert_uint_ne(k, SIZE_MAX);
    return k;
}

static const pyheap_referrer_group *group(const pyheap_referrers *r, unsigned depth,
                                          const char *type, const char *via)
{
    for (size_t i = 0; i < r->ngroups; i++)
        if (r->groups[i].depth == depth && strcmp(r->groups[i].type_name, type) == 0 &&
            strcmp(r->groups[i].via, via) == 0)
            return &r->groups[i];
    return NULL;
}

static void dump(const pyheap_referrers *r)
{
    for (size_t i = 0; i < r->ngroups; i++)
        fprintf(stderr, "  %*s%s %s count=%llu bytes=%llu flags=%u\n",
                (int)r->groups[i].depth * 2, "", r->groups[i].type_name, r->groups[i].via,
                (unsigned long long)r->groups[i].count, (unsigned long long)r->groups[i].bytes,
                r->groups[i].flags);
    for (size_t i = 0; i < r->npaths; i++)
        fprintf(stderr, "  path %s x%llu\n", r->paths[i].path,
                (unsigned long long)r->paths[i].count);
    fprintf(stderr, "  unreachable %llu of %llu\n", (unsigned long long)r->unreachable,
            (unsigned long long)r->objects);
}

START_TEST(label_rendering)
{
    char *strs[] = { "sql", "x", "<stack>", "-5" };
    struct { uint32_t label; const char *want; } cases[] = {
        { WALK_LBL(LBL_KEY_STR, 0), "['sql']" }, { WALK_LBL(LBL_KEY_INT, 17), "[17]" },
        { WALK_LBL(LBL_KEY_TEXT, 3), "[-5]" }, { WALK_LBL(LBL_ATTR, 1), ".x" },
        { WALK_LBL(LBL_INDEX, 3), "[3]" }, { WALK_LBL(LBL_ITEM, 0), "[*]" },
        { WALK_LBL(LBL_DICT_KEY, 0), "(key)" }, { WALK_LBL(LBL_LOCAL, 1), ".f_locals['x']" },
        { WALK_LBL(LBL_OFFSET, 24), "<+24>" }, { WALK_LBL(LBL_TEXT, 2), "<stack>" },
        { WALK_LBL(LBL_NONE, 0), "?" },
        { WALK_LBL_WITH_FLAGS(WALK_LBL(LBL_ATTR, 1), PYHEAP_EDGE_WEAK | PYHEAP_EDGE_CUT), ".x" },
        { WALK_LBL(LBL_ATTR, 99), ".?" },
    };
    char buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = pyheap_label_render(strs, 4, cases[i].label, buf, sizeof buf);
        ck_assert_str_eq(buf, cases[i].want);
        ck_assert_uint_eq(n, strlen(cases[i].want));
    }
    /* Truncation reports the full length. */
    ck_assert_uint_eq(pyheap_label_render(strs, 4, WALK_LBL(LBL_KEY_STR, 0), buf, 4), 7);
    ck_assert_str_eq(buf, "['s");
    ck_assert_uint_eq(pyheap_label_render(strs, 4, WALK_LBL(LBL_KEY_STR, 0), NULL, 0), 7);
    /* Flags and payload survive packing. */
    uint32_t l = WALK_LBL_WITH_FLAGS(WALK_LBL(LBL_INDEX, WALK_LBL_PAYLOAD_MAX), 7);
    ck_assert_uint_eq(WALK_LBL_KIND(l), LBL_INDEX);
    ck_assert_uint_eq(WALK_LBL_FLAGS(l), 7);
    ck_assert_uint_eq(WALK_LBL_PAYLOAD(l), WALK_LBL_PAYLOAD_MAX);
    ck_assert_uint_eq(WALK_LBL_NOFLAGS(l), WALK_LBL(LBL_INDEX, WALK_LBL_PAYLOAD_MAX));
}
END_TEST

/* module m --.__dict__--> dict d --['leak']--> list L --[i]--> T x3
 * d --['cache']--> dict c --['k0'..'k19']--> T x20 (merged to [*])
 * T t0 --.next--> T t1 (a cycle of two held by nothing)
 * weakref w --() weak--> T in L */
START_TEST(hand_built_graph)
{
    const char *types[] = { "module", "dict", "list", "app.T", "weakref.ReferenceType",
                            "other.T", "str" };
    struct hb h;
    hb_init(&h, types, 7);
    size_t m = hb_obj(&h, 0, 72), d = hb_obj(&h, 1, 1000), L = hb_obj(&h, 2, 80);
    size_t t[3];
    for (int i = 0; i < 3; i++) {
        t[i] = hb_obj(&h, 3, 48);
        hb_edge(&h, L, t[i], WALK_LBL(LBL_INDEX, (uint32_t)i));
    }
    hb_edge(&h, m, d, hb_str(&h, LBL_ATTR, "__dict__"));
    hb_edge(&h, d, L, hb_str(&h, LBL_KEY_STR, "leak"));
    size_t c = hb_obj(&h, 1, 2000);
    hb_edge(&h, d, c, hb_str(&h, LBL_KEY_STR, "cache"));
    for (int i = 0; i < 20; i++) {
        char k[16];
        snprintf(k, sizeof k, "k%d", i);
        hb_edge(&h, c, hb_obj(&h, 3, 48), hb_str(&h, LBL_KEY_STR, k));
    }
    size_t c0 = hb_obj(&h, 3, 48), c1 = hb_obj(&h, 3, 48);
    hb_edge(&h, c0, c1, hb_str(&h, LBL_ATTR, "next"));
    hb_edge(&h, c1, c0, hb_str(&h, LBL_ATTR, "next"));
    size_t w = hb_obj(&h, 4, 64);
    hb_edge(&h, w, t[0], WALK_LBL_WITH_FLAGS(hb_str(&h, LBL_TEXT, "()"), PYHEAP_EDGE_WEAK));
    hb_edge(&h, L, w, WALK_LBL(LBL_INDEX, 3));
    size_t o = hb_obj(&h, 5, 32);
    hb_edge(&h, d, o, hb_str(&h, LBL_KEY_STR, "not an identifier"));
    hb_edge(&h, L, 0xdead, WALK_LBL(LBL_INDEX, 4)); /* no such object: dropped */
    hb_root(&h, m, "app", 0);
    hb_root(&h, 0xbeef, "nothing", 1);              /* no such object: dropped */
    pyheap_snapshot *s = hb_build(&h);

    /* CSR accessors */
    ck_assert_uint_eq(pyheap_snapshot_count(s), 31);
    ck_assert_uint_eq(s->edges_dropped, 1);
    ck_assert_uint_eq(pyheap_snapshot_nroots(s), 1);
    ck_assert_str_eq(pyheap_snapshot_root_name(s, 0), "app");
    ck_assert_uint_eq(pyheap_snapshot_root_object(s, 0), idx(s, m));
    size_t iL = idx(s, L);
    ck_assert_uint_eq(pyheap_snapshot_nedges(s, iL), 4);
    char buf[64];
    for (size_t k = 0; k < 3; k++) {
        ck_assert_uint_eq(pyheap_snapshot_edge_target(s, iL, k), idx(s, t[k]));
        pyheap_snapshot_edge_label(s, iL, k, buf, sizeof buf);
        char want[8];
        snprintf(want, sizeof want, "[%zu]", k);
        ck_assert_str_eq(buf, want);
    }
    ck_assert_uint_eq(pyheap_snapshot_edge_target(s, iL, 9), SIZE_MAX);
    size_t iw = idx(s, w);
    ck_assert_uint_eq(pyheap_snapshot_edge_flags(s, iw, 0), PYHEAP_EDGE_WEAK);
    ck_assert_uint_eq(pyheap_snapshot_find(s, 0x12345), SIZE_MAX);

    /* type lookup */
    uint32_t *ty;
    size_t nt;
    pyheap_error e;
    ck_assert_int_eq(pyheap_type_lookup(s, "T", &ty, &nt, &e), 0);
    ck_assert_uint_eq(nt, 2); /* app.T and other.T: ambiguous */
    free(ty);
    ck_assert_int_eq(pyheap_type_lookup(s, "app.T", &ty, &nt, &e), 0);
    ck_assert_uint_eq(nt, 1);
    ck_assert_str_eq(pyheap_snapshot_type_name(s, ty[0]), "app.T");
    free(ty);
    ck_assert_int_eq(pyheap_type_lookup(s, "Nope", &ty, &nt, &e), -1);
    ck_assert_int_eq(e.code, PYHEAP_E_NOTFOUND);
    ck_assert_int_eq(pyheap_type_lookup(s, "app.T", &ty, &nt, &e), 0);

    pyheap_referrers *r;
    ck_assert_int_eq(pyheap_referrers_compute(s, ty, nt, NULL, &r, &e), 0);
    dump(r);
    ck_assert_uint_eq(r->objects, 25);
    ck_assert_uint_eq(r->bytes, 25 * 48);
    ck_assert_uint_eq(r->unreachable, 2); /* the cycle */
    const pyheap_referrer_group *g = group(r, 1, "list", "[*]");
    ck_assert_ptr_nonnull(g);
    ck_assert_uint_eq(g->count, 1);
    ck_assert_uint_eq(g->bytes, 80);
    ck_assert_ptr_nonnull(group(r, 1, "dict", "[*]"));      /* 20 str keys merged */
    ck_assert_ptr_nonnull(group(r, 1, "app.T", ".next"));
    ck_assert_ptr_null(group(r, 1, "weakref.ReferenceType", "()")); /* weak: not a referrer */
    const pyheap_referrer_group *g2 = group(r, 2, "dict", "['leak']");
    ck_assert_ptr_nonnull(g2);
    ck_assert_ptr_eq(&r->groups[g2->parent], g);
    ck_assert_ptr_nonnull(group(r, 3, "module", ".__dict__"));
    /* depth-first order: a parent precedes its children */
    for (size_t i = 0; i < r->ngroups; i++) {
        if (r->groups[i].depth == 1)
            ck_assert_uint_eq(r->groups[i].parent, SIZE_MAX);
        else
            ck_assert_uint_lt(r->groups[i].parent, i);
    }
    /* the largest group (dict, 2000 bytes) comes first */
    ck_assert_str_eq(r->groups[0].type_name, "dict");
    ck_assert_uint_eq(r->npaths, 2);
    ck_assert_msg(strncmp(r->paths[0].path, "app.cache['k", 12) == 0, "%s", r->paths[0].path);
    ck_assert_uint_eq(r->paths[0].count, 20);
    ck_assert_msg(strncmp(r->paths[1].path, "app.leak[", 9) == 0, "%s", r->paths[1].path);
    ck_assert_uint_eq(r->paths[1].count, 3);
    pyheap_referrers_free(r);

    /* depth 1 only; one group; one path */
    pyheap_referrers_opts o1 = { .depth = 1, .max_groups = 1, .max_paths = 1 };
    ck_assert_int_eq(pyheap_referrers_compute(s, ty, nt, &o1, &r, &e), 0);
    ck_assert_uint_eq(r->ngroups, 1);
    ck_assert_uint_eq(r->npaths, 1);
    pyheap_referrers_free(r);
    pyheap_referrers_opts o2 = { .depth = 11 };
    ck_assert_int_eq(pyheap_referrers_compute(s, ty, nt, &o2, &r, &e), -1);
    free(ty);

    /* a key that is no identifier keeps its subscript */
    ck_assert_int_eq(pyheap_type_lookup(s, "other.T", &ty, &nt, &e), 0);
    ck_assert_int_eq(pyheap_referrers_compute(s, ty, nt, NULL, &r, &e), 0);
    ck_assert_uint_eq(r->npaths, 1);
    ck_assert_str_eq(r->paths[0].path, "app.__dict__['not an identifier']");
    pyheap_referrers_free(r);
    free(ty);
    pyheap_snapshot_free(s);
}
END_TEST

/* Many distinct str keys: the ones a single dict uses merge into [*], a
 * key shared by several dicts stays a group of its own. */
START_TEST(str_key_merge)
{
    const char *types[] = { "dict", "app.T" };
    struct hb h;
    hb_init(&h, types, 2);
    size_t cache = hb_obj(&h, 0, 1000);
    for (int i = 0; i < 30; i++) {
        char k[16];
        snprintf(k, sizeof k, "req%d", i);
        hb_edge(&h, cache, hb_obj(&h, 1, 48), hb_str(&h, LBL_KEY_STR, k));
    }
    for (int i = 0; i < 5; i++) {
        size_t row = hb_obj(&h, 0, 200);
        hb_edge(&h, row, hb_obj(&h, 1, 48), hb_str(&h, LBL_KEY_STR, "sql"));
    }
    pyheap_snapshot *s = hb_build(&h);
    uint32_t *ty;
    size_t nt;
    pyheap_error e;
    ck_assert_int_eq(pyheap_type_lookup(s, "T", &ty, &nt, &e), 0);
    pyheap_referrers *r;
    ck_assert_int_eq(pyheap_referrers_compute(s, ty, nt, NULL, &r, &e), 0);
    dump(r);
    ck_assert_uint_eq(r->ngroups, 2);
    const pyheap_referrer_group *g = group(r, 1, "dict", "['sql']");
    ck_assert_ptr_nonnull(g);
    ck_assert_uint_eq(g->count, 5);
    ck_assert_uint_eq(g->bytes, 1000);
    g = group(r, 1, "dict", "[*]");
    ck_assert_ptr_nonnull(g);
    ck_assert_uint_eq(g->count, 1);
    ck_assert_uint_eq(r->unreachable, 35); /* no roots at all */
    ck_assert_uint_eq(r->npaths, 0);
    pyheap_referrers_free(r);
    free(ty);
    pyheap_snapshot_free(s);
}
END_TEST

/* 1M objects, 100k of the asked-for type: the timing figure. */
START_TEST(bench_synthetic)
{
    const char *types[] = { "module", "dict", "list", "app.Conn", "str", "tuple" };
    struct hb h;
    hb_init(&h, types, 6);
    size_t m = hb_obj(&h, 0, 72), d = hb_obj(&h, 1, 4000);
    hb_edge(&h, m, d, hb_str(&h, LBL_ATTR, "__dict__"));
    hb_root(&h, m, "app", 0);
    uint32_t attr = hb_str(&h, LBL_ATTR, "name");
    size_t lists[100];
    for (int i = 0; i < 100; i++) {
        char k[16];
        snprintf(k, sizeof k, "pool%d", i);
        lists[i] = hb_obj(&h, 2, 8000);
        hb_edge(&h, d, lists[i], hb_str(&h, LBL_KEY_STR, k));
    }
    for (uint32_t i = 0; i < 100000; i++) {
        size_t c = hb_obj(&h, 3, 56);
        hb_edge(&h, lists[i % 100], c, WALK_LBL(LBL_INDEX, i / 100));
        for (int j = 0; j < 4; j++) {
            size_t x = hb_obj(&h, j < 2 ? 4 : 5, 60);
            hb_edge(&h, c, x, attr);
            size_t y = hb_obj(&h, 4, 50);
            hb_edge(&h, x, y, WALK_LBL(LBL_INDEX, 0));
        }
        hb_obj(&h, 4, 40); /* garbage */
    }
    double t0 = test_now_ms();
    pyheap_snapshot *s = hb_build(&h);
    double t1 = test_now_ms();
    uint32_t *ty;
    size_t nt;
    pyheap_error e;
    ck_assert_int_eq(pyheap_type_lookup(s, "Conn", &ty, &nt, &e), 0);
    pyheap_referrers *r;
    double t2 = test_now_ms();
    ck_assert_int_eq(pyheap_referrers_compute(s, ty, nt, NULL, &r, &e), 0);
    double t3 = test_now_ms();
    ck_assert_uint_eq(r->objects, 100000);
    ck_assert_uint_eq(r->unreachable, 0);
    ck_assert_ptr_nonnull(group(r, 1, "list", "[*]"));
    ck_assert_uint_eq(group(r, 1, "list", "[*]")->count, 100);
    ck_assert_uint_ge(r->npaths, 1);
    ck_assert_uint_eq(r->paths[0].count, 1000);
    ck_assert_msg(strncmp(r->paths[0].path, "app.pool", 8) == 0, "%s", r->paths[0].path);
    fprintf(stderr, "graph bench (synthetic): %zu objects, %zu edges: build %.0f ms, "
            "referrers of 100k objects %.0f ms\n", pyheap_snapshot_count(s), s->nedges,
            t1 - t0, t3 - t2);
    pyheap_referrers_free(r);
    free(ty);
    pyheap_snapshot_free(s);
}
END_TEST

/* ---- real targets ---- */

struct tg {
    pid_t pid;
    char dir[64];
};

static void tg_start(struct tg *k, const char *python, const char *extra)
{
    ck_assert_msg(access(python, X_OK) == 0, "%s is required for this test", python);
    snprintf(k->dir, sizeof k->dir, "/tmp/pyheap-gr-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(k->dir));
    char script[4096];
    snprintf(script, sizeof script, "%s/tests/targets/referrers.py", test_srcdir());
    ck_assert_msg(access(script, R_OK) == 0, "%s not found", script);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char *argv[] = { (char *)python, script, k->dir, extra ? "--bench" : NULL,
                         (char *)extra, NULL };
        execv(python, argv);
        _exit(127);
    }
    k->pid = pid;
    char ready[128];
    snprintf(ready, sizeof ready, "%s/ready", k->dir);
    for (int i = 0; i < 1200; i++) {
        if (access(ready, R_OK) == 0)
            return;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            k->pid = 0;
            ck_abort_msg("%s referrers.py exited (status %d) before it was ready", python, st);
        }
        struct timespec ts = { 0, 100000000L };
        nanosleep(&ts, NULL);
    }
    ck_abort_msg("referrers.py not ready after 120 s");
}

static void tg_stop(struct tg *k)
{
    if (k->pid > 0) {
        kill(k->pid, SIGKILL);
        waitpid(k->pid, NULL, 0);
        k->pid = 0;
    }
    char p[128];
    snprintf(p, sizeof p, "%s/ready", k->dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/counter", k->dir);
    unlink(p);
    rmdir(k->dir);
}

static pyheap_referrers *referrers_of(const pyheap_snapshot *s, const char *name)
{
    uint32_t *ty;
    size_t nt;
    pyheap_error e;
    ck_assert_msg(pyheap_type_lookup(s, name, &ty, &nt, &e) == 0, "%s: %s", name, e.msg);
    ck_assert_uint_eq(nt, 1);
    pyheap_referrers *r;
    ck_assert_msg(pyheap_referrers_compute(s, ty, nt, NULL, &r, &e) == 0, "%s", e.msg);
    free(ty);
    fprintf(stderr, "referrers of %s:\n", name);
    dump(r);
    return r;
}

static bool has_path(const pyheap_referrers *r, const char *prefix)
{
    for (size_t i = 0; i < r->npaths; i++)
        if (strncmp(r->paths[i].path, prefix, strlen(prefix)) == 0)
            return true;
    return false;
}

#define EXPECT_GROUP(r, d, t, v)                                                        \
    ck_assert_msg(group((r), (d), (t), (v)) != NULL, "no group %s %s at depth %d",      \
                  (t), (v), (d))
#define EXPECT_PATH(r, p) ck_assert_msg(has_path((r), (p)), "no path starting %s", (p))

/* Open K's target (*T) and take a snapshot of it. */
static pyheap_snapshot *tg_take(const struct tg *k, pyheap_target **t)
{
    pyheap_error e;
    ck_assert_msg(pyheap_target_open(k->pid, NULL, t, &e) == 0, "%s", e.msg);
    pyheap_snapshot *s;
    ck_assert_msg(pyheap_snapshot_take(*t, NULL, &s, &e) == 0, "%s", e.msg);
    return s;
}

static void scenarios(const char *python)
{
    struct tg k;
    tg_start(&k, python, NULL);
    pyheap_target *t;
    pyheap_snapshot *s = tg_take(&k, &t);
    pyheap_error e;

    /* roots */
    bool main_root = false, thread_root = false, sysmod = false;
    for (size_t i = 0; i < pyheap_snapshot_nroots(s); i++) {
        const char *n = pyheap_snapshot_root_name(s, i);
        main_root |= strcmp(n, "__main__") == 0;
        thread_root |= strncmp(n, "<thread ", 8) == 0;
        sysmod |= strcmp(n, "sys.modules") == 0;
    }
    ck_assert(main_root && thread_root && sysmod);

    /* 1: a module-level list that keeps every object it saw */
    pyheap_referrers *r = referrers_of(s, "Seen");
    ck_assert_uint_eq(r->objects, 50);
    ck_assert_uint_eq(r->unreachable, 0);
    EXPECT_GROUP(r, 1, "list", "[*]");
    EXPECT_GROUP(r, 2, "dict", "['seen_log']");
    EXPECT_GROUP(r, 3, "module", ".__dict__");
    EXPECT_PATH(r, "__main__.seen_log[");
    ck_assert_uint_eq(r->paths[0].count, 50);
    pyheap_referrers_free(r);

    /* 2: a cycle held only by itself */
    r = referrers_of(s, "__main__.Cyclic");
    ck_assert_uint_eq(r->objects, 4);
    ck_assert_uint_eq(r->unreachable, 4);
    ck_assert_uint_eq(r->npaths, 0);
    EXPECT_GROUP(r, 1, "__main__.Cyclic", ".other");
    pyheap_referrers_free(r);

    /* 3: a thread-local holding a big dict */
    r = referrers_of(s, "TLPayload");
    ck_assert_uint_eq(r->objects, 200);
    ck_assert_uint_eq(r->unreachable, 0);
    EXPECT_GROUP(r, 1, "dict", "[*]");
    EXPECT_GROUP(r, 2, "dict", "['big']");
    EXPECT_GROUP(r, 3, "_thread._local", ".__dict__");
    EXPECT_PATH(r, "__main__.tls.big[");
    pyheap_referrers_free(r);

    /* 4: a deque of dicts of strings */
    r = referrers_of(s, "Query");
    ck_assert_uint_eq(r->objects, 30);
    EXPECT_GROUP(r, 1, "dict", "['marker']");
    EXPECT_GROUP(r, 2, "collections.deque", "[*]");
    EXPECT_GROUP(r, 3, "dict", "['queries_log']");
    EXPECT_PATH(r, "__main__.queries_log[*]['marker']");
    pyheap_referrers_free(r);
    /* ... and the strs in those dicts are reached through ['sql'] */
    size_t nsql = 0;
    for (size_t i = 0; i < pyheap_snapshot_count(s); i++) {
        if (strcmp(pyheap_snapshot_type_name(s, pyheap_snapshot_type(s, i)), "collections.deque"))
            continue;
        for (size_t k2 = 0; k2 < pyheap_snapshot_nedges(s, i); k2++) {
            size_t d = pyheap_snapshot_edge_target(s, i, k2);
            char lb[32];
            pyheap_snapshot_edge_label(s, i, k2, lb, sizeof lb);
            if (strcmp(lb, "[*]") || strcmp(pyheap_snapshot_type_name(s, pyheap_snapshot_type(s, d)), "dict"))
                continue;
            for (size_t j = 0; j < pyheap_snapshot_nedges(s, d); j++) {
                pyheap_snapshot_edge_label(s, d, j, lb, sizeof lb);
                size_t v = pyheap_snapshot_edge_target(s, d, j);
                if (strcmp(lb, "['sql']") == 0 &&
                    strcmp(pyheap_snapshot_type_name(s, pyheap_snapshot_type(s, v)), "str") == 0)
                    nsql++;
            }
        }
    }
    ck_assert_uint_eq(nsql, 30);

    /* 5: a closure capturing a list */
    r = referrers_of(s, "Captured");
    ck_assert_uint_eq(r->objects, 7);
    EXPECT_GROUP(r, 1, "list", "[*]");
    EXPECT_GROUP(r, 2, "cell", ".cell_contents");
    EXPECT_GROUP(r, 3, "tuple", "[*]");
    EXPECT_PATH(r, "__main__.handler.__closure__[0].cell_contents[");
    pyheap_referrers_free(r);

    /* 6: a class attribute dict acting as a cache (40 keys: one group) */
    r = referrers_of(s, "Cached");
    ck_assert_uint_eq(r->objects, 40);
    EXPECT_GROUP(r, 1, "dict", "[*]");
    EXPECT_GROUP(r, 2, "dict", "['cache']");
    EXPECT_GROUP(r, 3, "type", ".__dict__");
    EXPECT_PATH(r, "__main__.Registry.cache['key-");
    pyheap_referrers_free(r);

    /* a threading.local attribute set in another thread */
    r = referrers_of(s, "WorkerItem");
    ck_assert_uint_eq(r->objects, 5);
    EXPECT_GROUP(r, 3, "_thread._local", ".__dict__");
    EXPECT_PATH(r, "__main__.tls2.items[");
    for (size_t i = 0; i < r->ngroups; i++) /* its borrowed pointer keeps nothing */
        ck_assert_str_ne(r->groups[i].type_name, "_thread._localdummy");
    pyheap_referrers_free(r);

    /* an attribute of an instance whose __dict__ was materialised */
    r = referrers_of(s, "HeldItem");
    EXPECT_GROUP(r, 2, "dict", "['items']");
    EXPECT_GROUP(r, 3, "__main__.Holder", ".__dict__");
    EXPECT_PATH(r, "__main__.holder.items[");
    pyheap_referrers_free(r);

    /* a __slots__ member, reported once (not also by the conservative scan) */
    r = referrers_of(s, "SlotItem");
    EXPECT_GROUP(r, 1, "__main__.Slotted", ".payload");
    for (size_t i = 0; i < r->ngroups; i++)
        ck_assert_uint_eq(r->groups[i].flags & PYHEAP_EDGE_INFERRED, 0);
    EXPECT_PATH(r, "__main__.slotted.payload");
    pyheap_referrers_free(r);

    /* functools.partial, defaultdict, a suspended generator's local */
    r = referrers_of(s, "PartialArg");
    EXPECT_GROUP(r, 2, "functools.partial", ".args");
    EXPECT_PATH(r, "__main__.bound.args[0]");
    pyheap_referrers_free(r);
    r = referrers_of(s, "DDItem");
    EXPECT_GROUP(r, 2, "collections.defaultdict", "['k']");
    EXPECT_PATH(r, "__main__.dd['k'][0]");
    pyheap_referrers_free(r);
    r = referrers_of(s, "GenItem");
    EXPECT_GROUP(r, 2, "generator", ".gi_frame.f_locals['held']");
    EXPECT_PATH(r, "__main__.gen.gi_frame.f_locals['held'][");
    pyheap_referrers_free(r);

    /* staticmethod, classmethod, property; a memoryview's exporter */
    r = referrers_of(s, "DescrItem");
    ck_assert_uint_eq(r->objects, 3);
    EXPECT_GROUP(r, 1, "staticmethod", ".__func__");
    EXPECT_GROUP(r, 1, "classmethod", ".__func__");
    EXPECT_GROUP(r, 1, "property", ".fget");
    EXPECT_PATH(r, "__main__.Descriptors.");
    pyheap_referrers_free(r);
    r = referrers_of(s, "array.array");
    EXPECT_GROUP(r, 1, "memoryview", ".obj");
    EXPECT_GROUP(r, 1, "managedbuffer", ".obj");
    EXPECT_PATH(r, "__main__.view.obj");
    pyheap_referrers_free(r);

    /* weak references are edges, flagged, and never referrers */
    r = referrers_of(s, "Weakly");
    ck_assert_uint_eq(r->objects, 3);
    for (size_t i = 0; i < r->ngroups; i++)
        ck_assert_msg(strncmp(r->groups[i].type_name, "weakref.", 8) != 0,
                      "weak reference counted as a referrer: %s %s", r->groups[i].type_name,
                      r->groups[i].via);
    EXPECT_PATH(r, "__main__.weak_targets[");
    pyheap_referrers_free(r);
    size_t weak = 0;
    for (size_t i = 0; i < pyheap_snapshot_count(s); i++) {
        const char *tn = pyheap_snapshot_type_name(s, pyheap_snapshot_type(s, i));
        if (strcmp(tn, "weakref.ReferenceType") && strcmp(tn, "weakref.KeyedRef"))
            continue;
        for (size_t k2 = 0; k2 < pyheap_snapshot_nedges(s, i); k2++) {
            size_t d = pyheap_snapshot_edge_target(s, i, k2);
            char lb[32];
            pyheap_snapshot_edge_label(s, i, k2, lb, sizeof lb);
            if (strcmp(pyheap_snapshot_type_name(s, pyheap_snapshot_type(s, d)), "__main__.Weakly") == 0 &&
                strcmp(lb, "()") == 0) {
                ck_assert_uint_eq(pyheap_snapshot_edge_flags(s, i, k2), PYHEAP_EDGE_WEAK);
                weak++;
            }
        }
    }
    ck_assert_uint_eq(weak, 6); /* weak_refs and the WeakValueDictionary's KeyedRefs */

    /* an ambiguous short name lists both types */
    uint32_t *ty;
    size_t nt;
    ck_assert_int_eq(pyheap_type_lookup(s, "Dup", &ty, &nt, &e), 0);
    ck_assert_uint_eq(nt, 2);
    free(ty);

    /* edges into modules, types and code are cut; function globals too */
    bool cut_globals = false;
    for (size_t i = 0; i < pyheap_snapshot_count(s) && !cut_globals; i++) {
        if (strcmp(pyheap_snapshot_type_name(s, pyheap_snapshot_type(s, i)), "function"))
            continue;
        for (size_t k2 = 0; k2 < pyheap_snapshot_nedges(s, i); k2++) {
            char lb[32];
            pyheap_snapshot_edge_label(s, i, k2, lb, sizeof lb);
            size_t d = pyheap_snapshot_edge_target(s, i, k2);
            const char *tn = pyheap_snapshot_type_name(s, pyheap_snapshot_type(s, d));
            if (strcmp(lb, ".__globals__") == 0)
                cut_globals = pyheap_snapshot_edge_flags(s, i, k2) & PYHEAP_EDGE_CUT;
            if (strcmp(tn, "code") == 0)
                ck_assert(pyheap_snapshot_edge_flags(s, i, k2) & PYHEAP_EDGE_CUT);
        }
    }
    ck_assert(cut_globals);

    size_t ne = 0;
    for (size_t i = 0; i < pyheap_snapshot_count(s); i++)
        ne += pyheap_snapshot_nedges(s, i);
    fprintf(stderr, "%s: %zu objects, %zu edges, %zu roots\n", python,
            pyheap_snapshot_count(s), ne, pyheap_snapshot_nroots(s));
    pyheap_snapshot_free(s);
    pyheap_target_free(t);
    tg_stop(&k);
}

START_TEST(scenarios_debian)
{
    scenarios(PY_DEBIAN);
}
END_TEST

START_TEST(scenarios_debug)
{
    scenarios(PY_DEBUG);
}
END_TEST

START_TEST(scenarios_pyenv)
{
    if (access(PY_PYENV, X_OK) != 0) {
        fprintf(stderr, "NOTICE: %s not present: scenarios_pyenv skipped\n", PY_PYENV);
        return;
    }
    scenarios(PY_PYENV);
}
END_TEST

/* ~1M objects in a real target, 100k of class Bench: timing figures. */
START_TEST(bench_real)
{
    struct tg k;
    tg_start(&k, PY_DEBIAN, "100000");
    pyheap_target *t;
    pyheap_error e;
    ck_assert_msg(pyheap_target_open(k.pid, NULL, &t, &e) == 0, "%s", e.msg);
    pyheap_snapshot *s;
    double t0 = test_now_ms();
    ck_assert_msg(pyheap_snapshot_take(t, NULL, &s, &e) == 0, "%s", e.msg);
    double t1 = test_now_ms();
    uint32_t *ty;
    size_t nt;
    ck_assert_int_eq(pyheap_type_lookup(s, "Bench", &ty, &nt, &e), 0);
    pyheap_referrers *r;
    double t2 = test_now_ms();
    ck_assert_int_eq(pyheap_referrers_compute(s, ty, nt, NULL, &r, &e), 0);
    double t3 = test_now_ms();
    dump(r);
    ck_assert_uint_eq(r->objects, 100000);
    EXPECT_PATH(r, "__main__.bench_index[");
    /* the big list is held by nothing but a local of the running frames */
    bool local_root = false;
    for (size_t i = 0; i < r->ngroups; i++)
        local_root |= r->groups[i].depth == 2 && r->groups[i].type == UINT32_MAX &&
                      strcmp(r->groups[i].type_name, "<root>") == 0 &&
                      strncmp(r->groups[i].via, "<thread ", 8) == 0 &&
                      strstr(r->groups[i].via, ".f_locals['keep']") != NULL;
    ck_assert_msg(local_root, "no <root> group for the frame local 'keep'");
    size_t n = pyheap_snapshot_count(s);
    uint64_t mem = n * (8 + 8 + 4 + 4) + 4 + s->nedges * 8;
    fprintf(stderr, "graph bench (real): %zu objects, %zu edges (%llu dropped), scan %.0f ms, "
            "referrers of 100k objects %.0f ms; snapshot arrays %.1f bytes/object "
            "(%.1f edges/object, 8 bytes/edge)\n", n, s->nedges,
            (unsigned long long)s->edges_dropped, t1 - t0, t3 - t2, (double)mem / (double)n,
            (double)s->nedges / (double)n);
    pyheap_referrers_free(r);
    free(ty);
    pyheap_snapshot_free(s);
    pyheap_target_free(t);
    tg_stop(&k);
}
END_TEST

/* ---- threads (issue 7): the same report whatever their number ---- */

/* The referrers report of TYPE at DEPTH with THREADS threads, as JSON text
 * with sorted keys (caller frees). */
static char *report_text(pid_t pid, const pyheap_snapshot *s, const char *type,
                         unsigned depth, unsigned threads)
{
    pyheap_referrers_opts ro = { .depth = depth, .threads = threads };
    pyheap_error e;
    json_t *j = pyheap_report_referrers(pid, s, type, &ro, &e);
    ck_assert_msg(j != NULL, "%s: %s", type, e.msg);
    ck_assert_msg(json_is_true(json_object_get(j, "ok")), "%s: no such type", type);
    char *text = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(j);
    ck_assert_ptr_nonnull(text);
    return text;
}

/* For each type and depth, the report with each thread count of THREADS
 * is byte-identical to the one-thread report. Returns how many reports
 * had groups (so the comparison compared something). */
static size_t same_reports(pid_t pid, const pyheap_snapshot *s, const char *const *types,
                           size_t ntypes, const unsigned *threads, size_t nthreads)
{
    static const unsigned depths[] = { 1, 3, 6 };
    size_t with_groups = 0;
    for (size_t t = 0; t < ntypes; t++)
        for (size_t d = 0; d < sizeof depths / sizeof *depths; d++) {
            char *one = report_text(pid, s, types[t], depths[d], 1);
            with_groups += strstr(one, "\"via\":") != NULL;
            for (size_t k = 0; k < nthreads; k++) {
                char *many = report_text(pid, s, types[t], depths[d], threads[k]);
                if (strcmp(one, many) != 0) {
                    size_t at = 0;
                    while (one[at] && one[at] == many[at])
                        at++;
                    ck_abort_msg("referrers of %s, depth %u: %u threads differ from one "
                                 "at byte %zu: ...%.120s... vs ...%.120s...", types[t],
                                 depths[d], threads[k], at, one + (at > 40 ? at - 40 : 0),
                                 many + (at > 40 ? at - 40 : 0));
                }
                free(many);
            }
            free(one);
        }
    return with_groups;
}

/* Referrers of TYPES with 1 thread and with THREADS (4 counts) on the
 * referrers.py heap (--bench EXTRA, or the scenarios) are the same, at the
 * production threshold or (SMALL) with none. */
static void threads_case(const char *extra, bool small, const char *const *types, size_t nt,
                         const unsigned *threads)
{
    struct tg k;
    tg_start(&k, PY_DEBIAN, extra);
    pyheap_target *t;
    pyheap_snapshot *s = tg_take(&k, &t);
    if (small)
        pyheap_graph_set_min_parallel_edges(0);
    else
        ck_assert_msg(s->nedges >= ((size_t)1 << 20), "only %zu edges: below the threshold",
                      s->nedges);
    size_t n = same_reports(k.pid, s, types, nt, threads, 4);
    ck_assert_uint_eq(n, nt * 3);
    pyheap_snapshot_free(s);
    pyheap_target_free(t);
    tg_stop(&k);
}

/* A real heap over the 1M-edge threshold: the production split. */
START_TEST(threads_same_report)
{
    static const char *const types[] = { "Bench", "str", "dict", "list", "tuple", "Seen" };
    static const unsigned threads[] = { 2, 3, 4, 1000 };
    threads_case("100000", false, types, 6, threads);
}
END_TEST

/* The scenarios' small heap with the threshold at 0: slices of a few
 * thousand edges, more threads than make sense. */
START_TEST(threads_same_report_small)
{
    static const char *const types[] = { "Seen", "Query", "Cached", "TLPayload", "Captured",
                                         "Cyclic", "str", "function" };
    static const unsigned threads[] = { 2, 3, 4, 7 };
    threads_case(NULL, true, types, 8, threads);
}
END_TEST

Suite *suite_graph(void)
{
    Suite *s = suite_create("graph");
    TCase *tc = tcase_create("unit");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, label_rendering);
    tcase_add_test(tc, hand_built_graph);
    tcase_add_test(tc, str_key_merge);
    tcase_add_test(tc, bench_synthetic);
    suite_add_tcase(s, tc);
    TCase *live = tcase_create("live");
    tcase_set_timeout(live, 300);
    tcase_add_test(live, scenarios_debian);
    tcase_add_test(live, scenarios_debug);
    tcase_add_test(live, scenarios_pyenv);
    tcase_add_test(live, bench_real);
    tcase_add_test(live, threads_same_report);
    tcase_add_test(live, threads_same_report_small);
    suite_add_tcase(s, live);
    return s;
}
