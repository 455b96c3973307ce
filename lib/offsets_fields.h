/*
 * The single list of every struct offset and size the walker uses, for
 * every supported CPython minor version.
 *
 * This file is included several times with different definitions of the
 * three macros:
 *   PYOFF(field, CTYPE, member, LO, HI)  byte offset of `member` (may be a
 *                                nested path such as `gc.generations`) in
 *                                CTYPE, for versions LO..HI
 *   PYALT(field, CTYPE, member, LO, HI)  another member path for a field
 *                                declared by PYOFF, with the same meaning,
 *                                for versions LO..HI (disjoint from the
 *                                PYOFF range): e.g. interp_modules is
 *                                `modules` in 3.11, `imports.modules` in
 *                                3.12+. Declares no struct member.
 *   PYSIZE(field, CTYPE, LO, HI) sizeof(CTYPE)
 * LO/HI are major*100+minor (311 = 3.11; HI 399 means "and later"), or
 * major*10000+minor*100+micro for a patch range (31400..31404 = 3.14.0 to
 * 3.14.4): a member that only some patch releases have.
 * Outside its range(s) a field is PYHEAP_OFF_ABSENT in every source:
 * tools/gen-offsets compiles only the entries valid for the version it
 * generates, the DWARF loader requires only those.
 * Ranges that touch 3.12 are from the CPython history, not tested (pyheap
 * has no 3.12 interpreter to test; see docs/offsets.md).
 * `field` names the member of struct pyheap_offsets that receives it.
 * CTYPE is written as C spells it: a typedef name (`PyTypeObject`) or a
 * struct tag (`struct gc_generation`); the DWARF loader resolves either.
 *
 * Users: lib/offsets.h (the struct), lib/dwarf.c (the spec table),
 * tools/gen-offsets (the offsetof probe that writes lib/tables/).
 * A field that a source cannot provide is PYHEAP_OFF_ABSENT.
 */

/* object header */
PYOFF(ob_refcnt, PyObject, ob_refcnt, 311, 399)
PYOFF(ob_type, PyObject, ob_type, 311, 399)
PYOFF(ob_size, PyVarObject, ob_size, 311, 399)
PYSIZE(pyobject, PyObject, 311, 399)
PYSIZE(pyvarobject, PyVarObject, 311, 399)
PYSIZE(gc_head, PyGC_Head, 311, 399)
PYOFF(gc_next, PyGC_Head, _gc_next, 311, 399)
PYOFF(gc_prev, PyGC_Head, _gc_prev, 311, 399)

/* runtime, interpreter, threads */
PYOFF(runtime_interpreters_head, _PyRuntimeState, interpreters.head, 311, 399)
PYOFF(runtime_interpreters_main, _PyRuntimeState, interpreters.main, 311, 399)
PYOFF(interp_next, PyInterpreterState, next, 311, 399)
PYOFF(interp_threads_head, PyInterpreterState, threads.head, 311, 399)
PYOFF(interp_gc, PyInterpreterState, gc, 311, 399)
PYOFF(interp_modules, PyInterpreterState, modules, 311, 311)
PYOFF(interp_modules_by_index, PyInterpreterState, modules_by_index, 311, 311)
PYOFF(interp_sysdict, PyInterpreterState, sysdict, 311, 399)
PYOFF(interp_builtins, PyInterpreterState, builtins, 311, 399)
PYOFF(interp_importlib, PyInterpreterState, importlib, 311, 311)
PYOFF(interp_dict, PyInterpreterState, dict, 311, 399)
PYOFF(interp_builtins_copy, PyInterpreterState, builtins_copy, 311, 399)
PYOFF(interp_import_func, PyInterpreterState, import_func, 311, 311)
PYALT(interp_modules, PyInterpreterState, imports.modules, 312, 399)
PYALT(interp_modules_by_index, PyInterpreterState, imports.modules_by_index, 312, 399)
PYALT(interp_importlib, PyInterpreterState, imports.importlib, 312, 399)
PYALT(interp_import_func, PyInterpreterState, imports.import_func, 312, 399)
PYOFF(interp_codec_search_path, PyInterpreterState, codec_search_path, 311, 311)
PYOFF(interp_codec_search_cache, PyInterpreterState, codec_search_cache, 311, 311)
PYOFF(interp_codec_error_registry, PyInterpreterState, codec_error_registry, 311, 311)
PYALT(interp_codec_search_path, PyInterpreterState, codecs.search_path, 312, 399)
PYALT(interp_codec_search_cache, PyInterpreterState, codecs.search_cache, 312, 399)
PYALT(interp_codec_error_registry, PyInterpreterState, codecs.error_registry, 312, 399)
PYOFF(gcstate_generations, struct _gc_runtime_state, generations, 311, 399)
PYOFF(gcstate_permanent_generation, struct _gc_runtime_state, permanent_generation, 311, 399)
PYOFF(gcstate_garbage, struct _gc_runtime_state, garbage, 311, 399)
PYOFF(gcstate_callbacks, struct _gc_runtime_state, callbacks, 311, 399)
PYSIZE(gc_generation, struct gc_generation, 311, 399)
PYOFF(gc_generation_head, struct gc_generation, head, 311, 399)

