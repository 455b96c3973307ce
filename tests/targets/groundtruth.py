"""In-process ground truth for pyheap's accuracy tests.

write(outdir) enumerates the live objects of *this* interpreter and writes
  outdir/truth.json   per-type counts and bytes, totals
  outdir/objects.tsv  one line per object: address (decimal), type, size

How the objects are found (honestly, in-process, never from pyheap output):
  1. gc.get_objects(): every GC-tracked object.
  2. Closure over gc.get_referents (tp_traverse).
  3. tp_traverse does not report some references that pyheap legitimately
     follows, so the closure also follows those same edges by in-process
     introspection:
       - type(o) for every object (the type is a live object);
       - the keys of dicts (CPython 3.11's dict_traverse skips str keys of
         unicode-keyed tables, since strs cannot form cycles);
       - code objects (not GC types in 3.11, so get_referents says nothing):
         co_consts, co_names, co_exceptiontable, co_filename, co_name,
         co_qualname, co_linetable, and, read with ctypes at offsets
         discovered below, co_localsplusnames, co_localspluskinds and the
         cached _co_code (only if already cached: reading co.co_code would
         create it; 3.11 keeps it in the code object, 3.12+ in a separate
         _PyCoCached struct {_co_code, _co_varnames, _co_cellvars,
         _co_freevars} that the code object points to);
       - static types (not GC types): their __dict__ (the dict behind the
         mappingproxy), __mro__, __bases__, __base__; heap types also
         __name__, __qualname__ (ht_name, ht_qualname) and ht_slots (ctypes);
         (3.12+: a static builtin type's __dict__ is the per-interpreter dict
         behind the mappingproxy, found the same way);
       - the instance dict of a Py_TPFLAGS_MANAGED_DICT type, read with
         ctypes from the pre-header (3 words before the object): reading
         o.__dict__ would create it, and tp_traverse visits only the inline
         values while they are valid (3.13+), not a dict that shares them;
       - 3.15: the bytes object that backs a bytearray's buffer
         (ob_bytes_object; bytearray is no GC type), read with ctypes at an
         offset discovered below.
  Objects are keyed by id(), i.e. their address, like pyheap's.

Sizes are sys.getsizeof(o). Type names are formatted like pyheap's: static
types by tp_name ("str", "collections.OrderedDict"); heap types as
"<__module__>.<__qualname__>" with "builtins." left out.

The computation's own bookkeeping (the object list, the seen map, result
tables) is created after gc.get_objects() returned and is not reachable
from pre-existing objects, so it is not counted; the caller frees it
before signalling readiness.
"""
import ctypes
import gc
import json
import sys
import types

HEAPTYPE = 1 << 9
MANAGED_DICT = 1 << 4
WORD = ctypes.sizeof(ctypes.c_void_p)


def _word(addr):
    return ctypes.c_void_p.from_address(addr).value or 0


def _obj_if_type(ptr, tp):
    """The object at address PTR if its ob_type is exactly TP, else None."""
    if not ptr or _word(ptr + WORD) != id(tp):
        return None
    return ctypes.cast(ptr, ctypes.py_object).value


def _readable(addr):
    """Whether WORD bytes at ADDR can be read (for pointers that may be
    anything): write(2) from there into a pipe fails with EFAULT instead of
    crashing. (No /proc/self/maps: targets may run in a chroot.)"""
    import os
    libc = ctypes.CDLL(None, use_errno=True)
    libc.write.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
    r, w = os.pipe()
    try:
        return libc.write(w, addr, WORD) == WORD
    finally:
        os.close(r)
        os.close(w)


def _find_word(obj, value, limit):
    for off in range(2 * WORD, limit, WORD):
        if _word(id(obj) + off) == value:
            return off
    return None


class _Layout:
    """Offsets of fields that Python does not expose, found by looking for
    the exposed neighbours in sample objects (3.11 field order)."""

    def __init__(self):
        def sample(a, b):
            c = a + b

            def inner():
                return c
            return inner
        code = sample.__code__
        _ = code.co_code  # cache _co_code in the sample only
        size = code.__sizeof__()
        fn = _find_word(code, id(code.co_filename), size)
        lt = _find_word(code, id(code.co_linetable), size)
        cc = _find_word(code, id(code.co_code), size)
        self.co_localsplusnames = fn - 2 * WORD if fn else None
        self.co_localspluskinds = fn - WORD if fn else None
        self.co_code_cache = cc
        # 3.12+: a pointer to a _PyCoCached whose first word is co_code.
        self.co_cached = None
        if cc is None:
            for off in range(2 * WORD, size, WORD):
                p = _word(id(code) + off)
                if p and p % WORD == 0 and _readable(p) and _word(p) == id(code.co_code):
                    self.co_cached = off
                    break
        names = _obj_if_type(_word(id(code) + self.co_localsplusnames), tuple) if fn else None
        if names is None or set(names) != set(code.co_varnames + code.co_cellvars +
                                              code.co_freevars):
            self.co_localsplusnames = self.co_localspluskinds = None
        assert lt is not None

        class Sample:
            __slots__ = ('slot_a',)
        qn = _find_word(Sample, id(Sample.__qualname__), type.__sizeof__(Sample))
        self.ht_slots = qn - WORD if qn else None
        slots = _obj_if_type(_word(id(Sample) + self.ht_slots), tuple) if qn else None
        if slots != ('slot_a',):
            self.ht_slots = None

        # 3.15: bytearray keeps its buffer in a bytes object (ob_bytes_object).
        self.ba_bytes = None
        if sys.version_info >= (3, 15):
            ba = bytearray(b'pyheap-sample')
            for off in range(2 * WORD, bytearray.__basicsize__, WORD):
                p = _word(id(ba) + off)
                if not p or p % WORD or not _readable(p + WORD):
                    continue
                v = _obj_if_type(p, bytes)
                if v is not None and v.startswith(b'pyheap-sample'):
                    self.ba_bytes = off
                    break
            assert self.ba_bytes is not None


