/* Helpers for the production-service suites (test_service, test_auth,
 * test_limits, test_lifecycle, test_freeze, test_churn; test_daemon and
 * test_walk_versions use some): spawn the build's pyheapd with options,
 * Python targets, and talk the protocol raw. Process helpers are in
 * testutil.h. */
#ifndef PYHEAP_SVCUTIL_H
#define PYHEAP_SVCUTIL_H

#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>

#define SVC_PYTHON "/usr/bin/python3.11"
#define SVC_NOBODY 65534

struct svc {
    char dir[64];          /* temporary directory, removed by svc_fini */
    char sock[108];
    char log[128];         /* the daemon's stderr */
    pid_t daemon;
};

struct svc_target {
    pid_t pid;
    char dir[256];
};

void svc_init(struct svc *e);
/* Start pyheapd --socket SOCK plus EXTRA (NULL-terminated, may be NULL);
 * wait until it accepts. */
void svc_daemon_start(struct svc *e, const char *const *extra);
/* Wait until the daemon E->daemon (spawned by the caller, stderr to E->log)
 * listens on E->sock; abort if it exits first or takes over 20 s. */
void svc_daemon_wait(struct svc *e);
/* SIGTERM; asserts exit status 0. */
void svc_daemon_stop(struct svc *e);
void svc_fini(struct svc *e);

/* tests/targets/SCRIPT with args OUTDIR and ARG (may be NULL), as UID/GID;
 * waits for OUTDIR/ready. */
void svc_target_start(struct svc *e, struct svc_target *t, const char *name,
                      const char *script, const char *arg, uid_t uid, gid_t gid);
/* Attach the daemon to PID; asserts success. */
void svc_attach(struct svc *e, pid_t pid);
/* The same with periodic scans every INTERVAL seconds (0: none; also
 * re-attaches an attached PID with that interval). */
void svc_attach_every(struct svc *e, pid_t pid, double interval);
/* svc_init, a daemon without options, SCRIPT with ARG as target "t" (as
 * root) and svc_attach to it. */
void svc_start_attached(struct svc *e, struct svc_target *t, const char *script,
                        const char *arg);
void svc_target_kill(struct svc_target *t);
long svc_target_counter(const struct svc_target *t);
/* State letter of /proc/PID/status ('R', 'S', 't', ...; 0 if gone). */
char svc_proc_state(pid_t pid);

/* Raw protocol client. */
struct svc_conn {
    int fd;
    char *buf;
    size_t have, cap;
};
void svc_conn_open(struct svc *e, struct svc_conn *c);
void svc_conn_close(struct svc_conn *c);
void svc_send(struct svc_conn *c, const char *data, size_t len);
/* Next reply (new ref) or NULL at EOF. */
json_t *svc_reply(struct svc_conn *c);
json_t *svc_call(struct svc_conn *c, const char *line);
/* One request on a fresh connection. */
json_t *svc_request(struct svc *e, const char *line);
/* Assert an error reply with CODE (consumes J); returns nothing. */
void svc_expect_error(json_t *j, const char *code);
void svc_expect_ok(const json_t *j);
/* "count" of type NAME in a top reply, -1 if absent. */
long long svc_type_count(const json_t *top, const char *name);

/* pyheap --socket SOCK ARGS... as UID/GID; NULL-terminated. */
int svc_cli(struct svc *e, uid_t uid, gid_t gid, char **out, char **err, ...);

#endif
