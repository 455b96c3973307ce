/* Tables for humans. The daemon's JSON is the contract; this only draws it. */
#include <stdio.h>
#include <string.h>

#include "render.h"

static unsigned long long uget(const json_t *o, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(o, key));
    return v > 0 ? (unsigned long long)v : 0;
}

static const char *sget(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "?";
}

void pyheap_human_bytes(unsigned long long b, char *buf, size_t sz)
{
    static const char *const units[] = { "KiB", "MiB", "GiB", "TiB" };
    if (b < 1024) {
        snprintf(buf, sz, "%llu B", b);
        return;
    }
    double v = (double)b;
    size_t u = 0;
    v /= 1024.0;
    while (v >= 1024.0 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, sz, "%.1f %s", v, units[u]);
}

/* 1234567 -> "1,234,567" */
static const char *group(unsigned long long v, char *buf, size_t sz)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%llu", v);
    size_t o = 0;
    for (int i = 0; i < n && o + 1 < sz; i++) {
        if (i > 0 && (n - i) % 3 == 0 && o + 2 < sz)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

/* Longest type name shown in full; longer ones are cut with "...". */
#define NAME_MAX_WIDTH 48

void pyheap_render_top(const json_t *rep)
{
    const json_t *types = json_object_get(rep, "types");
    size_t nt = json_array_size(types);
    unsigned long long total_bytes = uget(rep, "bytes");
    unsigned long long total_objects = uget(rep, "objects");

    int w = 18;  /* room for "(N more types)" */
    for (size_t i = 0; i < nt; i++) {
        size_t l = strlen(sget(json_array_get(types, i), "type"));
        if (l > NAME_MAX_WIDTH)
            l = NAME_MAX_WIDTH;
        if ((int)l > w)
            w = (int)l;
    }
    char g1[32], g2[32];
    printf("%-*s %13s %15s %6s\n", w, "TYPE", "COUNT", "BYTES", "%");
    unsigned long long shown_count = 0, shown_bytes = 0;
    for (size_t i = 0; i < nt; i++) {
        const json_t *e = json_array_get(types, i);
        const char *name = sget(e, "type");
        unsigned long long cnt = uget(e, "count"), by = uget(e, "bytes");
        shown_count += cnt;
        shown_bytes += by;
        char cut[NAME_MAX_WIDTH + 1];
        if (strlen(name) > NAME_MAX_WIDTH) {
            memcpy(cut, name, NAME_MAX_WIDTH - 3);
            memcpy(cut + NAME_MAX_WIDTH - 3, "...", 4);
            name = cut;
        }
        double pct = total_bytes ? 100.0 * (double)by / (double)total_bytes : 0.0;
        printf("%-*s %13s %15s %6.1f\n", w, name, group(cnt, g1, sizeof g1),
               group(by, g2, sizeof g2), pct);
    }
    unsigned long long more = uget(rep, "truncated_types");
    if (more > 0) {
        unsigned long long oc = total_objects > shown_count ? total_objects - shown_count : 0;
        unsigned long long ob = total_bytes > shown_bytes ? total_bytes - shown_bytes : 0;
        char label[64];
        snprintf(label, sizeof label, "(%llu more types)", more);
        double pct = total_bytes ? 100.0 * (double)ob / (double)total_bytes : 0.0;
        printf("%-*s %13s %15s %6.1f\n", w, label, group(oc, g1, sizeof g1),
               group(ob, g2, sizeof g2), pct);
    }
    char human[32];
    pyheap_human_bytes(total_bytes, human, sizeof human);
    double ms = json_number_value(json_object_get(rep, "scan_ms"));
    char g3[32];
    printf("total: %s objects, %s bytes (%s), %s skipped; scan %.1f ms; "
           "pid %lld, python %s, offsets %s\n",
           group(total_objects, g1, sizeof g1), group(total_bytes, g2, sizeof g2), human,
           group(uget(rep, "skipped"), g3, sizeof g3), ms,
           (long long)json_integer_value(json_object_get(rep, "pid")),
           sget(rep, "python"), sget(rep, "offsets_source"));
    if (json_is_true(json_object_get(rep, "freeze")))
        printf("frozen: %lld threads stopped for %.1f ms\n",
               (long long)json_integer_value(json_object_get(rep, "frozen_threads")),
               json_number_value(json_object_get(rep, "pause_ms")));
    if (json_is_true(json_object_get(rep, "scan_truncated")))
        printf("warning: the scan hit its object limit; figures are incomplete\n");
    if (json_is_true(json_object_get(rep, "reply_truncated")))
        printf("warning: the reply was cut to the daemon's --max-reply; %lld types not shown\n",
               (long long)json_integer_value(json_object_get(rep, "reply_dropped")));
}

void pyheap_render_ps(const json_t *rep)
{
    const json_t *t = json_object_get(rep, "targets");
    size_t n = json_array_size(t);
    if (n == 0) {
        printf("no process attached (attach one with `pyheap attach PID`)\n");
        return;
    }
    printf("%-8s %-8s %-13s %-8s %-20s %6s  %s\n", "pid", "python", "offsets",
           "state", "attached_at", "scans", "module");
    for (size_t i = 0; i < n; i++) {
        const json_t *e = json_array_get(t, i);
        printf("%-8lld %-8s %-13s %-8s %-20s %6llu  %s\n",
               (long long)json_integer_value(json_object_get(e, "pid")),
               sget(e, "python"), sget(e, "offsets_source"), sget(e, "state"),
               sget(e, "attached_at"), uget(e, "scans"), sget(e, "module"));
    }
}

void pyheap_render_attach(const json_t *rep)
{
    printf("%s pid %lld: python %s, offsets %s (%s), module %s\n",
           json_is_true(json_object_get(rep, "already_attached")) ? "already attached to"
                                                                   : "attached to",
           (long long)json_integer_value(json_object_get(rep, "pid")),
           sget(rep, "python"), sget(rep, "offsets_source"), sget(rep, "offsets_detail"),
           sget(rep, "module"));
}

void pyheap_render_detach(const json_t *rep)
{
    printf("detached from pid %lld\n",
           (long long)json_integer_value(json_object_get(rep, "pid")));
}

void pyheap_render_ping(const json_t *rep)
{
    printf("pyheapd %s (protocol %lld, pid %lld): %lld targets attached\n",
           sget(rep, "version"),
           (long long)json_integer_value(json_object_get(rep, "protocol")),
           (long long)json_integer_value(json_object_get(rep, "daemon_pid")),
           (long long)json_integer_value(json_object_get(rep, "targets")));
}
