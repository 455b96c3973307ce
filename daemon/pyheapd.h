/* pyheapd internals: the session table (sessions.c), the socket server
 * (server.c) and logging (main.c). */
#ifndef PYHEAPD_H
#define PYHEAPD_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>

#include <jansson.h>

#include "proto.h"
#include "pyheap.h"

#define PYHEAPD_MAX_SESSIONS 64
/* Default and hard upper bound of --max-clients. */
#define PYHEAPD_MAX_CONNS 64
#define PYHEAPD_MAX_CONNS_LIMIT 1024
/* A client that sends nothing for this long is disconnected. */
#define PYHEAPD_IDLE_TIMEOUT_S 120
/* A client that does not read its reply for this long is disconnected. */
#define PYHEAPD_SEND_TIMEOUT_S 30

/* Operator settings (main.c parses them; docs/operations.md). */
struct pyheapd_config {
    unsigned socket_mode;          /* own socket's mode (fallback bind) */
    int socket_gid;                /* own socket's group, -1: unchanged */
    size_t max_conns;              /* concurrent clients */
    size_t max_request;            /* request line bytes, <= PYHEAP_PROTO_MAX_LINE */
    uint64_t scan_budget_ms;       /* per-scan time budget, 0: none */
    size_t max_reply;              /* reply line bytes */
    unsigned freeze_stop_ms;       /* --freeze: bound on waiting for threads to stop */
    int scan_nice;                 /* --scan-nice: 1..19, 0: scans keep the daemon's priority */
    unsigned scan_threads;         /* --scan-threads: walker threads per scan */
    int journal_prefix;            /* "<N>" priority prefixes (JOURNAL_STREAM set) */
};

/* What the daemon saw of a target at attach, to tell "gone", "exec'd" and
 * "pid reused" apart later (lifecycle.c). */
struct pyheapd_identity {
    unsigned long long start_time; /* /proc/PID/stat field 22 */
    char exe[256];                 /* readlink /proc/PID/exe */
    unsigned long long exe_dev, exe_ino;
    unsigned long long first_map;  /* start of the first mapping (ASLR: moves on exec) */
};

enum pyheapd_state {
    PYHEAPD_ALIVE = 0,
    PYHEAPD_GONE,        /* exited (or zombie) */
    PYHEAPD_EXECD,       /* same PID and start time, another program image */
    PYHEAPD_PID_REUSED,  /* the PID now belongs to another process */
};

/* One attached target. Immutable after creation except where noted. */
struct pyheapd_history;

struct pyheapd_session {
    pyheap_target *target;          /* owned */
    pid_t pid;
    uid_t uid;                      /* real uid of the target at attach */
    time_t attached_at;
    pthread_mutex_t scan_lock;      /* one scan of this target at a time */
    /* Protected by the table lock: */
    unsigned refs;
    int gone;
    enum pyheapd_state state;       /* why gone (table lock) */
    struct pyheapd_identity id;     /* immutable after attach */
    uint64_t scans;
    double last_scan_ms;
    struct pyheapd_history *hist;   /* issue 5: owned; its own lock (history.h) */
    struct pyheapd_session *next;
};

struct pyheapd {
    pthread_mutex_t lock;           /* the session table and the counters below */
    struct pyheapd_session *sessions;
    size_t nsessions;

    pthread_mutex_t conn_lock;      /* connection registry */
    pthread_cond_t conn_cv;
    int conn_fds[PYHEAPD_MAX_CONNS_LIMIT];
    size_t nconns;

    char socket_path[108];
    int listen_fd;
    int activated;                  /* listen_fd came from systemd: do not unlink */
    struct pyheapd_config cfg;
    atomic_int prio_warned;         /* a failure to lower a scan's priority was logged */
};

