/* What every object may carry beyond its built-in part: slot members of
 * Python subclasses, an instance dict (managed in 3.11, or at
 * tp_dictoffset), and fields of extension types that no decoder knows,
 * which are scanned conservatively for words that are object addresses. */
#include <string.h>

#include "walk.h"

/* |ob_size| when the type is variable-sized, else 0. -1 if unreadable. */
static int var_items(struct walk *w, const struct walk_obj *o, int64_t *n)
{
    *n = 0;
    if (o->type->itemsize == 0)
        return 0;
    uint64_t v;
    if (pyheap_walk_read_u64(w, o->addr + pyheap_walk_target(w)->off.ob_size, &v) < 0)
        return -1;
    int64_t s = (int64_t)v;
    if (s < 0)
        s = -s;
    if (s < 0 || s > WALK_MAX_VAR_ITEMS)
        return -1;
    *n = s;
    return 0;
}

int pyheap_walk_object_sizeof(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    int64_t n;
    if (var_items(w, o, &n) < 0)
        return -1;
    *size = (uint64_t)(o->type->basicsize + o->type->itemsize * n);
    return 0;
}

/* Scan [lo, hi) of the object at ADDR conservatively, leaving out the
 * weak list at SKIP_OFF and T's members (reported precisely). */
static void scan_words(struct walk *w, const struct walk_type *t, uint64_t addr, uint64_t lo,
                       uint64_t hi, int64_t skip_off)
{
    lo = (lo + 7) & ~(uint64_t)7;
    if (hi <= lo)
        return;
    if (hi - lo > WALK_MAX_SCAN_BYTES)
        hi = lo + WALK_MAX_SCAN_BYTES;
    /* Members inside the region: a bitmap of the words to leave out. */
    uint64_t skip[WALK_MAX_SCAN_BYTES / 8 / 64 + 1];
    bool any = false;
    if (t && t->nmembers) /* only the words of [lo, hi) */
        memset(skip, 0, ((hi - lo) / 8 / 64 + 1) * sizeof skip[0]);
    for (uint32_t i = 0; t && i < t->nmembers; i++) {
        uint64_t m = t->members[i];
        if (m >= lo && m < hi && ((m - lo) & 7) == 0) {
            uint64_t wi = (m - lo) / 8;
            skip[wi / 64] |= 1ULL << (wi % 64);
            any = true;
        }
    }
    uint64_t buf[512];
    for (uint64_t p = lo; p + 8 <= hi; p += sizeof buf) {
        uint64_t m = (hi - p) / 8;
        if (m > 512)
            m = 512;
        if (pyheap_walk_read(w, addr + p, buf, m * 8) < 0)
            return;
        for (uint64_t j = 0; j < m; j++) {
            if ((int64_t)(p + j * 8) == skip_off)
                continue;
            uint64_t wi = (p + j * 8 - lo) / 8;
            if (any && (skip[wi / 64] >> (wi % 64)) & 1)
                continue;
            uint64_t at = p + j * 8;
            uint32_t l = at <= WALK_LBL_PAYLOAD_MAX ? WALK_LBL(LBL_OFFSET, at) : WALK_LBL(LBL_NONE, 0);
            pyheap_walk_edge(w, buf[j], WALK_LBL_WITH_FLAGS(l, PYHEAP_EDGE_INFERRED));
        }
    }
}

void pyheap_walk_decode_extra(struct walk *w, const struct walk_obj *o)
{
    const pyheap_target *tg = pyheap_walk_target(w);
    const struct walk_type *t = o->type;
    uint64_t v;
    if (t->managed_dict && !tg->k.inline_values) {
        uint64_t values = 0;
        if (pyheap_walk_read_u64(w, o->addr + (uint64_t)tg->k.managed_dict_offset, &v) == 0 && v)
            pyheap_walk_edge(w, v, pyheap_walk_label_lit(w, LBL_ATTR, "__dict__"));
        if (pyheap_walk_read_u64(w, o->addr + (uint64_t)tg->k.managed_values_offset, &values) == 0 &&
            values)
            pyheap_walk_values_refs(w, values, t->cached_keys);
    } else if (t->managed_dict) {
        /* 3.13+: a materialised dict at managed_dict_offset (it holds the
         * inline values then), else the inline values at obj + basicsize
         * when the type has them and they are valid. */
        v = 0;
        if (pyheap_walk_read_u64(w, o->addr + (uint64_t)tg->k.managed_dict_offset, &v) == 0 && v) {
            pyheap_walk_edge(w, v, pyheap_walk_label_lit(w, LBL_ATTR, "__dict__"));
        } else if (t->flags & tg->k.tpflags_inline_values) {
            uint64_t iv = o->addr + (uint64_t)t->basicsize;
            uint8_t hdr[4];
            if (tg->off.dv_valid != PYHEAP_OFF_ABSENT && tg->off.dv_valid < 4 &&
                pyheap_walk_read(w, iv, hdr, sizeof hdr) == 0 && hdr[tg->off.dv_valid])
                pyheap_walk_values_refs(w, iv, t->cached_keys);
        }
    }
    for (uint32_t i = 0; i < t->nmembers; i++)
        if (pyheap_walk_read_u64(w, o->addr + t->members[i], &v) == 0 && v)
            pyheap_walk_edge(w, v, t->member_labels[i]);
    int64_t n = 0;
    bool have_n = var_items(w, o, &n) == 0;
    if (t->heap && !t->managed_dict && t->dictoffset < 0 && have_n) {
        uint64_t sz = ((uint64_t)(t->basicsize + t->itemsize * n) + 7) & ~(uint64_t)7;
        int64_t at = (int64_t)sz + t->dictoffset;
        if (at >= 16 && pyheap_walk_read_u64(w, o->addr + (uint64_t)at, &v) == 0 && v)
            pyheap_walk_edge(w, v, pyheap_walk_label_lit(w, LBL_ATTR, "__dict__"));
    }
    if (t->scan_hi > t->scan_lo)
        scan_words(w, t, o->addr, t->scan_lo, t->scan_hi, t->weaklistoffset);
    if (t->scan_items && have_n && n > 0)
        scan_words(w, NULL, o->addr, (uint64_t)t->basicsize,
                   (uint64_t)(t->basicsize + t->itemsize * n), -1);
}
