/* Request parsing and validation (lib/proto.c): well-formed requests,
 * many malformed ones with the exact error code, and random garbage. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto.h"
#include "testutil.h"

/* Parse S (strlen) and expect failure with CODE. */
static void expect_err(const char *s, size_t len, const char *code)
{
    pyheap_request req;
    pyheap_proto_error perr = { 0 };
    int rc = pyheap_proto_parse(s, len, &req, &perr);
    ck_assert_msg(rc == -1, "accepted bad request: %.200s", s);
    ck_assert_msg(perr.code && strcmp(perr.code, code) == 0,
                  "request %.200s: error %s (%s), expected %s", s,
                  perr.code ? perr.code : "(null)", perr.msg, code);
    ck_assert_msg(perr.msg[0] != '\0', "empty message for %.200s", s);
}

static void expect_err_s(const char *s, const char *code)
{
    expect_err(s, strlen(s), code);
}

static pyheap_request expect_ok(const char *s)
{
    pyheap_request req;
    memset(&req, 0xab, sizeof req);
    pyheap_proto_error perr = { 0 };
    int rc = pyheap_proto_parse(s, strlen(s), &req, &perr);
    ck_assert_msg(rc == 0, "rejected %s: %s: %s", s, perr.code, perr.msg);
    return req;
}

START_TEST(valid_requests)
{
    pyheap_request r = expect_ok("{\"cmd\":\"ping\"}");
    ck_assert_int_eq(r.cmd, PYHEAP_CMD_PING);
    r = expect_ok("{\"cmd\":\"ps\"}");
    ck_assert_int_eq(r.cmd, PYHEAP_CMD_PS);
    r = expect_ok("  {\"pid\": 123, \"cmd\": \"attach\"}  ");
    ck_assert_int_eq(r.cmd, PYHEAP_CMD_ATTACH);
    ck_assert_int_eq(r.pid, 123);
    r = expect_ok("{\"cmd\":\"detach\",\"pid\":4194304}");
    ck_assert_int_eq(r.cmd, PYHEAP_CMD_DETACH);
    ck_assert_int_eq(r.pid, 4194304);
    r = expect_ok("{\"cmd\":\"top\"}");
    ck_assert_int_eq(r.cmd, PYHEAP_CMD_TOP);
    ck_assert_int_eq(r.pid, 0);
    ck_assert_uint_eq(r.n, PYHEAP_PROTO_DEFAULT_N);
    ck_assert_int_eq(r.sort, PYHEAP_SORT_BYTES);
    r = expect_ok("{\"cmd\":\"top\",\"pid\":7,\"n\":0,\"sort\":\"count\"}");
    ck_assert_int_eq(r.pid, 7);
    ck_assert_uint_eq(r.n, 0);
    ck_assert_int_eq(r.sort, PYHEAP_SORT_COUNT);
    r = expect_ok("{\"cmd\":\"top\",\"n\":3,\"sort\":\"bytes\"}");
    ck_assert_uint_eq(r.n, 3);
    ck_assert_int_eq(r.sort, PYHEAP_SORT_BYTES);
}
END_TEST

START_TEST(not_json)
{
    expect_err_s("", PYHEAP_PROTO_E_BAD_JSON);
    expect_err_s("hello", PYHEAP_PROTO_E_BAD_JSON);
    expect_err_s("{", PYHEAP_PROTO_E_BAD_JSON);
    expect_err_s("{\"cmd\":\"ping\"", PYHEAP_PROTO_E_BAD_JSON);
    expect_err_s("{\"cmd\":\"ping\"}}", PYHEAP_PROTO_E_BAD_JSON);
    expect_err_s("{\"cmd\":\"ping\"} {\"cmd\":\"ps\"}", PYHEAP_PROTO_E_BAD_JSON);
    expect_err_s("{'cmd':'ping'}", PYHEAP_PROTO_E_BAD_JSON);
    expect_err_s("{\"cmd\":\"ping\",}", PYHEAP_PROTO_E_BAD_JSON);
    /* duplicate keys are refused rather than resolved silently */
    expect_err_s("{\"cmd\":\"ping\",\"cmd\":\"ps\"}", PYHEAP_PROTO_E_BAD_JSON);
    /* invalid UTF-8 */
    expect_err_s("{\"cmd\":\"p\xff\xfeing\"}", PYHEAP_PROTO_E_BAD_JSON);
    /* an integer too large for JSON's int64 */
    expect_err_s("{\"cmd\":\"attach\",\"pid\":99999999999999999999999}", PYHEAP_PROTO_E_BAD_JSON);
}
END_TEST

