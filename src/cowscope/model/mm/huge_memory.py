"""Transparent huge pages: 2 MiB folios mapped by one PMD, the huge zero page, PMD split.

As mm/huge_memory.c: a fault in a THP-enabled anonymous VMA whose aligned 2 MiB block has no
page table yet maps a whole folio (write) or the huge zero page (read) with one PMD
(`do_huge_pmd_anonymous_page`); fork shares the PMD write-protected (`copy_huge_pmd`); a write to
it reuses the whole folio when nobody else holds it, allocates a fresh folio for the huge zero
page, and otherwise splits the PMD into 512 PTEs so that the 4 KiB path copies one page
(`do_huge_pmd_wp_page`). Any change that covers part of a PMD splits it first (`split_huge_pmd`).
`ThpSettings.kernel` selects the older rules (before 5.8 a write to a shared THP copied 2 MiB;
before 6.13 a write to the huge zero page split it into 4 KiB zero-page PTEs); only 6.18 is
checked against a kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..arch import (
    HPAGE_PMD_NR,
    PAGE_SHIFT,
    PMD_SHIFT,
    PMD_SIZE,
    PTE_DIRTY,
    PTE_PRESENT,
    PTE_PSE,
    PTE_RW,
    PTE_SPECIAL,
    PTE_USER,
    PTE_YOUNG,
)
from .page_alloc import (
    FOLIO_SHIFT,
    HUGE_ZERO_PFN,
    PG_ANON,
    PG_ANON_EXCLUSIVE,
    PG_COMPOUND,
    PG_DIRTY,
    PG_SWAPBACKED,
    ZERO_PFN,
    OutOfMemory,
)
from .vma import MM, VM_HUGEPAGE, VM_NOHUGEPAGE, VM_READ, VM_SHARED, VM_WRITE, VMA, AnonVma

if TYPE_CHECKING:
    from ..machine import Machine

THP_MODES = ("always", "madvise", "never")
PMD_MASK = ~(PMD_SIZE - 1)
LEAF = PTE_PRESENT | PTE_USER | PTE_YOUNG | PTE_PSE
HUGE_ZERO_LEAF = (HUGE_ZERO_PFN << PAGE_SHIFT) | LEAF | PTE_SPECIAL
_ANON = PG_ANON | PG_ANON_EXCLUSIVE | PG_SWAPBACKED
_NOT_EXCL = np.uint16(~PG_ANON_EXCLUSIVE & 0xFFFF)


@dataclass
class ThpSettings:
    """/sys/kernel/mm/transparent_hugepage: `enabled` and `use_zero_page`, plus the kernel version
    whose rules apply (6.18 is what this machine runs; older rules are documented, unchecked)."""

    enabled: str = "madvise"
    use_zero_page: bool = True
    kernel: tuple[int, int] = (6, 18)

    def __post_init__(self) -> None:
        if self.enabled not in THP_MODES:
            raise ValueError(f"thp must be one of {THP_MODES}, got {self.enabled!r}")

    @property
    def split_on_cow(self) -> bool:
        """A write to a shared THP splits it and copies 4 KiB (5.8+), instead of copying 2 MiB."""
        return self.kernel >= (5, 8)

    @property
    def zero_wp_allocates(self) -> bool:
        """A write to the huge zero page maps a new THP (6.13+), instead of 4 KiB zero PTEs."""
        return self.kernel >= (6, 13)

    @property
    def large_folio_reuse(self) -> bool:
        """A PTE-mapped large folio only this mm maps is reused on write (6.15+)."""
        return self.kernel >= (6, 15)


def parse_kernel(version: str) -> tuple[int, int]:
    """'6.18' -> (6, 18)."""
    try:
        major, minor = (int(x) for x in str(version).split(".")[:2])
    except ValueError:
        raise ValueError(f"kernel must look like '6.18' or '5.4', got {version!r}") from None
    return major, minor


# -- which VMAs get huge pages ------------------------------------------------------------------

def vma_thp_enabled(m: Machine, vma: VMA) -> bool:
    """The THP mode allows huge pages in this VMA: private anonymous, and `always`, or `madvise`
    with MADV_HUGEPAGE; MADV_NOHUGEPAGE always says no."""
    mode = m.thp.enabled
    if mode == "never" or vma.vm_file is not None or vma.vm_flags & (VM_SHARED | VM_NOHUGEPAGE):
        return False
    return mode == "always" or bool(vma.vm_flags & VM_HUGEPAGE)


def thp_vma_suitable(vma: VMA, haddr: int) -> bool:
    """The aligned 2 MiB block at haddr lies inside the VMA."""
    return vma.vm_start <= haddr and haddr + PMD_SIZE <= vma.vm_end


def thp_eligible(m: Machine, vma: VMA) -> int:
    """smaps THPeligible: enabled for the VMA and the VMA holds at least one aligned 2 MiB."""
    first = (vma.vm_start + PMD_SIZE - 1) & PMD_MASK
    return int(vma_thp_enabled(m, vma) and first + PMD_SIZE <= vma.vm_end)


def subpage_pte(leaf: int, va: int) -> int:
    """The entry a PTE would hold for the 4 KiB subpage of va inside the PMD leaf."""
    return leaf + (((va >> PAGE_SHIFT) & (HPAGE_PMD_NR - 1)) << PAGE_SHIFT)


def _install(m: Machine, mm: MM, haddr: int, leaf: int) -> None:
    mm.pgd.pmd_set(haddr, leaf)
    if mm.on_split is None:  # from now on a VMA split inside a PMD must split it (vma_adjust_trans_huge)
        mm.on_split = lambda at: split_huge_pmd_address(m, mm, at)


# -- faults -------------------------------------------------------------------------------------

def huge_pmd_fault(m: Machine, pid: int, mm: MM, vma: VMA, va: int, write: bool) -> int:
    """The PMD level of handle_mm_fault: returns the subpage's PTE when a PMD resolved the
    access, 0 when the 4 KiB path must (no huge page here, or the PMD was just split)."""
    haddr = va & PMD_MASK
    leaf = mm.pgd.pmd_get(va) if mm.pgd.pmds else 0
    if leaf:
        if write and not leaf & PTE_RW:
            leaf = do_huge_pmd_wp_page(m, pid, mm, vma, haddr, leaf)
            return subpage_pte(leaf, va) if leaf else 0
        m.count_fault(pid)
        leaf |= PTE_YOUNG | (PTE_DIRTY if write else 0)
        mm.pgd.pmd_set(haddr, leaf)
        return subpage_pte(leaf, va)
    if not vma_thp_enabled(m, vma) or not thp_vma_suitable(vma, haddr) or \
            (va >> PMD_SHIFT) in mm.pgd.tables:
        return 0
    leaf = do_huge_pmd_anonymous_page(m, pid, mm, vma, haddr, write)
    return subpage_pte(leaf, va) if leaf else 0


def do_huge_pmd_anonymous_page(m: Machine, pid: int, mm: MM, vma: VMA, haddr: int, write: bool) -> int:
    """First touch of an empty THP-able 2 MiB block: the huge zero page for a read, a new zeroed
    2 MiB folio for a write. Returns the leaf, 0 when no folio could be had (4 KiB fallback)."""
    if vma.anon_vma is None:  # vmf_anon_prepare comes first, even for the huge zero page
        vma.anon_vma = AnonVma()
    if not write and m.thp.use_zero_page:
        if not m.stat["thp_zero_page_alloc"]:
            m.stat["thp_zero_page_alloc"] = 1  # the huge zero folio is allocated on first use
        m.count_fault(pid)
        _install(m, mm, haddr, HUGE_ZERO_LEAF)
        m.events.add(pid, "thp-zero-map", haddr, 0, HUGE_ZERO_PFN, "2 MiB huge zero page")
        return HUGE_ZERO_LEAF
    leaf = _new_folio_leaf(m, vma)
    if not leaf:
        return 0
    m.count_fault(pid)
    _account_new(m, mm, haddr, leaf)
    m.events.add(pid, "thp-alloc", haddr, 0, leaf >> PAGE_SHIFT, "2 MiB folio mapped by one PMD")
    return leaf


def _new_folio_leaf(m: Machine, vma: VMA) -> int:
    """A fresh zeroed exclusive folio as a writable dirty leaf; 0 (and thp_fault_fallback) if
    no 512 contiguous frames are free."""
    try:
        head = m.phys.alloc_folio(_ANON, 0)
    except OutOfMemory:
        m.stat["thp_fault_fallback"] += 1
        return 0
    m.phys.entire[head >> FOLIO_SHIFT] = 1
    m.stat["thp_fault_alloc"] += 1
    leaf = (head << PAGE_SHIFT) | LEAF
    if vma.vm_flags & VM_WRITE:
        leaf |= PTE_RW | PTE_DIRTY
    return leaf


def _account_new(m: Machine, mm: MM, haddr: int, leaf: int) -> None:
    _install(m, mm, haddr, leaf)
    mm.rss_anon += HPAGE_PMD_NR
    mm.hiwater_rss = max(mm.hiwater_rss, mm.rss_anon + mm.rss_file + mm.rss_shmem)


def do_huge_pmd_wp_page(m: Machine, pid: int, mm: MM, vma: VMA, haddr: int, leaf: int) -> int:
    """Write to a write-protected PMD: the huge zero page gets a new folio; a folio nobody else
    holds is reused whole; otherwise the PMD is split (return 0: the 4 KiB path copies one page)."""
    if leaf & PTE_SPECIAL:
        return _huge_zero_wp(m, pid, mm, vma, haddr)
    phys = m.phys
    head = leaf >> PAGE_SHIFT
    if phys.flags[head] & PG_ANON_EXCLUSIVE or folio_held_by_one_pmd(m, head):
        m.count_fault(pid)
        phys.flags[head] |= PG_ANON_EXCLUSIVE
        leaf |= PTE_RW | PTE_DIRTY | PTE_YOUNG
        mm.pgd.pmd_set(haddr, leaf)
        m.events.add(pid, "cow-reuse", haddr, head, head, "the whole 2 MiB PMD (do_huge_pmd_wp_page)")
        m.stat["cow_reuse"] += 1
        return leaf
    if not m.thp.split_on_cow:
        new = _new_folio_leaf(m, vma)
        if new:
            return _copy_whole_folio(m, pid, mm, haddr, leaf, new)
    split_huge_pmd(m, mm, haddr)
    return 0


def _huge_zero_wp(m: Machine, pid: int, mm: MM, vma: VMA, haddr: int) -> int:
    if m.thp.zero_wp_allocates:
        leaf = _new_folio_leaf(m, vma)
        if leaf:
            m.count_fault(pid)
            _account_new(m, mm, haddr, leaf)
            m.events.add(pid, "thp-alloc", haddr, HUGE_ZERO_PFN, leaf >> PAGE_SHIFT,
                         "write to the huge zero page: a new 2 MiB folio")
            return leaf
    split_huge_pmd(m, mm, haddr)
    return 0


def _copy_whole_folio(m: Machine, pid: int, mm: MM, haddr: int, old: int, new: int) -> int:
    """The pre-5.8 rule: copy all 512 subpages into the new folio and map it instead."""
    phys = m.phys
    src = np.arange(old >> PAGE_SHIFT, (old >> PAGE_SHIFT) + HPAGE_PMD_NR, dtype=np.int64)
    dst = np.arange(new >> PAGE_SHIFT, (new >> PAGE_SHIFT) + HPAGE_PMD_NR, dtype=np.int64)
    phys.copy(dst, src)
    m.count_fault(pid)
    mm.pgd.pmd_set(haddr, new)
    phys.entire[src[0] >> FOLIO_SHIFT] -= 1
    phys.folio_put(int(src[0]))
    m.events.add(pid, "thp-copy", haddr, int(src[0]), int(dst[0]), "2 MiB copied (the rule before Linux 5.8)")
    m.stat["cow_copy"] += HPAGE_PMD_NR
    return new


def folio_held_by_one_pmd(m: Machine, head: int) -> bool:
    """folio_ref_count == 1: one PMD maps the folio and no PTE or swap cache holds a subpage."""
    phys = m.phys
    return int(phys.entire[head >> FOLIO_SHIFT]) == 1 and \
        not phys.refcount[head:head + HPAGE_PMD_NR].any()


def large_folio_reusable(m: Machine, mm: MM, va: int, pfn: int) -> bool:
    """wp_can_reuse_anon_folio for a PTE-mapped subpage of a large folio (6.15+): reuse when no
    PMD maps the folio, only this mm's PTEs map it, and nothing else holds a reference."""
    if not m.thp.large_folio_reuse:
        return False
    phys = m.phys
    head = pfn & ~(HPAGE_PMD_NR - 1)
    if phys.entire[head >> FOLIO_SHIFT]:
        return False
    sl = slice(head, head + HPAGE_PMD_NR)
    mapped = int(phys.mapcount[sl].sum())
    if mapped != int(phys.refcount[sl].sum()):
        return False
    first = va - ((pfn - head) << PAGE_SHIFT)
    ptes = mm.pgd.gather(first, HPAGE_PMD_NR) if first >= 0 else np.zeros(0, np.int64)
    ours = ((ptes & PTE_PRESENT) != 0) & ((ptes >> PAGE_SHIFT) >= head) & \
        ((ptes >> PAGE_SHIFT) < head + HPAGE_PMD_NR)
    return int(np.count_nonzero(ours)) == mapped


