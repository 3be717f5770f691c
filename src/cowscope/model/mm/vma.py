"""vm_area_struct and mm_struct: VMAs, their flags, anon_vma, lookup, split and merge rules."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..arch import MMAP_BASE, PAGE_SHIFT, PMD_SIZE, STACK_GUARD_GAP
from .pgtable import PageTable

if TYPE_CHECKING:
    from ..fs.file import File
    from .readahead import FileRaState

VM_READ = 0x1
VM_WRITE = 0x2
VM_EXEC = 0x4
VM_SHARED = 0x8
VM_MAYREAD = 0x10
VM_MAYWRITE = 0x20
VM_MAYEXEC = 0x40
VM_MAYSHARE = 0x80
VM_GROWSDOWN = 0x100
VM_LOCKED = 0x2000
VM_SEQ_READ = 0x8000              # MADV_SEQUENTIAL
VM_RAND_READ = 0x10000            # MADV_RANDOM
VM_DONTCOPY = 0x20000
VM_DONTEXPAND = 0x40000
VM_ACCOUNT = 0x100000
VM_NORESERVE = 0x200000
VM_WIPEONFORK = 0x2000000
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000
VM_MERGEABLE = 0x80000000      # MADV_MERGEABLE: KSM may merge this VMA's anon pages
VM_MAYBE_GUARD = 1 << 11  # a formerly free low bit: the kernel prints 'gu' before 'lo' and 'ac'

#: show_smap_vma_flags mnemonics, in bit order
_MNEMONICS = (
    (VM_READ, "rd"), (VM_WRITE, "wr"), (VM_EXEC, "ex"), (VM_SHARED, "sh"), (VM_MAYREAD, "mr"),
    (VM_MAYWRITE, "mw"), (VM_MAYEXEC, "me"), (VM_MAYSHARE, "ms"), (VM_GROWSDOWN, "gd"),
    (VM_MAYBE_GUARD, "gu"), (VM_LOCKED, "lo"), (VM_SEQ_READ, "sr"), (VM_RAND_READ, "rr"),
    (VM_DONTCOPY, "dc"), (VM_DONTEXPAND, "de"), (VM_ACCOUNT, "ac"),
    (VM_NORESERVE, "nr"), (VM_WIPEONFORK, "wf"), (VM_HUGEPAGE, "hg"), (VM_NOHUGEPAGE, "nh"),
    (VM_MERGEABLE, "mg"),
)
PROT_FLAGS = VM_READ | VM_WRITE | VM_EXEC

_anon_vma_ids = itertools.count(1)


@dataclass(eq=False)
class AnonVma:
    """anon_vma: the reverse-map root for a VMA's anon pages; `inherited` = chain not singular."""

    parent: AnonVma | None = None
    id: int = field(default_factory=lambda: next(_anon_vma_ids))

    @property
    def inherited(self) -> bool:
        return self.parent is not None


