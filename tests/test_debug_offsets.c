/* CPython 3.13, 3.14, 3.15 at attach level (issue 4): real targets started
 * with chroot in the cached Debian sid root (tools/sid-root), release and
 * Py_DEBUG (-dbg) builds; offsets from _Py_DebugOffsets, DWARF and the
 * built-in tables, each validated live; corrupted copies of a real
 * _Py_DebugOffsets; per-version constants; refusals. */
#include <check.h>
#include <fcntl.h>
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

#include "debug_offsets.h"
#include "elf_file.h"
#include "offsets_source.h"
#include "internal.h"
#include "knownheap.h"
#include "testutil.h"

/* `chroot ROOT [env PYTHONHOME=/usr] PROG -c script`: the PID is chroot's,
 * which execs Python. Returns once the interpreter said "ready". Dies with
 * the test. PROG is under ROOT/usr/bin unless it starts with '/'. */
static pid_t spawn_chroot(const char *prog)
{
    char path[4096];
    bool abs = prog[0] == '/';
    snprintf(path, sizeof path, "%s%s%s", kh_sid_root(), abs ? "" : "/usr/bin/", prog);
    ck_assert_msg(access(path, X_OK) == 0, "%s is missing: build the sid root "
                  "with tools/sid-root (make check does)", path);
    char code[] = "import sys, time; sys.stdout.write('ready\\n'); "
                  "sys.stdout.flush(); time.sleep(120)";
    char *argv_abs[] = { "chroot", (char *)kh_sid_root(), "/usr/bin/env", "PYTHONHOME=/usr",
                         (char *)prog, "-c", code, NULL };
    char *argv_rel[] = { "chroot", (char *)kh_sid_root(), (char *)prog, "-c", code, NULL };
    int fd;
    pid_t pid = test_spawn_ready(abs ? argv_abs : argv_rel, true, 30000, &fd);
    close(fd);
    return pid;
}

static const unsigned SRC_DBG = 1u << PYHEAP_OFFSETS_DEBUG_OFFSETS;
static const unsigned SRC_DWARF = 1u << PYHEAP_OFFSETS_DWARF;
static const unsigned SRC_TABLE = 1u << PYHEAP_OFFSETS_TABLE;

struct interp {
    const char *prog;
    int minor;
    bool debug_build;   /* Py_DEBUG: the table does not describe it */
};

static const struct interp interps[] = {
    {"python3.13", 13, false}, {"python3.14", 14, false}, {"python3.15", 15, false},
    {"python3.13-dbg", 13, true}, {"python3.14-dbg", 14, true},
    {"python3.15-dbg", 15, true},
};
#define NINTERPS (sizeof interps / sizeof interps[0])

static pyheap_target *open_src(pid_t pid, unsigned mask, pyheap_error *err,
                               double *ms)
{
    pyheap_open_opts o = {.allowed_sources = mask};
    pyheap_target *t = NULL;
    double t0 = test_now_ms();
    int rc = pyheap_target_open(pid, &o, &t, err);
    if (ms)
        *ms = test_now_ms() - t0;
    return rc == 0 ? t : NULL;
}

