"""The fault path, zap and copy_page_range: where copy-on-write happens (mm/memory.c).

do_user_addr_fault (the x86 entry: find the VMA, growing [stack]; check the access) ->
handle_mm_fault -> do_anonymous_page / do_read_fault / do_cow_fault / do_shared_fault /
do_wp_page -> wp_page_reuse / wp_page_copy / wp_page_shared, one page at a time. `fault_range`
makes the same decisions for a whole range of private anonymous pages with numpy (touch, fill
and populate of large buffers); `fault_pages` is its page-by-page twin. Each decision is one event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..arch import (
    PAGE_MASK,
    PAGE_SHIFT,
    PTE_DIRTY,
    PTE_MARKER_GUARD,
    PTE_PRESENT,
    PTE_RW,
    PTE_SPECIAL,
    PTE_SWP,
    PTE_SWP_EXCLUSIVE,
    PTE_USER,
    PTE_YOUNG,
    PTRS_PER_TABLE,
    STACK_GUARD_GAP,
    STACK_RLIMIT,
)
from . import filemap
from .filemap import FileFault
from .huge_memory import (
    copy_huge_pmds,
    huge_pmd_fault,
    large_folio_reusable,
    vma_thp_enabled,
    zap_huge_pmds,
)
from .page_alloc import (
    PG_ANON,
    PG_ANON_EXCLUSIVE,
    PG_COMPOUND,
    PG_DIRTY,
    PG_FILE,
    PG_KSM,
    PG_SWAPBACKED,
    PG_SWAPCACHE,
    ZERO_PFN,
)
from .pgtable import Span
from .swapfile import (
    copy_swap_entries,
    folio_free_swap,
    free_swap_cache,
    swap_free,
    swap_readpage,
    swapcache_reusable,
    zap_swap_entries,
)
from .vma import MM, VM_EXEC, VM_GROWSDOWN, VM_READ, VM_SHARED, VM_WRITE, VMA, AnonVma

if TYPE_CHECKING:
    from ..machine import Machine

ANON_FLAGS = PG_ANON | PG_ANON_EXCLUSIVE | PG_SWAPBACKED
ZERO_PTE = (ZERO_PFN << PAGE_SHIFT) | PTE_PRESENT | PTE_USER | PTE_SPECIAL | PTE_YOUNG
FAULT_AROUND_PAGES = 16
NONPRESENT_ENTRY = PTE_MARKER_GUARD | PTE_SWP  # non-present entries that are not pte_none


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
    if vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC):  # x86: PROT_EXEC pages are readable ...
        pte |= PTE_USER  # ... unless a protection key forbids it (access_error; model: not on present PTEs)
    if write and vma.vm_flags & VM_WRITE:
        pte |= PTE_RW | PTE_DIRTY
    elif vma_maps_writable(vma):
        pte |= PTE_RW  # vm_page_prot is already writable: a read fault maps it writable but clean
    return pte


def vma_maps_writable(vma: VMA) -> bool:
    """Shared writable mapping with no write-notify (shmem): vm_page_prot itself allows writes."""
    f = vma.vm_file
    return bool(vma.vm_flags & VM_SHARED and vma.vm_flags & VM_WRITE and f is not None and f.is_shmem)


# -- RSS counters and new anonymous pages --------------------------------------------------------

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


def rss_add_one(m: Machine, mm: MM, pfn: int, sign: int) -> None:
    """Scalar rss_add."""
    fl = int(m.phys.flags[pfn])
    if fl & PG_ANON:
        mm.rss_anon += sign
    elif fl & PG_SWAPBACKED:
        mm.rss_shmem += sign
    else:
        mm.rss_file += sign


def update_hiwater_rss(mm: MM) -> None:
    """Keep the RSS peak before RSS drops; VmHWM is max(hiwater_rss, RSS), as in the kernel."""
    mm.hiwater_rss = max(mm.hiwater_rss, mm.get_mm_rss())


def anon_vma_prepare(vma: VMA) -> None:
    """Give the VMA an anon_vma on its first anon page (vmf_anon_prepare)."""
    if vma.anon_vma is None:
        vma.anon_vma = AnonVma()


def alloc_anon_page(m: Machine, pid: int, mm: MM, vma: VMA, copy_from: int = ZERO_PFN) -> int:
    """A new exclusive anon frame for one PTE of vma: zeroed, or a copy of copy_from; mapped once
    and counted in MM_ANONPAGES (vmf_anon_prepare, folio_prealloc, folio_add_new_anon_rmap)."""
    anon_vma_prepare(vma)
    pfn = m.alloc_page(pid, ANON_FLAGS, 0)
    if copy_from != ZERO_PFN:
        m.phys.copy(np.array([pfn]), np.array([copy_from]))
    m.phys.refcount[pfn] = 1
    m.phys.mapcount[pfn] = 1
    mm.rss_anon += 1
    return pfn


def alloc_anon_pages(m: Machine, mm: MM, vma: VMA, n: int) -> np.ndarray:
    """alloc_anon_page for n PTEs at once, zeroed; raises OutOfMemory before changing anything."""
    new = m.phys.alloc(n, ANON_FLAGS, 0) if n else np.zeros(0, dtype=np.int64)
    anon_vma_prepare(vma)
    m.phys.refcount[new] = 1
    m.phys.mapcount[new] = 1
    mm.rss_anon += n
    return new


# -- the x86 fault entry: which VMA, and may this access touch it ------------------------------

def do_user_addr_fault(m: Machine, pid: int, mm: MM, va: int, write: bool) -> int:
    """A user access the MMU refused: check it against the VMAs, then fault; returns the new PTE."""
    vma = find_vma_for_access(m, pid, mm, va, write)
    return handle_mm_fault(m, pid, mm, vma, va, write)


def find_vma_for_access(m: Machine, pid: int, mm: MM, va: int, write: bool) -> VMA:
    """do_user_addr_fault's checks: the VMA for va (growing [stack]) must allow the access; else SIGSEGV."""
    vma = lock_mm_and_find_vma(m, pid, mm, va)
    reason = access_error(vma, write, m.pkeys)
    if reason:
        raise SegvError(va, reason)
    return vma