PYOFF(tstate_next, PyThreadState, next, 311, 399)
PYOFF(tstate_interp, PyThreadState, interp, 311, 399)
PYOFF(tstate_cframe, PyThreadState, cframe, 311, 312)
PYOFF(tstate_dict, PyThreadState, dict, 311, 399)
PYOFF(tstate_thread_id, PyThreadState, thread_id, 311, 399)
PYOFF(tstate_native_thread_id, PyThreadState, native_thread_id, 311, 399)
PYOFF(tstate_curexc_type, PyThreadState, curexc_type, 311, 311)
PYOFF(tstate_curexc_value, PyThreadState, curexc_value, 311, 311)
PYOFF(tstate_curexc_traceback, PyThreadState, curexc_traceback, 311, 311)
PYOFF(tstate_exc_info, PyThreadState, exc_info, 311, 399)
PYOFF(tstate_exc_state, PyThreadState, exc_state, 311, 399)
PYOFF(tstate_async_exc, PyThreadState, async_exc, 311, 399)
PYOFF(tstate_c_profileobj, PyThreadState, c_profileobj, 311, 399)
PYOFF(tstate_c_traceobj, PyThreadState, c_traceobj, 311, 399)
PYOFF(tstate_context, PyThreadState, context, 311, 399)
PYOFF(err_stackitem_exc_value, _PyErr_StackItem, exc_value, 311, 399)
PYOFF(err_stackitem_previous_item, _PyErr_StackItem, previous_item, 311, 399)
PYOFF(cframe_current_frame, _PyCFrame, current_frame, 311, 312)

/* interpreter frames (3.11: _PyInterpreterFrame) and frame objects */
PYOFF(iframe_f_func, _PyInterpreterFrame, f_func, 311, 311)
PYOFF(iframe_f_globals, _PyInterpreterFrame, f_globals, 311, 399)
PYOFF(iframe_f_builtins, _PyInterpreterFrame, f_builtins, 311, 399)
PYOFF(iframe_f_locals, _PyInterpreterFrame, f_locals, 311, 399)
PYOFF(iframe_f_code, _PyInterpreterFrame, f_code, 311, 312)
PYOFF(iframe_frame_obj, _PyInterpreterFrame, frame_obj, 311, 399)
PYOFF(iframe_previous, _PyInterpreterFrame, previous, 311, 399)
PYOFF(iframe_stacktop, _PyInterpreterFrame, stacktop, 311, 313)
PYOFF(iframe_owner, _PyInterpreterFrame, owner, 311, 399)
PYOFF(iframe_localsplus, _PyInterpreterFrame, localsplus, 311, 399)
PYOFF(frame_f_back, PyFrameObject, f_back, 311, 399)
PYOFF(frame_f_frame, PyFrameObject, f_frame, 311, 399)
PYOFF(frame_f_trace, PyFrameObject, f_trace, 311, 399)
PYOFF(frame_f_frame_data, PyFrameObject, _f_frame_data, 311, 399)

