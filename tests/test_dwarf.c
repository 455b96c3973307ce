/* The DWARF layout loader on real interpreters: Debian's debug build
 * python3.11d (DWARF inside), the separate debug file of python3.11 found by
 * build-id, pyenv's libpython3.11 (where present); and on broken DWARF. */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dwarf_layout.h"
#include "offsets_source.h"
#include "knownheap.h"
#include "testutil.h"

#define PYD "/usr/bin/python3.11d"
#define PY "/usr/bin/python3.11"
#define PYENV_LIB "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0"

static size_t field(const struct pyheap_offsets *o, size_t i)
{
    return *(const size_t *)((const char *)o + pyheap_dwarf_field_slot(i));
}

/* Comma-separated names of the fields where A and B differ. */
static void diff_fields(const struct pyheap_offsets *a, const struct pyheap_offsets *b,
                        char *out, size_t len)
{
    out[0] = '\0';
    for (size_t i = 0; i < pyheap_dwarf_nfields(); i++) {
        if (field(a, i) == field(b, i))
            continue;
        size_t used = strlen(out);
        snprintf(out + used, len - used, "%s%s", used ? "," : "",
                 pyheap_dwarf_field_name(i));
    }
}

/* Load all offsets from the DWARF found for PATH (host only). */
static void load(const char *path, struct pyheap_offsets *off, char *where,
                 size_t where_len, double *ms)
{
    pyheap_elf *e, *d;
    pyheap_error err = {0};
    double t0 = test_now_ms();
    ck_assert_msg(pyheap_elf_open(path, &e, &err) == 0, "%s", err.msg);
    ck_assert_msg(pyheap_dwarf_locate(0, path, e, &d, where, where_len, &err) == 0,
                  "%s", err.msg);
    char missing[1024];
    size_t nmissing = 99;
    ck_assert_msg(pyheap_dwarf_offsets(d, 3, 11, off, missing, sizeof missing, &nmissing,
                                       &err) == 0, "%s", err.msg);
    if (ms)
        *ms = test_now_ms() - t0;
    ck_assert_msg(nmissing == 0, "%s: DWARF lacks: %s", path, missing);
    ck_assert_str_eq(missing, "");
    char why[512];
    ck_assert_msg(pyheap_offsets_check_shape(3, 11, off, why, sizeof why) == 0, "%s", why);
    pyheap_elf_close(d);
    pyheap_elf_close(e);
}

START_TEST(debug_build_has_every_field)
{
    struct pyheap_offsets off;
    char where[512];
    double ms = 0;
    load(PYD, &off, where, sizeof where, &ms);
    ck_assert_str_eq(where, PYD);
    fprintf(stderr, "dwarf: %s: %zu fields in %.1f ms\n", PYD, pyheap_dwarf_nfields(), ms);
    ck_assert_msg(ms < 2000, "DWARF load took %.0f ms", ms);
    /* Independent spot checks: the object header and a few well-known
     * sizes of 64-bit 3.11 (PyObject_HEAD, PyGC_Head, PyTypeObject). */
    ck_assert_uint_eq(off.ob_refcnt, 0);
    ck_assert_uint_eq(off.ob_type, 8);
    ck_assert_uint_eq(off.pyobject, 16);
    ck_assert_uint_eq(off.gc_head, 16);
    ck_assert_uint_eq(off.tp_name, 24);
    ck_assert_uint_gt(off.type_object, off.tp_weaklist);
    ck_assert_uint_gt(off.heap_type_object, off.type_object);
}
END_TEST

/* The pydebug build and the release headers agree on every field pyheap
 * uses (Py_DEBUG in 3.11 does not define Py_TRACE_REFS, so no struct we use
 * grows). If a rebuild changes that, this list must be updated. */
START_TEST(debug_build_matches_table)
{
    struct pyheap_offsets off;
    char where[512], diff[4096];
    load(PYD, &off, where, sizeof where, NULL);
    diff_fields(&off, &pyheap_table_py3_11.off, diff, sizeof diff);
    ck_assert_msg(strcmp(diff, "") == 0, "python3.11d differs from the 3.11.2 table in: %s",
                  diff);
}
END_TEST

START_TEST(release_debug_file_by_build_id)
{
    struct pyheap_offsets off;
    char where[512], diff[4096];
    double ms = 0;
    load(PY, &off, where, sizeof where, &ms);
    fprintf(stderr, "dwarf: %s via %s in %.1f ms\n", PY, where, ms);
    ck_assert_msg(strncmp(where, "/usr/lib/debug/.build-id/", 25) == 0, "%s", where);
    diff_fields(&off, &pyheap_table_py3_11.off, diff, sizeof diff);
    /* Same release, same headers: the table must agree exactly. */
    ck_assert_msg(strcmp(diff, "") == 0, "python3.11 DWARF differs from the table in: %s",
                  diff);
}
END_TEST

