"""The report's event log: events flattened into columns, each given its step and its mapping.

Events come from the snapshots (each carries those since the previous one) or as one flat list
split at the model's checkpoint markers. No address is -1 in the columns: given as None, or as 0
the way the model writes it (page 0 is never a user page); so is an address at or past 2**63 (a
wild access far beyond user space), which int64 columns cannot hold. A frame is -1 when there is
none (0, the model's way) and -2 when the backend cannot know it (None: the kernel's tracepoints
never name a copy's old frame), so the page says "unknown" rather than "none".

A compare series' events (the kernel's, `run --on both`) keep their own pids and addresses and are
placed on the main series' pages too: `compare_event_places` maps each one through the pairing of
processes and mappings the page maps use (the address_map's regions placed differently).
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..observe.events import COPYING_KINDS
from ..observe.records import PAGE_SIZE
from ..observe.snapshot import Snapshot
from .blob import Blob

#: A frame the backend cannot know (None in the event), as the columns hold it.
UNKNOWN_PFN = -2


_EVENT_FIELDS = ("seq", "pid", "kind", "address", "old_pfn", "new_pfn", "detail")
_get_fields = operator.attrgetter(*_EVENT_FIELDS)


def _fields(ev: Any) -> tuple[Any, ...]:
    """An event's fields in _EVENT_FIELDS order, from an Event-like object or a dict."""
    if isinstance(ev, dict):
        return tuple(ev.get(k) for k in _EVENT_FIELDS)
    try:
        return _get_fields(ev)
    except AttributeError:
        return tuple(getattr(ev, k, None) for k in _EVENT_FIELDS)


@dataclass
class EventColumns:
    """Events flattened into columns, with the step each belongs to."""

    seq: list[int] = field(default_factory=list)
    pid: list[int] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    addr: list[int] = field(default_factory=list)
    old_pfn: list[int] = field(default_factory=list)
    new_pfn: list[int] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)
    step: list[int] = field(default_factory=list)

    @classmethod
    def from_rows(cls, rows: list[tuple[Any, ...]], steps: list[int]) -> EventColumns:
        """Columns from _fields() tuples and their steps."""
        if not rows:
            return cls()
        seq, pid, kind, addr, old, new, detail = zip(*rows, strict=True)
        return cls([int(v) if v is not None else i for i, v in enumerate(seq)],
                   [int(v or 0) for v in pid], [str(v or "") for v in kind],
                   [int(v) if v and int(v) < 1 << 63 else -1 for v in addr],  # -1 too: past any user page
                   [_pfn(v) for v in old], [_pfn(v) for v in new], ["" if v is None else str(v) for v in detail],
                   list(steps))

    def __len__(self) -> int:
        return len(self.seq)


def _pfn(v: Any) -> int:
    """A frame as the columns hold it: the PFN, -1 for none (0), UNKNOWN_PFN for None."""
    return UNKNOWN_PFN if v is None else int(v) if v else -1


def series_events(series: Sequence[Snapshot | None]) -> EventColumns:
    """The events the snapshots of a series carry, each with its snapshot's index (None: no snapshot
    at that step, e.g. the kernel's run ended earlier). Checkpoint markers are not listed."""
    rows: list[tuple[Any, ...]] = []
    steps: list[int] = []
    for i, s in enumerate(series):
        if s is None:
            continue
        for f in map(_fields, s.events):
            if f[2] != "checkpoint":
                rows.append(f)
                steps.append(i)
    return EventColumns.from_rows(rows, steps)


def assign_events(snapshots: Sequence[Snapshot], events: Sequence[Any] | None) -> EventColumns:
    """Events with their step: the events a snapshot carries, else split at checkpoint markers.

    A model checkpoint marker (kind "checkpoint", detail = label) closes the step of the snapshot
    with that label: events before it belong to that snapshot, events after it to the next one.
    Without markers, loose events all go to the last step. Markers themselves are not listed.
    """
    if any(s.events for s in snapshots):
        return series_events(snapshots)
    if not events:
        return EventColumns()
    rows: list[tuple[Any, ...]] = []
    steps: list[int] = []
    labels = [s.label for s in snapshots]
    last = len(snapshots) - 1
    all_rows = [_fields(ev) for ev in events]
    has_markers = any(f[2] == "checkpoint" for f in all_rows)
    step = 0 if has_markers else last
    for f in all_rows:
        if f[2] == "checkpoint":
            if f[6] in labels[step:]:
                step = labels.index(f[6], step) + 1
            continue
        rows.append(f)
        steps.append(min(step, last))
    return EventColumns.from_rows(rows, steps)


