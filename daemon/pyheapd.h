/* pyheapd internals: the session table (sessions.c), the socket server
 * (server.c) and logging (main.c). */
#ifndef PYHEAPD_H
#define PYHEAPD_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include <jansson.h>

#include "proto.h"
#include "pyheap.h"

#define PYHEAPD_MAX_SESSIONS 64
#define PYHEAPD_MAX_CONNS 64
/* A client that sends nothing for this long is disconnected. */
#define PYHEAPD_IDLE_TIMEOUT_S 120
/* A client that does not read its reply for this long is disconnected. */
#define PYHEAPD_SEND_TIMEOUT_S 30

/* One attached target. Immutable after creation except where noted. */
struct pyheapd_session {
    pyheap_target *target;          /* owned */
    pid_t pid;
    uid_t uid;                      /* real uid of the target at attach */
    time_t attached_at;
    pthread_mutex_t scan_lock;      /* one scan of this target at a time */
    /* Protected by the table lock: */
    unsigned refs;
    int gone;
    uint64_t scans;
    double last_scan_ms;
    struct pyheapd_session *next;
};

struct pyheapd {
    pthread_mutex_t lock;           /* the session table and the counters below */
    struct pyheapd_session *sessions;
    size_t nsessions;

    pthread_mutex_t conn_lock;      /* connection registry */
    pthread_cond_t conn_cv;
    int conn_fds[PYHEAPD_MAX_CONNS];
    size_t nconns;

    char socket_path[108];
    int listen_fd;
};

/* main.c */
void pyheapd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* sessions.c */
int pyheapd_init(struct pyheapd *d);
/* Free every session (no connection may be active). */
void pyheapd_fini(struct pyheapd *d);
/* Handle one parsed request from PEER. Returns a new reference (never NULL
 * unless out of memory). */
json_t *pyheapd_handle(struct pyheapd *d, const struct ucred *peer,
                       const pyheap_request *req);
/* Attach at start-up (no authorization: the operator started us). */
int pyheapd_attach_initial(struct pyheapd *d, pid_t pid, pyheap_proto_error *perr);

/* server.c */
/* Is PATH free to bind? 0: nothing there; 1: a stale socket nobody answers
 * on; -1 (logged): a daemon answers, or PATH is not a socket. */
int pyheapd_probe(const char *path);
/* Refuse if a daemon answers on PATH, remove a stale socket, create the
 * parent directory, bind and listen. */
int pyheapd_listen(struct pyheapd *d, const char *path);
/* Serve until SIGINT/SIGTERM (blocked by the caller and handled through a
 * signalfd), then unlink the socket and wait briefly for clients. Returns
 * the exit status. */
int pyheapd_serve(struct pyheapd *d, const sigset_t *sigs);

#endif
