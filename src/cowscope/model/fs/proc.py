"""/proc views of the model, computed as fs/proc/task_mmu.c computes them.

maps, smaps (per-page accounting with the kernel's PSS fixed point and truncation),
smaps_rollup, pagemap (bits 56/61/62/63 and the PFN), status (mm counters), kpagecount.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ...observe.pages import runs_of
from ...observe.records import (
    PM_FILE,
    PM_GUARD_REGION,
    PM_MMAP_EXCLUSIVE,
    PM_PRESENT,
    PM_SWAP,
    PM_SWAP_OFFSET_SHIFT,
    MapsEntry,
    SmapsEntry,
    SmapsRollup,
    Status,
)
from ..arch import (
    HPAGE_PMD_NR,
    PAGE_SHIFT,
    PAGE_SIZE,
    PMD_SIZE,
    PTE_DIRTY,
    PTE_MARKER_GUARD,
    PTE_PRESENT,
    PTE_SPECIAL,
    PTE_SWP,
    PTE_YOUNG,
)
from ..mm.page_alloc import PG_ANON, PG_DIRTY, PG_FILE, PG_KSM, PG_REFERENCED, PG_SWAPBACKED
from ..mm.vma import MM, VM_EXEC, VM_GROWSDOWN, VM_HUGEPAGE, VM_LOCKED, VM_SHARED, VM_WRITE, VMA

if TYPE_CHECKING:
    from ..mm.page_alloc import PhysMem

PSS_SHIFT = 12


def vma_name(mm: MM, vma: VMA) -> str:
    """The name column of maps: file path, [heap], [stack], or empty."""
    if vma.vm_file is not None:
        return vma.vm_file.path
    if vma.name:
        return vma.name
    if mm.start_brk and vma.vm_start <= mm.brk and vma.vm_end >= mm.start_brk and mm.brk > mm.start_brk:
        return "[heap]"
    if vma.vm_start <= mm.start_stack < vma.vm_end:
        return "[stack]"
    return ""


def maps_entry(mm: MM, vma: VMA) -> MapsEntry:
    """One maps line for a VMA."""
    f = vma.vm_file
    if f is None:
        return MapsEntry(vma.vm_start, vma.vm_end, vma.perms(), 0, "00:00", 0, vma_name(mm, vma))
    return MapsEntry(vma.vm_start, vma.vm_end, vma.perms(), vma.vm_pgoff << PAGE_SHIFT, f.dev,
                     f.inode, f.path)


def maps(mm: MM) -> list[MapsEntry]:
    return [maps_entry(mm, v) for v in mm.vmas]


class MemSizeStats:
    """mem_size_stats: the smaps accumulator (bytes, PSS in 12-bit fixed point)."""

    def __init__(self, swap_map: np.ndarray | None = None) -> None:
        self.b = dict.fromkeys(("Rss", "Shared_Clean", "Shared_Dirty", "Private_Clean",
                                "Private_Dirty", "Referenced", "Anonymous", "LazyFree",
                                "AnonHugePages", "KSM"), 0)
        self.pss = self.pss_dirty = self.pss_anon = self.pss_file = self.pss_shmem = 0
        self.pss_locked = 0
        self.swap = self.swap_pss = 0
        self.swap_map = swap_map  # the swap device's entry counts (SwapPss), None without swap

    def account_vma(self, phys: PhysMem, mm: MM, vma: VMA) -> None:
        """smaps_pte_range over one VMA, vectorised per page table (huge PMDs whole)."""
        locked = bool(vma.vm_flags & VM_LOCKED)
        for _haddr, leaf in mm.pgd.leaves(vma.vm_start, vma.vm_end) if mm.pgd.pmds else ():
            if leaf & PTE_SPECIAL:
                continue  # the huge zero page is not counted, as the 4 KiB one
            head = leaf >> PAGE_SHIFT
            pfns = np.arange(head, head + HPAGE_PMD_NR, dtype=np.int64)
            self.account(phys, pfns, np.full(HPAGE_PMD_NR, bool(leaf & PTE_YOUNG)),
                         np.full(HPAGE_PMD_NR, bool(leaf & PTE_DIRTY)), locked)
            self.b["AnonHugePages"] += PMD_SIZE
        for t, lo, hi, _va in mm.pgd.blocks(vma.vm_start, vma.vm_end):
            ptes = t[lo:hi]
            if mm.swap_ents:
                self.account_swap(ptes[(ptes & PTE_SWP) != 0])
            normal = ((ptes & PTE_PRESENT) != 0) & ((ptes & PTE_SPECIAL) == 0)
            if not normal.any():
                continue
            p = ptes[normal]
            self.account(phys, p >> PAGE_SHIFT, (p & PTE_YOUNG) != 0, (p & PTE_DIRTY) != 0,
                         bool(vma.vm_flags & VM_LOCKED))

    def account(self, phys: PhysMem, pfns: np.ndarray, young: np.ndarray, pte_dirty: np.ndarray,
                locked: bool) -> None:
        """smaps_account for order-0 pages: per-page mapcount decides private vs shared."""
        fl = phys.flags[pfns]
        mc = np.maximum(phys.precise_mapcount(pfns), 1)
        anon = (fl & PG_ANON) != 0
        dirty = pte_dirty | ((fl & PG_DIRTY) != 0)
        private = mc < 2
        pss = (PAGE_SIZE << PSS_SHIFT) // mc
        n = len(pfns)
        b = self.b
        b["Rss"] += n * PAGE_SIZE
        b["Anonymous"] += int(anon.sum()) * PAGE_SIZE
        b["KSM"] += int(np.count_nonzero(fl & PG_KSM)) * PAGE_SIZE
        b["LazyFree"] += int((anon & ((fl & PG_SWAPBACKED) == 0) & ~dirty).sum()) * PAGE_SIZE
        b["Referenced"] += int((young | ((fl & PG_REFERENCED) != 0)).sum()) * PAGE_SIZE
        b["Private_Dirty"] += int((private & dirty).sum()) * PAGE_SIZE
        b["Private_Clean"] += int((private & ~dirty).sum()) * PAGE_SIZE
        b["Shared_Dirty"] += int((~private & dirty).sum()) * PAGE_SIZE
        b["Shared_Clean"] += int((~private & ~dirty).sum()) * PAGE_SIZE
        total = int(pss.sum())
        self.pss += total
        self.pss_dirty += int(pss[dirty].sum())
        self.pss_anon += int(pss[anon].sum())
        shmem = ((fl & PG_FILE) != 0) & ((fl & PG_SWAPBACKED) != 0)
        self.pss_shmem += int(pss[shmem].sum())
        self.pss_file += int(pss[~anon & ~shmem].sum())
        if locked:
            self.pss_locked += total

    def account_swap(self, entries: np.ndarray) -> None:
        """Swap entries: Swap, and SwapPss shared by the entries referencing each slot."""
        if not len(entries):
            return
        self.swap += len(entries) * PAGE_SIZE
        counts = np.ones(len(entries), dtype=np.int64) if self.swap_map is None else \
            np.maximum(self.swap_map[entries >> PAGE_SHIFT], 1)
        self.swap_pss += int(((PAGE_SIZE << PSS_SHIFT) // counts).sum())

    def kb(self, name: str) -> int:
        return self.b[name] >> 10

    @staticmethod
    def pss_kb(value: int) -> int:
        return (value >> PSS_SHIFT) >> 10

    def fields(self, rollup: bool) -> dict[str, int]:
        out = {"Rss": self.kb("Rss"), "Pss": self.pss_kb(self.pss), "Pss_Dirty": self.pss_kb(self.pss_dirty)}
        if rollup:
            out.update(Pss_Anon=self.pss_kb(self.pss_anon), Pss_File=self.pss_kb(self.pss_file),
                       Pss_Shmem=self.pss_kb(self.pss_shmem))
        for name in ("Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty", "Referenced",
                     "Anonymous"):
            out[name] = self.kb(name)
        out.update(KSM=self.kb("KSM"), LazyFree=self.kb("LazyFree"), AnonHugePages=self.kb("AnonHugePages"),
                   ShmemPmdMapped=0,
                   FilePmdMapped=0, Shared_Hugetlb=0, Private_Hugetlb=0, Swap=self.swap >> 10,
                   SwapPss=self.pss_kb(self.swap_pss),
                   Locked=self.pss_kb(self.pss_locked))
        return out


def madvise_thp_eligible(vma: VMA) -> int:
    """THPeligible with THP in "madvise" mode: an anon VMA with MADV_HUGEPAGE holding an aligned 2 MiB."""
    if not vma.vm_flags & VM_HUGEPAGE or vma.vm_file is not None or vma.vm_flags & VM_SHARED:
        return 0
    first = (vma.vm_start + PMD_SIZE - 1) & ~(PMD_SIZE - 1)
    return int(first + PMD_SIZE <= vma.vm_end)


def smaps(phys: PhysMem, mm: MM, thp_eligible: Callable[[VMA], int] = madvise_thp_eligible,
          swap_map: np.ndarray | None = None) -> list[SmapsEntry]:
    out = []
    for vma in mm.vmas:
        mss = MemSizeStats(swap_map)
        mss.account_vma(phys, mm, vma)
        fields = {"Size": (vma.vm_end - vma.vm_start) >> 10, "KernelPageSize": 4, "MMUPageSize": 4}
        fields.update(mss.fields(rollup=False))
        out.append(SmapsEntry(maps_entry(mm, vma), fields, thp_eligible(vma), vma.mnemonics()))
    return out


def smaps_rollup(phys: PhysMem, mm: MM, swap_map: np.ndarray | None = None) -> SmapsRollup:
    mss = MemSizeStats(swap_map)
    for vma in mm.vmas:
        mss.account_vma(phys, mm, vma)
    start = mm.vmas[0].vm_start if mm.vmas else 0
    end = mm.vmas[-1].vm_end if mm.vmas else 0
    return SmapsRollup(start, end, mss.fields(rollup=True))


def pagemap_raw(phys: PhysMem, mm: MM, addr: int, npages: int) -> np.ndarray:
    """pagemap entries for npages pages from addr (pte_to_pagemap_entry, vectorised)."""
    addr &= ~(PAGE_SIZE - 1)
    ptes = mm.pgd.gather(addr, npages)
    out = np.zeros(npages, dtype=np.uint64)
    present = (ptes & PTE_PRESENT) != 0
    pfns = np.where(present, ptes >> PAGE_SHIFT, 0)
    normal = present & ((ptes & PTE_SPECIAL) == 0)
    fl = phys.flags[np.where(normal, pfns, 0)]
    mc = phys.precise_mapcount(np.where(normal, pfns, 0))
    huge = _gather_leaves(phys, mm, addr, npages, ptes, pfns, mc) if mm.pgd.pmds else None
    if huge is not None:  # huge PMDs: present, F for the huge zero page, X from the head's count
        present |= huge
        normal = present & ((ptes & PTE_SPECIAL) == 0)
        fl = phys.flags[np.where(normal, pfns, 0)]
    val = pfns.astype(np.uint64)
    val |= np.where(present, np.uint64(PM_PRESENT), np.uint64(0))
    val |= np.where(normal & ((fl & PG_ANON) == 0), np.uint64(PM_FILE), np.uint64(0))
    if huge is not None:
        val |= np.where(huge & ((ptes & PTE_SPECIAL) != 0), np.uint64(PM_FILE), np.uint64(0))
    val |= np.where(normal & (mc == 1), np.uint64(PM_MMAP_EXCLUSIVE), np.uint64(0))
    guard = (ptes & PTE_MARKER_GUARD) != 0
    val |= np.where(guard, np.uint64(PM_SWAP | PM_GUARD_REGION), np.uint64(0))
    swp = (ptes & PTE_SWP) != 0  # swap entry: swap type 0 (one swap area), the slot as its offset
    offset = (ptes >> PAGE_SHIFT).astype(np.uint64) << np.uint64(PM_SWAP_OFFSET_SHIFT)
    val |= np.where(swp, np.uint64(PM_SWAP) | offset, np.uint64(0))
    out[:] = val
    return out


def pagemap_scan(mm: MM, addr: int, npages: int) -> np.ndarray:
    """PAGEMAP_SCAN for present or swap-type pages (a guard marker is one): runs of page offsets
    from addr, found from the PTE tables and huge PMDs that exist, not by walking the range."""
    addr &= ~(PAGE_SIZE - 1)
    end = addr + (npages << PAGE_SHIFT)
    found = [np.zeros(0, dtype=np.int64)]
    for table, lo, hi, va in mm.pgd.blocks(addr, end):
        found.append(np.flatnonzero(table[lo:hi]) + ((va - addr) >> PAGE_SHIFT))
    for haddr, _entry in mm.pgd.leaves(addr, end):
        first, last = max(haddr, addr), min(haddr + PMD_SIZE, end)
        found.append(np.arange((first - addr) >> PAGE_SHIFT, (last - addr) >> PAGE_SHIFT))
    return runs_of(np.unique(np.concatenate(found)))


def pagemap_huge(mm: MM, addr: int, npages: int) -> np.ndarray:
    """PAGEMAP_SCAN for PAGE_IS_HUGE: runs of the pages huge PMDs map (offsets from addr)."""
    addr &= ~(PAGE_SIZE - 1)
    end = addr + (npages << PAGE_SHIFT)
    found = [np.zeros(0, dtype=np.int64)]
    for haddr, _entry in mm.pgd.leaves(addr, end) if mm.pgd.pmds else ():
        first, last = max(haddr, addr), min(haddr + PMD_SIZE, end)
        found.append(np.arange((first - addr) >> PAGE_SHIFT, (last - addr) >> PAGE_SHIFT))
    return runs_of(np.concatenate(found))


def _gather_leaves(phys: PhysMem, mm: MM, addr: int, npages: int, ptes: np.ndarray, pfns: np.ndarray,
                   mc: np.ndarray) -> np.ndarray:
    """Fill ptes/pfns/mc in place for pages a huge PMD maps (pagemap_pmd_range): each subpage's
    own pfn; the exclusive bit of every subpage is the head page's (mapcount 1). Returns the mask."""
    huge = np.zeros(npages, dtype=bool)
    end = addr + (npages << PAGE_SHIFT)
    for haddr, leaf in mm.pgd.leaves(addr, end):
        lo, hi = max(addr, haddr), min(end, haddr + PMD_SIZE)
        i, j = (lo - addr) >> PAGE_SHIFT, (hi - addr) >> PAGE_SHIFT
        first = (leaf >> PAGE_SHIFT) + ((lo - haddr) >> PAGE_SHIFT)
        pfns[i:j] = np.arange(first, first + j - i, dtype=np.int64)
        ptes[i:j] = leaf & ((1 << PAGE_SHIFT) - 1)
        huge[i:j] = True
        head = leaf >> PAGE_SHIFT
        mc[i:j] = 0 if leaf & PTE_SPECIAL else int(phys.precise_mapcount(np.array([head]))[0])
    return huge


