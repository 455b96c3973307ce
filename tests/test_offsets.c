/* Offsets layer: the 3.11 constants agree with the installed CPython
 * headers (compiled into a probe here), and source selection falls back to
 * the built-in table when the DWARF it finds is broken or of another
 * version, validating the table against a live target. */
#include <check.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <elf.h>

#include "offsets_source.h"
#include "testutil.h"

#define PY "/usr/bin/python3.11"
#define PYD "/usr/bin/python3.11d"
#define PY312LIB "/root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0"

static const char probe_src[] =
    "#define Py_BUILD_CORE 1\n"
    "#include <Python.h>\n"
    "#include \"internal/pycore_object.h\"\n"
    "#include \"internal/pycore_dict.h\"\n"
    "#include <stdio.h>\n"
    "#include <string.h>\n"
    "static unsigned raw(PyASCIIObject *a) { unsigned v; memcpy(&v, &a->state, 4); return v; }\n"
    "int main(void) {\n"
    "  printf(\"heaptype %lu\\n\", (unsigned long)Py_TPFLAGS_HEAPTYPE);\n"
    "  printf(\"have_gc %lu\\n\", (unsigned long)Py_TPFLAGS_HAVE_GC);\n"
    "  printf(\"managed_dict_flag %lu\\n\", (unsigned long)Py_TPFLAGS_MANAGED_DICT);\n"
    "  printf(\"long_sub %lu\\n\", (unsigned long)Py_TPFLAGS_LONG_SUBCLASS);\n"
    "  printf(\"list_sub %lu\\n\", (unsigned long)Py_TPFLAGS_LIST_SUBCLASS);\n"
    "  printf(\"tuple_sub %lu\\n\", (unsigned long)Py_TPFLAGS_TUPLE_SUBCLASS);\n"
    "  printf(\"bytes_sub %lu\\n\", (unsigned long)Py_TPFLAGS_BYTES_SUBCLASS);\n"
    "  printf(\"unicode_sub %lu\\n\", (unsigned long)Py_TPFLAGS_UNICODE_SUBCLASS);\n"
    "  printf(\"dict_sub %lu\\n\", (unsigned long)Py_TPFLAGS_DICT_SUBCLASS);\n"
    "  printf(\"exc_sub %lu\\n\", (unsigned long)Py_TPFLAGS_BASE_EXC_SUBCLASS);\n"
    "  printf(\"type_sub %lu\\n\", (unsigned long)Py_TPFLAGS_TYPE_SUBCLASS);\n"
    "  printf(\"managed_dict_off %ld\\n\", (long)MANAGED_DICT_OFFSET);\n"
    "  char buf[256]; PyObject *o = (PyObject *)(buf + 128);\n"
    "  printf(\"managed_values_off %ld\\n\", (long)((char *)_PyObject_ValuesPointer(o) - (char *)o));\n"
    "  printf(\"managed_dict_ptr_off %ld\\n\", (long)((char *)_PyObject_ManagedDictPointer(o) - (char *)o));\n"
    "  PyTypeObject tp; memset(&tp, 0, sizeof tp); tp.tp_flags = Py_TPFLAGS_MANAGED_DICT;\n"
    "  printf(\"preheader %zu\\n\", _PyType_PreHeaderSize(&tp));\n"
    "  PyASCIIObject a; memset(&a, 0, sizeof a); a.state.kind = 7;\n"
    "  printf(\"kind_bits %u\\n\", raw(&a));\n"
    "  memset(&a, 0, sizeof a); a.state.compact = 1; printf(\"compact_bits %u\\n\", raw(&a));\n"
    "  memset(&a, 0, sizeof a); a.state.ascii = 1; printf(\"ascii_bits %u\\n\", raw(&a));\n"
    "  printf(\"dk_general %d\\ndk_unicode %d\\ndk_split %d\\n\", DICT_KEYS_GENERAL,\n"
    "         DICT_KEYS_UNICODE, DICT_KEYS_SPLIT);\n"
    "  return 0;\n"
    "}\n";

static long probe_value(const char *out, const char *name)
{
    /* OUT starts with a newline, so every line is "\nname value". */
    char key[64];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *p = strstr(out, key);
    ck_assert_msg(p != NULL, "probe printed no %s", name);
    return strtol(p + strlen(key), NULL, 10);
}

