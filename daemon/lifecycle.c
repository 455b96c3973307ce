/* Target identity: what a PID was at attach, to notice when it exits,
 * calls exec, or is reused by an unrelated process, so that a session never
 * reads a process it was not attached to. Checked before and after every
 * scan (sessions.c) and by "ps". */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pyheapd.h"

/* Field 22 (starttime) and field 3 (state) of /proc/PID/stat; the command
 * name (field 2) may contain spaces and parentheses, so parse after the
 * last ')'. */
static int read_stat(pid_t pid, unsigned long long *start, char *state)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return -1;
    p += 2;
    *state = *p;
    /* Skip fields 3..21: 19 fields. */
    for (int i = 0; i < 19; i++) {
        p = strchr(p, ' ');
        if (!p)
            return -1;
        p++;
    }
    return sscanf(p, "%llu", start) == 1 ? 0 : -1;
}

/* A fingerprint of the address space: the start of the first mapping and
 * of the [stack] mapping. exec builds a new address space, and with ASLR
 * the stack (and a PIE executable) lands elsewhere, so an exec of the very
 * same program is noticed too (not with randomize_va_space=0). */
static unsigned long long first_map(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    unsigned long long first = 0, stack = 0;
    char line[512];
    for (int n = 0; n < 100000 && fgets(line, sizeof line, f); n++) {
        unsigned long long a;
        if (sscanf(line, "%llx", &a) != 1)
            continue;
        if (n == 0)
            first = a;
        if (strstr(line, "[stack]")) {
            stack = a;
            break;
        }
    }
    fclose(f);
    return first * 1000003ULL ^ stack;
}

static int read_exe(pid_t pid, struct pyheapd_identity *id)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(path, id->exe, sizeof id->exe - 1);
    if (n < 0)
        return -1;
    id->exe[n] = '\0';
    struct stat st;
    if (stat(path, &st) < 0)
        return -1;
    id->exe_dev = (unsigned long long)st.st_dev;
    id->exe_ino = (unsigned long long)st.st_ino;
    return 0;
}

int pyheapd_identity_read(pid_t pid, struct pyheapd_identity *id)
{
    memset(id, 0, sizeof *id);
    char state;
    if (read_stat(pid, &id->start_time, &state) < 0 || read_exe(pid, id) < 0)
        return -1;
    id->first_map = first_map(pid);
    /* Did it exec between the two reads? */
    unsigned long long again;
    if (read_stat(pid, &again, &state) < 0 || again != id->start_time)
        return -1;
    return 0;
}

enum pyheapd_state pyheapd_identity_check(pid_t pid, const struct pyheapd_identity *id)
{
    unsigned long long start;
    char state;
    if (read_stat(pid, &start, &state) < 0)
        return PYHEAPD_GONE;
    if (start != id->start_time)
        return PYHEAPD_PID_REUSED;
    if (state == 'Z' || state == 'X')
        return PYHEAPD_GONE;
    struct pyheapd_identity now;
    memset(&now, 0, sizeof now);
    if (read_exe(pid, &now) < 0) {
        /* Exiting (its mm and exe already released) or gone: either way
         * nothing of it is left to read. */
        if (read_stat(pid, &start, &state) == 0 && start != id->start_time)
            return PYHEAPD_PID_REUSED;
        return PYHEAPD_GONE;
    }
    if (strcmp(now.exe, id->exe) != 0 || now.exe_dev != id->exe_dev ||
        now.exe_ino != id->exe_ino)
        return PYHEAPD_EXECD;
    /* exec of the same program: the address space is new; with ASLR its
     * first mapping moves. */
    unsigned long long fm = first_map(pid);
    if (fm && id->first_map && fm != id->first_map)
        return PYHEAPD_EXECD;
    return PYHEAPD_ALIVE;
}

const char *pyheapd_state_name(enum pyheapd_state st)
{
    switch (st) {
    case PYHEAPD_ALIVE: return "attached";
    case PYHEAPD_GONE: return "gone";
    case PYHEAPD_EXECD: return "exec'd";
    case PYHEAPD_PID_REUSED: return "pid reused";
    }
    return "?";
}