def large_folio_reuse_mask(m: Machine, mm: MM, vas: np.ndarray, pfns: np.ndarray, fl: np.ndarray
                           ) -> np.ndarray:
    """large_folio_reusable for many write-protected PTEs at once (vas, frames pfns with flags fl):
    True where a THP subpage may be reused; the decision is made once per folio."""
    out = np.zeros(len(pfns), dtype=bool)
    large = np.flatnonzero((fl & PG_COMPOUND) != 0)
    excl = (fl[large] & PG_ANON_EXCLUSIVE) != 0
    out[large[excl]] = True
    rest = large[~excl]
    heads = pfns[rest] & ~(HPAGE_PMD_NR - 1)
    for head in np.unique(heads).tolist():
        sel = rest[heads == head]
        if large_folio_reusable(m, mm, int(vas[sel[0]]), int(pfns[sel[0]])):
            out[sel] = True
    return out


# -- splitting ----------------------------------------------------------------------------------

def split_huge_pmd(m: Machine, mm: MM, haddr: int) -> None:
    """__split_huge_pmd: replace the leaf by a PTE table of 512 entries with the leaf's bits. A
    folio's PMD map becomes 512 PTE maps (exclusivity and dirtiness pass to every subpage); the
    huge zero page becomes 4 KiB zero-page PTEs."""
    leaf = mm.pgd.pmd_get(haddr)
    assert leaf, f"split_huge_pmd: no huge PMD at {haddr:#x}"
    mm.pgd.pmd_set(haddr, 0)
    bits = leaf & (PTE_PRESENT | PTE_USER | PTE_YOUNG | PTE_RW | PTE_DIRTY)
    t = mm.pgd.table(haddr)
    m.stat["thp_split_pmd"] += 1
    if leaf & PTE_SPECIAL:
        t[:] = (ZERO_PFN << PAGE_SHIFT) | (bits & ~(PTE_RW | PTE_DIRTY)) | PTE_SPECIAL
        return
    phys = m.phys
    head = leaf >> PAGE_SHIFT
    sl = slice(head, head + HPAGE_PMD_NR)
    t[:] = (np.arange(head, head + HPAGE_PMD_NR, dtype=np.int64) << PAGE_SHIFT) | bits
    phys.mapcount[sl] += 1
    phys.refcount[sl] += 1
    phys.entire[head >> FOLIO_SHIFT] -= 1
    if phys.flags[head] & PG_ANON_EXCLUSIVE:
        phys.flags[sl] |= PG_ANON_EXCLUSIVE
    else:
        phys.flags[sl] &= _NOT_EXCL
    if leaf & PTE_DIRTY:
        phys.flags[sl] |= PG_DIRTY
    m.events.add(0, "thp-split", haddr, head, head, "PMD split into 512 PTEs")


