"""Page tables: x86-64 4-level semantics, stored as the leaf PTE tables only.

Each PTE table is a numpy int64[512] — the kernel's 4 KiB table page, entry = pfn << 12 | bits —
kept in a dict keyed by `va >> PMD_SHIFT`. Upper levels (PMD, PUD tables) are implied by which
leaf tables exist, which is all VmPTE needs. Range operations walk table by table (`blocks`).

A 2 MiB huge page is a PMD leaf instead of a PTE table: the PMD entries of one 1 GiB range live
in one numpy int64[512] of `pmds` (keyed by `va >> PUD_SHIFT`), `pfn << 12 | bits | PTE_PSE`, 0
where the slot holds a PTE table or nothing. A slot never holds both. Each leaf counts one page
table page in VmPTE, as the kernel deposits a PTE table with every huge PMD.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

import numpy as np

from ..arch import (
    PAGE_SHIFT,
    PGDIR_SHIFT,
    PMD_SHIFT,
    PTE_DIRTY,
    PTE_PRESENT,
    PTE_RW,
    PTE_USER,
    PTE_YOUNG,
    PTRS_PER_TABLE,
    PUD_SHIFT,
)

_IDX_MASK = PTRS_PER_TABLE - 1
_READABLE = PTE_PRESENT | PTE_USER
_WRITABLE = PTE_PRESENT | PTE_USER | PTE_RW
_DIRTY_YOUNG = PTE_DIRTY | PTE_YOUNG
_PMD_SPAN = PUD_SHIFT - PMD_SHIFT


class PageTable:
    """One mm's page tables (pgd): walk, set, range walk, and table accounting."""

    __slots__ = ("tables", "pmds")

    def __init__(self) -> None:
        self.tables: dict[int, np.ndarray] = {}
        self.pmds: dict[int, np.ndarray] = {}

    def lookup(self, va: int) -> int:
        """The PTE for va, 0 (pte_none) when no table or entry exists (walk without alloc). Inside
        a huge PMD: the subpage's entry as a PTE would show it (PTE_PSE set)."""
        t = self.tables.get(va >> PMD_SHIFT)
        if t is not None:
            return int(t[(va >> PAGE_SHIFT) & _IDX_MASK])
        if self.pmds:
            e = self.pmd_get(va)
            if e:
                return e + (((va >> PAGE_SHIFT) & _IDX_MASK) << PAGE_SHIFT)
        return 0

    # -- huge PMD leaves ---------------------------------------------------------------------
    def pmd_get(self, va: int) -> int:
        """The PMD leaf covering va, 0 when the slot has no huge page."""
        a = self.pmds.get(va >> PUD_SHIFT)
        return 0 if a is None else int(a[(va >> PMD_SHIFT) & _IDX_MASK])

    def _pmd_access(self, va: int, write: bool) -> int:
        """mmu_access through a huge PMD: the subpage's pfn, or -1 when it must fault."""
        leaf = self.pmd_get(va)
        need = _WRITABLE if write else _READABLE
        if leaf & need != need:
            return -1
        bits = _DIRTY_YOUNG if write else PTE_YOUNG
        if leaf & bits != bits:
            self.pmd_set(va, leaf | bits)
        return (leaf >> PAGE_SHIFT) + ((va >> PAGE_SHIFT) & _IDX_MASK)

    def pmd_set(self, va: int, entry: int) -> None:
        """Install (or clear, entry 0) the PMD leaf covering va (set_pmd_at / pmd_clear)."""
        key = va >> PUD_SHIFT
        a = self.pmds.get(key)
        if a is None:
            if not entry:
                return
            a = self.pmds[key] = np.zeros(PTRS_PER_TABLE, dtype=np.int64)
        a[(va >> PMD_SHIFT) & _IDX_MASK] = entry
        if not entry and not a.any():
            del self.pmds[key]

    def pmd_blocks(self, start: int, end: int) -> Iterator[tuple[np.ndarray, int, int, int]]:
        """Yield (pmd array, lo, hi, va_of_lo) for the 2 MiB slots overlapping [start, end)."""
        if end <= start:
            return
        first, last = start >> PUD_SHIFT, (end - 1) >> PUD_SHIFT
        for key in sorted(k for k in self.pmds if first <= k <= last):
            lo = (start >> PMD_SHIFT) & _IDX_MASK if key == first else 0
            hi = (((end - 1) >> PMD_SHIFT) & _IDX_MASK) + 1 if key == last else PTRS_PER_TABLE
            yield self.pmds[key], lo, hi, (key << PUD_SHIFT) | (lo << PMD_SHIFT)

    def leaves(self, start: int, end: int) -> list[tuple[int, int]]:
        """(haddr, entry) of every PMD leaf overlapping [start, end), in address order."""
        out = []
        for a, lo, hi, va in self.pmd_blocks(start, end):
            for i in np.flatnonzero(a[lo:hi]).tolist():
                out.append((va + (i << PMD_SHIFT), int(a[lo + i])))
        return out

    def nr_leaves(self) -> int:
        return sum(int(np.count_nonzero(a)) for a in self.pmds.values())

    def mmu_access(self, va: int, write: bool) -> int:
        """What the MMU does alone: the pfn when va's PTE allows the access (present, user, and
        writable for a write), setting accessed (and dirty) as x86 does; -1 when it must fault."""
        t = self.tables.get(va >> PMD_SHIFT)
        if t is None:
            return self._pmd_access(va, write) if self.pmds else -1
        i = (va >> PAGE_SHIFT) & _IDX_MASK
        pte = int(t[i])
        if write:
            if pte & _WRITABLE != _WRITABLE:
                return -1
            if pte & _DIRTY_YOUNG != _DIRTY_YOUNG:
                t[i] = pte | _DIRTY_YOUNG
        else:
            if pte & _READABLE != _READABLE:
                return -1
            if not pte & PTE_YOUNG:
                t[i] = pte | PTE_YOUNG
        return pte >> PAGE_SHIFT

    def lookup_table(self, va: int) -> bool:
        """Whether the PTE table covering va exists (the PMD entry is not none)."""
        return (va >> PMD_SHIFT) in self.tables

    def table(self, va: int) -> np.ndarray:
        """The PTE table covering va, allocated if missing (pte_alloc)."""
        key = va >> PMD_SHIFT
        t = self.tables.get(key)
        if t is None:
            t = self.tables[key] = np.zeros(PTRS_PER_TABLE, dtype=np.int64)
        return t

    def set(self, va: int, pte: int) -> None:
        """Install one PTE (set_pte_at)."""
        self.table(va)[(va >> PAGE_SHIFT) & _IDX_MASK] = pte

    def blocks(self, start: int, end: int, alloc: bool = False
               ) -> Iterator[tuple[np.ndarray, int, int, int]]:
        """Yield (table, lo, hi, va_of_lo) for each PTE table overlapping [start, end)."""
        if not alloc and end > start and ((end - start) >> PMD_SHIFT) > 2 * len(self.tables) + 8:
            yield from self._sparse_blocks(start, end)  # a big, mostly empty range (huge pages)
            return
        va = start
        while va < end:
            key = va >> PMD_SHIFT
            block_end = min((key + 1) << PMD_SHIFT, end)
            t = self.tables.get(key)
            if t is None and alloc:
                t = self.tables[key] = np.zeros(PTRS_PER_TABLE, dtype=np.int64)
            if t is not None:
                lo = (va >> PAGE_SHIFT) & _IDX_MASK
                yield t, lo, lo + ((block_end - va) >> PAGE_SHIFT), va
            va = block_end

    def _sparse_blocks(self, start: int, end: int) -> Iterator[tuple[np.ndarray, int, int, int]]:
        """blocks() by the existing tables' keys instead of every 2 MiB of the range."""
        first, last = start >> PMD_SHIFT, (end - 1) >> PMD_SHIFT
        for key in sorted(k for k in self.tables if first <= k <= last):
            va = max(start, key << PMD_SHIFT)
            block_end = min((key + 1) << PMD_SHIFT, end)
            lo = (va >> PAGE_SHIFT) & _IDX_MASK
            yield self.tables[key], lo, lo + ((block_end - va) >> PAGE_SHIFT), va

    def span(self, start: int, end: int, alloc: bool = False) -> Span:
        """The PTE tables covering [start, end) as one gathered range (see Span)."""
        return Span(list(self.blocks(start, end, alloc)))

    def gather(self, start: int, npages: int) -> np.ndarray:
        """PTEs of npages pages from start as one array (0 where no table)."""
        out = np.zeros(npages, dtype=np.int64)
        for t, lo, hi, va in self.blocks(start, start + (npages << PAGE_SHIFT)):
            i = (va - start) >> PAGE_SHIFT
            out[i:i + hi - lo] = t[lo:hi]
        return out

    def free_tables(self, keep: list[tuple[int, int]]) -> None:
        """Free PTE tables whose 2 MiB span overlaps no range in `keep` (free_pgtables)."""
        if not self.tables:
            return
        ranges = sorted(keep)
        ends = [e for _, e in ranges]
        dead = []
        for key in self.tables:
            lo, hi = key << PMD_SHIFT, (key + 1) << PMD_SHIFT
            i = bisect.bisect_right(ends, lo)  # first range ending after lo
            if i == len(ranges) or ranges[i][0] >= hi:
                dead.append(key)
        for key in dead:
            del self.tables[key]

    def reclaim_covered_tables(self, start: int, end: int) -> None:
        """Free the PTE tables [start, end) covers whole once they hold no entry (markers count as
        entries): MADV_DONTNEED's page-table reclaim (CONFIG_PT_RECLAIM, 6.14+)."""
        first = (start + (1 << PMD_SHIFT) - 1) >> PMD_SHIFT
        for key in range(first, end >> PMD_SHIFT):
            t = self.tables.get(key)
            if t is not None and not t.any():
                del self.tables[key]

    def nr_table_pages(self) -> int:
        """Page-table pages the kernel would count in VmPTE: PTE + PMD + PUD tables (a huge PMD
        counts its deposited PTE table)."""
        keys = set(self.tables.keys())
        for k, a in self.pmds.items():
            keys.update(((k << _PMD_SPAN) | i) for i in np.flatnonzero(a).tolist())
        pmds = {k >> _PMD_SPAN for k in keys}
        puds = {k >> (PGDIR_SHIFT - PMD_SHIFT) for k in keys}
        return len(keys) + len(pmds) + len(puds)


