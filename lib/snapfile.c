/* Snapshot files: the versioned binary format of docs/snapshot-format.md.
 * Little-endian, fixed widths, one header, a section table, sections with
 * CRC-32 each. The reader trusts nothing: every count, length and offset is
 * checked against the file size before use. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "snapfile.h"
#include "snapshot.h"
#include "walk.h"

#define MAGIC "PYHEAPSN"
#define FORMAT_VERSION 1u
#define HEADER_SIZE SNAPFILE_HEADER_SIZE
#define SECT_ENTRY SNAPFILE_SECT_ENTRY
#define NSECT SNAPFILE_NSECT
/* Bounds the reader applies on top of the file size. */
#define MAX_STRING (1u << 20)

enum sect_id { SECT_TYPES = 1, SECT_OBJECTS, SECT_EDGES, SECT_LABELS, SECT_ROOTS };

static const char *sect_name(uint32_t id)
{
    switch (id) {
    case SECT_TYPES: return "types";
    case SECT_OBJECTS: return "objects";
    case SECT_EDGES: return "edges";
    case SECT_LABELS: return "labels";
    case SECT_ROOTS: return "roots";
    default: return "unknown";
    }
}

/* ---- CRC-32 (IEEE, reflected 0xEDB88320) ---- */

static void crc_table(uint32_t tab[256])
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        tab[i] = c;
    }
}

