"""madvise(2): DONTNEED, FREE, DONTFORK/DOFORK, WIPEONFORK/KEEPONFORK, POPULATE_*, guards."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...errors import EINVAL, SyscallError
from ..arch import PAGE_SHIFT, PTE_DIRTY, PTE_MARKER_GUARD, PTE_PRESENT, PTE_SPECIAL, PTE_YOUNG
from .memory import zap_range
from .mmap import check_range, populate, require_mapped
from .page_alloc import PG_ANON, PG_DIRTY, PG_SWAPBACKED
from .vma import (
    MM,
    VM_DONTCOPY,
    VM_HUGEPAGE,
    VM_LOCKED,
    VM_MAYBE_GUARD,
    VM_NOHUGEPAGE,
    VM_WIPEONFORK,
    VMA,
)

if TYPE_CHECKING:
    from ..machine import Machine

#: advice -> (flag to set, flag to clear) for advices that only change vm_flags (and split)
FLAG_ADVICE = {
    "dontfork": (VM_DONTCOPY, 0), "dofork": (0, VM_DONTCOPY),
    "wipeonfork": (VM_WIPEONFORK, 0), "keeponfork": (0, VM_WIPEONFORK),
    "hugepage": (VM_HUGEPAGE, VM_NOHUGEPAGE), "nohugepage": (VM_NOHUGEPAGE, VM_HUGEPAGE),
}
ADVICES = ("normal", "random", "sequential", "willneed", "dontneed", "free", "populate_read",
           "populate_write", "guard_install", "guard_remove", *FLAG_ADVICE)


def do_madvise(m: Machine, pid: int, mm: MM, addr: int, length: int, advice: str) -> None:
    """Apply advice to [addr, addr+length); EINVAL/ENOMEM as the kernel returns them."""
    advice = advice.lower().removeprefix("madv_")
    if advice not in ADVICES:
        raise SyscallError(EINVAL, "madvise", f"unknown advice {advice!r}")
    length = check_range(addr, length, "madvise")
    if length == 0:
        return
    end = addr + length
    vmas = require_mapped(mm, addr, end, "madvise")
    if advice in ("normal", "random", "sequential", "willneed"):
        return
    if advice in FLAG_ADVICE:
        _madvise_flags(mm, addr, end, vmas, *FLAG_ADVICE[advice], advice)
    elif advice == "dontneed":
        for vma in vmas:
            if vma.vm_flags & VM_LOCKED:
                raise SyscallError(EINVAL, "madvise", "MADV_DONTNEED on a locked mapping")
        for vma in vmas:
            zap_range(m, mm, max(addr, vma.vm_start), min(end, vma.vm_end), keep_markers=True)
    elif advice == "free":
        for vma in vmas:
            if vma.vm_file is not None or vma.is_shared:
                raise SyscallError(EINVAL, "madvise", "MADV_FREE needs private anonymous memory")
        for vma in vmas:
            _madvise_free(m, mm, max(addr, vma.vm_start), min(end, vma.vm_end))
    elif advice.startswith("populate"):
        populate(m, pid, mm, addr, end, advice == "populate_write")
    elif advice == "guard_install":
        for vma in vmas:
            vma.vm_flags |= VM_MAYBE_GUARD
            lo, hi = max(addr, vma.vm_start), min(end, vma.vm_end)
            zap_range(m, mm, lo, hi)
            for t, a, b, _va in mm.pgd.blocks(lo, hi, alloc=True):
                t[a:b] = PTE_MARKER_GUARD
    elif advice == "guard_remove":
        for t, a, b, _va in mm.pgd.blocks(addr, end):
            t[a:b] = np.where(t[a:b] & PTE_MARKER_GUARD, 0, t[a:b])


def _madvise_flags(mm: MM, start: int, end: int, vmas: list[VMA], set_: int, clear: int,
                   advice: str) -> None:
    """Flag-changing advice: validate, split to the range, set/clear, re-merge."""
    if advice == "wipeonfork":
        for vma in vmas:
            if vma.vm_file is not None or vma.is_shared:
                raise SyscallError(EINVAL, "madvise", "MADV_WIPEONFORK needs private anonymous memory")
    for vma in mm.isolate(start, end):
        vma.vm_flags = (vma.vm_flags | set_) & ~clear
    for vma in list(mm.overlapping(max(start - 1, 0), end + 1)):
        if vma in mm.vmas:
            mm.try_merge_around(vma)


def _madvise_free(m: Machine, mm: MM, start: int, end: int) -> None:
    """MADV_FREE: clean the PTEs; pages only this mm maps become lazily freeable (not dropped)."""
    phys = m.phys
    for t, lo, hi, _va in mm.pgd.blocks(start, end):
        ptes = t[lo:hi]
        normal = ((ptes & PTE_PRESENT) != 0) & ((ptes & PTE_SPECIAL) == 0)
        t[lo:hi] = np.where(normal, ptes & ~(PTE_DIRTY | PTE_YOUNG), ptes)
        pfns = ptes[normal] >> PAGE_SHIFT
        excl = pfns[(phys.mapcount[pfns] == 1) & ((phys.flags[pfns] & PG_ANON) != 0)]
        phys.flags[excl] &= np.uint16(~(PG_SWAPBACKED | PG_DIRTY) & 0xFFFF)
