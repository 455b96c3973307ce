/* Extension types whose instance layout is in no installed header but
 * whose contents live outside the instance body, so a conservative scan
 * of the body would miss them. Each is recognised by tp_name and accepted
 * only when tp_basicsize matches the layout below; otherwise the type is
 * scanned conservatively like any other.
 *
 * collections.deque (Modules/_collectionsmodule.c, unchanged 3.8-3.12):
 *   PyObject_VAR_HEAD (ob_size = length); block *leftblock, *rightblock;
 *   Py_ssize_t leftindex, rightindex; ... ; 216 bytes on 64-bit.
 *   block = { block *leftlink; PyObject *data[64]; block *rightlink; }.
 *   deque.__sizeof__ = basicsize + blocks * sizeof(block), blocks =
 *   (leftindex + length + 63) / 64.
 *
 * collections.OrderedDict (Objects/odictobject.c): a PyDictObject, then
 *   _ODictNode *od_first, *od_last; _ODictNode **od_fast_nodes;
 *   Py_ssize_t od_fast_nodes_size; void *od_resize_sentinel; size_t od_state;
 *   PyObject *od_inst_dict, *od_weakreflist; 112 bytes on 64-bit.
 *   Nodes are { next, prev, key, hash } (32 bytes); their keys are the
 *   dict's keys. __sizeof__ = dict's + 8 * od_fast_nodes_size
 *   + 32 * len when not empty.
 */
#include <string.h>

#include "walk.h"

#define DEQUE_BASICSIZE 216
#define DEQUE_LEFTBLOCK 24
#define DEQUE_LEFTINDEX 40
#define DEQUE_RIGHTINDEX 48
#define BLOCKLEN 64
#define BLOCK_SIZE (8 + BLOCKLEN * 8 + 8)
#define MAX_DEQUE ((int64_t)1 << 32)

#define ODICT_BASICSIZE 112
#define ODICT_FIRST 48
#define ODICT_FAST_SIZE 72
#define ODICT_INST_DICT 96
#define ODICT_NODE_SIZE 32

enum walk_kind pyheap_walk_extension_kind(const char *name, int64_t basicsize,
                                          int64_t itemsize)
{
    if (strcmp(name, "collections.deque") == 0 && basicsize == DEQUE_BASICSIZE &&
        itemsize == 0)
        return WALK_DEQUE;
    if (strcmp(name, "collections.OrderedDict") == 0 && basicsize == ODICT_BASICSIZE &&
        itemsize == 0)
        return WALK_ODICT;
    return WALK_UNKNOWN;
}

int pyheap_walk_decode_deque(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    uint64_t len, block, li, ri;
    if (pyheap_walk_read_u64(w, o->addr + off->ob_size, &len) < 0 ||
        pyheap_walk_read_u64(w, o->addr + DEQUE_LEFTBLOCK, &block) < 0 ||
        pyheap_walk_read_u64(w, o->addr + DEQUE_LEFTINDEX, &li) < 0 ||
        pyheap_walk_read_u64(w, o->addr + DEQUE_RIGHTINDEX, &ri) < 0)
        return -1;
    if ((int64_t)len < 0 || (int64_t)len > MAX_DEQUE || li >= BLOCKLEN || ri >= BLOCKLEN ||
        !block)
        return -1;
    uint64_t nblocks = (li + len + BLOCKLEN - 1) / BLOCKLEN;
    uint64_t left = len, index = li;
    uint64_t data[BLOCKLEN + 2];
    for (uint64_t b = 0; b < nblocks && left > 0; b++) {
        if (!block || pyheap_walk_read(w, block, data, sizeof data) < 0)
            return -1;
        for (; index < BLOCKLEN && left > 0; index++, left--)
            pyheap_walk_ref(w, data[1 + index]);
        index = 0;
        block = data[BLOCKLEN + 1]; /* rightlink */
    }
    *size = (uint64_t)o->type->basicsize + (nblocks ? nblocks : 0) * BLOCK_SIZE +
            pyheap_walk_presize(w, o->type);
    return 0;
}

int pyheap_walk_decode_odict(struct walk *w, const struct walk_obj *o, uint64_t *size)
{
    const struct pyheap_offsets *off = &pyheap_walk_target(w)->off;
    uint64_t dsize, first, fast, inst, used;
    if (pyheap_walk_decode_dict(w, o, &dsize) < 0 ||
        pyheap_walk_read_u64(w, o->addr + ODICT_FIRST, &first) < 0 ||
        pyheap_walk_read_u64(w, o->addr + ODICT_FAST_SIZE, &fast) < 0 ||
        pyheap_walk_read_u64(w, o->addr + ODICT_INST_DICT, &inst) < 0 ||
        pyheap_walk_read_u64(w, o->addr + off->dict_ma_used, &used) < 0)
        return -1;
    if ((int64_t)fast < 0 || (int64_t)fast > ((int64_t)1 << WALK_MAX_DICT_LOG2) ||
        (int64_t)used < 0 || (int64_t)used > ((int64_t)1 << WALK_MAX_DICT_LOG2))
        return -1;
    pyheap_walk_ref(w, inst);
    *size = dsize + fast * 8 + (first ? used * ODICT_NODE_SIZE : 0);
    return 0;
}
