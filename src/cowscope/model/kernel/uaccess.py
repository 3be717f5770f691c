"""Loads and stores through the MMU: split at page boundaries; a PTE the MMU accepts is used as is,
anything else takes a page fault (do_user_addr_fault)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..arch import PAGE_SHIFT, PAGE_SIZE, PMD_SIZE
from ..mm.fault_range import fault_range
from ..mm.memory import do_user_addr_fault, find_vma_for_access

if TYPE_CHECKING:
    from ..machine import Machine
    from ..mm.page_alloc import PhysMem
    from ..mm.vma import MM


def translate(m: Machine, pid: int, mm: MM, va: int, write: bool) -> int:
    """The frame backing va for this access, faulting it in first if needed (raises SegvError)."""
    pfn = mm.pgd.mmu_access(va, write)
    if pfn < 0:
        pfn = do_user_addr_fault(m, pid, mm, va, write) >> PAGE_SHIFT
    return pfn


def load(m: Machine, pid: int, mm: MM, va: int, n: int) -> bytes:
    """Read n bytes at va (copy_from_user)."""
    phys = m.phys
    if n <= PAGE_SIZE - (va & (PAGE_SIZE - 1)):
        return phys.read(translate(m, pid, mm, va, False), va & (PAGE_SIZE - 1), n)
    out = bytearray()
    end = va + n
    while va < end:
        off = va & (PAGE_SIZE - 1)
        k = min(end - va, PAGE_SIZE - off)
        out += phys.read(translate(m, pid, mm, va, False), off, k)
        va += k
    return bytes(out)


def store(m: Machine, pid: int, mm: MM, va: int, data: bytes) -> None:
    """Write bytes at va (copy_to_user); each page is faulted in before it is written."""
    phys = m.phys
    off = va & (PAGE_SIZE - 1)
    if len(data) <= PAGE_SIZE - off:
        phys.write(translate(m, pid, mm, va, True), off, data)
        return
    pos = 0
    while pos < len(data):
        off = (va + pos) & (PAGE_SIZE - 1)
        k = min(len(data) - pos, PAGE_SIZE - off)
        phys.write(translate(m, pid, mm, va + pos, True), off, data[pos:pos + k])
        pos += k


def access_range(m: Machine, pid: int, mm: MM, start: int, length: int, write: bool,
                 value: int | None = None) -> None:
    """Touch (or fill with `value`) [start, start+length): vectorised per VMA where possible."""
    end = start + length
    va = start
    while va < end:
        vma = find_vma_for_access(m, pid, mm, va, write)
        hi = min(end, vma.vm_end)
        first, last = va & ~(PAGE_SIZE - 1), (hi + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        if vma.vm_file is None and not vma.is_shared and last - first > 4 * PAGE_SIZE:
            fault_range(m, pid, mm, vma, first, last, write)
            if value is not None:
                _fill_present(m, mm, va, hi, value)
        else:
            _access_pages(m, pid, mm, va, hi, write, value)
        va = hi


def _access_pages(m: Machine, pid: int, mm: MM, start: int, end: int, write: bool,
                  value: int | None) -> None:
    va = start
    while va < end:
        off = va & (PAGE_SIZE - 1)
        k = min(end - va, PAGE_SIZE - off)
        pfn = translate(m, pid, mm, va, write)
        if value is not None:
            m.phys.fill(pfn, off, k, value)
        va += k


def _fill_present(m: Machine, mm: MM, start: int, end: int, value: int) -> None:
    """Fill already-faulted, writable pages: whole pages become uniform (no 4 KiB buffer)."""
    phys = m.phys
    head = start & (PAGE_SIZE - 1)
    if head:
        k = min(end - start, PAGE_SIZE - head)
        phys.fill(mm.pgd.lookup(start) >> PAGE_SHIFT, head, k, value)
        start += k
    whole_end = end & ~(PAGE_SIZE - 1)
    if whole_end > start:
        for t, lo, hi, _va in mm.pgd.blocks(start, whole_end):
            _fill_frames(phys, t[lo:hi] >> PAGE_SHIFT, value)
        for haddr, leaf in mm.pgd.leaves(start, whole_end) if mm.pgd.pmds else ():
            first = (leaf >> PAGE_SHIFT) + ((max(start, haddr) - haddr) >> PAGE_SHIFT)
            last = (leaf >> PAGE_SHIFT) + ((min(whole_end, haddr + PMD_SIZE) - haddr) >> PAGE_SHIFT)
            _fill_frames(phys, np.arange(first, last, dtype=np.int64), value)
        start = whole_end
    if end > start:
        phys.fill(mm.pgd.lookup(start) >> PAGE_SHIFT, 0, end - start, value)


def _fill_frames(phys: PhysMem, pfns: np.ndarray, value: int) -> None:
    """Whole frames become uniform `value` pages (their 4 KiB buffers, if any, are dropped)."""
    if phys.data:
        for pfn in pfns[phys.content[pfns] < 0].tolist():
            del phys.data[pfn]
    phys.content[pfns] = value
