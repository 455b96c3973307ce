/* Memory of a process from /proc/PID/smaps_rollup (issue 5: pyheap stats). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <limits.h>
#include <stdlib.h>

#include "elf_file.h"
#include "internal.h"

int pyheap_mem_stats_read(pid_t pid, pyheap_mem_stats *out, pyheap_error *err)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f) {
        int e = errno;
        return pyheap_err_set(err, e == ENOENT ? PYHEAP_E_GONE
                                   : e == EACCES || e == EPERM ? PYHEAP_E_PERM : PYHEAP_E_IO,
                              e, 0, "cannot read %s: %s", path, strerror(e));
    }
    pyheap_mem_stats m = { -1, -1, -1, -1, -1, -1, -1 };
    char line[256];
    int lines = 0;
    while (fgets(line, sizeof line, f) && lines < 100) {
        lines++;
        char key[64];
        unsigned long long kb;
        if (sscanf(line, "%63[^:]: %llu kB", key, &kb) != 2 || kb > (1ULL << 40))
            continue;
        int64_t v = (int64_t)kb * 1024;
        if (strcmp(key, "Rss") == 0)
            m.rss = v;
        else if (strcmp(key, "Pss") == 0)
            m.pss = v;
        else if (strcmp(key, "Pss_Anon") == 0)
            m.pss_anon = v;
        else if (strcmp(key, "Pss_File") == 0)
            m.pss_file = v;
        else if (strcmp(key, "Anonymous") == 0)
            m.anon = v;
        else if (strcmp(key, "Swap") == 0)
            m.swap = v;
    }
    fclose(f);
    if (m.rss < 0)
        return pyheap_err_set(err, PYHEAP_E_GONE, 0, 0,
                              "%s has no Rss line: the process is gone or a kernel thread", path);
    if (m.anon >= 0 && m.anon <= m.rss)
        m.file = m.rss - m.anon;
    *out = m;
    return 0;
}

/* ---- pymalloc (3.11) ---- */

/* obmalloc.c of 3.11 on 64-bit (radix tree, large arenas and pools):
 * ARENA_BITS 20, POOL_BITS 14; struct arena_object is {uintptr_t address;
 * block *pool_address; uint nfreepools; uint ntotalpools; pool_header
 * *freepools; arena_object *nextarena, *prevarena} = 48 bytes. */
#define ARENA_SIZE_311 (1u << 20)
#define POOL_SIZE_311 (1u << 14)
#define ARENA_OBJ_SIZE 48
#define MAX_ARENAS (1u << 20)

/* The three statics in PATH's symbol table, as named plainly or as an LTO
 * build renames them ("arenas.lto_priv.0", Debian's). */
static int symbols_in(const char *path, uint64_t vals[3], char *build_id, size_t bidsz)
{
    static const char *const plain[3] = { "arenas", "maxarenas", "narenas_currently_allocated" };
    static const char *const lto[3] = { "arenas.lto_priv.0", "maxarenas.lto_priv.0",
                                        "narenas_currently_allocated.lto_priv.0" };
    pyheap_elf *e = NULL;
    if (pyheap_elf_open(path, &e, NULL) < 0)
        return -1;
    if (build_id && bidsz) {
        uint8_t id[64];
        size_t len = 0;
        build_id[0] = 0;
        if (pyheap_elf_build_id(e, id, sizeof id, &len) == 0 && len >= 2 && 2 * len < bidsz)
            for (size_t i = 0; i < len; i++)
                snprintf(build_id + 2 * i, bidsz - 2 * i, "%02x", id[i]);
    }
    vals[0] = vals[1] = vals[2] = 0;
    size_t n = pyheap_elf_symbols(e, plain, 3, vals);
    if (n != 3) {
        vals[0] = vals[1] = vals[2] = 0;
        n = pyheap_elf_symbols(e, lto, 3, vals);
    }
    pyheap_elf_close(e);
    return n == 3 ? 0 : -1;
}

