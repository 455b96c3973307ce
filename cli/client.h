/* pyheap's connection to pyheapd: one request, one reply. */
#ifndef PYHEAP_CLI_CLIENT_H
#define PYHEAP_CLI_CLIENT_H

#include <jansson.h>

/* Exit codes of pyheap (docs/cli.md). */
#define PYHEAP_EXIT_OK 0
#define PYHEAP_EXIT_FAILED 1   /* the daemon answered with an error */
#define PYHEAP_EXIT_USAGE 2    /* bad usage, or the daemon cannot be reached */

/* How long a call waits for pyheapd (connecting, sending, the reply), in
 * seconds; 0: no limit. */
#define PYHEAP_CLIENT_DEFAULT_TIMEOUT 300.0
void pyheap_client_set_timeout(double seconds);

/* Send REQUEST (borrowed) to the daemon at PATH and read one reply line.
 * Returns the reply (new reference) or NULL after printing
 * "pyheap: ..." to stderr (connection / protocol trouble). */
json_t *pyheap_client_call(const char *path, const json_t *request);
/* The same, passing file descriptor PASSFD (>= 0) along with the request
 * (SCM_RIGHTS): "snapshot" writes the file into it (issue 5). */
json_t *pyheap_client_call_fd(const char *path, const json_t *request, int passfd);

#endif
