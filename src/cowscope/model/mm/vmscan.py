"""Reclaim: MADV_PAGEOUT / MADV_COLD and memory pressure (mm/vmscan.c, madvise_cold_or_pageout).

MADV_PAGEOUT writes the range's private anon pages to swap now: each becomes a swap entry and its
frame stays in the swap cache (writeback is asynchronous on the kernel; nothing frees the frame
until memory pressure). Pages mapped by more than one process are skipped, as 6.x does; a huge
PMD is split and its folio split first (thp_swpout_fallback: a swapfile has no THP clusters).
MADV_COLD only ages the pages (clears their accessed bits); there is no LRU list in the model.

Memory pressure (`shrink_memory`, before the OOM killer): split partly mapped THPs (the deferred
split queue), evict unmapped page-cache pages of files (written back first when dirty), free
unmapped frames in the swap cache, then swap out exclusively mapped anon pages,
the largest process first, oldest (unaccessed) pages first. That ordering approximates the
kernel's LRU, which the model does not keep.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...errors import EINVAL, SyscallError
from ..arch import PAGE_SHIFT, PTE_PRESENT, PTE_SPECIAL, PTE_YOUNG
from .huge_memory import split_huge_pmd
from .page_alloc import FOLIO_NR, PG_ANON, PG_ANON_EXCLUSIVE, PG_COMPOUND, PG_DIRTY, PG_KSM
from .swapfile import delete_from_swap_cache, swap_writepage, swp_entry
from .vma import MM, VM_LOCKED, VMA

if TYPE_CHECKING:
    from ..machine import Machine

_NOT_EXCL_DIRTY = np.uint16(~(PG_ANON_EXCLUSIVE | PG_DIRTY) & 0xFFFF)


def madvise_cold_or_pageout(m: Machine, pid: int, mm: MM, vma: VMA, start: int, end: int,
                            pageout: bool) -> None:
    """MADV_COLD / MADV_PAGEOUT over one VMA's part [start, end)."""
    if vma.vm_flags & VM_LOCKED:
        raise SyscallError(EINVAL, "madvise", "MADV_COLD/MADV_PAGEOUT on a locked mapping")
    if vma.vm_file is not None or vma.is_shared:
        return  # page-cache pages: not modelled (clean file pages would just be dropped)
    _split_for_reclaim(m, mm, start, end, pageout)
    for t, lo, hi, va in mm.pgd.blocks(start, end):
        idx = lo + _exclusive_anon(m, t[lo:hi])
        if not pageout:
            t[idx] &= ~PTE_YOUNG
            continue
        for i in idx.tolist():
            pfn = int(t[i]) >> PAGE_SHIFT
            if not pageout_page(m, mm, t, i):
                return  # swap is full (or there is none)
            m.events.add(pid, "swap-out", va + ((i - lo) << PAGE_SHIFT), pfn, 0,
                         f"slot {int(t[i]) >> PAGE_SHIFT} (MADV_PAGEOUT)")


def _exclusive_anon(m: Machine, ptes: np.ndarray) -> np.ndarray:
    """Positions of present anon pages mapped only here (not shared, not KSM, not the zero page)."""
    normal = ((ptes & PTE_PRESENT) != 0) & ((ptes & PTE_SPECIAL) == 0)
    pfns = np.where(normal, ptes >> PAGE_SHIFT, 0)
    fl = m.phys.flags[pfns]
    ok = normal & ((fl & (PG_ANON | PG_KSM)) == PG_ANON) & (m.phys.precise_mapcount(pfns) == 1)
    return np.flatnonzero(ok)


def _split_for_reclaim(m: Machine, mm: MM, start: int, end: int, pageout: bool) -> None:
    """Huge PMDs in the range are split; for pageout, so are the folios only this PMD maps."""
    phys = m.phys
    for haddr, leaf in mm.pgd.leaves(start, end) if mm.pgd.pmds else ():
        if leaf & PTE_SPECIAL or not pageout:
            continue
        head = leaf >> PAGE_SHIFT
        if phys.entire[head >> 9] != 1 or phys.refcount[head:head + FOLIO_NR].any():
            continue  # mapped by another process too: skipped
        split_huge_pmd(m, mm, haddr)
        phys.split_folio(head)
        m.stat["thp_swpout_fallback"] += 1
    for t, lo, hi, _va in mm.pgd.blocks(start, end) if pageout and phys.nr_folios else ():
        pfns = t[lo:hi][(t[lo:hi] & PTE_PRESENT) != 0] >> PAGE_SHIFT
        for head in np.unique(pfns[(phys.flags[pfns] & PG_COMPOUND) != 0] & ~(FOLIO_NR - 1)).tolist():
            sl = slice(head, head + FOLIO_NR)
            if not phys.entire[head >> 9] and (phys.mapcount[sl] <= 1).all() and \
                    int(phys.mapcount[sl].sum()) == int(phys.refcount[sl].sum()):
                phys.split_folio(head)


