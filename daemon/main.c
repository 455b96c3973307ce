/* pyheapd: serve heap reports of running CPython processes over a Unix
 * socket (docs/protocol.md). Foreground; logs one line per event to stderr. */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pyheapd.h"

#define DEFAULT_MAX_REPLY (16 * 1024 * 1024)
#define DEFAULT_SCAN_MS 60000
#define DEFAULT_FREEZE_MS 1000
#define DEFAULT_SCAN_NICE 19

/* Set once in main() before any thread starts; read-only afterwards. */
static int journal_prefix;

void pyheapd_log_set_journal(int on)
{
    journal_prefix = on;
}

__attribute__((format(printf, 2, 0)))
static void vlog(int prio, const char *fmt, va_list ap)
{
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    /* Messages may quote client input or target paths: keep each event on
     * one clean line (no control characters to forge log lines). */
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    /* One write per line so lines from threads never interleave. Under
     * journald (JOURNAL_STREAM) a "<N>" prefix carries the priority. */
    if (journal_prefix)
        fprintf(stderr, "<%d>%s\n", prio & 7, line);
    else
        fprintf(stderr, "pyheapd: %s\n", line);
}

void pyheapd_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(6, fmt, ap);
    va_end(ap);
}

void pyheapd_logp(int prio, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(prio, fmt, ap);
    va_end(ap);
}

/* JOURNAL_STREAM is "DEV:INODE" of the journal stream; it applies only if
 * our stderr is still that stream. */
static int stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: pyheapd [OPTIONS] [attach PID [--interval S]]\n"
            "\n"
            "Serve heap reports of running CPython processes to the `pyheap` client\n"
            "over a Unix socket. Runs in the foreground and logs to stderr.\n"
            "\n"
            "  attach PID       attach to process PID at start-up (exit 1 if that fails)\n"
            "  -s, --socket PATH  socket to listen on (default: $PYHEAP_SOCKET, else\n"
            "                   %s for root, else $XDG_RUNTIME_DIR/pyheapd.sock)\n"
            "  --socket-mode MODE  octal mode of the socket it binds (default 0666 as\n"
            "                   root, else 0600; every request is authorized anyway)\n"
            "  --socket-group NAME  group of the socket it binds (e.g. pyheap)\n"
            "  --max-clients N  concurrent connections (default %d, at most %d)\n"
            "  --max-request BYTES  longest request line (default and at most %d)\n"
            "  --max-reply BYTES  longest reply line; longer replies are cut and say\n"
            "                   so (default %d)\n"
            "  --scan-timeout MS  time budget of one scan; 0: none (default %d)\n"
            "  --freeze-timeout MS  --freeze: how long threads may take to stop\n"
            "                   (default %d)\n"
            "  --scan-nice N    scans run at nice N (0..19) under SCHED_BATCH, so the\n"
            "                   inspected process keeps its CPU; connections keep the\n"
            "                   daemon's priority. 0: scans keep it too (default %d)\n"
            "  --scan-threads N  walker threads per scan, 1..%d (default: 2, or 1 on a\n"
            "                   one-CPU host); they, and as many building the snapshot,\n"
            "                   run at the scans' priority. Also\n"
            "                   the threads of a referrers analysis (daemon's priority)\n"
            "  --interval SECONDS  with attach: scan every SECONDS in the background and\n"
            "                   record a per-type series (`pyheap growth`; default off)\n"
            "  --history N      with attach: series points kept (default %d)\n"
            "  --keep N         with attach: snapshots kept for `pyheap diff` (default %d)\n"
            "  -h, --help       show this help\n"
            "  -V, --version    show the version\n"
            "\n"
            "Under systemd, the socket may come from pyheapd.socket (socket\n"
            "activation) and readiness is notified. Stop it with SIGINT or SIGTERM;\n"
            "a socket it bound itself is removed on exit.\n",
            PYHEAP_PROTO_ROOT_SOCKET, PYHEAPD_MAX_CONNS, PYHEAPD_MAX_CONNS_LIMIT,
            PYHEAP_PROTO_MAX_LINE, DEFAULT_MAX_REPLY, DEFAULT_SCAN_MS, DEFAULT_FREEZE_MS,
            DEFAULT_SCAN_NICE, PYHEAP_MAX_SCAN_THREADS, PYHEAP_PROTO_DEFAULT_HISTORY,
            PYHEAP_PROTO_DEFAULT_KEEP);
}