/* type objects */
PYSIZE(type_object, PyTypeObject, 311, 399)
PYSIZE(heap_type_object, PyHeapTypeObject, 311, 399)
PYOFF(tp_name, PyTypeObject, tp_name, 311, 399)
PYOFF(tp_basicsize, PyTypeObject, tp_basicsize, 311, 399)
PYOFF(tp_itemsize, PyTypeObject, tp_itemsize, 311, 399)
PYOFF(tp_flags, PyTypeObject, tp_flags, 311, 399)
PYOFF(tp_doc, PyTypeObject, tp_doc, 311, 399)
PYOFF(tp_traverse, PyTypeObject, tp_traverse, 311, 399)
PYOFF(tp_members, PyTypeObject, tp_members, 311, 399)
PYOFF(tp_base, PyTypeObject, tp_base, 311, 399)
PYOFF(tp_dict, PyTypeObject, tp_dict, 311, 399)
PYOFF(tp_dictoffset, PyTypeObject, tp_dictoffset, 311, 399)
PYOFF(tp_weaklistoffset, PyTypeObject, tp_weaklistoffset, 311, 399)
PYOFF(tp_bases, PyTypeObject, tp_bases, 311, 399)
PYOFF(tp_mro, PyTypeObject, tp_mro, 311, 399)
PYOFF(tp_cache, PyTypeObject, tp_cache, 311, 399)
PYOFF(tp_subclasses, PyTypeObject, tp_subclasses, 311, 399)
PYOFF(tp_weaklist, PyTypeObject, tp_weaklist, 311, 399)
PYOFF(ht_name, PyHeapTypeObject, ht_name, 311, 399)
PYOFF(ht_slots, PyHeapTypeObject, ht_slots, 311, 399)
PYOFF(ht_qualname, PyHeapTypeObject, ht_qualname, 311, 399)
PYOFF(ht_cached_keys, PyHeapTypeObject, ht_cached_keys, 311, 399)
PYOFF(ht_module, PyHeapTypeObject, ht_module, 311, 399)
PYSIZE(member_def, PyMemberDef, 311, 399)
PYOFF(member_def_name, PyMemberDef, name, 311, 399)
PYOFF(member_def_type, PyMemberDef, type, 311, 399)
PYOFF(member_def_offset, PyMemberDef, offset, 311, 399)
PYOFF(member_def_flags, PyMemberDef, flags, 311, 399)

/* containers */
PYOFF(tuple_ob_item, PyTupleObject, ob_item, 311, 399)
PYOFF(list_ob_item, PyListObject, ob_item, 311, 399)
PYOFF(list_allocated, PyListObject, allocated, 311, 399)
PYOFF(dict_ma_used, PyDictObject, ma_used, 311, 399)
PYOFF(dict_ma_keys, PyDictObject, ma_keys, 311, 399)
PYOFF(dict_ma_values, PyDictObject, ma_values, 311, 399)
PYSIZE(dict_keys_object, PyDictKeysObject, 311, 399)
PYOFF(dk_refcnt, PyDictKeysObject, dk_refcnt, 311, 399)
PYOFF(dk_log2_size, PyDictKeysObject, dk_log2_size, 311, 399)
PYOFF(dk_log2_index_bytes, PyDictKeysObject, dk_log2_index_bytes, 311, 399)
PYOFF(dk_kind, PyDictKeysObject, dk_kind, 311, 399)
PYOFF(dk_usable, PyDictKeysObject, dk_usable, 311, 399)
PYOFF(dk_nentries, PyDictKeysObject, dk_nentries, 311, 399)
PYOFF(dk_indices, PyDictKeysObject, dk_indices, 311, 399)
PYSIZE(dict_key_entry, PyDictKeyEntry, 311, 399)
PYOFF(dke_hash, PyDictKeyEntry, me_hash, 311, 399)
PYOFF(dke_key, PyDictKeyEntry, me_key, 311, 399)
PYOFF(dke_value, PyDictKeyEntry, me_value, 311, 399)
PYSIZE(dict_unicode_entry, PyDictUnicodeEntry, 311, 399)
PYOFF(due_key, PyDictUnicodeEntry, me_key, 311, 399)
PYOFF(due_value, PyDictUnicodeEntry, me_value, 311, 399)
PYOFF(dict_values_values, PyDictValues, values, 311, 399)
PYOFF(set_fill, PySetObject, fill, 311, 399)
PYOFF(set_used, PySetObject, used, 311, 399)
PYOFF(set_mask, PySetObject, mask, 311, 399)
PYOFF(set_table, PySetObject, table, 311, 399)
PYOFF(set_smalltable, PySetObject, smalltable, 311, 399)
PYSIZE(set_entry, setentry, 311, 399)
PYOFF(setentry_key, setentry, key, 311, 399)
PYOFF(setentry_hash, setentry, hash, 311, 399)

