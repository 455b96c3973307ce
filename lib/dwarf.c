/* Struct layouts from DWARF through libdw.
 *
 * The spec table comes from offsets_fields.h: for every field, the C type
 * as the headers spell it (a typedef name or `struct tag`) and a member
 * path. We visit the top-level DIEs of each unit once, remember the first
 * complete definition of every wanted type, and stop as soon as all are
 * known. A typedef whose struct is incomplete in one unit (`typedef struct
 * _is PyInterpreterState` outside the core) is then looked up by its tag. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <dwarf.h>
#include <elfutils/libdw.h>

#include "dwarf_layout.h"

struct spec {
    const char *field;
    const char *ctype;
    const char *member; /* NULL: sizeof(ctype) */
    size_t slot;        /* offsetof(struct pyheap_offsets, field) */
    unsigned lo, hi;    /* version range (offsets_fields.h) */
};

static const struct spec specs[] = {
#define PYOFF(field, CTYPE, member, lo, hi) \
    {#field, #CTYPE, #member, offsetof(struct pyheap_offsets, field), lo, hi},
#define PYALT PYOFF
#define PYSIZE(field, CTYPE, lo, hi) \
    {#field, #CTYPE, NULL, offsetof(struct pyheap_offsets, field), lo, hi},
#include "offsets_fields.h"
#undef PYOFF
#undef PYALT
#undef PYSIZE
};
#define NSPECS (sizeof specs / sizeof specs[0])

size_t pyheap_dwarf_nfields(void) { return NSPECS; }
const char *pyheap_dwarf_field_name(size_t i) { return i < NSPECS ? specs[i].field : NULL; }
size_t pyheap_dwarf_field_slot(size_t i) { return i < NSPECS ? specs[i].slot : 0; }
void pyheap_dwarf_field_range(size_t i, unsigned *lo, unsigned *hi)
{
    *lo = i < NSPECS ? specs[i].lo : 0;
    *hi = i < NSPECS ? specs[i].hi : 0;
}

bool pyheap_offsets_range_has(unsigned lo, unsigned hi, int major, int minor,
                              int micro)
{
    if (major < 0 || minor < 0 || minor > 99)
        return false;
    unsigned vmin = (unsigned)(major * 10000 + minor * 100);
    unsigned plo = lo < 1000 ? lo * 100 : lo;
    unsigned phi = hi < 1000 ? hi * 100 + 99 : hi;
    if (micro < 0) /* any patch release of the minor version */
        return plo <= vmin + 99 && phi >= vmin;
    unsigned v = vmin + (unsigned)(micro > 99 ? 99 : micro);
    return plo <= v && v <= phi;
}

/* ---- finding the types ---- */

#define MAX_TYPES NSPECS
#define NAME_MAX_LEN 128
/* Members nest only a few levels (interpreters.head, gc.generations). */
#define MAX_PATH_DEPTH 8
/* Anonymous struct/union members nest rarely; bound the recursion. */
#define MAX_ANON_DEPTH 4

struct wanted {
    char ctype[NAME_MAX_LEN];  /* as in the spec: "PyObject", "struct _is" */
    bool by_tag;               /* look for a struct tag, not a typedef */
    char name[NAME_MAX_LEN];   /* the typedef name or the struct tag */
    bool found;
    Dwarf_Die die;             /* the complete structure/union */
};

struct typeset {
    struct wanted w[MAX_TYPES];
    size_t n;
    size_t nfound;
    bool switched; /* a typedef became a tag lookup during this pass */
};

static bool is_aggregate(int tag)
{
    return tag == DW_TAG_structure_type || tag == DW_TAG_union_type;
}

static void typeset_add(struct typeset *ts, const char *ctype)
{
    for (size_t i = 0; i < ts->n; i++)
        if (strcmp(ts->w[i].ctype, ctype) == 0)
            return;
    if (ts->n >= MAX_TYPES || strlen(ctype) >= NAME_MAX_LEN)
        return;
    struct wanted *w = &ts->w[ts->n++];
    memset(w, 0, sizeof *w);
    snprintf(w->ctype, sizeof w->ctype, "%s", ctype);
    if (strncmp(ctype, "struct ", 7) == 0) {
        w->by_tag = true;
        snprintf(w->name, sizeof w->name, "%s", ctype + 7);
    } else {
        snprintf(w->name, sizeof w->name, "%s", ctype);
    }
}

static struct wanted *typeset_get(struct typeset *ts, const char *ctype)
{
    for (size_t i = 0; i < ts->n; i++)
        if (strcmp(ts->w[i].ctype, ctype) == 0)
            return &ts->w[i];
    return NULL;
}

/* A typedef's target, with typedefs and qualifiers peeled. */
static int typedef_target(Dwarf_Die *td, Dwarf_Die *out)
{
    Dwarf_Attribute a;
    Dwarf_Die t;
    if (!dwarf_attr(td, DW_AT_type, &a) || !dwarf_formref_die(&a, &t))
        return -1;
    return dwarf_peel_type(&t, out) == 0 ? 0 : -1;
}

static void visit_top(struct typeset *ts, Dwarf_Die *die)
{
    int tag = dwarf_tag(die);
    bool td = tag == DW_TAG_typedef;
    if (!td && !is_aggregate(tag))
        return;
    const char *name = dwarf_diename(die);
    if (!name)
        return;
    for (size_t i = 0; i < ts->n; i++) {
        struct wanted *w = &ts->w[i];
        if (w->found || w->by_tag == td || w->name[0] != name[0] ||
            strcmp(w->name, name) != 0)
            continue;
        if (!td) {
            if (dwarf_hasattr(die, DW_AT_declaration))
                continue;
            w->die = *die;
            w->found = true;
            ts->nfound++;
            continue;
        }
        Dwarf_Die target;
        if (typedef_target(die, &target) != 0 || !is_aggregate(dwarf_tag(&target)))
            continue;
        if (!dwarf_hasattr(&target, DW_AT_declaration)) {
            w->die = target;
            w->found = true;
            ts->nfound++;
            continue;
        }
        /* Incomplete here: find the struct by its tag instead. */
        const char *tagname = dwarf_diename(&target);
        if (tagname && strlen(tagname) < NAME_MAX_LEN) {
            snprintf(w->name, sizeof w->name, "%s", tagname);
            w->by_tag = true;
            ts->switched = true;
        }
    }
}

static void scan_units(Dwarf *dw, struct typeset *ts)
{
    Dwarf_CU *cu = NULL;
    Dwarf_Die cudie, subdie;
    uint8_t unit_type;
    while (ts->nfound < ts->n &&
           dwarf_get_units(dw, cu, &cu, NULL, &unit_type, &cudie, &subdie) == 0) {
        if (unit_type == DW_UT_type || unit_type == DW_UT_split_type) {
            /* Type units: the type is the unit's subdie. */
            visit_top(ts, &subdie);
            continue;
        }
        Dwarf_Die child, next;
        if (dwarf_child(&cudie, &child) != 0)
            continue;
        for (;;) {
            visit_top(ts, &child);
            if (ts->nfound == ts->n || dwarf_siblingof(&child, &next) != 0)
                break;
            child = next;
        }
    }
}

/* ---- members ---- */

static int member_offset(Dwarf_Die *m, uint64_t *off)
{
    Dwarf_Attribute a;
    if (dwarf_attr(m, DW_AT_data_member_location, &a)) {
        /* libdw turns a constant form into one DW_OP_plus_uconst. */
        Dwarf_Op *ops;
        size_t n;
        if (dwarf_getlocation(&a, &ops, &n) == 0) {
            if (n == 1 && ops[0].atom == DW_OP_plus_uconst) {
                *off = ops[0].number;
                return 0;
            }
            if (n == 2 && (ops[0].atom == DW_OP_constu || ops[0].atom == DW_OP_lit0) &&
                ops[1].atom == DW_OP_plus) {
                *off = ops[0].number;
                return 0;
            }
            return -1;
        }
        Dwarf_Word w;
        if (dwarf_formudata(&a, &w) == 0) {
            *off = w;
            return 0;
        }
        return -1;
    }
    if (dwarf_attr(m, DW_AT_data_bit_offset, &a)) {
        Dwarf_Word w;
        if (dwarf_formudata(&a, &w) != 0)
            return -1;
        *off = w / 8;
        return 0;
    }
    /* Union members, and some producers' first member, have none. */
    *off = 0;
    return 0;
}

/* Find member NAME (LEN bytes) in aggregate AGG, looking through anonymous
 * struct/union members. On success *off is added to and *mem is the member. */
static int find_member(Dwarf_Die *agg, const char *name, size_t len,
                       uint64_t *off, Dwarf_Die *mem, int depth)
{
    Dwarf_Die child, next;
    if (depth > MAX_ANON_DEPTH || dwarf_child(agg, &child) != 0)
        return -1;
    for (;;) {
        if (dwarf_tag(&child) == DW_TAG_member) {
            const char *n = dwarf_diename(&child);
            uint64_t o;
            if (n && strlen(n) == len && memcmp(n, name, len) == 0) {
                if (member_offset(&child, &o) != 0)
                    return -1;
                *off += o;
                *mem = child;
                return 0;
            }
            if (!n) {
                Dwarf_Die t;
                if (typedef_target(&child, &t) == 0 && is_aggregate(dwarf_tag(&t)) &&
                    member_offset(&child, &o) == 0) {
                    uint64_t inner = 0;
                    if (find_member(&t, name, len, &inner, mem, depth + 1) == 0) {
                        *off += o + inner;
                        return 0;
                    }
                }
            }
        }
        if (dwarf_siblingof(&child, &next) != 0)
            return -1;
        child = next;
    }
}

/* Offset of a dotted member path in STRUCT_DIE. */
static int path_offset(struct typeset *ts, Dwarf_Die *struct_die,
                       const char *path, uint64_t *out)
{
    Dwarf_Die cur = *struct_die;
    uint64_t off = 0;
    const char *p = path;
    for (int depth = 0; depth < MAX_PATH_DEPTH; depth++) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        Dwarf_Die mem;
        if (find_member(&cur, p, len, &off, &mem, 0) != 0)
            return -1;
        if (!dot) {
            *out = off;
            return 0;
        }
        Dwarf_Die t;
        if (typedef_target(&mem, &t) != 0 || !is_aggregate(dwarf_tag(&t)))
            return -1;
        if (dwarf_hasattr(&t, DW_AT_declaration)) {
            /* Complete it from the struct found elsewhere by tag. */
            const char *tag = dwarf_diename(&t);
            struct wanted *w = NULL;
            for (size_t i = 0; tag && i < ts->n; i++)
                if (ts->w[i].found && ts->w[i].by_tag &&
                    strcmp(ts->w[i].name, tag) == 0)
                    w = &ts->w[i];
            if (!w)
                return -1;
            t = w->die;
        }
        cur = t;
        p = dot + 1;
    }
    return -1;
}

/* Append ", NAME" (or NAME) to the list in BUF, silently truncating. */
static void append_missing(char *buf, size_t len, const char *name)
{
    if (!buf || len == 0)
        return;
    size_t used = strnlen(buf, len);
    const char *parts[2] = {used ? ", " : "", name};
    for (int i = 0; i < 2; i++)
        for (const char *c = parts[i]; *c && used + 1 < len; c++)
            buf[used++] = *c;
    buf[used < len ? used : len - 1] = '\0';
}

int pyheap_dwarf_offsets(const pyheap_elf *dbg, int major, int minor,
                         struct pyheap_offsets *off, char *missing,
                         size_t missing_len, size_t *nmissing, pyheap_error *err)
{
    if (missing && missing_len)
        missing[0] = '\0';
    if (!pyheap_elf_has_debug_info(dbg))
        return pyheap_err_set(err, PYHEAP_E_NOTFOUND, 0, 0,
                              "%s has no DWARF (.debug_info)",
                              pyheap_elf_path(dbg));
    Dwarf *dw = dwarf_begin_elf(pyheap_elf_handle(dbg), DWARF_C_READ, NULL);
    if (!dw)
        return pyheap_err_set(err, PYHEAP_E_CORRUPT, 0, 0,
                              "cannot read the DWARF of %s: %s",
                              pyheap_elf_path(dbg), dwarf_errmsg(-1));

    struct typeset *ts = calloc(1, sizeof *ts);
    if (!ts) {
        dwarf_end(dw);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0, "out of memory");
    }
    bool *in = calloc(NSPECS, sizeof *in);
    if (!in) {
        free(ts);
        dwarf_end(dw);
        return pyheap_err_set(err, PYHEAP_E_NOMEM, ENOMEM, 0, "out of memory");
    }
    for (size_t i = 0; i < NSPECS; i++) {
        in[i] = pyheap_offsets_range_has(specs[i].lo, specs[i].hi, major, minor, -1);
        if (in[i])
            typeset_add(ts, specs[i].ctype);
    }
    scan_units(dw, ts);
    if (ts->nfound < ts->n && ts->switched) {
        /* A tag became wanted mid-pass; its definition may come earlier. */
        ts->switched = false;
        scan_units(dw, ts);
    }

    size_t nmiss = 0, nok = 0;
    /* Every slot starts absent; an entry in range that resolves fills it
     * (PYALT paths and patch-range members share or add slots). */
    for (size_t i = 0; i < NSPECS; i++)
        *(size_t *)((char *)off + specs[i].slot) = PYHEAP_OFF_ABSENT;
    for (size_t i = 0; i < NSPECS; i++) {
        const struct spec *s = &specs[i];
        if (!in[i])
            continue;
        size_t *slot = (size_t *)((char *)off + s->slot);
        if (*slot != PYHEAP_OFF_ABSENT)
            continue;
        /* Another in-range entry for the same slot may still fill it. */
        bool later = false;
        for (size_t j = i + 1; j < NSPECS && !later; j++)
            later = in[j] && specs[j].slot == s->slot;
        struct wanted *w = typeset_get(ts, s->ctype);
        uint64_t v = 0;
        bool ok = false;
        if (w && w->found) {
            if (!s->member) {
                Dwarf_Word sz;
                ok = dwarf_aggregate_size(&w->die, &sz) == 0;
                v = sz;
            } else {
                ok = path_offset(ts, &w->die, s->member, &v) == 0;
            }
        }
        if (ok && v < (1u << 20)) {
            *slot = (size_t)v;
            nok++;
        } else if (!later) {
            nmiss++;
            append_missing(missing, missing_len, s->field);
        }
    }
    free(in);
    free(ts);
    dwarf_end(dw);
    if (nmissing)
        *nmissing = nmiss;
    if (nok == 0)
        return pyheap_err_set(err, PYHEAP_E_NOTFOUND, 0, 0,
                              "the DWARF of %s describes none of CPython's "
                              "structs", pyheap_elf_path(dbg));
    return 0;
}