/* Default order, then each source alone: what works, what refuses. */
START_TEST(open_each_source)
{
    const struct interp *in = &interps[_i];
    pid_t pid = spawn_chroot(in->prog);
    pyheap_error err = {0};
    char want[16];
    snprintf(want, sizeof want, "3.%d.", in->minor);
    double ms;

    pyheap_target *t = open_src(pid, 0, &err, &ms);
    ck_assert_msg(t, "%s: open: %s", in->prog, err.msg);
    ck_assert_msg(strncmp(pyheap_target_version(t), want, strlen(want)) == 0,
                  "%s: version %s", in->prog, pyheap_target_version(t));
    ck_assert_msg(strstr(pyheap_target_module(t), in->debug_build ? "d" : in->prog),
                  "module %s", pyheap_target_module(t));
    pyheap_offsets_source want_src = in->debug_build ? PYHEAP_OFFSETS_DWARF
                                                     : PYHEAP_OFFSETS_DEBUG_OFFSETS;
    ck_assert_msg(pyheap_target_offsets_source(t) == want_src, "%s: source %s (%s)",
                  in->prog, pyheap_offsets_source_name(pyheap_target_offsets_source(t)),
                  pyheap_target_offsets_detail(t));
    ck_assert_str_eq(pyheap_offsets_source_name(pyheap_target_offsets_source(t)),
                     in->debug_build ? "dwarf" : "debug_offsets");
    ck_assert(pyheap_target_walk_supported(t)); /* the walker port (i4b) covers 3.13-3.15 */
    ck_assert_int_eq(t->minor, in->minor);
    ck_assert_uint_ne(t->py_version, 0);
    fprintf(stderr, "debug_offsets: %s %s default -> %s in %.1f ms\n", in->prog,
            pyheap_target_version(t),
            pyheap_offsets_source_name(pyheap_target_offsets_source(t)), ms);
    /* The offsets the walker port needs are there. */
    ck_assert_uint_ne(t->off.tstate_current_frame, PYHEAP_OFF_ABSENT);
    ck_assert_uint_ne(t->off.iframe_f_executable, PYHEAP_OFF_ABSENT);
    ck_assert_uint_ne(t->off.long_lv_tag, PYHEAP_OFF_ABSENT);
    ck_assert_uint_ne(t->off.interp_types_builtins_initialized, PYHEAP_OFF_ABSENT);
    ck_assert_uint_eq(t->off.tstate_cframe, PYHEAP_OFF_ABSENT);
    ck_assert_uint_eq(t->off.unicode_wstr, PYHEAP_OFF_ABSENT);
    ck_assert_uint_eq(t->off.tuple_ob_item, in->minor >= 14 ? 32 : 24);
    ck_assert_uint_eq(t->off.iframe_stackpointer == PYHEAP_OFF_ABSENT, in->minor < 14);
    ck_assert_uint_eq(t->off.tstate_base_frame == PYHEAP_OFF_ABSENT, in->minor < 15);
    struct pyheap_offsets def = t->off;
    pyheap_target_free(t);

    /* DWARF alone: the -dbg binaries carry it, the release ones have a
     * zlib-compressed build-id debug file inside the root. */
    t = open_src(pid, SRC_DWARF, &err, &ms);
    ck_assert_msg(t, "%s: DWARF: %s", in->prog, err.msg);
    ck_assert_int_eq(pyheap_target_offsets_source(t), PYHEAP_OFFSETS_DWARF);
    ck_assert_msg(strstr(pyheap_target_offsets_detail(t),
                         in->debug_build ? "/usr/bin/python3." : "/usr/lib/debug/.build-id/"),
                  "%s", pyheap_target_offsets_detail(t));
    fprintf(stderr, "debug_offsets: %s dwarf in %.1f ms\n", in->prog, ms);
    /* Every field both give agrees. */
    const size_t *a = (const size_t *)&def, *b = (const size_t *)&t->off;
    for (size_t i = 0; i < sizeof def / sizeof(size_t); i++)
        if (a[i] != PYHEAP_OFF_ABSENT && b[i] != PYHEAP_OFF_ABSENT && i * 8 !=
            offsetof(struct pyheap_offsets, gcstate_young) && i * 8 !=
            offsetof(struct pyheap_offsets, gcstate_old))
            ck_assert_msg(a[i] == b[i], "%s: field #%zu: %zu vs DWARF %zu",
                          in->prog, i, a[i], b[i]);
    pyheap_target_free(t);

    /* _Py_DebugOffsets alone and the table alone: fine for the release
     * builds; the Py_DEBUG builds are refused, naming the difference. */
    for (int k = 0; k < 2; k++) {
        unsigned mask = k == 0 ? SRC_DBG : SRC_TABLE;
        memset(&err, 0, sizeof err);
        t = open_src(pid, mask, &err, &ms);
        if (in->debug_build) {
            ck_assert_msg(!t, "%s: mask %u accepted a Py_DEBUG build", in->prog, mask);
            ck_assert_int_eq(err.code, PYHEAP_E_OFFSETS);
            ck_assert_msg(strstr(err.msg, "interp_size") && strstr(err.msg, "differs"),
                          "%s", err.msg);
        } else {
            ck_assert_msg(t, "%s: mask %u: %s", in->prog, mask, err.msg);
            ck_assert_int_eq(pyheap_target_offsets_source(t),
                             k == 0 ? PYHEAP_OFFSETS_DEBUG_OFFSETS : PYHEAP_OFFSETS_TABLE);
            ck_assert(memcmp(&t->off, &def, sizeof def) == 0);
            fprintf(stderr, "debug_offsets: %s %s in %.1f ms\n", in->prog,
                    k == 0 ? "debug_offsets" : "table", ms);
            pyheap_target_free(t);
        }
    }
    test_reap(pid);
}
END_TEST

