/* pyheap: command-line client of pyheapd (docs/cli.md). */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fcntl.h>
#include <math.h>
#include <unistd.h>

#include "client.h"
#include "proto.h"
#include "pyheap_report.h"
#include "render.h"
#include "render_time.h"

struct cmd {
    const char *name;
    int (*run)(int argc, char **argv);
};

/* --socket as given before or after the command (the last one wins). */
static const char *socket_opt;

static const char usage_attach[] =
    "Usage: pyheap [--socket PATH] attach PID [--interval SECONDS] [--history N]\n"
    "                                         [--keep N] [--json]\n"
    "\n"
    "Ask pyheapd to attach to process PID (read-only, the process keeps running).\n"
    "Prints the Python version and where the struct offsets came from.\n"
    "\n"
    "  --interval SECONDS  scan every SECONDS in the background (0.1 to 86400; 0\n"
    "                   stops it) and record a per-type series for `pyheap growth`,\n"
    "                   `pyheap stats` trends and `pyheap diff` (default: off)\n"
    "  --history N      series points kept (default 720, oldest dropped)\n"
    "  --keep N         snapshots kept for `pyheap diff` (default 3, at most 32)\n"
    "On a process already attached, these change its session.\n";
static const char usage_detach[] =
    "Usage: pyheap [--socket PATH] detach PID [--json]\n"
    "\n"
    "Ask pyheapd to forget process PID.\n";
static const char usage_ps[] =
    "Usage: pyheap [--socket PATH] ps [--json]\n"
    "\n"
    "List the processes pyheapd is attached to (only yours unless you are root):\n"
    "PID, Python version, offsets source, state (attached/gone), attach time,\n"
    "number of scans, interpreter module.\n";
static const char usage_top[] =
    "Usage: pyheap [--socket PATH] top --by-type [-n N] [--sort bytes|count]\n"
    "                                  [-p PID] [--freeze | --max-age SECS] [--json]\n"
    "\n"
    "Scan every live object of an attached process (without stopping it) and\n"
    "print a histogram by type: type, count, bytes, %% of all bytes, and a total\n"
    "line (objects, bytes, skipped objects, scan time, Python version, offsets\n"
    "source).\n"
    "\n"
    "  --by-type          group by type (the default and, for now, only grouping)\n"
    "  -n, --limit N      show the N largest types (default %d; 0 = all)\n"
    "  --sort bytes|count order by total bytes (default) or object count\n"
    "  -p, --pid PID      which attached process (needed when several are attached)\n"
    "  --freeze           consistent mode: stop the target's threads for the scan\n"
    "                     (ptrace), then resume them; the pause is reported\n"
    "  --max-age SECS     answer from the daemon's newest snapshot of the process if\n"
    "                     its scan began at most SECS seconds ago (no new scan; the\n"
    "                     output says how old it is); else scan (default 0: always)\n"
    "  --file FILE        read a snapshot file (pyheap snapshot -o) instead: offline\n"
    "  --json             print pyheapd's reply as one JSON document instead\n";
static const char usage_referrers[] =
    "Usage: pyheap [--socket PATH] referrers TYPE [-p PID] [--depth N] [--paths N]\n"
    "                                        [--groups N] [--freeze | --max-age SECS]\n"
    "                                        [--json | --dot]\n"
    "\n"
    "Who keeps the objects of TYPE alive. Scans the process (without stopping\n"
    "it), then prints: how many objects of TYPE there are and their bytes; their\n"
    "referrers grouped by (referrer type, edge) with counts and bytes, largest\n"
    "first, and the referrers of those one level up, indented (--depth levels);\n"
    "a few shortest paths from roots (modules, thread frames) as Python-like\n"
    "expressions; how many objects of TYPE no root reaches.\n"
    "\n"
    "TYPE is a qualified name (mypkg.db.Connection) or a short one (Connection);\n"
    "a short name that several types share is refused with the list of them.\n"
    "\n"
    "  -p, --pid PID      which attached process (needed when several are attached)\n"
    "  -d, --depth N      levels of referrers, 1 to %d (default %d)\n"
    "  --paths N          shortest paths shown, 1 to %d (default %d)\n"
    "  --groups N         groups per level and parent, 1 to %d (default %d)\n"
    "  --freeze           stop the target's threads for the scan (see top --freeze)\n"
    "  --max-age SECS     answer from the daemon's newest snapshot of the process\n"
    "                     (e.g. the one `pyheap top` just took) if its scan began at\n"
    "                     most SECS seconds ago: no new scan, the output says how\n"
    "                     old it is; else scan (default 0: always scan)\n"
    "  --json             print pyheapd's reply as one JSON document instead\n"
    "  --file FILE        read a snapshot file (pyheap snapshot -o) instead: offline\n"
    "  --dot              print the referrer tree as a Graphviz digraph\n"
    "                     (e.g. pyheap referrers Foo --dot | dot -Tsvg > foo.svg)\n";
