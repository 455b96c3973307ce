/* pyheapd's socket server: a listening Unix stream socket, a poll loop in
 * the main thread (new connections + a signalfd for SIGINT/SIGTERM), and one
 * detached thread per connection (at most PYHEAPD_MAX_CONNS). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "pyheapd.h"

/* mkdir -p for the parent directory of PATH, new directories 0755. */
static int make_parent(const char *path)
{
    char dir[sizeof ((struct sockaddr_un *)0)->sun_path];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
                pyheapd_log("cannot create directory %s: %s", dir, strerror(errno));
                return -1;
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    return 0;
}

static void fill_addr(struct sockaddr_un *sun, const char *path)
{
    memset(sun, 0, sizeof *sun);
    sun->sun_family = AF_UNIX;
    snprintf(sun->sun_path, sizeof sun->sun_path, "%s", path);
}

int pyheapd_probe(const char *path)
{
    struct sockaddr_un sun;
    if (strlen(path) >= sizeof sun.sun_path) {
        pyheapd_log("socket path too long: %s", path);
        return -1;
    }
    fill_addr(&sun, path);
    struct stat st;
    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        pyheapd_log("cannot stat %s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        pyheapd_log("%s exists and is not a socket; refusing to replace it", path);
        return -1;
    }
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0) {
        pyheapd_log("socket: %s", strerror(errno));
        return -1;
    }
    if (connect(probe, (struct sockaddr *)&sun, sizeof sun) == 0) {
        close(probe);
        pyheapd_log("another pyheapd is already listening on %s; not starting", path);
        return -1;
    }
    int e = errno;
    close(probe);
    if (e != ECONNREFUSED && e != ENOENT) {
        pyheapd_log("cannot probe existing socket %s: %s", path, strerror(e));
        return -1;
    }
    return 1;
}

int pyheapd_listen(struct pyheapd *d, const char *path)
{
    struct sockaddr_un sun;
    int state = pyheapd_probe(path);
    if (state < 0)
        return -1;
    fill_addr(&sun, path);
    if (state == 1) {
        pyheapd_log("removing stale socket %s", path);
        if (unlink(path) < 0 && errno != ENOENT) {
            pyheapd_log("cannot remove stale socket %s: %s", path, strerror(errno));
            return -1;
        }
    }
    if (make_parent(path) < 0)
        return -1;

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        pyheapd_log("socket: %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        pyheapd_log("cannot bind %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    /* Root serves every user (each request is authorized with
     * SO_PEERCRED) unless --socket-mode/--socket-group narrow it; an
     * unprivileged daemon serves only its own user by default. */
    if (pyheapd_socket_perms(&d->cfg, path) < 0 || listen(fd, 128) < 0) {
        pyheapd_log("cannot set up %s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    d->listen_fd = fd;
    snprintf(d->socket_path, sizeof d->socket_path, "%s", path);
    pyheapd_log("listening on %s", path);
    return 0;
}

int pyheapd_send_reply(const struct pyheapd *d, int fd, json_t *reply)
{
    if (!reply)
        return -1;
    size_t len;
    char *line = pyheapd_encode_capped(&d->cfg, reply, &len);
    if (!line)
        return -1;
    int rc = pyheap_proto_send_all(fd, line, len);
    free(line);
    return rc;
}

#define EARLY_SEND_MS 100

void pyheapd_send_early(const struct pyheapd *d, struct pyheapd_reply_to *to, json_t *reply)
{
    size_t len = 0, off = 0;
    char *line = pyheapd_encode_capped(&d->cfg, reply, &len);
    to->sent = 1;
    to->send_rc = line ? 0 : -1;
    /* A client reading promptly drains a reply bigger than the socket's
     * buffer within moments: keep sending while it does, for up to
     * EARLY_SEND_MS in all. */
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (line && off < len) {
        ssize_t w = send(to->fd, line + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct timespec t1;
            clock_gettime(CLOCK_MONOTONIC, &t1);
            long left = EARLY_SEND_MS - ((t1.tv_sec - t0.tv_sec) * 1000 +
                                         (t1.tv_nsec - t0.tv_nsec) / 1000000);
            struct pollfd p = { .fd = to->fd, .events = POLLOUT };
            if (left > 0 && poll(&p, 1, (int)left) > 0 && !(p.revents & (POLLERR | POLLHUP)))
                continue;
            if (left > 0 && (p.revents & (POLLERR | POLLHUP)))
                to->send_rc = -1;
            break;
        }
        if (w < 0) {
            to->send_rc = -1;
            break;
        }
        off += (size_t)w;
    }
    if (line && to->send_rc == 0 && off < len) {
        to->rest = line;
        to->rest_off = off;
        to->rest_len = len;
    } else {
        free(line);
    }
}

static int send_error(const struct pyheapd *d, int fd, const char *code, const char *msg)
{
    pyheap_proto_error perr;
    pyheap_proto_err_set(&perr, code, "%s", msg);
    return pyheapd_send_reply(d, fd, pyheap_proto_error_reply(&perr));
}

struct conn {
    struct pyheapd *d;
    int fd;
    struct ucred peer;
    int passed_fd;      /* SCM_RIGHTS fd of the next request, or -1 (issue 5) */
};

/* recv() that also takes a file descriptor the client passed with
 * SCM_RIGHTS ("snapshot" writes into it); any other passed fd is closed. */
static ssize_t recv_fds(struct conn *c, char *buf, size_t len)
{
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(4 * sizeof(int))];
    } ctl;
    struct iovec iov = { .iov_base = buf, .iov_len = len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = ctl.b, .msg_controllen = sizeof ctl.b };
    ssize_t r = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);
    if (r < 0)
        return r;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
            int f;
            memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof f);
            if (c->passed_fd < 0)
                c->passed_fd = f;
            else
                close(f);
        }
    }
    return r;
}

