/* The reply-size cap: a reply longer than --max-reply is shortened by
 * dropping entries from the end of its long list ("types" of "top",
 * "targets" of "ps", "groups"/"paths" of "referrers") and says so with
 * "reply_truncated": true and "reply_dropped": N; never cut silently. */
#include <stdlib.h>
#include <string.h>

#include "pyheapd.h"

static const char *const shrinkable[] = { "types", "targets", "groups", "paths", "referrers" };

/* The longest array among the shrinkable fields of REPLY (borrowed). */
static json_t *longest_array(json_t *reply, const char **name)
{
    json_t *best = NULL;
    for (size_t i = 0; i < sizeof shrinkable / sizeof shrinkable[0]; i++) {
        json_t *a = json_object_get(reply, shrinkable[i]);
        if (json_is_array(a) && json_array_size(a) > 0 &&
            (!best || json_array_size(a) > json_array_size(best))) {
            best = a;
            *name = shrinkable[i];
        }
    }
    return best;
}

char *pyheapd_encode_capped(const struct pyheapd_config *cfg, json_t *reply, size_t *len)
{
    if (!reply)
        return NULL;
    char *line = pyheap_proto_encode(reply, len);
    size_t dropped = 0;
    const char *name = NULL;
    /* Halve the list until it fits: at most ~40 rounds for any size. */
    while (line && *len > cfg->max_reply) {
        json_t *arr = longest_array(reply, &name);
        if (!arr)
            break;
        size_t n = json_array_size(arr);
        size_t keep = n / 2;
        for (size_t i = n; i > keep; i--)
            json_array_remove(arr, i - 1);
        dropped += n - keep;
        if (json_object_set_new(reply, "reply_truncated", json_true()) < 0 ||
            json_object_set_new(reply, "reply_dropped", json_integer((json_int_t)dropped)) < 0 ||
            json_object_set_new(reply, "reply_max_bytes",
                                json_integer((json_int_t)cfg->max_reply)) < 0) {
            free(line);
            line = NULL;
            break;
        }
        free(line);
        line = pyheap_proto_encode(reply, len);
    }
    json_decref(reply);
    if (line && *len > cfg->max_reply) {
        free(line);
        pyheap_proto_error perr;
        pyheap_proto_err_set(&perr, "reply_too_large",
                             "the reply is longer than the daemon's --max-reply of %zu bytes "
                             "even with its lists cut; ask for less (e.g. top -n 10)",
                             cfg->max_reply);
        json_t *e = pyheap_proto_error_reply(&perr);
        line = e ? pyheap_proto_encode(e, len) : NULL;
        json_decref(e);
    }
    return line;
}