static const char usage_snapshot[] =
    "Usage: pyheap [--socket PATH] snapshot -o FILE [-p PID] [--freeze]\n"
    "\n"
    "Scan the process and write the snapshot (objects, sizes, types, edges with\n"
    "labels, roots) to FILE in pyheap's binary format (docs/snapshot-format.md).\n"
    "pyheap opens FILE itself and hands the open file to pyheapd, which never\n"
    "opens paths for clients. Read it later, without a daemon or the process:\n"
    "`pyheap top --file FILE`, `pyheap referrers TYPE --file FILE`,\n"
    "`pyheap diff --file OLD --file NEW`.\n";
static const char usage_growth[] =
    "Usage: pyheap [--socket PATH] growth [-p PID] [-n N] [--json]\n"
    "\n"
    "Types ranked by steady growth over the snapshots recorded for the process\n"
    "(attach it with --interval): count and bytes now, growth over the window,\n"
    "bytes per minute (robust slope), in how many intervals it grew. Types that\n"
    "grow and shrink back are left out (docs/growth.md). Needs 2 snapshots.\n";
static const char usage_diff[] =
    "Usage: pyheap [--socket PATH] diff [-p PID] [--since ID] [-n N] [--json]\n"
    "       pyheap diff --file OLD --file NEW [-n N] [--json]\n"
    "\n"
    "Objects that are new since a kept snapshot (default: the oldest kept; IDs\n"
    "in `pyheap snapshots`) and still alive in a fresh one, by type and by what\n"
    "holds them (referrer type and edge). With two files, offline.\n";
static const char usage_stats[] =
    "Usage: pyheap [--socket PATH] stats [-p PID] [--json]\n"
    "\n"
    "Where the memory goes: RSS/PSS (anonymous, file-backed) from\n"
    "/proc/PID/smaps_rollup, bytes of Python objects (a fresh scan), and the\n"
    "anonymous memory not accounted to Python objects (C extensions, malloc\n"
    "fragmentation, buffers, free allocator space). With a recorded series,\n"
    "the trend says which part grows.\n";
static const char usage_snapshots[] =
    "Usage: pyheap [--socket PATH] snapshots [-p PID] [--json]\n"
    "\n"
    "The snapshots pyheapd keeps for a process (IDs for `pyheap diff --since`)\n"
    "and the state of its periodic series.\n";
static const char usage_ping[] =
    "Usage: pyheap [--socket PATH] ping [--json]\n"
    "\n"
    "Check that pyheapd answers; print its version.\n";

static void main_usage(FILE *f)
{
    fprintf(f,
            "Usage: pyheap [--socket PATH] [--timeout SECONDS] COMMAND [ARGS]\n"
            "\n"
            "Inspect the heap of running Python processes through pyheapd.\n"
            "\n"
            "Commands:\n"
            "  attach PID       attach pyheapd to a running Python process\n"
            "  detach PID       detach from it\n"
            "  ps               list attached processes\n"
            "  top --by-type    live objects by type: count, bytes, %%\n"
            "  referrers TYPE   who keeps the objects of TYPE alive (tree, paths, --dot)\n"
            "  growth           types growing steadily over the recorded snapshots\n"
            "  diff             objects new since a snapshot, and what holds them\n"
            "  snapshot -o FILE write a snapshot file (top/referrers/diff --file)\n"
            "  snapshots        snapshots kept and the periodic series\n"
            "  stats            RSS/PSS vs Python objects vs the rest\n"
            "  ping             check that pyheapd is running\n"
            "\n"
            "Options:\n"
            "  -s, --socket PATH  pyheapd's socket (default: $PYHEAP_SOCKET, else\n"
            "                   %s for root, else $XDG_RUNTIME_DIR/pyheapd.sock)\n"
            "  --timeout SECONDS  wait at most this long for pyheapd's reply\n"
            "                   (default %g; 0: no limit)\n"
            "  -h, --help       show this help (`pyheap COMMAND --help` for a command)\n"
            "  -V, --version    show the version\n"
            "\n"
            "Exit status: 0 success, 1 pyheapd answered with an error,\n"
            "2 usage error, or pyheapd cannot be reached or does not answer in time.\n",
            PYHEAP_PROTO_ROOT_SOCKET, PYHEAP_CLIENT_DEFAULT_TIMEOUT);
}

static int parse_uint(const char *s, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > max)
        return -1;
    *out = v;
    return 0;
}

/* S on stderr with control characters (from the target) escaped. */
static void put_clean_err(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            fprintf(stderr, "\\x%02x", c);
        else
            fputc(c, stderr);
    }
}

/* An error reply's list of candidate type names, one per line on stderr
 * (the message may have been cut short). Control characters are not sent. */
static void print_names(const json_t *arr, const char *title)
{
    if (json_array_size(arr) == 0)
        return;
    fprintf(stderr, "%s:\n", title);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *n = json_string_value(json_array_get(arr, i));
        if (!n)
            continue;
        fputs("  ", stderr);
        put_clean_err(n);
        fputc('\n', stderr);
    }
}

/* Send REQ (stolen), handle transport and error replies. Returns the ok
 * reply or NULL with *status set. */
