/*
 * The pyheapd wire protocol (docs/protocol.md): one JSON object per line
 * over a Unix stream socket. This header is shared by the daemon, the CLI
 * and the tests; it parses and validates requests and builds error replies.
 * Nothing here does I/O but pyheap_proto_send_all.
 */
#ifndef PYHEAP_PROTO_H
#define PYHEAP_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "pyheap.h"

#define PYHEAP_VERSION "0.1.0"
#define PYHEAP_PROTO_VERSION 1

/* Longest request line the daemon accepts, newline excluded. */
#define PYHEAP_PROTO_MAX_LINE (64 * 1024)
/* Longest reply line the CLI accepts (a histogram of every type). */
#define PYHEAP_PROTO_MAX_REPLY (64 * 1024 * 1024)
/* Default number of types in a "top" reply when "n" is absent. */
#define PYHEAP_PROTO_DEFAULT_N 25
/* Default socket for root. */
#define PYHEAP_PROTO_ROOT_SOCKET "/run/pyheapd/pyheapd.sock"
/* Largest accepted "n" (anything larger means "all" anyway). */
#define PYHEAP_PROTO_MAX_N 1000000000
/* Largest accepted pid (the kernel's PID_MAX_LIMIT). */
#define PYHEAP_PROTO_MAX_PID 4194304
/* "referrers": longest type name (bytes), bounds and defaults. */
#define PYHEAP_PROTO_MAX_TYPE_LEN 256
#define PYHEAP_PROTO_DEFAULT_DEPTH 3
#define PYHEAP_PROTO_MAX_DEPTH 10
#define PYHEAP_PROTO_DEFAULT_PATHS 5
#define PYHEAP_PROTO_MAX_PATHS 100
#define PYHEAP_PROTO_DEFAULT_GROUPS 20
#define PYHEAP_PROTO_MAX_GROUPS 1000

/* issue 5: periodic scans and their history. */
#define PYHEAP_PROTO_MIN_INTERVAL 0.1
#define PYHEAP_PROTO_MAX_INTERVAL 86400.0
#define PYHEAP_PROTO_DEFAULT_HISTORY 720
#define PYHEAP_PROTO_MAX_HISTORY 100000
#define PYHEAP_PROTO_DEFAULT_KEEP 3
#define PYHEAP_PROTO_MAX_KEEP 32
/* issue 7: top/referrers "max_age": answer from the session's kept snapshot
 * when it is at most this many seconds old (0: always scan afresh). */
#define PYHEAP_PROTO_MAX_AGE 86400.0

/* jansson dump flags for every reply: compact, one line, key order kept. */
#define PYHEAP_PROTO_DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12))

/* Protocol-level error codes, in addition to pyheap_errcode_name() names. */
#define PYHEAP_PROTO_E_BAD_JSON "bad_json"        /* not JSON / NUL / bad UTF-8 */
#define PYHEAP_PROTO_E_BAD_REQUEST "bad_request"  /* JSON, but not a valid request */
#define PYHEAP_PROTO_E_UNKNOWN_CMD "unknown_command"
#define PYHEAP_PROTO_E_TOO_LONG "too_long"        /* line over PYHEAP_PROTO_MAX_LINE */
#define PYHEAP_PROTO_E_AMBIGUOUS "ambiguous"      /* no pid and several targets, or a
                                                     short type name naming several types */
#define PYHEAP_PROTO_E_BUSY "busy"                /* too many connections */

typedef enum pyheap_proto_cmd {
    PYHEAP_CMD_PING = 0,
    PYHEAP_CMD_ATTACH,
    PYHEAP_CMD_DETACH,
    PYHEAP_CMD_PS,
    PYHEAP_CMD_TOP,
    PYHEAP_CMD_REFERRERS,
    /* issue 5 */
    PYHEAP_CMD_GROWTH,
    PYHEAP_CMD_DIFF,
    PYHEAP_CMD_SNAPSHOT,
    PYHEAP_CMD_STATS,
    PYHEAP_CMD_SNAPSHOTS
} pyheap_proto_cmd;

typedef struct pyheap_request {
    pyheap_proto_cmd cmd;
    pid_t pid;          /* 0 when absent */
    size_t n;           /* top: types to list, 0 = all */
    pyheap_sort sort;   /* top */
    /* referrers: the type name (non-empty, no control characters), levels,
     * paths and groups per level (each within its PYHEAP_PROTO_MAX_*). */
    char type[PYHEAP_PROTO_MAX_TYPE_LEN + 1];
    unsigned depth;
    size_t max_paths;
    size_t max_groups;
    int freeze;         /* top: consistent mode ("freeze": true) */
    /* issue 5: attach "interval" seconds between periodic scans (0: off,
     * else PYHEAP_PROTO_MIN_INTERVAL..MAX), "history" points kept, "keep"
     * snapshots kept for diffs; diff "since" snapshot id (0: oldest kept). */
    double interval;
    int has_interval;
    size_t history;     /* 0: default */
    size_t keep;        /* 0: default */
    uint64_t since;
    /* issue 7: top/referrers "max_age" seconds (0: always scan afresh). */
    double max_age;
    /* snapshot: a file descriptor the client passed with SCM_RIGHTS along
     * with the request (set by the server, -1 when none; the parser never
     * sets it). */
    int fd;
} pyheap_request;

/* A protocol error: a stable code (a pyheap_errcode_name() name or one of
 * PYHEAP_PROTO_E_*) and one human sentence. */
typedef struct pyheap_proto_error {
    const char *code;   /* static string */
    char msg[512];
} pyheap_proto_error;

/* Parse and validate one request line of LEN bytes (no newline). Never reads
 * past LEN; LEN > PYHEAP_PROTO_MAX_LINE is rejected as too_long. Returns 0 and
 * fills *req, or -1 and fills *perr. */
int pyheap_proto_parse(const char *line, size_t len, pyheap_request *req,
                       pyheap_proto_error *perr);

/* Name of a command ("ping", ...). */
const char *pyheap_proto_cmd_name(pyheap_proto_cmd cmd);

/* Set a protocol error; returns -1. */
int pyheap_proto_err_set(pyheap_proto_error *perr, const char *code,
                         const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Copy a library error into a protocol error; returns -1. */
int pyheap_proto_err_from_lib(pyheap_proto_error *perr, const pyheap_error *err);

/* New reference: {"ok":false,"error":CODE,"message":MSG}, or NULL on OOM. */
json_t *pyheap_proto_error_reply(const pyheap_proto_error *perr);
/* New reference: {"ok":true}, or NULL on OOM. */
json_t *pyheap_proto_ok_reply(void);

/* The socket path: OPT if not NULL/empty, else $PYHEAP_SOCKET, else
 * /run/pyheapd/pyheapd.sock for root, else $XDG_RUNTIME_DIR/pyheapd.sock.
 * Fails (code "invalid") when XDG_RUNTIME_DIR is needed but unset or the
 * path does not fit a sockaddr_un. */
int pyheap_proto_socket_path(const char *opt, char *buf, size_t bufsz,
                             pyheap_proto_error *perr);

/* Encode REPLY as one line (compact JSON + '\n'). malloc'd; NULL on OOM. */
char *pyheap_proto_encode(const json_t *reply, size_t *len);

/* Send all LEN bytes of BUF on socket FD (MSG_NOSIGNAL, retrying EINTR);
 * 0, or -1 with errno set. */
int pyheap_proto_send_all(int fd, const char *buf, size_t len);

#endif