/* Unsigned decimal (or octal with BASE 8) in [LO, HI]. */
static int parse_num(const char *s, int base, unsigned long long lo, unsigned long long hi,
                     unsigned long long *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || s[0] == '-')
        return -1;
    unsigned long long v = strtoull(s, &end, base);
    if (errno || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int parse_pid(const char *s, pid_t *pid)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v <= 0 || v > PYHEAP_PROTO_MAX_PID)
        return -1;
    *pid = (pid_t)v;
    return 0;
}

/* With autogroup (kernel.sched_autogroup_enabled, on by default in most
 * distributions) the scheduler first shares the CPU between sessions and
 * only then between the threads of one by their nice: a daemon in a session
 * of its own (a systemd service, setsid) competes with the target's session
 * at full weight whatever the nice of its scan threads. When pyheapd leads
 * its session, nothing else is in that autogroup: give it the scans' nice
 * (its connection threads still come first within it). Led by someone
 * else's session (a shell), it is left alone: that would renice the shell.
 * Returns the autogroup's nice now, or -100 when unknown / not ours. */
static int autogroup_nice(const struct pyheapd_config *cfg)
{
    if (getsid(0) != getpid())
        return -100;
    FILE *f = fopen("/proc/self/autogroup", "r");
    if (!f)
        return -100;  /* kernel without CONFIG_SCHED_AUTOGROUP */
    int cur = -100;
    if (fscanf(f, "/autogroup-%*d nice %d", &cur) != 1)
        cur = -100;
    fclose(f);
    if (cur == -100 || cfg->scan_nice <= cur)
        return cur;
    /* Without CAP_SYS_ADMIN the kernel allows one change per 100 ms
     * host-wide (EAGAIN): retry a few times. */
    for (int i = 0; i < 5; i++) {
        f = fopen("/proc/self/autogroup", "w");
        if (!f)
            break;
        int ok = fprintf(f, "%d\n", cfg->scan_nice) > 0;
        ok = (fclose(f) == 0) && ok;
        if (ok)
            return cfg->scan_nice;
        if (errno != EAGAIN)
            break;
        struct timespec ts = { 0, 120000000L };
        nanosleep(&ts, NULL);
    }
    pyheapd_logp(4, "cannot set the nice of pyheapd's session (autogroup) to %d: %s; scans "
                 "compete with other sessions at full weight", cfg->scan_nice, strerror(errno));
    return cur;
}