/* The constants of each version (research of the sid headers, issue 4). */
START_TEST(consts_per_version)
{
    pyheap_target t;
    memset(&t, 0, sizeof t);
    t.major = 3;
    pyheap_error err = {0};

    t.minor = 11;
    ck_assert_int_eq(pyheap_consts_init(&t, &err), 0);
    ck_assert_int_eq(t.k.managed_values_offset, -32);
    ck_assert(!t.k.inline_values && !t.k.refcnt_split && !t.k.long_lv_tag);
    ck_assert_uint_eq(t.k.unicode_ready_bit, 7);
    ck_assert_int_eq(t.k.frame_owned_by_cstack, 3);
    ck_assert_int_eq(t.k.frame_state_cleared, 4);

    t.minor = 13;
    ck_assert_int_eq(pyheap_consts_init(&t, &err), 0);
    ck_assert_uint_eq(t.k.tpflags_inline_values, 1u << 2);
    ck_assert_uint_eq(t.k.tpflags_preheader, (1u << 3) | (1u << 4));
    ck_assert_int_eq(t.k.managed_dict_offset, -24);
    ck_assert_int_eq(t.k.managed_weakref_offset, -32);
    ck_assert_int_eq(t.k.managed_values_offset, 0);
    ck_assert(t.k.long_lv_tag && !t.k.refcnt_split && !t.k.stackref_tagged);
    ck_assert_uint_eq(t.k.refcnt_immortal_min, 0xffffffffu);
    ck_assert_uint_eq(t.k.unicode_ready_bit, UINT_MAX);
    ck_assert_int_eq(t.k.frame_owned_by_cstack, 3);
    ck_assert_int_eq(t.k.frame_owned_by_interpreter, -1);
    ck_assert_int_eq(t.k.frame_state_created, -3);

    t.minor = 14;
    ck_assert_int_eq(pyheap_consts_init(&t, &err), 0);
    ck_assert(t.k.refcnt_split && t.k.stackref_tagged);
    ck_assert_uint_eq(t.k.refcnt_immortal_min, 1u << 31);
    ck_assert_uint_eq(t.k.ob_flags_valid, 5);
    ck_assert_int_eq(t.k.frame_owned_by_interpreter, 3);
    ck_assert_int_eq(t.k.frame_owned_by_cstack, 4);
    ck_assert_int_eq(t.k.frame_state_cleared, 4);

    t.minor = 15;
    ck_assert_int_eq(pyheap_consts_init(&t, &err), 0);
    ck_assert_uint_eq(t.k.ob_flags_valid, 7);
    ck_assert_int_eq(t.k.frame_owned_by_cstack, -1);
    ck_assert_int_eq(t.k.frame_state_created, 0);
    ck_assert_int_eq(t.k.frame_state_executing, 4);
    ck_assert_int_eq(t.k.frame_state_cleared, 5);

    /* 3.12: DWARF could describe it, but pyheap has no constants, table
     * or interpreter to test: refused by name. */
    t.minor = 12;
    ck_assert_int_eq(pyheap_consts_init(&t, &err), -1);
    ck_assert_int_eq(err.code, PYHEAP_E_UNSUPPORTED);
    ck_assert_msg(strstr(err.msg, "3.12") && strstr(err.msg, "3.13"), "%s", err.msg);
}
END_TEST

