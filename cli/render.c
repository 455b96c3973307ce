/* Tables for humans. The daemon's JSON is the contract; this only draws it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

/* issue 7: a reply answered from a kept snapshot says so, with its age,
 * so nobody takes it for the heap as it is now. PREFIX starts the line. */
static void snapshot_note(const json_t *rep, const char *prefix)
{
    if (!json_is_true(json_object_get(rep, "snapshot_reused")))
        return;
    printf("%sfrom a snapshot taken %.1f s ago (snapshot %llu; not rescanned: "
           "--max-age)\n", prefix,
           json_number_value(json_object_get(rep, "snapshot_age_ms")) / 1e3,
           uget(rep, "snapshot_id"));
}

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
    snapshot_note(rep, "");
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

/* ---- referrers ---- */

/* Print S for a terminal: text from the target (type names, dict keys) may
 * hold control characters; show them escaped instead of sending them. */
static void put_clean(FILE *f, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c < 0x20 || c == 0x7f)
            fprintf(f, "\\x%02x", c);
        else
            fputc(c, f);
    }
}

/* Display width of put_clean's output (bytes; multi-byte UTF-8 counts once
 * per code point). */
static size_t clean_width(const char *s)
{
    size_t w = 0;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n' || c == '\t')
            w += 2;
        else if (c < 0x20 || c == 0x7f)
            w += 4;
        else if ((c & 0xc0) != 0x80)
            w++;
    }
    return w;
}

/* The referrer groups of a reply as a tree: children of each group (and
 * of the asked-for type, index n) sorted largest first. */
struct rtree {
    const json_t *groups;
    size_t n;
    size_t *kids;     /* n + 1 lists, concatenated */
    size_t *start;    /* n + 2 offsets into kids */
};

static size_t parent_of(const json_t *groups, size_t i)
{
    const json_t *p = json_object_get(json_array_get(groups, i), "parent");
    json_int_t v = json_is_integer(p) ? json_integer_value(p) : -1;
    /* Parents precede children; anything else hangs off the root. */
    return v >= 0 && (size_t)v < i ? (size_t)v : SIZE_MAX;
}

static int cmp_group(const void *pa, const void *pb, void *groups)
{
    const json_t *a = json_array_get(groups, *(const size_t *)pa);
    const json_t *b = json_array_get(groups, *(const size_t *)pb);
    unsigned long long ba = uget(a, "bytes"), bb = uget(b, "bytes");
    if (ba != bb)
        return ba > bb ? -1 : 1;
    unsigned long long ca = uget(a, "count"), cb = uget(b, "count");
    if (ca != cb)
        return ca > cb ? -1 : 1;
    return *(const size_t *)pa < *(const size_t *)pb ? -1 : 1;
}

static int rtree_build(struct rtree *t, const json_t *groups)
{
    t->groups = groups;
    t->n = json_array_size(groups);
    t->kids = malloc((t->n + 1) * sizeof *t->kids);
    t->start = calloc(t->n + 2, sizeof *t->start);
    if (!t->kids || !t->start) {
        free(t->kids);
        free(t->start);
        return -1;
    }
    /* Counting sort by parent (root = n), then each list by size. */
    for (size_t i = 0; i < t->n; i++) {
        size_t p = parent_of(groups, i);
        t->start[(p == SIZE_MAX ? t->n : p) + 1]++;
    }
    for (size_t i = 1; i <= t->n + 1; i++)
        t->start[i] += t->start[i - 1];
    size_t *fill = calloc(t->n + 1, sizeof *fill);
    if (!fill) {
        free(t->kids);
        free(t->start);
        return -1;
    }
    for (size_t i = 0; i < t->n; i++) {
        size_t p = parent_of(groups, i);
        p = p == SIZE_MAX ? t->n : p;
        t->kids[t->start[p] + fill[p]++] = i;
    }
    free(fill);
    for (size_t p = 0; p <= t->n; p++)
        qsort_r(t->kids + t->start[p], t->start[p + 1] - t->start[p], sizeof *t->kids,
                cmp_group, (void *)groups);
    return 0;
}

