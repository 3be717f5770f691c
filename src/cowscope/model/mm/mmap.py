"""mmap, munmap, mprotect, brk and mremap: VMA placement, split, merge and PTE changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ...errors import EACCES, EFAULT, EINVAL, ENOMEM, EOVERFLOW, SyscallError
from ..arch import (
    MASK64,
    PAGE_SHIFT,
    PAGE_SIZE,
    PTE_DIRTY,
    PTE_PRESENT,
    PTE_RW,
    PTE_SPECIAL,
    PTE_USER,
    TASK_SIZE,
    page_align,
)
from .fault_range import fault_range
from .huge_memory import change_huge_pmds, split_huge_pmd
from .memory import BusError, handle_mm_fault, vma_maps_writable, zap_range
from .page_alloc import PG_ANON, PG_ANON_EXCLUSIVE, PG_DIRTY
from .readahead import FileRaState
from .vma import (
    MM,
    PROT_FLAGS,
    VM_ACCOUNT,
    VM_EXEC,
    VM_LOCKED,
    VM_MAYEXEC,
    VM_MAYREAD,
    VM_MAYSHARE,
    VM_MAYWRITE,
    VM_NORESERVE,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    VMA,
    thp_align,
)

#: The largest file offset (MAX_LFS_FILESIZE, 64-bit): no file mapping reaches past it.
MAX_LFS_FILESIZE = (1 << 63) - 1

if TYPE_CHECKING:
    from ..fs.file import File
    from ..machine import Machine


def prot_to_flags(prot: str | int, call: str) -> int:
    """'rwx' letters to VM_READ|VM_WRITE|VM_EXEC ("" is PROT_NONE); x86: write implies read. Raw
    bits beyond PROT_READ|WRITE|EXEC|SEM (observe.arguments passes them on) are EINVAL
    (arch_validate_prot; PROT_GROWSDOWN/GROWSUP are not modelled)."""
    if isinstance(prot, int):
        raise SyscallError(EINVAL, call, f"prot bits {prot:#x} beyond PROT_READ|PROT_WRITE|PROT_EXEC")
    if set(prot) - set("rwx"):
        raise SyscallError(EINVAL, call, f"prot must be letters from 'rwx', got {prot!r}")
    flags = (VM_READ if "r" in prot else 0) | (VM_WRITE if "w" in prot else 0) | \
        (VM_EXEC if "x" in prot else 0)
    return flags


def check_range(addr: int, length: int, call: str) -> int:
    """Validate a page-aligned user range; returns the page-aligned length."""
    if addr & (PAGE_SIZE - 1):
        raise SyscallError(EINVAL, call, f"address {addr:#x} is not page aligned")
    if length < 0 or addr < 0:
        raise SyscallError(EINVAL, call, "negative address or length")
    length = page_align(length)
    if addr + length > TASK_SIZE:
        raise SyscallError(EINVAL, call, "range beyond the user address space")
    return length


def do_mmap(m: Machine, pid: int, mm: MM, length: int, prot: str, shared: bool, file: File | None,
            offset: int, addr: int | None, fixed: bool, name: str = "", ra: FileRaState | None = None,
            vm_extra: int = 0) -> int:
    """mmap(2): place a new VMA (top-down), merge it with compatible neighbours. A file is opened
    for the call (its own struct file and readahead state) unless `ra` names an open one.
    `vm_extra`: VM_NORESERVE (MAP_NORESERVE: no commit charge) or VM_NOHUGEPAGE (MAP_STACK)."""
    flags = prot_to_flags(prot, "mmap")
    if offset & (PAGE_SIZE - 1) or offset < 0:
        raise SyscallError(EINVAL, "mmap", "offset must be a page-aligned non-negative number")
    if length <= 0:
        raise SyscallError(EINVAL, "mmap", "length must be positive")
    length = page_align(length)
    if length > TASK_SIZE:  # PAGE_ALIGN overflowed (mmap(-1)) or no range can be that long
        raise SyscallError(ENOMEM, "mmap", f"length {length:#x} beyond the user address space")
    if file is not None and offset > MAX_LFS_FILESIZE - length:  # file_mmap_ok
        raise SyscallError(EOVERFLOW, "mmap", f"offset {offset:#x} past the largest file")
    if fixed and (addr is None or addr & (PAGE_SIZE - 1)):
        raise SyscallError(EINVAL, "mmap", "MAP_FIXED needs a page-aligned address")
    charge = 0 if vm_extra & VM_NORESERVE else mmap_charge(flags, shared, file is None, length)
    if fixed:
        check_range(addr, length, "mmap")  # type: ignore[arg-type]
        replaced = accounted_pages(mm, addr, addr + length)  # type: ignore[operator]
        if not m.acct.vm_enough_memory(charge - replaced, mm.total_pages()):
            raise SyscallError(ENOMEM, "mmap", "not enough memory to commit (overcommit policy)")
        do_munmap(m, mm, addr, length)  # type: ignore[arg-type]
        m.acct.committed += replaced  # the old mapping's charge went with it; the new one stays
        start = addr
    else:
        hint = addr & ~(PAGE_SIZE - 1) if addr else None
        if hint is not None and hint + length > TASK_SIZE:
            hint = None
        start = mm.get_unmapped_area(length, hint, thp_align(length, file is None and not shared))
        if not start:
            raise SyscallError(ENOMEM, "mmap", "no free address range large enough")
        if not m.acct.vm_enough_memory(charge, mm.total_pages()):
            raise SyscallError(ENOMEM, "mmap", "not enough memory to commit (overcommit policy)")
    flags |= VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | vm_extra
    pgoff = offset >> PAGE_SHIFT
    if shared:
        flags |= VM_SHARED | VM_MAYSHARE
        if file is None:
            file = m.new_shmem_anon(length)  # shmem_zero_setup: the object carries the charge
            file.shmem_charge = charge
            pgoff = 0
    elif flags & VM_WRITE and not flags & VM_NORESERVE:
        flags |= VM_ACCOUNT
    if file is not None and not file.is_shmem and ra is None:
        ra = FileRaState(m.ra_pages)  # open(2)
    vma = VMA(start, start + length, flags, pgoff, file, None, name, ra)  # type: ignore[arg-type]
    mm.insert(vma)
    vma = mm.try_merge_around(vma)
    mm.hiwater_vm = max(mm.hiwater_vm, mm.total_pages())
    return start  # type: ignore[return-value]


def do_munmap(m: Machine, mm: MM, addr: int, length: int) -> None:
    """munmap(2): split at the edges, zap, unlink, free page tables no VMA needs."""
    length = check_range(addr, length, "munmap")
    if length == 0:
        raise SyscallError(EINVAL, "munmap", "length must be positive")
    end = addr + length
    vmas = mm.isolate(addr, end)
    if not vmas:
        return
    for vma in vmas:
        zap_range(m, mm, vma.vm_start, vma.vm_end)
        mm.remove(vma)
        if vma.vm_flags & VM_ACCOUNT:
            m.acct.unacct(vma.npages)
    mm.pgd.free_tables([(v.vm_start, v.vm_end) for v in mm.vmas])
    m.release_shmem([v.vm_file for v in vmas if v.vm_file is not None])


def mmap_charge(flags: int, shared: bool, anon: bool, length: int) -> int:
    """Pages a new mapping commits: private writable memory (accountable_mapping: it gets
    VM_ACCOUNT) and MAP_SHARED|MAP_ANONYMOUS objects whatever their protection (shmem_acct_size)."""
    if shared:
        return length >> PAGE_SHIFT if anon else 0
    return length >> PAGE_SHIFT if flags & VM_WRITE else 0


def accounted_pages(mm: MM, start: int, end: int) -> int:
    """Pages of VM_ACCOUNT VMAs inside [start, end)."""
    return sum((min(end, v.vm_end) - max(start, v.vm_start)) >> PAGE_SHIFT
               for v in mm.overlapping(start, end) if v.vm_flags & VM_ACCOUNT)


def do_mprotect(m: Machine, mm: MM, addr: int, length: int, prot: str, pid: int = 0) -> None:
    """mprotect(2): split, change flags and PTE permissions, re-merge (change_protection); VMA by
    VMA, so a hole or a refused charge leaves the VMAs before it changed."""
    if addr & (PAGE_SIZE - 1):
        raise SyscallError(EINVAL, "mprotect", f"address {addr:#x} is not page aligned")
    if length == 0:
        return
    end = addr + page_align(length)
    if end > MASK64:  # the range wraps around (mprotect(a, -1)): "end <= start"
        raise SyscallError(ENOMEM, "mprotect", "the range wraps around the address space")
    newprot = prot_to_flags(prot, "mprotect")
    pos = addr
    while pos < end:  # walk by address: fixups split and merge the VMAs as we go
        vma = mm.find_vma(pos)
        if vma is None:  # a hole: the VMAs before it stay changed
            raise SyscallError(ENOMEM, "mprotect", f"range {addr:#x}-{end:#x} is not fully mapped")
        if newprot & VM_WRITE and vma.vm_flags & VM_SHARED and not vma.vm_flags & VM_MAYWRITE:
            raise SyscallError(EACCES, "mprotect", "shared mapping of a read-only file")
        hi = min(end, vma.vm_end)
        mprotect_fixup(m, pid, mm, vma, pos, hi, newprot)
        pos = hi


def mprotect_fixup(m: Machine, pid: int, mm: MM, vma: VMA, start: int, end: int, newprot: int) -> None:
    """Change one VMA's part [start, end): the VM_ACCOUNT rules (becoming writable commits the part:
    ENOMEM if the policy refuses; a never-written anon part read-only gives its charge back), new
    flags and PTEs, merge. A locked private part that becomes writable is populated with write
    faults, as mlock would have (copy-on-write broken, the zero page replaced)."""
    old = vma.vm_flags
    new = (old & ~PROT_FLAGS) | newprot
    npages = (end - start) >> PAGE_SHIFT
    if newprot & VM_WRITE:
        if not old & (VM_ACCOUNT | VM_WRITE | VM_SHARED | VM_NORESERVE):
            if not m.acct.vm_enough_memory(npages, mm.total_pages()):
                raise SyscallError(ENOMEM, "mprotect", "not enough memory to commit (overcommit policy)")
            new |= VM_ACCOUNT
    elif old & VM_ACCOUNT and vma.vm_file is None and vma.anon_vma is None:
        new &= ~VM_ACCOUNT
        m.acct.unacct(npages)
    if new == old:
        return
    for part in mm.isolate(start, end):
        part.vm_flags = new
        change_protection(m, mm, part)
        mm.try_merge_around(part)
    if (old & (VM_WRITE | VM_SHARED | VM_LOCKED)) == VM_LOCKED and new & VM_WRITE:
        populate_locked(m, pid, mm, start, end)


def change_protection(m: Machine, mm: MM, vma: VMA) -> None:
    """Rewrite present PTEs for the VMA's new protection; writable only where no CoW is pending."""
    readable = bool(vma.vm_flags & (VM_READ | VM_WRITE) or vma.vm_flags & VM_EXEC and not m.pkeys)
    writable = bool(vma.vm_flags & VM_WRITE)
    if mm.pgd.pmds:
        change_huge_pmds(m, mm, vma)
    for t, lo, hi, _va in mm.pgd.blocks(vma.vm_start, vma.vm_end):
        ptes = t[lo:hi]
        present = (ptes & PTE_PRESENT) != 0
        new = ptes & ~(PTE_RW | PTE_USER)
        if readable:
            new |= PTE_USER
        if writable:
            pfns = ptes >> PAGE_SHIFT
            if vma.is_shared and vma_maps_writable(vma):  # no write-notify: vm_page_prot decides
                can = np.ones(len(ptes), dtype=bool)
            elif vma.is_shared:  # can_change_pte_writable: shared needs a dirty PTE
                can = (ptes & PTE_DIRTY) != 0
            else:  # private: only exclusive anon pages
                fl = m.phys.flags[np.where(present, pfns, 0)]
                can = ((fl & PG_ANON) != 0) & ((fl & PG_ANON_EXCLUSIVE) != 0) & ((ptes & PTE_SPECIAL) == 0)
            new = np.where(can, new | PTE_RW, new)
        t[lo:hi] = np.where(present, new, ptes)