/* Handle one request line; returns -1 to close the connection. */
static int handle_line(struct conn *c, const char *line, size_t len)
{
    pyheap_request req;
    pyheap_proto_error perr;
    json_t *reply;
    struct pyheapd_reply_to to = { .fd = c->fd };
    if (pyheap_proto_parse(line, len, &req, &perr) < 0) {
        pyheapd_log("bad request from pid %d uid %lu: %s: %s", (int)c->peer.pid,
                    (unsigned long)c->peer.uid, perr.code, perr.msg);
        reply = pyheap_proto_error_reply(&perr);
    } else {
        req.fd = c->passed_fd;
        reply = pyheapd_handle(c->d, &c->peer, &req, &to);
    }
    if (c->passed_fd >= 0) {
        close(c->passed_fd);
        c->passed_fd = -1;
    }
    if (to.sent) {
        json_decref(reply);
        if (to.rest && to.send_rc == 0)
            to.send_rc = pyheap_proto_send_all(c->fd, to.rest + to.rest_off,
                                               to.rest_len - to.rest_off);
        free(to.rest);
        return to.send_rc;
    }
    return pyheapd_send_reply(c->d, c->fd, reply);
}

/* After a fatal reply: stop sending, then read and drop what the client
 * already sent (bounded) so that closing does not reset the connection and
 * destroy the reply before the client reads it. */
static void drain(int fd, char *buf, size_t cap)
{
    shutdown(fd, SHUT_WR);
    struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t total = 0;
    while (total < 16u * 1024 * 1024) {
        ssize_t r = recv(fd, buf, cap, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        total += (size_t)r;
    }
}

static void conn_serve(struct conn *c)
{
    /* One line plus its newline fits; anything longer is refused. */
    size_t maxline = c->d->cfg.max_request;
    size_t cap = maxline + 1;
    char *buf = malloc(cap);
    if (!buf) {
        send_error(c->d, c->fd, pyheap_errcode_name(PYHEAP_E_NOMEM), "pyheapd is out of memory");
        return;
    }
    size_t have = 0;
    for (;;) {
        ssize_t r = recv_fds(c, buf + have, cap - have);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;   /* EOF, error or idle timeout */
        size_t scan_from = have;
        have += (size_t)r;
        size_t start = 0;
        int closing = 0;
        for (size_t i = scan_from; i < have; i++) {
            if (buf[i] != '\n')
                continue;
            size_t end = i;
            if (end > start && buf[end - 1] == '\r')
                end--;
            /* Blank lines are ignored (handy with nc / socat). */
            if (end > start && handle_line(c, buf + start, end - start) < 0) {
                closing = 1;
                break;
            }
            start = i + 1;
        }
        if (closing)
            break;
        memmove(buf, buf + start, have - start);
        have -= start;
        if (have == cap) {
            char msg[128];
            snprintf(msg, sizeof msg, "request line is longer than %zu bytes; closing the connection",
                     maxline);
            pyheapd_log("request over %zu bytes from pid %d uid %lu; closing",
                        maxline, (int)c->peer.pid, (unsigned long)c->peer.uid);
            send_error(c->d, c->fd, PYHEAP_PROTO_E_TOO_LONG, msg);
            drain(c->fd, buf, cap);
            break;
        }
    }
    free(buf);
    if (c->passed_fd >= 0) {
        close(c->passed_fd);
        c->passed_fd = -1;
    }
}

static void conn_unregister(struct pyheapd *d, int fd)
{
    pthread_mutex_lock(&d->conn_lock);
    for (size_t i = 0; i < d->nconns; i++) {
        if (d->conn_fds[i] == fd) {
            d->conn_fds[i] = d->conn_fds[--d->nconns];
            break;
        }
    }
    pthread_cond_broadcast(&d->conn_cv);
    pthread_mutex_unlock(&d->conn_lock);
}

static void *conn_thread(void *arg)
{
    struct conn *c = arg;
    conn_serve(c);
    /* Unregister before closing so shutdown never touches a reused fd. */
    conn_unregister(c->d, c->fd);
    close(c->fd);
    free(c);
    return NULL;
}

static void accept_one(struct pyheapd *d)
{
    int fd = accept4(d->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
            pyheapd_log("accept: %s", strerror(errno));
        return;
    }
    struct timeval rto = { .tv_sec = PYHEAPD_IDLE_TIMEOUT_S };
    struct timeval sto = { .tv_sec = PYHEAPD_SEND_TIMEOUT_S };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rto, sizeof rto);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &sto, sizeof sto);

    struct conn *c = calloc(1, sizeof *c);
    socklen_t sl = sizeof c->peer;
    if (!c || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c->peer, &sl) < 0 ||
        sl != sizeof c->peer) {
        pyheapd_log("cannot read peer credentials: %s", strerror(errno));
        send_error(d, fd, pyheap_errcode_name(PYHEAP_E_PERM),
                   "pyheapd could not read your credentials (SO_PEERCRED)");
        free(c);
        close(fd);
        return;
    }
    c->d = d;
    c->fd = fd;
    c->passed_fd = -1;

    pthread_mutex_lock(&d->conn_lock);
    if (d->nconns >= d->cfg.max_conns || d->nconns >= PYHEAPD_MAX_CONNS_LIMIT) {
        pthread_mutex_unlock(&d->conn_lock);
        pyheapd_log("refusing connection from pid %d: %zu connections already open",
                    (int)c->peer.pid, d->nconns);
        send_error(d, fd, PYHEAP_PROTO_E_BUSY, "pyheapd has too many open connections; try again");
        free(c);
        close(fd);
        return;
    }
    d->conn_fds[d->nconns++] = fd;
    pthread_mutex_unlock(&d->conn_lock);

    pthread_attr_t attr;
    pthread_t th;
    int rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        rc = pthread_create(&th, &attr, conn_thread, c);
        pthread_attr_destroy(&attr);
    }
    if (rc != 0) {
        pyheapd_log("cannot start a connection thread: %s", strerror(rc));
        conn_unregister(d, fd);
        send_error(d, fd, PYHEAP_PROTO_E_BUSY, "pyheapd cannot start a thread; try again");
        free(c);
        close(fd);
    }
}