@dataclass(eq=False)
class VMA:
    """vm_area_struct: [vm_start, vm_end), flags, backing file and offset, anon_vma, name."""

    vm_start: int
    vm_end: int
    vm_flags: int
    vm_pgoff: int = 0              # in pages; for anon VMAs the kernel uses va >> PAGE_SHIFT
    vm_file: File | None = None
    anon_vma: AnonVma | None = None
    name: str = ""                 # special names: [stack]; [heap] is derived from brk
    vm_ra: FileRaState | None = None  # the open file's readahead state (struct file: one per mmap)
    #: anon VMAs: the kernel's vm_pgoff is va >> PAGE_SHIFT plus this; nonzero once a faulted VMA
    #: was moved by mremap (it keeps its old pgoff), so it merges only with pieces of its own
    anon_shift: int = 0

    @property
    def npages(self) -> int:
        return (self.vm_end - self.vm_start) >> PAGE_SHIFT

    @property
    def is_anon(self) -> bool:
        """Private or shared anonymous memory with no file (shmem counts as a file here)."""
        return self.vm_file is None

    @property
    def is_shared(self) -> bool:
        return bool(self.vm_flags & VM_SHARED)

    @property
    def is_cow(self) -> bool:
        """is_cow_mapping: private and may be written (every MAP_PRIVATE mapping)."""
        return (self.vm_flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE

    def pgoff_at(self, va: int) -> int:
        """File page offset of va (linear_page_index)."""
        return self.vm_pgoff + ((va - self.vm_start) >> PAGE_SHIFT)

    def perms(self) -> str:
        f = self.vm_flags
        return ("r" if f & VM_READ else "-") + ("w" if f & VM_WRITE else "-") + \
            ("x" if f & VM_EXEC else "-") + ("s" if f & VM_MAYSHARE else "p")

    def mnemonics(self) -> tuple[str, ...]:
        return tuple(m for bit, m in _MNEMONICS if self.vm_flags & bit)

    def split_copy(self, start: int, end: int) -> VMA:
        """A VMA for [start, end) of this one, same flags, file offset advanced (__split_vma)."""
        return VMA(start, end, self.vm_flags, self.pgoff_at(start) if self.vm_file else 0,
                   self.vm_file, self.anon_vma, self.name, self.vm_ra, self.anon_shift)


def anon_vma_compatible(a: VMA, b: VMA) -> bool:
    """is_mergeable_anon_vma: equal, or one NULL and the other not inherited through fork."""
    if a.anon_vma is b.anon_vma:
        return True
    if a.anon_vma is None:
        return not b.anon_vma.inherited  # type: ignore[union-attr]
    if b.anon_vma is None:
        return not a.anon_vma.inherited
    return False


def can_merge(prev: VMA, nxt: VMA) -> bool:
    """prev directly followed by nxt can become one VMA (is_mergeable_vma + anon_vma rule)."""
    if prev.vm_end != nxt.vm_start or prev.vm_flags != nxt.vm_flags:
        return False
    if prev.vm_file is not nxt.vm_file or prev.vm_ra is not nxt.vm_ra or prev.name != nxt.name:
        return False  # (vm_ra stands for the struct file: two mmap calls open the file twice)
    # (each MAP_SHARED|MAP_ANONYMOUS mapping is its own shmem file, so only its own pieces merge)
    if prev.vm_file is not None and prev.pgoff_at(prev.vm_end) != nxt.vm_pgoff:
        return False
    if prev.vm_file is None and prev.anon_shift != nxt.anon_shift:
        return False  # anon pgoffs not contiguous: a faulted VMA mremap moved keeps its old one
    return anon_vma_compatible(prev, nxt)


class MM:
    """mm_struct: the VMA list (sorted), the page tables, RSS counters, brk and stack."""

    def __init__(self) -> None:
        self.vmas: list[VMA] = []
        self._starts: list[int] = []
        self.pgd = PageTable()
        self.rss_anon = 0
        self.rss_file = 0
        self.rss_shmem = 0
        self.hiwater_rss = 0
        self.hiwater_vm = 0
        self.start_brk = 0
        self.brk = 0
        self.start_stack = 0
        self.start_code = 0
        self.end_code = 0
        self.users = 1               # mm_users: vfork children borrow it
        self.exe: File | None = None
        self.swap_ents = 0           # MM_SWAPENTS: swap entries in the page tables (VmSwap)
        self.on_split: Callable[[int], None] | None = None  # huge PMDs: split one a VMA edge cuts

    def get_mm_rss(self) -> int:
        """Resident pages of every kind (get_mm_rss)."""
        return self.rss_anon + self.rss_file + self.rss_shmem

    # -- lookup ------------------------------------------------------------------------------
    def find_vma(self, va: int) -> VMA | None:
        """The VMA containing va, or None (vma_lookup)."""
        i = bisect.bisect_right(self._starts, va) - 1
        if i >= 0:
            vma = self.vmas[i]
            if va < vma.vm_end:
                return vma
        return None

    def vma_after(self, va: int) -> VMA | None:
        """First VMA with vm_end > va (find_vma's classic contract)."""
        i = bisect.bisect_right(self._starts, va) - 1
        if i >= 0 and self.vmas[i].vm_end > va:
            return self.vmas[i]
        i += 1
        return self.vmas[i] if i < len(self.vmas) else None

    def overlapping(self, start: int, end: int) -> list[VMA]:
        """VMAs intersecting [start, end), in address order."""
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        out = []
        for vma in self.vmas[i:]:
            if vma.vm_start >= end:
                break
            if vma.vm_end > start:
                out.append(vma)
        return out

    # -- list maintenance --------------------------------------------------------------------
    def insert(self, vma: VMA) -> None:
        """Link a VMA that overlaps nothing."""
        i = bisect.bisect_left(self._starts, vma.vm_start)
        self.vmas.insert(i, vma)
        self._starts.insert(i, vma.vm_start)

    def remove(self, vma: VMA) -> None:
        i = self.vmas.index(vma)
        del self.vmas[i]
        del self._starts[i]

    def reindex(self) -> None:
        """Rebuild the start index after VMAs changed bounds in place."""
        self.vmas.sort(key=lambda v: v.vm_start)
        self._starts = [v.vm_start for v in self.vmas]

    def split(self, vma: VMA, at: int) -> VMA:
        """Split vma at `at`; returns the upper part (both stay linked). A huge PMD the new edge
        cuts through is split first (vma_adjust_trans_huge)."""
        if self.on_split is not None and self.pgd.pmds:
            self.on_split(at)
        upper = vma.split_copy(at, vma.vm_end)
        vma.vm_end = at
        self.insert(upper)
        return upper

    def isolate(self, start: int, end: int) -> list[VMA]:
        """Split VMAs so that [start, end) is covered by whole VMAs; return them."""
        for vma in self.overlapping(start, end):
            if vma.vm_start < start < vma.vm_end:
                self.split(vma, start)
        for vma in self.overlapping(start, end):
            if vma.vm_start < end < vma.vm_end:
                self.split(vma, end)
        return self.overlapping(start, end)

    def try_merge_around(self, vma: VMA) -> VMA:
        """Merge vma with its neighbours where the kernel would (vma_merge_*); return the result.
        The previous VMA comes first: with it, then the next too if all three are compatible;
        else the next alone (where prev and next each could take vma but not each other, prev
        does: measured, a VMA mlock locked between two locked ones of different anon_vmas)."""
        i = self.vmas.index(vma)
        if i > 0 and can_merge(self.vmas[i - 1], vma):
            prev = self.vmas[i - 1]
            prev.vm_end = vma.vm_end
            prev.anon_vma = prev.anon_vma or vma.anon_vma
            self.remove(vma)
            vma, i = prev, i - 1
        if i + 1 < len(self.vmas) and can_merge(vma, self.vmas[i + 1]):
            nxt = self.vmas[i + 1]
            vma.vm_end = nxt.vm_end
            vma.anon_vma = vma.anon_vma or nxt.anon_vma
            self.remove(nxt)
        return vma

    # -- placement ---------------------------------------------------------------------------
    def get_unmapped_area(self, length: int, hint: int | None = None, align: int = 0) -> int:
        """Top-down search below mmap_base for a free range (vm_unmapped_area); 0 if none."""
        if hint and self._is_free(hint, hint + length):
            return hint
        ceiling = MMAP_BASE
        for vma in reversed(self.vmas):
            if vma.vm_start >= ceiling:
                if vma.vm_flags & VM_GROWSDOWN:
                    ceiling = min(ceiling, vma.vm_start - STACK_GUARD_GAP)
                continue
            gap_lo = vma.vm_end
            found = self._fit(gap_lo, ceiling, length, align)
            if found:
                return found
            ceiling = vma.vm_start
        return self._fit(1 << 16, ceiling, length, align)

    @staticmethod
    def _fit(lo: int, hi: int, length: int, align: int) -> int:
        start = hi - length
        if align:
            start &= ~(align - 1)
        return start if start >= lo and start > 0 else 0

    def _is_free(self, start: int, end: int) -> bool:
        return start > 0 and not self.overlapping(start, end)

    def total_pages(self) -> int:
        return sum(v.npages for v in self.vmas)


def thp_align(length: int, is_anon: bool) -> int:
    """2 MiB alignment the kernel gives PMD-multiple anonymous mappings (thp_get_unmapped_area)."""
    return PMD_SIZE if is_anon and length % PMD_SIZE == 0 else 0
