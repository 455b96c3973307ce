/* Tables for growth, diff, stats and snapshots (docs/cli.md). Strings from
 * the target are printed with control characters escaped. */
#include <stdio.h>
#include <string.h>

#include "render.h"
#include "render_time.h"

static long long iget(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : 0;
}

static double dget(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : 0;
}

static const char *sget(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static void put_clean(const char *s, int width)
{
    int n = 0;
    for (; *s && (width <= 0 || n < width); s++, n++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 || c == 0x7f)
            n += printf("\\x%02x", c) - 1;
        else
            putchar(c);
    }
    for (; n < width; n++)
        putchar(' ');
}

static const char *hb(long long v, char *buf, size_t sz)
{
    if (v < 0) {
        if (sz < 2)
            return "";
        buf[0] = '-';
        pyheap_human_bytes((unsigned long long)-v, buf + 1, sz - 1);
    } else {
        pyheap_human_bytes((unsigned long long)v, buf, sz);
    }
    return buf;
}

static const char *hbn(const json_t *o, const char *key, char *buf, size_t sz)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v)) {
        snprintf(buf, sz, "unknown");
        return buf;
    }
    return hb((long long)json_integer_value(v), buf, sz);
}

void pyheap_render_growth(const json_t *rep)
{
    const json_t *types = json_object_get(rep, "types");
    printf("pid %lld: %lld snapshots over %.1f s (interval %.1f s, series %s)\n",
           iget(rep, "pid"), iget(rep, "snapshots"), dget(rep, "window_s"),
           dget(rep, "interval_s"), sget(rep, "series_state"));
    if (json_array_size(types) == 0) {
        printf("no type grows steadily over the recorded snapshots\n");
        return;
    }
    printf("%-40s %10s %11s %10s %11s %11s %8s\n", "TYPE", "COUNT", "BYTES", "+COUNT",
           "+BYTES", "BYTES/MIN", "GREW_IN");
    for (size_t i = 0; i < json_array_size(types); i++) {
        const json_t *e = json_array_get(types, i);
        char b1[32], b2[32], b3[32], gi[32];
        put_clean(sget(e, "type"), 40);
        snprintf(gi, sizeof gi, "%lld/%lld", iget(e, "grew_in"), iget(e, "intervals"));
        printf(" %10lld %11s %+10lld %11s %11s %8s\n", iget(e, "count"),
               hb(iget(e, "bytes"), b1, sizeof b1), iget(e, "delta_count"),
               hb(iget(e, "delta_bytes"), b2, sizeof b2),
               hb((long long)dget(e, "per_min_bytes"), b3, sizeof b3), gi);
    }
}

void pyheap_render_diff(const json_t *rep)
{
    char b1[32], b2[32];
    if (json_object_get(rep, "since"))
        printf("pid %lld: snapshot %lld -> %lld (%lld s): ", iget(rep, "pid"),
               iget(rep, "since"), iget(rep, "snapshot_id"), iget(rep, "window_s"));
    else
        printf("%s -> %s: ", sget(rep, "older"), sget(rep, "newer"));
    printf("%lld new objects (%s) still alive, %lld gone (%s)\n", iget(rep, "new_objects"),
           hb(iget(rep, "new_bytes"), b1, sizeof b1), iget(rep, "gone_objects"),
           hb(iget(rep, "gone_bytes"), b2, sizeof b2));
    const json_t *types = json_object_get(rep, "types");
    if (json_array_size(types)) {
        printf("\nNEW BY TYPE\n%-40s %10s %11s\n", "TYPE", "COUNT", "BYTES");
        for (size_t i = 0; i < json_array_size(types); i++) {
            const json_t *e = json_array_get(types, i);
            put_clean(sget(e, "type"), 40);
            printf(" %10lld %11s\n", iget(e, "count"), hb(iget(e, "bytes"), b1, sizeof b1));
        }
    }
    const json_t *via = json_object_get(rep, "via");
    if (json_array_size(via)) {
        printf("\nNEW BY REFERRER\n%-32s %10s %11s  %s\n", "TYPE", "COUNT", "BYTES",
               "HELD BY (type via)");
        for (size_t i = 0; i < json_array_size(via); i++) {
            const json_t *e = json_array_get(via, i);
            put_clean(sget(e, "type"), 32);
            printf(" %10lld %11s  ", iget(e, "count"), hb(iget(e, "bytes"), b1, sizeof b1));
            put_clean(sget(e, "via_type"), 0);
            if (*sget(e, "via")) {
                putchar(' ');
                put_clean(sget(e, "via"), 0);
            }
            putchar('\n');
        }
    }
}

void pyheap_render_stats(const json_t *rep)
{
    char b[8][32];
    printf("pid %lld\n", iget(rep, "pid"));
    printf("  RSS %s  PSS %s (anon %s, file %s)  swap %s\n", hbn(rep, "rss", b[0], 32),
           hbn(rep, "pss", b[1], 32), hbn(rep, "pss_anon", b[2], 32),
           hbn(rep, "pss_file", b[3], 32), hbn(rep, "swap", b[4], 32));
    printf("  anonymous %s, file-backed %s\n", hbn(rep, "anon", b[0], 32),
           hbn(rep, "file", b[1], 32));
    printf("  Python objects: %lld objects, %s\n", iget(rep, "python_objects"),
           hbn(rep, "python_objects_bytes", b[0], 32));
    printf("  not accounted to Python objects (anonymous - objects): %s\n",
           hbn(rep, "not_python_bytes", b[0], 32));
    const json_t *pm = json_object_get(rep, "pymalloc");
    if (json_is_object(pm))
        printf("  pymalloc: %s in arenas, %s used, %s free\n", hbn(pm, "arena_bytes", b[0], 32),
               hbn(pm, "used_bytes", b[1], 32), hbn(pm, "free_bytes", b[2], 32));
    else
        printf("  pymalloc: unknown (%s)\n", sget(rep, "pymalloc_note"));
    const json_t *tr = json_object_get(rep, "trend");
    if (json_is_object(tr)) {
        printf("trend over %lld snapshots, %.1f s: RSS %s, Python objects %s, not Python %s"
               " -> growing: %s\n",
               iget(tr, "points"), dget(tr, "window_s"), hbn(tr, "delta_rss", b[0], 32),
               hbn(tr, "delta_python_objects_bytes", b[1], 32),
               hbn(tr, "delta_not_python_bytes", b[2], 32), sget(tr, "growing"));
    } else {
        printf("trend: needs 2 recorded snapshots (attach with --interval)\n");
    }
}

void pyheap_render_snapshots(const json_t *rep)
{
    printf("pid %lld: series of %lld points (%s, interval %.1f s)\n", iget(rep, "pid"),
           iget(rep, "series_points"), sget(rep, "series_state"), dget(rep, "interval_s"));
    const json_t *arr = json_object_get(rep, "snapshots");
    printf("%6s %10s %12s %12s\n", "ID", "AGE_S", "OBJECTS", "BYTES");
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *e = json_array_get(arr, i);
        char b1[32];
        printf("%6lld %10.1f %12lld %12s\n", iget(e, "id"), dget(e, "age_s"),
               iget(e, "objects"), hb(iget(e, "bytes"), b1, sizeof b1));
    }
}
