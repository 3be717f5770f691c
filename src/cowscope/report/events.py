"""The report's event log: events flattened into columns, each given its step and its mapping.

Events come from the snapshots (each carries those since the previous one) or as one flat list
split at the model's checkpoint markers. No address / no frame is -1 in the columns: given as
None, or as 0 the way the model writes it (page 0 and PFN 0 are never user pages); so is an
address at or past 2**63 (a wild access far beyond user space), which int64 columns cannot hold.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..observe.snapshot import Snapshot
from .blob import Blob

#: Event kinds counted as copies in the timeline.
COPY_KINDS = ("cow-copy", "zero-cow", "file-copy")

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
                   [int(v) if v else -1 for v in old],
                   [int(v) if v else -1 for v in new], ["" if v is None else str(v) for v in detail],
                   list(steps))

    def __len__(self) -> int:
        return len(self.seq)


def assign_events(snapshots: Sequence[Snapshot], events: Sequence[Any] | None) -> EventColumns:
    """Events with their step: the events a snapshot carries, else split at checkpoint markers.

    A model checkpoint marker (kind "checkpoint", detail = label) closes the step of the snapshot
    with that label: events before it belong to that snapshot, events after it to the next one.
    Without markers, loose events all go to the last step. Markers themselves are not listed.
    """
    rows: list[tuple[Any, ...]] = []
    steps: list[int] = []
    if any(s.events for s in snapshots):
        for i, s in enumerate(snapshots):
            for f in map(_fields, s.events):
                if f[2] != "checkpoint":
                    rows.append(f)
                    steps.append(i)
        return EventColumns.from_rows(rows, steps)
    if not events:
        return EventColumns()
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
        "n": len(ev), "kinds": kinds, "details": details, "pids": sorted(set(ev.pid)),
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
