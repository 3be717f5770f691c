"""Live processes as a snapshot source, so the inspector's samples feed the shared HTML report."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import ProcessGone
from ..observe import kpage, pagescan, procfs
from ..observe.records import MapsEntry, SmapsEntry, SmapsRollup, Status
from ..observe.snapshot import Snapshot, take
from . import classify as cl
from .figures import ProcessFigures

#: mappings larger than this are summarised in reports without a per-page map (VSIZE reservations)
MAX_PAGES_PER_MAPPING = 1 << 20


@dataclass
class LiveProcess:
    """One live process seen through /proc, with the model's observation API."""

    pid: int
    ppid: int
    name: str

    def maps(self) -> list[MapsEntry]:
        return [e for e in procfs.read_maps(self.pid) if e.path not in procfs.SPECIAL_MAPPINGS]

    def smaps(self) -> list[SmapsEntry]:
        return procfs.read_smaps(self.pid)

    def smaps_rollup(self) -> SmapsRollup:
        return procfs.read_smaps_rollup(self.pid)

    def status(self) -> Status:
        return procfs.read_status(self.pid)

    def pagemap_raw(self, addr: int, npages: int) -> np.ndarray:
        return procfs.read_pagemap(self.pid, addr, npages)

    def pagemap_scan(self, addr: int, npages: int) -> np.ndarray:
        return pagescan.scan_pagemap(self.pid, addr, npages)

    def pagemap_huge(self, addr: int, npages: int) -> np.ndarray:
        return pagescan.huge_runs(self.pid, addr, npages)

    def fault_counts(self) -> dict[str, int]:
        return procfs.read_fault_counts(self.pid)


class LiveSource:
    """A fixed set of live processes as a snapshot backend (`observe.snapshot.take`)."""

    def __init__(self, procs: list[tuple[int, int, str]]) -> None:
        self.procs = [LiveProcess(*p) for p in procs]
        self.kpage = kpage.kpage_available()
        self.zero_pfns = set(kpage.zero_page_pfns())

    def live_processes(self) -> list[LiveProcess]:
        return [p for p in self.procs if procfs.is_alive(p.pid)]

    def kpagecount_array(self, pfns: np.ndarray) -> np.ndarray | None:
        return kpage.read_kpagecount(pfns) if self.kpage else None


#: The inspector's figures the HTML report shows per process (kB).
REPORT_FIGURES = ("shared_with_parent_kb", "sibling_shared_kb", "copied_kb", "copied_identical_kb", "new_kb",
                  "released_kb", "shared_in_tree_kb")


def with_classes(snap: Snapshot, figures: list[ProcessFigures]) -> Snapshot:
    """`snap` with the inspector's classes: each process's figures, each mapping's page classes
    (matched by pid and mapping start and size), and the class legend."""
    by_pid = {f.pid: f for f in figures}
    snap.class_legend = [(ch, name, cl.CLASS_COLOURS[i]) for i, (ch, name) in enumerate(cl.CLASS_LEGEND)]
    for p in snap.processes:
        f = by_pid.get(p.pid)
        if f is None:
            continue
        p.classes = {k: getattr(f, k) for k in REPORT_FIGURES if f.parent_in_tree or k == "shared_in_tree_kb"}
        codes = {(m.start, m.end): m.codes for m in f.mappings if m.codes is not None}
        for mv in p.mappings:
            c = codes.get((mv.vma.start, mv.vma.end))
            if c is not None and len(c) == mv.vma.npages:
                mv.classes = c
    return snap


def snapshot_of(procs: list[tuple[int, int, str]], label: str) -> Snapshot | None:
    """A snapshot of the given (pid, ppid, name) processes; processes that vanish are left out."""
    source = LiveSource(procs)
    for _ in range(3):  # a process exiting mid-read: try again without it
        try:
            snap = take(source, label, source="inspect", max_pages_per_mapping=MAX_PAGES_PER_MAPPING)
            snap.ts = time.time()
            return snap
        except ProcessGone as gone:
            source.procs = [p for p in source.procs if p.pid != gone.pid]
    return None