def type_name(t):
    if type.__dict__['__flags__'].__get__(t) & HEAPTYPE:
        q = type.__dict__['__qualname__'].__get__(t)
        mod = type.__dict__['__dict__'].__get__(t).get('__module__')
        if isinstance(mod, str) and mod and mod != 'builtins':
            return mod + '.' + q
        return q
    mod = type.__dict__['__module__'].__get__(t)
    q = type.__dict__['__qualname__'].__get__(t)
    return q if mod == 'builtins' else mod + '.' + q


def _extra_edges(o, layout, out):
    t = type(o)
    out.append(t)
    if isinstance(o, dict):
        out.extend(dict.keys(o))
    if t is types.CodeType:
        out.extend((o.co_consts, o.co_names, o.co_exceptiontable, o.co_filename,
                    o.co_name, o.co_qualname, o.co_linetable))
        for off, tp in ((layout.co_localsplusnames, tuple),
                        (layout.co_localspluskinds, bytes),
                        (layout.co_code_cache, bytes)):
            if off is not None:
                v = _obj_if_type(_word(id(o) + off), tp)
                if v is not None:
                    out.append(v)
        if layout.co_cached is not None:
            cached = _word(id(o) + layout.co_cached)
            if cached:
                for i, tp in enumerate((bytes, tuple, tuple, tuple)):
                    v = _obj_if_type(_word(cached + i * WORD), tp)
                    if v is not None:
                        out.append(v)
    if type.__dict__['__flags__'].__get__(t) & MANAGED_DICT:
        v = _obj_if_type(_word(id(o) - 3 * WORD), dict)
        if v is not None:
            out.append(v)
    if isinstance(o, bytearray) and layout.ba_bytes is not None:
        v = _obj_if_type(_word(id(o) + layout.ba_bytes), bytes)
        if v is not None:
            out.append(v)
    if isinstance(o, type):
        getd = type.__dict__
        out.append(getd['__mro__'].__get__(o))
        out.append(getd['__bases__'].__get__(o))
        out.append(getd['__base__'].__get__(o))
        if getd['__flags__'].__get__(o) & HEAPTYPE:
            out.append(getd['__name__'].__get__(o))
            out.append(getd['__qualname__'].__get__(o))
            if layout.ht_slots is not None:
                v = _obj_if_type(_word(id(o) + layout.ht_slots), tuple)
                if v is not None:
                    out.append(v)
        else:
            out.extend(gc.get_referents(getd['__dict__'].__get__(o)))


# Found at import, before the heap is built: a persistent object like any
# other module global, not part of the computation's bookkeeping.
_LAYOUT = _Layout()


def write(outdir):
    layout = _LAYOUT
    gc.collect()
    objs = gc.get_objects()
    seen = {}
    for o in objs:
        seen[id(o)] = o
    todo = list(objs)
    del objs
    extra = []
    while todo:
        o = todo.pop()
        extra.clear()
        extra.extend(gc.get_referents(o))
        _extra_edges(o, layout, extra)
        for r in extra:
            i = id(r)
            if i not in seen:
                seen[i] = r
                todo.append(r)
    extra.clear()
    per_type = {}
    names = {}
    total = 0
    unsized = 0
    with open(outdir + '/objects.tsv', 'w') as f:
        for i, o in seen.items():
            t = type(o)
            name = names.get(t)
            if name is None:
                name = names[t] = type_name(t)
            try:
                size = sys.getsizeof(o)
            except Exception:
                size = -1
                unsized += 1
            f.write('%d\t%s\t%d\n' % (i, name, size))
            c = per_type.setdefault(name, [0, 0])
            c[0] += 1
            if size > 0:
                c[1] += size
                total += size
    truth = {
        'python': '%d.%d.%d' % sys.version_info[:3],
        'executable': sys.executable,
        'objects': len(seen),
        'bytes': total,
        'unsized': unsized,
        'types': {k: {'count': v[0], 'bytes': v[1]} for k, v in per_type.items()},
    }
    with open(outdir + '/truth.json', 'w') as f:
        json.dump(truth, f, indent=1, sort_keys=True)
    n = len(seen)
    seen.clear()
    per_type.clear()
    names.clear()
    return n
