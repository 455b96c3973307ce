/* The remote reader against a real child process and in-memory images. */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "testutil.h"

#define REGION (4 * 65536)

/* A child with a copy of this address space that waits to be killed. */
static pid_t fork_holder(void)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        for (;;)
            pause();
    }
    return pid;
}

/* A child that holds a known pattern at the same address as in the parent
 * (fork copies the address space), then waits to be killed. */
static pid_t spawn_holder(unsigned char **region_out)
{
    unsigned char *r = mmap(NULL, REGION, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ck_assert_ptr_ne(r, MAP_FAILED);
    for (size_t i = 0; i < REGION; i++)
        r[i] = (unsigned char)(i * 7 + 3);
    /* A hole in the middle: the third 64 KiB chunk's second page. */
    ck_assert_int_eq(munmap(r + 2 * 65536 + 4096, 4096), 0);
    memcpy(r + 100, "hello, remote", 14);
    *region_out = r;
    return fork_holder();
}

START_TEST(reads_child_memory)
{
    unsigned char *r;
    pid_t pid = spawn_holder(&r);
    pyheap_mem *m = NULL;
    pyheap_error e = { 0 };
    ck_assert_int_eq(pyheap_mem_open(pid, 0, &m, &e), 0);
    unsigned char buf[70000];
    /* Exact read across a chunk boundary, cached and uncached. */
    uint64_t a = (uint64_t)(uintptr_t)r + 65536 - 10;
    ck_assert_int_eq(pyheap_mem_read(m, a, buf, 100, &e), 0);
    ck_assert_mem_eq(buf, r + 65536 - 10, 100);
    memset(buf, 0, sizeof buf);
    ck_assert_int_eq(pyheap_mem_read_cached(m, a, buf, 100, &e), 0);
    ck_assert_mem_eq(buf, r + 65536 - 10, 100);
    /* A read larger than a chunk. */
    ck_assert_int_eq(pyheap_mem_read_cached(m, (uint64_t)(uintptr_t)r + 5, buf, 70000, &e), 0);
    ck_assert_mem_eq(buf, r + 5, 70000);
    /* Pages after a hole in a chunk are still served; the hole fails. */
    uint64_t c3 = (uint64_t)(uintptr_t)r + 2 * 65536;
    ck_assert_int_eq(pyheap_mem_read_cached(m, c3 + 3 * 4096, buf, 64, &e), 0);
    ck_assert_mem_eq(buf, r + 2 * 65536 + 3 * 4096, 64);
    ck_assert_int_eq(pyheap_mem_read_cached(m, c3 + 4096 + 8, buf, 8, &e), -1);
    ck_assert_int_eq(e.code, PYHEAP_E_READ);
    ck_assert_int_eq(e.sys_errno, EFAULT);
    ck_assert_uint_eq(e.addr, c3 + 4096 + 8);
    ck_assert_ptr_nonnull(strstr(e.msg, "cannot read 8 bytes at 0x"));
    /* C strings. */
    char s[64];
    ck_assert_int_eq(pyheap_mem_read_cstr(m, (uint64_t)(uintptr_t)r + 100, s, sizeof s, &e), 13);
    ck_assert_str_eq(s, "hello, remote");
    ck_assert_int_eq(pyheap_mem_read_cstr(m, (uint64_t)(uintptr_t)r + 100, s, 6, &e), 5);
    ck_assert_str_eq(s, "hello");
    uint64_t reads, bytes;
    pyheap_mem_counters(m, &reads, &bytes);
    ck_assert_uint_gt(reads, 0);
    ck_assert_uint_gt(bytes, 0);
    /* The process goes away: the error says so. */
    test_reap(pid);
    pyheap_mem_cache_clear(m);
    ck_assert_int_eq(pyheap_mem_read(m, a, buf, 8, &e), -1);
    ck_assert_int_eq(e.code, PYHEAP_E_GONE);
    ck_assert_int_eq(pyheap_mem_read_cached(m, a, buf, 8, &e), -1);
    ck_assert_int_eq(e.code, PYHEAP_E_GONE);
    pyheap_mem_free(m);
    munmap(r, REGION);
}
END_TEST

/* A child holding NCHUNKS 64 KiB chunks of a pattern (chunk-aligned),
 * with the second page of chunk 2 unmapped. */
#define WCHUNK 65536
#define WCHUNKS 40
static pid_t spawn_chunks(unsigned char **base_out, unsigned char **map_out)
{
    size_t len = (WCHUNKS + 1) * (size_t)WCHUNK;
    unsigned char *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                              -1, 0);
    ck_assert_ptr_ne(map, MAP_FAILED);
    unsigned char *r = (unsigned char *)(((uintptr_t)map + WCHUNK - 1) & ~(uintptr_t)(WCHUNK - 1));
    for (size_t i = 0; i < WCHUNKS * (size_t)WCHUNK; i++)
        r[i] = (unsigned char)(i * 13 + i / WCHUNK);
    ck_assert_int_eq(munmap(r + 2 * WCHUNK + 4096, 4096), 0);
    *base_out = r;
    *map_out = map;
    return fork_holder();
}