/* scalars */
PYSIZE(ascii_object, PyASCIIObject, 311, 399)
PYSIZE(compact_unicode_object, PyCompactUnicodeObject, 311, 399)
PYSIZE(unicode_object, PyUnicodeObject, 311, 399)
PYOFF(unicode_length, PyASCIIObject, length, 311, 399)
PYOFF(unicode_hash, PyASCIIObject, hash, 311, 399)
PYOFF(unicode_state, PyASCIIObject, state, 311, 399)
PYOFF(unicode_wstr, PyASCIIObject, wstr, 311, 311)
PYOFF(unicode_utf8_length, PyCompactUnicodeObject, utf8_length, 311, 399)
PYOFF(unicode_utf8, PyCompactUnicodeObject, utf8, 311, 399)
PYOFF(unicode_wstr_length, PyCompactUnicodeObject, wstr_length, 311, 311)
PYOFF(unicode_data, PyUnicodeObject, data, 311, 399)
PYOFF(bytes_ob_sval, PyBytesObject, ob_sval, 311, 399)
PYOFF(bytearray_ob_alloc, PyByteArrayObject, ob_alloc, 311, 399)
PYOFF(bytearray_ob_bytes, PyByteArrayObject, ob_bytes, 311, 399)
PYOFF(long_ob_digit, PyLongObject, ob_digit, 311, 311)
PYALT(long_ob_digit, PyLongObject, long_value.ob_digit, 312, 399)
PYSIZE(float_object, PyFloatObject, 311, 399)
PYSIZE(complex_object, PyComplexObject, 311, 399)

/* modules, functions, code, cells, methods, generators */
PYOFF(module_md_dict, PyModuleObject, md_dict, 311, 399)
PYOFF(module_md_name, PyModuleObject, md_name, 311, 399)
PYOFF(func_globals, PyFunctionObject, func_globals, 311, 399)
PYOFF(func_builtins, PyFunctionObject, func_builtins, 311, 399)
PYOFF(func_name, PyFunctionObject, func_name, 311, 399)
PYOFF(func_qualname, PyFunctionObject, func_qualname, 311, 399)
PYOFF(func_code, PyFunctionObject, func_code, 311, 399)
PYOFF(func_defaults, PyFunctionObject, func_defaults, 311, 399)
PYOFF(func_kwdefaults, PyFunctionObject, func_kwdefaults, 311, 399)
PYOFF(func_closure, PyFunctionObject, func_closure, 311, 399)
PYOFF(func_doc, PyFunctionObject, func_doc, 311, 399)
PYOFF(func_dict, PyFunctionObject, func_dict, 311, 399)
PYOFF(func_module, PyFunctionObject, func_module, 311, 399)
PYOFF(func_annotations, PyFunctionObject, func_annotations, 311, 399)
PYOFF(code_co_consts, PyCodeObject, co_consts, 311, 399)
PYOFF(code_co_names, PyCodeObject, co_names, 311, 399)
PYOFF(code_co_exceptiontable, PyCodeObject, co_exceptiontable, 311, 399)
PYOFF(code_co_flags, PyCodeObject, co_flags, 311, 399)
PYOFF(code_co_stacksize, PyCodeObject, co_stacksize, 311, 399)
PYOFF(code_co_nlocalsplus, PyCodeObject, co_nlocalsplus, 311, 399)
PYOFF(code_co_localsplusnames, PyCodeObject, co_localsplusnames, 311, 399)
PYOFF(code_co_localspluskinds, PyCodeObject, co_localspluskinds, 311, 399)
PYOFF(code_co_filename, PyCodeObject, co_filename, 311, 399)
PYOFF(code_co_name, PyCodeObject, co_name, 311, 399)
PYOFF(code_co_qualname, PyCodeObject, co_qualname, 311, 399)
PYOFF(code_co_linetable, PyCodeObject, co_linetable, 311, 399)
PYOFF(code_co_code_cache, PyCodeObject, _co_code, 311, 311)
PYOFF(code_co_extra, PyCodeObject, co_extra, 311, 399)
PYOFF(code_co_code_adaptive, PyCodeObject, co_code_adaptive, 311, 399)
PYOFF(cell_ob_ref, PyCellObject, ob_ref, 311, 399)
PYOFF(method_im_func, PyMethodObject, im_func, 311, 399)
PYOFF(method_im_self, PyMethodObject, im_self, 311, 399)
PYOFF(gen_code, PyGenObject, gi_code, 311, 311)
PYOFF(gen_name, PyGenObject, gi_name, 311, 399)
PYOFF(gen_qualname, PyGenObject, gi_qualname, 311, 399)
PYOFF(gen_exc_state, PyGenObject, gi_exc_state, 311, 399)
PYOFF(gen_frame_state, PyGenObject, gi_frame_state, 311, 399)
PYOFF(gen_iframe, PyGenObject, gi_iframe, 311, 399)