static void rtree_free(struct rtree *t)
{
    free(t->kids);
    free(t->start);
}

/* " (weak)", " (inferred)", " (cut)" for a group's flags into BUF. */
static void flag_suffix(const json_t *g, char *buf, size_t sz)
{
    buf[0] = '\0';
    const json_t *flags = json_object_get(g, "flags");
    size_t len = 0;
    for (size_t i = 0; i < json_array_size(flags); i++) {
        const char *f = json_string_value(json_array_get(flags, i));
        if (!f)
            continue;
        int w = snprintf(buf + len, sz - len, " (%s)", f);
        if (w < 0 || (size_t)w >= sz - len)
            break;
        len += (size_t)w;
    }
}

static size_t label_width(const json_t *g, unsigned depth)
{
    char fl[64];
    flag_suffix(g, fl, sizeof fl);
    return 2 * depth + clean_width(sget(g, "type")) + 1 + clean_width(sget(g, "via")) +
           strlen(fl);
}

#define LABEL_MAX_WIDTH 72

/* The library's marker for "the object above is itself a root": type
 * "<root>", via the root's name, no bytes of its own. */
static int is_root_group(const json_t *g)
{
    return strcmp(sget(g, "type"), "<root>") == 0;
}

static void print_group(const struct rtree *t, size_t i, unsigned depth, size_t lw)
{
    const json_t *g = json_array_get(t->groups, i);
    char cnt[32], human[32], fl[64];
    flag_suffix(g, fl, sizeof fl);
    pyheap_human_bytes(uget(g, "bytes"), human, sizeof human);
    printf("%11s  %*s", group(uget(g, "count"), cnt, sizeof cnt), (int)(2 * (depth - 1)), "");
    put_clean(stdout, sget(g, "type"));
    putchar(' ');
    put_clean(stdout, sget(g, "via"));
    fputs(fl, stdout);
    if (is_root_group(g)) {
        /* the referent is itself a root: the chain ends here */
        putchar('\n');
        return;
    }
    size_t w = label_width(g, depth - 1);
    printf("%*s  %10s\n", (int)(w < lw ? lw - w : 0), "", human);
    if (depth > 64)
        return;
    for (size_t k = t->start[i]; k < t->start[i + 1]; k++)
        print_group(t, t->kids[k], depth + 1, lw);
}

static unsigned depth_of(const json_t *groups, size_t i)
{
    unsigned d = 0;
    while (i != SIZE_MAX && d < 64) {
        i = parent_of(groups, i);
        d++;
    }
    return d - 1;
}

void pyheap_render_referrers(const json_t *rep)
{
    char g1[32], human[32];
    pyheap_human_bytes(uget(rep, "bytes"), human, sizeof human);
    unsigned long long nobj = uget(rep, "objects");
    printf("%s object%s of type ", group(nobj, g1, sizeof g1), nobj == 1 ? "" : "s");
    put_clean(stdout, sget(rep, "type"));
    printf(", %s in pid %lld\n", human,
           (long long)json_integer_value(json_object_get(rep, "pid")));
    snapshot_note(rep, "");
    if (json_is_true(json_object_get(rep, "scan_truncated")))
        printf("warning: the scan hit its object limit; figures are incomplete\n");

    const json_t *groups = json_object_get(rep, "referrers");
    struct rtree t;
    printf("\nreferred to by (count, referrer type and edge, bytes; "
           "each level refers to the one above):\n");
    if (json_array_size(groups) == 0) {
        printf("%11s  (no referrers found)\n", "");
    } else if (rtree_build(&t, groups) < 0) {
        printf("%11s  (out of memory)\n", "");
    } else {
        size_t lw = 0;
        for (size_t i = 0; i < t.n; i++) {
            if (is_root_group(json_array_get(groups, i)))
                continue;   /* printed without a bytes column */
            size_t w = label_width(json_array_get(groups, i), depth_of(groups, i));
            if (w > lw)
                lw = w;
        }
        if (lw > LABEL_MAX_WIDTH)
            lw = LABEL_MAX_WIDTH;
        for (size_t k = t.start[t.n]; k < t.start[t.n + 1]; k++)
            print_group(&t, t.kids[k], 1, lw);
        rtree_free(&t);
    }

    const json_t *paths = json_object_get(rep, "paths");
    printf("\nshortest paths from roots (count, path):\n");
    if (json_array_size(paths) == 0)
        printf("%11s  (none: no object of this type is reachable from a root)\n", "");
    for (size_t i = 0; i < json_array_size(paths); i++) {
        const json_t *p = json_array_get(paths, i);
        printf("%11s  ", group(uget(p, "count"), g1, sizeof g1));
        put_clean(stdout, sget(p, "path"));
        putchar('\n');
    }
    unsigned long long unr = uget(rep, "unreachable");
    printf("\nunreachable from roots: %s object%s", group(unr, g1, sizeof g1), unr == 1 ? "" : "s");
    printf(" (held only by C code, or garbage in a reference cycle)\n");
}