def do_brk(m: Machine, pid: int, mm: MM, new_end: int | None) -> int:
    """brk(2): move the program break; returns the (possibly unchanged) break."""
    if new_end is None or new_end < mm.start_brk:
        return mm.brk
    old_top, new_top = page_align(mm.brk), page_align(new_end)
    if new_top < old_top:
        do_munmap(m, mm, new_top, old_top - new_top)
    elif new_top > old_top:
        nxt = mm.vma_after(old_top)
        if nxt is not None and nxt.vm_start < new_top + (PAGE_SIZE if nxt.name == "[stack]" else 0):
            return mm.brk
        if not m.acct.vm_enough_memory((new_top - old_top) >> PAGE_SHIFT, mm.total_pages()):
            return mm.brk
        do_brk_flags(mm, old_top, new_top)
    mm.brk = new_end
    mm.hiwater_vm = max(mm.hiwater_vm, mm.total_pages())
    return mm.brk


def do_brk_flags(mm: MM, start: int, end: int) -> None:
    """Grow the heap: expand the brk VMA in place if it can merge, else add a VMA."""
    flags = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_ACCOUNT
    vma = VMA(start, end, flags)
    mm.insert(vma)
    mm.try_merge_around(vma)


def do_sbrk(m: Machine, pid: int, mm: MM, delta: int) -> int:
    """glibc sbrk(): returns the old break; ENOMEM if the new break would wrap around or brk(2)
    could not grow it. A shrink below the heap's start is refused by the kernel (brk returns the
    old break, above the one asked for), which glibc's __brk takes for success: the old break,
    unchanged."""
    old = mm.brk
    if delta == 0:
        return old
    if old + delta < 0 or old + delta > MASK64:
        raise SyscallError(ENOMEM, "sbrk", f"cannot move the break by {delta}")
    if do_brk(m, pid, mm, old + delta) < old + delta:
        raise SyscallError(ENOMEM, "sbrk", f"cannot move the break by {delta}")
    return old


