/* /proc/PID: start time, executable, maps; finding the interpreter module.
 * See proc_maps.h. Everything read here is bounded: /proc files are read
 * with a size cap, maps lines and line counts are limited. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "proc_maps.h"

#define STAT_MAX 8192
#define MAX_CANDIDATES 16

int pyheap_proc_err(pyheap_error *err, pid_t pid, const char *what, int sys_errno,
                    bool existed)
{
    switch (sys_errno) {
    case ENOENT:
    case ESRCH:
        if (!existed)
            return pyheap_err_set(err, PYHEAP_E_NOPROC, sys_errno, 0,
                                  "no process with PID %d", (int)pid);
        return pyheap_err_set(err, PYHEAP_E_GONE, sys_errno, 0,
                              "process %d exited while pyheap was reading %s",
                              (int)pid, what);
    case EACCES:
    case EPERM:
        return pyheap_err_set(err, PYHEAP_E_PERM, sys_errno, 0,
                              "not allowed to read %s of process %d (%s): pyheap "
                              "needs ptrace access to it; run it as the process's "
                              "user where /proc/sys/kernel/yama/ptrace_scope "
                              "allows that, or as root / with CAP_SYS_PTRACE",
                              what, (int)pid, strerror(sys_errno));
    default:
        return pyheap_err_set(err, PYHEAP_E_IO, sys_errno, 0,
                              "cannot read %s of process %d: %s", what, (int)pid,
                              strerror(sys_errno));
    }
}

/* Read at most LEN-1 bytes of a small /proc file; NUL-terminated. */
static ssize_t read_small(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    while (got + 1 < len) {
        ssize_t r = read(fd, buf + got, len - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    buf[got] = '\0';
    return (ssize_t)got;
}

uint64_t pyheap_proc_rss(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    unsigned long long size, resident;
    long page = sysconf(_SC_PAGESIZE);
    if (read_small(path, buf, sizeof buf) <= 0 || page <= 0 ||
        sscanf(buf, "%llu %llu", &size, &resident) != 2 ||
        resident > UINT64_MAX / (unsigned long long)page)
        return 0;
    return (uint64_t)resident * (uint64_t)page;
}

int pyheap_proc_stat(pid_t pid, unsigned long long *start_time, char *state,
                     bool existed, pyheap_error *err)
{
    char path[64], buf[STAT_MAX];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (read_small(path, buf, sizeof buf) < 0)
        return pyheap_proc_err(err, pid, "/proc/PID/stat", errno, existed);
    /* comm may hold spaces and parentheses: fields resume after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return pyheap_err_set(err, PYHEAP_E_CORRUPT, 0, 0,
                              "cannot parse /proc/%d/stat", (int)pid);
    p++;
    /* Field 3 is the state; field 22 the start time. */
    char st = 0;
    unsigned long long start = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p, " \n", &save); tok; tok = strtok_r(NULL, " \n", &save)) {
        field++;
        if (field == 3)
            st = tok[0];
        if (field == 22) {
            char *end;
            errno = 0;
            start = strtoull(tok, &end, 10);
            if (errno || *end)
                field = 0;
            break;
        }
    }
    if (field != 22)
        return pyheap_err_set(err, PYHEAP_E_CORRUPT, 0, 0,
                              "cannot parse the start time in /proc/%d/stat", (int)pid);
    *start_time = start;
    if (state)
        *state = st;
    return 0;
}

int pyheap_proc_exe(pid_t pid, char *buf, size_t len, bool existed,
                    pyheap_error *err)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(path, buf, len - 1);
    if (n < 0)
        return pyheap_proc_err(err, pid, "/proc/PID/exe", errno, existed);
    buf[n] = '\0';
    return 0;
}

void pyheap_proc_maps_free(struct pyheap_maps *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        free(m->v[i].path);
    free(m->v);
    m->v = NULL;
    m->n = 0;
}

static int parse_map_line(char *line, struct pyheap_map *m)
{
    unsigned long long start, end, offset, inode;
    unsigned maj, min;
    char perms[8];
    int pos = -1;
    if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end, perms,
               &offset, &maj, &min, &inode, &pos) < 7 || pos < 0 || end < start)
        return -1;
    char *path = line + pos;
    size_t len = strlen(path);
    while (len && (path[len - 1] == '\n' || path[len - 1] == ' '))
        path[--len] = '\0';
    static const char del[] = " (deleted)";
    bool deleted = false;
    if (len >= sizeof del - 1 && strcmp(path + len - (sizeof del - 1), del) == 0) {
        deleted = true;
        path[len - (sizeof del - 1)] = '\0';
    }
    m->start = start;
    m->end = end;
    m->offset = offset;
    m->inode = inode;
    m->dev_major = maj;
    m->dev_minor = min;
    snprintf(m->perms, sizeof m->perms, "%.4s", perms);
    m->deleted = deleted;
    m->path = strdup(path);
    return m->path ? 0 : -1;
}