def lock_mm_and_find_vma(m: Machine, pid: int, mm: MM, va: int) -> VMA:
    """The VMA holding va, or the stack VMA just above grown down to it; else SIGSEGV (SEGV_MAPERR)."""
    vma = mm.find_vma(va)
    if vma is not None:
        return vma
    nxt = mm.vma_after(va)
    if nxt is not None and nxt.vm_flags & VM_GROWSDOWN and expand_stack(m, pid, mm, nxt, va):
        return nxt
    raise SegvError(va, "no mapping (SEGV_MAPERR)")


def expand_stack(m: Machine, pid: int, mm: MM, vma: VMA, va: int) -> bool:
    """Grow a VM_GROWSDOWN VMA down to va's page, within RLIMIT_STACK and the stack guard gap."""
    new_start = va & PAGE_MASK
    below = mm.find_vma(new_start - 1) if new_start else None
    prev_end = max((v.vm_end for v in mm.vmas if v.vm_end <= new_start), default=0)
    if (mm.start_stack - new_start > STACK_RLIMIT or below is not None
            or new_start - prev_end < STACK_GUARD_GAP):
        return False
    if not m.acct.vm_enough_memory((vma.vm_start - new_start) >> PAGE_SHIFT, mm.total_pages()):
        return False  # acct_stack_growth
    vma.vm_start = new_start
    mm.reindex()
    m.events.add(pid, "stack-grow", va, detail=f"[stack] now starts at {new_start:#x}")
    return True


def access_error(vma: VMA, write: bool, pkeys: bool = False) -> str:
    """Why the VMA forbids this access, or "" when it allows it. x86: write implies read, and so
    does PROT_EXEC, unless the CPU has protection keys: then PROT_EXEC alone gets the
    execute-only key and a read faults (SEGV_PKUERR)."""
    if write and not vma.vm_flags & VM_WRITE:
        return "write to a mapping without PROT_WRITE (SEGV_ACCERR)"
    if not write and not vma.vm_flags & (VM_READ | VM_WRITE):
        if vma.vm_flags & VM_EXEC and pkeys:
            return "read of an execute-only mapping (protection key, SEGV_PKUERR)"
        if not vma.vm_flags & VM_EXEC:
            return "read of a PROT_NONE mapping (SEGV_ACCERR)"
    return ""


# -- the single-page fault path ----------------------------------------------------------------

