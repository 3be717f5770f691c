"""Page states: one classification of pages, computed the same way for the model and the kernel.

Input is what /proc gives (pagemap entries, /proc/kpagecount, the zero page's PFN); output is
one small integer per page, the legend shared by terminal strips, the inspector and HTML reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .records import PM_FILE, PM_MMAP_EXCLUSIVE, PM_PFN_MASK, PM_PRESENT, PM_SWAP

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
    """Per-page state and map count of one mapping of one process."""

    state: np.ndarray      # uint8, one of the constants above
    mapcount: np.ndarray   # int64, kpagecount of the page (0 when unknown or not present)
    pfn: np.ndarray        # int64, 0 when not present or PFNs are hidden

    def __len__(self) -> int:
        return len(self.state)

    def counts(self) -> dict[str, int]:
        values, n = np.unique(self.state, return_counts=True)
        return {STATE_NAMES[int(v)]: int(c) for v, c in zip(values, n)}


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