static const char consts_probe[] =
    "#define Py_BUILD_CORE 1\n"
    "#include <Python.h>\n"
    "#include \"internal/pycore_object.h\"\n"
    "#include \"internal/pycore_dict.h\"\n"
    "#include \"internal/pycore_frame.h\"\n"
    "#include \"internal/pycore_long.h\"\n"
    "#if PY_VERSION_HEX >= 0x030E0000\n"
    "#include \"internal/pycore_stackref.h\"\n"
    "#endif\n"
    "#include <stdio.h>\n"
    "#include <string.h>\n"
    "static unsigned raw(PyASCIIObject *a) { unsigned v; memcpy(&v, &a->state, 4); return v; }\n"
    "#define P(name, v) printf(\"%s %lld\\n\", name, (long long)(v))\n"
    "int main(void) {\n"
    "  P(\"static_builtin\", _Py_TPFLAGS_STATIC_BUILTIN);\n"
    "  P(\"inline_values\", Py_TPFLAGS_INLINE_VALUES);\n"
    "  P(\"managed_weakref\", Py_TPFLAGS_MANAGED_WEAKREF);\n"
    "  P(\"managed_dict\", Py_TPFLAGS_MANAGED_DICT);\n"
    "  P(\"preheader_flags\", Py_TPFLAGS_PREHEADER);\n"
    "  P(\"heaptype\", Py_TPFLAGS_HEAPTYPE);\n"
    "  P(\"have_gc\", Py_TPFLAGS_HAVE_GC);\n"
    "  P(\"managed_dict_off\", MANAGED_DICT_OFFSET);\n"
    "  P(\"managed_weakref_off\", MANAGED_WEAKREF_OFFSET);\n"
    "  PyTypeObject tp; memset(&tp, 0, sizeof tp); tp.tp_flags = Py_TPFLAGS_MANAGED_WEAKREF;\n"
    "  P(\"preheader\", _PyType_PreHeaderSize(&tp));\n"
    "#if PY_VERSION_HEX >= 0x030E0000\n"
    "  P(\"immortal_min\", _Py_IMMORTAL_MINIMUM_REFCNT);\n"
    "#ifdef _Py_LEGACY_ABI_CHECK_FLAG\n"
    "  P(\"ob_flags_valid\", _Py_IMMORTAL_FLAGS | _Py_STATICALLY_ALLOCATED_FLAG | _Py_LEGACY_ABI_CHECK_FLAG);\n"
    "#else\n"
    "  P(\"ob_flags_valid\", _Py_IMMORTAL_FLAGS | _Py_STATICALLY_ALLOCATED_FLAG);\n"
    "#endif\n"
    "  P(\"tag_bits\", Py_TAG_BITS); P(\"int_tag\", Py_INT_TAG); P(\"null_bits\", Py_TAG_REFCNT);\n"
    "  P(\"interpreter\", FRAME_OWNED_BY_INTERPRETER);\n"
    "#else\n"
    "  P(\"immortal_min\", _Py_IMMORTAL_REFCNT);\n"
    "  P(\"ob_flags_valid\", 0); P(\"tag_bits\", 0); P(\"int_tag\", 0); P(\"null_bits\", 0);\n"
    "  P(\"interpreter\", -1);\n"
    "#endif\n"
    "#if PY_VERSION_HEX < 0x030F0000\n"
    "  P(\"cstack\", FRAME_OWNED_BY_CSTACK); P(\"completed\", FRAME_COMPLETED);\n"
    "#else\n"
    "  P(\"cstack\", -1); P(\"completed\", -2147483648LL);\n"
    "#endif\n"
    "  P(\"thread\", FRAME_OWNED_BY_THREAD); P(\"generator\", FRAME_OWNED_BY_GENERATOR);\n"
    "  P(\"frame_object\", FRAME_OWNED_BY_FRAME_OBJECT);\n"
    "  P(\"created\", FRAME_CREATED); P(\"suspended\", FRAME_SUSPENDED);\n"
    "  P(\"executing\", FRAME_EXECUTING); P(\"cleared\", FRAME_CLEARED);\n"
    "  P(\"non_size_bits\", _PyLong_NON_SIZE_BITS); P(\"sign_mask\", SIGN_MASK);\n"
    "  PyASCIIObject a; memset(&a, 0, sizeof a); a.state.kind = 7; P(\"kind_bits\", raw(&a));\n"
    "  memset(&a, 0, sizeof a); a.state.compact = 1; P(\"compact_bits\", raw(&a));\n"
    "  memset(&a, 0, sizeof a); a.state.ascii = 1; P(\"ascii_bits\", raw(&a));\n"
    "  memset(&a, 0, sizeof a); a.state.statically_allocated = 1; P(\"static_bits\", raw(&a));\n"
    "  P(\"dk_general\", DICT_KEYS_GENERAL); P(\"dk_unicode\", DICT_KEYS_UNICODE);\n"
    "  P(\"dk_split\", DICT_KEYS_SPLIT);\n"
    "  return 0;\n"
    "}\n";

static long long pv(const char *out, const char *name)
{
    char key[64];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(out, key);
    ck_assert_msg(p != NULL, "probe printed no %s", name);
    return strtoll(p + strlen(key), NULL, 10);
}