int pyheapd_adopt(struct pyheapd *d, int fd)
{
    struct sockaddr_un sun;
    socklen_t al = sizeof sun;
    memset(&sun, 0, sizeof sun);
    if (getsockname(fd, (struct sockaddr *)&sun, &al) < 0)
        sun.sun_path[0] = '\0';
    d->listen_fd = fd;
    d->activated = 1;
    snprintf(d->socket_path, sizeof d->socket_path, "%s",
             sun.sun_path[0] ? sun.sun_path : "(socket from systemd)");
    pyheapd_log("listening on %s (socket activation)", d->socket_path);
    return 0;
}

int pyheapd_serve(struct pyheapd *d, const sigset_t *sigs)
{
    int sfd = signalfd(-1, sigs, SFD_CLOEXEC);
    if (sfd < 0) {
        pyheapd_log("signalfd: %s", strerror(errno));
        return 1;
    }
    int status = 0;
    char ready[160];
    snprintf(ready, sizeof ready, "READY=1\nSTATUS=serving on %s\nMAINPID=%d",
             d->socket_path, (int)getpid());
    pyheapd_notify(ready);
    for (;;) {
        struct pollfd p[2] = {
            { .fd = d->listen_fd, .events = POLLIN },
            { .fd = sfd, .events = POLLIN },
        };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            pyheapd_log("poll: %s", strerror(errno));
            status = 1;
            break;
        }
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                pyheapd_log("received %s; shutting down", strsignal((int)si.ssi_signo));
                break;
            }
        }
        if (p[0].revents & POLLIN)
            accept_one(d);
    }
    close(sfd);
    pyheapd_notify("STOPPING=1\nSTATUS=shutting down");
    close(d->listen_fd);
    d->listen_fd = -1;
    /* A socket from systemd is systemd's to remove. */
    if (!d->activated && unlink(d->socket_path) < 0 && errno != ENOENT)
        pyheapd_log("cannot remove %s: %s", d->socket_path, strerror(errno));

    /* Wake connection threads and give a running scan a moment to end. */
    pthread_mutex_lock(&d->conn_lock);
    for (size_t i = 0; i < d->nconns; i++)
        shutdown(d->conn_fds[i], SHUT_RDWR);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    while (d->nconns > 0) {
        if (pthread_cond_timedwait(&d->conn_cv, &d->conn_lock, &until) == ETIMEDOUT)
            break;
    }
    size_t left = d->nconns;
    pthread_mutex_unlock(&d->conn_lock);
    if (left > 0) {
        /* Threads still use the sessions: leave without freeing them or
         * running exit handlers under their feet. */
        pyheapd_log("%zu connections still busy; exiting anyway", left);
        _exit(status);
    }
    pyheapd_fini(d);
    return status;
}