START_TEST(pyenv_libpython)
{
    if (access(PYENV_LIB, R_OK) != 0) {
        fprintf(stderr, "SKIP: %s not present (pyenv 3.11.7)\n", PYENV_LIB);
        return;
    }
    struct pyheap_offsets off;
    char where[512], diff[4096];
    double ms = 0;
    load(PYENV_LIB, &off, where, sizeof where, &ms);
    fprintf(stderr, "dwarf: %s in %.1f ms\n", PYENV_LIB, ms);
    ck_assert_str_eq(where, PYENV_LIB);
    diff_fields(&off, &pyheap_table_py3_11.off, diff, sizeof diff);
    /* 3.11.7 kept the 3.11.2 layout of every struct pyheap reads. */
    ck_assert_msg(strcmp(diff, "") == 0, "3.11.7 differs from the 3.11.2 table in: %s",
                  diff);
}
END_TEST

START_TEST(shape_check_rejects_other_layouts)
{
    struct pyheap_offsets off = pyheap_table_py3_11.off;
    char why[512];
    ck_assert_int_eq(pyheap_offsets_check_shape(3, 11, &off, why, sizeof why), 0);
    /* 3.12 dropped PyASCIIObject.wstr and renamed f_func: as DWARF of 3.12
     * would show them. */
    off.unicode_wstr = PYHEAP_OFF_ABSENT;
    off.iframe_f_func = PYHEAP_OFF_ABSENT;
    ck_assert_int_eq(pyheap_offsets_check_shape(3, 11, &off, why, sizeof why), -1);
    ck_assert_msg(strstr(why, "unicode_wstr") && strstr(why, "iframe_f_func"), "%s", why);
    off = pyheap_table_py3_11.off;
    off.ob_type = 4; /* a 32-bit layout */
    ck_assert_int_eq(pyheap_offsets_check_shape(3, 11, &off, why, sizeof why), -1);
    ck_assert_int_eq(pyheap_offsets_check_shape(3, 99, &off, why, sizeof why), -1);
}
END_TEST

/* ---- broken DWARF ---- */

static char tmpdir[64];

static void copy_file(const char *from, const char *to, size_t max)
{
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(in, 0);
    ck_assert_int_ge(out, 0);
    char buf[1 << 16];
    size_t done = 0;
    while (done < max) {
        size_t want = max - done < sizeof buf ? max - done : sizeof buf;
        ssize_t r = read(in, buf, want);
        ck_assert_int_ge(r, 0);
        if (r == 0)
            break;
        ck_assert_int_eq(write(out, buf, (size_t)r), r);
        done += (size_t)r;
    }
    close(in);
    close(out);
}

/* File offset of the section header of NAME in an ELF64 file. */
static off_t shdr_pos(const char *path, const char *name, Elf64_Shdr *sh_out)
{
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    Elf64_Ehdr eh;
    ck_assert_int_eq(pread(fd, &eh, sizeof eh, 0), (ssize_t)sizeof eh);
    Elf64_Shdr strsh;
    ck_assert_int_eq(pread(fd, &strsh, sizeof strsh,
                           (off_t)(eh.e_shoff + (uint64_t)eh.e_shstrndx * eh.e_shentsize)),
                     (ssize_t)sizeof strsh);
    off_t found = -1;
    for (unsigned i = 0; i < eh.e_shnum && found < 0; i++) {
        off_t pos = (off_t)(eh.e_shoff + (uint64_t)i * eh.e_shentsize);
        Elf64_Shdr sh;
        char nm[32] = "";
        ck_assert_int_eq(pread(fd, &sh, sizeof sh, pos), (ssize_t)sizeof sh);
        ck_assert_int_ge(pread(fd, nm, sizeof nm - 1, (off_t)(strsh.sh_offset + sh.sh_name)), 0);
        if (strcmp(nm, name) == 0) {
            found = pos;
            *sh_out = sh;
        }
    }
    close(fd);
    ck_assert_msg(found >= 0, "%s has no %s", path, name);
    return found;
}

