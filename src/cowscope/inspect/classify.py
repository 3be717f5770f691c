"""Vectorised page classes of one process's mapping against its parent at the same virtual address.

The classes themselves (codes, legend, `classify_pages`, `align`) are the shared vocabulary in
`cowscope.observe.classes`, re-exported here; this module decodes live pagemaps into the masks
they read (`ProcPages`) and counts frames across the inspected tree (`PfnTable`)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..observe.classes import (  # noqa: F401 - the class vocabulary, re-exported
    CLASS_CHARS,
    CLASS_LEGEND,
    COPIED,
    NCODES,
    NEW,
    NOT_PRESENT,
    OWN,
    RELEASED,
    SHARED_PARENT,
    SIBLING,
    SWAP,
    ZERO,
    ParentView,
    align,
    align_parent,
    classify_pages,
)
from ..observe.records import (
    PAGE_SIZE,
    PM_FILE,
    PM_MMAP_EXCLUSIVE,
    PM_PFN_MASK,
    PM_PRESENT,
    PM_SWAP,
    MapsEntry,
)

#: rich style of each class code (CLASS_CHARS order).
CLASS_STYLES = ("grey42", "bright_blue", "magenta", "green", "cyan", "bold red", "yellow", "white", "blue")
#: The same colours for the HTML report.
CLASS_COLOURS = ("#f2f2f2", "#9ecae1", "#c994c7", "#31a354", "#17becf", "#d62728", "#ffbf00", "#636363", "#3182bd")

#: Largest PFN for which frame counts are kept in dense arrays (beyond it: sort + searchsorted).
DENSE_PFN_LIMIT = 1 << 24
_PSS_SHIFT = 12


@dataclass
class ProcPages:
    """Decoded pagemap of all of one process's mappings, concatenated in address order."""

    vmas: list[MapsEntry]
    offsets: np.ndarray  # int64, index of each mapping's first page (len(vmas) + 1 entries)
    pfn: np.ndarray      # int64, 0 unless a real (non-zero-page) present frame with visible PFN
    real: np.ndarray     # bool: present and not the zero page (resident, counted in RSS)
    zero: np.ndarray     # bool: the shared zero page (only known with PFNs)
    swap: np.ndarray     # bool: swap entry
    excl: np.ndarray     # bool: pagemap bit 56, mapped exactly once
    anon: np.ndarray     # bool: a private anonymous page (present and not file/shmem, or swapped): fork copies it
    raw: np.ndarray | None = None  # the raw entries, kept only when page states are wanted
    _index: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def decode(cls, vmas: list[MapsEntry], pm: np.ndarray | list[np.ndarray], zero_pfns: Collection[int],
               keep_raw: bool = False) -> ProcPages:
        """Split raw pagemap entries (all mappings concatenated, or one array each) into the masks."""
        if isinstance(pm, list):
            pm = np.concatenate(pm) if pm else np.zeros(0, dtype=np.uint64)
        offsets = np.zeros(len(vmas) + 1, dtype=np.int64)
        np.cumsum(np.array([v.npages for v in vmas], dtype=np.int64), out=offsets[1:])
        if offsets[-1] != len(pm):
            raise ValueError(f"{len(pm)} pagemap entries for mappings of {offsets[-1]} pages")
        present = (pm & np.uint64(PM_PRESENT)) != 0
        pfn = np.where(present, (pm & np.uint64(PM_PFN_MASK)).astype(np.int64), 0)
        # The 4 KiB zero page, and the huge zero page's 512 (pagemap shows those with bit 61, "file").
        zero = np.zeros(len(pm), dtype=bool)
        for lo, hi in _runs(frozenset(zero_pfns)):  # lo <= pfn < hi in one unsigned comparison
            zero |= (pfn - lo).view(np.uint64) < hi - lo
        pfn[zero] = 0
        real = present & ~zero
        swap = ~present & ((pm & np.uint64(PM_SWAP)) != 0)
        excl = (pm & np.uint64(PM_MMAP_EXCLUSIVE)) != 0
        anon = (present & ((pm & np.uint64(PM_FILE)) == 0)) | swap
        return cls(list(vmas), offsets, pfn, real, zero, swap, excl, anon, pm if keep_raw else None)

    @property
    def has(self) -> np.ndarray:
        """Pages with something in them: a frame, the zero page or a swap entry."""
        return self.real | self.zero | self.swap

    @property
    def starts(self) -> list[int]:
        """Start addresses of the mappings."""
        return [v.start for v in self.vmas]

    def mapping_index(self) -> np.ndarray:
        """For every page, the index of its mapping (computed once)."""
        if self._index is None:
            self._index = np.repeat(np.arange(len(self.vmas)), np.diff(self.offsets))
        return self._index

    def per_mapping(self, mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Per-mapping count of pages in mask (or sum of weights over them)."""
        idx = self.mapping_index()[mask]
        return np.bincount(idx, weights=weights, minlength=len(self.vmas))


@lru_cache(maxsize=8)
def _runs(pfns: frozenset[int]) -> tuple[tuple[int, int], ...]:
    return tuple(pfn_runs(pfns))


def pfn_runs(pfns: Collection[int]) -> list[tuple[int, int]]:
    """The PFNs as half-open runs of consecutive frames, in order."""
    runs: list[tuple[int, int]] = []
    for p in sorted(pfns):
        if runs and runs[-1][1] == p:
            runs[-1] = (runs[-1][0], p + 1)
        else:
            runs.append((p, p + 1))
    return runs


class PfnTable:
    """How often each frame occurs in the inspected tree, and its map count.

    Map counts come from /proc/kpagecount only for frames some PTE shows as not exclusive
    (pagemap bit 56 clear); a frame every PTE shows as exclusive is mapped once.
    """

    def __init__(self, pfn_arrays: list[np.ndarray], shared_arrays: list[np.ndarray] | None = None) -> None:
        allp = np.concatenate(pfn_arrays) if pfn_arrays else np.zeros(0, dtype=np.int64)
        allp = allp[allp > 0]
        shared = np.concatenate(shared_arrays) if shared_arrays else allp
        shared = shared[shared > 0]
        top = int(allp.max()) if len(allp) else 0
        # Dense per-frame arrays pay off when the tree's frames cover much of the PFN range.
        self.dense = top < DENSE_PFN_LIMIT and len(allp) * 16 >= top
        if self.dense:
            size = top + 2  # a zero at the end catches clipped lookups
            self._count = np.bincount(allp, minlength=size).astype(np.int32)
            self._count[0] = 0
            self.unique = np.flatnonzero(self._count)
            self.need = np.flatnonzero(np.bincount(shared, minlength=size)) if len(shared) else shared
            self._mapcount = (self._count > 0).astype(np.int32)
        else:
            s = np.sort(allp)
            edges = np.flatnonzero(np.diff(s)) + 1
            starts = np.concatenate(([0], edges)).astype(np.int64) if len(s) else np.zeros(0, dtype=np.int64)
            self.unique = s[starts]
            self._ucount = np.diff(np.concatenate((starts, [len(s)]))).astype(np.int32)
            ss = np.sort(shared)
            self.need = ss[np.concatenate(([True], np.diff(ss) != 0))] if len(ss) else ss
            self._mapcount = np.ones(len(self.unique), dtype=np.int32)

    def set_mapcounts(self, counts: np.ndarray) -> None:
        """Attach kpagecount values for `self.need` (same order)."""
        if self.dense:
            self._mapcount[self.need] = counts
        else:
            self._mapcount[np.searchsorted(self.unique, self.need)] = counts

    def _lookup(self, table: np.ndarray, pfn: np.ndarray) -> np.ndarray:
        if self.dense:
            return np.take(table, pfn, mode="clip")
        if len(self.unique) == 0:
            return np.zeros(len(pfn), dtype=np.int32)
        idx = np.minimum(np.searchsorted(self.unique, pfn), len(self.unique) - 1)
        return np.where((pfn > 0) & (self.unique[idx] == pfn), table[idx], 0)

    def tree_count(self, pfn: np.ndarray) -> np.ndarray:
        """Occurrences of each frame among all inspected PTEs (0 for pfn 0)."""
        return self._lookup(self._count if self.dense else self._ucount, pfn)

    def mapcount(self, pfn: np.ndarray) -> np.ndarray:
        """Map count of each frame (1 for frames never seen shared)."""
        return self._lookup(self._mapcount, pfn)


def pss_weights(mapcount: np.ndarray) -> np.ndarray:
    """Per-page (PAGE_SIZE << 12) / mapcount, as the kernel's smaps accumulates PSS."""
    mc = np.maximum(mapcount.astype(np.int64), 1)
    return (PAGE_SIZE << _PSS_SHIFT) // mc


def pss_kb(raw: int) -> int:
    """kB from an accumulated raw PSS (kernel: raw >> PSS_SHIFT bytes, then >> 10)."""
    return raw >> (_PSS_SHIFT + 10)