START_TEST(embedded_nul)
{
    static const char s[] = "{\"cmd\":\"ping\"}\0garbage";
    expect_err(s, sizeof s - 1, PYHEAP_PROTO_E_BAD_JSON);
    static const char s2[] = "{\"cmd\":\"pi\0ng\"}";
    expect_err(s2, sizeof s2 - 1, PYHEAP_PROTO_E_BAD_JSON);
    /* an escaped NUL inside a string is valid JSON but not a command */
    expect_err_s("{\"cmd\":\"ping\\u0000x\"}", PYHEAP_PROTO_E_BAD_JSON);
}
END_TEST

START_TEST(not_an_object)
{
    expect_err_s("[]", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("[{\"cmd\":\"ping\"}]", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("\"ping\"", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("42", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("null", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("true", PYHEAP_PROTO_E_BAD_REQUEST);
}
END_TEST

START_TEST(bad_cmd)
{
    expect_err_s("{}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"pid\":1}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":1}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":null}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":[\"ping\"]}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":{\"x\":1}}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"\"}", PYHEAP_PROTO_E_UNKNOWN_CMD);
    expect_err_s("{\"cmd\":\"PING\"}", PYHEAP_PROTO_E_UNKNOWN_CMD);
    expect_err_s("{\"cmd\":\"pingx\"}", PYHEAP_PROTO_E_UNKNOWN_CMD);
    expect_err_s("{\"cmd\":\"pin\"}", PYHEAP_PROTO_E_UNKNOWN_CMD);
    expect_err_s("{\"cmd\":\"rm -rf /\"}", PYHEAP_PROTO_E_UNKNOWN_CMD);
}
END_TEST

START_TEST(bad_pid)
{
    expect_err_s("{\"cmd\":\"attach\"}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"detach\"}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"attach\",\"pid\":\"123\"}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"attach\",\"pid\":-1}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"attach\",\"pid\":0}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"attach\",\"pid\":4194305}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"attach\",\"pid\":4294967297}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"attach\",\"pid\":9223372036854775807}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"attach\",\"pid\":-9223372036854775808}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"attach\",\"pid\":12.5}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"attach\",\"pid\":12.0}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"attach\",\"pid\":1e3}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"attach\",\"pid\":1e400}", PYHEAP_PROTO_E_BAD_JSON);
    expect_err_s("{\"cmd\":\"attach\",\"pid\":null}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"attach\",\"pid\":true}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"attach\",\"pid\":[1]}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"top\",\"pid\":\"1\"}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"top\",\"pid\":-5}", PYHEAP_PROTO_E_BAD_REQUEST);
}
END_TEST

START_TEST(bad_fields)
{
    expect_err_s("{\"cmd\":\"top\",\"n\":-1}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"top\",\"n\":\"5\"}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"top\",\"n\":2.5}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"top\",\"n\":10000000000}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"top\",\"sort\":\"name\"}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"top\",\"sort\":1}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"top\",\"sort\":\"BYTES\"}", PYHEAP_PROTO_E_BAD_REQUEST);
    /* fields a command does not take, and unknown fields */
    expect_err_s("{\"cmd\":\"ping\",\"pid\":1}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"ps\",\"n\":1}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"attach\",\"pid\":1,\"sort\":\"bytes\"}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"top\",\"sotr\":\"bytes\"}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"top\",\"\":1}", PYHEAP_PROTO_E_BAD_REQUEST);
}
END_TEST

START_TEST(referrers_request)
{
    pyheap_request r = expect_ok("{\"cmd\":\"referrers\",\"type\":\"Connection\"}");
    ck_assert_int_eq(r.cmd, PYHEAP_CMD_REFERRERS);
    ck_assert_str_eq(pyheap_proto_cmd_name(r.cmd), "referrers");
    ck_assert_str_eq(r.type, "Connection");
    ck_assert_int_eq(r.pid, 0);
    ck_assert_uint_eq(r.depth, PYHEAP_PROTO_DEFAULT_DEPTH);
    ck_assert_uint_eq(r.max_paths, PYHEAP_PROTO_DEFAULT_PATHS);
    ck_assert_uint_eq(r.max_groups, PYHEAP_PROTO_DEFAULT_GROUPS);
    r = expect_ok("{\"cmd\":\"referrers\",\"pid\":77,\"type\":\"__main__.Connection\","
                  "\"depth\":10,\"max_paths\":100,\"max_groups\":1000}");
    ck_assert_int_eq(r.pid, 77);
    ck_assert_str_eq(r.type, "__main__.Connection");
    ck_assert_uint_eq(r.depth, 10);
    ck_assert_uint_eq(r.max_paths, 100);
    ck_assert_uint_eq(r.max_groups, 1000);
    r = expect_ok("{\"cmd\":\"referrers\",\"type\":\"a\",\"depth\":1,\"max_paths\":1,"
                  "\"max_groups\":1}");
    ck_assert_str_eq(r.type, "a");
    ck_assert_uint_eq(r.depth, 1);
    ck_assert_uint_eq(r.max_paths, 1);
    ck_assert_uint_eq(r.max_groups, 1);
    /* Python allows any character but NUL in a class name */
    r = expect_ok("{\"cmd\":\"referrers\",\"type\":\"We\\\"ird\\\\n\\u00e9\\nx\"}");
    ck_assert_str_eq(r.type, "We\"ird\\n\xc3\xa9\nx");

    /* the longest type name, and one byte more */
    char buf[PYHEAP_PROTO_MAX_TYPE_LEN + 64];
    int n = snprintf(buf, sizeof buf, "{\"cmd\":\"referrers\",\"type\":\"%0*d\"}",
                     PYHEAP_PROTO_MAX_TYPE_LEN, 0);
    ck_assert_int_lt(n, (int)sizeof buf);
    r = expect_ok(buf);
    ck_assert_uint_eq(strlen(r.type), PYHEAP_PROTO_MAX_TYPE_LEN);
    snprintf(buf, sizeof buf, "{\"cmd\":\"referrers\",\"type\":\"%0*d\"}",
             PYHEAP_PROTO_MAX_TYPE_LEN + 1, 0);
    expect_err_s(buf, PYHEAP_PROTO_E_BAD_REQUEST);
}
END_TEST

START_TEST(referrers_bad_fields)
{
    /* the type is required, a non-empty string without NUL */
    expect_err_s("{\"cmd\":\"referrers\"}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"referrers\",\"pid\":3}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"referrers\",\"type\":\"\"}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"referrers\",\"type\":null}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"referrers\",\"type\":3}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"referrers\",\"type\":[\"x\"]}", PYHEAP_PROTO_E_BAD_REQUEST);
    /* jansson refuses an escaped NUL before we see it */
    expect_err_s("{\"cmd\":\"referrers\",\"type\":\"a\\u0000b\"}", PYHEAP_PROTO_E_BAD_JSON);
    expect_err_s("{\"cmd\":\"referrers\",\"type\":\"\xff\"}", PYHEAP_PROTO_E_BAD_JSON);
    /* depth 1..10 */
    static const char *const bad_depth[] = { "0", "11", "-1", "2.0", "\"3\"", "null", "true",
                                             "9223372036854775807" };
    /* max_paths 1..100, max_groups 1..1000 */
    static const char *const bad_paths[] = { "0", "101", "-3", "1.5", "\"5\"", "[]" };
    static const char *const bad_groups[] = { "0", "1001", "-1", "20.5", "{}", "false" };
    char buf[256];
    for (size_t i = 0; i < sizeof bad_depth / sizeof bad_depth[0]; i++) {
        snprintf(buf, sizeof buf, "{\"cmd\":\"referrers\",\"type\":\"X\",\"depth\":%s}",
                 bad_depth[i]);
        expect_err_s(buf, PYHEAP_PROTO_E_BAD_REQUEST);
    }
    for (size_t i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) {
        snprintf(buf, sizeof buf, "{\"cmd\":\"referrers\",\"type\":\"X\",\"max_paths\":%s}",
                 bad_paths[i]);
        expect_err_s(buf, PYHEAP_PROTO_E_BAD_REQUEST);
    }
    for (size_t i = 0; i < sizeof bad_groups / sizeof bad_groups[0]; i++) {
        snprintf(buf, sizeof buf, "{\"cmd\":\"referrers\",\"type\":\"X\",\"max_groups\":%s}",
                 bad_groups[i]);
        expect_err_s(buf, PYHEAP_PROTO_E_BAD_REQUEST);
    }
    /* fields of other commands, and referrers fields elsewhere */
    expect_err_s("{\"cmd\":\"referrers\",\"type\":\"X\",\"n\":3}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"referrers\",\"type\":\"X\",\"sort\":\"bytes\"}",
                 PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"referrers\",\"type\":\"X\",\"Type\":\"Y\"}",
                 PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"top\",\"type\":\"X\"}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"top\",\"depth\":3}", PYHEAP_PROTO_E_BAD_REQUEST);
    expect_err_s("{\"cmd\":\"attach\",\"pid\":3,\"max_paths\":3}", PYHEAP_PROTO_E_BAD_REQUEST);
    /* duplicate type fields are refused, not resolved */
    expect_err_s("{\"cmd\":\"referrers\",\"type\":\"X\",\"type\":\"Y\"}",
                 PYHEAP_PROTO_E_BAD_JSON);
    /* the command name is exact */
    expect_err_s("{\"cmd\":\"referrer\",\"type\":\"X\"}", PYHEAP_PROTO_E_UNKNOWN_CMD);
    expect_err_s("{\"cmd\":\"Referrers\",\"type\":\"X\"}", PYHEAP_PROTO_E_UNKNOWN_CMD);
}
END_TEST

START_TEST(oversize_line)
{
    size_t len = PYHEAP_PROTO_MAX_LINE + 1;
    char *s = malloc(len + 1);
    ck_assert_ptr_nonnull(s);
    /* a valid request padded with spaces past the cap */
    memset(s, ' ', len);
    memcpy(s, "{\"cmd\":\"ping\"}", 14);
    s[len] = '\0';
    expect_err(s, len, PYHEAP_PROTO_E_TOO_LONG);
    /* exactly at the cap it is accepted */
    pyheap_request req;
    pyheap_proto_error perr;
    ck_assert_int_eq(pyheap_proto_parse(s, PYHEAP_PROTO_MAX_LINE, &req, &perr), 0);
    ck_assert_int_eq(req.cmd, PYHEAP_CMD_PING);
    free(s);
}
END_TEST

START_TEST(deep_nesting)
{
    /* 20000 nested arrays: must be refused, not overflow the stack */
    size_t depth = 20000;
    char *s = malloc(2 * depth + 1);
    ck_assert_ptr_nonnull(s);
    memset(s, '[', depth);
    memset(s + depth, ']', depth);
    s[2 * depth] = '\0';
    pyheap_request req;
    pyheap_proto_error perr;
    ck_assert_int_eq(pyheap_proto_parse(s, 2 * depth, &req, &perr), -1);
    free(s);
}
END_TEST

START_TEST(error_reply_shape)
{
    pyheap_proto_error perr;
    pyheap_proto_err_set(&perr, "gone", "process %d has exited \xff", 12);
    json_t *r = pyheap_proto_error_reply(&perr);
    ck_assert_ptr_nonnull(r);
    ck_assert(json_is_false(json_object_get(r, "ok")));
    ck_assert_str_eq(json_string_value(json_object_get(r, "error")), "gone");
    /* the invalid byte is replaced, the message kept */
    ck_assert_str_eq(json_string_value(json_object_get(r, "message")),
                     "process 12 has exited ?");
    size_t len;
    char *line = pyheap_proto_encode(r, &len);
    ck_assert_ptr_nonnull(line);
    ck_assert_uint_eq(len, strlen(line));
    ck_assert_int_eq(line[len - 1], '\n');
    ck_assert_ptr_null(memchr(line, '\n', len - 1));
    ck_assert_str_eq(line, "{\"ok\":false,\"error\":\"gone\",\"message\":\"process 12 has exited ?\"}\n");
    free(line);
    json_decref(r);

    pyheap_error lerr = { .code = PYHEAP_E_NOTPYTHON };
    snprintf(lerr.msg, sizeof lerr.msg, "not python");
    pyheap_proto_err_from_lib(&perr, &lerr);
    ck_assert_str_eq(perr.code, pyheap_errcode_name(PYHEAP_E_NOTPYTHON));
    ck_assert_str_eq(perr.msg, "not python");
}
END_TEST

/* Checks for a non-root user; returns a bit mask of failures. */
static int nonroot_socket_rules(void)
{
    char buf[108];
    pyheap_proto_error perr;
    int bad = 0;
    unsetenv("PYHEAP_SOCKET");
    setenv("XDG_RUNTIME_DIR", "/run/user/1000", 1);
    if (pyheap_proto_socket_path(NULL, buf, sizeof buf, &perr) != 0 ||
        strcmp(buf, "/run/user/1000/pyheapd.sock") != 0)
        bad |= 1;
    unsetenv("XDG_RUNTIME_DIR");
    if (pyheap_proto_socket_path(NULL, buf, sizeof buf, &perr) != -1 ||
        !strstr(perr.msg, "XDG_RUNTIME_DIR") || strcmp(perr.code, "invalid") != 0)
        bad |= 2;
    /* --socket still wins */
    if (pyheap_proto_socket_path("/tmp/x.sock", buf, sizeof buf, &perr) != 0 ||
        strcmp(buf, "/tmp/x.sock") != 0)
        bad |= 4;
    return bad;
}

START_TEST(socket_path_resolution)
{
    char buf[108];
    pyheap_proto_error perr;
    setenv("PYHEAP_SOCKET", "/tmp/from-env.sock", 1);
    ck_assert_int_eq(pyheap_proto_socket_path("/tmp/opt.sock", buf, sizeof buf, &perr), 0);
    ck_assert_str_eq(buf, "/tmp/opt.sock");
    ck_assert_int_eq(pyheap_proto_socket_path(NULL, buf, sizeof buf, &perr), 0);
    ck_assert_str_eq(buf, "/tmp/from-env.sock");
    unsetenv("PYHEAP_SOCKET");
    ck_assert_int_eq(pyheap_proto_socket_path(NULL, buf, sizeof buf, &perr), 0);
    if (geteuid() == 0)
        ck_assert_str_eq(buf, PYHEAP_PROTO_ROOT_SOCKET);
    /* the non-root rules: directly, or as uid 65534 in a child when root */
    if (geteuid() != 0) {
        ck_assert_int_eq(nonroot_socket_rules(), 0);
    } else {
        pid_t child = fork();
        ck_assert_int_ge(child, 0);
        if (child == 0)
            _exit(setuid(65534) < 0 ? 100 : nonroot_socket_rules());
        int st;
        ck_assert_int_eq(waitpid(child, &st, 0), child);
        ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                      "non-root socket path rules failed (status %d)", st);
    }
    char longp[300];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    ck_assert_int_eq(pyheap_proto_socket_path(longp, buf, sizeof buf, &perr), -1);
    ck_assert_str_eq(perr.code, "invalid");
}
END_TEST

/* Fixed-seed generator so a failure reproduces. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return rng_state = x;
}

START_TEST(random_garbage)
{
    static const char *const seeds[] = {
        "{\"cmd\":\"top\",\"pid\":123,\"n\":0,\"sort\":\"count\"}",
        "{\"cmd\":\"attach\",\"pid\":42}",
        "{\"cmd\":\"ps\"}",
        "{\"cmd\":\"referrers\",\"type\":\"a.B\",\"depth\":4,\"max_paths\":2,\"max_groups\":9}",
        "[{\"a\":[1,2,{\"b\":null}]},\"x\\u00e9\",1e10]",
    };
    static const char alphabet[] = "{}[]\",:0123456789-+.eE\\u tfnalrsecmdpio\x01\x7f\xc3\xa9\xff";
    char buf[512];
    int parsed_ok = 0, total = 0;
    for (int iter = 0; iter < 3000; iter++) {
        size_t len;
        int kind = (int)(rng() % 3);
        if (kind == 0) {
            /* pure random bytes (including NUL) */
            len = rng() % sizeof buf;
            for (size_t i = 0; i < len; i++)
                buf[i] = (char)(rng() & 0xff);
        } else if (kind == 1) {
            /* random JSON-ish tokens */
            len = rng() % sizeof buf;
            for (size_t i = 0; i < len; i++)
                buf[i] = alphabet[rng() % (sizeof alphabet - 1)];
        } else {
            /* a valid request with a few bytes mutated, inserted or cut */
            const char *s = seeds[rng() % (sizeof seeds / sizeof seeds[0])];
            len = strlen(s);
            memcpy(buf, s, len);
            int muts = 1 + (int)(rng() % 4);
            for (int m = 0; m < muts; m++) {
                size_t pos = len ? rng() % len : 0;
                switch (rng() % 3) {
                case 0:
                    buf[pos] = (char)(rng() & 0xff);
                    break;
                case 1:
                    if (len + 1 < sizeof buf) {
                        memmove(buf + pos + 1, buf + pos, len - pos);
                        buf[pos] = alphabet[rng() % (sizeof alphabet - 1)];
                        len++;
                    }
                    break;
                default:
                    len = pos;
                    break;
                }
            }
        }
        pyheap_request req;
        pyheap_proto_error perr = { 0 };
        int rc = pyheap_proto_parse(buf, len, &req, &perr);
        total++;
        if (rc == 0) {
            parsed_ok++;
            ck_assert_int_le(req.cmd, PYHEAP_CMD_REFERRERS);
            ck_assert_int_ge(req.pid, 0);
            if (req.cmd == PYHEAP_CMD_REFERRERS) {
                ck_assert(req.type[0] != '\0');
                ck_assert_uint_le(strlen(req.type), PYHEAP_PROTO_MAX_TYPE_LEN);
                ck_assert(req.depth >= 1 && req.depth <= PYHEAP_PROTO_MAX_DEPTH);
                ck_assert(req.max_paths >= 1 && req.max_paths <= PYHEAP_PROTO_MAX_PATHS);
                ck_assert(req.max_groups >= 1 && req.max_groups <= PYHEAP_PROTO_MAX_GROUPS);
            }
            ck_assert_int_le(req.pid, PYHEAP_PROTO_MAX_PID);
        } else {
            ck_assert_int_eq(rc, -1);
            ck_assert_ptr_nonnull(perr.code);
            ck_assert(perr.msg[0] != '\0');
            /* every error must also make a well-formed reply */
            json_t *r = pyheap_proto_error_reply(&perr);
            ck_assert_ptr_nonnull(r);
            json_decref(r);
        }
    }
    ck_assert_int_eq(total, 3000);
    /* sanity: the mutator is not so gentle that everything parses */
    ck_assert_int_lt(parsed_ok, total / 2);
}
END_TEST

Suite *suite_protocol(void)
{
    Suite *s = suite_create("protocol");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, valid_requests);
    tcase_add_test(tc, not_json);
    tcase_add_test(tc, embedded_nul);
    tcase_add_test(tc, not_an_object);
    tcase_add_test(tc, bad_cmd);
    tcase_add_test(tc, bad_pid);
    tcase_add_test(tc, bad_fields);
    tcase_add_test(tc, referrers_request);
    tcase_add_test(tc, referrers_bad_fields);
    tcase_add_test(tc, oversize_line);
    tcase_add_test(tc, deep_nesting);
    tcase_add_test(tc, error_reply_shape);
    tcase_add_test(tc, socket_path_resolution);
    tcase_add_test(tc, random_garbage);
    tcase_set_timeout(tc, 30);
    suite_add_tcase(s, tc);
    return s;
}