/* The constants of 3.13-3.15 equal what a probe compiled against each
 * version's headers (the sid root) prints. */
START_TEST(consts_match_sid_headers)
{
    int minor = 13 + _i;
    char dir[] = "/tmp/pyheap-consts-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char src[128], cmd[4096];
    snprintf(src, sizeof src, "%s/probe.c", dir);
    FILE *f = fopen(src, "w");
    ck_assert_ptr_nonnull(f);
    fputs(consts_probe, f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s/inc/x86_64-linux-gnu && "
             "ln -s %s/usr/include/x86_64-linux-gnu/python3.%d %s/inc/x86_64-linux-gnu/ && "
             "${CC:-cc} -std=gnu11 -w -DNDEBUG -I%s/inc -I%s/usr/include/python3.%d "
             "-o %s/probe %s && %s/probe", dir, kh_sid_root(), minor, dir, dir, kh_sid_root(),
             minor, dir, src, dir);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char out[4096] = "\n";
    size_t n = fread(out + 1, 1, sizeof out - 2, p);
    out[n + 1] = '\0';
    ck_assert_msg(pclose(p) == 0, "the 3.%d constants probe failed", minor);
    test_rm_rf(dir);

    pyheap_target t;
    memset(&t, 0, sizeof t);
    t.major = 3;
    t.minor = minor;
    pyheap_error err = {0};
    ck_assert_int_eq(pyheap_consts_init(&t, &err), 0);
    const struct pyheap_consts *k = &t.k;
    ck_assert_uint_eq(k->tpflags_static_builtin, (uint64_t)pv(out, "static_builtin"));
    ck_assert_uint_eq(k->tpflags_inline_values, (uint64_t)pv(out, "inline_values"));
    ck_assert_uint_eq(k->tpflags_managed_weakref, (uint64_t)pv(out, "managed_weakref"));
    ck_assert_uint_eq(k->tpflags_managed_dict, (uint64_t)pv(out, "managed_dict"));
    ck_assert_uint_eq(k->tpflags_preheader, (uint64_t)pv(out, "preheader_flags"));
    ck_assert_uint_eq(k->tpflags_heaptype, (uint64_t)pv(out, "heaptype"));
    ck_assert_uint_eq(k->tpflags_have_gc, (uint64_t)pv(out, "have_gc"));
    ck_assert_int_eq(k->managed_dict_offset, pv(out, "managed_dict_off"));
    ck_assert_int_eq(k->managed_weakref_offset, pv(out, "managed_weakref_off"));
    ck_assert_uint_eq(k->preheader_managed, (uint64_t)pv(out, "preheader"));
    ck_assert_uint_eq(k->refcnt_immortal_min, (uint64_t)pv(out, "immortal_min"));
    ck_assert_uint_eq(k->ob_flags_valid, (uint64_t)pv(out, "ob_flags_valid"));
    ck_assert_uint_eq(k->stackref_tag_mask, (uint64_t)pv(out, "tag_bits"));
    ck_assert_uint_eq(k->stackref_int_tag, (uint64_t)pv(out, "int_tag"));
    ck_assert_uint_eq(k->stackref_null_bits, (uint64_t)pv(out, "null_bits"));
    ck_assert_int_eq(k->frame_owned_by_thread, pv(out, "thread"));
    ck_assert_int_eq(k->frame_owned_by_generator, pv(out, "generator"));
    ck_assert_int_eq(k->frame_owned_by_frame_object, pv(out, "frame_object"));
    ck_assert_int_eq(k->frame_owned_by_cstack, pv(out, "cstack"));
    ck_assert_int_eq(k->frame_owned_by_interpreter, pv(out, "interpreter"));
    ck_assert_int_eq(k->frame_state_created, pv(out, "created"));
    ck_assert_int_eq(k->frame_state_suspended, pv(out, "suspended"));
    ck_assert_int_eq(k->frame_state_executing, pv(out, "executing"));
    ck_assert_int_eq(k->frame_state_completed, pv(out, "completed"));
    ck_assert_int_eq(k->frame_state_cleared, pv(out, "cleared"));
    ck_assert_uint_eq(k->long_ndigits_shift, (unsigned)pv(out, "non_size_bits"));
    ck_assert_uint_eq(k->long_sign_mask, (unsigned)pv(out, "sign_mask"));
    ck_assert_uint_eq(k->unicode_kind_mask << k->unicode_kind_shift,
                      (unsigned)pv(out, "kind_bits"));
    ck_assert_uint_eq(1u << k->unicode_compact_bit, (unsigned)pv(out, "compact_bits"));
    ck_assert_uint_eq(1u << k->unicode_ascii_bit, (unsigned)pv(out, "ascii_bits"));
    ck_assert_uint_eq(1u << k->unicode_static_bit, (unsigned)pv(out, "static_bits"));
    ck_assert_uint_eq(k->dict_kind_general, (unsigned)pv(out, "dk_general"));
    ck_assert_uint_eq(k->dict_kind_unicode, (unsigned)pv(out, "dk_unicode"));
    ck_assert_uint_eq(k->dict_kind_split, (unsigned)pv(out, "dk_split"));
}
END_TEST