static json_t *call(const char *sock, json_t *req, int *status)
{
    if (!req) {
        fprintf(stderr, "pyheap: out of memory\n");
        *status = PYHEAP_EXIT_FAILED;
        return NULL;
    }
    json_t *rep = pyheap_client_call(sock, req);
    json_decref(req);
    if (!rep) {
        *status = PYHEAP_EXIT_USAGE;
        return NULL;
    }
    if (!json_is_true(json_object_get(rep, "ok"))) {
        const char *msg = json_string_value(json_object_get(rep, "message"));
        const char *code = json_string_value(json_object_get(rep, "error"));
        fputs("pyheap: ", stderr);
        put_clean_err(msg ? msg : code ? code : "request failed");
        fputc('\n', stderr);
        print_names(json_object_get(rep, "candidates"), "candidates");
        json_decref(rep);
        *status = PYHEAP_EXIT_FAILED;
        return NULL;
    }
    return rep;
}

static int print_json(json_t *rep)
{
    json_object_del(rep, "ok");
    char *s = json_dumps(rep, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
    if (!s) {
        fprintf(stderr, "pyheap: out of memory\n");
        return PYHEAP_EXIT_FAILED;
    }
    printf("%s\n", s);
    free(s);
    return PYHEAP_EXIT_OK;
}

enum { OPT_JSON = 1000, OPT_SORT, OPT_BY_TYPE, OPT_DOT, OPT_PATHS, OPT_GROUPS, OPT_FREEZE,
       OPT_FILE, OPT_INTERVAL, OPT_HISTORY, OPT_KEEP, OPT_SINCE, OPT_MAX_AGE };

/* Print an ok reply (stolen) as JSON or as a table. */
static int finish(json_t *rep, int json, void (*render)(const json_t *))
{
    int rc = PYHEAP_EXIT_OK;
    if (json)
        rc = print_json(rep);
    else
        render(rep);
    json_decref(rep);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "pyheap: cannot write the output: %s\n", strerror(errno));
        rc = PYHEAP_EXIT_FAILED;
    }
    return rc;
}

static int bad_usage(const char *cmd, const char *what)
{
    fprintf(stderr, "pyheap %s: %s (see `pyheap %s --help`)\n", cmd, what, cmd);
    return PYHEAP_EXIT_USAGE;
}

/* Parse [--json] [--socket P] [--help] and exactly NPOS positionals. */
static int simple_opts(const char *name, const char *usage, int argc, char **argv,
                       int npos, int *json, char **pos)
{
    static const struct option opts[] = {
        { "json", no_argument, NULL, OPT_JSON },
        { "socket", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_JSON: *json = 1; break;
        case 's': socket_opt = optarg; break;
        case 'h': fputs(usage, stdout); return 0;
        default: return bad_usage(name, "invalid option");
        }
    }
    if (argc - optind != npos)
        return bad_usage(name, npos ? "expects a PID" : "takes no arguments");
    for (int i = 0; i < npos; i++)
        pos[i] = argv[optind + i];
    return -1;
}

/* A positive PID up to PYHEAP_PROTO_MAX_PID. */
static bool parse_pid(const char *s, long *pid)
{
    return parse_uint(s, PYHEAP_PROTO_MAX_PID, pid) == 0 && *pid != 0;
}

static int resolve_socket(char *path, size_t sz)
{
    pyheap_proto_error perr;
    if (pyheap_proto_socket_path(socket_opt, path, sz, &perr) < 0) {
        fprintf(stderr, "pyheap: %s\n", perr.msg);
        return -1;
    }
    return 0;
}

/* --max-age SECS (issue 7): 0 to PYHEAP_PROTO_MAX_AGE seconds. */
static int parse_max_age(const char *arg, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(arg, &end);
    if (errno || end == arg || *end || !isfinite(v) || v < 0 || v > PYHEAP_PROTO_MAX_AGE)
        return -1;
    *out = v;
    return 0;
}

/* Add "max_age" (when not 0) to REQ (may be NULL). */
static json_t *with_max_age(json_t *req, double max_age)
{
    if (req && max_age > 0 && json_object_set_new(req, "max_age", json_real(max_age)) < 0) {
        json_decref(req);
        return NULL;
    }
    return req;
}

/* Add "pid" and "freeze" (when set) to REQ (stolen; NULL: out of memory),
 * send it to the daemon at PATH and print the reply. */
static int call_finish(const char *path, json_t *req, long pid, int freeze, int json,
                       void (*render)(const json_t *))
{
    if (req && pid)
        json_object_set_new(req, "pid", json_integer(pid));
    if (req && freeze)
        json_object_set_new(req, "freeze", json_true());
    int status;
    json_t *rep = call(path, req, &status);
    if (!rep)
        return status;
    return finish(rep, json, render);
}