/*
 * Added for 3.12+ shapes (issue 4). Meanings, for the walker:
 */
/* object header: 3.14+ splits word 0 into uint32 ob_refcnt, uint16
 * ob_overflow, uint16 ob_flags (GIL build); see pyheap_consts.refcnt_* */
PYOFF(ob_overflow, PyObject, ob_overflow, 314, 399)
PYOFF(ob_flags, PyObject, ob_flags, 314, 399)

/* runtime and interpreter */
PYOFF(runtime_debug_offsets, _PyRuntimeState, debug_offsets, 313, 399)
PYSIZE(debug_offsets_size, _Py_DebugOffsets, 313, 399)
/* whole-struct sizes: _Py_DebugOffsets gives these too, so comparing them
 * tells a build of another configuration (Py_DEBUG) from the table's */
PYSIZE(runtime_size, _PyRuntimeState, 311, 399)
PYSIZE(interp_size, PyInterpreterState, 311, 399)
PYOFF(runtime_interpreters_next_id, _PyRuntimeState, interpreters.next_id, 311, 399)
PYOFF(interp_id, PyInterpreterState, id, 311, 399)
PYOFF(interp_threads_main, PyInterpreterState, threads.main, 313, 399)
PYOFF(interp_runtime, PyInterpreterState, runtime, 311, 399)
PYOFF(interp_sysdict_copy, PyInterpreterState, sysdict_copy, 313, 399)
/* static builtin types keep tp_dict/tp_subclasses/tp_weaklist per
 * interpreter (3.12+): interp->types.builtins.initialized[i] for
 * i < num_initialized, each a managed_static_type_state */
PYOFF(interp_types_builtins_num, PyInterpreterState, types.builtins.num_initialized, 313, 399)
PYOFF(interp_types_builtins_initialized, PyInterpreterState, types.builtins.initialized, 313, 399)
PYOFF(interp_types_for_ext_num, PyInterpreterState, types.for_extensions.num_initialized, 313, 399)
PYOFF(interp_types_for_ext_initialized, PyInterpreterState, types.for_extensions.initialized, 313, 399)
PYSIZE(managed_static_type_state, managed_static_type_state, 313, 399)
PYOFF(msts_type, managed_static_type_state, type, 313, 399)
PYOFF(msts_tp_dict, managed_static_type_state, tp_dict, 313, 399)
PYOFF(msts_tp_subclasses, managed_static_type_state, tp_subclasses, 313, 399)
PYOFF(msts_tp_weaklist, managed_static_type_state, tp_weaklist, 313, 399)
/* GC state: list heads, and the 3.14.0-3.14.4 incremental-GC members
 * (young + old[2], same bytes as generations[3]; absent from the 3.14.5+
 * headers and so from the generated 3.14 table) */
PYOFF(gcstate_collecting, struct _gc_runtime_state, collecting, 311, 399)
PYOFF(gcstate_young, struct _gc_runtime_state, young, 31400, 31404)
PYOFF(gcstate_old, struct _gc_runtime_state, old, 31400, 31404)
PYSIZE(gcstate_size, struct _gc_runtime_state, 311, 399)

