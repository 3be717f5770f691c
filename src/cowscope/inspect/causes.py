"""Named causes for write sites, only where the name makes it certain.

A site belongs to a cause when its module is the right one (CPython's executable or libpython,
glibc's libc.so) and its symbol, an inlined function at it, or (with DWARF) its source file is one
of that cause's own. Everything else is shown by its symbol (or module+offset), never guessed.
"""

from __future__ import annotations

import re

from .symbols import Site

KERNEL = "a system call (the kernel wrote user memory)"
REFCOUNT = "CPython reference counting (Py_INCREF/Py_DECREF)"
GC = "CPython garbage collector"
OBMALLOC = "CPython object allocator (obmalloc)"
GLIBC_MALLOC = "glibc malloc/free"
MEMSET = "memset/memcpy (libc)"

_REFCOUNT_INLINES = {"Py_INCREF", "Py_DECREF", "_Py_INCREF", "_Py_DECREF", "Py_XINCREF", "Py_XDECREF",
                     "_Py_NewRef", "Py_NewRef", "_Py_XNewRef", "Py_XNewRef", "Py_SET_REFCNT", "_Py_SET_REFCNT",
                     "_Py_IncRef", "_Py_DecRef", "Py_IncRef", "Py_DecRef", "_Py_Dealloc"}
_GC = {"gc_collect_main", "gc_collect", "PyGC_Collect", "_PyGC_CollectNoFail", "collect", "update_refs",
       "subtract_refs", "visit_decref", "move_unreachable", "visit_reachable", "deduce_unreachable",
       "gc_collect_generations", "gc_collect_with_callback", "move_legacy_finalizers", "handle_weakrefs",
       "delete_garbage", "finalize_garbage", "gc_list_merge", "gc_list_move", "gc_list_append",
       "gc_list_remove", "_PyObject_GC_Link", "PyObject_GC_Track", "PyObject_GC_UnTrack", "PyObject_GC_Del",
       "gc_collect_region", "gc_collect_full", "gc_collect_young", "gc_collect_increment"}
_OBMALLOC = {"_PyObject_Malloc", "_PyObject_Free", "_PyObject_Calloc", "_PyObject_Realloc", "PyObject_Malloc",
             "PyObject_Free", "PyObject_Calloc", "PyObject_Realloc", "pymalloc_alloc", "pymalloc_free",
             "pymalloc_realloc", "allocate_from_new_pool", "insert_to_usedpool", "insert_to_freepool",
             "new_arena", "arena_map_mark_used", "_PyMem_DebugRawAlloc", "_PyObject_ArenaMmap"}
_GLIBC_MALLOC = {"malloc", "free", "calloc", "realloc", "__libc_malloc", "__libc_free", "__libc_calloc",
                 "__libc_realloc", "_int_malloc", "_int_free", "_int_realloc", "_int_memalign",
                 "malloc_consolidate", "sysmalloc", "tcache_init", "tcache_get", "tcache_put", "unlink_chunk",
                 "__libc_memalign", "_mid_memalign", "posix_memalign", "aligned_alloc", "cfree", "malloc_trim",
                 "mtrim", "systrim", "heap_trim", "_int_free_merge_chunk", "_int_free_create_chunk",
                 "_int_free_maybe_consolidate", "tcache_thread_shutdown", "arena_get2", "_int_new_arena"}
_MEMSET = re.compile(r"^(__)?(memset|memmove|memcpy|mempcpy|wmemset|bzero|explicit_bzero)(_|$|@)")
_CPYTHON_FILES = {"gcmodule.c": GC, "gc.c": GC, "obmalloc.c": OBMALLOC}


def is_cpython(module: str) -> bool:
    """The CPython executable or its shared library (python3.11, libpython3.11.so.1.0, ...)."""
    return bool(re.match(r"^(lib)?python\d", module))


def is_libc(module: str) -> bool:
    return bool(re.match(r"^libc[.-]", module))


def cause_of(site: Site) -> str | None:
    """The named cause of a site, or None when no cause is certain."""
    if site.module == "[kernel]":
        return KERNEL
    names = set(site.inlined) | ({site.symbol} if site.symbol else set())
    base = {n.split(".", 1)[0] for n in names}  # gcc clones: invoke_gc_callback.isra.0
    source = site.line.rsplit(":", 1)[0] if site.line else None
    if is_cpython(site.module):
        if site.inlined and site.inlined[0] in _REFCOUNT_INLINES or base & {"Py_IncRef", "Py_DecRef", "_Py_IncRef",
                                                                             "_Py_DecRef"}:
            return REFCOUNT
        if source in _CPYTHON_FILES:
            return _CPYTHON_FILES[source]
        if base & _GC:
            return GC
        if base & _OBMALLOC:
            return OBMALLOC
        return None
    if is_libc(site.module):
        if base & _GLIBC_MALLOC or source in ("malloc.c", "arena.c"):
            return GLIBC_MALLOC
        if any(_MEMSET.match(n) for n in base):
            return MEMSET
    return None
