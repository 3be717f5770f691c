"""Swap: one swap device with its swap map and the swap cache (mm/swapfile.c, mm/swap_state.c).

A swapped-out anonymous page is a non-present PTE holding a swap entry: the slot (offset) where
the pfn would be, PTE_SWP, and PTE_SWP_EXCLUSIVE when the page was PageAnonExclusive. `swap_map`
counts the entries referencing each slot (fork copies entries and raises the count). The swap
cache maps a slot to the frame holding its contents: a page just written out stays there (its
frame keeps one reference) until memory pressure frees it, so a swap-in usually finds it there,
as measured on 6.18 with a swapfile; only a slot whose frame was reclaimed is read back from
"disk" (a major fault, pswpin).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..arch import PAGE_SHIFT, PAGE_SIZE, PTE_SWP, PTE_SWP_EXCLUSIVE
from .page_alloc import PG_ANON_EXCLUSIVE, PG_DIRTY, PG_SWAPCACHE

if TYPE_CHECKING:
    from ..machine import Machine
    from .pgtable import Span
    from .vma import MM

SWP_TYPE = 0                # the one swap device: type 0 in pagemap's swap entries
_NOT_CACHED = np.uint16(~PG_SWAPCACHE & 0xFFFF)


class SwapInfo:
    """swap_info_struct of the machine's swap area: slots 1..nr_slots-1 (slot 0 is the header)."""

    def __init__(self, nbytes: int) -> None:
        self.nr_slots = max(nbytes // PAGE_SIZE, 2)
        self.swap_map = np.zeros(self.nr_slots, dtype=np.int32)   # swap entries per slot
        self.cache: dict[int, int] = {}                           # slot -> pfn (swap cache)
        self.slot_of: dict[int, int] = {}                         # pfn -> slot
        self.store: dict[int, bytes | int] = {}                   # slot -> contents on "disk"
        self.inuse = 0                                            # slots counted or cached
        self._cursor = 1

    @property
    def total_kb(self) -> int:
        return (self.nr_slots - 1) * (PAGE_SIZE >> 10)

    @property
    def free_kb(self) -> int:
        return (self.nr_slots - 1 - self.inuse) * (PAGE_SIZE >> 10)

    def get_swap_page(self) -> int:
        """A free slot (0 when swap is full): the next free one from a rotating cursor."""
        if self.inuse >= self.nr_slots - 1:
            return 0
        n = self.nr_slots
        for i in range(n - 1):
            slot = 1 + (self._cursor - 1 + i) % (n - 1)
            if not self.swap_map[slot] and slot not in self.cache and slot not in self.store:
                self._cursor = slot + 1
                self.inuse += 1
                return slot
        return 0

    def _release(self, slot: int) -> None:
        """The slot holds nothing any more: no entry references it, no frame caches it."""
        self.store.pop(slot, None)
        self.inuse -= 1


def swp_entry(slot: int, exclusive: bool) -> int:
    """The non-present PTE for a swap entry."""
    return (slot << PAGE_SHIFT) | PTE_SWP | (PTE_SWP_EXCLUSIVE if exclusive else 0)


def add_to_swap_cache(m: Machine, pfn: int, slot: int) -> None:
    """The frame caches the slot (and holds one more reference for it)."""
    si = m.swap
    assert si is not None
    si.cache[slot] = pfn
    si.slot_of[pfn] = slot
    m.phys.flags[pfn] |= PG_SWAPCACHE
    m.phys.refcount[pfn] += 1


def delete_from_swap_cache(m: Machine, pfn: int) -> None:
    """The frame leaves the swap cache (dropping its reference; it may be freed); the slot is
    released when no swap entry references it either."""
    si = m.swap
    assert si is not None
    slot = si.slot_of.pop(pfn)
    del si.cache[slot]
    m.phys.flags[pfn] &= _NOT_CACHED
    if not si.swap_map[slot]:
        si._release(slot)
    m.phys.put(np.array([pfn]))


def folio_free_swap(m: Machine, pfn: int) -> bool:
    """Drop the frame from the swap cache if no swap entry references its slot any more."""
    si = m.swap
    if si is None or pfn not in si.slot_of or si.swap_map[si.slot_of[pfn]]:
        return False
    m.phys.flags[pfn] |= PG_DIRTY  # the only copy of the data is the page now
    delete_from_swap_cache(m, pfn)
    return True


def free_swap_cache(m: Machine, pfns: np.ndarray) -> None:
    """free_pages_and_swap_cache after a zap: a page of the swap cache that no PTE maps any more
    and no swap entry needs leaves the cache (and is freed)."""
    si = m.swap
    if si is None or not si.cache:
        return
    cached = pfns[(m.phys.flags[pfns] & PG_SWAPCACHE) != 0]
    for pfn in np.unique(cached).tolist():
        if pfn in si.slot_of and not m.phys.mapcount[pfn]:
            folio_free_swap(m, pfn)


def swapcache_reusable(m: Machine, pfn: int) -> bool:
    """wp_can_reuse_anon_folio for a page in the swap cache: only this PTE and the cache hold
    it, and the cache lets go because no swap entry needs the slot any more."""
    return bool(m.phys.refcount[pfn] == 2) and folio_free_swap(m, pfn)


def swap_free(m: Machine, slot: int) -> None:
    """One swap entry for the slot went away (swap_free / free_swap_and_cache): at zero the slot
    is released, and a cached frame nobody maps leaves the swap cache (and is freed)."""
    si = m.swap
    assert si is not None
    si.swap_map[slot] -= 1
    if si.swap_map[slot]:
        return
    pfn = si.cache.get(slot)
    if pfn is None:
        si._release(slot)
    elif not m.phys.mapcount[pfn]:
        delete_from_swap_cache(m, pfn)


def zap_swap_entries(m: Machine, mm: MM, ptes: np.ndarray) -> None:
    """zap_pte_range for the swap entries among ptes (munmap, exit, MADV_DONTNEED/FREE)."""
    slots = ptes[(ptes & PTE_SWP) != 0] >> PAGE_SHIFT
    for slot in slots.tolist():
        swap_free(m, slot)
    mm.swap_ents -= len(slots)


def free_swap_entries(m: Machine, mm: MM, start: int, end: int) -> None:
    """MADV_FREE over swap entries: they are dropped (the range reads zeros afterwards)."""
    for t, lo, hi, _va in mm.pgd.blocks(start, end):
        ptes = t[lo:hi]
        swp = (ptes & PTE_SWP) != 0
        if swp.any():
            zap_swap_entries(m, mm, ptes[swp])
            t[lo:hi] = np.where(swp, 0, ptes)


def copy_swap_entries(m: Machine, dst: MM, span: Span) -> np.ndarray:
    """copy_nonpresent_pte for the span's swap entries: both processes reference each slot (its
    count goes up) and neither entry stays exclusive. Returns the parent's updated entries."""
    ptes = span.ptes
    swp = (ptes & PTE_SWP) != 0
    if not swp.any():
        return ptes
    si = m.swap
    assert si is not None
    np.add.at(si.swap_map, ptes[swp] >> PAGE_SHIFT, 1)
    ptes = np.where(swp, ptes & ~PTE_SWP_EXCLUSIVE, ptes)
    span.store(ptes)
    dst.swap_ents += int(np.count_nonzero(swp))
    return ptes


def swap_readpage(m: Machine, pid: int, slot: int) -> tuple[int, bool]:
    """The frame holding the slot's contents: from the swap cache, or a new frame read from the
    swap area and added to the cache (a major fault). Returns (pfn, read from disk)."""
    si = m.swap
    assert si is not None
    pfn = si.cache.get(slot)
    if pfn is not None:
        return pfn, False
    from .memory import ANON_FLAGS

    pfn = m.alloc_page(pid, ANON_FLAGS & ~PG_ANON_EXCLUSIVE, 0)
    m.phys.set_page(pfn, si.store.get(slot, 0))
    m.phys.refcount[pfn] = 0
    add_to_swap_cache(m, pfn, slot)
    m.stat["pswpin"] += 1
    m.count_major(pid)
    return pfn, True


def swap_writepage(m: Machine, pfn: int) -> int:
    """Give an anon frame a slot (add_to_swap) and write its contents there (pageout): the slot,
    0 when swap is full. The frame stays in the swap cache."""
    si = m.swap
    assert si is not None
    slot = si.slot_of.get(pfn, 0)
    if not slot:
        slot = si.get_swap_page()
        if not slot:
            return 0
        add_to_swap_cache(m, pfn, slot)
    si.store[slot] = m.phys.page_bytes(pfn) if m.phys.content[pfn] < 0 else int(m.phys.content[pfn])
    m.stat["pswpout"] += 1
    m.stat["pgpgout"] += PAGE_SIZE >> 10
    return slot


def swap_pss(m: Machine, ptes: np.ndarray) -> int:
    """SwapPss of these swap entries, in the PSS fixed point (12 fractional bits): each entry's
    share of its slot."""
    si = m.swap
    slots = ptes >> PAGE_SHIFT
    counts = np.maximum(si.swap_map[slots], 1) if si is not None else np.ones(len(slots), np.int64)
    return int(((PAGE_SIZE << 12) // counts).sum())


def check_swap(m: Machine, mms: list[MM]) -> None:
    """Invariants: swap_map counts the swap entries in every mm; each mm's MM_SWAPENTS is its
    entries; the swap cache and its frames agree; in-use slots are the counted or cached ones."""
    si = m.swap
    counts = np.zeros(si.nr_slots if si else 1, dtype=np.int64)
    for mm in mms:
        n = 0
        for t in mm.pgd.tables.values():
            slots = t[(t & PTE_SWP) != 0] >> PAGE_SHIFT
            np.add.at(counts, slots, 1)
            n += len(slots)
        assert n == mm.swap_ents, f"check: MM_SWAPENTS {mm.swap_ents} != {n} swap entries"
    if si is None:
        return
    bad = np.flatnonzero(counts != si.swap_map)
    assert not len(bad), f"check: swap_map != swap entries for slots {bad[:8].tolist()}"
    for slot, pfn in si.cache.items():
        assert si.slot_of.get(pfn) == slot and m.phys.flags[pfn] & PG_SWAPCACHE, \
            f"check: swap cache slot {slot} / frame {pfn:#x} disagree"
    assert len(si.slot_of) == len(si.cache), "check: swap cache maps are not inverse"
    used = set(np.flatnonzero(si.swap_map).tolist()) | set(si.cache)
    assert len(used) == si.inuse, f"check: {si.inuse} slots in use, {len(used)} counted or cached"