int pyheap_proc_maps_read(pid_t pid, struct pyheap_maps *out, pyheap_error *err)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pyheap_proc_err(err, pid, "/proc/PID/maps", errno, true);
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0, "out of memory");
    }
    struct pyheap_maps m = {0};
    size_t cap = 0;
    /* A line is at most "addresses perms offset dev inode" + a path. */
    enum { LINE_MAX_ = PATH_MAX + 256 };
    char *line = malloc(LINE_MAX_);
    int rc = 0;
    if (!line) {
        rc = pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0, "out of memory");
        goto out;
    }
    errno = 0;
    while (fgets(line, LINE_MAX_, f)) {
        size_t len = strlen(line);
        if (len && line[len - 1] != '\n' && !feof(f)) {
            /* Overlong line: skip the rest of it. */
            int c;
            while ((c = fgetc(f)) != EOF && c != '\n')
                ;
            continue;
        }
        if (m.n >= PYHEAP_MAPS_MAX_LINES) {
            rc = pyheap_err_set(err, PYHEAP_E_CORRUPT, 0, 0,
                                "process %d has more than %u memory mappings",
                                (int)pid, PYHEAP_MAPS_MAX_LINES);
            goto out;
        }
        if (m.n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            struct pyheap_map *nv = realloc(m.v, ncap * sizeof *nv);
            if (!nv) {
                rc = pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0, "out of memory");
                goto out;
            }
            m.v = nv;
            cap = ncap;
        }
        if (parse_map_line(line, &m.v[m.n]) == 0)
            m.n++;
    }
    if (ferror(f)) {
        int e = errno ? errno : EIO;
        rc = pyheap_proc_err(err, pid, "/proc/PID/maps", e, true);
        goto out;
    }
    if (m.n == 0) {
        /* A zombie or kernel thread has no maps. */
        rc = pyheap_err_set(err, PYHEAP_E_GONE, 0, 0,
                            "process %d has no memory mappings (it has exited "
                            "or is a kernel thread)", (int)pid);
        goto out;
    }
out:
    free(line);
    fclose(f);
    if (rc != 0) {
        pyheap_proc_maps_free(&m);
        return rc;
    }
    *out = m;
    return 0;
}

