"""What one sample of a process tree says: per-mapping and per-process figures, tree totals (kB).

Plain records with their JSON form (docs/inspect.md); `sample.Sampler` fills them in.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

import numpy as np

from ..observe.pages import PageStates
from ..observe.records import PAGE_SIZE, MapsEntry
from .tree import Missed

KB = PAGE_SIZE // 1024
CLASS_FIELDS = ("shared_with_parent_kb", "sibling_shared_kb", "copied_kb", "new_kb")
#: Figures of a worker beside its classes: what it released since its start (not resident, so not
#: in RSS), and the copied pages by the side that paid (history.py), where its history tells.
HISTORY_FIELDS = ("released_kb", "copied_by_child_kb", "copied_by_parent_kb")
#: Copied pages whose bytes equal the parent's page there (content.py; scaled from a sample when
#: many), and how many were compared.
CONTENT_FIELDS = ("copied_identical_kb", "copied_compared_kb")


@dataclass
class MappingFigures:
    """Figures of one mapping (VMA) of one process, in kB."""

    start: int
    end: int
    perms: str
    path: str
    rss_kb: int = 0
    pss_kb: int = 0
    uss_kb: int = 0
    swap_kb: int = 0
    zero_kb: int | None = None
    shared_with_parent_kb: int | None = None
    sibling_shared_kb: int | None = None
    copied_kb: int | None = None
    new_kb: int | None = None
    released_kb: int | None = None
    copied_by_child_kb: int | None = None
    copied_by_parent_kb: int | None = None
    copied_identical_kb: int | None = None
    shared_in_tree_kb: int | None = None
    codes: np.ndarray | None = field(default=None, repr=False)  # per-page class codes (not serialised)
    states: PageStates | None = field(default=None, repr=False)  # observe.pages states (with states=True)

    @property
    def label(self) -> str:
        """Short name: the path, or [anon]."""
        return self.path or "[anon]"

    def to_dict(self) -> dict[str, object]:
        """JSON form (see docs/inspect.md)."""
        return {"start": f"{self.start:x}", "end": f"{self.end:x}", "perms": self.perms, "path": self.path,
                "rss_kb": self.rss_kb, "pss_kb": self.pss_kb, "uss_kb": self.uss_kb, "swap_kb": self.swap_kb,
                "zero_kb": self.zero_kb, **{k: getattr(self, k) for k in CLASS_FIELDS + HISTORY_FIELDS},
                "copied_identical_kb": self.copied_identical_kb, "shared_in_tree_kb": self.shared_in_tree_kb}


@dataclass
class ProcessFigures:
    """Figures of one process at one sample, in kB."""

    pid: int
    ppid: int
    name: str
    title: str | None = None    # the title it set on its command line (tree.process_title)
    parent_in_tree: bool = False
    exact: bool = False
    rss_kb: int = 0
    pss_kb: int = 0
    uss_kb: int = 0
    swap_kb: int = 0
    zero_kb: int | None = None
    shared_with_parent_kb: int | None = None
    sibling_shared_kb: int | None = None
    copied_kb: int | None = None
    new_kb: int | None = None
    released_kb: int | None = None
    copied_by_child_kb: int | None = None
    copied_by_parent_kb: int | None = None
    history: str | None = None  # what released and who-copied are judged against: "fork", "first-seen"
    copied_identical_kb: int | None = None
    copied_compared_kb: int | None = None
    shared_in_tree_kb: int | None = None
    mappings: list[MappingFigures] = field(default_factory=list)
    kinds: dict[str, dict[str, int]] | None = None  # kB per kind of memory (kinds.py), when asked for
    starttime: int = 0          # clock ticks after boot (tells a recycled pid from the process it had)

    @property
    def label(self) -> str:
        """What to call it: its title when it set one (redis-rdb-bgsave ...), else its name."""
        return self.title or self.name

    def to_dict(self, ts: float, seq: int) -> dict[str, object]:
        """One JSON-lines object (see docs/inspect.md)."""
        return {"type": "process", "ts": round(ts, 6), "seq": seq, "pid": self.pid, "ppid": self.ppid,
                "name": self.name, "title": self.title, "parent_in_tree": self.parent_in_tree, "exact": self.exact,
                "rss_kb": self.rss_kb, "pss_kb": self.pss_kb, "uss_kb": self.uss_kb, "swap_kb": self.swap_kb,
                "zero_kb": self.zero_kb,
                **{k: getattr(self, k) for k in CLASS_FIELDS + HISTORY_FIELDS + CONTENT_FIELDS},
                "history": self.history, "shared_in_tree_kb": self.shared_in_tree_kb, "kinds": self.kinds,
                "mappings": [m.to_dict() for m in self.mappings]}


@dataclass
class TreeTotals:
    """What the inspected processes use together, in kB."""

    processes: int = 0
    rss_sum_kb: int = 0
    pss_sum_kb: int = 0
    uss_sum_kb: int = 0
    swap_sum_kb: int = 0
    unique_kb: int | None = None          # each resident frame once (exact mode only)
    parent_rss_kb: int = 0                # RSS of the roots: the most copy-on-write can erode
    shared_with_parent_kb: int | None = None
    sibling_shared_kb: int | None = None
    copied_kb: int | None = None
    new_kb: int | None = None
    released_kb: int | None = None
    copied_by_child_kb: int | None = None
    copied_by_parent_kb: int | None = None
    copied_identical_kb: int | None = None
    copied_compared_kb: int | None = None
    #: `inspect -- COMMAND`: the roots' resident memory read just before their first fork, and how
    #: long before the fork was seen that read was (run.ForkWatch); None otherwise
    parent_rss_at_fork_kb: int | None = None
    at_fork_read_age_s: float | None = None

    def add(self, pf: ProcessFigures) -> None:
        """Count one process in: its figures, and as a root (its parent is not inspected) or as a worker."""
        self.processes += 1
        self.rss_sum_kb += pf.rss_kb
        self.pss_sum_kb += pf.pss_kb
        self.uss_sum_kb += pf.uss_kb
        self.swap_sum_kb += pf.swap_kb
        if not pf.parent_in_tree:
            self.parent_rss_kb += pf.rss_kb
        elif pf.copied_kb is not None:
            for k in CLASS_FIELDS + HISTORY_FIELDS + CONTENT_FIELDS:
                v = getattr(pf, k)
                if v is not None:
                    setattr(self, k, (getattr(self, k) or 0) + v)

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class Exited:
    """A process seen in the previous sample that is gone now: it exited between the two."""

    pid: int
    ppid: int
    name: str
    title: str | None
    last_seen_ts: float   # start of the last sample that read it
    gone_by_ts: float     # start of the sample that found it gone

    @property
    def label(self) -> str:
        """Its title or name."""
        return self.title or self.name

    def to_dict(self, seq: int) -> dict[str, object]:
        """JSON form: an `exit` object (docs/inspect.md)."""
        return {"type": "exit", "seq": seq, "ts": round(self.gone_by_ts, 6), "pid": self.pid, "ppid": self.ppid,
                "name": self.name, "title": self.title, "last_seen_ts": round(self.last_seen_ts, 6)}


@dataclass
class Sample:
    """Everything read at one tick."""

    seq: int
    ts: float
    mode: str
    duration_s: float = 0.0
    processes: list[ProcessFigures] = field(default_factory=list)
    missed: list[Missed] = field(default_factory=list)
    totals: TreeTotals = field(default_factory=TreeTotals)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None  # why this tick was not sampled (duty-cycle limit)
    exited: list[Exited] = field(default_factory=list)  # processes of the previous sample gone since
    root_of: dict[int, int] = field(default_factory=dict)       # pid -> its oldest ancestor in the sample
    trees: dict[int, TreeTotals] = field(default_factory=dict)  # root pid -> that tree's own totals

    def process(self, pid: int) -> ProcessFigures:
        """The figures of one pid (KeyError if not in this sample)."""
        for p in self.processes:
            if p.pid == pid:
                return p
        raise KeyError(pid)


def mapping_figures(vma: MapsEntry) -> MappingFigures:
    """Empty figures of one mapping."""
    return MappingFigures(vma.start, vma.end, vma.perms, vma.path)


_PERMS = re.compile(r"^(.+):([rwxsp-]{1,4})$")


def find_mappings(p: ProcessFigures, spec: str) -> list[MappingFigures]:
    """The mappings of `p` named by spec, in address order: a hex address inside one; or a name
    (`[heap]`, a path or a substring of one: exact matches first) optionally followed by `:PERMS`
    to pick among them by the start of their permissions (`libc:rw`, `python3.11:r-x`)."""
    addr: int | None
    try:
        addr = int(spec, 16)
    except ValueError:
        addr = None
    if addr is not None:
        starts = [m.start for m in p.mappings]
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and p.mappings[i].start <= addr < p.mappings[i].end:
            return [p.mappings[i]]
        return []
    hits = _named(p.mappings, spec)
    split = _PERMS.match(spec)
    if not hits and split:
        hits = [m for m in _named(p.mappings, split.group(1)) if m.perms.startswith(split.group(2))]
    return hits


def _named(mappings: list[MappingFigures], name: str) -> list[MappingFigures]:
    """Mappings whose label is `name`, else those whose label contains it."""
    return [m for m in mappings if name == m.label] or [m for m in mappings if name in m.label]
