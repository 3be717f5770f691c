"""fork: duplicate the mm VMA by VMA (dup_mmap), copying page tables only where the kernel does."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import ENOMEM, SyscallError
from ..mm.ksm import ksm_fork
from ..mm.memory import copy_page_range
from ..mm.vma import MM, VM_ACCOUNT, VM_DONTCOPY, VM_LOCKED, VM_MAYBE_GUARD, VM_WIPEONFORK, VMA, AnonVma

if TYPE_CHECKING:
    from ..machine import Machine


def vma_needs_copy(vma: VMA) -> bool:
    """Copy PTEs only if faults could not refill them: the VMA has anon pages or guard markers."""
    return vma.anon_vma is not None or bool(vma.vm_flags & VM_MAYBE_GUARD)


def dup_vma(vma: VMA) -> VMA:
    """The child's copy of one VMA (vm_area_dup): mlock is not inherited; wipe-on-fork starts empty."""
    child = VMA(vma.vm_start, vma.vm_end, vma.vm_flags & ~VM_LOCKED, vma.vm_pgoff, vma.vm_file,
                None, vma.name, vma.vm_ra, vma.anon_shift)
    if vma.anon_vma is not None and not vma.vm_flags & VM_WIPEONFORK:
        child.anon_vma = AnonVma(parent=vma.anon_vma)  # anon_vma_fork: the chain is inherited
    return child


def charge_fork(m: Machine, parent: MM) -> None:
    """Commit the child's copy of every VM_ACCOUNT VMA, each checked on its own as dup_mmap does
    (one VMA larger than the heuristic allows fails the fork); ENOMEM with nothing charged."""
    charged = 0
    for vma in parent.vmas:
        if vma.vm_flags & VM_ACCOUNT and not vma.vm_flags & VM_DONTCOPY:
            if not m.acct.vm_enough_memory(vma.npages, parent.total_pages()):
                m.acct.unacct(charged)
                raise SyscallError(ENOMEM, "fork", "not enough memory to commit a copy (overcommit policy)")
            charged += vma.npages


def dup_mmap(m: Machine, parent: MM) -> MM:
    """Build the child's mm: numbered as in the kernel's dup_mmap (0: the overcommit charge)."""
    charge_fork(m, parent)
    child = MM()
    for name in ("start_brk", "brk", "start_stack", "start_code", "end_code", "exe"):
        setattr(child, name, getattr(parent, name))
    ksm_fork(m, parent, child)  # a KSM mm's child is scanned too
    for vma in parent.vmas:
        # 1. MADV_DONTFORK: no VMA in the child at all
        if vma.vm_flags & VM_DONTCOPY:
            continue
        # 2. duplicate the VMA
        tmp = dup_vma(vma)
        child.insert(tmp)
        # 3. wipe-on-fork: a clean slate, nothing copied
        if vma.vm_flags & VM_WIPEONFORK:
            continue
        # 4. copy_page_range, only when faults could not refill the PTEs
        if vma_needs_copy(vma):
            copy_page_range(m, child, parent, vma)
    child.hiwater_rss = child.get_mm_rss()
    child.hiwater_vm = child.total_pages()
    return child