START_TEST(consts_match_headers)
{
    ck_assert_msg(access("/usr/include/python3.11/Python.h", R_OK) == 0,
                  "install libpython3.11-dev");
    char dir[] = "/tmp/pyheap-consts-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char src[64], cmd[512];
    snprintf(src, sizeof src, "%s/probe.c", dir);
    FILE *f = fopen(src, "w");
    ck_assert_ptr_nonnull(f);
    fputs(probe_src, f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "${CC:-cc} -std=gnu11 -w -DNDEBUG -I/usr/include/python3.11 -o %s/probe %s "
             "&& %s/probe", dir, src, dir);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char out[4096] = "\n";
    size_t n = fread(out + 1, 1, sizeof out - 2, p);
    out[n + 1] = '\0';
    ck_assert_int_eq(pclose(p), 0);
    test_rm_rf(dir);

    pyheap_target t;
    memset(&t, 0, sizeof t);
    t.major = 3;
    t.minor = 11;
    pyheap_error err = {0};
    ck_assert_int_eq(pyheap_consts_init(&t, &err), 0);
    const struct pyheap_consts *k = &t.k;
    ck_assert_uint_eq(k->tpflags_heaptype, (uint64_t)probe_value(out, "heaptype"));
    ck_assert_uint_eq(k->tpflags_have_gc, (uint64_t)probe_value(out, "have_gc"));
    ck_assert_uint_eq(k->tpflags_managed_dict, (uint64_t)probe_value(out, "managed_dict_flag"));
    ck_assert_uint_eq(k->tpflags_long_subclass, (uint64_t)probe_value(out, "long_sub"));
    ck_assert_uint_eq(k->tpflags_list_subclass, (uint64_t)probe_value(out, "list_sub"));
    ck_assert_uint_eq(k->tpflags_tuple_subclass, (uint64_t)probe_value(out, "tuple_sub"));
    ck_assert_uint_eq(k->tpflags_bytes_subclass, (uint64_t)probe_value(out, "bytes_sub"));
    ck_assert_uint_eq(k->tpflags_unicode_subclass, (uint64_t)probe_value(out, "unicode_sub"));
    ck_assert_uint_eq(k->tpflags_dict_subclass, (uint64_t)probe_value(out, "dict_sub"));
    ck_assert_uint_eq(k->tpflags_base_exc_subclass, (uint64_t)probe_value(out, "exc_sub"));
    ck_assert_uint_eq(k->tpflags_type_subclass, (uint64_t)probe_value(out, "type_sub"));
    ck_assert_int_eq(k->managed_dict_offset, probe_value(out, "managed_dict_off"));
    ck_assert_int_eq(k->managed_dict_offset, probe_value(out, "managed_dict_ptr_off"));
    ck_assert_int_eq(k->managed_values_offset, probe_value(out, "managed_values_off"));
    ck_assert_uint_eq(k->preheader_managed, (size_t)probe_value(out, "preheader"));
    ck_assert_uint_eq((unsigned)k->unicode_kind_mask << k->unicode_kind_shift,
                      (unsigned)probe_value(out, "kind_bits"));
    ck_assert_uint_eq(1u << k->unicode_compact_bit, (unsigned)probe_value(out, "compact_bits"));
    ck_assert_uint_eq(1u << k->unicode_ascii_bit, (unsigned)probe_value(out, "ascii_bits"));
    ck_assert_uint_eq(k->dict_kind_general, (unsigned)probe_value(out, "dk_general"));
    ck_assert_uint_eq(k->dict_kind_unicode, (unsigned)probe_value(out, "dk_unicode"));
    ck_assert_uint_eq(k->dict_kind_split, (unsigned)probe_value(out, "dk_split"));

    t.minor = 12;
    ck_assert_int_eq(pyheap_consts_init(&t, &err), -1);
    ck_assert_int_eq(err.code, PYHEAP_E_UNSUPPORTED);
    ck_assert(pyheap_version_supported(3, 11));
    ck_assert(!pyheap_version_supported(3, 10));
    ck_assert_ptr_eq(pyheap_offsets_table_for(3, 11), &pyheap_table_py3_11);
    ck_assert_ptr_null(pyheap_offsets_table_for(3, 12));
}
END_TEST

/* ---- fallback to the table ---- */

static pid_t spawn_python(const char *prog)
{
    ck_assert_msg(access(prog, X_OK) == 0, "%s is missing: install it", prog);
    char *argv[] = { (char *)prog, "-c",
                     "import sys, time; sys.stdout.write('ready\\n'); sys.stdout.flush(); "
                     "time.sleep(60)",
                     NULL };
    return test_spawn_ready(argv, false, 20000, NULL);
}

/* Open a live python3.11 and ask the offsets layer to load offsets with
 * MODULE_FILE standing in as the interpreter module (for its DWARF). */
static void load_with_module(const char *module_file, unsigned allowed,
                             pyheap_target **tout, pid_t *pid_out, int *rc,
                             pyheap_error *err)
{
    pid_t pid = spawn_python(PY);
    pyheap_open_opts o = {.allowed_sources = 1u << PYHEAP_OFFSETS_TABLE};
    pyheap_target *t = NULL;
    ck_assert_msg(pyheap_target_open(pid, &o, &t, err) == 0, "%s", err->msg);
    struct pyheap_module mod;
    memset(&mod, 0, sizeof mod);
    snprintf(mod.path, sizeof mod.path, "%s", module_file);
    ck_assert_msg(pyheap_elf_open(module_file, &mod.elf, err) == 0, "%s", err->msg);
    mod.runtime_addr = t->runtime_addr;
    memset(&t->off, 0xff, sizeof t->off);
    t->source = PYHEAP_OFFSETS_NONE;
    *rc = pyheap_offsets_load(t, &mod, allowed, err);
    pyheap_proc_module_clear(&mod);
    *tout = t;
    *pid_out = pid;
}