/* threads: 3.13+ has the current frame directly in the thread state (no
 * _PyCFrame); 3.12+ one current_exception instead of curexc_*; 3.15 an
 * embedded entry frame (base_frame, inside _PyThreadStateImpl) */
PYOFF(tstate_prev, PyThreadState, prev, 311, 399)
PYOFF(tstate_current_frame, PyThreadState, current_frame, 313, 399)
PYOFF(tstate_base_frame, PyThreadState, base_frame, 315, 399)
PYOFF(tstate_current_exception, PyThreadState, current_exception, 312, 399)
PYOFF(tstate_datastack_chunk, PyThreadState, datastack_chunk, 311, 399)
PYSIZE(tstate_size, PyThreadState, 311, 399)
PYSIZE(tstate_impl_size, _PyThreadStateImpl, 313, 399)

/* interpreter frames: f_executable (3.13+; PyObject* in 3.13, a tagged
 * _PyStackRef in 3.14+; a code object, None, or another executable),
 * f_funcobj (3.12+; _PyStackRef in 3.14+), stackpointer (3.14+, replaces
 * stacktop: absolute _PyStackRef* to the first free slot) */
PYOFF(iframe_f_executable, _PyInterpreterFrame, f_executable, 313, 399)
PYOFF(iframe_f_funcobj, _PyInterpreterFrame, f_funcobj, 312, 399)
PYOFF(iframe_instr_ptr, _PyInterpreterFrame, instr_ptr, 313, 399)
PYOFF(iframe_stackpointer, _PyInterpreterFrame, stackpointer, 314, 399)
PYOFF(iframe_return_offset, _PyInterpreterFrame, return_offset, 313, 399)
PYOFF(iframe_visited, _PyInterpreterFrame, visited, 314, 399)
PYSIZE(iframe_size, _PyInterpreterFrame, 311, 399)
PYOFF(frame_f_lineno, PyFrameObject, f_lineno, 311, 399)
PYOFF(frame_f_extra_locals, PyFrameObject, f_extra_locals, 313, 399)
PYOFF(frame_f_locals_cache, PyFrameObject, f_locals_cache, 313, 399)
PYOFF(frame_f_overwritten_fast_locals, PyFrameObject, f_overwritten_fast_locals, 314, 399)
PYSIZE(frame_object, PyFrameObject, 311, 399)

/* types */
PYOFF(tp_version_tag, PyTypeObject, tp_version_tag, 311, 399)
PYOFF(tp_vectorcall, PyTypeObject, tp_vectorcall, 311, 399)
PYOFF(tp_watched, PyTypeObject, tp_watched, 312, 399)
PYOFF(tp_versions_used, PyTypeObject, tp_versions_used, 313, 399)
PYOFF(ht_tpname, PyHeapTypeObject, _ht_tpname, 311, 399)
PYOFF(ht_spec_cache, PyHeapTypeObject, _spec_cache, 313, 399)
PYOFF(ht_token, PyHeapTypeObject, ht_token, 314, 399)

/* containers */
PYSIZE(tuple_object, PyTupleObject, 311, 399)
PYOFF(tuple_ob_hash, PyTupleObject, ob_hash, 314, 399)
PYSIZE(list_object, PyListObject, 311, 399)
PYSIZE(dict_object, PyDictObject, 311, 399)
PYOFF(dict_ma_version_tag, PyDictObject, ma_version_tag, 311, 313)
PYOFF(dict_watcher_tag, PyDictObject, _ma_watcher_tag, 314, 399)
PYOFF(dk_version, PyDictKeysObject, dk_version, 311, 399)
/* PyDictValues (3.13+): {uint8 capacity, size, embedded, valid} then
 * values[] at dict_values_values (8), then `capacity` order bytes */
PYOFF(dv_capacity, PyDictValues, capacity, 313, 399)
PYOFF(dv_size, PyDictValues, size, 313, 399)
PYOFF(dv_embedded, PyDictValues, embedded, 313, 399)
PYOFF(dv_valid, PyDictValues, valid, 313, 399)
PYSIZE(set_object, PySetObject, 311, 399)
PYOFF(set_finger, PySetObject, finger, 311, 399)
PYOFF(set_hash, PySetObject, hash, 311, 399)
PYOFF(set_weakreflist, PySetObject, weakreflist, 311, 399)