/* ---- locating a debug file ---- */

static bool same_build_id(const pyheap_elf *a, const pyheap_elf *b)
{
    uint8_t ia[PYHEAP_BUILD_ID_MAX], ib[PYHEAP_BUILD_ID_MAX];
    size_t la, lb;
    if (pyheap_elf_build_id(a, ia, sizeof ia, &la) != 0 ||
        pyheap_elf_build_id(b, ib, sizeof ib, &lb) != 0)
        return false;
    return la == lb && memcmp(ia, ib, la) == 0;
}

/* Try one candidate separate debug file. */
static int try_candidate(const char *path, const pyheap_elf *module,
                         bool have_id, bool have_crc, uint32_t crc,
                         pyheap_elf **out)
{
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return -1;
    pyheap_elf *d;
    if (pyheap_elf_open(path, &d, NULL) != 0)
        return -1;
    bool ok = pyheap_elf_has_debug_info(d);
    if (ok && have_id) {
        ok = same_build_id(module, d);
    } else if (ok && have_crc) {
        uint32_t c;
        ok = pyheap_elf_file_crc(path, &c, NULL) == 0 && c == crc;
    } else {
        ok = false; /* nothing to prove it belongs to this module */
    }
    if (!ok) {
        pyheap_elf_close(d);
        return -1;
    }
    *out = d;
    return 0;
}

