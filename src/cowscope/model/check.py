"""The model's invariants (Machine.check()): every count agrees with the page tables that imply it.

Frames: map counts equal the PTEs mapping them, references equal maps plus page-cache and
swap-cache holds, free frames are unmapped, nothing in use is unreferenced; large folios: their PMD
maps equal the PMD leaves; per mm: VMAs sorted and disjoint, PTEs and PMDs inside VMAs, no writable
PTE to a shared page in a private VMA, RSS counters equal the mapped pages; swap: see check_swap;
commit accounting equals the VM_ACCOUNT VMAs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .arch import PAGE_SHIFT, PTE_MARKER_GUARD, PTE_PRESENT, PTE_RW, PTE_SPECIAL
from .mm.page_alloc import (
    FOLIO_NR,
    FOLIO_SHIFT,
    PG_ANON,
    PG_COMPOUND,
    PG_FILE,
    PG_HEAD,
    PG_INUSE,
    PG_SWAPBACKED,
    PG_SWAPCACHE,
    ZERO_PFN,
)
from .mm.swapfile import check_swap
from .mm.vma import MM, VM_ACCOUNT, VM_SHARED, VMA

if TYPE_CHECKING:
    from .machine import Machine


def check_machine(m: Machine) -> None:
    """Every invariant of the machine; AssertionError naming the first one broken."""
    phys = m.phys
    n = len(phys.mapcount)
    maps = np.zeros(n, dtype=np.int64)
    entire = np.zeros_like(phys.entire)
    for mm in m._mms():
        _check_mm(m, mm, maps, entire)
    bad = np.flatnonzero(entire != phys.entire) << FOLIO_SHIFT
    assert not len(bad), f"check: PMDs mapping != entire mapcount of folios {bad[:8].tolist()}"
    used = (phys.flags & PG_INUSE) != 0
    used[ZERO_PFN] = False
    bad = np.flatnonzero(maps != np.where(np.arange(n) == ZERO_PFN, 0, phys.mapcount))
    assert not len(bad), f"check: mapcount != PTEs mapping the frame for pfns {bad[:8].tolist()}"
    cached = np.zeros(n, dtype=bool)
    for f in list(m.files.values()) + m._shmem_files():
        for pfn in f.page_cache.values():
            cached[pfn] = True
    expect_ref = phys.mapcount + cached + ((phys.flags & PG_SWAPCACHE) != 0)
    bad = np.flatnonzero(used & (phys.refcount != expect_ref))
    assert not len(bad), f"check: refcount != mapcount + page-cache ref for pfns {bad[:8].tolist()}"
    assert not np.any(~used & (maps > 0)), "check: a free frame is still mapped"
    assert int(used.sum()) == phys.nr_used, f"check: nr_used {phys.nr_used} != {int(used.sum())} in use"
    large = (phys.flags & PG_COMPOUND) != 0
    leaked = np.flatnonzero(used & (phys.refcount == 0) & ~large)
    assert not len(leaked), f"check: frames in use with no reference: {leaked[:8].tolist()}"
    check_swap(m, m._mms())
    for head in np.flatnonzero(phys.flags & PG_HEAD).tolist():
        assert phys.entire[head >> FOLIO_SHIFT] or phys.refcount[head:head + FOLIO_NR].any(), \
            f"check: large folio {head:#x} in use with no reference"
    committed = sum(v.npages for mm in m._mms() for v in mm.vmas if v.vm_flags & VM_ACCOUNT)
    committed += sum(f.shmem_charge for f in m._shmem_files())
    assert committed == m.acct.committed, \
        f"check: Committed_AS {m.acct.committed} pages != {committed} of VM_ACCOUNT VMAs and shmem"


def _check_mm(m: Machine, mm: MM, maps: np.ndarray, entire: np.ndarray) -> None:
    """Per-mm invariants: sorted VMAs, PTEs inside VMAs, no writable shared private page, RSS."""
    phys = m.phys
    prev_end = 0
    for v in mm.vmas:
        assert v.vm_start < v.vm_end and v.vm_start >= prev_end, f"check: VMAs overlap at {v.vm_start:#x}"
        prev_end = v.vm_end
    counted = {"anon": 0, "file": 0, "shmem": 0}
    inside = 0
    for v in mm.vmas:
        for t, lo, hi, _va in mm.pgd.blocks(v.vm_start, v.vm_end):
            ptes = t[lo:hi]
            normal = ((ptes & PTE_PRESENT) != 0) & ((ptes & PTE_SPECIAL) == 0)
            pfns = ptes[normal] >> PAGE_SHIFT
            np.add.at(maps, pfns, 1)
            inside += int(np.count_nonzero(ptes & (PTE_PRESENT | PTE_MARKER_GUARD)))
            fl = phys.flags[pfns]
            counted["anon"] += int(np.count_nonzero(fl & PG_ANON))
            sh = int(np.count_nonzero((fl & (PG_FILE | PG_SWAPBACKED)) == (PG_FILE | PG_SWAPBACKED)))
            counted["shmem"] += sh
            counted["file"] += len(pfns) - int(np.count_nonzero(fl & PG_ANON)) - sh
            if not v.vm_flags & VM_SHARED:
                w = ((ptes[normal] & PTE_RW) != 0)
                assert np.all(phys.precise_mapcount(pfns[w]) == 1), \
                    f"check: writable PTE to a shared frame in private VMA at {v.vm_start:#x}"
                assert np.all(fl[w] & PG_ANON), \
                    f"check: writable PTE to a file page in private VMA {v.vm_start:#x}"
        inside += _check_leaves(m, mm, v, entire, counted)
    total = sum(int(np.count_nonzero(t & (PTE_PRESENT | PTE_MARKER_GUARD))) for t in mm.pgd.tables.values())
    assert total + mm.pgd.nr_leaves() == inside, "check: a present PTE or PMD lies outside every VMA"
    assert (mm.rss_anon, mm.rss_file, mm.rss_shmem) == (counted["anon"], counted["file"], counted["shmem"]), \
        f"check: RSS counters {(mm.rss_anon, mm.rss_file, mm.rss_shmem)} != PTE counts {counted}"



def _check_leaves(m: Machine, mm: MM, v: VMA, entire: np.ndarray, counted: dict[str, int]) -> int:
    """Huge PMDs inside VMA v: count them per folio and as RSS; a writable one maps an exclusive
    folio nobody else maps. Returns the number of leaves."""
    leaves = mm.pgd.leaves(v.vm_start, v.vm_end)
    for haddr, leaf in leaves:
        assert v.vm_start <= haddr and haddr + (FOLIO_NR << PAGE_SHIFT) <= v.vm_end, \
            f"check: huge PMD at {haddr:#x} crosses the edge of its VMA"
        if leaf & PTE_SPECIAL:
            assert not leaf & PTE_RW, f"check: writable huge zero page at {haddr:#x}"
            continue
        head = leaf >> PAGE_SHIFT
        assert m.phys.flags[head] & PG_HEAD, f"check: huge PMD at {haddr:#x} maps no folio head"
        entire[head >> FOLIO_SHIFT] += 1
        counted["anon"] += FOLIO_NR
        if leaf & PTE_RW:
            assert m.phys.entire[head >> FOLIO_SHIFT] == 1 and not m.phys.refcount[head:head + FOLIO_NR].any(), \
                f"check: writable huge PMD to a shared folio at {haddr:#x}"
    return len(leaves)
