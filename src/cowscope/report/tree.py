"""What a checkpoint says about the process tree, in the inspector's vocabulary, from snapshots alone.

Per process: its resident pages against its parent's at the same address (`observe.classes`:
shared with parent, shared in tree, copied, new; a root: shared with its tree, or its own), and
the pages it copied since the previous checkpoint: its copy events where the backend records
events (the model; the kernel's tracepoints), else the frames replaced by others since then.
For the tree: the RSS sum against what is really used, each resident frame counted once. Every
figure is in kB and comes from the snapshots' pagemap-derived page states, so the model and the
kernel (with root: PFNs) are read the same way; without PFNs the classes are inferred from the
exclusive bit and nothing is counted once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..observe import classes as cl
from ..observe.pages import PAGECACHE, PRIVATE, SHARED, SWAPPED, ZERO, PageStates
from ..observe.records import PAGE_SIZE, MapsEntry
from ..observe.snapshot import ProcessView, Snapshot

KB = PAGE_SIZE // 1024


@dataclass
class ProcessPages:
    """All pages of one process at one snapshot, its mappings concatenated in address order
    (satisfies `observe.classes.PageMasks`)."""

    pid: int
    ppid: int
    vmas: list[MapsEntry]
    offsets: np.ndarray  # int64, first page of each mapping (len(vmas) + 1 entries)
    state: np.ndarray    # uint8, observe.pages states
    mapcount: np.ndarray
    pfn: np.ndarray      # int64, 0 where no real frame (not present, zero page) or PFNs hidden
    huge: np.ndarray     # bool, mapped by a huge PMD (a 2 MiB THP; False where unknown)

    @property
    def real(self) -> np.ndarray:
        """Resident pages (counted in RSS)."""
        return (self.state == PRIVATE) | (self.state == SHARED) | (self.state == PAGECACHE)

    @property
    def zero(self) -> np.ndarray:
        return self.state == ZERO

    @property
    def swap(self) -> np.ndarray:
        return self.state == SWAPPED

    @property
    def excl(self) -> np.ndarray:
        return self.real & (self.mapcount <= 1)

    def mapping(self, k: int) -> slice:
        """The pages of mapping k."""
        return slice(int(self.offsets[k]), int(self.offsets[k + 1]))

    def states(self, k: int) -> PageStates:
        """Mapping k's pages as PageStates (for strips)."""
        s = self.mapping(k)
        return PageStates(self.state[s], self.mapcount[s], self.pfn[s], huge=self.huge[s])


def process_pages(pv: ProcessView) -> ProcessPages:
    """One process's pages from its snapshot (a mapping without page states counts as not present)."""
    vmas = [m.vma for m in pv.mappings]
    offsets = np.zeros(len(vmas) + 1, dtype=np.int64)
    np.cumsum([v.npages for v in vmas], out=offsets[1:])
    n = int(offsets[-1])
    state = np.zeros(n, dtype=np.uint8)
    mapcount = np.zeros(n, dtype=np.int64)
    pfn = np.zeros(n, dtype=np.int64)
    huge = np.zeros(n, dtype=bool)
    for k, m in enumerate(pv.mappings):
        if m.pages is None:
            continue
        d = m.pages.dense()
        s = slice(int(offsets[k]), int(offsets[k]) + len(d.state))
        state[s], mapcount[s], pfn[s] = d.state, d.mapcount, d.pfn
        if d.huge is not None:
            huge[s] = d.huge
    pfn[state == ZERO] = 0
    return ProcessPages(pv.pid, pv.ppid, vmas, offsets, state, mapcount, pfn, huge)


def snapshot_pages(snap: Snapshot) -> dict[int, ProcessPages]:
    """Every process's pages, by pid."""
    return {pv.pid: process_pages(pv) for pv in snap.processes}


def pfns_known(pages: dict[int, ProcessPages]) -> bool:
    """Whether every resident page has a visible frame number (the model; the kernel as root)."""
    return all(bool(np.all(p.pfn[p.real] != 0)) for p in pages.values())


def before_of(pid: int, ppid: int, now: ProcessPages, prev: dict[int, ProcessPages] | None
              ) -> tuple[ProcessPages | None, bool]:
    """What a process's pages are compared with: its own at the previous checkpoint, or for a
    process new since then its parent's (what fork gave it). Returns (pages, is_own)."""
    if prev is None:
        return None, False
    if pid in prev:
        return prev[pid], True
    return prev.get(ppid), False


def aligned(before: ProcessPages | None, now: ProcessPages) -> ProcessPages:
    """`before`'s pages at the addresses of `now`'s (not present where `before` had no mapping)."""
    n = len(now.state)
    if before is None:
        return ProcessPages(now.pid, now.ppid, now.vmas, now.offsets, np.zeros(n, dtype=np.uint8),
                            np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool))
    st, mc, pfn, huge = cl.align(before.vmas, before.offsets, [before.state, before.mapcount, before.pfn,
                                                                before.huge], now.vmas, now.offsets)
    return ProcessPages(before.pid, before.ppid, now.vmas, now.offsets, st, mc, pfn, huge)


#: Pages each copy event puts in place (a copy of a page where the parent has one: "copied";
#: a write to the zero page is a new page, as the inspector counts it).
COPY_PAGES = {"cow-copy": 1, "file-copy": 1, "thp-copy": 512}


