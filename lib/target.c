/* pyheap_target_open / free and accessors: attach read-only to a PID.
 *
 * Order: /proc/PID/stat (exists? start time) -> exe -> maps -> the module
 * defining _PyRuntime -> version (Py_Version in the target) -> constants,
 * well-known type symbols -> offsets (DWARF or table, validated live) ->
 * the start time again (did it exit or get replaced meanwhile?). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "debug_offsets.h"
#include "offsets_source.h"
#include "proc_maps.h"

const char *pyheap_offsets_source_name(pyheap_offsets_source src)
{
    switch (src) {
    case PYHEAP_OFFSETS_DEBUG_OFFSETS: return "debug_offsets";
    case PYHEAP_OFFSETS_DWARF: return "dwarf";
    case PYHEAP_OFFSETS_TABLE: return "table";
    case PYHEAP_OFFSETS_NONE: break;
    }
    return "none";
}

static const char *level_suffix(unsigned level)
{
    switch (level) {
    case 0xA: return "a";
    case 0xB: return "b";
    case 0xC: return "rc";
    default: return "";
    }
}

/* Without Py_Version (before 3.11): the minor version from the module's
 * name, the patch level from the PY_VERSION string in .rodata. Only used
 * to name the version in "unsupported" messages. */
static void version_from_file(pyheap_target *t, const struct pyheap_module *mod)
{
    const char *b = strrchr(mod->path, '/');
    b = b ? b + 1 : mod->path;
    if (strncmp(b, "lib", 3) == 0)
        b += 3;
    int major = 0, minor = -1;
    if (sscanf(b, "python%d.%d", &major, &minor) != 2) {
        snprintf(t->version, sizeof t->version, "of unknown version");
        return;
    }
    t->major = major;
    t->minor = minor;
    t->micro = -1;
    snprintf(t->version, sizeof t->version, "%d.%d", major, minor);

    const void *data;
    size_t size;
    if (pyheap_elf_section_bytes(mod->elf, ".rodata", &data, &size) != 0)
        return;
    char prefix[16];
    int plen = snprintf(prefix, sizeof prefix, "%d.%d.", major, minor);
    const char *p = data, *end = p + size;
    while (p < end) {
        const char *hit = memmem(p, (size_t)(end - p), prefix, (size_t)plen);
        if (!hit)
            break;
        p = hit + 1;
        /* The linker may merge PY_VERSION into the tail of a longer
         * string ("Python-3.10.13"), so only a number may not precede it. */
        if (hit > (const char *)data &&
            ((hit[-1] >= '0' && hit[-1] <= '9') || hit[-1] == '.'))
            continue;
        /* digits, then an optional a/b/rc + digits, then NUL */
        const char *c = hit + plen;
        const char *d = c;
        while (d < end && d - c < 3 && *d >= '0' && *d <= '9')
            d++;
        if (d == c)
            continue;
        const char *q = d;
        if (q + 1 < end && (*q == 'a' || *q == 'b' || (*q == 'r' && q[1] == 'c'))) {
            q += *q == 'r' ? 2 : 1;
            while (q < end && q - d < 6 && *q >= '0' && *q <= '9')
                q++;
        }
        if (q < end && *q == '+')
            q++;
        if (q >= end || *q != '\0')
            continue;
        t->micro = atoi(c);
        snprintf(t->version, sizeof t->version, "%.*s", (int)(q - hit), hit);
        return;
    }
}

static int read_version(pyheap_target *t, const struct pyheap_module *mod,
                        pyheap_error *err)
{
    uint64_t sym;
    if (pyheap_elf_symbol(mod->elf, "Py_Version", &sym, NULL) != 0) {
        version_from_file(t, mod);
        return 0;
    }
    uint32_t v;
    if (pyheap_mem_read(t->mem, sym + mod->bias, &v, sizeof v, err) != 0)
        return -1;
    t->py_version = v;
    t->major = (int)(v >> 24);
    t->minor = (int)((v >> 16) & 0xff);
    t->micro = (int)((v >> 8) & 0xff);
    unsigned level = (v >> 4) & 0xf, serial = v & 0xf;
    if (t->major != 3)
        return pyheap_err_set(err, PYHEAP_E_CORRUPT, 0, sym + mod->bias,
                              "Py_Version of process %d reads 0x%08x, which is "
                              "not a Python 3 version", (int)t->pid, v);
    if (level == 0xF)
        snprintf(t->version, sizeof t->version, "%d.%d.%d", t->major, t->minor,
                 t->micro);
    else
        snprintf(t->version, sizeof t->version, "%d.%d.%d%s%u", t->major,
                 t->minor, t->micro, level_suffix(level), serial);
    return 0;
}

