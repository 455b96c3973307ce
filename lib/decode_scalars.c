/* Scalars: str, bytes, bytearray, int, and fixed-size objects. None of
 * these hold references (beyond their type). */
#include <string.h>

#include "walk.h"

#define WCHAR_SIZE 4

static uint64_t u64at(const unsigned char *buf, size_t off)
{
    uint64_t v;
    memcpy(&v, buf + off, sizeof v);
    return v;
}

/* A decoded str header. */
struct ustr {
    int64_t length;
    unsigned kind;         /* 1, 2, 4 */
    bool compact, ascii, ready;
    uint64_t data;         /* address of the characters (0: none) */
    uint64_t wstr;
    int64_t wstr_length;
    uint64_t utf8;
    int64_t utf8_length;
};

static int read_str(struct walk *w, uint64_t addr, struct ustr *u)
{
    const pyheap_target *t = pyheap_walk_target(w);
    const struct pyheap_offsets *off = &t->off;
    const struct pyheap_consts *k = &t->k;
    unsigned char b[128];
    if (off->unicode_object > sizeof b || pyheap_walk_read(w, addr, b, off->ascii_object) < 0)
        return -1;
    uint32_t state;
    memcpy(&state, b + off->unicode_state, sizeof state);
    if (k->unicode_state_mask)
        state &= k->unicode_state_mask; /* 3.12+: the padding bits are not zeroed */
    u->length = (int64_t)u64at(b, off->unicode_length);
    u->kind = (state >> k->unicode_kind_shift) & k->unicode_kind_mask;
    u->compact = (state >> k->unicode_compact_bit) & 1;
    u->ascii = (state >> k->unicode_ascii_bit) & 1;
    /* 3.11: a `ready` bit; 3.12+: every str is ready. */
    u->ready = k->unicode_ready_bit >= 32 || ((state >> k->unicode_ready_bit) & 1);
    u->wstr = off->unicode_wstr == PYHEAP_OFF_ABSENT ? 0 : u64at(b, off->unicode_wstr);
    if (u->length < 0 || u->length > WALK_MAX_STR)
        return -1;
    if (u->ready && u->kind != 1 && u->kind != 2 && u->kind != 4)
        return -1;
    if (u->ascii && u->kind != 1)
        return -1;
    u->utf8 = 0;
    u->utf8_length = 0;
    u->wstr_length = u->length;
    if (u->compact && u->ascii) {
        u->data = addr + off->ascii_object;
        return 0;
    }
    size_t need = u->compact ? off->compact_unicode_object : off->unicode_object;
    if (pyheap_walk_read(w, addr, b, need) < 0)
        return -1;
    u->utf8 = u64at(b, off->unicode_utf8);
    u->utf8_length = (int64_t)u64at(b, off->unicode_utf8_length);
    u->wstr_length = off->unicode_wstr_length == PYHEAP_OFF_ABSENT
                         ? 0 : (int64_t)u64at(b, off->unicode_wstr_length);
    if (u->utf8_length < 0 || u->utf8_length > WALK_MAX_STR || u->wstr_length < 0 ||
        u->wstr_length > WALK_MAX_STR)
        return -1;
    u->data = u->compact ? addr + off->compact_unicode_object : u64at(b, off->unicode_data);
    return 0;
}

int pyheap_walk_decode_str(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    struct ustr u;
    if (read_str(w, o->addr, &u) < 0 || !u.ready)
        return -1;
    uint64_t sz;
    uint64_t n1 = (uint64_t)u.length + 1;
    if (u.compact && u.ascii)
        sz = off->ascii_object + n1;
    else if (u.compact)
        sz = off->compact_unicode_object + n1 * u.kind;
    else
        sz = off->unicode_object + (u.data ? n1 * u.kind : 0);
    if (u.wstr && (!u.ready || u.wstr != u.data))
        sz += ((uint64_t)u.wstr_length + 1) * WCHAR_SIZE;
    if (!(u.compact && u.ascii) && u.utf8 && u.utf8 != u.data)
        sz += (uint64_t)u.utf8_length + 1;
    *size = sz + pyheap_walk_presize(w, o->type);
    return 0;
}

