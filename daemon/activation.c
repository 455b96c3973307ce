/* systemd integration without libsystemd: socket activation
 * (sd_listen_fds semantics: LISTEN_PID must be us, LISTEN_FDS counts
 * descriptors from fd 3) and readiness notification (a datagram to
 * $NOTIFY_SOCKET, '@' meaning the abstract namespace). Also the socket
 * file's mode and group for a socket the daemon binds itself. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "pyheapd.h"

#define LISTEN_FDS_START 3

static int parse_ulong(const char *s, unsigned long *out)
{
    if (!s || !*s)
        return -1;
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

int pyheapd_listen_fds(void)
{
    unsigned long lpid, nfds;
    const char *spid = getenv("LISTEN_PID");
    const char *sfds = getenv("LISTEN_FDS");
    int fd = -1;
    if (parse_ulong(spid, &lpid) < 0 || parse_ulong(sfds, &nfds) < 0)
        goto out;
    if ((pid_t)lpid != getpid()) {
        pyheapd_logp(4, "LISTEN_PID=%lu is not us (%d): ignoring socket activation",
                     lpid, (int)getpid());
        goto out;
    }
    if (nfds != 1) {
        pyheapd_logp(3, "LISTEN_FDS=%lu: pyheapd takes exactly one socket", nfds);
        /* Close them anyway: they are ours and nobody else will. */
        for (unsigned long i = 0; i < nfds && i < 64; i++)
            close(LISTEN_FDS_START + (int)i);
        goto out;
    }
    int type = 0;
    socklen_t tl = sizeof type;
    struct sockaddr_un sun;
    socklen_t al = sizeof sun;
    int listening = 0;
    socklen_t ll = sizeof listening;
    if (getsockopt(LISTEN_FDS_START, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
        getsockname(LISTEN_FDS_START, (struct sockaddr *)&sun, &al) < 0 ||
        getsockopt(LISTEN_FDS_START, SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) < 0 ||
        sun.sun_family != AF_UNIX || type != SOCK_STREAM || !listening) {
        pyheapd_logp(3, "fd 3 from systemd is not a listening Unix stream socket");
        close(LISTEN_FDS_START);
        goto out;
    }
    fcntl(LISTEN_FDS_START, F_SETFD, FD_CLOEXEC);
    fd = LISTEN_FDS_START;
out:
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    unsetenv("LISTEN_FDNAMES");
    return fd;
}

int pyheapd_notify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return 0;
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    size_t plen = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || plen >= sizeof sun.sun_path) {
        pyheapd_logp(4, "NOTIFY_SOCKET is not a usable socket address; not notifying");
        return -1;
    }
    memcpy(sun.sun_path, path, plen);
    if (path[0] == '@')
        sun.sun_path[0] = '\0';   /* abstract namespace */
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen +
                                 (path[0] == '@' ? 0 : 1));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        pyheapd_logp(4, "cannot notify systemd: socket: %s", strerror(errno));
        return -1;
    }
    ssize_t n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, alen);
    int e = errno;
    close(fd);
    if (n < 0) {
        pyheapd_logp(4, "cannot notify systemd at %s: %s", path, strerror(e));
        return -1;
    }
    return 0;
}

int pyheapd_socket_perms(const struct pyheapd_config *cfg, const char *path)
{
    if (cfg->socket_gid >= 0 && chown(path, (uid_t)-1, (gid_t)cfg->socket_gid) < 0) {
        pyheapd_logp(3, "cannot give %s to group %d: %s", path, cfg->socket_gid,
                     strerror(errno));
        return -1;
    }
    if (chmod(path, (mode_t)cfg->socket_mode) < 0) {
        pyheapd_logp(3, "cannot set mode %04o on %s: %s", cfg->socket_mode, path,
                     strerror(errno));
        return -1;
    }
    return 0;
}