def do_mremap(m: Machine, pid: int, mm: MM, addr: int, old_len: int, new_len: int,
              may_move: bool) -> int:
    """mremap(2) for private anon mappings: shrink, grow in place, or move the PTEs."""
    old_len = check_range(addr, old_len, "mremap")
    new_len = page_align(new_len)
    if new_len == 0 or old_len == 0 or new_len > TASK_SIZE:  # PAGE_ALIGN overflow included
        raise SyscallError(EINVAL, "mremap", "lengths must be positive and within the user address space")
    vma = mm.find_vma(addr)
    if vma is None:
        raise SyscallError(EFAULT, "mremap", f"{addr:#x} is not mapped")
    if new_len <= old_len:  # shrinking (or same size) just unmaps the tail, whatever is there
        if new_len < old_len:
            do_munmap(m, mm, addr + new_len, old_len - new_len)
        return addr
    if vma.vm_end < addr + old_len:
        raise SyscallError(EFAULT, "mremap", "old range is not one mapping")
    grow_end = addr + new_len
    in_place = vma.vm_end == addr + old_len and not mm.overlapping(vma.vm_end, grow_end)
    if not in_place and not may_move:
        raise SyscallError(ENOMEM, "mremap", "cannot grow in place and MREMAP_MAYMOVE not given")
    new = addr if in_place else mm.get_unmapped_area(new_len)
    if not new:
        raise SyscallError(ENOMEM, "mremap", "no free address range")
    if vma.vm_flags & VM_ACCOUNT and not m.acct.vm_enough_memory((new_len - old_len) >> PAGE_SHIFT,
                                                                 mm.total_pages()):
        raise SyscallError(ENOMEM, "mremap", "not enough memory to commit (overcommit policy)")
    if in_place:
        vma.vm_end = grow_end
    else:
        move_vma(m, mm, addr, old_len, new, new_len)
    if vma.vm_flags & VM_LOCKED:  # mremap populates the new tail of a locked mapping
        populate_locked(m, pid, mm, new + old_len, new + new_len)
    return new