static int pid_command(const char *name, const char *usage, int argc, char **argv,
                       void (*render)(const json_t *))
{
    int json = 0;
    char *pos[1];
    int rc = simple_opts(name, usage, argc, argv, 1, &json, pos);
    if (rc >= 0)
        return rc;
    long pid;
    if (!parse_pid(pos[0], &pid))
        return bad_usage(name, "PID must be a positive integer");
    char path[108];
    if (resolve_socket(path, sizeof path) < 0)
        return PYHEAP_EXIT_USAGE;
    return call_finish(path, json_pack("{s:s,s:I}", "cmd", name, "pid", (json_int_t)pid), 0, 0,
                       json, render);
}

static int run_attach(int argc, char **argv)
{
    static const struct option opts[] = {
        { "interval", required_argument, NULL, OPT_INTERVAL },
        { "history", required_argument, NULL, OPT_HISTORY },
        { "keep", required_argument, NULL, OPT_KEEP },
        { "json", no_argument, NULL, OPT_JSON },
        { "socket", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int json = 0, has_interval = 0;
    double interval = 0;
    long history = 0, keep = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, "s:h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_INTERVAL: {
            char *end;
            errno = 0;
            interval = strtod(optarg, &end);
            if (errno || end == optarg || *end || !isfinite(interval) ||
                !(interval == 0 || (interval >= PYHEAP_PROTO_MIN_INTERVAL &&
                                    interval <= PYHEAP_PROTO_MAX_INTERVAL)))
                return bad_usage("attach", "--interval takes seconds from 0.1 to 86400 (0: off)");
            has_interval = 1;
            break;
        }
        case OPT_HISTORY:
            if (parse_uint(optarg, PYHEAP_PROTO_MAX_HISTORY, &history) < 0 || history < 2)
                return bad_usage("attach", "--history takes 2 to 100000 points");
            break;
        case OPT_KEEP:
            if (parse_uint(optarg, PYHEAP_PROTO_MAX_KEEP, &keep) < 0 || keep < 1)
                return bad_usage("attach", "--keep takes 1 to 32 snapshots");
            break;
        case OPT_JSON: json = 1; break;
        case 's': socket_opt = optarg; break;
        case 'h': fputs(usage_attach, stdout); return 0;
        default: return bad_usage("attach", "invalid option");
        }
    }
    if (argc - optind != 1)
        return bad_usage("attach", "expects a PID");
    long pid;
    if (!parse_pid(argv[optind], &pid))
        return bad_usage("attach", "PID must be a positive integer");
    char path[108];
    if (resolve_socket(path, sizeof path) < 0)
        return PYHEAP_EXIT_USAGE;
    json_t *req = json_pack("{s:s,s:I}", "cmd", "attach", "pid", (json_int_t)pid);
    if (req && has_interval)
        json_object_set_new(req, "interval", json_real(interval));
    if (req && history)
        json_object_set_new(req, "history", json_integer(history));
    if (req && keep)
        json_object_set_new(req, "keep", json_integer(keep));
    int status;
    json_t *rep = call(path, req, &status);
    if (!rep)
        return status;
    if (!json && json_number_value(json_object_get(rep, "interval_s")) > 0) {
        pyheap_render_attach(rep);
        printf("periodic scans every %g s (series %s)\n",
               json_number_value(json_object_get(rep, "interval_s")),
               json_string_value(json_object_get(rep, "series_state")) ? json_string_value(json_object_get(rep, "series_state")) : "?");
        json_decref(rep);
        return fflush(stdout) == 0 ? PYHEAP_EXIT_OK : PYHEAP_EXIT_FAILED;
    }
    return finish(rep, json, pyheap_render_attach);
}

static int run_detach(int argc, char **argv)
{
    return pid_command("detach", usage_detach, argc, argv, pyheap_render_detach);
}

static int noarg_command(const char *name, const char *usage, int argc, char **argv,
                         void (*render)(const json_t *))
{
    int json = 0;
    int rc = simple_opts(name, usage, argc, argv, 0, &json, NULL);
    if (rc >= 0)
        return rc;
    char path[108];
    if (resolve_socket(path, sizeof path) < 0)
        return PYHEAP_EXIT_USAGE;
    return call_finish(path, json_pack("{s:s}", "cmd", name), 0, 0, json, render);
}

static int run_ps(int argc, char **argv)
{
    return noarg_command("ps", usage_ps, argc, argv, pyheap_render_ps);
}

static int run_ping(int argc, char **argv)
{
    return noarg_command("ping", usage_ping, argc, argv, pyheap_render_ping);
}

/* ---- offline: snapshot files (issue 5) ---- */

/* An offline reply (stolen; NULL: already reported) through the same
 * checks and rendering as a daemon's. */
static int finish_offline(json_t *rep, int json, void (*render)(const json_t *))
{
    if (!rep)
        return PYHEAP_EXIT_FAILED;
    if (!json_is_true(json_object_get(rep, "ok"))) {
        const char *msg = json_string_value(json_object_get(rep, "message"));
        fputs("pyheap: ", stderr);
        put_clean_err(msg ? msg : "failed");
        fputc('\n', stderr);
        print_names(json_object_get(rep, "candidates"), "candidates");
        json_decref(rep);
        return PYHEAP_EXIT_FAILED;
    }
    return finish(rep, json, render);
}