/* A free-threaded build by its ABI flag in the file name: python3.13t,
 * libpython3.14t.so.1.0 (also with the d flag: python3.13td). */
static bool free_threaded_name(const char *path)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    if (strncmp(b, "lib", 3) == 0)
        b += 3;
    int major, minor, n = 0;
    if (sscanf(b, "python%d.%d%n", &major, &minor, &n) != 2 || n <= 0)
        return false;
    return b[n] == 't';
}

/* Scan the module's writable file mappings (at most 64 MiB, 1 MiB at a
 * time) for a _Py_DebugOffsets of t->minor that validates: 0 and
 * mod->runtime_addr set, 1 if none, -1 if the process is gone or
 * unreadable. */
static int runtime_by_cookie(pyheap_target *t, const struct pyheap_maps *maps,
                             struct pyheap_module *mod, pyheap_error *err)
{
    const struct pyheap_offsets_table *tab = pyheap_offsets_table_for(3, t->minor);
    if (!tab || tab->dbg.size == 0 || tab->off.runtime_debug_offsets != 0)
        return 1;
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK + PYHEAP_DEBUG_OFFSETS_MAX);
    if (!buf)
        return pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0, "out of memory");
    uint64_t scanned = 0;
    int result = 1;
    for (size_t i = 0; i < maps->n && result == 1 && scanned < (64u << 20); i++) {
        const struct pyheap_map *m = &maps->v[i];
        if (m->perms[1] != 'w' || strcmp(m->path, mod->path) != 0 || m->end <= m->start)
            continue;
        for (uint64_t a = m->start; a < m->end && result == 1 && scanned < (64u << 20);
             a += CHUNK) {
            size_t n = (size_t)(m->end - a < CHUNK ? m->end - a : CHUNK);
            pyheap_error e = {0};
            if (pyheap_mem_read(t->mem, a, buf, n, &e) != 0) {
                if (e.code == PYHEAP_E_GONE || e.code == PYHEAP_E_PERM) {
                    if (err)
                        *err = e;
                    result = -1;
                }
                continue;
            }
            scanned += n;
            for (size_t off = 0; off + 8 <= n && result == 1; off += 8) {
                if (memcmp(buf + off, "xdebugpy", 8) != 0)
                    continue;
                unsigned char d[PYHEAP_DEBUG_OFFSETS_MAX];
                if (pyheap_mem_read(t->mem, a + off, d, tab->dbg.size, NULL) != 0)
                    continue;
                struct pyheap_offsets scratch = tab->off;
                bool provided[PYHEAP_DBG_COUNT];
                if (pyheap_debug_offsets_parse(tab, d, tab->dbg.size, t->py_version,
                                               0, &scratch, provided, NULL) < 0)
                    continue;
                mod->runtime_addr = a + off;
                mod->runtime_from_section = false;
                t->runtime_by_cookie = true;
                result = 0;
            }
        }
    }
    free(buf);
    return result;
}

static int fail_rank(pyheap_errcode c)
{
    return c == PYHEAP_E_UNSUPPORTED ? 3 : c == PYHEAP_E_OFFSETS ? 2
         : c == PYHEAP_E_NOTPYTHON ? 1 : 0;
}