/* A real _Py_DebugOffsets (copied out of a live 3.X) parses, then every
 * kind of corruption of the copy is refused with a clear message. */
static void read_real(int minor, pid_t *pid, unsigned char *buf, size_t *len,
                      const struct pyheap_offsets_table **tab, uint32_t *ver)
{
    char prog[32];
    snprintf(prog, sizeof prog, "python3.%d", minor);
    *pid = spawn_chroot(prog);
    pyheap_error err = {0};
    pyheap_target *t = open_src(*pid, SRC_TABLE, &err, NULL);
    ck_assert_msg(t, "%s", err.msg);
    *tab = pyheap_offsets_table_for(3, minor);
    ck_assert_ptr_nonnull(*tab);
    *len = (*tab)->dbg.size;
    ck_assert_uint_gt(*len, 0);
    ck_assert_int_eq(pyheap_mem_read(t->mem, t->runtime_addr, buf, *len, &err), 0);
    *ver = t->py_version;
    pyheap_target_free(t);
    test_reap(*pid);
}

static void put64(unsigned char *b, size_t at, uint64_t v) { memcpy(b + at, &v, 8); }

static void expect_fail(const struct pyheap_offsets_table *tab, const unsigned char *b,
                        size_t len, uint32_t ver, pyheap_errcode code,
                        const char *needle)
{
    struct pyheap_offsets out = tab->off;
    bool provided[PYHEAP_DBG_COUNT];
    pyheap_error err = {0};
    ck_assert_int_eq(pyheap_debug_offsets_parse(tab, b, len, ver, 0, &out, provided,
                                                &err), -1);
    ck_assert_msg(err.code == code, "code %d for \"%s\"", err.code, err.msg);
    ck_assert_msg(strstr(err.msg, needle), "\"%s\" lacks \"%s\"", err.msg, needle);
}