static void append_tried(char *buf, size_t len, const char *what)
{
    append_missing(buf, len, what);
}

int pyheap_dwarf_locate(pid_t pid, const char *module_path,
                        const pyheap_elf *module, pyheap_elf **out,
                        char *where, size_t where_len, pyheap_error *err)
{
    char tried[1024] = "";
    if (pyheap_elf_has_debug_info(module)) {
        pyheap_elf *d;
        if (pyheap_elf_open(pyheap_elf_path(module), &d, err) != 0)
            return -1;
        pyheap_buf_fmt(where, where_len, "%s", module_path);
        *out = d;
        return 0;
    }
    append_tried(tried, sizeof tried, "the module itself");

    char prefixes[2][64];
    int nprefix = 0;
    if (pid > 0)
        snprintf(prefixes[nprefix++], sizeof prefixes[0], "/proc/%d/root", (int)pid);
    prefixes[nprefix++][0] = '\0';

    uint8_t id[PYHEAP_BUILD_ID_MAX];
    size_t idlen = 0;
    bool have_id = pyheap_elf_build_id(module, id, sizeof id, &idlen) == 0 &&
                   idlen >= 2;
    char linkname[256];
    uint32_t crc = 0;
    bool have_link = pyheap_elf_debuglink(module, linkname, sizeof linkname,
                                          &crc) == 0;

    /* Candidate paths as the target sees them. */
    enum { NCAND = 4 };
    char cand[NCAND][PATH_MAX];
    int ncand = 0;
    if (have_id) {
        char hex[2 * PYHEAP_BUILD_ID_MAX + 1];
        for (size_t i = 0; i < idlen; i++)
            snprintf(hex + 2 * i, 3, "%02x", id[i]);
        snprintf(cand[ncand++], PATH_MAX, "/usr/lib/debug/.build-id/%.2s/%s.debug",
                 hex, hex + 2);
    }
    if (have_link) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", module_path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        else
            dir[0] = '\0';
        snprintf(cand[ncand++], PATH_MAX, "%.*s/%s", PATH_MAX - 300, dir, linkname);
        snprintf(cand[ncand++], PATH_MAX, "%.*s/.debug/%s", PATH_MAX - 300, dir, linkname);
        snprintf(cand[ncand++], PATH_MAX, "/usr/lib/debug%.*s/%s", PATH_MAX - 300, dir,
                 linkname);
    }
    for (int c = 0; c < ncand; c++) {
        for (int p = 0; p < nprefix; p++) {
            char path[PATH_MAX + 64];
            if (!pyheap_buf_fmt(path, sizeof path, "%s%s", prefixes[p], cand[c]))
                continue;
            /* The module's own file is not its debug file. */
            if (strcmp(path, pyheap_elf_path(module)) == 0)
                continue;
            if (try_candidate(path, module, have_id, have_link, crc, out) == 0) {
                pyheap_buf_fmt(where, where_len, "%s%s", cand[c],
                         pid > 0 && p == 1 ? " (on the host)" : "");
                return 0;
            }
        }
        append_tried(tried, sizeof tried, cand[c]);
    }
    return pyheap_err_set(err, PYHEAP_E_NOTFOUND, 0, 0,
                          "no DWARF for %s (looked at: %s%s)", module_path, tried,
                          have_id || have_link ? "" : "; it has no build-id or debuglink");
}
