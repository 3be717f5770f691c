"""The fault path, zap and copy_page_range: where copy-on-write happens.

handle_mm_fault -> do_anonymous_page / do_read_fault / do_cow_fault / do_shared_fault /
do_wp_page -> wp_page_reuse / wp_page_copy / wp_page_shared, as in mm/memory.c, one page at a
time; `fault_range` does the same decisions for a whole range of private anonymous pages with
numpy (touch/fill of large buffers). Each decision is one event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..arch import (
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_DIRTY,
    PTE_MARKER_GUARD,
    PTE_PRESENT,
    PTE_RW,
    PTE_SPECIAL,
    PTE_USER,
    PTE_YOUNG,
    STACK_GUARD_GAP,
    STACK_RLIMIT,
)
from .page_alloc import (
    PG_ANON,
    PG_ANON_EXCLUSIVE,
    PG_DIRTY,
    PG_FILE,
    PG_SWAPBACKED,
    ZERO_PFN,
    OutOfMemory,
)
from .pgtable import Span
from .vma import MM, VM_GROWSDOWN, VM_READ, VM_SHARED, VM_WRITE, VMA, AnonVma

if TYPE_CHECKING:
    from ..machine import Machine

ANON_FLAGS = PG_ANON | PG_ANON_EXCLUSIVE | PG_SWAPBACKED
ZERO_PTE = (ZERO_PFN << PAGE_SHIFT) | PTE_PRESENT | PTE_USER | PTE_SPECIAL | PTE_YOUNG
_RW_NEW = PTE_PRESENT | PTE_USER | PTE_RW | PTE_YOUNG | PTE_DIRTY


class SegvError(Exception):
    """Internal: the access must raise SIGSEGV (converted to cowscope.Segfault by the caller)."""

    def __init__(self, address: int, reason: str) -> None:
        super().__init__(address, reason)
        self.address = address
        self.reason = reason


class BusError(SegvError):
    """Internal: the access must raise SIGBUS (a file page beyond the end of its object)."""


def mk_pte(pfn: int, vma: VMA, write: bool) -> int:
    """A present PTE for pfn with the VMA's user access; writable (and dirty) if a write faulted it."""
    pte = (pfn << PAGE_SHIFT) | PTE_PRESENT | PTE_YOUNG
    if vma.vm_flags & (VM_READ | VM_WRITE):
        pte |= PTE_USER
    if write and vma.vm_flags & VM_WRITE:
        pte |= PTE_RW | PTE_DIRTY
    elif vma_maps_writable(vma):
        pte |= PTE_RW  # vm_page_prot is already writable: a read fault maps it writable but clean
    return pte


def vma_maps_writable(vma: VMA) -> bool:
    """Shared writable mapping with no write-notify (shmem): vm_page_prot itself allows writes."""
    f = vma.vm_file
    return bool(vma.vm_flags & VM_SHARED and vma.vm_flags & VM_WRITE and f is not None and f.is_shmem)


# -- RSS counters ------------------------------------------------------------------------------

def rss_add(m: Machine, mm: MM, pfns: np.ndarray, sign: int) -> None:
    """Adjust MM_ANONPAGES / MM_FILEPAGES / MM_SHMEMPAGES for these frames."""
    if not len(pfns):
        return
    fl = m.phys.flags[pfns]
    anon = int(np.count_nonzero(fl & PG_ANON))
    shmem = int(np.count_nonzero((fl & (PG_FILE | PG_SWAPBACKED)) == (PG_FILE | PG_SWAPBACKED)))
    mm.rss_anon += sign * anon
    mm.rss_shmem += sign * shmem
    mm.rss_file += sign * (len(pfns) - anon - shmem)
    if sign > 0:
        mm.hiwater_rss = max(mm.hiwater_rss, mm.rss_anon + mm.rss_file + mm.rss_shmem)


def rss_add_one(m: Machine, mm: MM, pfn: int, sign: int) -> None:
    """Scalar rss_add."""
    fl = int(m.phys.flags[pfn])
    if fl & PG_ANON:
        mm.rss_anon += sign
    elif fl & PG_SWAPBACKED:
        mm.rss_shmem += sign
    else:
        mm.rss_file += sign
    if sign > 0:
        mm.hiwater_rss = max(mm.hiwater_rss, mm.rss_anon + mm.rss_file + mm.rss_shmem)


def anon_vma_prepare(vma: VMA) -> None:
    """Give the VMA an anon_vma on its first anon page (vmf_anon_prepare)."""
    if vma.anon_vma is None:
        vma.anon_vma = AnonVma()