/* Compare the process with what we saw at open. */
static int same_process(const pyheap_target *t, pyheap_error *err)
{
    unsigned long long start;
    char state = 0;
    if (pyheap_proc_stat(t->pid, &start, &state, true, err) != 0) {
        if (err && err->code == PYHEAP_E_IO)
            err->code = PYHEAP_E_GONE;
        return -1;
    }
    if (start != t->start_time)
        return pyheap_err_set(err, PYHEAP_E_GONE, 0, 0,
                              "process %d has exited (the PID now belongs to "
                              "another process)", (int)t->pid);
    if (state == 'Z' || state == 'X')
        return pyheap_err_set(err, PYHEAP_E_GONE, 0, 0,
                              "process %d has exited", (int)t->pid);
    char exe[PATH_MAX];
    pyheap_error e = {0};
    if (pyheap_proc_exe(t->pid, exe, sizeof exe, true, &e) != 0) {
        if (e.code == PYHEAP_E_PERM) {
            if (err)
                *err = e;
            return -1;
        }
        return pyheap_err_set(err, PYHEAP_E_GONE, e.sys_errno, 0,
                              "process %d has exited", (int)t->pid);
    }
    if (strcmp(exe, t->exe) != 0)
        return pyheap_err_set(err, PYHEAP_E_GONE, 0, 0,
                              "process %d now runs %s (it called exec)",
                              (int)t->pid, exe);
    return 0;
}

int pyheap_target_open(pid_t pid, const pyheap_open_opts *opts,
                       pyheap_target **out, pyheap_error *err)
{
    if (pid <= 0 || !out)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0, "invalid PID %d", (int)pid);
    pyheap_target *t = calloc(1, sizeof *t);
    if (!t)
        return pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0, "out of memory");
    t->pid = pid;
    struct pyheap_maps maps = {0};
    struct pyheap_module mod;
    memset(&mod, 0, sizeof mod);
    char state = 0;
    char sup[64];

    if (pyheap_proc_stat(pid, &t->start_time, &state, false, err) != 0)
        goto fail;
    if (state == 'Z' || state == 'X') {
        pyheap_err_set(err, PYHEAP_E_GONE, 0, 0, "process %d has exited "
                       "(a zombie waiting for its parent)", (int)pid);
        goto fail;
    }
    if (pyheap_proc_exe(pid, t->exe, sizeof t->exe, true, err) != 0 ||
        pyheap_proc_maps_read(pid, &maps, err) != 0)
        goto fail;
    /* Several modules may define _PyRuntime (an embedded second
     * libpython): keep the first whose offsets validate. */
    pyheap_error first = {0};
    for (size_t skip = 0;; skip++) {
        t->runtime_by_cookie = false;
        int found = pyheap_proc_find_interpreter(pid, t->exe, &maps, skip, &mod, err);
        if (skip > 0 && found != 0) {
            /* No other candidate: report the first module's failure. */
            if (err)
                *err = first;
            goto fail;
        }
        if (found == -2) {
            version_from_file(t, &mod);
            if (t->major == 3 && t->minor >= 13 && pyheap_version_supported(3, t->minor)) {
                /* A CPython module with neither the _PyRuntime symbol nor the
                 * .PyRuntime section: find _Py_DebugOffsets by its cookie. */
                if (pyheap_mem_open(pid, 0, &t->mem, err) != 0)
                    goto fail;
                int rc = runtime_by_cookie(t, &maps, &mod, err);
                if (rc < 0)
                    goto fail;
                if (rc == 0)
                    found = 0;
                pyheap_mem_free(t->mem);
                t->mem = NULL;
            }
        }
        if (found == -2 && t->major == 3 && t->minor >= 7) {
            pyheap_err_set(err, PYHEAP_E_NOTPYTHON, 0, 0,
                           "Python %s (module %s): no _PyRuntime symbol, no "
                           ".PyRuntime section%s; pyheap cannot find the runtime",
                           t->version, mod.path, t->minor >= 13 ?
                           " and no valid _Py_DebugOffsets in its data" : "");
            goto fail;
        }
        if (found == -2) {
            pyheap_err_set(err, PYHEAP_E_UNSUPPORTED, 0, 0,
                           "Python %s (module %s) is not supported: it predates "
                           "_PyRuntime (3.7); pyheap supports %s", t->version, mod.path,
                           pyheap_versions_supported(sup, sizeof sup));
            goto fail;
        }
        if (found != 0)
            goto fail;
        snprintf(t->module, sizeof t->module, "%s", mod.path);
        t->module_bias = mod.bias;
        t->nimage = 0;
        for (size_t i = 0; i < maps.n && t->nimage < PYHEAP_IMAGE_MAX; i++)
            if (strcmp(maps.v[i].path, mod.path) == 0 && maps.v[i].end > maps.v[i].start) {
                t->image[t->nimage].start = maps.v[i].start;
                t->image[t->nimage++].end = maps.v[i].end;
            }
        t->runtime_addr = mod.runtime_addr;

        pyheap_error e = {0};
        if (pyheap_mem_open(pid, 0, &t->mem, err) != 0 || read_version(t, &mod, &e) != 0)
            goto next;
        if (free_threaded_name(t->module) || free_threaded_name(t->exe)) {
            pyheap_err_set(&e, PYHEAP_E_UNSUPPORTED, 0, 0,
                           "free-threaded CPython %s (module %s) is not supported: "
                           "its objects are not on GC lists and its object header "
                           "differs; run the default (GIL) build", t->version, t->module);
            goto next;
        }
        if (!pyheap_version_supported(t->major, t->minor)) {
            pyheap_err_set(&e, PYHEAP_E_UNSUPPORTED, 0, 0,
                           "Python %s (module %s) is not supported: pyheap has no "
                           "offsets or constants for %d.%d; it supports %s",
                           t->version, t->module, t->major, t->minor,
                           pyheap_versions_supported(sup, sizeof sup));
            goto next;
        }
        if (pyheap_consts_init(t, &e) == 0 && pyheap_wk_resolve(t, &mod, &e) == 0 &&
            pyheap_offsets_load(t, &mod, opts ? opts->allowed_sources : 0, &e) == 0)
            break;
    next:
        /* This module failed: another may be the running interpreter,
         * unless the process is gone or unreadable. */
        if (e.code == PYHEAP_E_GONE || e.code == PYHEAP_E_PERM ||
            e.code == PYHEAP_E_NOMEM || skip >= 8) {
            if (err)
                *err = e;
            goto fail;
        }
        /* If none works, report the most telling failure: "unsupported
         * version" over "offsets failed validation" (e.g. a library loaded
         * but never initialized) over "not running Python"; the first of
         * equal rank. */
        if (skip == 0 || fail_rank(e.code) > fail_rank(first.code))
            first = e;
        pyheap_proc_module_clear(&mod);
        memset(&mod, 0, sizeof mod);
        pyheap_mem_free(t->mem);
        t->mem = NULL;
    }
    pyheap_proc_maps_free(&maps);
    pyheap_proc_module_clear(&mod);
    /* Did it exit or exec while we looked? */
    if (same_process(t, err) != 0)
        goto fail_quiet;
    *out = t;
    return 0;