void pyheap_proc_module_clear(struct pyheap_module *m)
{
    if (!m)
        return;
    pyheap_elf_close(m->elf);
    m->elf = NULL;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* libpython3.X.so* (and, only to recognise old Pythons, libpython2.X). */
static bool is_libpython(const char *path)
{
    const char *b = base_name(path);
    return (strncmp(b, "libpython3.", 11) == 0 || strncmp(b, "libpython2.", 11) == 0) &&
           strstr(b, ".so") != NULL;
}

/* Open the ELF file behind mapping M (path PATH) as the target sees it:
 * /proc/PID/root/PATH when that is still the mapped file; else the
 * mapping itself through /proc/PID/map_files (or /proc/PID/exe). */
static int open_as_target(pid_t pid, const char *path, const struct pyheap_map *m,
                          bool is_exe, char *opened, size_t opened_len,
                          pyheap_elf **out, pyheap_error *err)
{
    char rooted[PATH_MAX + 64], direct[128];
    bool have_rooted =
        pyheap_buf_fmt(rooted, sizeof rooted, "/proc/%d/root%s", (int)pid, path);
    if (is_exe)
        snprintf(direct, sizeof direct, "/proc/%d/exe", (int)pid);
    else
        snprintf(direct, sizeof direct, "/proc/%d/map_files/%llx-%llx", (int)pid,
                 (unsigned long long)m->start, (unsigned long long)m->end);

    bool replaced = m->deleted;
    if (!replaced && have_rooted) {
        struct stat st;
        if (stat(rooted, &st) != 0) {
            if (errno == EACCES || errno == EPERM)
                return pyheap_proc_err(err, pid, "/proc/PID/root", errno, true);
            replaced = true;
        } else if (m->inode && (uint64_t)st.st_ino != m->inode) {
            replaced = true;
        }
    }
    const char *first = replaced || !have_rooted ? direct : rooted;
    const char *second = replaced && have_rooted ? rooted : NULL;
    pyheap_error e1 = {0};
    if (pyheap_elf_open(first, out, &e1) == 0) {
        snprintf(opened, opened_len, "%s", first);
        return 0;
    }
    if (second && pyheap_elf_open(second, out, NULL) == 0) {
        snprintf(opened, opened_len, "%s", second);
        return 0;
    }
    if (err)
        *err = e1;
    return -1;
}

/* Load bias from the mappings of the file and its first PT_LOAD. */
static int load_bias(const struct pyheap_maps *maps, const struct pyheap_map *anchor,
                     const pyheap_elf *elf, uint64_t *bias, pyheap_error *err)
{
    uint64_t p_off, p_vaddr;
    if (pyheap_elf_first_load(elf, &p_off, &p_vaddr, err) != 0)
        return -1;
    uint64_t want = p_off & ~(uint64_t)0xfff;
    const struct pyheap_map *best = NULL;
    for (size_t i = 0; i < maps->n; i++) {
        const struct pyheap_map *m = &maps->v[i];
        if (strcmp(m->path, anchor->path) != 0 || m->inode != anchor->inode)
            continue;
        if (m->offset == want) {
            best = m;
            break;
        }
        if (!best || m->offset < best->offset)
            best = m;
    }
    if (!best)
        return pyheap_err_set(err, PYHEAP_E_CORRUPT, 0, 0,
                              "%s is not mapped", anchor->path);
    /* file offset o lives at bias + p_vaddr + (o - p_offset) */
    *bias = best->start - best->offset - p_vaddr + p_off;
    if (*bias & 0xfff)
        return pyheap_err_set(err, PYHEAP_E_CORRUPT, 0, 0,
                              "inconsistent load address of %s", anchor->path);
    return 0;
}

int pyheap_proc_find_interpreter(pid_t pid, const char *exe,
                                 const struct pyheap_maps *maps, size_t skip,
                                 struct pyheap_module *out, pyheap_error *err)
{
    size_t nruntime = 0; /* candidates defining _PyRuntime seen so far */
    /* Candidate mappings: the executable first, then libpython3.x. */
    const struct pyheap_map *cand[MAX_CANDIDATES];
    bool cand_exe[MAX_CANDIDATES];
    size_t nc = 0;
    char exe_path[PATH_MAX];
    snprintf(exe_path, sizeof exe_path, "%s", exe);
    size_t el = strlen(exe_path);
    static const char del[] = " (deleted)";
    if (el >= sizeof del - 1 && strcmp(exe_path + el - (sizeof del - 1), del) == 0)
        exe_path[el - (sizeof del - 1)] = '\0';
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < maps->n && nc < MAX_CANDIDATES; i++) {
            const struct pyheap_map *m = &maps->v[i];
            if (m->path[0] != '/')
                continue;
            bool match = pass == 0 ? strcmp(m->path, exe_path) == 0
                                   : is_libpython(m->path);
            if (!match)
                continue;
            bool dup = false;
            for (size_t k = 0; k < nc; k++)
                if (strcmp(cand[k]->path, m->path) == 0)
                    dup = true;
            if (dup)
                continue;
            cand_exe[nc] = pass == 0;
            cand[nc++] = m;
        }
    }

    pyheap_error first_err = {0};
    bool have_err = false;
    pyheap_elf *old = NULL; /* a CPython without _PyRuntime (< 3.7) */
    size_t old_k = 0;
    for (size_t k = 0; k < nc; k++) {
        pyheap_elf *elf;
        char opened[PATH_MAX + 64];
        pyheap_error e = {0};
        if (open_as_target(pid, cand[k]->path, cand[k], cand_exe[k], opened,
                           sizeof opened, &elf, &e) != 0) {
            if (e.code == PYHEAP_E_PERM || e.code == PYHEAP_E_GONE) {
                pyheap_elf_close(old);
                if (err)
                    *err = e;
                return -1;
            }
            if (!have_err) {
                first_err = e;
                have_err = true;
            }
            continue;
        }
        uint64_t addr = 0;
        bool from_section = false;
        if (pyheap_elf_symbol(elf, "_PyRuntime", &addr, NULL) != 0) {
            unsigned type;
            if (pyheap_elf_section(elf, ".PyRuntime", &addr, NULL, &type) != 0 ||
                addr == 0) {
                if (!old && pyheap_elf_symbol(elf, "PyType_Type", NULL, NULL) == 0) {
                    old = elf;
                    old_k = k;
                } else {
                    pyheap_elf_close(elf);
                }
                continue;
            }
            from_section = true;
        }
        if (nruntime++ < skip) {
            pyheap_elf_close(elf);
            continue;
        }
        uint64_t bias = 0;
        if (load_bias(maps, cand[k], elf, &bias, err) != 0) {
            pyheap_elf_close(elf);
            pyheap_elf_close(old);
            return -1;
        }
        pyheap_elf_close(old);
        snprintf(out->path, sizeof out->path, "%s", cand[k]->path);
        snprintf(out->opened, sizeof out->opened, "%s", opened);
        out->elf = elf;
        out->bias = bias;
        out->runtime_addr = addr + bias;
        out->runtime_from_section = from_section;
        return 0;
    }
    if (old) {
        snprintf(out->path, sizeof out->path, "%s", cand[old_k]->path);
        out->opened[0] = '\0';
        out->elf = old;
        out->bias = 0;
        /* The caller may still find _PyRuntime by its cookie (3.13+). */
        uint64_t bias = 0;
        pyheap_error e = {0};
        if (load_bias(maps, cand[old_k], old, &bias, &e) == 0)
            out->bias = bias;
        out->runtime_addr = 0;
        return -2;
    }
    return pyheap_err_set(err, PYHEAP_E_NOTPYTHON, 0, 0,
                          "process %d (%s) is not a CPython process: no _PyRuntime "
                          "in its executable or a libpython3.x shared library%s%s%s",
                          (int)pid, exe, have_err ? " (could not read: " : "",
                          have_err ? first_err.msg : "", have_err ? ")" : "");
}
