"""Page classes of a process against its parent: the inspector's vocabulary, for any page source.

Each resident page of a process whose parent is known is one of: the parent's frame at the same
virtual address (shared with parent), a frame another process of the tree maps (shared in tree),
its own frame where the parent has a page (copied), or its own frame where the parent has none
(new). A root (no parent known) has frames shared with its tree, and its own. The inspector
(`cowscope.inspect`) classifies live processes from their pagemap; `cowscope run` classifies the
snapshots of a scenario (`cowscope.report.tree`); both with `classify_pages`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .records import PAGE_SIZE, MapsEntry

# Per-page class codes (index into CLASS_CHARS).
NOT_PRESENT = 0
ZERO = 1
SWAP = 2
SHARED_PARENT = 3   # worker: same frame as the parent at this address; root: frame shared in the tree
SIBLING = 4         # worker: frame shared with another inspected process, not the parent here
COPIED = 5          # worker: parent has a page here, the worker has its own frame
NEW = 6             # worker: parent has no page here (or only the zero page); the frame is the worker's
OWN = 7             # root (parent not inspected): a frame no other inspected process maps
RELEASED = 8        # worker, not present: it held the page (at fork or when first seen), the parent still has one
NCODES = 9

CLASS_CHARS = ".0s=~c+#-"
CLASS_LEGEND = (
    (".", "not present"), ("0", "zero page"), ("s", "swap"), ("=", "shared with parent (root: with tree)"),
    ("~", "shared in tree, not with parent"), ("c", "copied"), ("+", "new since fork"),
    ("#", "root's own frame"), ("-", "released (the parent still has it)"),
)


class PageMasks(Protocol):
    """What classification reads of one process's pages (all its mappings, concatenated)."""

    vmas: list[MapsEntry]
    offsets: np.ndarray  # int64, index of each mapping's first page (len(vmas) + 1 entries)
    pfn: np.ndarray      # int64, 0 unless a real (non-zero-page) present frame with visible PFN
    real: np.ndarray     # bool: present and not the zero page (resident, counted in RSS)
    zero: np.ndarray     # bool: the shared zero page
    swap: np.ndarray     # bool: swap entry
    excl: np.ndarray     # bool: mapped exactly once (pagemap bit 56)


@dataclass
class ParentView:
    """The parent's pages aligned to one child mapping's addresses."""

    pfn: np.ndarray      # int64, parent's real frame (0 if none)
    real: np.ndarray     # bool, parent has a real resident page
    has: np.ndarray      # bool, parent has data here: a real page or a swapped one
    excl: np.ndarray     # bool, parent's page is exclusive (pagemap bit 56)


def align(src_vmas: list[MapsEntry], src_offsets: np.ndarray, arrays: list[np.ndarray],
          dst_vmas: list[MapsEntry], dst_offsets: np.ndarray) -> list[np.ndarray]:
    """Per-page arrays of one address space (`src`) re-indexed on another's pages (`dst`): each
    output page gets the source's value at the same virtual address, 0/False where the source has
    no mapping (mapping by mapping, slices only)."""
    n = int(dst_offsets[-1])
    out = [np.zeros(n, dtype=a.dtype) for a in arrays]
    starts = [v.start for v in src_vmas]
    for k, vma in enumerate(dst_vmas):
        base = int(dst_offsets[k])
        i = max(bisect.bisect_right(starts, vma.start) - 1, 0)
        while i < len(src_vmas) and src_vmas[i].start < vma.end:
            sv = src_vmas[i]
            lo, hi = max(sv.start, vma.start), min(sv.end, vma.end)
            if lo < hi:
                a = base + (lo - vma.start) // PAGE_SIZE
                c = int(src_offsets[i]) + (lo - sv.start) // PAGE_SIZE
                npg = (hi - lo) // PAGE_SIZE
                for o, arr in zip(out, arrays):
                    o[a:a + npg] = arr[c:c + npg]
            i += 1
    return out


def align_parent(parent: PageMasks, child: PageMasks) -> ParentView:
    """The parent's pages at the child's page addresses."""
    pfn, real, swap, excl = align(parent.vmas, parent.offsets, [parent.pfn, parent.real, parent.swap, parent.excl],
                                  child.vmas, child.offsets)
    return ParentView(pfn, real, real | swap, excl)


def classify_pages(mp: PageMasks, parent: ParentView | None, tree_count: np.ndarray | None,
                   exact: bool) -> np.ndarray:
    """Per-page class codes; `parent` None for a root; `tree_count` (per page: how many PTEs of
    the tree map its frame) needed when exact."""
    codes = np.zeros(len(mp.real), dtype=np.uint8)
    codes[mp.zero] = ZERO
    codes[mp.swap] = SWAP
    real = mp.real
    if exact:
        assert tree_count is not None
        in_tree = tree_count >= 2
        if parent is None:
            codes[real & in_tree] = SHARED_PARENT
            codes[real & ~in_tree] = OWN
            return codes
        same = real & parent.real & (mp.pfn == parent.pfn)
        other = real & ~same & in_tree
        rest = real & ~same & ~in_tree
        codes[same] = SHARED_PARENT
        codes[other] = SIBLING
        codes[rest & parent.has] = COPIED
        codes[rest & ~parent.has] = NEW
        return codes
    # Without PFNs: pagemap's exclusive bit says "mapped once"; the rest is inferred.
    private = real & mp.excl
    shared = real & ~mp.excl
    if parent is None:
        codes[shared] = SHARED_PARENT
        codes[private] = OWN
        return codes
    with_parent = shared & parent.real & ~parent.excl
    codes[with_parent] = SHARED_PARENT
    codes[shared & ~with_parent] = SIBLING
    codes[private & parent.has] = COPIED
    codes[private & ~parent.has] = NEW
    return codes