def event_mappings(ev: EventColumns, snapshots: Sequence[Snapshot], mapping_id: Callable[[Any], int]) -> np.ndarray:
    """Each event's mapping (`mapping_id` of its MappingView), or -1 when it has none.

    An event's mapping is looked up in its process at its step, else at the nearest earlier step.
    """
    step = np.asarray(ev.step, dtype=np.int64)
    pid = np.asarray(ev.pid, dtype=np.int64)
    addr = np.asarray(ev.addr, dtype=np.int64)
    ev_map = np.full(len(ev), -1, dtype=np.int64)
    for k in range(len(snapshots) - 1, -1, -1):
        for p in snapshots[k].processes:
            cand = np.flatnonzero((step >= k) & (ev_map < 0) & (pid == p.pid) & (addr >= 0))
            if not len(cand) or not p.mappings:
                continue
            ms = sorted(p.mappings, key=lambda m: m.vma.start)
            starts = np.asarray([m.vma.start for m in ms], dtype=np.int64)
            ends = np.asarray([m.vma.end for m in ms], dtype=np.int64)
            ids = np.asarray([mapping_id(m) for m in ms], dtype=np.int64)
            a = addr[cand]
            pos = np.searchsorted(starts, a, side="right") - 1
            ok = (pos >= 0) & (a < ends[np.clip(pos, 0, None)])
            ev_map[cand[ok]] = ids[pos[ok]]
    return ev_map


def events_meta(blob: Blob, ev: EventColumns, ev_map: np.ndarray) -> dict[str, Any]:
    """The event log as the page reads it: names of kinds and details, and one stored array per column."""
    kinds = sorted(set(ev.kind))
    kind_id = {k: i for i, k in enumerate(kinds)}
    details = sorted(set(ev.detail))
    detail_id = {d: i for i, d in enumerate(details)}
    return {
        "n": len(ev), "kinds": kinds, "copy_kinds": list(COPYING_KINDS), "details": details,
        "pids": sorted(set(ev.pid)),
        "mappings": sorted({int(i) for i in ev_map if i >= 0}),
        "seq": blob.add(np.asarray(ev.seq, dtype=np.int64), delta=True),
        "pid": blob.add(np.asarray(ev.pid, dtype=np.int64)),
        "kind": blob.add(np.asarray([kind_id[k] for k in ev.kind], dtype=np.int64)),
        "addr": blob.add(np.asarray(ev.addr, dtype=np.int64), delta=True),
        "old_pfn": blob.add(np.asarray(ev.old_pfn, dtype=np.int64), delta=True),
        "new_pfn": blob.add(np.asarray(ev.new_pfn, dtype=np.int64), delta=True),
        "detail": blob.add(np.asarray([detail_id[d] for d in ev.detail], dtype=np.int64)),
        "step": blob.add(np.asarray(ev.step, dtype=np.int64)),
        "mapping": blob.add(ev_map),
    }


#: Where a compare series' process lies on the main series at one step: per (step, compare pid),
#: the main series' pid and, per paired mapping, (start, end, main start, main pages, shift, main
#: mapping id); compare page j of a mapping is main page j - shift (payload.py's pairing).
Places = dict[tuple[int, int], tuple[int, list[tuple[int, int, int, int, int, int]]]]


def compare_event_places(ev: EventColumns, places: Places) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each compare event's main-series pid, address and mapping id (-1 where there is none), by the
    pairing at its step, else at the nearest earlier step its process was paired at."""
    n = len(ev)
    mpid, maddr, mapping = (np.full(n, -1, dtype=np.int64) for _ in range(3))
    paired_at: dict[int, list[int]] = {}
    for k, pid in sorted(places):
        paired_at.setdefault(pid, []).append(k)
    for i in range(n):
        ks = [k for k in paired_at.get(ev.pid[i], ()) if k <= ev.step[i]]
        if not ks:
            continue
        mpid[i], spans = places[(ks[-1], ev.pid[i])]
        a = ev.addr[i]
        for start, end, main_start, npages, shift, mid in spans if a >= 0 else ():
            if start <= a < end:
                page = (a - start) // PAGE_SIZE - shift
                if 0 <= page < npages:
                    maddr[i] = main_start + page * PAGE_SIZE + (a - start) % PAGE_SIZE
                    mapping[i] = mid
                break
    return mpid, maddr, mapping


def compare_events_meta(blob: Blob, ev: EventColumns, places: Places) -> dict[str, Any]:
    """A compare series' event log: its own columns (its pids and addresses) plus each event's place
    on the main series (`mpid`, `maddr`; `mapping` is the main series' mapping id)."""
    mpid, maddr, mapping = compare_event_places(ev, places)
    out = events_meta(blob, ev, mapping)
    out["mpid"] = blob.add(mpid)
    out["maddr"] = blob.add(maddr, delta=True)
    return out


class StepCounts:
    """Per step: how many events, how many copies, how many of each kind."""

    def __init__(self, ev: EventColumns) -> None:
        self.step = np.asarray(ev.step, dtype=np.int64)
        kind = np.asarray(ev.kind, dtype=object)
        self.copy = np.isin(kind, COPYING_KINDS) if len(ev) else np.zeros(0, dtype=bool)
        self.kinds = Counter(zip(ev.step, ev.kind, strict=True))

    def of(self, k: int) -> dict[str, Any]:
        """Step k's counts: {"copies", "events", "kinds"}."""
        in_step = self.step == k
        return {"copies": int(np.sum(self.copy & in_step)), "events": int(np.sum(in_step)),
                "kinds": {kd: n for (st, kd), n in sorted(self.kinds.items()) if st == k}}