static uint32_t crc_update(const uint32_t tab[256], uint32_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    crc = ~crc;
    for (size_t i = 0; i < len; i++)
        crc = tab[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* ---- little-endian helpers ---- */

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

/* ---- writer: a growable buffer per section ---- */

struct buf {
    unsigned char *p;
    size_t len, cap;
    int oom;
};

static unsigned char *buf_grow(struct buf *b, size_t more)
{
    if (b->oom)
        return NULL;
    if (b->len + more > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + more)
            cap *= 2;
        unsigned char *np = realloc(b->p, cap);
        if (!np) {
            b->oom = 1;
            return NULL;
        }
        b->p = np;
        b->cap = cap;
    }
    unsigned char *q = b->p + b->len;
    b->len += more;
    return q;
}

static void buf_u32(struct buf *b, uint32_t v)
{
    unsigned char *q = buf_grow(b, 4);
    if (q)
        put32(q, v);
}

static void buf_u64(struct buf *b, uint64_t v)
{
    unsigned char *q = buf_grow(b, 8);
    if (q)
        put64(q, v);
}

static void buf_str(struct buf *b, const char *s)
{
    size_t n = s ? strnlen(s, MAX_STRING - 1) : 0;
    buf_u32(b, (uint32_t)n);
    unsigned char *q = buf_grow(b, n);
    if (q && n)
        memcpy(q, s, n);
}

static int write_all(int fd, const void *p, size_t len, pyheap_error *err)
{
    const unsigned char *c = p;
    while (len > 0) {
        ssize_t w = write(fd, c, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return pyheap_err_set(err, PYHEAP_E_IO, w < 0 ? errno : EIO, 0,
                                  "cannot write the snapshot file: %s",
                                  strerror(w < 0 ? errno : EIO));
        c += w;
        len -= (size_t)w;
    }
    return 0;
}

int pyheap_snapfile_write(const pyheap_snapshot *s, const pyheap_snapfile_info *info,
                          int fd, pyheap_error *err)
{
    if (!s || !info || fd < 0)
        return pyheap_err_set(err, PYHEAP_E_INVAL, 0, 0,
                              "pyheap_snapfile_write needs a snapshot, its info and an fd");
    struct buf sec[NSECT];
    uint64_t counts[NSECT];
    memset(sec, 0, sizeof sec);
    size_t n = s->n;

    counts[0] = s->ntypes;
    for (size_t i = 0; i < s->ntypes; i++)
        buf_str(&sec[0], s->names[i]);

    counts[1] = n;
    for (size_t i = 0; i < n; i++)
        buf_u64(&sec[1], s->addr[i]);
    for (size_t i = 0; i < n; i++)
        buf_u64(&sec[1], s->size[i]);
    for (size_t i = 0; i < n; i++)
        buf_u32(&sec[1], s->type[i]);

    size_t ne = s->eoff ? s->nedges : 0;
    counts[2] = ne;
    for (size_t i = 0; i <= n; i++)
        buf_u32(&sec[2], s->eoff ? s->eoff[i] : 0);
    for (size_t e = 0; e < ne; e++)
        buf_u32(&sec[2], s->etarget[e]);
    for (size_t e = 0; e < ne; e++)
        buf_u32(&sec[2], s->elabel[e]);

    counts[3] = s->nlabels;
    for (size_t i = 0; i < s->nlabels; i++)
        buf_str(&sec[3], s->labels[i]);

    counts[4] = s->nroots;
    for (size_t r = 0; r < s->nroots; r++) {
        buf_u32(&sec[4], s->root_obj[r]);
        buf_u32(&sec[4], s->root_prio ? s->root_prio[r] : 1);
        buf_str(&sec[4], s->root_name[r]);
    }

    int oom = 0;
    for (unsigned k = 0; k < NSECT; k++)
        oom |= sec[k].oom;
    if (oom) {
        for (unsigned k = 0; k < NSECT; k++)
            free(sec[k].p);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0,
                              "out of memory encoding a snapshot of %zu objects", n);
    }

    uint32_t tab[256];
    crc_table(tab);
    unsigned char head[HEADER_SIZE + NSECT * SECT_ENTRY];
    memset(head, 0, sizeof head);
    uint64_t off = sizeof head;
    for (unsigned k = 0; k < NSECT; k++) {
        unsigned char *e = head + HEADER_SIZE + k * SECT_ENTRY;
        put32(e, k + 1);
        put32(e + 4, crc_update(tab, 0, sec[k].p, sec[k].len));
        put64(e + 8, off);
        put64(e + 16, sec[k].len);
        put64(e + 24, counts[k]);
        off += sec[k].len;
    }
    const pyheap_scan_stats *st = &s->stats;
    memcpy(head, MAGIC, 8);
    put32(head + 8, FORMAT_VERSION);
    put32(head + 12, HEADER_SIZE);
    put64(head + 16, off);                        /* file size */
    put32(head + 24, NSECT);
    /* head + 28: header CRC, filled last */
    put32(head + 32, (uint32_t)info->pid);
    put32(head + 36, 0);
    put64(head + 40, (uint64_t)info->time_unix);
    memcpy(head + 48, info->python, strnlen(info->python, 31));
    memcpy(head + 80, info->offsets_source, strnlen(info->offsets_source, 31));
    put64(head + 112, st->objects);
    put64(head + 120, st->bytes);
    put64(head + 128, st->skipped);
    put64(head + 136, st->gc_tracked);
    uint64_t msbits;
    double ms = st->scan_ms;
    memcpy(&msbits, &ms, sizeof msbits);   /* IEEE 754 binary64 */
    put64(head + 144, msbits);
    put32(head + 152, st->truncated ? 1 : 0);
    put32(head + 28, crc_update(tab, 0, head, sizeof head));

    int rc = write_all(fd, head, sizeof head, err);
    for (unsigned k = 0; k < NSECT && rc == 0; k++)
        rc = write_all(fd, sec[k].p, sec[k].len, err);
    for (unsigned k = 0; k < NSECT; k++)
        free(sec[k].p);
    return rc;
}

/* ---- reader ---- */

static int corrupt(pyheap_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int corrupt(pyheap_error *err, const char *fmt, ...)
{
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return pyheap_err_set(err, PYHEAP_E_CORRUPT, 0, 0, "not a valid pyheap snapshot file: %s",
                          what);
}

struct sect {
    const unsigned char *p;
    uint64_t len, count;
};

/* Read COUNT length-prefixed strings from SEC; *out is a calloc'd array. */
static int read_strings(const struct sect *sec, const char *what, char ***out,
                        pyheap_error *err)
{
    /* Each string takes at least its 4-byte length. */
    if (sec->count > sec->len / 4)
        return corrupt(err, "the %s section claims %llu strings in %llu bytes", what, (unsigned long long)(sec->count), (unsigned long long)(sec->len));
    char **v = calloc(sec->count ? sec->count : 1, sizeof *v);
    if (!v)
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0, "out of memory loading a snapshot");
    uint64_t pos = 0;
    for (uint64_t i = 0; i < sec->count; i++) {
        uint32_t l = sec->len - pos >= 4 ? get32(sec->p + pos) : UINT32_MAX;
        if (l == UINT32_MAX || l >= MAX_STRING || sec->len - pos - 4 < l ||
            memchr(sec->p + pos + 4, 0, l)) {
            for (uint64_t j = 0; j < i; j++)
                free(v[j]);
            free(v);
            return corrupt(err, "%s string %llu is truncated, too long or holds a NUL "
                           "(at byte %llu of its section)", what, (unsigned long long)(i), (unsigned long long)(pos));
        }
        v[i] = malloc((size_t)l + 1);
        if (!v[i]) {
            for (uint64_t j = 0; j < i; j++)
                free(v[j]);
            free(v);
            return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0, "out of memory loading a snapshot");
        }
        memcpy(v[i], sec->p + pos + 4, l);
        v[i][l] = 0;
        pos += 4 + (uint64_t)l;
    }
    if (pos != sec->len) {
        for (uint64_t j = 0; j < sec->count; j++)
            free(v[j]);
        free(v);
        return corrupt(err, "the %s section has %llu bytes but its strings use %llu", what, (unsigned long long)(sec->len), (unsigned long long)(pos));
    }
    *out = v;
    return 0;
}

