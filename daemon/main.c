/* pyheapd: serve heap reports of running CPython processes over a Unix
 * socket (docs/protocol.md). Foreground; logs one line per event to stderr. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pyheapd.h"

void pyheapd_log(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    /* Messages may quote client input or target paths: keep each event on
     * one clean line (no control characters to forge log lines). */
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    /* One write per line so lines from threads never interleave. */
    fprintf(stderr, "pyheapd: %s\n", line);
}

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: pyheapd [--socket PATH] [attach PID]\n"
            "\n"
            "Serve heap reports of running CPython processes to the `pyheap` client\n"
            "over a Unix socket. Runs in the foreground and logs to stderr.\n"
            "\n"
            "  attach PID       attach to process PID at start-up (exit 1 if that fails)\n"
            "  -s, --socket PATH  socket to listen on (default: $PYHEAP_SOCKET, else\n"
            "                   %s for root, else $XDG_RUNTIME_DIR/pyheapd.sock)\n"
            "  -h, --help       show this help\n"
            "  -V, --version    show the version\n"
            "\n"
            "Stop it with SIGINT or SIGTERM; the socket is removed on exit.\n",
            PYHEAP_PROTO_ROOT_SOCKET);
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

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "socket", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    const char *sock_opt = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "s:hV", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            sock_opt = optarg;
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

    struct pyheapd *d = malloc(sizeof *d);
    if (!d || pyheapd_init(d) < 0) {
        fprintf(stderr, "pyheapd: out of memory\n");
        return 1;
    }
    pyheapd_log("version %s starting (pid %d)", PYHEAP_VERSION, (int)getpid());
    /* Refuse early if a daemon already answers; attach before listening so
     * that a client that can connect always sees the initial target. */
    if (pyheapd_probe(path) < 0) {
        pyheapd_fini(d);
        free(d);
        return 1;
    }
    if (pid && pyheapd_attach_initial(d, pid, &perr) < 0) {
        pyheapd_log("cannot attach to pid %d: %s", (int)pid, perr.msg);
        pyheapd_fini(d);
        free(d);
        return 1;
    }
    if (pyheapd_listen(d, path) < 0) {
        pyheapd_fini(d);
        free(d);
        return 1;
    }
    int status = pyheapd_serve(d, &sigs);
    free(d);
    pyheapd_log("exited");
    return status;
}