fail:
    /* A failure while the process died is reported as "gone". */
    if (t->start_time && (!err || err->code != PYHEAP_E_PERM)) {
        pyheap_error e = {0};
        if (same_process(t, &e) != 0 && e.code == PYHEAP_E_GONE && t->exe[0] && err)
            *err = e;
    }
fail_quiet:
    pyheap_proc_maps_free(&maps);
    pyheap_proc_module_clear(&mod);
    pyheap_target_free(t);
    return -1;
}

void pyheap_target_free(pyheap_target *t)
{
    if (!t)
        return;
    pyheap_mem_free(t->mem);
    free(t);
}

bool pyheap_target_walk_supported(const pyheap_target *t)
{
    /* The versions the walker (walk.c, decode_*.c) is tested with end to
     * end (tests/test_walk.c, test_walk_versions.c); 3.12 is not. */
    return t && t->major == 3 &&
           (t->minor == 11 || t->minor == 13 || t->minor == 14 || t->minor == 15);
}

pid_t pyheap_target_pid(const pyheap_target *t) { return t->pid; }
const char *pyheap_target_version(const pyheap_target *t) { return t->version; }
pyheap_offsets_source pyheap_target_offsets_source(const pyheap_target *t)
{
    return t->source;
}
const char *pyheap_target_module(const pyheap_target *t) { return t->module; }
const char *pyheap_target_offsets_detail(const pyheap_target *t)
{
    return t->source_detail;
}

int pyheap_target_check_alive(const pyheap_target *t, pyheap_error *err)
{
    return same_process(t, err);
}
