/* Request parsing and validation for the pyheapd protocol (docs/protocol.md).
 * Input is untrusted: bounded length, json_loadb only, every field's type
 * checked, unknown fields rejected. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto.h"

static const char *const cmd_names[] = {
    [PYHEAP_CMD_PING] = "ping",
    [PYHEAP_CMD_ATTACH] = "attach",
    [PYHEAP_CMD_DETACH] = "detach",
    [PYHEAP_CMD_PS] = "ps",
    [PYHEAP_CMD_TOP] = "top",
    [PYHEAP_CMD_REFERRERS] = "referrers",
    [PYHEAP_CMD_GROWTH] = "growth",
    [PYHEAP_CMD_DIFF] = "diff",
    [PYHEAP_CMD_SNAPSHOT] = "snapshot",
    [PYHEAP_CMD_STATS] = "stats",
    [PYHEAP_CMD_SNAPSHOTS] = "snapshots",
};

/* Which fields each command accepts besides "cmd". */
enum { F_PID = 1, F_N = 2, F_SORT = 4, F_TYPE = 8, F_DEPTH = 16, F_PATHS = 32,
       F_GROUPS = 64, F_FREEZE = 128, F_INTERVAL = 256, F_HISTORY = 512, F_KEEP = 1024,
       F_SINCE = 2048, F_MAXAGE = 4096 };
static const unsigned cmd_fields[] = {
    [PYHEAP_CMD_PING] = 0,
    [PYHEAP_CMD_ATTACH] = F_PID | F_INTERVAL | F_HISTORY | F_KEEP,
    [PYHEAP_CMD_DETACH] = F_PID,
    [PYHEAP_CMD_PS] = 0,
    [PYHEAP_CMD_TOP] = F_PID | F_N | F_SORT | F_FREEZE | F_MAXAGE,
    [PYHEAP_CMD_REFERRERS] = F_PID | F_TYPE | F_DEPTH | F_PATHS | F_GROUPS | F_FREEZE |
                             F_MAXAGE,
    [PYHEAP_CMD_GROWTH] = F_PID | F_N,
    [PYHEAP_CMD_DIFF] = F_PID | F_SINCE | F_N | F_FREEZE,
    [PYHEAP_CMD_SNAPSHOT] = F_PID | F_FREEZE,
    [PYHEAP_CMD_STATS] = F_PID,
    [PYHEAP_CMD_SNAPSHOTS] = F_PID,
};

const char *pyheap_proto_cmd_name(pyheap_proto_cmd cmd)
{
    if ((size_t)cmd < sizeof cmd_names / sizeof cmd_names[0])
        return cmd_names[cmd];
    return "?";
}

int pyheap_proto_err_set(pyheap_proto_error *perr, const char *code,
                         const char *fmt, ...)
{
    if (perr) {
        perr->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(perr->msg, sizeof perr->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int pyheap_proto_err_from_lib(pyheap_proto_error *perr, const pyheap_error *err)
{
    return pyheap_proto_err_set(perr, pyheap_errcode_name(err->code), "%s",
                                err->msg[0] ? err->msg : "unknown error");
}

/* Quote at most 40 bytes of an untrusted string for a message, replacing
 * anything but printable ASCII. */
static void quote_short(const char *s, size_t len, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < len && i < 40 && o + 2 < outsz; i++) {
        unsigned char c = (unsigned char)s[i];
        out[o++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (len > 40 && o + 4 < outsz) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

static int parse_pid(json_t *v, pyheap_request *req, pyheap_proto_error *perr)
{
    if (!json_is_integer(v))
        return pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                                    "\"pid\" must be a positive integer");
    json_int_t pid = json_integer_value(v);
    if (pid <= 0 || pid > PYHEAP_PROTO_MAX_PID)
        return pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                                    "\"pid\" must be a positive integer no larger than %d, got %lld",
                                    PYHEAP_PROTO_MAX_PID, (long long)pid);
    req->pid = (pid_t)pid;
    return 0;
}

static int parse_n(json_t *v, pyheap_request *req, pyheap_proto_error *perr)
{
    if (!json_is_integer(v))
        return pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                                    "\"n\" must be a non-negative integer (0 = all types)");
    json_int_t n = json_integer_value(v);
    if (n < 0 || n > PYHEAP_PROTO_MAX_N)
        return pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                                    "\"n\" must be between 0 and %d, got %lld",
                                    PYHEAP_PROTO_MAX_N, (long long)n);
    req->n = (size_t)n;
    return 0;
}

static int parse_sort(json_t *v, pyheap_request *req, pyheap_proto_error *perr)
{
    const char *s = json_string_value(v);
    if (s && strcmp(s, "bytes") == 0)
        req->sort = PYHEAP_SORT_BYTES;
    else if (s && strcmp(s, "count") == 0)
        req->sort = PYHEAP_SORT_COUNT;
    else
        return pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                                    "\"sort\" must be \"bytes\" or \"count\"");
    return 0;
}