static size_t put_utf8(char *out, uint32_t c)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xc0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xe0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        out[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    if (c > 0x10ffff)
        c = 0xfffd;
    out[0] = (char)(0xf0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    out[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

int pyheap_walk_str_utf8(struct walk *w, uint64_t addr, char *buf, size_t cap)
{
    if (cap == 0)
        return -1;
    buf[0] = 0;
    uint64_t type;
    if (!addr || pyheap_walk_read_u64(w, addr + pyheap_walk_target(w)->off.ob_type, &type) < 0)
        return -1;
    const struct walk_type *t = pyheap_walk_type_get(w, type);
    struct ustr u;
    if (!t || t->kind != WALK_STR || read_str(w, addr, &u) < 0 || !u.ready || !u.data)
        return -1;
    int64_t n = u.length;
    if ((uint64_t)n > cap)
        n = (int64_t)cap;
    unsigned char raw[1024];
    if ((uint64_t)n * u.kind > sizeof raw)
        n = (int64_t)(sizeof raw / u.kind);
    if (n > 0 && pyheap_walk_read(w, u.data, raw, (size_t)n * u.kind) < 0)
        return -1;
    size_t pos = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t c;
        if (u.kind == 1)
            c = raw[i];
        else if (u.kind == 2) {
            uint16_t c16;
            memcpy(&c16, raw + i * 2, 2);
            c = c16;
        } else
            memcpy(&c, raw + i * 4, 4);
        char enc[4];
        size_t len = put_utf8(enc, c);
        if (pos + len + 1 > cap)
            break;
        memcpy(buf + pos, enc, len);
        pos += len;
    }
    buf[pos] = 0;
    return 0;
}

int pyheap_walk_decode_bytes(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    uint64_t n;
    if (pyheap_walk_read_u64(w, o->addr + off->ob_size, &n) < 0 || (int64_t)n < 0 ||
        (int64_t)n > WALK_MAX_VAR_ITEMS)
        return -1;
    int64_t item = o->type->itemsize ? o->type->itemsize : 1;
    *size = (uint64_t)o->type->basicsize + n * (uint64_t)item + pyheap_walk_presize(w, o->type);
    return 0;
}

int pyheap_walk_decode_bytearray(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    uint64_t n, alloc;
    if (pyheap_walk_read_u64(w, o->addr + off->ob_size, &n) < 0 ||
        pyheap_walk_read_u64(w, o->addr + off->bytearray_ob_alloc, &alloc) < 0 ||
        (int64_t)n < 0 || (int64_t)alloc < 0 || (int64_t)alloc > WALK_MAX_VAR_ITEMS)
        return -1;
    uint64_t sz = (uint64_t)o->type->basicsize + alloc;
    if (off->bytearray_ob_bytes_object != PYHEAP_OFF_ABSENT) {
        /* 3.15: the buffer is a bytes object; __sizeof__ is basicsize plus
         * that object's size (reported as a referent too). */
        uint64_t bo, bn;
        if (pyheap_walk_read_u64(w, o->addr + off->bytearray_ob_bytes_object, &bo) < 0)
            return -1;
        sz = (uint64_t)o->type->basicsize;
        if (alloc && bo && pyheap_walk_read_u64(w, bo + off->ob_size, &bn) == 0 &&
            (int64_t)bn >= 0 && (int64_t)bn <= WALK_MAX_VAR_ITEMS)
            sz += off->bytes_ob_sval + 1 + bn;
        pyheap_walk_edge(w, bo, pyheap_walk_label_lit(w, LBL_TEXT, "<ob_bytes_object>"));
    }
    *size = sz + pyheap_walk_presize(w, o->type);
    return 0;
}

int pyheap_walk_decode_int(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    uint64_t v;
    if (pyheap_walk_read_u64(w, o->addr + off->ob_size, &v) < 0)
        return -1;
    int64_t n = (int64_t)v;
    const struct pyheap_consts *k = &pyheap_walk_target(w)->k;
    if (k->long_lv_tag) /* 3.12+: lv_tag = ndigits << shift | flags */
        n = (int64_t)(v >> k->long_ndigits_shift);
    if (n < 0)
        n = -n;
    if (n < 0 || n > WALK_MAX_VAR_ITEMS)
        return -1;
    /* int.__sizeof__ (3.11.1+): digits, at least one. */
    if (n < 1)
        n = 1;
    int64_t digit = o->type->itemsize ? o->type->itemsize : 4;
    *size = off->long_ob_digit + (uint64_t)(n * digit) + pyheap_walk_presize(w, o->type);
    return 0;
}

int pyheap_walk_decode_fixed(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    uint64_t sz;
    if (pyheap_walk_object_sizeof(w, o, &sz) < 0)
        return -1;
    *size = sz + pyheap_walk_presize(w, o->type);
    return 0;
}