START_TEST(broken_dwarf_falls_back_to_table)
{
    /* python3.11d with its .debug_info cut short: DWARF is there, unusable. */
    char dir[] = "/tmp/pyheap-fallback-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char copy[64], cmd[256];
    snprintf(copy, sizeof copy, "%s/python3.11d", dir);
    snprintf(cmd, sizeof cmd, "cp " PYD " '%s'", copy);
    ck_assert_int_eq(system(cmd), 0);
    int fd = open(copy, O_RDWR);
    ck_assert_int_ge(fd, 0);
    Elf64_Ehdr eh;
    ck_assert_int_eq(pread(fd, &eh, sizeof eh, 0), (ssize_t)sizeof eh);
    Elf64_Shdr strsh;
    ck_assert_int_eq(pread(fd, &strsh, sizeof strsh,
                           (off_t)(eh.e_shoff + (uint64_t)eh.e_shstrndx * eh.e_shentsize)),
                     (ssize_t)sizeof strsh);
    bool patched = false;
    for (unsigned i = 0; i < eh.e_shnum; i++) {
        off_t pos = (off_t)(eh.e_shoff + (uint64_t)i * eh.e_shentsize);
        Elf64_Shdr sh;
        char nm[16] = "";
        ck_assert_int_eq(pread(fd, &sh, sizeof sh, pos), (ssize_t)sizeof sh);
        ck_assert_int_ge(pread(fd, nm, sizeof nm - 1, (off_t)(strsh.sh_offset + sh.sh_name)), 0);
        if (strcmp(nm, ".debug_info") == 0) {
            sh.sh_size = 64;
            ck_assert_int_eq(pwrite(fd, &sh, sizeof sh, pos), (ssize_t)sizeof sh);
            patched = true;
        }
    }
    close(fd);
    ck_assert(patched);

    pyheap_target *t;
    pid_t pid;
    int rc;
    pyheap_error err = {0};
    load_with_module(copy, 0, &t, &pid, &rc, &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
    fprintf(stderr, "fallback: %s\n", t->source_detail);
    ck_assert_int_eq(t->source, PYHEAP_OFFSETS_TABLE);
    ck_assert_msg(strstr(t->source_detail, "built-in table for 3.11") &&
                  strstr(t->source_detail, "not DWARF"), "%s", t->source_detail);
    ck_assert_uint_eq(t->off.tp_name, pyheap_table_py3_11.off.tp_name);
    pyheap_target_free(t);
    test_reap(pid);
    test_rm_rf(dir);
}
END_TEST

START_TEST(other_version_dwarf_is_rejected)
{
    if (access(PY312LIB, R_OK) != 0) {
        fprintf(stderr, "SKIP: %s not present\n", PY312LIB);
        return;
    }
    pyheap_target *t;
    pid_t pid;
    int rc;
    pyheap_error err = {0};
    load_with_module(PY312LIB, 0, &t, &pid, &rc, &err);
    ck_assert_msg(rc == 0, "%s", err.msg);
    fprintf(stderr, "fallback: %s\n", t->source_detail);
    ck_assert_int_eq(t->source, PYHEAP_OFFSETS_TABLE);
    ck_assert_msg(strstr(t->source_detail, "rejected") &&
                  strstr(t->source_detail, "not the 3.11 layout") &&
                  strstr(t->source_detail, "unicode_wstr"), "%s", t->source_detail);
    pyheap_target_free(t);

    test_reap(pid);

    /* With the table not allowed, nothing is left: a clear error. */
    load_with_module(PY312LIB, 1u << PYHEAP_OFFSETS_DWARF, &t, &pid, &rc, &err);
    ck_assert_int_eq(rc, -1);
    fprintf(stderr, "no source: %s\n", err.msg);
    ck_assert_int_eq(err.code, PYHEAP_E_OFFSETS);
    ck_assert_msg(strstr(err.msg, "rejected") && strstr(err.msg, PY312LIB), "%s", err.msg);
    ck_assert_int_eq(t->source, PYHEAP_OFFSETS_NONE);
    pyheap_target_free(t);
    test_reap(pid);
}
END_TEST

Suite *suite_offsets(void)
{
    Suite *s = suite_create("offsets");
    TCase *tc = tcase_create("offsets");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, consts_match_headers);
    tcase_add_test(tc, broken_dwarf_falls_back_to_table);
    tcase_add_test(tc, other_version_dwarf_is_rejected);
    suite_add_tcase(s, tc);
    return s;
}