class Span:
    """A range of PTEs spread over several tables, gathered into one array for vectorised work."""

    __slots__ = ("blocks", "ptes")

    def __init__(self, blocks: list[tuple[np.ndarray, int, int, int]]) -> None:
        self.blocks = blocks
        if not blocks:
            self.ptes = np.zeros(0, dtype=np.int64)
        elif len(blocks) == 1:
            t, lo, hi, _ = blocks[0]
            self.ptes = t[lo:hi].copy()
        else:
            self.ptes = np.concatenate([t[lo:hi] for t, lo, hi, _ in blocks])

    def addresses(self, idx: np.ndarray) -> np.ndarray:
        """Virtual addresses of the gathered entries at positions idx."""
        if len(self.blocks) == 1 or not len(idx):
            va0 = self.blocks[0][3] if self.blocks else 0
            return va0 + (idx.astype(np.int64) << PAGE_SHIFT)
        base = np.concatenate([np.full(hi - lo, va - (pos << PAGE_SHIFT), dtype=np.int64)
                               for (_, lo, hi, va), pos in zip(self.blocks, self._offsets())])
        return base[idx] + (idx.astype(np.int64) << PAGE_SHIFT)

    def _offsets(self) -> list[int]:
        out, pos = [], 0
        for _, lo, hi, _va in self.blocks:
            out.append(pos)
            pos += hi - lo
        return out

    def store(self, values: np.ndarray) -> None:
        """Write the (modified) gathered entries back into their tables."""
        pos = 0
        for t, lo, hi, _ in self.blocks:
            t[lo:hi] = values[pos:pos + hi - lo]
            pos += hi - lo
