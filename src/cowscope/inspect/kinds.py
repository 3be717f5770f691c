"""What kind of memory each page is: mappings rolled up by what they hold, allocator regions
recognised by their own headers where that is certain.

Kinds, per page of a process:

* heap: `[heap]` (brk), and glibc's non-main arena heaps: 64 MiB-aligned anonymous regions whose
  first bytes are a `heap_info` that fits (glibc 2.36: ar_ptr, prev, size, mprotect_size,
  pagesize; a first heap's arena right after it);
* python-arenas: CPython's object allocator (obmalloc) pools, in processes running CPython: at
  every resident 16 KiB-aligned address of an anonymous mapping, a pool header whose size class,
  `maxnextoffset` and `nextoffset` agree (3.10+ pools are 16 KiB; checked on 3.11);
* binary-data: the executable's own non-code mappings (data, relro, read-only data) and its bss
  (the anonymous mapping right after them);
* library-data: shared libraries' non-code private mappings;
* code: executable file mappings;
* stack: `[stack]`, and mappings holding a thread's stack pointer (/proc/PID/task/TID/syscall,
  for threads blocked in a system call);
* file: other file mappings (shared files, shmem, memfd);
* anon: other anonymous memory (jemalloc's extents, malloc's mmapped chunks: no in-band header
  tells them apart with certainty).

Headers are read through /proc/PID/mem (observe.procmem): at most PROBES a process per sample;
beyond, the rest stays `anon` and a note says so.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from ..errors import ProcessGone
from ..observe.procmem import read_pieces
from ..observe.records import PAGE_SIZE, MapsEntry
from . import classify as cl

KINDS = ("heap", "python-arenas", "binary-data", "library-data", "code", "stack", "file", "anon")
HEAP, ARENA, BINARY, LIBRARY, CODE, STACK, FILE, ANON = range(len(KINDS))

#: glibc: HEAP_MAX_SIZE on 64-bit (2 * DEFAULT_MMAP_THRESHOLD_MAX); sizeof(heap_info) in 2.36.
ARENA_HEAP_SIZE = 64 << 20
HEAP_INFO_SIZE = 48
#: CPython 3.10+ (64-bit, radix tree): pools of 16 KiB, 16-byte size classes up to 512 bytes,
#: a 48-byte pool header.
POOL_SIZE = 16 << 10
POOL_OVERHEAD = 48
SIZE_CLASSES = 32
#: Pool headers probed per process and sample, at most (256 MiB of candidate memory).
PROBES = 16384


def read_exe(pid: int) -> str:
    """The path of the process's executable ("" when it cannot be read)."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def stack_pointers(pid: int) -> list[int]:
    """The stack pointer of each of its threads blocked in a system call (/proc/PID/task/TID/syscall)."""
    sps = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                fields = f.read().split()
        except OSError:
            continue
        if len(fields) >= 8:  # "nr a1 .. a6 sp pc"; "running" for a running thread
            sps.append(int(fields[-2], 16))
    return sps


def runs_python(exe: str, vmas: list[MapsEntry]) -> bool:
    """True for a CPython interpreter: its executable, or a libpython it maps."""
    return os.path.basename(exe).startswith("python") or any("libpython" in v.path for v in vmas)