/* main.c */
void pyheapd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Same with a syslog priority (LOG_ERR...), shown as "<N>" for journald. */
void pyheapd_logp(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pyheapd_log_set_journal(int on);

/* activation.c: systemd socket activation and readiness notification. */
/* The listening socket passed by systemd (LISTEN_PID/LISTEN_FDS, fd 3), or
 * -1 when not socket-activated (then the daemon binds its own). Unsets the
 * variables so children do not inherit them. */
int pyheapd_listen_fds(void);
/* Send STATE ("READY=1\nSTATUS=...") to $NOTIFY_SOCKET; no-op without it.
 * 0, or -1 (logged). */
int pyheapd_notify(const char *state);
/* Apply --socket-mode / --socket-group to the socket file at PATH. */
int pyheapd_socket_perms(const struct pyheapd_config *cfg, const char *path);

/* auth.c: may PEER inspect PID as the kernel's ptrace rule would allow?
 * 0, or -1 with *perr (code "permission" or "no_process"). KNOWN_UID is the
 * target uid recorded at attach (used when the process is gone) or NULL. */
int pyheapd_authorize(const struct ucred *peer, pid_t pid, const uid_t *known_uid,
                      pyheap_proto_error *perr);
/* Is the peer privileged (root or CAP_SYS_PTRACE in its effective set)? */
int pyheapd_peer_privileged(const struct ucred *peer);

/* lifecycle.c */
int pyheapd_identity_read(pid_t pid, struct pyheapd_identity *id);
/* Compare PID with what was recorded. */
enum pyheapd_state pyheapd_identity_check(pid_t pid, const struct pyheapd_identity *id);
const char *pyheapd_state_name(enum pyheapd_state st);

/* scan.c: one scan of a session's target, shared by every command that
 * needs a snapshot. Checks the target's identity before and after (a
 * changed identity marks the session and fails with its state), applies
 * the time budget, and with FREEZE stops the target for the scan only (in
 * a dedicated thread, so the kernel resumes the target even if that thread
 * dies). The caller holds a reference on S, not its scan_lock. */
struct pyheapd_scan_info {
    uint64_t gen;             /* pyheapd_history_scan_begin's, for keep_full */
    int froze;
    double pause_ms;          /* with freeze: how long the target was stopped */
    size_t frozen_threads;
    double wall_ms;
};
/* With EARLY (may be NULL): EARLY->fn is called on the scan's thread with
 * the walk's census before the snapshot is built, if the walk was complete,
 * its time budget not spent and the target still the same process (info:
 * the freeze's figures so far). The scan goes on afterwards as usual. */
struct pyheapd_early {
    void (*fn)(void *arg, const pyheap_census *c, const struct pyheapd_scan_info *info);
    void *arg;
};
int pyheapd_scan(struct pyheapd *d, struct pyheapd_session *s, int freeze,
                 const struct pyheapd_early *early,
                 pyheap_snapshot **out, struct pyheapd_scan_info *info,
                 pyheap_proto_error *perr);
/* Give the calling thread the scans' CPU priority: nice cfg.scan_nice and
 * SCHED_BATCH; nothing with --scan-nice 0 or when the thread already runs
 * at that nice or lower (it never raises a priority). Failures (a seccomp filter, e.g.
 * the unit's ~@resources) are logged once; the scan runs anyway. Used by
 * every scan that does not stop the target, and by the periodic series
 * thread (history.c). */
void pyheapd_scan_priority(struct pyheapd *d);
/* Re-check S's identity (table lock not held); marks it. Returns its state. */
enum pyheapd_state pyheapd_session_check(struct pyheapd *d, struct pyheapd_session *s);

/* limits.c */
/* Encode REPLY (consumed) as one line within cfg->max_reply bytes: long
 * arrays ("types", "targets") are shortened and the reply says so
 * ("reply_truncated"); if it still does not fit, an error reply. */
char *pyheapd_encode_capped(const struct pyheapd_config *cfg, json_t *reply, size_t *len);

/* sessions.c */
int pyheapd_init(struct pyheapd *d);
/* Free every session (no connection may be active). */
void pyheapd_fini(struct pyheapd *d);
/* Where the reply to a request goes. A command may send its reply itself
 * before it has finished ("top" answers from the walk's census while the
 * snapshot is still being built: issue 7, pyheapd_send_early); then sent
 * is set and send_rc is 0, or -1 when the client could not be sent to. */
struct pyheapd_reply_to {
    int fd;
    int sent;
    int send_rc;
    /* What an early send left for the connection's thread to send once
     * the command is over (the socket's buffer was full): malloc'd. */
    char *rest;
    size_t rest_off, rest_len;
};
/* Handle one parsed request from PEER. Returns a new reference (never NULL
 * unless out of memory), or NULL when the reply went to TO already. */
json_t *pyheapd_handle(struct pyheapd *d, const struct ucred *peer,
                       const pyheap_request *req, struct pyheapd_reply_to *to);
/* Attach at start-up (no authorization: the operator started us). */
/* INTERVAL seconds between periodic scans (0: off), HISTORY points and
 * KEEP snapshots kept (0: defaults) — issue 5. */
int pyheapd_attach_initial(struct pyheapd *d, pid_t pid, double interval, size_t history,
                           size_t keep, pyheap_proto_error *perr);

/* server.c */
/* Send REPLY (consumed; NULL: nothing) on FD as one line, within the reply
 * size limit. 0, or -1 when it could not be sent (close the connection). */
int pyheapd_send_reply(const struct pyheapd *d, int fd, json_t *reply);
/* Send REPLY (consumed) to TO while the command goes on, without blocking:
 * what the socket does not take at once is left in TO->rest, sent by the
 * connection's thread when the command is over (a slow reader must not
 * hold up the scan, its lock or the build). Sets TO->sent and send_rc. */
void pyheapd_send_early(const struct pyheapd *d, struct pyheapd_reply_to *to, json_t *reply);
/* Is PATH free to bind? 0: nothing there; 1: a stale socket nobody answers
 * on; -1 (logged): a daemon answers, or PATH is not a socket. */
int pyheapd_probe(const char *path);
/* Refuse if a daemon answers on PATH, remove a stale socket, create the
 * parent directory, bind and listen. */
int pyheapd_listen(struct pyheapd *d, const char *path);
/* Serve on FD, a listening socket passed by systemd. */
int pyheapd_adopt(struct pyheapd *d, int fd);
/* Serve until SIGINT/SIGTERM (blocked by the caller and handled through a
 * signalfd), then unlink the socket and wait briefly for clients. Returns
 * the exit status. */
int pyheapd_serve(struct pyheapd *d, const sigset_t *sigs);

#endif