/* Say at start-up at which CPU priority scans will run. */
static void log_scan_priority(const struct pyheapd_config *cfg)
{
    errno = 0;
    int own = getpriority(PRIO_PROCESS, 0);
    if (own == -1 && errno != 0)
        return;
    int ag = autogroup_nice(cfg);
    char agtxt[64] = "";
    if (ag != -100)
        snprintf(agtxt, sizeof agtxt, "; its own session (autogroup) at nice %d", ag);
    char thtxt[64];
    snprintf(thtxt, sizeof thtxt, "; %u walker thread%s per scan (--scan-threads)",
             cfg->scan_threads, cfg->scan_threads == 1 ? "" : "s");
    if (cfg->scan_nice == 0)
        pyheapd_log("scans run at the daemon's priority, nice %d (--scan-nice 0)%s%s", own,
                    agtxt, thtxt);
    else if (own >= cfg->scan_nice)
        pyheapd_log("scans run at the daemon's nice %d (--scan-nice %d)%s%s", own,
                    cfg->scan_nice, agtxt, thtxt);
    else
        pyheapd_log("scans run at nice %d with SCHED_BATCH, connections at nice %d "
                    "(--scan-nice)%s%s", cfg->scan_nice, own, agtxt, thtxt);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "socket-mode", required_argument, NULL, 1 },
        { "socket-group", required_argument, NULL, 2 },
        { "max-clients", required_argument, NULL, 3 },
        { "max-request", required_argument, NULL, 4 },
        { "max-reply", required_argument, NULL, 5 },
        { "scan-timeout", required_argument, NULL, 6 },
        { "freeze-timeout", required_argument, NULL, 7 },
        { "interval", required_argument, NULL, 8 },
        { "history", required_argument, NULL, 9 },
        { "keep", required_argument, NULL, 10 },
        { "scan-nice", required_argument, NULL, 11 },
        { "scan-threads", required_argument, NULL, 12 },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    const char *sock_opt = NULL;
    struct pyheapd_config cfg = {
        .socket_mode = geteuid() == 0 ? 0666 : 0600,
        .socket_gid = -1,
        .max_conns = PYHEAPD_MAX_CONNS,
        .max_request = PYHEAP_PROTO_MAX_LINE,
        .scan_budget_ms = DEFAULT_SCAN_MS,
        .max_reply = DEFAULT_MAX_REPLY,
        .freeze_stop_ms = DEFAULT_FREEZE_MS,
        .scan_nice = DEFAULT_SCAN_NICE,
        .scan_threads = sysconf(_SC_NPROCESSORS_ONLN) > 1 ? 2 : 1,
    };
    unsigned long long v;
    double interval = 0;
    size_t history = 0, keep = 0;
    int c;
    while ((c = getopt_long(argc, argv, "s:hV", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            sock_opt = optarg;
            break;
        case 1:
            if (parse_num(optarg, 8, 0, 0777, &v) < 0) {
                fprintf(stderr, "pyheapd: --socket-mode takes an octal mode like 0660\n");
                return 2;
            }
            cfg.socket_mode = (unsigned)v;
            break;
        case 2: {
            struct group *g = getgrnam(optarg);
            if (!g) {
                fprintf(stderr, "pyheapd: --socket-group: no group named '%s'\n", optarg);
                return 2;
            }
            cfg.socket_gid = (int)g->gr_gid;
            break;
        }
        case 3:
            if (parse_num(optarg, 10, 1, PYHEAPD_MAX_CONNS_LIMIT, &v) < 0) {
                fprintf(stderr, "pyheapd: --max-clients takes 1..%d\n", PYHEAPD_MAX_CONNS_LIMIT);
                return 2;
            }
            cfg.max_conns = (size_t)v;
            break;
        case 4:
            if (parse_num(optarg, 10, 64, PYHEAP_PROTO_MAX_LINE, &v) < 0) {
                fprintf(stderr, "pyheapd: --max-request takes 64..%d\n", PYHEAP_PROTO_MAX_LINE);
                return 2;
            }
            cfg.max_request = (size_t)v;
            break;
        case 5:
            if (parse_num(optarg, 10, 1024, PYHEAP_PROTO_MAX_REPLY, &v) < 0) {
                fprintf(stderr, "pyheapd: --max-reply takes 1024..%d\n", PYHEAP_PROTO_MAX_REPLY);
                return 2;
            }
            cfg.max_reply = (size_t)v;
            break;
        case 6:
            if (parse_num(optarg, 10, 0, 86400000ull, &v) < 0) {
                fprintf(stderr, "pyheapd: --scan-timeout takes milliseconds (0: none)\n");
                return 2;
            }
            cfg.scan_budget_ms = v;
            break;
        case 7:
            if (parse_num(optarg, 10, 1, 60000, &v) < 0) {
                fprintf(stderr, "pyheapd: --freeze-timeout takes 1..60000 ms\n");
                return 2;
            }
            cfg.freeze_stop_ms = (unsigned)v;
            break;
        case 8: {
            char *end;
            errno = 0;
            interval = strtod(optarg, &end);
            if (errno || end == optarg || *end ||
                !(interval == 0 || (interval >= PYHEAP_PROTO_MIN_INTERVAL &&
                                    interval <= PYHEAP_PROTO_MAX_INTERVAL))) {
                fprintf(stderr, "pyheapd: --interval takes seconds, %g..%g (0: off)\n",
                        PYHEAP_PROTO_MIN_INTERVAL, PYHEAP_PROTO_MAX_INTERVAL);
                return 2;
            }
            break;
        }
        case 9:
            if (parse_num(optarg, 10, 2, PYHEAP_PROTO_MAX_HISTORY, &v) < 0) {
                fprintf(stderr, "pyheapd: --history takes 2..%d points\n",
                        PYHEAP_PROTO_MAX_HISTORY);
                return 2;
            }
            history = (size_t)v;
            break;
        case 10:
            if (parse_num(optarg, 10, 1, PYHEAP_PROTO_MAX_KEEP, &v) < 0) {
                fprintf(stderr, "pyheapd: --keep takes 1..%d snapshots\n", PYHEAP_PROTO_MAX_KEEP);
                return 2;
            }
            keep = (size_t)v;
            break;
        case 11:
            if (parse_num(optarg, 10, 0, 19, &v) < 0) {
                fprintf(stderr, "pyheapd: --scan-nice takes a nice value 0..19 (19, the "
                        "default: scans at the lowest priority; 0: at the daemon's own)\n");
                return 2;
            }
            cfg.scan_nice = (int)v;
            break;
        case 12:
            if (parse_num(optarg, 10, 1, PYHEAP_MAX_SCAN_THREADS, &v) < 0) {
                fprintf(stderr, "pyheapd: --scan-threads takes 1..%d walker threads\n",
                        PYHEAP_MAX_SCAN_THREADS);
                return 2;
            }
            cfg.scan_threads = (unsigned)v;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("pyheapd %s (protocol %d)\n", PYHEAP_VERSION, PYHEAP_PROTO_VERSION);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    pid_t pid = 0;
    int rest = argc - optind;
    if (rest == 2 && strcmp(argv[optind], "attach") == 0) {
        if (parse_pid(argv[optind + 1], &pid) < 0) {
            fprintf(stderr, "pyheapd: invalid PID '%s'\n", argv[optind + 1]);
            return 2;
        }
    } else if (rest != 0) {
        fprintf(stderr, "pyheapd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }

    char path[108];
    pyheap_proto_error perr;
    if (pyheap_proto_socket_path(sock_opt, path, sizeof path, &perr) < 0) {
        fprintf(stderr, "pyheapd: %s\n", perr.msg);
        return 2;
    }

    /* SIGINT/SIGTERM are taken through a signalfd in the main loop; block
     * them before any thread exists so every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    cfg.journal_prefix = stderr_is_journal();
    pyheapd_log_set_journal(cfg.journal_prefix);
    struct pyheapd *d = malloc(sizeof *d);
    if (!d || pyheapd_init(d) < 0) {
        fprintf(stderr, "pyheapd: out of memory\n");
        return 1;
    }
    d->cfg = cfg;
    pyheapd_log("version %s starting (pid %d)", PYHEAP_VERSION, (int)getpid());
    log_scan_priority(&cfg);
    int afd = pyheapd_listen_fds();
    /* Refuse early if a daemon already answers; attach before listening so
     * that a client that can connect always sees the initial target. */
    if (afd < 0 && pyheapd_probe(path) < 0) {
        pyheapd_fini(d);
        free(d);
        return 1;
    }
    if (pid && pyheapd_attach_initial(d, pid, interval, history, keep, &perr) < 0) {
        pyheapd_log("cannot attach to pid %d: %s", (int)pid, perr.msg);
        pyheapd_fini(d);
        free(d);
        return 1;
    }
    if (afd >= 0 ? pyheapd_adopt(d, afd) < 0 : pyheapd_listen(d, path) < 0) {
        pyheapd_fini(d);
        free(d);
        return 1;
    }
    int status = pyheapd_serve(d, &sigs);
    free(d);
    pyheapd_log("exited");
    return status;
}
