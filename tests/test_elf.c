/* The ELF reader on the real /usr/bin/python3.11 and on broken copies of
 * it (zero-length, garbage, truncated, wrong class/machine, corrupted):
 * broken files give clean errors, never a crash (run under SANITIZE=1). */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elf_file.h"
#include "testutil.h"

#define PY "/usr/bin/python3.11"

static unsigned char *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    ck_assert_msg(fd >= 0, "%s is missing (install python3.11)", path);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    unsigned char *buf = malloc((size_t)st.st_size);
    ck_assert_ptr_nonnull(buf);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        ck_assert_int_gt(r, 0);
        got += (size_t)r;
    }
    close(fd);
    *len = got;
    return buf;
}

static void spit(const char *path, const unsigned char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        ck_assert_int_gt(w, 0);
        off += (size_t)w;
    }
    close(fd);
}

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/pyheap-elf-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void rm_tmpdir(void)
{
    test_rm_rf(tmpdir);
}

/* Every query on an opened (possibly broken) file must return cleanly. */
static void exercise(pyheap_elf *e)
{
    uint64_t v, s, a, sz;
    unsigned type;
    uint8_t id[PYHEAP_BUILD_ID_MAX];
    size_t idlen;
    char name[256];
    uint32_t crc;
    (void)pyheap_elf_symbol(e, "_PyRuntime", &v, &s);
    (void)pyheap_elf_symbol(e, "no_such_symbol_at_all", &v, &s);
    (void)pyheap_elf_section(e, ".PyRuntime", &a, &sz, &type);
    (void)pyheap_elf_build_id(e, id, sizeof id, &idlen);
    (void)pyheap_elf_debuglink(e, name, sizeof name, &crc);
    (void)pyheap_elf_has_debug_info(e);
    (void)pyheap_elf_first_load(e, &a, &v, NULL);
    const char *names[] = {"PyType_Type", "PyDict_Type", "Py_Version"};
    uint64_t vals[3] = {0};
    (void)pyheap_elf_symbols(e, names, 3, vals);
}

