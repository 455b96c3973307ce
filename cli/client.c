/* One request / one reply over pyheapd's Unix socket. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "proto.h"

static double timeout_s = PYHEAP_CLIENT_DEFAULT_TIMEOUT;

void pyheap_client_set_timeout(double seconds)
{
    timeout_s = seconds > 0 && isfinite(seconds) ? seconds : 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wait until FD is readable or the deadline (0: none) passes: 1, or 0 on
 * timeout, -1 on error. */
static int wait_readable(int fd, double deadline)
{
    for (;;) {
        int ms = -1;
        if (deadline > 0) {
            double left = deadline - now_s();
            if (left <= 0)
                return 0;
            ms = left > 1e6 ? 1000000000 : (int)(left * 1e3) + 1;
        }
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int r = poll(&pfd, 1, ms);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* Send LEN bytes of BUF with PASSFD attached (SCM_RIGHTS) to the first
 * byte, then the rest normally. */
static int send_with_fd(int fd, const char *buf, size_t len, int passfd)
{
    union {
        struct cmsghdr h;
        char b[CMSG_SPACE(sizeof(int))];
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                         .msg_control = ctl.b, .msg_controllen = sizeof ctl.b };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &passfd, sizeof passfd);
    ssize_t w;
    do
        w = sendmsg(fd, &mh, MSG_NOSIGNAL);
    while (w < 0 && errno == EINTR);
    if (w < 0)
        return -1;
    return pyheap_proto_send_all(fd, buf + w, len - (size_t)w);
}

json_t *pyheap_client_call(const char *path, const json_t *request)
{
    return pyheap_client_call_fd(path, request, -1);
}

json_t *pyheap_client_call_fd(const char *path, const json_t *request, int passfd)
{
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sun.sun_path) {
        fprintf(stderr, "pyheap: socket path too long: %s\n", path);
        return NULL;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "pyheap: socket: %s\n", strerror(errno));
        return NULL;
    }
    double deadline = timeout_s > 0 ? now_s() + timeout_s : 0;
    if (timeout_s > 0) {
        /* connect(2) and send(2) on a Unix socket give up after this */
        struct timeval tv = { .tv_sec = (time_t)timeout_s,
                              .tv_usec = (suseconds_t)((timeout_s - floor(timeout_s)) * 1e6) };
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        fprintf(stderr,
                "pyheap: cannot connect to pyheapd at %s (%s); start it with `pyheapd` "
                "or `pyheapd attach PID`, or pass --socket\n",
                path, strerror(errno));
        close(fd);
        return NULL;
    }

    size_t len;
    char *line = pyheap_proto_encode(request, &len);
    if (!line) {
        fprintf(stderr, "pyheap: out of memory\n");
        close(fd);
        return NULL;
    }
    int rc = passfd >= 0 ? send_with_fd(fd, line, len, passfd)
                         : pyheap_proto_send_all(fd, line, len);
    free(line);
    if (rc < 0) {
        fprintf(stderr, "pyheap: cannot send the request to pyheapd at %s: %s\n",
                path, strerror(errno));
        close(fd);
        return NULL;
    }
    shutdown(fd, SHUT_WR);   /* one request per invocation */

    size_t cap = 64 * 1024, have = 0;
    char *buf = malloc(cap);
    json_t *reply = NULL;
    char *nl = NULL;
    while (buf) {
        int ready = wait_readable(fd, deadline);
        if (ready == 0) {
            fprintf(stderr, "pyheap: no reply from pyheapd at %s within %g s (a long scan, or "
                    "pyheapd is stuck: see its log); `pyheap --timeout SECONDS` waits longer, "
                    "0 without limit\n", path, timeout_s);
            goto out;
        }
        ssize_t r = ready < 0 ? -1 : recv(fd, buf + have, cap - have, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            fprintf(stderr, "pyheap: error reading the reply of pyheapd: %s\n", strerror(errno));
            goto out;
        }
        if (r == 0)
            break;
        size_t old = have;
        have += (size_t)r;
        if ((nl = memchr(buf + old, '\n', have - old)))
            break;
        if (have == cap) {
            if (cap >= PYHEAP_PROTO_MAX_REPLY) {
                fprintf(stderr, "pyheap: reply of pyheapd is larger than %d bytes\n",
                        PYHEAP_PROTO_MAX_REPLY);
                goto out;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                fprintf(stderr, "pyheap: out of memory reading the reply\n");
                goto out;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (!buf) {
        fprintf(stderr, "pyheap: out of memory\n");
        goto out;
    }
    if (!nl) {
        fprintf(stderr, "pyheap: pyheapd closed the connection without a complete reply\n");
        goto out;
    }
    json_error_t jerr;
    reply = json_loadb(buf, (size_t)(nl - buf), 0, &jerr);
    if (!reply || !json_is_object(reply)) {
        fprintf(stderr, "pyheap: pyheapd sent an invalid reply: %s\n",
                reply ? "not an object" : jerr.text);
        json_decref(reply);
        reply = NULL;
    }
out:
    free(buf);
    close(fd);
    return reply;
}
