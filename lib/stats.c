/* Memory of a process from /proc/PID/smaps_rollup (issue 5: pyheap stats). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

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