def copies_by_pid(snap: Snapshot) -> dict[int, int] | None:
    """Pages each process copied since the previous checkpoint, by its copy events; None when the
    snapshot carries no events (a backend that records none: every checkpoint leaves a marker)."""
    if not snap.events:
        return None
    out: dict[int, int] = {}
    for e in snap.events:
        n = COPY_PAGES.get(e.kind, 0)
        if n:
            out[e.pid] = out.get(e.pid, 0) + n
    return out


def copied_since(now: ProcessPages, before: ProcessPages | None) -> np.ndarray:
    """Pages that hold a frame other than the real frame they held before (a copy on write, of an
    anonymous or a page-cache page); needs PFNs."""
    pfn = aligned(before, now).pfn
    return now.real & (now.state != PAGECACHE) & (pfn != 0) & (now.pfn != pfn)


@dataclass
class ProcessLine:
    """One process's figures at a checkpoint (kB); class figures None when unknown."""

    pid: int
    ppid: int
    name: str
    root: bool                   # its parent is not in the snapshot
    rss_kb: int
    shared_kb: int               # the parent's frame (a root: frames shared with its tree)
    in_tree_kb: int              # shared with another process of the tree, not the parent
    copied_kb: int               # its own frame where the parent has a page
    new_kb: int                  # its own frame where the parent has none (a root: its own frames)
    copied_since_kb: int | None  # pages it copied since the previous checkpoint


@dataclass
class TreeLine:
    """The tree at a checkpoint: sums, each frame once, and one ProcessLine per process."""

    processes: list[ProcessLine]
    rss_sum_kb: int
    pss_sum_kb: int
    unique_kb: int | None        # each resident frame once (None without PFNs)
    copied_since_kb: int | None
    exact: bool                  # classes from frame numbers (else from the exclusive bit)


def _tree_counts(pages: dict[int, ProcessPages]) -> tuple[np.ndarray, np.ndarray]:
    """(distinct frames, how many PTEs of the tree map each)."""
    allp = np.concatenate([p.pfn[p.real] for p in pages.values()] or [np.zeros(0, dtype=np.int64)])
    return np.unique(allp[allp > 0], return_counts=True)


def _counts_of(frames: np.ndarray, counts: np.ndarray, pfn: np.ndarray) -> np.ndarray:
    if len(frames) == 0:
        return np.zeros(len(pfn), dtype=np.int64)
    idx = np.minimum(np.searchsorted(frames, pfn), len(frames) - 1)
    return np.where((pfn > 0) & (frames[idx] == pfn), counts[idx], 0)


def tree_line(snap: Snapshot, pages: dict[int, ProcessPages], prev: dict[int, ProcessPages] | None) -> TreeLine:
    """The tree line of a snapshot; `prev` the previous checkpoint's pages (None for the first)."""
    exact = pfns_known(pages)
    frames, counts = _tree_counts(pages) if exact else (np.zeros(0, dtype=np.int64),) * 2
    copies = copies_by_pid(snap) if prev is not None else None
    lines = [_process_line(pv, pages, frames, counts, prev, exact, copies) for pv in snap.processes]
    since = [pl.copied_since_kb for pl in lines]
    return TreeLine(lines, sum(pl.rss_kb for pl in lines),
                    sum(pv.rollup["Pss"] if pv.rollup is not None else 0 for pv in snap.processes),
                    len(frames) * KB if exact else None,
                    None if any(s is None for s in since) else sum(s for s in since if s is not None), exact)


def _process_line(pv: ProcessView, pages: dict[int, ProcessPages], frames: np.ndarray, counts: np.ndarray,
                  prev: dict[int, ProcessPages] | None, exact: bool, copies: dict[int, int] | None) -> ProcessLine:
    p = pages[pv.pid]
    parent = pages.get(pv.ppid) if pv.ppid != pv.pid else None
    view = cl.align_parent(parent, p) if parent is not None else None
    codes = cl.classify_pages(p, view, _counts_of(frames, counts, p.pfn) if exact else None, exact)
    kb = np.bincount(codes, minlength=cl.NCODES) * KB
    root = parent is None
    since = None
    if copies is not None:
        since = copies.get(pv.pid, 0) * KB
    elif exact and prev is not None:
        since = int(np.count_nonzero(copied_since(p, before_of(pv.pid, pv.ppid, p, prev)[0]))) * KB
    rss = int(np.count_nonzero(p.real)) * KB
    return ProcessLine(pv.pid, pv.ppid, pv.name, root, rss, int(kb[cl.SHARED_PARENT]), int(kb[cl.SIBLING]),
                       int(kb[cl.COPIED]), int(kb[cl.OWN] if root else kb[cl.NEW]), since)


KIND_OF = np.array([0, 1, 2, 2, 3, 4], dtype=np.uint8)  # by state: none, zero, anon, anon, page cache, swap


def moved(now: ProcessPages, before: ProcessPages | None, exact: bool) -> np.ndarray:
    """Pages whose content changed place since `before`: present or not, zero page, anonymous,
    page cache or swap changed, or (with PFNs) another frame. A page that only became shared or
    private (the same frame, another map count) has not moved."""
    b = aligned(before, now)
    out = KIND_OF[now.state] != KIND_OF[b.state]
    if exact:
        out |= now.real & (b.pfn != 0) & (now.pfn != b.pfn)
    return out


def resident_kb(pages: ProcessPages, ks: Sequence[int]) -> int:
    """Resident kB of the mappings `ks`."""
    return sum(int(np.count_nonzero(pages.real[pages.mapping(k)])) for k in ks) * KB