START_TEST(real_python)
{
    pyheap_elf *e;
    pyheap_error err = {0};
    ck_assert_msg(pyheap_elf_open(PY, &e, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(pyheap_elf_type(e), ET_EXEC);

    uint64_t rt, rtsize, sec, secsize;
    unsigned type;
    ck_assert_int_eq(pyheap_elf_symbol(e, "_PyRuntime", &rt, &rtsize), 0);
    ck_assert_int_eq(pyheap_elf_section(e, ".PyRuntime", &sec, &secsize, &type), 0);
    /* _PyRuntime is what the .PyRuntime section holds. */
    ck_assert_uint_eq(rt, sec);
    ck_assert_uint_le(rtsize, secsize);
    ck_assert_uint_gt(rtsize, 1000);

    uint64_t ver, versize;
    ck_assert_int_eq(pyheap_elf_symbol(e, "Py_Version", &ver, &versize), 0);
    ck_assert_uint_eq(versize, 8); /* const unsigned long */
    ck_assert_int_eq(pyheap_elf_symbol(e, "PyRuntime_not_a_symbol", &ver, NULL), -1);

    const char *names[] = {"PyType_Type", "PyDict_Type", "PyLong_Type", "nope"};
    uint64_t vals[4] = {0};
    ck_assert_uint_eq(pyheap_elf_symbols(e, names, 4, vals), 3);
    ck_assert_uint_ne(vals[0], 0);
    ck_assert_uint_ne(vals[0], vals[1]);
    ck_assert_uint_eq(vals[3], 0);

    /* build-id: Debian installs the debug file under its hex name. */
    uint8_t id[PYHEAP_BUILD_ID_MAX];
    size_t idlen = 0;
    ck_assert_int_eq(pyheap_elf_build_id(e, id, sizeof id, &idlen), 0);
    ck_assert_uint_eq(idlen, 20);
    char hex[41];
    for (size_t i = 0; i < idlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", id[i]);
    char dbg[128];
    snprintf(dbg, sizeof dbg, "/usr/lib/debug/.build-id/%.2s/%s.debug", hex, hex + 2);
    ck_assert_msg(access(dbg, R_OK) == 0, "%s missing (install python3.11-dbg)", dbg);

    /* .gnu_debuglink names that file, and its CRC matches it. */
    char link[256];
    uint32_t crc = 0, filecrc = 1;
    ck_assert_int_eq(pyheap_elf_debuglink(e, link, sizeof link, &crc), 0);
    char want[64];
    snprintf(want, sizeof want, "%s.debug", hex + 2);
    ck_assert_str_eq(link, want);
    ck_assert_int_eq(pyheap_elf_file_crc(dbg, &filecrc, &err), 0);
    ck_assert_uint_eq(crc, filecrc);

    ck_assert(!pyheap_elf_has_debug_info(e));
    uint64_t poff, pvaddr;
    ck_assert_int_eq(pyheap_elf_first_load(e, &poff, &pvaddr, &err), 0);
    ck_assert_uint_eq(poff, 0);
    ck_assert_uint_eq(pvaddr, 0x400000); /* non-PIE x86_64 */
    pyheap_elf_close(e);

    /* The debug file has DWARF and the same build-id. */
    ck_assert_int_eq(pyheap_elf_open(dbg, &e, &err), 0);
    ck_assert(pyheap_elf_has_debug_info(e));
    uint8_t id2[PYHEAP_BUILD_ID_MAX];
    size_t id2len = 0;
    ck_assert_int_eq(pyheap_elf_build_id(e, id2, sizeof id2, &id2len), 0);
    ck_assert_uint_eq(id2len, idlen);
    ck_assert_mem_eq(id2, id, idlen);
    pyheap_elf_close(e);
}
END_TEST

START_TEST(missing_and_odd_files)
{
    pyheap_elf *e = NULL;
    pyheap_error err = {0};
    ck_assert_int_eq(pyheap_elf_open("/nonexistent/file", &e, &err), -1);
    ck_assert_int_eq(err.code, PYHEAP_E_IO);
    ck_assert_ptr_null(e);
    ck_assert_int_eq(pyheap_elf_open("/tmp", &e, &err), -1);
    ck_assert_int_eq(err.code, PYHEAP_E_CORRUPT);
    ck_assert_int_eq(pyheap_elf_open(NULL, &e, &err), -1);
    ck_assert_int_eq(err.code, PYHEAP_E_INVAL);
    pyheap_elf_close(NULL);
}
END_TEST

static void expect_corrupt(const char *path, const char *what)
{
    pyheap_elf *e = NULL;
    pyheap_error err = {0};
    int rc = pyheap_elf_open(path, &e, &err);
    ck_assert_msg(rc == -1, "%s: opened a broken file", what);
    ck_assert_msg(err.code == PYHEAP_E_CORRUPT, "%s: code %d (%s)", what,
                  (int)err.code, err.msg);
    ck_assert_msg(strstr(err.msg, path) != NULL, "%s: message lacks the path: %s",
                  what, err.msg);
    ck_assert_ptr_null(e);
}

START_TEST(broken_copies)
{
    size_t len;
    unsigned char *img = slurp(PY, &len);
    make_tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/python", tmpdir);

    spit(path, img, 0);
    expect_corrupt(path, "zero-length");

    unsigned char *garbage = malloc(65536);
    ck_assert_ptr_nonnull(garbage);
    srand(42);
    for (size_t i = 0; i < 65536; i++)
        garbage[i] = (unsigned char)rand();
    spit(path, garbage, 65536);
    expect_corrupt(path, "garbage");
    /* Garbage behind a valid ELF magic. */
    memcpy(garbage, img, 16);
    spit(path, garbage, 65536);
    expect_corrupt(path, "garbage with ELF magic");
    free(garbage);

    const size_t cuts[] = {16, 63, 64 /* the header only */, 100, 1024, 4096,
                           len / 2, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "truncated at %zu", cuts[i]);
        spit(path, img, cuts[i]);
        expect_corrupt(path, what);
    }

    unsigned char *copy = malloc(len);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, img, len);
    copy[4] = 1; /* EI_CLASS = ELFCLASS32 */
    spit(path, copy, len);
    expect_corrupt(path, "32-bit class");
    memcpy(copy, img, len);
    copy[18] = 0x28; /* e_machine = EM_ARM */
    copy[19] = 0;
    spit(path, copy, len);
    expect_corrupt(path, "other machine");
    free(copy);
    free(img);
    rm_tmpdir();
}
END_TEST

/* Random corruption of the headers and tables: any result but a crash. */
START_TEST(corrupted_copies_do_not_crash)
{
    size_t len;
    unsigned char *img = slurp(PY, &len);
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)img;
    size_t shoff = (size_t)eh->e_shoff;
    size_t shlen = (size_t)eh->e_shnum * eh->e_shentsize;
    ck_assert_uint_le(shoff + shlen, len);
    size_t dynoff = 0, dynlen = 0;
    for (size_t i = 0; i < eh->e_shnum; i++) {
        const Elf64_Shdr *sh = (const Elf64_Shdr *)(img + shoff + i * eh->e_shentsize);
        if (sh->sh_type == SHT_DYNSYM) {
            dynoff = (size_t)sh->sh_offset;
            dynlen = (size_t)sh->sh_size;
        }
    }
    ck_assert_uint_gt(dynlen, 0);
    make_tmpdir();
    char path[128];
    snprintf(path, sizeof path, "%s/python", tmpdir);
    unsigned char *copy = malloc(len);
    ck_assert_ptr_nonnull(copy);
    int opened = 0;
    for (unsigned seed = 1; seed <= 24; seed++) {
        memcpy(copy, img, len);
        srand(seed);
        for (int k = 0; k < 64; k++) {
            /* Hit the section headers, the ELF/program headers and .dynsym. */
            size_t where;
            switch (k % 3) {
            case 0: where = shoff + (size_t)rand() % shlen; break;
            case 1: where = (size_t)rand() % 0x400; break;
            default: where = dynoff + (size_t)rand() % dynlen; break;
            }
            copy[where] = (unsigned char)rand();
        }
        spit(path, copy, len);
        pyheap_elf *e;
        pyheap_error err = {0};
        if (pyheap_elf_open(path, &e, &err) == 0) {
            opened++;
            exercise(e);
            pyheap_elf_close(e);
        } else {
            ck_assert_msg(err.code == PYHEAP_E_CORRUPT, "seed %u: code %d: %s",
                          seed, (int)err.code, err.msg);
        }
    }
    /* Most corruptions leave a file libelf still opens: the queries above
     * then ran on it. */
    ck_assert_int_gt(opened, 0);
    free(copy);
    free(img);
    rm_tmpdir();
}
END_TEST

Suite *suite_elf(void)
{
    Suite *s = suite_create("elf");
    TCase *tc = tcase_create("elf");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, real_python);
    tcase_add_test(tc, missing_and_odd_files);
    tcase_add_test(tc, broken_copies);
    tcase_add_test(tc, corrupted_copies_do_not_crash);
    suite_add_tcase(s, tc);
    return s;
}