/* scalars: int is {ob_base, long_value {lv_tag, ob_digit[]}} in 3.12+:
 * ndigits = lv_tag >> 3, sign = lv_tag & 3 (ob_size unused for ints) */
PYOFF(long_lv_tag, PyLongObject, long_value.lv_tag, 312, 399)
PYSIZE(long_object, PyLongObject, 311, 399)
PYOFF(float_ob_fval, PyFloatObject, ob_fval, 311, 399)
PYSIZE(bytes_object, PyBytesObject, 311, 399)
PYOFF(bytes_ob_shash, PyBytesObject, ob_shash, 311, 399)
PYSIZE(bytearray_object, PyByteArrayObject, 311, 399)
PYOFF(bytearray_ob_start, PyByteArrayObject, ob_start, 311, 399)
PYOFF(bytearray_ob_exports, PyByteArrayObject, ob_exports, 311, 399)
/* 3.15: the PyBytes backing a bytearray's buffer */
PYOFF(bytearray_ob_bytes_object, PyByteArrayObject, ob_bytes_object, 315, 399)

/* modules, functions, code, generators, cells, methods */
PYSIZE(module_object, PyModuleObject, 311, 399)
PYOFF(module_md_state, PyModuleObject, md_state, 311, 399)
PYOFF(module_md_weaklist, PyModuleObject, md_weaklist, 311, 399)
PYOFF(module_md_def, PyModuleObject, md_def, 311, 314)
PYOFF(module_md_token, PyModuleObject, md_token, 315, 399)
PYSIZE(function_object, PyFunctionObject, 311, 399)
PYOFF(func_weakreflist, PyFunctionObject, func_weakreflist, 311, 399)
PYOFF(func_vectorcall, PyFunctionObject, vectorcall, 311, 399)
PYOFF(func_version, PyFunctionObject, func_version, 311, 399)
PYOFF(func_typeparams, PyFunctionObject, func_typeparams, 312, 399)
PYOFF(func_annotate, PyFunctionObject, func_annotate, 314, 399)
PYSIZE(code_object, PyCodeObject, 311, 399)
/* 3.12+: _co_cached points to a separately allocated _PyCoCached
 * {_co_code, _co_varnames, _co_cellvars, _co_freevars} (replaces _co_code) */
PYOFF(code_co_cached, PyCodeObject, _co_cached, 312, 399)
PYSIZE(co_cached_size, _PyCoCached, 312, 399)
PYOFF(coc_code, _PyCoCached, _co_code, 312, 399)
PYOFF(coc_varnames, _PyCoCached, _co_varnames, 312, 399)
PYOFF(coc_cellvars, _PyCoCached, _co_cellvars, 312, 399)
PYOFF(coc_freevars, _PyCoCached, _co_freevars, 312, 399)
PYOFF(code_co_argcount, PyCodeObject, co_argcount, 311, 399)
PYOFF(code_co_firstlineno, PyCodeObject, co_firstlineno, 311, 399)
PYOFF(code_co_framesize, PyCodeObject, co_framesize, 312, 399)
PYOFF(code_co_nlocals, PyCodeObject, co_nlocals, 311, 399)
PYOFF(code_co_ncellvars, PyCodeObject, co_ncellvars, 311, 399)
PYOFF(code_co_nfreevars, PyCodeObject, co_nfreevars, 311, 399)
PYOFF(code_co_weakreflist, PyCodeObject, co_weakreflist, 311, 399)
PYOFF(code_co_executors, PyCodeObject, co_executors, 313, 399)
PYSIZE(gen_object, PyGenObject, 311, 399)
PYOFF(gen_weakreflist, PyGenObject, gi_weakreflist, 311, 399)
PYOFF(gen_origin_or_finalizer, PyGenObject, gi_origin_or_finalizer, 313, 399)
PYSIZE(cell_object, PyCellObject, 311, 399)
PYSIZE(method_object, PyMethodObject, 311, 399)