static void expect_no_offsets_v(const char *path, const char *what, int minor)
{
    pyheap_elf *e;
    pyheap_error err = {0};
    if (pyheap_elf_open(path, &e, &err) != 0) {
        ck_assert_msg(err.code == PYHEAP_E_CORRUPT, "%s: %s", what, err.msg);
        return;
    }
    struct pyheap_offsets off;
    char missing[2048];
    size_t nmissing = 0;
    int rc = pyheap_dwarf_offsets(e, 3, minor, &off, missing, sizeof missing, &nmissing, &err);
    pyheap_elf_close(e);
    if (rc != 0) {
        ck_assert_msg(err.code == PYHEAP_E_NOTFOUND || err.code == PYHEAP_E_CORRUPT,
                      "%s: code %d: %s", what, (int)err.code, err.msg);
        return;
    }
    char why[512];
    ck_assert_msg(pyheap_offsets_check_shape(3, minor, &off, why, sizeof why) != 0,
                  "%s: broken DWARF passed as the 3.%d layout", what, minor);
    ck_assert_uint_gt(nmissing, 0);
}

static void expect_no_offsets(const char *path, const char *what)
{
    expect_no_offsets_v(path, what, 11);
}

START_TEST(broken_dwarf_fails_cleanly)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pyheap-dwarf-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    char path[128];
    snprintf(path, sizeof path, "%s/python3.11d", tmpdir);
    struct stat st;
    ck_assert_int_eq(stat(PYD, &st), 0);

    /* Truncated in the middle: section headers are gone. */
    copy_file(PYD, path, (size_t)st.st_size / 2);
    expect_no_offsets(path, "truncated at half");

    /* Headers intact, .debug_info cut to its first 4 KiB (the first unit
     * runs past the end). */
    copy_file(PYD, path, (size_t)st.st_size);
    Elf64_Shdr sh;
    off_t pos = shdr_pos(path, ".debug_info", &sh);
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint64_t small = 4096;
    ck_assert_int_eq(pwrite(fd, &small, sizeof small, pos + 32 /* sh_size */), 8);
    close(fd);
    expect_no_offsets(path, ".debug_info cut to 4 KiB");

    /* .debug_info zeroed. */
    copy_file(PYD, path, (size_t)st.st_size);
    fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    char *zeros = calloc(1, (size_t)sh.sh_size);
    ck_assert_ptr_nonnull(zeros);
    ck_assert_int_eq(pwrite(fd, zeros, (size_t)sh.sh_size, (off_t)sh.sh_offset),
                     (ssize_t)sh.sh_size);
    free(zeros);
    close(fd);
    expect_no_offsets(path, ".debug_info zeroed");

    /* .debug_abbrev garbage: DIEs cannot be decoded. */
    copy_file(PYD, path, (size_t)st.st_size);
    Elf64_Shdr ab;
    (void)shdr_pos(path, ".debug_abbrev", &ab);
    fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    unsigned char *junk = malloc((size_t)ab.sh_size);
    ck_assert_ptr_nonnull(junk);
    srand(7);
    for (size_t i = 0; i < ab.sh_size; i++)
        junk[i] = (unsigned char)rand();
    ck_assert_int_eq(pwrite(fd, junk, (size_t)ab.sh_size, (off_t)ab.sh_offset),
                     (ssize_t)ab.sh_size);
    free(junk);
    close(fd);
    expect_no_offsets(path, ".debug_abbrev garbage");

    test_rm_rf(tmpdir);
}
END_TEST

/* The sid root's release 3.14: its DWARF is a separate build-id file with
 * zlib-compressed (SHF_COMPRESSED) sections. Intact it has the 3.14 shape
 * (and not the 3.13 one); damaged copies fail cleanly. */