static pyheap_snapshot *load_file(const char *file, pyheap_snapfile_info *info)
{
    pyheap_snapshot *s = NULL;
    pyheap_error err;
    memset(&err, 0, sizeof err);
    if (pyheap_snapfile_load(file, &s, info, &err) < 0) {
        fputs("pyheap: ", stderr);
        put_clean_err(err.msg);
        fputc('\n', stderr);
        return NULL;
    }
    return s;
}

static json_t *lib_reply_error(const pyheap_error *err)
{
    fputs("pyheap: ", stderr);
    put_clean_err(err->msg);
    fputc('\n', stderr);
    return NULL;
}

static json_t *with_ok(json_t *rep)
{
    if (rep && json_object_set_new(rep, "ok", json_true()) < 0) {
        json_decref(rep);
        return NULL;
    }
    return rep;
}

static json_t *offline_top(const char *file, pyheap_sort sort, size_t n)
{
    pyheap_snapfile_info info;
    pyheap_snapshot *s = load_file(file, &info);
    if (!s)
        return NULL;
    pyheap_error err;
    memset(&err, 0, sizeof err);
    pyheap_type_stat *hist = NULL;
    size_t nhist = 0;
    json_t *rep = NULL;
    if (pyheap_histogram(s, sort, &hist, &nhist, &err) == 0)
        rep = pyheap_report_top_hist(info.pid, info.python, info.offsets_source,
                                     pyheap_snapshot_stats(s), hist, nhist, n, &err);
    free(hist);
    pyheap_snapshot_free(s);
    if (!rep)
        return lib_reply_error(&err);
    return with_ok(rep);
}

static json_t *offline_referrers(const char *file, const char *type,
                                 const pyheap_referrers_opts *ro)
{
    pyheap_snapfile_info info;
    pyheap_snapshot *s = load_file(file, &info);
    if (!s)
        return NULL;
    pyheap_error err;
    memset(&err, 0, sizeof err);
    json_t *rep = pyheap_report_referrers(info.pid, s, type, ro, &err);
    pyheap_snapshot_free(s);
    if (!rep)
        return lib_reply_error(&err);
    return rep;
}

static json_t *offline_diff(const char *older, const char *newer, size_t n)
{
    pyheap_snapfile_info i1, i2;
    pyheap_snapshot *a = load_file(older, &i1);
    if (!a)
        return NULL;
    pyheap_snapshot *b = load_file(newer, &i2);
    if (!b) {
        pyheap_snapshot_free(a);
        return NULL;
    }
    pyheap_error err;
    memset(&err, 0, sizeof err);
    pyheap_diff *d = NULL;
    json_t *rep = NULL;
    if (pyheap_diff_compute(a, b, &d, &err) == 0)
        rep = pyheap_report_diff(i2.pid, d, n, &err);
    pyheap_diff_free(d);
    pyheap_snapshot_free(a);
    pyheap_snapshot_free(b);
    if (!rep)
        return lib_reply_error(&err);
    if (i1.pid != i2.pid)
        fprintf(stderr, "pyheap: note: the files come from different processes (%d, %d)\n",
                (int)i1.pid, (int)i2.pid);
    json_object_set_new(rep, "older", json_string(older));
    json_object_set_new(rep, "newer", json_string(newer));
    json_object_set_new(rep, "window_s", json_integer(i2.time_unix - i1.time_unix));
    return with_ok(rep);
}

/* -p PID / -n N / --json / --socket common to growth, stats, snapshots. */
static int session_command(const char *name, const char *usage, int argc, char **argv,
                           void (*render)(const json_t *), int with_n)
{
    static const struct option opts[] = {
        { "pid", required_argument, NULL, 'p' },
        { "limit", required_argument, NULL, 'n' },
        { "json", no_argument, NULL, OPT_JSON },
        { "socket", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    long pid = 0, n = PYHEAP_PROTO_DEFAULT_N;
    int json = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, with_n ? "p:n:s:h" : "p:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (!parse_pid(optarg, &pid))
                return bad_usage(name, "-p takes a positive PID");
            break;
        case 'n':
            if (!with_n || parse_uint(optarg, PYHEAP_PROTO_MAX_N, &n) < 0)
                return bad_usage(name, "-n takes a number of types (0 = all)");
            break;
        case OPT_JSON: json = 1; break;
        case 's': socket_opt = optarg; break;
        case 'h': fputs(usage, stdout); return PYHEAP_EXIT_OK;
        default: return bad_usage(name, "invalid option");
        }
    }
    if (optind != argc)
        return bad_usage(name, "unexpected argument");
    char path[108];
    if (resolve_socket(path, sizeof path) < 0)
        return PYHEAP_EXIT_USAGE;
    json_t *req = json_pack("{s:s}", "cmd", name);
    if (req && with_n)
        json_object_set_new(req, "n", json_integer(n));
    return call_finish(path, req, pid, 0, json, render);
}

static int run_growth(int argc, char **argv)
{
    return session_command("growth", usage_growth, argc, argv, pyheap_render_growth, 1);
}