def handle_mm_fault(m: Machine, pid: int, mm: MM, vma: VMA, va: int, write: bool) -> int:
    """Resolve one fault at va; returns the new PTE (present, writable if write). A signal names
    the faulting address itself (si_addr), not its page."""
    fault_va, va = va, va & PAGE_MASK
    if mm.pgd.pmds or vma_thp_enabled(m, vma):  # the PMD level first (mm/huge_memory.py)
        pte = huge_pmd_fault(m, pid, mm, vma, va, write)
        if pte:
            return pte
    pte = mm.pgd.lookup(va)
    if pte & PTE_MARKER_GUARD:
        raise SegvError(fault_va, "guard region (MADV_GUARD_INSTALL, SEGV_MAPERR)")
    m.count_fault(pid)
    if not pte & PTE_PRESENT:
        if pte & PTE_SWP:
            return do_swap_page(m, pid, mm, vma, va, pte, write)
        if vma.vm_file is None:
            return do_anonymous_page(m, pid, mm, vma, va, write)
        if vma.pgoff_at(va) >= vma.vm_file.npages:
            if not write:  # do_read_fault faults around before filemap_fault finds EOF
                do_fault_around(m, mm, vma, va, beyond_eof=True)
            raise BusError(fault_va, f"beyond the end of {vma.vm_file.path} (SIGBUS)")
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
        mm.pgd.set(va, ZERO_PTE)
        m.events.add(pid, "zero-page-map", va, 0, ZERO_PFN)
        m.stat["zero_page_map"] += 1
        return ZERO_PTE
    pfn = alloc_anon_page(m, pid, mm, vma)
    pte = mk_pte(pfn, vma, True)
    mm.pgd.set(va, pte)
    m.events.add(pid, "zero-fill", va, 0, pfn)
    m.stat["zero_fill"] += 1
    return pte


def set_pte_range(m: Machine, mm: MM, vma: VMA, va: int, pfn: int, write: bool) -> int:
    """Map a page-cache frame at va (finish_fault / filemap_map_pages for one page)."""
    m.phys.mapcount[pfn] += 1
    m.phys.refcount[pfn] += 1
    rss_add_one(m, mm, pfn, 1)
    pte = mk_pte(pfn, vma, write)
    mm.pgd.set(va, pte)
    return pte


def filemap_fault(m: Machine, pid: int, vma: VMA, va: int) -> FileFault:
    """The page-cache frame behind va (mm/filemap.py), its major fault counted."""
    got = filemap.filemap_fault(m.phys, vma, va, m.ra_pages)
    if got.major:
        m.count_major(pid)
    return got


def do_read_fault(m: Machine, pid: int, mm: MM, vma: VMA, va: int) -> int:
    """Read fault on a file (or shmem) mapping: the page (read with readahead when it is not
    cached), then fault-around maps the cached pages of the window around it."""
    pfn, fresh, major = filemap_fault(m, pid, vma, va)
    kind = "shmem-alloc" if fresh else "pagecache-map"
    pte = set_pte_range(m, mm, vma, va, pfn, False)
    m.events.add(pid, kind, va, 0, pfn, "major: read from disk" if major else "")
    m.stat["pagecache_map"] += 1
    do_fault_around(m, mm, vma, va)
    return pte


def do_fault_around(m: Machine, mm: MM, vma: VMA, va: int, beyond_eof: bool = False) -> None:
    """Map the cached pages of a 16-page window (do_fault_around, 6.4+): aligned to 16 pages but
    starting no lower than the VMA, so a VMA starting inside an aligned block gets 16 pages from its
    start; clipped to the VMA, the PTE table and EOF (filemap_map_pages)."""
    f = vma.vm_file
    assert f is not None
    nr = FAULT_AROUND_PAGES
    pte_off = (va >> PAGE_SHIFT) & (PTRS_PER_TABLE - 1)
    vma_off = (va - vma.vm_start) >> PAGE_SHIFT
    from_pte = max(pte_off & ~(nr - 1), pte_off - min(pte_off, vma_off))
    to_pte = min(from_pte + nr, PTRS_PER_TABLE, pte_off + vma.npages - vma_off)
    table = va & ~((PTRS_PER_TABLE << PAGE_SHIFT) - 1)
    first = vma.pgoff_at(table + (from_pte << PAGE_SHIFT))
    pages = filemap.filemap_map_pages(f, first, first + to_pte - from_pte - 1)
    if beyond_eof and pages and pages[0][0] == f.npages - 1 and not f.is_shmem and not mm.pgd.lookup_table(va):
        # measured on 6.18: when the first page found is the file's last (it may not be mapped
        # large), filemap_map_pages needs a PTE table already there; a fault past EOF makes none
        return
    for pgoff, pfn in pages:
        addr = vma.vm_start + ((pgoff - vma.vm_pgoff) << PAGE_SHIFT)
        if not mm.pgd.lookup(addr):
            set_pte_range(m, mm, vma, addr, pfn, False)