def per_kind(kinds: np.ndarray, codes: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Pages per kind and class code: shape (len(KINDS), cl.NCODES); only pages in `mask` if given."""
    k, c = (kinds, codes) if mask is None else (kinds[mask], codes[mask])
    n = cl.NCODES
    return np.bincount(k.astype(np.int64) * n + c, minlength=len(KINDS) * n).reshape(len(KINDS), n)


#: Class code -> figure name, for a worker's kinds (a root's have rss and shared_in_tree only).
_WORKER_FIGURES = {"shared_with_parent_kb": cl.SHARED_PARENT, "sibling_shared_kb": cl.SIBLING,
                   "copied_kb": cl.COPIED, "new_kb": cl.NEW, "released_kb": cl.RELEASED}


def kind_figures(kinds: np.ndarray, codes: np.ndarray, real: np.ndarray, worker: bool,
                 identical: tuple[np.ndarray, float] | None = None) -> dict[str, dict[str, int]]:
    """kB per kind of one process: RSS and its classes (a worker) or what it shares in the tree (a
    root); with `identical` (the page indexes found identical, and the scale from compared to all
    copied pages), the copied pages with the parent's bytes. Kinds with nothing in them are left out."""
    kb = PAGE_SIZE // 1024
    table = per_kind(kinds, codes) * kb
    rss = np.bincount(kinds[real].astype(np.int64), minlength=len(KINDS)) * kb
    same = None
    if identical is not None:
        same = np.bincount(kinds[identical[0]].astype(np.int64), minlength=len(KINDS)) * identical[1]
    out: dict[str, dict[str, int]] = {}
    for i, name in enumerate(KINDS):
        if not rss[i] and not table[i, cl.RELEASED]:
            continue
        f = {"rss_kb": int(rss[i])}
        if worker:
            f.update({k: int(table[i, c]) for k, c in _WORKER_FIGURES.items()})
            if same is not None:
                f["copied_identical_kb"] = int(round(same[i])) * kb
        else:
            f["shared_in_tree_kb"] = int(table[i, cl.SHARED_PARENT])
        out[name] = f
    return out


def mapping_kind(vma: MapsEntry, exe: str, prev: MapsEntry | None) -> int:
    """The kind of a whole mapping by its name, permissions and place."""
    path = vma.path
    if path == "[heap]":
        return HEAP
    if path == "[stack]":
        return STACK
    if not path or path.startswith("[anon"):
        return BINARY if prev is not None and prev.path == exe and prev.end == vma.start and exe else ANON
    if "x" in vma.perms:
        return CODE
    if path == exe:
        return BINARY
    if vma.perms.endswith("p") and ".so" in os.path.basename(path):
        return LIBRARY
    return FILE


def page_kinds(pid: int, pp: cl.ProcPages, exe: str, stack_pointers: list[int], python: bool,
               notes: list[str]) -> np.ndarray:
    """The kind code of every page of `pp` (a process's mappings, in address order)."""
    kinds = np.empty(len(pp.real), dtype=np.uint8)
    prev: MapsEntry | None = None
    for k, vma in enumerate(pp.vmas):
        kind = mapping_kind(vma, exe, prev)
        if any(vma.start <= sp < vma.end for sp in stack_pointers):
            kind = STACK
        kinds[pp.offsets[k]:pp.offsets[k + 1]] = kind
        prev = vma
    try:
        _arena_heaps(pid, pp, kinds)
        if python:
            _python_pools(pid, pp, kinds, notes)
    except (ProcessGone, PermissionError) as exc:
        notes.append(f"pid {pid}: allocator regions not recognised ({exc})")
    return kinds


def _anon_rw(pp: cl.ProcPages, kinds: np.ndarray) -> list[int]:
    """Indexes of the anonymous read-write mappings still of kind anon."""
    return [k for k, v in enumerate(pp.vmas) if not v.path and v.perms.startswith("rw")
            and kinds[pp.offsets[k]] == ANON]


def _arena_heaps(pid: int, pp: cl.ProcPages, kinds: np.ndarray) -> None:
    """Mark glibc non-main arena heaps: a plausible heap_info at a 64 MiB-aligned address."""
    cands = [(k, a) for k in _anon_rw(pp, kinds) for a in range(-(-pp.vmas[k].start // ARENA_HEAP_SIZE)
                                                             * ARENA_HEAP_SIZE, pp.vmas[k].end, ARENA_HEAP_SIZE)
             if pp.real[pp.offsets[k] + (a - pp.vmas[k].start) // PAGE_SIZE]]
    if not cands:
        return
    raw, ok = read_pieces(pid, np.array([a for _, a in cands], dtype=np.uint64), 40)
    for (k, a), row, good in zip(cands, raw, ok):
        ar_ptr, prev, size, mprotect_size, pagesize = struct.unpack("<5Q", row.tobytes())
        first = prev == 0 and ar_ptr == a + HEAP_INFO_SIZE
        later = prev != 0 and prev % ARENA_HEAP_SIZE == 0 and (ar_ptr - HEAP_INFO_SIZE) % ARENA_HEAP_SIZE == 0
        sizes = 0 < size <= mprotect_size <= ARENA_HEAP_SIZE and size % PAGE_SIZE == 0 == mprotect_size % PAGE_SIZE
        if good and (first or later) and sizes and pagesize == PAGE_SIZE:
            vma = pp.vmas[k]
            lo = pp.offsets[k] + (a - vma.start) // PAGE_SIZE
            hi = min(pp.offsets[k + 1], lo + mprotect_size // PAGE_SIZE)
            kinds[lo:hi] = HEAP


def _python_pools(pid: int, pp: cl.ProcPages, kinds: np.ndarray, notes: list[str]) -> None:
    """Mark CPython obmalloc pools: a consistent pool header at a resident 16 KiB-aligned address."""
    starts, pages = [], []
    for k in _anon_rw(pp, kinds):
        vma = pp.vmas[k]
        a = np.arange(-(-vma.start // POOL_SIZE) * POOL_SIZE, vma.end - POOL_SIZE + 1, POOL_SIZE, dtype=np.int64)
        idx = pp.offsets[k] + (a - vma.start) // PAGE_SIZE
        keep = pp.real[idx]
        starts.append(a[keep])
        pages.append(idx[keep])
    addrs = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
    first = np.concatenate(pages) if pages else np.zeros(0, dtype=np.int64)
    if len(addrs) > PROBES:
        notes.append(f"pid {pid}: {len(addrs)} candidate CPython pools, {PROBES} examined; the rest count as anon")
        addrs, first = addrs[:PROBES], first[:PROBES]
    if not len(addrs):
        return
    raw, ok = read_pieces(pid, addrs.astype(np.uint64), POOL_OVERHEAD)
    head = raw[:, 32:48].copy().view(np.uint32)  # arenaindex, szidx, nextoffset, maxnextoffset
    szidx, nextoffset, maxnext = head[:, 1].astype(np.int64), head[:, 2].astype(np.int64), head[:, 3].astype(np.int64)
    size = (szidx + 1) * 16
    valid = ok & (szidx < SIZE_CLASSES) & (maxnext == POOL_SIZE - size) & (nextoffset >= POOL_OVERHEAD) \
        & (nextoffset <= maxnext + size) & ((nextoffset - POOL_OVERHEAD) % size == 0)
    per_pool = POOL_SIZE // PAGE_SIZE
    for p in first[valid].tolist():
        kinds[p:p + per_pool] = ARENA
