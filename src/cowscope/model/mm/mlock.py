"""mlock and munlock (mm/mlock.c), and populating locked memory (mm/gup.c __mm_populate).

mlock sets VM_LOCKED VMA by VMA from the start of the range (apply_vma_lock_flags): a hole stops
it with ENOMEM, the VMAs before the hole stay locked and nothing is populated. Otherwise the range
is faulted in VMA by VMA (write faults in private writable VMAs, so copy-on-write is broken);
a VMA the access cannot fault (PROT_NONE, past the end of a file) stops it, and mlock returns
ENOMEM with everything locked. munlock clears VM_LOCKED the same way. Locked memory also gets
populated when it grows (mremap) or becomes writable (mprotect): `populate_locked`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import EINVAL, ENOMEM, SyscallError
from ..arch import MASK64, PAGE_SIZE, page_align
from .mmap import populate_vma_page_range
from .vma import MM, VM_LOCKED, VMA

if TYPE_CHECKING:
    from ..machine import Machine


def do_mlock(m: Machine, pid: int, mm: MM, addr: int, length: int, lock: bool) -> None:
    """mlock(2) / munlock(2) of [addr, addr+length)."""
    call = "mlock" if lock else "munlock"
    start = addr & ~(PAGE_SIZE - 1)
    end = start + (page_align(length + (addr & (PAGE_SIZE - 1))) & MASK64)  # PAGE_ALIGN may wrap to 0
    if end > MASK64:  # the range wraps around (mlock(a, -2 * PAGE))
        raise SyscallError(EINVAL, call, "the range wraps around the address space")
    if end == start:
        return
    apply_vma_lock_flags(mm, start, end, lock, call)
    if lock and not mm_populate_locked(m, pid, mm, start, end):
        raise SyscallError(ENOMEM, call, "part of the range cannot be faulted in (PROT_NONE or past EOF)")


def apply_vma_lock_flags(mm: MM, start: int, end: int, lock: bool, call: str) -> None:
    """Set or clear VM_LOCKED from start on, VMA by VMA (split, merge); ENOMEM at the first hole,
    the VMAs before it keep the change."""
    pos = start
    while pos < end:
        vma = mm.find_vma(pos)
        if vma is None:
            raise SyscallError(ENOMEM, call, f"range {start:#x}-{end:#x} is not fully mapped")
        hi = min(end, vma.vm_end)
        mlock_fixup(mm, vma, pos, hi, lock)
        pos = hi


def mlock_fixup(mm: MM, vma: VMA, start: int, end: int, lock: bool) -> None:
    """One VMA's part [start, end): new flags only if they change (split, then re-merge)."""
    new = vma.vm_flags | VM_LOCKED if lock else vma.vm_flags & ~VM_LOCKED
    if new == vma.vm_flags:
        return
    for part in mm.isolate(start, end):
        part.vm_flags = new
        mm.try_merge_around(part)


def mm_populate_locked(m: Machine, pid: int, mm: MM, start: int, end: int) -> bool:
    """__mm_populate for mlock: fault each VMA in order; False at the first VMA the access cannot
    fault (PROT_NONE: -EFAULT; SIGBUS past EOF, after the pages before it)."""
    for vma in list(mm.overlapping(start, end)):
        if not populate_vma_page_range(m, pid, mm, vma, max(start, vma.vm_start), min(end, vma.vm_end)):
            return False
    return True