def do_cow_fault(m: Machine, pid: int, mm: MM, vma: VMA, va: int) -> int:
    """First access to a private file page is a write: copy the cached page into a new anon page."""
    src, _fresh, _major = filemap_fault(m, pid, vma, va)
    pfn = alloc_anon_page(m, pid, mm, vma, copy_from=src)
    pte = mk_pte(pfn, vma, True)
    mm.pgd.set(va, pte)
    m.events.add(pid, "file-copy", va, src, pfn, "first access is a write (do_cow_fault)")
    m.stat["file_copy"] += 1
    return pte


def do_shared_fault(m: Machine, pid: int, mm: MM, vma: VMA, va: int) -> int:
    """Write fault on a MAP_SHARED page: map the cached frame writable and mark it dirty."""
    pfn, fresh, _major = filemap_fault(m, pid, vma, va)
    m.phys.flags[pfn] |= PG_DIRTY
    pte = set_pte_range(m, mm, vma, va, pfn, True)
    kind = "shmem-alloc" if fresh else "shared-write"
    m.events.add(pid, kind, va, 0, pfn)
    return pte


def do_wp_page(m: Machine, pid: int, mm: MM, vma: VMA, va: int, pte: int) -> int:
    """Write to a present read-only PTE: shared -> make writable; private -> reuse or copy."""
    if vma.vm_flags & VM_SHARED:
        return wp_page_shared(m, pid, mm, va, pte)
    if not pte & PTE_SPECIAL:  # the zero page has no struct page to reuse (vm_normal_page is NULL)
        pfn = pte >> PAGE_SHIFT
        fl = int(m.phys.flags[pfn])
        if fl & PG_ANON and wp_can_reuse_anon_folio(m, mm, va, pfn, fl):
            return wp_page_reuse(m, pid, mm, va, pte, fl)
        if fl & PG_KSM:
            m.stat["cow_ksm"] += 1
    return wp_page_copy(m, pid, mm, vma, va, pte)


def wp_can_reuse_anon_folio(m: Machine, mm: MM, va: int, pfn: int, fl: int) -> bool:
    """May a write reuse this anon page? PageAnonExclusive, or nobody else holds it: refcount 1
    for a small page, the large-folio rule for a THP subpage; a KSM page never."""
    if fl & PG_ANON_EXCLUSIVE:
        return True
    if fl & PG_KSM:
        return False
    if fl & PG_COMPOUND:
        return large_folio_reusable(m, mm, va, pfn)
    if fl & PG_SWAPCACHE:
        return swapcache_reusable(m, pfn)
    return bool(m.phys.refcount[pfn] == 1)


def do_swap_page(m: Machine, pid: int, mm: MM, vma: VMA, va: int, pte: int, write: bool) -> int:
    """A swap entry: map the slot's frame (from the swap cache, or read back) again. It is mapped
    writable and exclusive when the entry was exclusive; a write fault also frees the swap slot
    if nothing else needs it; a page another entry or mapping still holds is mapped read-only
    (and a write goes on to do_wp_page, which copies it)."""
    slot = pte >> PAGE_SHIFT
    pfn, major = swap_readpage(m, pid, slot)
    phys = m.phys
    phys.mapcount[pfn] += 1
    phys.refcount[pfn] += 1
    mm.rss_anon += 1
    mm.swap_ents -= 1
    exclusive = bool(pte & PTE_SWP_EXCLUSIVE)
    swap_free(m, slot)
    if write and phys.refcount[pfn] == 2:  # should_try_to_free_swap: only we and the cache
        folio_free_swap(m, pfn)
    if exclusive or phys.refcount[pfn] == 1:
        phys.flags[pfn] |= PG_ANON_EXCLUSIVE
        new = mk_pte(pfn, vma, write) | (PTE_RW if vma.vm_flags & VM_WRITE else 0)
    else:
        new = mk_pte(pfn, vma, False)
    mm.pgd.set(va, new)
    m.events.add(pid, "swap-in", va, 0, pfn, "read from swap (major)" if major else "from the swap cache")
    if write and not new & PTE_RW:
        return do_wp_page(m, pid, mm, vma, va, new)
    return new