# -- the single-page fault path ----------------------------------------------------------------

def find_vma_for_access(m: Machine, pid: int, mm: MM, va: int) -> VMA:
    """The VMA for va, growing a [stack] VMA downwards if va is just below it; else SIGSEGV."""
    vma = mm.find_vma(va)
    if vma is not None:
        return vma
    nxt = mm.vma_after(va)
    if nxt is not None and nxt.vm_flags & VM_GROWSDOWN:
        new_start = va & ~(PAGE_SIZE - 1)
        below = mm.find_vma(new_start - 1) if new_start else None
        prev_end = max((v.vm_end for v in mm.vmas if v.vm_end <= new_start), default=0)
        if (mm.start_stack - new_start <= STACK_RLIMIT and below is None
                and new_start - prev_end >= STACK_GUARD_GAP):
            nxt.vm_start = new_start
            mm.reindex()
            m.events.add(pid, "stack-grow", va, detail=f"[stack] now starts at {new_start:#x}")
            return nxt
    raise SegvError(va, "no mapping (SEGV_MAPERR)")


def check_access(vma: VMA, va: int, write: bool) -> None:
    """access_error: the VMA must allow the access (x86: write implies read)."""
    if write and not vma.vm_flags & VM_WRITE:
        raise SegvError(va, "write to a mapping without PROT_WRITE (SEGV_ACCERR)")
    if not write and not vma.vm_flags & (VM_READ | VM_WRITE):
        raise SegvError(va, "read of a PROT_NONE mapping (SEGV_ACCERR)")


def handle_mm_fault(m: Machine, pid: int, mm: MM, vma: VMA, va: int, write: bool) -> int:
    """Resolve one fault at va; returns the new PTE (present, writable if write)."""
    va &= ~(PAGE_SIZE - 1)
    pte = mm.pgd.lookup(va)
    if pte & PTE_MARKER_GUARD:
        raise SegvError(va, "guard region (MADV_GUARD_INSTALL)")
    m.count_fault(pid)
    if not pte & PTE_PRESENT:
        if vma.vm_file is None:
            return do_anonymous_page(m, pid, mm, vma, va, write)
        if vma.pgoff_at(va) >= vma.vm_file.npages:
            raise BusError(va, f"beyond the end of {vma.vm_file.path} (SIGBUS)")
        if not write:
            return do_read_fault(m, pid, mm, vma, va)
        if vma.is_shared:
            return do_shared_fault(m, pid, mm, vma, va)
        return do_cow_fault(m, pid, mm, vma, va)
    if write and not pte & PTE_RW:
        return do_wp_page(m, pid, mm, vma, va, pte)
    # spurious (e.g. PROT_NONE restored): just mark young
    pte |= PTE_YOUNG
    mm.pgd.set(va, pte)
    return pte


def do_anonymous_page(m: Machine, pid: int, mm: MM, vma: VMA, va: int, write: bool) -> int:
    """First touch of private anon memory: zero page for a read, a zeroed frame for a write."""
    if not write:
        pte = ZERO_PTE
        mm.pgd.set(va, pte)
        m.events.add(pid, "zero-page-map", va, 0, ZERO_PFN)
        m.stat["zero_page_map"] += 1
        return pte
    anon_vma_prepare(vma)
    pfn = m.alloc_page(pid, ANON_FLAGS, 0)
    m.phys.refcount[pfn] = 1
    m.phys.mapcount[pfn] = 1
    mm.rss_anon += 1
    mm.hiwater_rss = max(mm.hiwater_rss, mm.rss_anon + mm.rss_file + mm.rss_shmem)
    pte = mk_pte(pfn, vma, True)
    mm.pgd.set(va, pte)
    m.events.add(pid, "zero-fill", va, 0, pfn)
    m.stat["zero_fill"] += 1
    return pte


def map_file_page(m: Machine, mm: MM, vma: VMA, va: int, pfn: int, write: bool) -> int:
    """Map a page-cache frame at va (finish_fault for a file page)."""
    m.phys.mapcount[pfn] += 1
    m.phys.refcount[pfn] += 1
    rss_add_one(m, mm, pfn, 1)
    pte = mk_pte(pfn, vma, write)
    mm.pgd.set(va, pte)
    return pte


FAULT_AROUND_PAGES = 16