START_TEST(corrupted_copies)
{
    int minor = 13 + _i;
    pid_t pid;
    unsigned char real[PYHEAP_DEBUG_OFFSETS_MAX], b[PYHEAP_DEBUG_OFFSETS_MAX];
    size_t len;
    const struct pyheap_offsets_table *tab;
    uint32_t ver;
    read_real(minor, &pid, real, &len, &tab, &ver);
    const struct pyheap_debug_layout *L = &tab->dbg;

    struct pyheap_offsets out = tab->off;
    bool provided[PYHEAP_DBG_COUNT];
    pyheap_error err = {0};
    int n = pyheap_debug_offsets_parse(tab, real, len, ver, 0, &out, provided, &err);
    ck_assert_msg(n > 50, "%d: %s", n, err.msg);
    ck_assert(memcmp(&out, &tab->off, sizeof out) == 0);

#define RESET() memcpy(b, real, len)
    RESET();
    expect_fail(tab, b, len - 1, ver, PYHEAP_E_CORRUPT, "truncated");
    expect_fail(tab, NULL, 0, ver, PYHEAP_E_CORRUPT, "truncated");
    b[L->cookie + 1] ^= 0x20;
    expect_fail(tab, b, len, ver, PYHEAP_E_OFFSETS, "cookie");
    RESET();
    expect_fail(tab, b, len, ver + 0x100, PYHEAP_E_OFFSETS, "version");
    put64(b, L->version, 0x030c00f0);
    expect_fail(tab, b, len, 0, PYHEAP_E_OFFSETS, "version");
    RESET();
    put64(b, L->free_threaded, 1);
    char ft[64];
    snprintf(ft, sizeof ft, "free-threaded CPython 3.%dt is not supported", minor);
    expect_fail(tab, b, len, ver, PYHEAP_E_UNSUPPORTED, ft);
    put64(b, L->free_threaded, 0x4242);
    expect_fail(tab, b, len, ver, PYHEAP_E_OFFSETS, "free_threaded");
    RESET();
    put64(b, L->sec_at[PYHEAP_DBGSEC_thread_state], 0);
    expect_fail(tab, b, len, ver, PYHEAP_E_OFFSETS, "thread_state");
    put64(b, L->sec_at[PYHEAP_DBGSEC_thread_state], 1ull << 40);
    expect_fail(tab, b, len, ver, PYHEAP_E_OFFSETS, "thread_state");
    RESET();
    put64(b, L->at[PYHEAP_DBG_tuple_ob_item], 4000);
    expect_fail(tab, b, len, ver, PYHEAP_E_OFFSETS, "ob_item");
    RESET();
    put64(b, L->at[PYHEAP_DBG_tstate_current_frame], UINT64_MAX - 3);
    expect_fail(tab, b, len, ver, PYHEAP_E_OFFSETS, "current_frame");
    RESET();
    put64(b, L->at[PYHEAP_DBG_interp_threads_head], 7345);
    expect_fail(tab, b, len, ver, PYHEAP_E_OFFSETS, "aligned");
    RESET();
    put64(b, L->at[PYHEAP_DBG_interp_gc], out.interp_size - 8);
    expect_fail(tab, b, len, ver, PYHEAP_E_OFFSETS, "gc");
    RESET();
    {
        struct pyheap_offsets o2 = tab->off;
        pyheap_error e2 = {0};
        ck_assert_int_eq(pyheap_debug_offsets_parse(tab, b, len, ver, 12345, &o2,
                                                    provided, &e2), -1);
        ck_assert_msg(strstr(e2.msg, "_PyRuntime has 12345"), "%s", e2.msg);
    }

    /* Random damage: refused or bounded, never a crash (ASan/UBSan run). */
    unsigned seed = 4242u + (unsigned)minor;
    int accepted = 0;
    for (int it = 0; it < 4000; it++) {
        RESET();
        int flips = 1 + (int)(rand_r(&seed) % 8);
        for (int f = 0; f < flips; f++)
            b[rand_r(&seed) % len] = (unsigned char)rand_r(&seed);
        size_t l = it % 10 == 0 ? rand_r(&seed) % (len + 1) : len;
        struct pyheap_offsets o3 = tab->off;
        pyheap_error e3 = {0};
        int r = pyheap_debug_offsets_parse(tab, b, l, ver, 0, &o3, provided, &e3);
        if (r < 0) {
            ck_assert(e3.msg[0] != '\0');
            continue;
        }
        accepted++;
        for (size_t i = 0; i < PYHEAP_DBG_COUNT; i++)
            if (provided[i])
                ck_assert_uint_le(*(size_t *)((char *)&o3 +
                                              pyheap_debug_offsets_field_slot(i)),
                                  16u << 20);
    }
    fprintf(stderr, "debug_offsets: 3.%d: %d of 4000 damaged copies still "
            "passed the bounds checks (values changed in range)\n", minor, accepted);
    /* Garbage from scratch is refused. */
    for (int it = 0; it < 200; it++) {
        for (size_t i = 0; i < len; i++)
            b[i] = (unsigned char)rand_r(&seed);
        struct pyheap_offsets o4 = tab->off;
        pyheap_error e4 = {0};
        ck_assert_int_eq(pyheap_debug_offsets_parse(tab, b, len, ver, 0, &o4,
                                                    provided, &e4), -1);
    }
    /* No layout before 3.13. */
    {
        struct pyheap_offsets o5 = pyheap_table_py3_11.off;
        pyheap_error e5 = {0};
        ck_assert_int_eq(pyheap_debug_offsets_parse(&pyheap_table_py3_11, real, len,
                                                    0, 0, &o5, provided, &e5), -1);
        ck_assert_int_eq(e5.code, PYHEAP_E_UNSUPPORTED);
    }
#undef RESET
}
END_TEST

/* A 3.14 binary with neither the _PyRuntime symbol nor the .PyRuntime
 * section (names patched in a copy inside the root): _PyRuntime is found
 * by scanning the module's writable mappings for a _Py_DebugOffsets that
 * validates. */
