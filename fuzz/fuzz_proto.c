/* libFuzzer harness: the request parser (lib/proto.c) on arbitrary bytes,
 * then the error/ok reply builders and the encoder on what it produced.
 * Build and run: `make fuzz` (docs/operations.md). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pyheap_request req;
    pyheap_proto_error perr;
    memset(&perr, 0, sizeof perr);
    json_t *reply;
    if (pyheap_proto_parse((const char *)data, size, &req, &perr) < 0) {
        /* An error always has a code and a terminated message. */
        if (!perr.code || memchr(perr.msg, '\0', sizeof perr.msg) == NULL)
            abort();
        reply = pyheap_proto_error_reply(&perr);
    } else {
        if (pyheap_proto_cmd_name(req.cmd)[0] == '?')
            abort();
        if (req.pid < 0 || req.pid > PYHEAP_PROTO_MAX_PID)
            abort();
        reply = pyheap_proto_ok_reply();
        if (reply)
            json_object_set_new(reply, "cmd", json_string(pyheap_proto_cmd_name(req.cmd)));
    }
    if (reply) {
        size_t len;
        char *line = pyheap_proto_encode(reply, &len);
        /* One line: exactly one newline, at the end. */
        if (line && (len == 0 || line[len - 1] != '\n' || memchr(line, '\n', len - 1)))
            abort();
        free(line);
        json_decref(reply);
    }
    return 0;
}