static int run_stats(int argc, char **argv)
{
    return session_command("stats", usage_stats, argc, argv, pyheap_render_stats, 0);
}

static int run_snapshots(int argc, char **argv)
{
    return session_command("snapshots", usage_snapshots, argc, argv, pyheap_render_snapshots, 0);
}

static int run_diff(int argc, char **argv)
{
    static const struct option opts[] = {
        { "pid", required_argument, NULL, 'p' },
        { "since", required_argument, NULL, OPT_SINCE },
        { "limit", required_argument, NULL, 'n' },
        { "file", required_argument, NULL, OPT_FILE },
        { "freeze", no_argument, NULL, OPT_FREEZE },
        { "json", no_argument, NULL, OPT_JSON },
        { "socket", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    long pid = 0, n = PYHEAP_PROTO_DEFAULT_N, since = 0;
    int json = 0, freeze = 0;
    const char *files[2];
    int nfiles = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, "p:n:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (!parse_pid(optarg, &pid))
                return bad_usage("diff", "-p takes a positive PID");
            break;
        case OPT_SINCE:
            if (parse_uint(optarg, 2000000000L, &since) < 0 || since == 0)
                return bad_usage("diff", "--since takes a snapshot ID (pyheap snapshots)");
            break;
        case 'n':
            if (parse_uint(optarg, PYHEAP_PROTO_MAX_N, &n) < 0)
                return bad_usage("diff", "-n takes a number of rows (0 = all)");
            break;
        case OPT_FILE:
            if (nfiles == 2)
                return bad_usage("diff", "--file is given twice at most (OLD, then NEW)");
            files[nfiles++] = optarg;
            break;
        case OPT_FREEZE: freeze = 1; break;
        case OPT_JSON: json = 1; break;
        case 's': socket_opt = optarg; break;
        case 'h': fputs(usage_diff, stdout); return PYHEAP_EXIT_OK;
        default: return bad_usage("diff", "invalid option");
        }
    }
    if (optind != argc)
        return bad_usage("diff", "unexpected argument");
    if (nfiles == 1)
        return bad_usage("diff", "offline diff takes two files: --file OLD --file NEW");
    if (nfiles == 2) {
        if (pid || since || freeze)
            return bad_usage("diff", "with --file, no -p, --since or --freeze");
        return finish_offline(offline_diff(files[0], files[1], (size_t)n), json,
                              pyheap_render_diff);
    }
    char path[108];
    if (resolve_socket(path, sizeof path) < 0)
        return PYHEAP_EXIT_USAGE;
    json_t *req = json_pack("{s:s,s:I}", "cmd", "diff", "n", (json_int_t)n);
    if (req && since)
        json_object_set_new(req, "since", json_integer(since));
    return call_finish(path, req, pid, freeze, json, pyheap_render_diff);
}

static int run_snapshot(int argc, char **argv)
{
    static const struct option opts[] = {
        { "output", required_argument, NULL, 'o' },
        { "pid", required_argument, NULL, 'p' },
        { "freeze", no_argument, NULL, OPT_FREEZE },
        { "json", no_argument, NULL, OPT_JSON },
        { "socket", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    long pid = 0;
    int json = 0, freeze = 0;
    const char *out = NULL;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, "o:p:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case 'p':
            if (!parse_pid(optarg, &pid))
                return bad_usage("snapshot", "-p takes a positive PID");
            break;
        case OPT_FREEZE: freeze = 1; break;
        case OPT_JSON: json = 1; break;
        case 's': socket_opt = optarg; break;
        case 'h': fputs(usage_snapshot, stdout); return PYHEAP_EXIT_OK;
        default: return bad_usage("snapshot", "invalid option");
        }
    }
    if (optind != argc || !out)
        return bad_usage("snapshot", "needs -o FILE");
    char path[108];
    if (resolve_socket(path, sizeof path) < 0)
        return PYHEAP_EXIT_USAGE;
    /* Opened here, with the client's own rights; pyheapd only writes into it. */
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "pyheap: cannot create %s: %s\n", out, strerror(errno));
        return PYHEAP_EXIT_FAILED;
    }
    json_t *req = json_pack("{s:s}", "cmd", "snapshot");
    if (req && pid)
        json_object_set_new(req, "pid", json_integer(pid));
    if (req && freeze)
        json_object_set_new(req, "freeze", json_true());
    int status = PYHEAP_EXIT_FAILED;
    json_t *rep = NULL;
    if (req) {
        rep = pyheap_client_call_fd(path, req, fd);
        json_decref(req);
        status = rep ? PYHEAP_EXIT_FAILED : PYHEAP_EXIT_USAGE;
    }
    int rc = close(fd);
    if (rep && !json_is_true(json_object_get(rep, "ok"))) {
        const char *msg = json_string_value(json_object_get(rep, "message"));
        fputs("pyheap: ", stderr);
        put_clean_err(msg ? msg : "snapshot failed");
        fputc('\n', stderr);
        json_decref(rep);
        rep = NULL;
    }
    if (!rep || rc < 0) {
        if (rep && rc < 0)
            fprintf(stderr, "pyheap: cannot write %s: %s\n", out, strerror(errno));
        json_decref(rep);
        unlink(out);
        return status;
    }
    if (json) {
        int prc = print_json(rep);
        json_decref(rep);
        return prc;
    }
    json_int_t fb = json_integer_value(json_object_get(rep, "file_bytes"));
    printf("wrote %s: %lld objects, %lld edges, %lld bytes of file (pid %lld, snapshot %lld)\n",
           out, (long long)json_integer_value(json_object_get(rep, "objects")),
           (long long)json_integer_value(json_object_get(rep, "edges")), (long long)fb,
           (long long)json_integer_value(json_object_get(rep, "pid")),
           (long long)json_integer_value(json_object_get(rep, "snapshot_id")));
    json_decref(rep);
    return PYHEAP_EXIT_OK;
}