int pyheap_pymalloc_read(pyheap_target *t, pyheap_pymalloc *out, pyheap_error *err)
{
    if (t->major != 3 || t->minor != 11)
        return pyheap_err_set(err, PYHEAP_E_UNSUPPORTED, 0, 0,
                              "pymalloc accounting is implemented for CPython 3.11 only "
                              "(this is %s)", t->version);
    uint64_t vals[3];
    char path[PATH_MAX + 64];
    int found = -1;
    char bid[130] = "";
    snprintf(path, sizeof path, "/proc/%d/root%s", (int)t->pid, t->module);
    found = symbols_in(path, vals, bid, sizeof bid);
    /* a separate debug file by build-id, in the target's root then ours */
    for (int k = 0; found < 0 && bid[0] && k < 2; k++) {
        if (k == 0)
            snprintf(path, sizeof path, "/proc/%d/root/usr/lib/debug/.build-id/%.2s/%s.debug",
                     (int)t->pid, bid, bid + 2);
        else
            snprintf(path, sizeof path, "/usr/lib/debug/.build-id/%.2s/%s.debug", bid, bid + 2);
        found = symbols_in(path, vals, NULL, 0);
    }
    const char *pre = "DWARF from ";
    if (found < 0 && t->source == PYHEAP_OFFSETS_DWARF &&
        strncmp(t->source_detail, pre, strlen(pre)) == 0) {
        snprintf(path, sizeof path, "%s", t->source_detail + strlen(pre));
        char *semi = strchr(path, ';');
        if (semi)
            *semi = 0;
        found = symbols_in(path, vals, NULL, 0);
    }
    if (found < 0)
        return pyheap_err_set(err, PYHEAP_E_NOTFOUND, 0, 0,
                              "obmalloc's symbols (arenas, maxarenas) are not in %s nor in a "
                              "debug file: pymalloc accounting unknown (install the "
                              "interpreter's debug symbols)", t->module);
    uint64_t a_arenas = vals[0] + t->module_bias, a_max = vals[1] + t->module_bias,
             a_cur = vals[2] + t->module_bias;
    uint64_t arenas_ptr = 0, cur = 0;
    uint32_t maxarenas = 0;
    if (pyheap_mem_read(t->mem, a_arenas, &arenas_ptr, sizeof arenas_ptr, err) < 0 ||
        pyheap_mem_read(t->mem, a_max, &maxarenas, sizeof maxarenas, err) < 0 ||
        pyheap_mem_read(t->mem, a_cur, &cur, sizeof cur, err) < 0)
        return -1;
    if (maxarenas > MAX_ARENAS || cur > maxarenas || (maxarenas && !arenas_ptr))
        return pyheap_err_set(err, PYHEAP_E_CORRUPT, 0, a_max,
                              "obmalloc state looks inconsistent (maxarenas %u, allocated %llu)",
                              maxarenas, (unsigned long long)cur);
    memset(out, 0, sizeof *out);
    out->arena_size = ARENA_SIZE_311;
    out->pool_size = POOL_SIZE_311;
    snprintf(out->symbols_from, sizeof out->symbols_from, "%.255s", path);
    if (maxarenas) {
        size_t len = (size_t)maxarenas * ARENA_OBJ_SIZE;
        unsigned char *buf = malloc(len);
        if (!buf)
            return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0, "out of memory reading arenas");
        if (pyheap_mem_read(t->mem, arenas_ptr, buf, len, err) < 0) {
            free(buf);
            return -1;
        }
        for (uint32_t i = 0; i < maxarenas; i++) {
            const unsigned char *o = buf + (size_t)i * ARENA_OBJ_SIZE;
            uint64_t address;
            uint32_t nfree, ntotal;
            memcpy(&address, o, 8);
            memcpy(&nfree, o + 16, 4);
            memcpy(&ntotal, o + 20, 4);
            if (!address)
                continue;
            /* a torn entry: skip rather than invent */
            if (ntotal > ARENA_SIZE_311 / POOL_SIZE_311 || nfree > ntotal)
                continue;
            out->arenas++;
            out->pools_free += nfree;
            out->pools_used += ntotal - nfree;
        }
        free(buf);
    }
    out->arena_bytes = out->arenas * ARENA_SIZE_311;
    out->used_bytes = out->pools_used * POOL_SIZE_311;
    out->free_bytes = out->pools_free * POOL_SIZE_311;
    return 0;
}
