"""exit and mm teardown: the last user of an mm zaps every VMA (exit_mmap) at exit, not at wait."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..mm.memory import zap_range
from ..mm.vma import MM, VM_ACCOUNT

if TYPE_CHECKING:
    from ..machine import Machine


def exit_mmap(m: Machine, mm: MM) -> None:
    """Zap every VMA, free every page table, leave an empty mm."""
    files = [v.vm_file for v in mm.vmas if v.vm_file is not None]
    for vma in mm.vmas:
        zap_range(m, mm, vma.vm_start, vma.vm_end)
    m.acct.unacct(sum(v.npages for v in mm.vmas if v.vm_flags & VM_ACCOUNT))
    mm.vmas.clear()
    m.release_shmem(files)
    mm.reindex()
    mm.pgd.tables.clear()
    mm.pgd.pmds.clear()


def mmput(m: Machine, mm: MM) -> None:
    """Drop one user of the mm; the last one tears it down (vfork children borrow it)."""
    mm.users -= 1
    if mm.users == 0:
        exit_mmap(m, mm)