def filemap_fault(m: Machine, pid: int, vma: VMA, va: int) -> tuple[int, bool, bool]:
    """The page-cache frame behind va: (pfn, fresh shmem page, major fault = read from disk)."""
    f = vma.vm_file
    assert f is not None
    pgoff = vma.pgoff_at(va)
    fresh = f.is_shmem and pgoff not in f.page_cache
    pfn, major = f.find_get_page(m.phys, pgoff)
    if major:
        m.count_major(pid)
    return pfn, fresh, major


def do_read_fault(m: Machine, pid: int, mm: MM, vma: VMA, va: int) -> int:
    """Read fault on a file (or shmem) mapping: map the page, and fault around cached neighbours."""
    pfn, fresh, major = filemap_fault(m, pid, vma, va)
    kind = "shmem-alloc" if fresh else "pagecache-map"
    pte = map_file_page(m, mm, vma, va, pfn, False)
    m.events.add(pid, kind, va, 0, pfn, "major: read from disk" if major else "")
    m.stat["pagecache_map"] += 1
    do_fault_around(m, mm, vma, va)
    return pte


def do_fault_around(m: Machine, mm: MM, vma: VMA, va: int) -> None:
    """Map already-cached pages in the 16-page aligned window around va (filemap_map_pages)."""
    f = vma.vm_file
    assert f is not None
    win = FAULT_AROUND_PAGES * PAGE_SIZE
    lo = max(va & ~(win - 1), vma.vm_start, va & ~((1 << 21) - 1))
    hi = min((va & ~(win - 1)) + win, vma.vm_end, (va & ~((1 << 21) - 1)) + (1 << 21))
    for addr in range(lo, hi, PAGE_SIZE):
        if addr == va or mm.pgd.lookup(addr):
            continue
        pgoff = vma.pgoff_at(addr)
        if pgoff >= f.npages:
            break
        pfn = f.page_cache.get(pgoff)
        if pfn is not None:
            map_file_page(m, mm, vma, addr, pfn, False)


def do_cow_fault(m: Machine, pid: int, mm: MM, vma: VMA, va: int) -> int:
    """First access to a private file page is a write: copy the cached page into a new anon page."""
    src, _fresh, _major = filemap_fault(m, pid, vma, va)
    anon_vma_prepare(vma)
    pfn = m.alloc_page(pid, ANON_FLAGS, 0)
    m.phys.copy(np.array([pfn]), np.array([src]))
    m.phys.refcount[pfn] = 1
    m.phys.mapcount[pfn] = 1
    mm.rss_anon += 1
    mm.hiwater_rss = max(mm.hiwater_rss, mm.rss_anon + mm.rss_file + mm.rss_shmem)
    pte = mk_pte(pfn, vma, True)
    mm.pgd.set(va, pte)
    m.events.add(pid, "file-copy", va, src, pfn, "first access is a write (do_cow_fault)")
    m.stat["file_copy"] += 1
    return pte


def do_shared_fault(m: Machine, pid: int, mm: MM, vma: VMA, va: int) -> int:
    """Write fault on a MAP_SHARED page: map the cached frame writable and mark it dirty."""
    pfn, fresh, _major = filemap_fault(m, pid, vma, va)
    m.phys.flags[pfn] |= PG_DIRTY
    pte = map_file_page(m, mm, vma, va, pfn, True)
    kind = "shmem-alloc" if fresh else "shared-write"
    m.events.add(pid, kind, va, 0, pfn)
    return pte


def do_wp_page(m: Machine, pid: int, mm: MM, vma: VMA, va: int, pte: int) -> int:
    """Write to a present read-only PTE: shared -> make writable; private -> reuse or copy."""
    pfn = pte >> PAGE_SHIFT
    if vma.vm_flags & VM_SHARED:
        return wp_page_shared(m, pid, mm, va, pte, pfn)
    if pte & PTE_SPECIAL:
        return wp_page_copy(m, pid, mm, vma, va, pte, pfn, "zero-cow")
    fl = int(m.phys.flags[pfn])
    if fl & PG_ANON and (fl & PG_ANON_EXCLUSIVE or m.phys.refcount[pfn] == 1):
        return wp_page_reuse(m, pid, mm, va, pte, pfn, fl)
    return wp_page_copy(m, pid, mm, vma, va, pte, pfn, "cow-copy" if fl & PG_ANON else "file-copy")


def wp_page_reuse(m: Machine, pid: int, mm: MM, va: int, pte: int, pfn: int, fl: int) -> int:
    """Nobody else holds the page: keep the frame, make the PTE writable (no copy)."""
    m.phys.flags[pfn] = fl | PG_ANON_EXCLUSIVE
    pte |= PTE_RW | PTE_DIRTY | PTE_YOUNG
    mm.pgd.set(va, pte)
    detail = "" if fl & PG_ANON_EXCLUSIVE else "no other process maps it any more"
    m.events.add(pid, "cow-reuse", va, pfn, pfn, detail)
    m.stat["cow_reuse"] += 1
    return pte


