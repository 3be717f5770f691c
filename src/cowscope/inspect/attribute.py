"""Kernel events attributed: to a process and mapping, to the side of a fork that paid, to the
code that wrote (symbolized and grouped into causes), and to the time since the fork.

`Attributor.feed(events)` turns classified `Event`s into `Attributed` rows; `TraceSummary` adds
them up for the terminal, JSON and HTML views (docs/trace.md has the JSON schema).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..observe.events import COPY_KINDS, Event
from ..observe.records import PAGE_SIZE, MapsEntry
from .causes import cause_of
from .symbols import SiteKey, Symbolizer

#: The kinds `cowscope trace` reports: every copy, reuse and zero-fill.
TRACED_KINDS = (*COPY_KINDS, "cow-reuse", "zero-fill")
SIDE_CHILD, SIDE_PARENT, SIDE_NONE = "child", "parent", "-"


def mapping_label(entry: MapsEntry | None) -> str:
    """The mapping as the inspector names it: its path, [heap], [stack], ... or [anon]."""
    if entry is None:
        return "[unknown]"
    return entry.path or "[anon]"


@dataclass(frozen=True)
class Attributed:
    """One event with everything `cowscope trace` says about it."""

    event: Event
    comm: str
    mapping: str
    side: str  # "child": a forked process wrote; "parent": a process that forked wrote; "-": no fork seen
    since_fork_ns: int | None
    site_key: SiteKey

    def to_json(self, symbolizer: Symbolizer) -> dict[str, Any]:
        e, s = self.event, symbolizer.best(self.site_key)
        return {
            "seq": e.seq, "time_ns": e.time_ns, "pid": e.pid, "comm": self.comm, "kind": e.kind,
            "address": e.address, "new_pfn": e.new_pfn, "mapping": self.mapping, "side": self.side,
            "since_fork_s": None if self.since_fork_ns is None else round(self.since_fork_ns / 1e9, 6),
            "ip": e.ip, "module": s.module, "symbol": s.symbol, "offset": s.offset,
            "inlined": list(s.inlined), "line": s.line, "site": s.label(), "cause": cause_of(s),
            "detail": e.detail,
        }


class Attributor:
    """Follows forks and names each event's process, mapping, side, site and cause."""

    def __init__(self, lookup: Callable[[int, int], MapsEntry | None], comm_of: Callable[[int], str]) -> None:
        self.lookup = lookup
        self.comm_of = comm_of
        self.symbolizer = Symbolizer(lookup)
        self.forked_at: dict[int, int] = {}  # child pid -> fork time
        self.last_fork: dict[int, int] = {}  # parent pid -> time of its latest fork
        self.comms: dict[int, str] = {}

    def feed(self, events: Iterable[Event]) -> list[Attributed]:
        out = []
        for e in events:
            if e.pid not in self.comms:
                self.comms[e.pid] = self.comm_of(e.pid)
            if e.kind in ("fork", "vfork") and e.detail.startswith("child pid "):
                child = int(e.detail.split()[-1])
                self.forked_at[child] = e.time_ns or 0
                self.last_fork[e.pid] = e.time_ns or 0
                self.comms.setdefault(child, self.comms[e.pid])
            elif e.kind in TRACED_KINDS:
                out.append(self._attribute(e))
        return out

    def _attribute(self, e: Event) -> Attributed:
        side, since = SIDE_NONE, None
        if e.pid in self.forked_at:
            side, since = SIDE_CHILD, self.forked_at[e.pid]
        elif e.pid in self.last_fork:
            side, since = SIDE_PARENT, self.last_fork[e.pid]
        since_ns = None if since is None or e.time_ns is None else e.time_ns - since
        return Attributed(e, self.comms.get(e.pid, "?"), mapping_label(self.lookup(e.pid, e.address)), side,
                          since_ns, self.symbolizer.key(e.pid, e.ip))


@dataclass
class ProcessRow:
    pid: int
    comm: str
    side: str
    kinds: Counter[str] = field(default_factory=Counter)
    timeline: Counter[int] = field(default_factory=Counter)  # copies per second since the trace began


@dataclass
class TraceSummary:
    """What `cowscope trace` prints: totals, top mappings, top sites, causes, per process over time."""

    start_ns: int
    rows: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    by_mapping: Counter[str] = field(default_factory=Counter)
    by_key: Counter[SiteKey] = field(default_factory=Counter)
    by_site: Counter[str] = field(default_factory=Counter)
    site_cause: dict[str, str | None] = field(default_factory=dict)
    by_cause: Counter[str] = field(default_factory=Counter)
    by_side: Counter[str] = field(default_factory=Counter)
    processes: dict[int, ProcessRow] = field(default_factory=dict)
    unattributed_allocs: int = 0
    lost: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, rows: Iterable[Attributed]) -> None:
        for a in rows:
            e = a.event
            self.rows += 1
            self.kinds[e.kind] += 1
            proc = self.processes.get(e.pid)
            if proc is None:
                proc = self.processes[e.pid] = ProcessRow(e.pid, a.comm, a.side)
            proc.kinds[e.kind] += 1
            if e.kind not in COPY_KINDS:
                continue
            proc.timeline[int(((e.time_ns or self.start_ns) - self.start_ns) // 1_000_000_000)] += 1
            self.by_mapping[a.mapping] += 1
            self.by_key[(a.site_key[0], a.site_key[1], 0)] += 1
            self.by_side[a.side] += 1

    def finish(self, symbolizer: Symbolizer, dwarf_sites: int = 30, dwarf_budget_s: float = 8.0) -> None:
        """Name the sites and add up the causes: the `dwarf_sites` most frequent with DWARF (inlined
        functions, line) while `dwarf_budget_s` lasts, the rest by symbol (pyelftools reads DWARF
        at about 0.3 s per compile unit)."""
        deadline = time.monotonic() + dwarf_budget_s
        self.by_site, self.by_cause, self.site_cause = Counter(), Counter(), {}
        for rank, (key, n) in enumerate(self.by_key.most_common()):
            site = symbolizer.site(key, dwarf=rank < dwarf_sites and time.monotonic() < deadline)
            label, cause = site.label(), cause_of(site)
            self.by_site[label] += n
            self.site_cause[label] = cause
            self.by_cause[cause or "other (by site)"] += n
        if len(self.by_key) > dwarf_sites or time.monotonic() >= deadline:
            self.notes.append("sites beyond the most frequent are named by symbol only (no DWARF inlining)")

    @property
    def copies(self) -> int:
        return sum(self.kinds[k] for k in COPY_KINDS)

    @property
    def copied_bytes(self) -> int:
        return self.copies * PAGE_SIZE

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "summary", "copies": self.copies, "copied_bytes": self.copied_bytes,
            "kinds": dict(self.kinds), "by_side": dict(self.by_side),
            "by_cause": dict(self.by_cause.most_common()),
            "top_mappings": self.by_mapping.most_common(20),
            "top_sites": [{"site": s, "copies": n, "cause": self.site_cause.get(s)}
                          for s, n in self.by_site.most_common(20)],
            "processes": [{"pid": p.pid, "comm": p.comm, "side": p.side, "kinds": dict(p.kinds),
                           "copies_per_second": dict(sorted(p.timeline.items()))}
                          for p in self.processes.values()],
            "unattributed_allocations": self.unattributed_allocs, "lost_events": self.lost,
            "notes": self.notes,
        }