/* Label kinds whose payload indexes the label strings. */
static int label_has_string(unsigned kind)
{
    return kind == LBL_KEY_STR || kind == LBL_KEY_TEXT || kind == LBL_ATTR ||
           kind == LBL_LOCAL || kind == LBL_TEXT;
}

static int parse_body(const unsigned char *b, const struct sect *sc,
                      struct snapshot_parts *p, pyheap_error *err)
{
    (void)b;
    /* types */
    if (read_strings(&sc[0], "types", &p->names, err) < 0)
        return -1;
    p->ntypes = sc[0].count;
    if (p->ntypes > UINT32_MAX)
        return corrupt(err, "%zu types are too many", p->ntypes);

    /* objects: addr[n], size[n], type[n] */
    uint64_t n = sc[1].count;
    if (n >= UINT32_MAX || sc[1].len / 20 != n || sc[1].len % 20 != 0)
        return corrupt(err, "the %s section holds %llu bytes, not 20 per each of %llu objects", "objects", (unsigned long long)(sc[1].len), (unsigned long long)(n));
    size_t alloc = n ? (size_t)n : 1;
    p->addr = malloc(alloc * 8);
    p->size = malloc(alloc * 8);
    p->type = malloc(alloc * 4);
    if (!p->addr || !p->size || !p->type)
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0, "out of memory loading %llu objects",
                              (unsigned long long)n);
    p->n = (size_t)n;
    const unsigned char *q = sc[1].p;
    for (size_t i = 0; i < n; i++) {
        p->addr[i] = get64(q + 8 * i);
        p->size[i] = get64(q + 8 * n + 8 * i);
        p->type[i] = get32(q + 16 * n + 4 * i);
        if (i > 0 && p->addr[i] <= p->addr[i - 1])
            return corrupt(err, "%s %llu: addresses not strictly ascending (0x%llx)", "object", (unsigned long long)(i), (unsigned long long)(p->addr[i]));
        if (p->type[i] >= p->ntypes)
            return corrupt(err, "%s %llu has type index %llu, beyond the type table", "object", (unsigned long long)(i), (unsigned long long)(p->type[i]));
    }

    /* labels (needed to validate edges) */
    if (read_strings(&sc[3], "labels", &p->labels, err) < 0)
        return -1;
    p->nlabels = sc[3].count;

    /* edges: eoff[n+1], target[ne], label[ne] */
    uint64_t ne = sc[2].count;
    if (ne >= UINT32_MAX || sc[2].len % 4 != 0 || sc[2].len / 4 != (n + 1) + 2 * ne)
        return corrupt(err, "the %s section holds %llu bytes, not what %llu edges need", "edges", (unsigned long long)(sc[2].len), (unsigned long long)(ne));
    p->eoff = malloc(((size_t)n + 1) * 4);
    p->etarget = malloc((ne ? (size_t)ne : 1) * 4);
    p->elabel = malloc((ne ? (size_t)ne : 1) * 4);
    if (!p->eoff || !p->etarget || !p->elabel)
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0, "out of memory loading %llu edges",
                              (unsigned long long)ne);
    p->nedges = (size_t)ne;
    q = sc[2].p;
    for (size_t i = 0; i <= n; i++) {
        p->eoff[i] = get32(q + 4 * i);
        if ((i == 0 && p->eoff[0] != 0) || (i > 0 && p->eoff[i] < p->eoff[i - 1]) ||
            p->eoff[i] > ne)
            return corrupt(err, "%s: edge offset of object %llu (%llu) is out of order or range", "edges", (unsigned long long)(i), (unsigned long long)(p->eoff[i]));
    }
    if (p->eoff[n] != ne)
        return corrupt(err, "%s: the offsets cover %llu edges, the section has %llu", "edges", (unsigned long long)(p->eoff[n]), (unsigned long long)(ne));
    q += 4 * (n + 1);
    for (size_t e = 0; e < ne; e++) {
        p->etarget[e] = get32(q + 4 * e);
        p->elabel[e] = get32(q + 4 * ne + 4 * e);
        unsigned kind = WALK_LBL_KIND(p->elabel[e]);
        if (p->etarget[e] >= n)
            return corrupt(err, "%s %llu points to object %llu, beyond the objects", "edge", (unsigned long long)(e), (unsigned long long)(p->etarget[e]));
        if (kind >= LBL_NKINDS ||
            (label_has_string(kind) && WALK_LBL_PAYLOAD(p->elabel[e]) >= p->nlabels))
            return corrupt(err, "%s %llu has an invalid label 0x%llx", "edge", (unsigned long long)(e), (unsigned long long)(p->elabel[e]));
    }

    /* roots: obj u32, prio u32, name */
    const struct sect *rs = &sc[4];
    uint64_t nr = rs->count;
    if (nr > rs->len / 12)
        return corrupt(err, "the %s section claims %llu roots in %llu bytes", "roots", (unsigned long long)(nr), (unsigned long long)(rs->len));
    size_t ralloc = nr ? (size_t)nr : 1;
    p->root_obj = malloc(ralloc * 4);
    p->root_prio = malloc(ralloc);
    p->root_name = calloc(ralloc, sizeof *p->root_name);
    if (!p->root_obj || !p->root_prio || !p->root_name)
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0, "out of memory loading roots");
    uint64_t pos = 0;
    for (size_t r = 0; r < nr; r++) {
        if (rs->len - pos < 12)
            return corrupt(err, "%s %llu is truncated (byte %llu)", "root", (unsigned long long)(r), (unsigned long long)(pos));
        uint32_t obj = get32(rs->p + pos), prio = get32(rs->p + pos + 4);
        uint32_t l = get32(rs->p + pos + 8);
        if (obj >= n || prio > 1)
            return corrupt(err, "%s %llu names object %llu, beyond the objects (or a bad "
                           "priority)", "root", (unsigned long long)(r), (unsigned long long)(obj));
        if (l >= MAX_STRING || rs->len - pos - 12 < l || memchr(rs->p + pos + 12, 0, l))
            return corrupt(err, "the name of %s %llu is truncated or invalid (byte %llu)", "root", (unsigned long long)(r), (unsigned long long)(pos));
        p->root_name[r] = malloc((size_t)l + 1);
        if (!p->root_name[r]) {
            p->nroots = r;
            return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0, "out of memory loading roots");
        }
        p->nroots = r + 1;
        memcpy(p->root_name[r], rs->p + pos + 12, l);
        p->root_name[r][l] = 0;
        p->root_obj[r] = obj;
        p->root_prio[r] = (uint8_t)prio;
        pos += 12 + (uint64_t)l;
    }
    p->nroots = (size_t)nr;
    if (pos != rs->len)
        return corrupt(err, "the %s section has %llu bytes but its roots use %llu", "roots", (unsigned long long)(rs->len), (unsigned long long)(pos));
    return 0;
}