def split_huge_pmd_address(m: Machine, mm: MM, at: int) -> None:
    """A VMA boundary at `at` inside a huge PMD splits it (vma_adjust_trans_huge)."""
    if at & (PMD_SIZE - 1) and mm.pgd.pmd_get(at):
        split_huge_pmd(m, mm, at & PMD_MASK)


def split_huge_pmd_range(m: Machine, mm: MM, start: int, end: int) -> None:
    """Split every huge PMD that [start, end) covers only in part."""
    for haddr, _leaf in mm.pgd.leaves(start, end):
        if haddr < start or haddr + PMD_SIZE > end:
            split_huge_pmd(m, mm, haddr)


# -- range operations ---------------------------------------------------------------------------

def zap_huge_pmds(m: Machine, mm: MM, start: int, end: int) -> None:
    """zap_huge_pmd for every leaf inside [start, end) (partly covered ones are split first): the
    PMD goes with its deposited table; the folio is freed once nothing maps it."""
    split_huge_pmd_range(m, mm, start, end)
    phys = m.phys
    for haddr, leaf in mm.pgd.leaves(start, end):
        mm.pgd.pmd_set(haddr, 0)
        if leaf & PTE_SPECIAL:
            continue
        head = leaf >> PAGE_SHIFT
        phys.entire[head >> FOLIO_SHIFT] -= 1
        mm.rss_anon -= HPAGE_PMD_NR
        phys.folio_put(head)