def mremap_to(m: Machine, pid: int, mm: MM, addr: int, old_len: int, new_len: int, may_move: bool,
               new_addr: int) -> int:
    """mremap(2) with MREMAP_FIXED (mremap_to): whatever lies at [new_addr, +new_len) is unmapped,
    a shrink drops the old tail first, then the range moves there; a locked one's new tail is
    populated. The ranges may not overlap; MREMAP_FIXED needs MREMAP_MAYMOVE."""
    old_len = check_range(addr, old_len, "mremap")
    new_len = page_align(new_len)
    if not may_move or new_addr & (PAGE_SIZE - 1) or new_len == 0 or old_len == 0:
        raise SyscallError(EINVAL, "mremap", "MREMAP_FIXED needs MREMAP_MAYMOVE, an aligned address, lengths")
    check_range(new_addr, new_len, "mremap")
    if addr < new_addr + new_len and new_addr < addr + old_len:
        raise SyscallError(EINVAL, "mremap", "the old and new ranges overlap")
    do_munmap(m, mm, new_addr, new_len)
    if old_len > new_len:
        do_munmap(m, mm, addr + new_len, old_len - new_len)
        old_len = new_len
    vma = mm.find_vma(addr)
    if vma is None or vma.vm_start > addr:
        raise SyscallError(EFAULT, "mremap", f"{addr:#x} is not mapped")
    if vma.vm_end < addr + old_len:
        raise SyscallError(EFAULT, "mremap", "old range is not one mapping")
    if vma.vm_flags & VM_ACCOUNT and new_len > old_len and not m.acct.vm_enough_memory(
            (new_len - old_len) >> PAGE_SHIFT, mm.total_pages()):
        raise SyscallError(ENOMEM, "mremap", "not enough memory to commit (overcommit policy)")
    locked = vma.vm_flags & VM_LOCKED
    move_vma(m, mm, addr, old_len, new_addr, new_len)
    if locked and new_len > old_len:
        populate_locked(m, pid, mm, new_addr + old_len, new_addr + new_len)
    return new_addr


