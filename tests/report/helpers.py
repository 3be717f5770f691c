"""Builders of synthetic Snapshots for report tests."""

from __future__ import annotations

import numpy as np

from cowscope.observe.pages import PAGECACHE, PRIVATE, SHARED, PageStates
from cowscope.observe.records import PAGE_SIZE, MapsEntry, SmapsEntry, SmapsRollup
from cowscope.observe.snapshot import MappingView, ProcessView, Snapshot


def states(codes: list[int] | np.ndarray, mapcount: list[int] | np.ndarray | None = None,
           pfn: list[int] | np.ndarray | None = None) -> PageStates:
    """PageStates from per-page state constants (map count 1 private, 2 shared unless given)."""
    st = np.asarray(codes, dtype=np.uint8)
    if mapcount is None:
        mapcount = np.where(st == SHARED, 2, np.where((st == PRIVATE) | (st == PAGECACHE), 1, 0))
    if pfn is None:
        pfn = np.where(st != 0, np.arange(1000, 1000 + len(st)), 0)
    return PageStates(st, np.asarray(mapcount, dtype=np.int64), np.asarray(pfn, dtype=np.int64))


def smaps_for(vma: MapsEntry, ps: PageStates) -> SmapsEntry:
    """An smaps block whose figures follow from the page states (4 kB pages)."""
    st, mc = ps.state, ps.mapcount
    priv = int(np.sum(st == PRIVATE)) * 4
    shared_pages = (st == SHARED) | ((st == PAGECACHE) & (mc > 1))
    shared = int(np.sum(shared_pages)) * 4
    priv += int(np.sum((st == PAGECACHE) & (mc <= 1))) * 4
    rss = priv + shared
    pss = priv + int(np.sum(np.where(shared_pages, 4.0 / np.maximum(mc, 1), 0.0)))
    return SmapsEntry(vma, {"Size": vma.size_kb, "Rss": rss, "Pss": pss, "Private_Dirty": priv,
                            "Shared_Dirty": shared})


def mapping(start: int, ps: PageStates, perms: str = "rw-p", path: str = "") -> MappingView:
    """A MappingView at `start` covering len(ps) pages."""
    vma = MapsEntry(start, start + len(ps) * PAGE_SIZE, perms, path=path)
    return MappingView(vma, smaps_for(vma, ps), ps)


def process(pid: int, ppid: int, name: str, mappings: list[MappingView]) -> ProcessView:
    """A ProcessView whose rollup sums its mappings' smaps."""
    fields: dict[str, int] = {}
    for m in mappings:
        for k, v in (m.smaps.fields if m.smaps else {}).items():
            fields[k] = fields.get(k, 0) + v
    lo = min((m.vma.start for m in mappings), default=0)
    hi = max((m.vma.end for m in mappings), default=0)
    return ProcessView(pid, ppid, name, None, SmapsRollup(lo, hi, fields), mappings)


def snapshot(label: str, processes: list[ProcessView], events: list | None = None,
             source: str = "model") -> Snapshot:
    """A Snapshot of these processes."""
    return Snapshot(label, source, 0.0, processes, list(events or []))
