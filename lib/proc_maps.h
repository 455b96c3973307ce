/* /proc/PID: start time, executable, memory maps, and finding the ELF
 * module that holds the interpreter. Private to libpyheap. */
#ifndef PYHEAP_PROC_MAPS_H
#define PYHEAP_PROC_MAPS_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "elf_file.h"
#include "internal.h"

/* Bounds on what we accept from /proc/PID/maps. */
#define PYHEAP_MAPS_MAX_LINES 262144u

struct pyheap_map {
    uint64_t start, end, offset;
    uint64_t inode;
    unsigned dev_major, dev_minor;
    char perms[5];
    bool deleted;    /* the path carried " (deleted)" (stripped here) */
    char *path;      /* "" for anonymous mappings; owned by the list */
};

struct pyheap_maps {
    struct pyheap_map *v;
    size_t n;
};

/* How a failing /proc access maps to an error: before the target is known
 * to exist, ENOENT/ESRCH mean "no such process"; afterwards "gone".
 * EACCES/EPERM name ptrace_scope and CAP_SYS_PTRACE. Returns -1. */
int pyheap_proc_err(pyheap_error *err, pid_t pid, const char *what, int sys_errno,
                    bool existed);

/* /proc/PID/stat: start time (field 22) and state (field 3). */
/* Resident bytes of process PID (/proc/PID/statm), 0 if unknown. */
uint64_t pyheap_proc_rss(pid_t pid);
int pyheap_proc_stat(pid_t pid, unsigned long long *start_time, char *state,
                     bool existed, pyheap_error *err);
/* readlink /proc/PID/exe (" (deleted)" kept if present). */
int pyheap_proc_exe(pid_t pid, char *buf, size_t len, bool existed,
                    pyheap_error *err);
int pyheap_proc_maps_read(pid_t pid, struct pyheap_maps *out, pyheap_error *err);
void pyheap_proc_maps_free(struct pyheap_maps *m);

/* The ELF module holding the interpreter. */
struct pyheap_module {
    char path[PATH_MAX];     /* as the target sees it */
    char opened[PATH_MAX + 64]; /* what we opened (/proc/PID/root/..., map_files) */
    pyheap_elf *elf;         /* owned */
    uint64_t bias;           /* load bias */
    uint64_t runtime_addr;   /* &_PyRuntime in the target */
    bool runtime_from_section; /* found via the .PyRuntime section */
};

/* Candidates: the executable, then mapped files named libpython3.*.so*.
 * The module is the first (after SKIP such) whose ELF defines _PyRuntime
 * (.dynsym/.symtab), or failing that has a .PyRuntime section: the caller
 * retries with SKIP + 1 when a module's offsets do not validate. -1 +
 * PYHEAP_E_NOTPYTHON when none does. -2 (err untouched) when the module is a
 * CPython without _PyRuntime symbol or section (before 3.7, or stripped of
 * both): out->path, out->elf and out->bias are set, runtime_addr is 0.
 * On 0 and -2 the caller owns out->elf (pyheap_proc_module_clear). */
int pyheap_proc_find_interpreter(pid_t pid, const char *exe,
                                 const struct pyheap_maps *maps, size_t skip,
                                 struct pyheap_module *out, pyheap_error *err);
void pyheap_proc_module_clear(struct pyheap_module *m);

#endif