def copy_huge_pmds(m: Machine, dst: MM, src: MM, vma: VMA) -> None:
    """copy_huge_pmd for the VMA's leaves: the child gets the same PMDs; folios are shared
    write-protected in both (the huge zero page as it is)."""
    if vma.vm_file is not None or vma.vm_end - vma.vm_start < PMD_SIZE:
        return  # huge PMDs live only in private anonymous VMAs of 2 MiB or more
    phys = m.phys
    copied = False
    for a, lo, hi, va in src.pgd.pmd_blocks(vma.vm_start, vma.vm_end):
        idx = lo + np.flatnonzero(a[lo:hi])
        if not len(idx):
            continue
        ent = a[idx]
        anon = (ent & PTE_SPECIAL) == 0
        heads = ent[anon] >> PAGE_SHIFT
        phys.entire[heads >> FOLIO_SHIFT] += 1
        phys.flags[heads] &= _NOT_EXCL
        ent = np.where(anon, ent & ~PTE_RW, ent)
        a[idx] = ent
        key = va >> (PMD_SHIFT + 9)
        child = dst.pgd.pmds.get(key)
        if child is None:
            child = dst.pgd.pmds[key] = np.zeros(HPAGE_PMD_NR, dtype=np.int64)
        child[idx] = ent & ~PTE_YOUNG
        dst.rss_anon += HPAGE_PMD_NR * len(heads)
        copied = True
    if copied and dst.on_split is None:
        dst.on_split = lambda at: split_huge_pmd_address(m, dst, at)


