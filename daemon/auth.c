/* Authorization of every request: a client may inspect a process only if
 * the kernel would let it ptrace that process itself (the rule of
 * __ptrace_may_access, as far as it can be checked from outside):
 *  - a privileged peer (uid 0, or CAP_SYS_PTRACE in its effective set) may
 *    inspect any process;
 *  - otherwise the target's real, effective and saved uids must all be the
 *    peer's uid, its real, effective and saved gids all the peer's gid, and
 *    the target must be dumpable (a non-dumpable process's /proc files
 *    belong to root, which is how it is recognised here).
 * Yama's ptrace_scope (descendants only) is not emulated: the daemon reads
 * on behalf of a same-user client, as `gdb -p` would under scope 0. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pyheapd.h"

#define CAP_SYS_PTRACE_BIT 19

struct ids {
    unsigned long uid[4], gid[4];   /* real, effective, saved, fs */
    unsigned long long capeff;
    int have_uid, have_gid, have_cap;
};

/* Parse /proc/PID/status: 0, or -1 with errno (ENOENT/ESRCH: gone). */
static int read_ids(pid_t pid, struct ids *ids)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    memset(ids, 0, sizeof *ids);
    char line[256];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "Uid:", 4) == 0)
            ids->have_uid = sscanf(line + 4, "%lu %lu %lu %lu", &ids->uid[0], &ids->uid[1],
                                   &ids->uid[2], &ids->uid[3]) == 4;
        else if (strncmp(line, "Gid:", 4) == 0)
            ids->have_gid = sscanf(line + 4, "%lu %lu %lu %lu", &ids->gid[0], &ids->gid[1],
                                   &ids->gid[2], &ids->gid[3]) == 4;
        else if (strncmp(line, "CapEff:", 7) == 0)
            ids->have_cap = sscanf(line + 7, "%llx", &ids->capeff) == 1;
    }
    fclose(f);
    if (!ids->have_uid || !ids->have_gid) {
        errno = EINVAL;
        return -1;
    }
    return 0;
}

int pyheapd_peer_privileged(const struct ucred *peer)
{
    if (peer->uid == 0)
        return 1;
    /* CAP_SYS_PTRACE of the connecting process. Its pid could have been
     * reused since connect(): trust the capability only if the process
     * there still has the credentials the kernel recorded at connect. */
    struct ids p;
    if (read_ids(peer->pid, &p) < 0 || !p.have_cap)
        return 0;
    if (p.uid[1] != (unsigned long)peer->uid || p.gid[1] != (unsigned long)peer->gid)
        return 0;
    return (p.capeff >> CAP_SYS_PTRACE_BIT) & 1;
}

/* Does /proc/PID belong to root although the process does not run as root?
 * The kernel does that for non-dumpable processes (prctl(PR_SET_DUMPABLE,
 * 0), set-id programs, changed credentials). */
static int non_dumpable(pid_t pid, const struct ids *t)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    struct stat st;
    if (stat(path, &st) < 0)
        return 0;
    return st.st_uid == 0 && t->uid[1] != 0;
}

int pyheapd_authorize(const struct ucred *peer, pid_t pid, const uid_t *known_uid,
                      pyheap_proto_error *perr)
{
    if (pyheapd_peer_privileged(peer))
        return 0;
    struct ids t;
    if (read_ids(pid, &t) < 0) {
        if (!known_uid)
            return pyheap_proto_err_set(perr, pyheap_errcode_name(PYHEAP_E_NOPROC),
                                        "no process with PID %d", (int)pid);
        /* Gone: the session may still be shown or detached by its owner. */
        if (*known_uid == peer->uid)
            return 0;
        return pyheap_proto_err_set(perr, pyheap_errcode_name(PYHEAP_E_PERM),
                                    "process %d belonged to uid %lu, and you are uid %lu: "
                                    "pyheapd lets a client inspect only its own processes",
                                    (int)pid, (unsigned long)*known_uid,
                                    (unsigned long)peer->uid);
    }
    unsigned long u = peer->uid, g = peer->gid;
    if (known_uid && *known_uid != peer->uid)
        return pyheap_proto_err_set(perr, pyheap_errcode_name(PYHEAP_E_PERM),
                                    "process %d was attached as uid %lu's, and you are "
                                    "uid %lu: pyheapd lets a client inspect only its own "
                                    "processes (or any, as root or with CAP_SYS_PTRACE)",
                                    (int)pid, (unsigned long)*known_uid, u);
    for (int i = 0; i < 3; i++) {
        if (t.uid[i] != u)
            return pyheap_proto_err_set(perr, pyheap_errcode_name(PYHEAP_E_PERM),
                                        "process %d runs as uid %lu/%lu/%lu (real/effective/"
                                        "saved), and you are uid %lu: pyheapd lets a client "
                                        "inspect only its own processes, those it could "
                                        "ptrace itself (or any, as root or with "
                                        "CAP_SYS_PTRACE)",
                                        (int)pid, t.uid[0], t.uid[1], t.uid[2], u);
    }
    for (int i = 0; i < 3; i++) {
        if (t.gid[i] != g)
            return pyheap_proto_err_set(perr, pyheap_errcode_name(PYHEAP_E_PERM),
                                        "process %d runs with gid %lu/%lu/%lu (real/effective/"
                                        "saved), and yours is %lu: the kernel would not let "
                                        "you ptrace it, so pyheapd will not read it for you",
                                        (int)pid, t.gid[0], t.gid[1], t.gid[2], g);
    }
    if (non_dumpable(pid, &t))
        return pyheap_proto_err_set(perr, pyheap_errcode_name(PYHEAP_E_PERM),
                                    "process %d is not dumpable (set-id program or "
                                    "prctl(PR_SET_DUMPABLE, 0)): only root may inspect it",
                                    (int)pid);
    return 0;
}