def status(name: str, pid: int, ppid: int, state: str, mm: MM | None) -> Status:
    """The memory lines of /proc/PID/status from the mm counters (task_mem)."""
    st = Status(name, pid, ppid, state)
    if mm is None:
        return st
    total = exec_pages = data = stack = locked = 0
    for v in mm.vmas:
        n = v.npages
        total += n
        if v.vm_flags & VM_LOCKED:
            locked += n
        if v.vm_flags & VM_GROWSDOWN:
            stack += n
        elif v.vm_flags & VM_WRITE and not v.vm_flags & VM_SHARED:
            data += n
        elif v.vm_flags & VM_EXEC and not v.vm_flags & VM_WRITE:
            exec_pages += n
    kb = PAGE_SIZE >> 10
    rss = mm.get_mm_rss()
    text_kb = (mm.end_code - mm.start_code) >> 10
    st.fields = {
        "VmPeak": max(mm.hiwater_vm, total) * kb, "VmSize": total * kb, "VmLck": locked * kb,
        "VmPin": 0, "VmHWM": max(mm.hiwater_rss, rss) * kb, "VmRSS": rss * kb,
        "RssAnon": mm.rss_anon * kb, "RssFile": mm.rss_file * kb, "RssShmem": mm.rss_shmem * kb,
        "VmData": data * kb, "VmStk": stack * kb, "VmExe": text_kb,
        "VmLib": max(exec_pages * kb - text_kb, 0), "VmPTE": mm.pgd.nr_table_pages() * kb,
        "VmSwap": mm.swap_ents * kb,
    }
    return st