def pageout_page(m: Machine, mm: MM, table: np.ndarray, i: int) -> bool:
    """shrink_folio_list for one exclusively mapped anon page at table[i]: write it to swap, put a
    swap entry in its PTE; the frame stays in the swap cache. False when swap is full."""
    if m.swap is None:
        return False
    phys = m.phys
    pte = int(table[i])
    pfn = pte >> PAGE_SHIFT
    slot = swap_writepage(m, pfn)
    if not slot:
        return False
    exclusive = bool(phys.flags[pfn] & PG_ANON_EXCLUSIVE)
    phys.flags[pfn] &= _NOT_EXCL_DIRTY  # written out: clean, and no longer exclusive (shared with the slot)
    table[i] = swp_entry(slot, exclusive)
    m.swap.swap_map[slot] += 1
    mm.swap_ents += 1
    mm.rss_anon -= 1
    phys.mapcount[pfn] -= 1
    phys.put(np.array([pfn]))
    return True


# -- memory pressure ----------------------------------------------------------------------------

def shrink_memory(m: Machine, want: int = 32) -> int:
    """Free about `want` frames before the OOM killer runs; returns the frames freed."""
    phys = m.phys
    before = phys.nr_used
    for head in sorted(phys.deferred):
        phys.split_folio(head)
    _shrink_page_cache(m, want)
    if m.swap is not None and before - phys.nr_used < want:
        _shrink_swap_cache(m)
        if before - phys.nr_used < want:
            _swap_out(m, want - (before - phys.nr_used))
            _shrink_swap_cache(m)  # no asynchronous writeback to wait for: freed at once
    return before - phys.nr_used


def _shrink_page_cache(m: Machine, want: int) -> None:
    """Evict page-cache pages of files that no process maps and nothing else holds (shmem stays:
    it has no disk); a dirty one is written back first. The oldest files first (no LRU here)."""
    phys = m.phys
    done = 0
    for f in list(m.files.values()):
        if f.is_shmem:
            continue
        for pgoff, pfn in list(f.page_cache.items()):
            if phys.mapcount[pfn] or phys.refcount[pfn] != 1 or phys.flags[pfn] & PG_COMPOUND:
                continue
            f.writeback(phys, pgoff)
            del f.page_cache[pgoff]
            f.ra_marks.discard(pgoff)
            phys.put(np.array([pfn]))
            m.stat["pgsteal_file"] += 1
            done += 1
            if done >= want:
                return


def _shrink_swap_cache(m: Machine) -> None:
    """Frames in the swap cache that no PTE maps are clean copies of their slot: free them."""
    si = m.swap
    assert si is not None
    for pfn in [p for p in si.cache.values() if not m.phys.mapcount[p]]:
        delete_from_swap_cache(m, pfn)


def _swap_out(m: Machine, want: int) -> None:
    """Swap out exclusively mapped anon pages: largest process first, unaccessed pages first (the
    accessed ones lose their bit, as a second chance)."""
    done = 0
    for mm in sorted(_mms(m), key=lambda mm: -(mm.rss_anon)):
        for young_ok in (False, True):
            for vma in list(mm.vmas):
                if vma.vm_file is not None or vma.is_shared or vma.vm_flags & VM_LOCKED:
                    continue
                _split_for_reclaim(m, mm, vma.vm_start, vma.vm_end, True)
                for t, lo, hi, _va in mm.pgd.blocks(vma.vm_start, vma.vm_end):
                    idx = lo + _exclusive_anon(m, t[lo:hi])
                    if not young_ok:
                        idx = idx[(t[idx] & PTE_YOUNG) == 0]
                    for i in idx.tolist():
                        if not pageout_page(m, mm, t, i):
                            return
                        m.stat["pgsteal_anon"] += 1
                        done += 1
                        if done >= want:
                            return


def _mms(m: Machine) -> list[MM]:
    seen: dict[int, MM] = {}
    for p in m.processes.values():
        if p.mm is not None and p.alive:
            seen[id(p.mm)] = p.mm
    return list(seen.values())