def move_vma(m: Machine, mm: MM, addr: int, old_len: int, new: int, new_len: int) -> None:
    """Move [addr, addr+old_len) to a new VMA at new (new_len long): PTEs move, frames keep their
    counts (move_ptes); the old range's page tables go; the new VMA merges with its new neighbours
    as copy_vma's vma_merge_new_range does."""
    part = mm.isolate(addr, addr + old_len)[0]
    for haddr, _leaf in mm.pgd.leaves(addr, addr + old_len) if mm.pgd.pmds else ():
        split_huge_pmd(m, mm, haddr)  # the model moves PTEs only (move_huge_pmd is not modelled)
    moved = VMA(new, new + new_len, part.vm_flags, part.vm_pgoff, part.vm_file, part.anon_vma,
                part.name, part.vm_ra, part.anon_shift + ((addr - new) >> PAGE_SHIFT))
    mm.insert(moved)
    for i in range(old_len >> PAGE_SHIFT):  # move_ptes: frames keep their counts
        src = addr + (i << PAGE_SHIFT)
        if mm.pgd.lookup_table(src):  # move_page_tables gives the new place a table where the old had one
            mm.pgd.table(new + (i << PAGE_SHIFT))
        pte = mm.pgd.lookup(src)
        if pte:
            mm.pgd.set(new + (i << PAGE_SHIFT), pte)
            mm.pgd.set(addr + (i << PAGE_SHIFT), 0)
    mm.remove(part)
    mm.pgd.free_tables([(v.vm_start, v.vm_end) for v in mm.vmas])
    if moved.vm_file is None and moved.anon_vma is None:
        moved.vm_pgoff = new >> PAGE_SHIFT  # copy_vma: never faulted, it takes its new place's pgoff
        moved.anon_shift = 0
        mm.try_merge_around(moved)
    elif moved.vm_file is not None:  # (a faulted anon VMA keeps its pgoff: it merges with nothing)
        mm.try_merge_around(moved)