/* Windows into the cache (the walker's fast path) show the chunk's bytes,
 * refuse a chunk with a hole, and are emptied when the cache evicts; the
 * cache cap set per scan is obeyed. */
START_TEST(windows_and_cache_cap)
{
    unsigned char *r, *map;
    pid_t pid = spawn_chunks(&r, &map);
    pyheap_mem *m = NULL;
    pyheap_error e = { 0 };
    ck_assert_int_eq(pyheap_mem_open(pid, 0, &m, &e), 0);
    uint64_t base = (uint64_t)(uintptr_t)r;
    struct pyheap_mem_window wins[2];
    memset(wins, 0, sizeof wins);
    ck_assert_int_eq(pyheap_mem_window_get(m, base + 5 * WCHUNK + 77, wins, 2, &wins[1]), 0);
    ck_assert_uint_eq(wins[1].base, base + 5 * WCHUNK);
    ck_assert_uint_eq(wins[1].len, WCHUNK);
    ck_assert_ptr_nonnull(wins[1].data);
    ck_assert_mem_eq(wins[1].data, r + 5 * WCHUNK, WCHUNK);
    /* A chunk that is not wholly readable gives no window. */
    ck_assert_int_eq(pyheap_mem_window_get(m, base + 2 * WCHUNK, wins, 2, &wins[0]), -1);
    ck_assert_ptr_null(wins[0].data);
    ck_assert_ptr_nonnull(wins[1].data);

    /* With the smallest cap (16 chunks), reading 30 chunks evicts: every
     * window is emptied, and a second pass reads the chunks again. */
    pyheap_mem_set_cache_cap(m, 1);
    unsigned char buf[64];
    uint64_t r0, b0, r1, b1, r2, b2;
    pyheap_mem_counters(m, &r0, &b0);
    for (int c = 10; c < 40; c++) {
        ck_assert_int_eq(pyheap_mem_read_cached(m, base + (uint64_t)c * WCHUNK + 8, buf, 64, &e), 0);
        ck_assert_mem_eq(buf, r + (size_t)c * WCHUNK + 8, 64);
    }
    ck_assert_ptr_null(wins[1].data);
    ck_assert_uint_eq(wins[1].base, 0);
    pyheap_mem_counters(m, &r1, &b1);
    for (int c = 10; c < 40; c++)
        ck_assert_int_eq(pyheap_mem_read_cached(m, base + (uint64_t)c * WCHUNK + 8, buf, 64, &e), 0);
    pyheap_mem_counters(m, &r2, &b2);
    ck_assert_uint_ge(b1 - b0, 30 * (uint64_t)WCHUNK);
    ck_assert_uint_ge(b2 - b1, 14 * (uint64_t)WCHUNK); /* evicted: read again */

    /* Back to the default cap (64 MiB): a second pass costs no reads. */
    pyheap_mem_set_cache_cap(m, 0);
    pyheap_mem_cache_clear(m);
    for (int pass = 0; pass < 2; pass++) {
        pyheap_mem_counters(m, &r1, &b1);
        for (int c = 10; c < 40; c++)
            ck_assert_int_eq(pyheap_mem_read_cached(m, base + (uint64_t)c * WCHUNK, buf, 8, &e), 0);
        pyheap_mem_counters(m, &r2, &b2);
        if (pass == 0)
            ck_assert_uint_eq(b2 - b1, 30 * (uint64_t)WCHUNK);
        else
            ck_assert_uint_eq(b2 - b1, 0);
    }
    /* A window taken now is emptied by a clear too. */
    ck_assert_int_eq(pyheap_mem_window_get(m, base + 11 * WCHUNK, wins, 2, &wins[0]), 0);
    ck_assert_mem_eq(wins[0].data, r + 11 * WCHUNK, WCHUNK);
    pyheap_mem_cache_clear(m);
    ck_assert_ptr_null(wins[0].data);
    pyheap_mem_window_drop(m);
    test_reap(pid);
    pyheap_mem_free(m);
    munmap(map, (WCHUNKS + 1) * (size_t)WCHUNK);
}
END_TEST