def wp_page_reuse(m: Machine, pid: int, mm: MM, va: int, pte: int, fl: int) -> int:
    """Nobody else holds the page: keep the frame, make the PTE writable (no copy)."""
    pfn = pte >> PAGE_SHIFT
    m.phys.flags[pfn] |= PG_ANON_EXCLUSIVE
    pte |= PTE_RW | PTE_DIRTY | PTE_YOUNG
    mm.pgd.set(va, pte)
    detail = "" if fl & PG_ANON_EXCLUSIVE else "no other process maps it any more"
    m.events.add(pid, "cow-reuse", va, pfn, pfn, detail)
    m.stat["cow_reuse"] += 1
    return pte


def wp_page_copy(m: Machine, pid: int, mm: MM, vma: VMA, va: int, pte: int) -> int:
    """Give this PTE a page of its own: a zeroed frame if it maps the zero page, else a copy of
    the old frame, whose map count and reference this PTE then drops."""
    old = pte >> PAGE_SHIFT
    if old == ZERO_PFN:  # is_zero_pfn
        kind = "zero-cow"
        new = alloc_anon_page(m, pid, mm, vma)
    else:
        kind = "cow-copy" if m.phys.flags[old] & PG_ANON else "file-copy"
        new = alloc_anon_page(m, pid, mm, vma, copy_from=old)
        rss_add_one(m, mm, old, -1)
        m.phys.mapcount[old] -= 1
        m.phys.put(np.array([old]))
    new_pte = mk_pte(new, vma, True)
    mm.pgd.set(va, new_pte)
    m.events.add(pid, kind, va, old, new)
    m.stat[kind.replace("-", "_")] += 1
    return new_pte


def wp_page_shared(m: Machine, pid: int, mm: MM, va: int, pte: int) -> int:
    """Write to a read-only PTE of a shared mapping: no copy, the page becomes dirty."""
    pfn = pte >> PAGE_SHIFT
    m.phys.flags[pfn] |= PG_DIRTY
    pte |= PTE_RW | PTE_DIRTY | PTE_YOUNG
    mm.pgd.set(va, pte)
    m.events.add(pid, "shared-write", va, pfn, pfn)
    return pte


# -- zap and copy ------------------------------------------------------------------------------

def zap_range(m: Machine, mm: MM, start: int, end: int, keep_markers: bool = False) -> None:
    """Unmap every PTE in [start, end): drop map counts, free frames nobody holds (zap_pte_range)."""
    if mm.pgd.pmds:
        zap_huge_pmds(m, mm, start, end)
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
        update_hiwater_rss(mm)
        rss_add(m, mm, pfns, -1)
        m.phys.unmap(pfns)
    if mm.swap_ents:
        zap_swap_entries(m, mm, ptes)
    if len(pfns):
        free_swap_cache(m, pfns)
    span.store(np.where(ptes & PTE_MARKER_GUARD, ptes, 0) if keep_markers else np.zeros_like(ptes))


def copy_page_range(m: Machine, dst: MM, src: MM, vma: VMA) -> None:
    """fork: copy the VMA's PTEs; private writable ones become read-only in both (CoW)."""
    phys = m.phys
    if src.pgd.pmds:
        copy_huge_pmds(m, dst, src, vma)
    span = src.pgd.span(vma.vm_start, vma.vm_end)
    if not span.blocks:
        return
    ptes = copy_swap_entries(m, dst, span) if src.swap_ents else span.ptes
    present = (ptes & PTE_PRESENT) != 0
    pfns = ptes[present & ((ptes & PTE_SPECIAL) == 0)] >> PAGE_SHIFT
    if len(pfns):
        phys.map_add(pfns, 1)
        phys.flags[pfns] &= np.uint16(~PG_ANON_EXCLUSIVE & 0xFFFF)
        rss_add(m, dst, pfns, 1)
    clear = PTE_YOUNG | (PTE_RW if vma.is_cow else 0) | (PTE_DIRTY if vma.is_shared else 0)
    child = np.where(present, ptes & ~clear, ptes)
    if vma.is_cow:
        span.store(np.where(present, ptes & ~PTE_RW, ptes))
    # copy_pmd_range gives the child a table for every populated parent table in the range
    Span([(dst.pgd.table(va), lo, hi, va) for _t, lo, hi, va in span.blocks]).store(child)