START_TEST(compressed_debug_file_of_sid_314)
{
    char root[1024], bin[1200], dbg[1400];
    snprintf(root, sizeof root, "%s", kh_sid_root());
    snprintf(bin, sizeof bin, "%s/usr/bin/python3.14", root);
    ck_assert_msg(access(bin, R_OK) == 0, "%s missing: run tools/sid-root", bin);
    pyheap_elf *e;
    pyheap_error err = {0};
    ck_assert_int_eq(pyheap_elf_open(bin, &e, &err), 0);
    uint8_t id[64];
    size_t idlen = 0;
    ck_assert_int_eq(pyheap_elf_build_id(e, id, sizeof id, &idlen), 0);
    pyheap_elf_close(e);
    ck_assert_uint_gt(idlen, 1);
    int n = snprintf(dbg, sizeof dbg, "%s/usr/lib/debug/.build-id/%02x/", root, id[0]);
    for (size_t i = 1; i < idlen; i++)
        n += snprintf(dbg + n, sizeof dbg - (size_t)n, "%02x", id[i]);
    snprintf(dbg + n, sizeof dbg - (size_t)n, ".debug");

    ck_assert_int_eq(pyheap_elf_open(dbg, &e, &err), 0);
    struct pyheap_offsets off;
    char missing[2048], why[512];
    size_t nm = 0;
    ck_assert_msg(pyheap_dwarf_offsets(e, 3, 14, &off, missing, sizeof missing, &nm,
                                       &err) == 0, "%s", err.msg);
    ck_assert_msg(pyheap_offsets_check_shape(3, 14, &off, why, sizeof why) == 0, "%s", why);
    ck_assert_uint_eq(off.tuple_ob_item, 32);
    ck_assert_uint_eq(off.gcstate_generations, 24);
    ck_assert_uint_eq(off.gcstate_young, PYHEAP_OFF_ABSENT); /* 3.14.5+ */
    ck_assert_msg(pyheap_dwarf_offsets(e, 3, 13, &off, missing, sizeof missing, &nm,
                                       &err) == 0, "%s", err.msg);
    ck_assert_int_eq(pyheap_offsets_check_shape(3, 13, &off, why, sizeof why), -1);
    ck_assert_msg(strstr(why, "iframe_stacktop"), "%s", why);
    pyheap_elf_close(e);

    snprintf(tmpdir, sizeof tmpdir, "/tmp/pyheap-dwarf-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    char path[128];
    snprintf(path, sizeof path, "%s/py314.debug", tmpdir);
    struct stat st;
    ck_assert_int_eq(stat(dbg, &st), 0);

    copy_file(dbg, path, (size_t)st.st_size / 2);
    expect_no_offsets_v(path, "3.14 debug file truncated at half", 14);

    /* The compressed stream of .debug_info damaged after its header. */
    copy_file(dbg, path, (size_t)st.st_size);
    Elf64_Shdr sh;
    off_t pos = shdr_pos(path, ".debug_info", &sh);
    ck_assert_msg(sh.sh_flags & SHF_COMPRESSED, "the sid debug file is not compressed");
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    size_t nj = sh.sh_size > 4096 ? 4096 : (size_t)sh.sh_size;
    unsigned char junk[4096];
    srand(11);
    for (size_t i = 0; i < nj; i++)
        junk[i] = (unsigned char)rand();
    ck_assert_int_eq(pwrite(fd, junk, nj - 64, (off_t)sh.sh_offset + 64), (ssize_t)(nj - 64));
    close(fd);
    expect_no_offsets_v(path, "compressed .debug_info garbage", 14);

    /* Section size cut below the compression header's claim. */
    copy_file(dbg, path, (size_t)st.st_size);
    fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint64_t small = 100;
    ck_assert_int_eq(pwrite(fd, &small, sizeof small, pos + 32 /* sh_size */), 8);
    close(fd);
    expect_no_offsets_v(path, "compressed .debug_info cut to 100 bytes", 14);

    /* Compression header claims an absurd size. */
    copy_file(dbg, path, (size_t)st.st_size);
    fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint64_t huge = 1ull << 62;
    ck_assert_int_eq(pwrite(fd, &huge, sizeof huge, (off_t)sh.sh_offset + 8 /* ch_size */), 8);
    close(fd);
    expect_no_offsets_v(path, "compressed .debug_info with a huge ch_size", 14);

    test_rm_rf(tmpdir);
}
END_TEST

START_TEST(no_dwarf_found_for_a_copy_without_debug_file)
{
    /* /bin/true has a build-id but no installed debug file and no DWARF. */
    pyheap_elf *e, *d = NULL;
    pyheap_error err = {0};
    char where[256];
    ck_assert_int_eq(pyheap_elf_open("/bin/true", &e, &err), 0);
    ck_assert_int_eq(pyheap_dwarf_locate(0, "/bin/true", e, &d, where, sizeof where, &err), -1);
    ck_assert_int_eq(err.code, PYHEAP_E_NOTFOUND);
    ck_assert_ptr_null(d);
    ck_assert_msg(strstr(err.msg, "/bin/true"), "%s", err.msg);
    struct pyheap_offsets off;
    size_t nm;
    ck_assert_int_eq(pyheap_dwarf_offsets(e, 3, 11, &off, NULL, 0, &nm, &err), -1);
    ck_assert_int_eq(err.code, PYHEAP_E_NOTFOUND);
    pyheap_elf_close(e);
}
END_TEST

Suite *suite_dwarf(void)
{
    Suite *s = suite_create("dwarf");
    TCase *tc = tcase_create("dwarf");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, debug_build_has_every_field);
    tcase_add_test(tc, debug_build_matches_table);
    tcase_add_test(tc, release_debug_file_by_build_id);
    tcase_add_test(tc, pyenv_libpython);
    tcase_add_test(tc, shape_check_rejects_other_layouts);
    tcase_add_test(tc, broken_dwarf_fails_cleanly);
    tcase_add_test(tc, compressed_debug_file_of_sid_314);
    tcase_add_test(tc, no_dwarf_found_for_a_copy_without_debug_file);
    suite_add_tcase(s, tc);
    return s;
}