/* An integer field within [lo, hi]. */
static int parse_range(json_t *v, const char *name, long lo, long hi, long *out,
                       pyheap_proto_error *perr)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                                    "\"%s\" must be an integer between %ld and %ld",
                                    name, lo, hi);
    *out = (long)json_integer_value(v);
    return 0;
}

/* A type name: a non-empty string of at most PYHEAP_PROTO_MAX_TYPE_LEN
 * bytes without NUL (jansson has already checked UTF-8; "\u0000" shows up
 * as a length mismatch). Other characters are allowed: Python allows them
 * in class names. */
static int parse_type(json_t *v, pyheap_request *req, pyheap_proto_error *perr)
{
    if (!json_is_string(v))
        return pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                                    "\"type\" must be a string such as \"Connection\" "
                                    "or \"mypkg.db.Connection\"");
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len == 0 || len > PYHEAP_PROTO_MAX_TYPE_LEN)
        return pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                                    "\"type\" must be 1 to %d bytes long, got %zu",
                                    PYHEAP_PROTO_MAX_TYPE_LEN, len);
    if (strlen(s) != len)
        return pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                                    "\"type\" must not contain NUL characters");
    memcpy(req->type, s, len);
    req->type[len] = '\0';
    return 0;
}

int pyheap_proto_parse(const char *line, size_t len, pyheap_request *req,
                       pyheap_proto_error *perr)
{
    if (len > PYHEAP_PROTO_MAX_LINE)
        return pyheap_proto_err_set(perr, PYHEAP_PROTO_E_TOO_LONG,
                                    "request line is longer than %d bytes",
                                    PYHEAP_PROTO_MAX_LINE);
    if (len > 0 && memchr(line, '\0', len))
        return pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_JSON,
                                    "request contains a NUL byte");

    json_error_t jerr;
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root)
        return pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_JSON,
                                    "request is not valid JSON: %s (column %d)",
                                    jerr.text, jerr.column);
    int rc = -1;
    if (!json_is_object(root)) {
        pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                             "request must be a JSON object like {\"cmd\":\"ping\"}");
        goto out;
    }
    json_t *jcmd = json_object_get(root, "cmd");   /* borrowed */
    if (!jcmd) {
        pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                             "request has no \"cmd\" field");
        goto out;
    }
    if (!json_is_string(jcmd)) {
        pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                             "\"cmd\" must be a string");
        goto out;
    }
    const char *cmd = json_string_value(jcmd);
    size_t cmdlen = json_string_length(jcmd);
    size_t ncmds = sizeof cmd_names / sizeof cmd_names[0];
    size_t ci;
    for (ci = 0; ci < ncmds; ci++)
        if (strlen(cmd_names[ci]) == cmdlen && memcmp(cmd_names[ci], cmd, cmdlen) == 0)
            break;
    if (ci == ncmds) {
        char q[64];
        quote_short(cmd, cmdlen, q, sizeof q);
        pyheap_proto_err_set(perr, PYHEAP_PROTO_E_UNKNOWN_CMD,
                             "unknown command \"%s\" (known: ping, attach, detach, ps, top, referrers, growth, diff, snapshot, snapshots, stats)", q);
        goto out;
    }

    pyheap_request r = { .cmd = (pyheap_proto_cmd)ci, .pid = 0, .fd = -1,
                         .n = PYHEAP_PROTO_DEFAULT_N, .sort = PYHEAP_SORT_BYTES,
                         .depth = PYHEAP_PROTO_DEFAULT_DEPTH,
                         .max_paths = PYHEAP_PROTO_DEFAULT_PATHS,
                         .max_groups = PYHEAP_PROTO_DEFAULT_GROUPS };
    long lv;
    unsigned allowed = cmd_fields[ci];
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "cmd") == 0)
            continue;
        if (strcmp(key, "pid") == 0 && (allowed & F_PID)) {
            if (parse_pid(val, &r, perr) < 0)
                goto out;
        } else if (strcmp(key, "n") == 0 && (allowed & F_N)) {
            if (parse_n(val, &r, perr) < 0)
                goto out;
        } else if (strcmp(key, "sort") == 0 && (allowed & F_SORT)) {
            if (parse_sort(val, &r, perr) < 0)
                goto out;
        } else if (strcmp(key, "freeze") == 0 && (allowed & F_FREEZE)) {
            if (!json_is_boolean(val)) {
                pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                                     "\"freeze\" must be true or false");
                goto out;
            }
            r.freeze = json_is_true(val);
        } else if (strcmp(key, "type") == 0 && (allowed & F_TYPE)) {
            if (parse_type(val, &r, perr) < 0)
                goto out;
        } else if (strcmp(key, "depth") == 0 && (allowed & F_DEPTH)) {
            if (parse_range(val, "depth", 1, PYHEAP_PROTO_MAX_DEPTH, &lv, perr) < 0)
                goto out;
            r.depth = (unsigned)lv;
        } else if (strcmp(key, "max_paths") == 0 && (allowed & F_PATHS)) {
            if (parse_range(val, "max_paths", 1, PYHEAP_PROTO_MAX_PATHS, &lv, perr) < 0)
                goto out;
            r.max_paths = (size_t)lv;
        } else if (strcmp(key, "interval") == 0 && (allowed & F_INTERVAL)) {
            double iv = json_is_number(val) ? json_number_value(val) : -1;
            if (!(iv == 0 || (iv >= PYHEAP_PROTO_MIN_INTERVAL &&
                              iv <= PYHEAP_PROTO_MAX_INTERVAL))) {
                pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                                     "\"interval\" must be 0 (off) or a number of seconds "
                                     "between %g and %g", PYHEAP_PROTO_MIN_INTERVAL,
                                     PYHEAP_PROTO_MAX_INTERVAL);
                goto out;
            }
            r.interval = iv;
            r.has_interval = 1;
        } else if (strcmp(key, "history") == 0 && (allowed & F_HISTORY)) {
            if (parse_range(val, "history", 2, PYHEAP_PROTO_MAX_HISTORY, &lv, perr) < 0)
                goto out;
            r.history = (size_t)lv;
        } else if (strcmp(key, "keep") == 0 && (allowed & F_KEEP)) {
            if (parse_range(val, "keep", 1, PYHEAP_PROTO_MAX_KEEP, &lv, perr) < 0)
                goto out;
            r.keep = (size_t)lv;
        } else if (strcmp(key, "since") == 0 && (allowed & F_SINCE)) {
            if (parse_range(val, "since", 1, 2000000000L, &lv, perr) < 0)
                goto out;
            r.since = (uint64_t)lv;
        } else if (strcmp(key, "max_age") == 0 && (allowed & F_MAXAGE)) {
            /* json_number_value is 0.0 for a non-number: checked first. */
            double age = json_is_number(val) ? json_number_value(val) : -1;
            if (!(age >= 0 && age <= PYHEAP_PROTO_MAX_AGE)) {
                pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                                     "\"max_age\" must be a number of seconds between 0 "
                                     "(always scan afresh) and %g", PYHEAP_PROTO_MAX_AGE);
                goto out;
            }
            r.max_age = age;
        } else if (strcmp(key, "max_groups") == 0 && (allowed & F_GROUPS)) {
            if (parse_range(val, "max_groups", 1, PYHEAP_PROTO_MAX_GROUPS, &lv, perr) < 0)
                goto out;
            r.max_groups = (size_t)lv;
        } else {
            char q[64];
            quote_short(key, strlen(key), q, sizeof q);
            pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                                 "unexpected field \"%s\" for command \"%s\"",
                                 q, cmd_names[ci]);
            goto out;
        }
    }
    if ((r.cmd == PYHEAP_CMD_ATTACH || r.cmd == PYHEAP_CMD_DETACH) && r.pid == 0) {
        pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                             "command \"%s\" needs a \"pid\" field", cmd_names[ci]);
        goto out;
    }
    if (r.freeze && r.max_age > 0) {
        pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                             "\"freeze\" asks for a fresh consistent scan and \"max_age\" "
                             "for a kept one: give one of them");
        goto out;
    }
    if (r.cmd == PYHEAP_CMD_REFERRERS && r.type[0] == '\0') {
        pyheap_proto_err_set(perr, PYHEAP_PROTO_E_BAD_REQUEST,
                             "command \"referrers\" needs a \"type\" field");
        goto out;
    }
    *req = r;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* A JSON string for a message; bytes that are not valid UTF-8 (a message may
 * quote untrusted input) become '?'. New reference or NULL on OOM. */