def wp_page_copy(m: Machine, pid: int, mm: MM, vma: VMA, va: int, pte: int, old: int, kind: str) -> int:
    """Copy the page into a new exclusive anon frame and drop this PTE's hold on the old one."""
    anon_vma_prepare(vma)
    new = m.alloc_page(pid, ANON_FLAGS, 0)
    if kind != "zero-cow":
        m.phys.copy(np.array([new]), np.array([old]))
    m.phys.refcount[new] = 1
    m.phys.mapcount[new] = 1
    if kind == "zero-cow":
        mm.rss_anon += 1
    else:
        rss_add_one(m, mm, old, -1)
        mm.rss_anon += 1
        m.phys.mapcount[old] -= 1
        m.phys.put(np.array([old]))
    new_pte = mk_pte(new, vma, True)
    mm.pgd.set(va, new_pte)
    mm.hiwater_rss = max(mm.hiwater_rss, mm.rss_anon + mm.rss_file + mm.rss_shmem)
    m.events.add(pid, kind, va, old, new)
    m.stat[kind.replace("-", "_")] += 1
    return new_pte


def wp_page_shared(m: Machine, pid: int, mm: MM, va: int, pte: int, pfn: int) -> int:
    """Write to a read-only PTE of a shared mapping: no copy, the page becomes dirty."""
    m.phys.flags[pfn] |= PG_DIRTY
    pte |= PTE_RW | PTE_DIRTY | PTE_YOUNG
    mm.pgd.set(va, pte)
    m.events.add(pid, "shared-write", va, pfn, pfn)
    return pte


# -- vectorised range faults (private anonymous VMAs) ------------------------------------------

def fault_range(m: Machine, pid: int, mm: MM, vma: VMA, start: int, end: int, write: bool) -> None:
    """Make every page of [start, end) in a private anon VMA accessible, in one vectorised pass."""
    span = mm.pgd.span(start, end, alloc=True)
    if np.any(span.ptes & PTE_MARKER_GUARD):
        _fault_pages_scalar(m, pid, mm, vma, start, end, write)
        return
    try:
        if write:
            _write_span(m, pid, mm, vma, span)
        else:
            _read_span(m, pid, span)
    except OutOfMemory:
        _fault_pages_scalar(m, pid, mm, vma, start, end, write)


def _fault_pages_scalar(m: Machine, pid: int, mm: MM, vma: VMA, start: int, end: int,
                        write: bool) -> None:
    for va in range(start, end, PAGE_SIZE):
        pte = mm.pgd.lookup(va)
        need = (PTE_PRESENT | PTE_USER | PTE_RW) if write else (PTE_PRESENT | PTE_USER)
        if pte & need != need:
            handle_mm_fault(m, pid, mm, vma, va, write)
        elif write and not pte & PTE_DIRTY:
            mm.pgd.set(va, pte | PTE_DIRTY | PTE_YOUNG)


def _read_span(m: Machine, pid: int, span: Span) -> None:
    ptes = span.ptes
    none = np.flatnonzero(ptes == 0)
    if len(none):
        ptes[none] = ZERO_PTE
        m.count_faults(pid, len(none))
        m.events.add_bulk(pid, "zero-page-map", span.addresses(none), np.zeros(len(none)),
                          np.full(len(none), ZERO_PFN))
        m.stat["zero_page_map"] += len(none)
    ptes |= np.where(ptes & PTE_PRESENT, PTE_YOUNG, 0)
    span.store(ptes)