int pyheap_snapfile_parse(const void *buf, size_t len, pyheap_snapshot **out,
                          pyheap_snapfile_info *info, pyheap_error *err)
{
    const unsigned char *b = buf;
    const size_t hlen = HEADER_SIZE + NSECT * SECT_ENTRY;
    if (!b || len < 8 || memcmp(b, MAGIC, 8) != 0)
        return corrupt(err, "bad magic (the file does not start with \"PYHEAPSN\")");
    if (len < 16)
        return corrupt(err, "%s: %llu bytes, the header needs %llu", "truncated", (unsigned long long)(len), (unsigned long long)(hlen));
    uint32_t version = get32(b + 8);
    if (version != FORMAT_VERSION)
        return pyheap_err_set(err, PYHEAP_E_UNSUPPORTED, 0, 0,
                              "snapshot file format version %u is not supported (this pyheap "
                              "reads version %u)", version, FORMAT_VERSION);
    if (len < hlen)
        return corrupt(err, "%s: %llu bytes, the header needs %llu", "truncated", (unsigned long long)(len), (unsigned long long)(hlen));
    if (get32(b + 12) != HEADER_SIZE || get32(b + 24) != NSECT)
        return corrupt(err, "%s: header size %llu, %llu sections", "unexpected header", (unsigned long long)(get32(b + 12)), (unsigned long long)(get32(b + 24)));
    uint64_t fsize = get64(b + 16);
    if (fsize != len)
        return corrupt(err, "%s: the header says %llu bytes, the file has %llu", fsize > len ? "truncated" : "trailing bytes", (unsigned long long)(fsize), (unsigned long long)(len));
    uint32_t tab[256];
    crc_table(tab);
    unsigned char head[HEADER_SIZE + NSECT * SECT_ENTRY];
    memcpy(head, b, hlen);
    uint32_t hcrc = get32(head + 28);
    put32(head + 28, 0);
    if (crc_update(tab, 0, head, hlen) != hcrc)
        return corrupt(err, "%s: header checksum mismatch (0x%llx stored, 0x%llx computed)", "corrupted header", (unsigned long long)(hcrc), (unsigned long long)(crc_update(tab, 0, head, hlen)));
    struct sect sc[NSECT];
    for (unsigned k = 0; k < NSECT; k++) {
        const unsigned char *e = b + HEADER_SIZE + k * SECT_ENTRY;
        uint64_t off = get64(e + 8), slen = get64(e + 16);
        if (get32(e) != k + 1)
            return corrupt(err, "section entry %s has id %llu, expected %llu", sect_name(k + 1), (unsigned long long)(get32(e)), (unsigned long long)(k + 1));
        if (off < hlen || off > len || slen > len - off)
            return corrupt(err, "the %s section (offset %llu, %llu bytes) lies outside the file", sect_name(k + 1), (unsigned long long)(off), (unsigned long long)(slen));
        sc[k].p = b + off;
        sc[k].len = slen;
        sc[k].count = get64(e + 24);
        uint32_t c = crc_update(tab, 0, sc[k].p, (size_t)slen);
        if (c != get32(e + 4))
            return corrupt(err, "the %s section is corrupted: checksum 0x%llx, expected 0x%llx", sect_name(k + 1), (unsigned long long)(c), (unsigned long long)(get32(e + 4)));
    }
    struct snapshot_parts p;
    memset(&p, 0, sizeof p);
    if (parse_body(b, sc, &p, err) < 0) {
        pyheap_snapshot_parts_free(&p);
        return -1;
    }
    p.stats.objects = get64(b + 112);
    p.stats.bytes = get64(b + 120);
    p.stats.skipped = get64(b + 128);
    p.stats.gc_tracked = get64(b + 136);
    uint64_t msbits = get64(b + 144);
    double ms;
    memcpy(&ms, &msbits, sizeof ms);
    p.stats.scan_ms = isfinite(ms) && ms >= 0 ? ms : 0;
    p.stats.truncated = get32(b + 152) != 0;
    if (info) {
        memset(info, 0, sizeof *info);
        info->version = version;
        info->pid = (int32_t)get32(b + 32);
        info->time_unix = (int64_t)get64(b + 40);
        memcpy(info->python, b + 48, 31);
        memcpy(info->offsets_source, b + 80, 31);
        for (char *c = info->python; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
                *c = '?';
        for (char *c = info->offsets_source; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f)
                *c = '?';
    }
    return pyheap_snapshot_adopt(&p, out, err);
}

int pyheap_snapfile_load(const char *path, pyheap_snapshot **out, pyheap_snapfile_info *info,
                         pyheap_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return pyheap_err_set(err, PYHEAP_E_IO, errno, 0, "cannot open %s: %s", path,
                              strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return pyheap_err_set(err, PYHEAP_E_IO, errno, 0, "%s is not a regular file", path);
    }
    size_t len = (size_t)st.st_size;
    unsigned char *b = malloc(len ? len : 1);
    if (!b) {
        close(fd);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, 0, 0, "out of memory reading %s", path);
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = read(fd, b + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    int rc = pyheap_snapfile_parse(b, got, out, info, err);
    if (rc < 0 && err) {
        char m[sizeof err->msg + 256];
        snprintf(m, sizeof m, "%.200s: %s", path, err->msg);
        m[sizeof err->msg - 1] = 0;
        memcpy(err->msg, m, sizeof err->msg);
    }
    free(b);
    return rc;
}

int pyheap_snapfile_seal(unsigned char *b, size_t len)
{
    const size_t hlen = HEADER_SIZE + NSECT * SECT_ENTRY;
    if (len < hlen)
        return -1;
    uint32_t tab[256];
    crc_table(tab);
    for (unsigned k = 0; k < NSECT; k++) {
        unsigned char *e = b + HEADER_SIZE + k * SECT_ENTRY;
        uint64_t off = get64(e + 8), slen = get64(e + 16);
        if (off <= len && slen <= len - off)
            put32(e + 4, crc_update(tab, 0, b + off, (size_t)slen));
    }
    put32(b + 28, 0);
    put32(b + 28, crc_update(tab, 0, b, hlen));
    return 0;
}