START_TEST(null_and_overflow_rejected)
{
    pyheap_mem *m = NULL;
    pyheap_error e = { 0 };
    ck_assert_int_eq(pyheap_mem_open(getpid(), 0, &m, &e), 0);
    char buf[16];
    ck_assert_int_eq(pyheap_mem_read(m, 0, buf, 8, &e), -1);
    ck_assert_int_eq(e.code, PYHEAP_E_READ);
    ck_assert_int_eq(pyheap_mem_read_cached(m, UINT64_MAX - 4, buf, 8, &e), -1);
    ck_assert_int_eq(pyheap_mem_open(0, 0, &m, &e), -1);
    ck_assert_int_eq(e.code, PYHEAP_E_INVAL);
    pyheap_mem_free(m);
    pyheap_mem_free(NULL);
}
END_TEST

START_TEST(images)
{
    pyheap_mem *m = NULL;
    pyheap_error e = { 0 };
    ck_assert_int_eq(pyheap_mem_open_image(&m, &e), 0);
    unsigned char a[32], b[32], buf[64];
    memset(a, 'a', sizeof a);
    memset(b, 'b', sizeof b);
    ck_assert_int_eq(pyheap_mem_image_add(m, 0x1000, a, sizeof a, &e), 0);
    ck_assert_int_eq(pyheap_mem_image_add(m, 0x1020, b, sizeof b, &e), 0);
    /* Spans two adjacent images. */
    ck_assert_int_eq(pyheap_mem_read_cached(m, 0x1010, buf, 32, &e), 0);
    ck_assert_mem_eq(buf, a, 16);
    ck_assert_mem_eq(buf + 16, b, 16);
    /* Runs off the end. */
    ck_assert_int_eq(pyheap_mem_read(m, 0x1030, buf, 32, &e), -1);
    ck_assert_int_eq(e.code, PYHEAP_E_READ);
    ck_assert_int_eq(pyheap_mem_image_add(m, 0x10, a, 0, &e), -1);
    pyheap_mem_free(m);
}
END_TEST

Suite *suite_mem(void)
{
    Suite *s = suite_create("mem");
    TCase *tc = tcase_create("mem");
    tcase_add_test(tc, reads_child_memory);
    tcase_add_test(tc, null_and_overflow_rejected);
    tcase_add_test(tc, images);
    tcase_add_test(tc, windows_and_cache_cap);
    suite_add_tcase(s, tc);
    return s;
}
