"""Snapshots: every process's views at one moment, taken the same way from any backend.

A source is anything with the observation API declared in `observe.backend` (`ViewSource`, whose
processes are `Views`): the model's Machine, the Linux backend's Machine, the inspector's
live-process source. Reports and comparisons read snapshots, never backend internals.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ProcessGone
from .backend import Views, ViewSource
from .pages import PageStates, classify, merge_runs, run_pages
from .records import PAGE_SIZE, MapsEntry, SmapsEntry, SmapsRollup, Status, pagemap_pfns


@dataclass
class MappingView:
    """One VMA of one process: maps line, smaps block and per-page states."""

    vma: MapsEntry
    smaps: SmapsEntry | None
    pages: PageStates | None
    classes: np.ndarray | None = None  # per-page class codes a source adds (the inspector: vs the parent)


@dataclass
class ProcessView:
    """One process at a snapshot."""

    pid: int
    ppid: int
    name: str
    status: Status | None
    rollup: SmapsRollup | None
    mappings: list[MappingView] = field(default_factory=list)
    faults: dict[str, int] = field(default_factory=dict)  # minor/major fault counters if known
    classes: dict[str, int | None] | None = None  # kB per class a source adds (the inspector's figures)


@dataclass
class Snapshot:
    """All processes of a backend at one labelled moment."""

    label: str
    source: str  # "model", "linux", "inspect"
    ts: float
    processes: list[ProcessView]
    events: list[Any] = field(default_factory=list)  # events since the previous snapshot (model)
    zero_pfns: frozenset[int] = frozenset()
    #: what the class codes of `MappingView.classes` mean: (char, name, colour) per code
    class_legend: list[tuple[str, str, str]] = field(default_factory=list)

    def process(self, pid: int) -> ProcessView:
        for p in self.processes:
            if p.pid == pid:
                return p
        raise KeyError(pid)


#: Mappings up to this many pages (128 MiB) are read whole, one pagemap read each; larger ones
#: only where `pagemap_scan` finds pages (an untouched 1 TiB reservation costs nothing).
SCAN_PAGES = 1 << 15
#: Page states of mappings up to this many pages (4 GiB) are kept per page; larger ones sparse
#: (the populated pages only: strips and reports summarise them).
DENSE_PAGES = 1 << 20


def take(machine: ViewSource, label: str, source: str = "model", pages: bool = True,
         max_pages_per_mapping: int | None = None, events: list[Any] | None = None) -> Snapshot:
    """Read every live process's views from `machine` into a Snapshot."""
    zero = set(machine.zero_pfns)
    views = []
    for p in machine.live_processes():
        try:
            views.append(_view(machine, p, pages, max_pages_per_mapping, zero))
        except ProcessGone:  # killed from outside while we read (kill -9, the OOM killer): not shown
            continue
    return Snapshot(label, source, time.time(), views, list(events or []), frozenset(zero))


def _view(machine: ViewSource, p: Views, pages: bool, max_pages: int | None, zero: set[int]) -> ProcessView:
    """One process's views."""
    smaps = {s.vma.start: s for s in p.smaps()}
    vmas = p.maps()
    reads = [_read_pages(p, v) if pages and (max_pages is None or v.npages <= max_pages) else None for v in vmas]
    counts = _kpagecounts(machine, [r[0] for r in reads if r is not None])  # one read per process
    mappings = []
    for vma, read in zip(vmas, reads):
        states = None if read is None else _states(vma, *read, next(counts), zero)
        sm = smaps.get(vma.start)
        if states is not None and sm is not None and sm.fields.get("AnonHugePages", 0):
            states = states.with_huge(p.pagemap_huge(vma.start, vma.npages))
        mappings.append(MappingView(vma, sm, states))
    faults = p.fault_counts()
    return ProcessView(p.pid, p.ppid, p.name, p.status(), p.smaps_rollup(), mappings, faults)


def _read_pages(p: Views, vma: MapsEntry) -> tuple[np.ndarray, np.ndarray | None]:
    """(pagemap entries, None) of a whole mapping, or for a large one (entries, their page offsets)
    of the populated runs only."""
    if vma.npages <= SCAN_PAGES:
        return p.pagemap_raw(vma.start, vma.npages), None
    runs = merge_runs(p.pagemap_scan(vma.start, vma.npages))
    raws = [p.pagemap_raw(vma.start + int(a) * PAGE_SIZE, int(b - a)) for a, b in runs]
    raw = np.concatenate(raws) if raws else np.zeros(0, dtype=np.uint64)
    return raw, run_pages(runs)


def _states(vma: MapsEntry, raw: np.ndarray, index: np.ndarray | None, kpagecount: np.ndarray | None,
            zero: set[int]) -> PageStates:
    """Classified pages: per page, or sparse for a mapping above DENSE_PAGES."""
    states = classify(raw, kpagecount, zero)
    if index is None:
        return states
    sparse = PageStates(states.state, states.mapcount, states.pfn, index, vma.npages)
    return sparse.dense() if vma.npages <= DENSE_PAGES else sparse


def _kpagecounts(machine: ViewSource, raws: list[np.ndarray]) -> Iterator[np.ndarray | None]:
    """kpagecounts for several pagemap arrays with one backend call, handed back array by array."""
    if not raws:
        return iter(())
    pfns = pagemap_pfns(np.concatenate(raws))
    kc = machine.kpagecount_array(pfns)
    if kc is None:
        return iter([None] * len(raws))
    return iter(np.split(kc, np.cumsum([len(r) for r in raws])[:-1]))
