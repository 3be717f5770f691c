"""madvise(2): DONTNEED, FREE, COLD/PAGEOUT, DONTFORK/DOFORK, WIPEONFORK/KEEPONFORK, HUGEPAGE, POPULATE_*,
guards."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...errors import EFAULT, EINVAL, ENOMEM, SyscallError
from ..arch import (
    MASK64,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_DIRTY,
    PTE_MARKER_GUARD,
    PTE_PRESENT,
    PTE_SPECIAL,
    PTE_YOUNG,
    page_align,
)
from .huge_memory import madvise_free_huge_pmds
from .ksm import ksm_madvise
from .memory import BusError, zap_range
from .mmap import populate
from .page_alloc import PG_ANON, PG_COMPOUND, PG_DIRTY, PG_SWAPBACKED, PG_SWAPCACHE
from .readahead import force_page_cache_ra
from .swapfile import free_swap_entries
from .vma import (
    MM,
    VM_DONTCOPY,
    VM_HUGEPAGE,
    VM_LOCKED,
    VM_MAYBE_GUARD,
    VM_NOHUGEPAGE,
    VM_RAND_READ,
    VM_READ,
    VM_SEQ_READ,
    VM_WIPEONFORK,
    VM_WRITE,
    VMA,
)
from .vmscan import madvise_cold_or_pageout

if TYPE_CHECKING:
    from ..machine import Machine

#: advice -> (flag to set, flag to clear) for advices that only change vm_flags (and split)
FLAG_ADVICE = {
    "dontfork": (VM_DONTCOPY, 0), "dofork": (0, VM_DONTCOPY),
    "wipeonfork": (VM_WIPEONFORK, 0), "keeponfork": (0, VM_WIPEONFORK),
    "hugepage": (VM_HUGEPAGE, VM_NOHUGEPAGE), "nohugepage": (VM_NOHUGEPAGE, VM_HUGEPAGE),
    "sequential": (VM_SEQ_READ, VM_RAND_READ), "random": (VM_RAND_READ, VM_SEQ_READ),
    "normal": (0, VM_SEQ_READ | VM_RAND_READ),
}
ADVICES = ("willneed", "dontneed", "free", "cold", "pageout",
           "mergeable", "unmergeable", "populate_read",
           "populate_write", "guard_install", "guard_remove", *FLAG_ADVICE)


def do_madvise(m: Machine, pid: int, mm: MM, addr: int, length: int, advice: str) -> None:
    """Apply advice to every mapped part of [addr, addr+length) (madvise_walk_vmas); ENOMEM after
    the walk if the range had holes, EINVAL at the first VMA the advice cannot apply to."""
    if not isinstance(advice, str) or advice.lower().removeprefix("madv_") not in ADVICES:
        raise SyscallError(EINVAL, "madvise", f"unknown advice {advice!r}")  # madvise_behavior_valid
    advice = advice.lower().removeprefix("madv_")
    if addr & (PAGE_SIZE - 1):
        raise SyscallError(EINVAL, "madvise", f"address {addr:#x} is not page aligned")
    end = addr + page_align(length)
    if end > MASK64:  # PAGE_ALIGN overflowed or the range wraps around (madvise(a, -1))
        raise SyscallError(EINVAL, "madvise", "the range wraps around the address space")
    if end == addr:
        return
    unmapped = False
    pos = addr
    while pos < end:
        vma = mm.vma_after(pos)
        if vma is None or vma.vm_start >= end:
            unmapped = True
            break
        if vma.vm_start > pos:
            unmapped = True
            if advice.startswith("populate"):  # madvise_populate stops at the first hole
                break
        lo, hi = max(pos, vma.vm_start), min(end, vma.vm_end)
        madvise_vma(m, pid, mm, vma, lo, hi, advice)
        pos = hi
    if unmapped:
        raise SyscallError(ENOMEM, "madvise", f"range {addr:#x}-{end:#x} is not fully mapped")


def madvise_vma(m: Machine, pid: int, mm: MM, vma: VMA, lo: int, hi: int, advice: str) -> None:
    """One VMA's part [lo, hi) of a madvise call (madvise_vma_behavior)."""
    if advice in FLAG_ADVICE:
        _madvise_flags(mm, vma, lo, hi, *FLAG_ADVICE[advice], advice)
    elif advice == "willneed":
        if vma.vm_file is not None and not vma.vm_file.is_shmem:  # vfs_fadvise(POSIX_FADV_WILLNEED)
            force_page_cache_ra(m.phys, vma.vm_file, vma.pgoff_at(lo), (hi - lo) >> PAGE_SHIFT, m.ra_pages)
    elif advice == "dontneed":
        if vma.vm_flags & VM_LOCKED:
            raise SyscallError(EINVAL, "madvise", "MADV_DONTNEED on a locked mapping")
        zap_range(m, mm, lo, hi, keep_markers=True)
        mm.pgd.reclaim_covered_tables(lo, hi)  # per VMA: a table must lie inside this part
    elif advice in ("mergeable", "unmergeable"):
        new = ksm_madvise(m, pid, mm, vma, lo, hi, advice == "mergeable")
        if new != vma.vm_flags:
            for part in mm.isolate(lo, hi):
                part.vm_flags = new
                mm.try_merge_around(part)
    elif advice in ("cold", "pageout"):
        madvise_cold_or_pageout(m, pid, mm, vma, lo, hi, advice == "pageout")
    elif advice == "free":
        if vma.vm_flags & VM_LOCKED:  # can_madv_lru_vma
            raise SyscallError(EINVAL, "madvise", "MADV_FREE on a locked mapping")
        if vma.vm_file is not None or vma.is_shared:
            raise SyscallError(EINVAL, "madvise", "MADV_FREE needs private anonymous memory")
        _madvise_free(m, mm, lo, hi)
    elif advice.startswith("populate"):
        write = advice == "populate_write"
        if not vma.vm_flags & (VM_WRITE if write else VM_READ | VM_WRITE):
            raise SyscallError(EINVAL, "madvise", f"MADV_{advice.upper()} on a mapping without that access")
        try:
            populate(m, pid, mm, lo, hi, write)
        except BusError:
            raise SyscallError(EFAULT, "madvise", f"MADV_{advice.upper()} beyond the end of the file") from None
    elif advice == "guard_install":
        vma.vm_flags |= VM_MAYBE_GUARD
        zap_range(m, mm, lo, hi)
        for t, a, b, _va in mm.pgd.blocks(lo, hi, alloc=True):
            t[a:b] = PTE_MARKER_GUARD
    elif advice == "guard_remove":
        for t, a, b, _va in mm.pgd.blocks(lo, hi):
            t[a:b] = np.where(t[a:b] & PTE_MARKER_GUARD, 0, t[a:b])