def _write_span(m: Machine, pid: int, mm: MM, vma: VMA, span: Span) -> None:
    """The write decisions of do_anonymous_page / do_wp_page for a whole range at once."""
    phys = m.phys
    ptes = span.ptes
    present = (ptes & PTE_PRESENT) != 0
    writable = present & ((ptes & PTE_RW) != 0)
    if writable.all():
        span.store(ptes | (PTE_DIRTY | PTE_YOUNG))
        return
    none = np.flatnonzero(ptes == 0)
    zero = np.flatnonzero(present & ((ptes & PTE_SPECIAL) != 0))
    wp = np.flatnonzero(present & ~writable & ((ptes & PTE_SPECIAL) == 0))
    pfns = ptes[wp] >> PAGE_SHIFT
    fl = phys.flags[pfns]
    is_anon = (fl & PG_ANON) != 0
    reuse_mask = is_anon & (((fl & PG_ANON_EXCLUSIVE) != 0) | (phys.refcount[pfns] == 1))
    reuse, copy = wp[reuse_mask], wp[~reuse_mask]
    nnew = len(none) + len(zero) + len(copy)
    new = phys.alloc(nnew, ANON_FLAGS, 0) if nnew else np.zeros(0, np.int64)
    anon_vma_prepare(vma)
    m.count_faults(pid, nnew + len(reuse))
    ptes = ptes | np.where(writable, PTE_DIRTY | PTE_YOUNG, 0)
    if len(reuse):
        rp = pfns[reuse_mask]
        phys.flags[rp] |= PG_ANON_EXCLUSIVE
        ptes[reuse] |= PTE_RW | PTE_DIRTY | PTE_YOUNG
        m.events.add_bulk(pid, "cow-reuse", span.addresses(reuse), rp, rp)
        m.stat["cow_reuse"] += len(reuse)
    k = 0
    for idx, kind in ((none, "zero-fill"), (zero, "zero-cow"), (copy, "cow-copy")):
        if not len(idx):
            continue
        got = new[k:k + len(idx)]
        k += len(idx)
        phys.refcount[got] = 1
        phys.mapcount[got] = 1
        if kind == "cow-copy":
            old = pfns[~reuse_mask]
            phys.copy(got, old)
            rss_add(m, mm, old, -1)
            phys.mapcount[old] -= 1
            phys.put(old)
        else:
            old = np.full(len(idx), ZERO_PFN if kind == "zero-cow" else 0, dtype=np.int64)
        mm.rss_anon += len(idx)
        ptes[idx] = (got << PAGE_SHIFT) | _RW_NEW
        m.events.add_bulk(pid, kind, span.addresses(idx), old, got)
        m.stat[kind.replace("-", "_")] += len(idx)
    span.store(ptes)
    mm.hiwater_rss = max(mm.hiwater_rss, mm.rss_anon + mm.rss_file + mm.rss_shmem)


# -- zap and copy ------------------------------------------------------------------------------

def zap_range(m: Machine, mm: MM, start: int, end: int, keep_markers: bool = False) -> None:
    """Unmap every PTE in [start, end): drop map counts, free frames nobody holds (zap_pte_range)."""
    span = mm.pgd.span(start, end)
    ptes = span.ptes
    if not ptes.any():
        return
    normal = (ptes & PTE_PRESENT != 0) & (ptes & PTE_SPECIAL == 0)
    pfns = ptes[normal] >> PAGE_SHIFT
    if len(pfns):
        # a dirty PTE hands its dirty bit to a page-cache folio (zap_present_folio_ptes)
        dirty = pfns[((ptes[normal] & PTE_DIRTY) != 0) & ((m.phys.flags[pfns] & PG_ANON) == 0)]
        m.phys.flags[dirty] |= PG_DIRTY
        rss_add(m, mm, pfns, -1)
        m.phys.mapcount[pfns] -= 1
        m.phys.put(pfns)
    span.store(np.where(ptes & PTE_MARKER_GUARD, ptes, 0) if keep_markers else np.zeros_like(ptes))


def copy_page_range(m: Machine, dst: MM, src: MM, vma: VMA) -> None:
    """fork: copy the VMA's PTEs; private writable ones become read-only in both (CoW)."""
    phys = m.phys
    span = src.pgd.span(vma.vm_start, vma.vm_end)
    if not span.blocks:
        return
    ptes = span.ptes
    present = (ptes & PTE_PRESENT) != 0
    pfns = ptes[present & ((ptes & PTE_SPECIAL) == 0)] >> PAGE_SHIFT
    if len(pfns):
        phys.mapcount[pfns] += 1
        phys.refcount[pfns] += 1
        phys.flags[pfns] &= np.uint16(~PG_ANON_EXCLUSIVE & 0xFFFF)
        rss_add(m, dst, pfns, 1)
    clear = PTE_YOUNG | (PTE_RW if vma.is_cow else 0) | (PTE_DIRTY if vma.is_shared else 0)
    child = np.where(present, ptes & ~clear, ptes)
    if vma.is_cow:
        span.store(np.where(present, ptes & ~PTE_RW, ptes))
    # copy_pmd_range gives the child a table for every populated parent table in the range
    Span([(dst.pgd.table(va), lo, hi, va) for _t, lo, hi, va in span.blocks]).store(child)
