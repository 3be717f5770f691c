"""Page states: one classification of pages, computed the same way for the model and the kernel.

Input is what /proc gives (pagemap entries, /proc/kpagecount, the zero page's PFN); output is
one small integer per page, the legend shared by terminal strips, the inspector and HTML reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .records import PM_FILE, PM_MMAP_EXCLUSIVE, PM_PFN_MASK, PM_PRESENT, PM_SWAP

#: Runs closer than this many pages are read as one (fewer reads, a few more entries).
MERGE_GAP = 64

NOT_PRESENT = 0  # no PTE (pagemap entry 0)
ZERO = 1         # the shared zero page (4 KiB, or a subpage of the huge zero page)
PRIVATE = 2      # anon page mapped once (exclusive)
SHARED = 3       # anon page mapped by several PTEs (count = kpagecount)
PAGECACHE = 4    # file or shmem page (page cache), any map count
SWAPPED = 5      # a non-present swap-type entry (swap, guard marker)

STATE_NAMES = {NOT_PRESENT: "not present", ZERO: "zero page", PRIVATE: "private",
               SHARED: "shared", PAGECACHE: "page cache", SWAPPED: "swap/guard"}


@dataclass(frozen=True)
class PageStates:
    """Per-page state and map count of one mapping of one process.

    Dense (`index` None): one entry per page of the mapping. Sparse, for huge mappings that are
    mostly untouched: entries only for the pages `index` lists (page offsets in the mapping, in
    order); every other page of the `npages` is not present."""

    state: np.ndarray      # uint8, one of the constants above
    mapcount: np.ndarray   # int64, kpagecount of the page (0 when unknown or not present)
    pfn: np.ndarray        # int64, 0 when not present or PFNs are hidden
    index: np.ndarray | None = None  # sparse: the page offsets the entries describe
    npages: int = 0                  # sparse: pages of the mapping
    huge: np.ndarray | None = None   # bool per entry: mapped by a huge PMD (2 MiB THP); None: unknown

    def __len__(self) -> int:
        return len(self.state) if self.index is None else self.npages

    @property
    def sparse(self) -> bool:
        return self.index is not None

    @classmethod
    def untouched(cls, npages: int) -> PageStates:
        """A mapping with no page at all (a sparse entry list that is empty)."""
        empty = np.zeros(0, dtype=np.int64)
        return cls(np.zeros(0, dtype=np.uint8), empty, empty, empty, npages)

    def counts(self) -> dict[str, int]:
        values, n = np.unique(self.state, return_counts=True)
        out = {STATE_NAMES[int(v)]: int(c) for v, c in zip(values, n)}
        unlisted = len(self) - len(self.state)
        if unlisted:
            out[STATE_NAMES[NOT_PRESENT]] = out.get(STATE_NAMES[NOT_PRESENT], 0) + unlisted
        return out

    def dense(self) -> PageStates:
        """The same states with one entry per page."""
        if self.index is None:
            return self
        state = np.full(self.npages, NOT_PRESENT, dtype=np.uint8)
        mapcount = np.zeros(self.npages, dtype=np.int64)
        pfn = np.zeros(self.npages, dtype=np.int64)
        state[self.index], mapcount[self.index], pfn[self.index] = self.state, self.mapcount, self.pfn
        huge = None
        if self.huge is not None:
            huge = np.zeros(self.npages, dtype=bool)
            huge[self.index] = self.huge
        return PageStates(state, mapcount, pfn, huge=huge)

    def with_huge(self, runs: np.ndarray) -> PageStates:
        """These states with the pages in `runs` (page offsets, as pagemap_huge gives them) marked
        as mapped by a huge PMD."""
        mask = np.zeros(len(self), dtype=bool)
        for a, b in np.asarray(runs, dtype=np.int64).reshape(-1, 2):
            mask[a:b] = True
        huge = mask if self.index is None else mask[self.index]
        return PageStates(self.state, self.mapcount, self.pfn, self.index, self.npages, huge)


def classify(pagemap: np.ndarray, kpagecount: np.ndarray | None, zero_pfns: set[int] | np.ndarray,
             ) -> PageStates:
    """Classify pages from raw pagemap entries and their kpagecounts.

    `kpagecount` may be None (no root): exclusivity then comes from pagemap bit 56 alone and
    shared pages get map count 2 ("at least two").
    """
    pm = np.asarray(pagemap, dtype=np.uint64)
    present = (pm & np.uint64(PM_PRESENT)) != 0
    swapped = ~present & ((pm & np.uint64(PM_SWAP)) != 0)
    file = present & ((pm & np.uint64(PM_FILE)) != 0)
    pfn = np.where(present, (pm & np.uint64(PM_PFN_MASK)).astype(np.int64), 0)
    zeros = np.asarray(sorted(zero_pfns) if isinstance(zero_pfns, set) else zero_pfns, dtype=np.int64)
    is_zero = present & np.isin(pfn, zeros) & (pfn != 0)  # the huge zero page shows F
    if kpagecount is None:
        excl = (pm & np.uint64(PM_MMAP_EXCLUSIVE)) != 0
        mc = np.where(present & ~is_zero, np.where(excl, 1, 2), 0).astype(np.int64)
    else:
        mc = np.where(present, np.asarray(kpagecount, dtype=np.int64), 0)
    state = np.full(len(pm), NOT_PRESENT, dtype=np.uint8)
    state[swapped] = SWAPPED
    anon = present & ~file & ~is_zero
    state[anon & (mc <= 1)] = PRIVATE
    state[anon & (mc >= 2)] = SHARED
    state[file] = PAGECACHE
    state[is_zero] = ZERO
    return PageStates(state, mc, pfn)


# --- runs of pages: (n, 2) int64 arrays of half-open [first, end) page offsets -------------------


def runs_of(pages: np.ndarray) -> np.ndarray:
    """Runs of consecutive values in a sorted array of distinct page offsets."""
    pages = np.asarray(pages, dtype=np.int64)
    if len(pages) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    breaks = np.flatnonzero(np.diff(pages) != 1) + 1
    starts = pages[np.concatenate(([0], breaks))]
    ends = pages[np.concatenate((breaks - 1, [len(pages) - 1]))] + 1
    return np.stack([starts, ends], axis=1)


def populated_runs(entries: np.ndarray, first: int = 0) -> np.ndarray:
    """Runs (offset by `first`) of the pagemap entries that are present or a swap-type entry."""
    live = (np.asarray(entries, dtype=np.uint64) & np.uint64(PM_PRESENT | PM_SWAP)) != 0
    return runs_of(np.flatnonzero(live) + first)


def merge_runs(runs: np.ndarray, gap: int = MERGE_GAP) -> np.ndarray:
    """`runs` with neighbours less than `gap` pages apart joined."""
    if len(runs) < 2:
        return runs
    keep = np.concatenate(([True], runs[1:, 0] - runs[:-1, 1] >= gap))
    starts = runs[keep, 0]
    ends = runs[np.concatenate((np.flatnonzero(keep)[1:] - 1, [len(runs) - 1])), 1]
    return np.stack([starts, ends], axis=1)


def run_pages(runs: np.ndarray) -> np.ndarray:
    """Every page offset the runs cover, in order."""
    if len(runs) == 0:
        return np.zeros(0, dtype=np.int64)
    lengths = runs[:, 1] - runs[:, 0]
    offsets = np.repeat(runs[:, 0] - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return np.arange(int(lengths.sum()), dtype=np.int64) + offsets