static int run_top(int argc, char **argv)
{
    static const struct option opts[] = {
        { "by-type", no_argument, NULL, OPT_BY_TYPE },
        { "limit", required_argument, NULL, 'n' },
        { "sort", required_argument, NULL, OPT_SORT },
        { "pid", required_argument, NULL, 'p' },
        { "json", no_argument, NULL, OPT_JSON },
        { "freeze", no_argument, NULL, OPT_FREEZE },
        { "max-age", required_argument, NULL, OPT_MAX_AGE },
        { "file", required_argument, NULL, OPT_FILE },
        { "socket", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    long n = PYHEAP_PROTO_DEFAULT_N, pid = 0;
    const char *sort = "bytes", *file = NULL;
    int json = 0, freeze = 0;
    double max_age = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, "n:p:s:h", opts, NULL)) != -1) {
        switch (c) {
        case OPT_BY_TYPE:
            break;
        case 'n':
            if (parse_uint(optarg, PYHEAP_PROTO_MAX_N, &n) < 0)
                return bad_usage("top", "-n takes a number of types (0 = all)");
            break;
        case OPT_SORT:
            if (strcmp(optarg, "bytes") != 0 && strcmp(optarg, "count") != 0)
                return bad_usage("top", "--sort takes bytes or count");
            sort = optarg;
            break;
        case 'p':
            if (!parse_pid(optarg, &pid))
                return bad_usage("top", "-p takes a positive PID");
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_FREEZE:
            freeze = 1;
            break;
        case OPT_FILE:
            file = optarg;
            break;
        case OPT_MAX_AGE:
            if (parse_max_age(optarg, &max_age) < 0)
                return bad_usage("top", "--max-age takes seconds from 0 to 86400");
            break;
        case 's':
            socket_opt = optarg;
            break;
        case 'h':
            printf(usage_top, PYHEAP_PROTO_DEFAULT_N);
            return PYHEAP_EXIT_OK;
        default:
            return bad_usage("top", "invalid option");
        }
    }
    if (optind != argc)
        return bad_usage("top", "unexpected argument");
    if (freeze && max_age > 0)
        return bad_usage("top", "--freeze scans afresh: no --max-age with it");
    if (file) {
        if (pid || freeze || max_age > 0)
            return bad_usage("top", "--file reads a snapshot file: no -p, --freeze or --max-age");
        return finish_offline(offline_top(file, strcmp(sort, "count") == 0 ? PYHEAP_SORT_COUNT
                                                                             : PYHEAP_SORT_BYTES,
                                          (size_t)n), json, pyheap_render_top);
    }
    char path[108];
    if (resolve_socket(path, sizeof path) < 0)
        return PYHEAP_EXIT_USAGE;
    json_t *req = with_max_age(json_pack("{s:s,s:I,s:s}", "cmd", "top", "n", (json_int_t)n,
                                         "sort", sort), max_age);
    return call_finish(path, req, pid, freeze, json, pyheap_render_top);
}