def change_huge_pmds(m: Machine, mm: MM, vma: VMA) -> None:
    """change_huge_pmd for mprotect: the VMA's leaves get its new access; writable only where the
    folio is exclusive (a shared or huge-zero PMD stays write-protected)."""
    readable = bool(vma.vm_flags & (VM_READ | VM_WRITE))
    writable = bool(vma.vm_flags & VM_WRITE)
    flags = m.phys.flags
    for haddr, leaf in mm.pgd.leaves(vma.vm_start, vma.vm_end):
        new = leaf & ~(PTE_RW | PTE_USER)
        if readable:
            new |= PTE_USER
        if writable and not leaf & PTE_SPECIAL and flags[leaf >> PAGE_SHIFT] & PG_ANON_EXCLUSIVE:
            new |= PTE_RW
        mm.pgd.pmd_set(haddr, new)


def madvise_free_huge_pmds(m: Machine, mm: MM, start: int, end: int) -> None:
    """madvise_free_huge_pmd: a PMD the range covers whole is cleaned (and its folio made lazily
    freeable if only this PMD holds it); one covered in part is split for the 4 KiB path."""
    split_huge_pmd_range(m, mm, start, end)
    phys = m.phys
    for haddr, leaf in mm.pgd.leaves(start, end):
        if leaf & PTE_SPECIAL:
            continue
        mm.pgd.pmd_set(haddr, leaf & ~(PTE_DIRTY | PTE_YOUNG))
        head = leaf >> PAGE_SHIFT
        if folio_held_by_one_pmd(m, head):
            phys.flags[head:head + HPAGE_PMD_NR] &= np.uint16(~(PG_SWAPBACKED | PG_DIRTY) & 0xFFFF)


def huge_fault_range(m: Machine, pid: int, mm: MM, vma: VMA, start: int, end: int, write: bool,
                     fault_ptes: Callable[[int, int], None]) -> None:
    """fault_range at the PMD level: each 2 MiB block a PMD can serve is faulted whole; runs of the
    other blocks go to `fault_ptes(lo, hi)` (the vectorised 4 KiB path) in one call each."""
    run = -1
    va = start
    while va < end:
        nxt = min((va | (PMD_SIZE - 1)) + 1, end)
        if huge_pmd_fault_block(m, pid, mm, vma, va, write):
            if run >= 0:
                fault_ptes(run, va)
                run = -1
        elif run < 0:
            run = va
        va = nxt
    if run >= 0:
        fault_ptes(run, end)


def huge_pmd_fault_block(m: Machine, pid: int, mm: MM, vma: VMA, va: int, write: bool) -> bool:
    """Resolve the access to va's 2 MiB block at the PMD level if it can be (see huge_pmd_fault)."""
    leaf = mm.pgd.pmd_get(va) if mm.pgd.pmds else 0
    if leaf and leaf & PTE_USER and (leaf & PTE_RW or not write):
        bits = PTE_YOUNG | (PTE_DIRTY if write else 0)
        if leaf & bits != bits:
            mm.pgd.pmd_set(va, leaf | bits)
        return True
    return bool(huge_pmd_fault(m, pid, mm, vma, va, write))


def nr_anon_thps(m: Machine) -> int:
    """Folios mapped by at least one PMD (NR_ANON_THPS, meminfo AnonHugePages / 2 MiB)."""
    phys = m.phys
    if not phys.nr_folios:
        return 0
    return int(np.count_nonzero(phys.entire))