static json_t *message_string(const char *msg)
{
    json_t *s = json_string(msg);
    if (s)
        return s;
    char clean[sizeof ((pyheap_proto_error *)0)->msg];
    size_t i;
    for (i = 0; msg[i] && i + 1 < sizeof clean; i++) {
        unsigned char c = (unsigned char)msg[i];
        clean[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    clean[i] = '\0';
    return json_string(clean);
}

json_t *pyheap_proto_error_reply(const pyheap_proto_error *perr)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    if (json_object_set_new(o, "ok", json_false()) < 0 ||
        json_object_set_new(o, "error", json_string(perr->code ? perr->code : "unknown")) < 0 ||
        json_object_set_new(o, "message", message_string(perr->msg)) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *pyheap_proto_ok_reply(void)
{
    json_t *o = json_object();
    if (o && json_object_set_new(o, "ok", json_true()) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *pyheap_proto_encode(const json_t *reply, size_t *len)
{
    char *s = json_dumps(reply, PYHEAP_PROTO_DUMP_FLAGS);
    if (!s)
        return NULL;
    size_t n = strlen(s);
    char *line = realloc(s, n + 2);
    if (!line) {
        free(s);
        return NULL;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    if (len)
        *len = n + 1;
    return line;
}

int pyheap_proto_socket_path(const char *opt, char *buf, size_t bufsz,
                             pyheap_proto_error *perr)
{
    const char *env = getenv("PYHEAP_SOCKET");
    const char *path = NULL;
    char tmp[4096];
    if (opt && *opt) {
        path = opt;
    } else if (env && *env) {
        path = env;
    } else if (geteuid() == 0) {
        path = PYHEAP_PROTO_ROOT_SOCKET;
    } else {
        const char *xdg = getenv("XDG_RUNTIME_DIR");
        if (!xdg || !*xdg)
            return pyheap_proto_err_set(perr, "invalid",
                                        "XDG_RUNTIME_DIR is not set, so there is no default "
                                        "socket path for a non-root user: pass --socket PATH "
                                        "or set PYHEAP_SOCKET");
        snprintf(tmp, sizeof tmp, "%s/pyheapd.sock", xdg);
        path = tmp;
    }
    struct sockaddr_un sun;
    size_t len = strlen(path);
    if (len >= sizeof sun.sun_path || len >= bufsz)
        return pyheap_proto_err_set(perr, "invalid",
                                    "socket path is too long (%zu bytes, at most %zu): %.100s...",
                                    len, sizeof sun.sun_path - 1, path);
    memcpy(buf, path, len + 1);
    return 0;
}

int pyheap_proto_send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}