static int run_referrers(int argc, char **argv)
{
    static const struct option opts[] = {
        { "pid", required_argument, NULL, 'p' },
        { "depth", required_argument, NULL, 'd' },
        { "paths", required_argument, NULL, OPT_PATHS },
        { "groups", required_argument, NULL, OPT_GROUPS },
        { "json", no_argument, NULL, OPT_JSON },
        { "dot", no_argument, NULL, OPT_DOT },
        { "file", required_argument, NULL, OPT_FILE },
        { "freeze", no_argument, NULL, OPT_FREEZE },
        { "max-age", required_argument, NULL, OPT_MAX_AGE },
        { "socket", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    long pid = 0, depth = PYHEAP_PROTO_DEFAULT_DEPTH, paths = PYHEAP_PROTO_DEFAULT_PATHS,
         groups = PYHEAP_PROTO_DEFAULT_GROUPS;
    int json = 0, dot = 0, freeze = 0;
    double max_age = 0;
    const char *file = NULL;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, "p:d:s:h", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (!parse_pid(optarg, &pid))
                return bad_usage("referrers", "-p takes a positive PID");
            break;
        case 'd':
            if (parse_uint(optarg, PYHEAP_PROTO_MAX_DEPTH, &depth) < 0 || depth == 0)
                return bad_usage("referrers", "--depth takes a number from 1 to 10");
            break;
        case OPT_PATHS:
            if (parse_uint(optarg, PYHEAP_PROTO_MAX_PATHS, &paths) < 0 || paths == 0)
                return bad_usage("referrers", "--paths takes a number from 1 to 100");
            break;
        case OPT_GROUPS:
            if (parse_uint(optarg, PYHEAP_PROTO_MAX_GROUPS, &groups) < 0 || groups == 0)
                return bad_usage("referrers", "--groups takes a number from 1 to 1000");
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_DOT:
            dot = 1;
            break;
        case OPT_FILE:
            file = optarg;
            break;
        case OPT_FREEZE:
            freeze = 1;
            break;
        case OPT_MAX_AGE:
            if (parse_max_age(optarg, &max_age) < 0)
                return bad_usage("referrers", "--max-age takes seconds from 0 to 86400");
            break;
        case 's':
            socket_opt = optarg;
            break;
        case 'h':
            printf(usage_referrers, PYHEAP_PROTO_MAX_DEPTH, PYHEAP_PROTO_DEFAULT_DEPTH,
                   PYHEAP_PROTO_MAX_PATHS, PYHEAP_PROTO_DEFAULT_PATHS,
                   PYHEAP_PROTO_MAX_GROUPS, PYHEAP_PROTO_DEFAULT_GROUPS);
            return PYHEAP_EXIT_OK;
        default:
            return bad_usage("referrers", "invalid option");
        }
    }
    if (argc - optind != 1)
        return bad_usage("referrers", "expects one TYPE");
    if (json && dot)
        return bad_usage("referrers", "--json and --dot are exclusive");
    const char *type = argv[optind];
    size_t tlen = strlen(type);
    if (tlen == 0 || tlen > PYHEAP_PROTO_MAX_TYPE_LEN)
        return bad_usage("referrers", "TYPE must be 1 to 256 bytes long");
    if (freeze && max_age > 0)
        return bad_usage("referrers", "--freeze scans afresh: no --max-age with it");
    if (file) {
        if (pid || freeze || max_age > 0)
            return bad_usage("referrers",
                             "--file reads a snapshot file: no -p, --freeze or --max-age");
        /* two threads for the analysis, as pyheapd's default */
        pyheap_referrers_opts ro = { .depth = (unsigned)depth, .max_groups = (size_t)groups,
                                     .max_paths = (size_t)paths,
                                     .threads = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? 2 : 1 };
        return finish_offline(offline_referrers(file, type, &ro), json,
                              dot ? pyheap_render_referrers_dot : pyheap_render_referrers);
    }
    char path[108];
    if (resolve_socket(path, sizeof path) < 0)
        return PYHEAP_EXIT_USAGE;
    json_t *req = json_pack("{s:s,s:s,s:I,s:I,s:I}", "cmd", "referrers", "type", type,
                            "depth", (json_int_t)depth, "max_paths", (json_int_t)paths,
                            "max_groups", (json_int_t)groups);
    if (!req) {
        /* json_pack fails on invalid UTF-8 as well as on OOM. */
        return bad_usage("referrers", "TYPE must be valid UTF-8");
    }
    return call_finish(path, with_max_age(req, max_age), pid, freeze, json,
                       dot ? pyheap_render_referrers_dot : pyheap_render_referrers);
}

static const struct cmd commands[] = {
    { "attach", run_attach },
    { "detach", run_detach },
    { "ps", run_ps },
    { "top", run_top },
    { "referrers", run_referrers },
    { "growth", run_growth },
    { "diff", run_diff },
    { "snapshot", run_snapshot },
    { "snapshots", run_snapshots },
    { "stats", run_stats },
    { "ping", run_ping },
};

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "timeout", required_argument, NULL, 'T' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    /* '+': stop at the command; its own options are parsed by it. */
    while ((c = getopt_long(argc, argv, "+s:hV", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            socket_opt = optarg;
            break;
        case 'T': {
            char *end;
            errno = 0;
            double t = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(t >= 0) || t > 86400 * 365) {
                fprintf(stderr, "pyheap: --timeout takes seconds (0: no limit), not '%s'\n",
                        optarg);
                return PYHEAP_EXIT_USAGE;
            }
            pyheap_client_set_timeout(t);
            break;
        }
        case 'h':
            main_usage(stdout);
            return PYHEAP_EXIT_OK;
        case 'V':
            printf("pyheap %s\n", PYHEAP_VERSION);
            return PYHEAP_EXIT_OK;
        default:
            main_usage(stderr);
            return PYHEAP_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        main_usage(stderr);
        return PYHEAP_EXIT_USAGE;
    }
    const char *name = argv[optind];
    if (strcmp(name, "help") == 0) {
        main_usage(stdout);
        return PYHEAP_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].run(argc - optind, argv + optind);
    fprintf(stderr, "pyheap: unknown command '%s' (see `pyheap --help`)\n", name);
    return PYHEAP_EXIT_USAGE;
}