def mm_populate(m: Machine, pid: int, mm: MM, start: int, end: int, write: bool = False) -> None:
    """MAP_POPULATE: fault the range in as GUP does for it (written if private and writable, read
    with any access right otherwise), ignoring what cannot be faulted (PROT_NONE, past EOF)."""
    for vma in list(mm.overlapping(start, end)):
        populate_vma_page_range(m, pid, mm, vma, max(start, vma.vm_start), min(end, vma.vm_end))


def populate(m: Machine, pid: int, mm: MM, start: int, end: int, write: bool, force: bool = False) -> None:
    """Fault in [start, end) as if read or written (MAP_POPULATE / MADV_POPULATE_*); `force`
    (FOLL_FORCE, mlock): a read needs any access right, PROT_EXEC will do."""
    for vma in mm.overlapping(start, end):
        lo, hi = max(start, vma.vm_start), min(end, vma.vm_end)
        need = VM_WRITE if write else VM_READ | VM_WRITE | (VM_EXEC if force else 0)
        if not vma.vm_flags & need:
            continue  # mm_populate skips what the access could not fault in
        if vma.vm_file is None and not vma.is_shared:
            fault_range(m, pid, mm, vma, lo, hi, write)
            continue
        for va in range(lo, hi, PAGE_SIZE):
            pte = mm.pgd.lookup(va)
            if not pte & PTE_PRESENT or (write and not pte & PTE_RW):
                handle_mm_fault(m, pid, mm, vma, va, write)
            elif write and not pte & PTE_DIRTY:  # GUP with FOLL_WRITE dirties the folio
                m.phys.flags[pte >> PAGE_SHIFT] |= PG_DIRTY


def populate_vma_page_range(m: Machine, pid: int, mm: MM, vma: VMA, start: int, end: int) -> bool:
    """Fault [start, end) of one VMA as GUP does for mlock: written if the VMA is private and
    writable, read otherwise (FOLL_FORCE: any access right will do). False if it cannot."""
    if not vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC):
        return False
    write = (vma.vm_flags & (VM_WRITE | VM_SHARED)) == VM_WRITE
    try:
        populate(m, pid, mm, start, end, write, force=True)
    except BusError:
        return False
    return True


def populate_locked(m: Machine, pid: int, mm: MM, start: int, end: int) -> None:
    """Fault in the locked VMAs of [start, end), ignoring errors (mm_populate after mremap grows
    a locked mapping, populate_vma_page_range after mprotect makes one writable)."""
    for vma in list(mm.overlapping(start, end)):
        if vma.vm_flags & VM_LOCKED:
            populate_vma_page_range(m, pid, mm, vma, max(start, vma.vm_start), min(end, vma.vm_end))
