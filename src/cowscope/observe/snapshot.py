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

from .backend import ViewSource
from .pages import PageStates, classify
from .records import MapsEntry, SmapsEntry, SmapsRollup, Status, pagemap_pfns


@dataclass
class MappingView:
    """One VMA of one process: maps line, smaps block and per-page states."""

    vma: MapsEntry
    smaps: SmapsEntry | None
    pages: PageStates | None


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


@dataclass
class Snapshot:
    """All processes of a backend at one labelled moment."""

    label: str
    source: str  # "model", "linux", "inspect"
    ts: float
    processes: list[ProcessView]
    events: list[Any] = field(default_factory=list)  # events since the previous snapshot (model)
    zero_pfns: frozenset[int] = frozenset()

    def process(self, pid: int) -> ProcessView:
        for p in self.processes:
            if p.pid == pid:
                return p
        raise KeyError(pid)


def take(machine: ViewSource, label: str, source: str = "model", pages: bool = True,
         max_pages_per_mapping: int | None = None, events: list[Any] | None = None) -> Snapshot:
    """Read every live process's views from `machine` into a Snapshot."""
    zero = set(machine.zero_pfns)
    views = []
    for p in machine.live_processes():
        smaps = {s.vma.start: s for s in p.smaps()}
        vmas = p.maps()
        raws = [p.pagemap_raw(v.start, v.npages)
                if pages and (max_pages_per_mapping is None or v.npages <= max_pages_per_mapping) else None
                for v in vmas]
        counts = _kpagecounts(machine, [r for r in raws if r is not None])  # one read per process
        mappings = []
        for vma, raw in zip(vmas, raws):
            states = None if raw is None else classify(raw, next(counts), zero)
            mappings.append(MappingView(vma, smaps.get(vma.start), states))
        faults = p.fault_counts()
        views.append(ProcessView(p.pid, p.ppid, p.name, p.status(), p.smaps_rollup(), mappings, faults))
    return Snapshot(label, source, time.time(), views, list(events or []), frozenset(zero))


def _kpagecounts(machine: ViewSource, raws: list[np.ndarray]) -> Iterator[np.ndarray | None]:
    """kpagecounts for several pagemap arrays with one backend call, handed back array by array."""
    if not raws:
        return iter(())
    pfns = pagemap_pfns(np.concatenate(raws))
    kc = machine.kpagecount_array(pfns)
    if kc is None:
        return iter([None] * len(raws))
    return iter(np.split(kc, np.cumsum([len(r) for r in raws])[:-1]))