def _madvise_flags(mm: MM, vma: VMA, start: int, end: int, set_: int, clear: int, advice: str) -> None:
    """Flag-changing advice on one VMA part: validate, split only if flags change, re-merge."""
    if advice == "wipeonfork" and (vma.vm_file is not None or vma.is_shared):
        raise SyscallError(EINVAL, "madvise", "MADV_WIPEONFORK needs private anonymous memory")
    new = (vma.vm_flags | set_) & ~clear
    if new == vma.vm_flags:
        return
    for part in mm.isolate(start, end):
        part.vm_flags = new
        mm.try_merge_around(part)


def _madvise_free(m: Machine, mm: MM, start: int, end: int) -> None:
    """MADV_FREE: clean the PTEs; anon pages become lazily freeable (not dropped). A page dirty or
    in the swap cache (swapped in, KSM) must be mapped by this mm alone (madvise_free_pte_range
    asks for the map count only then): a written page shared by fork becomes lazyfree for all
    (measured, C33b); a PTE-mapped large folio only when this mm alone maps it."""
    phys = m.phys
    if mm.pgd.pmds:
        madvise_free_huge_pmds(m, mm, start, end)
    if mm.swap_ents:
        free_swap_entries(m, mm, start, end)
    for t, lo, hi, _va in mm.pgd.blocks(start, end):
        ptes = t[lo:hi]
        normal = ((ptes & PTE_PRESENT) != 0) & ((ptes & PTE_SPECIAL) == 0)
        t[lo:hi] = np.where(normal, ptes & ~(PTE_DIRTY | PTE_YOUNG), ptes)
        pfns = ptes[normal] >> PAGE_SHIFT
        fl = phys.flags[pfns]
        held = (fl & (PG_DIRTY | PG_SWAPCACHE | PG_COMPOUND)) != 0
        lazy = pfns[((phys.mapcount[pfns] == 1) | ~held) & ((fl & PG_ANON) != 0)]
        shared = lazy[phys.mapcount[lazy] > 1]
        if len(shared):  # another process may have it mlocked: unevictable, never lazyfree
            lazy = lazy[~np.isin(lazy, np.intersect1d(shared, _mlocked_pfns(m)))]
        phys.flags[lazy] &= np.uint16(~(PG_SWAPBACKED | PG_DIRTY) & 0xFFFF)


def _mlocked_pfns(m: Machine) -> np.ndarray:
    """Frames some process maps in a VM_LOCKED VMA (mlocked folios, on the unevictable list)."""
    out = [np.zeros(0, dtype=np.int64)]
    for p in m.live_processes():
        for vma in p.mm.vmas:
            if vma.vm_flags & VM_LOCKED:
                for t, lo, hi, _va in p.mm.pgd.blocks(vma.vm_start, vma.vm_end):
                    ptes = t[lo:hi]
                    out.append(ptes[((ptes & PTE_PRESENT) != 0) & ((ptes & PTE_SPECIAL) == 0)] >> PAGE_SHIFT)
    return np.concatenate(out)