/* A Graphviz double-quoted string: quotes and backslashes escaped, control
 * characters from the target shown as visible escapes (\n, \xNN) rather
 * than interpreted. */
static void dot_escaped(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            fputs("\\\\n", stdout);
        else if (c < 0x20 || c == 0x7f)
            printf("\\\\x%02x", c);
        else
            putchar(c);
    }
}

static void dot_string(const char *s)
{
    putchar('"');
    dot_escaped(s);
    putchar('"');
}

/* A node label "TYPE<newline>COUNT objects, BYTES": the parts are escaped
 * one by one and joined with Graphviz's own line break. */
static void dot_node(const char *id, const char *type, unsigned long long count,
                     unsigned long long bytes, const char *extra)
{
    char g1[32], human[32];
    pyheap_human_bytes(bytes, human, sizeof human);
    char line2[96];
    snprintf(line2, sizeof line2, "%s object%s, %s", group(count, g1, sizeof g1),
             count == 1 ? "" : "s", human);
    printf("  %s [label=", id);
    /* Escape the type alone, then append the fixed second line. */
    putchar('"');
    dot_escaped(type);
    printf("\\n%s\"%s];\n", line2, extra);
}

void pyheap_render_referrers_dot(const json_t *rep)
{
    const json_t *groups = json_object_get(rep, "referrers");
    size_t n = json_array_size(groups);
    snapshot_note(rep, "// ");
    printf("digraph referrers {\n");
    printf("  rankdir=BT;\n");
    printf("  node [shape=box, fontname=\"monospace\"];\n");
    printf("  edge [fontname=\"monospace\"];\n");
    dot_node("target", sget(rep, "type"), uget(rep, "objects"), uget(rep, "bytes"),
             ", style=filled, fillcolor=\"#ffe0e0\"");
    for (size_t i = 0; i < n; i++) {
        const json_t *g = json_array_get(groups, i);
        char id[32];
        snprintf(id, sizeof id, "g%zu", i);
        if (is_root_group(g)) {
            printf("  %s [label=\"root: ", id);
            dot_escaped(sget(g, "via"));
            printf("\", shape=ellipse];\n");
        } else {
            dot_node(id, sget(g, "type"), uget(g, "count"), uget(g, "bytes"), "");
        }
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *g = json_array_get(groups, i);
        size_t p = parent_of(groups, i);
        char to[32];
        if (p == SIZE_MAX)
            snprintf(to, sizeof to, "target");
        else
            snprintf(to, sizeof to, "g%zu", p);
        printf("  g%zu -> %s [label=", i, to);
        dot_string(is_root_group(g) ? "" : sget(g, "via"));
        const json_t *flags = json_object_get(g, "flags");
        for (size_t k = 0; k < json_array_size(flags); k++) {
            const char *f = json_string_value(json_array_get(flags, k));
            if (f && strcmp(f, "weak") == 0)
                printf(", style=dashed");
            else if (f && strcmp(f, "inferred") == 0)
                printf(", style=dotted");
            else if (f && strcmp(f, "cut") == 0)
                printf(", color=gray50");
        }
        printf("];\n");
    }
    printf("}\n");
}