START_TEST(runtime_found_by_cookie)
{
    char dir[256], copy[512], cmd[2048];
    snprintf(dir, sizeof dir, "/tmp/pyheap-cookie-%d", (int)getpid());
    snprintf(copy, sizeof copy, "%s%s", kh_sid_root(), dir);
    ck_assert_int_eq(mkdir(copy, 0700), 0);
    snprintf(cmd, sizeof cmd,
             "python3 -c \"import sys; b = open(sys.argv[1], 'rb').read(); "
             "assert b.count(b'\\0_PyRuntime\\0') == 1 and b.count(b'\\0.PyRuntime\\0') == 1; "
             "b = b.replace(b'\\0_PyRuntime\\0', b'\\0_PyRuntimX\\0')"
             ".replace(b'\\0.PyRuntime\\0', b'\\0.PyRuntimX\\0'); "
             "open(sys.argv[2], 'wb').write(b)\" %s/usr/bin/python3.14 %s/python3.14 && "
             "chmod 755 %s/python3.14", kh_sid_root(), copy, copy);
    ck_assert_int_eq(system(cmd), 0);

    char bin[600], orig[1400];
    snprintf(bin, sizeof bin, "%s/python3.14", dir);
    snprintf(orig, sizeof orig, "%s/usr/bin/python3.14", kh_sid_root());
    pyheap_elf *e;
    pyheap_error err = {0};
    uint64_t want = 0, dummy;
    ck_assert_int_eq(pyheap_elf_open(orig, &e, &err), 0);
    ck_assert_int_eq(pyheap_elf_section(e, ".PyRuntime", &want, NULL, NULL), 0);
    pyheap_elf_close(e);
    snprintf(orig, sizeof orig, "%s%s", kh_sid_root(), bin);
    ck_assert_int_eq(pyheap_elf_open(orig, &e, &err), 0);
    ck_assert_int_eq(pyheap_elf_symbol(e, "_PyRuntime", &dummy, NULL), -1);
    ck_assert_int_eq(pyheap_elf_section(e, ".PyRuntime", &dummy, NULL, NULL), -1);
    pyheap_elf_close(e);

    pid_t pid = spawn_chroot(bin);
    double ms;
    pyheap_target *t = open_src(pid, 0, &err, &ms);
    ck_assert_msg(t, "%s", err.msg);
    ck_assert_int_eq(pyheap_target_offsets_source(t), PYHEAP_OFFSETS_DEBUG_OFFSETS);
    ck_assert_msg(strstr(pyheap_target_offsets_detail(t), "found by its cookie"), "%s",
                  pyheap_target_offsets_detail(t));
    ck_assert_uint_eq(t->runtime_addr, want);
    fprintf(stderr, "debug_offsets: _PyRuntime by cookie at 0x%llx in %.1f ms\n",
            (unsigned long long)t->runtime_addr, ms);
    pyheap_target_free(t);
    test_reap(pid);
    test_rm_rf(copy);
}
END_TEST

/* Each generated table is what tools/gen-offsets writes from the sid
 * root's headers today. */
START_TEST(tables_are_generated_output)
{
    int minor = 13 + _i;
    char cmd[8192];
    snprintf(cmd, sizeof cmd,
             "%s/tools/gen-offsets 3.%d %s/usr/include/python3.%d | "
             "cmp -s - %s/lib/tables/py3_%d.c", test_srcdir(), minor, kh_sid_root(),
             minor, test_srcdir(), minor);
    int rc = system(cmd);
    ck_assert_msg(rc != -1 && WEXITSTATUS(rc) == 0,
                  "lib/tables/py3_%d.c differs from tools/gen-offsets output: "
                  "regenerate it, never edit it", minor);
}
END_TEST

Suite *suite_debug_offsets(void)
{
    Suite *s = suite_create("debug_offsets");
    TCase *tc = tcase_create("targets");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, open_each_source, 0, NINTERPS);
    tcase_add_loop_test(tc, corrupted_copies, 0, 3);
    tcase_add_loop_test(tc, tables_are_generated_output, 0, 3);
    tcase_add_test(tc, consts_per_version);
    tcase_add_loop_test(tc, consts_match_sid_headers, 0, 3);
    tcase_add_test(tc, runtime_found_by_cookie);
    suite_add_tcase(s, tc);
    return s;
}
