"""The HTML report's data: snapshots (and a series to compare) turned into JSON metadata and a blob.

`build_payload` walks the checkpoints: per step its processes, per process its mappings, each
mapping's page columns (legend code, map count, PFN) stored in the blob, patched against the same
mapping at the previous step or the parent's where that is smaller; then the event log. html.py
renders the result; nothing here knows about HTML.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..observe.pages import NOT_PRESENT, PAGECACHE, PRIVATE, SHARED, SWAPPED, ZERO
from ..observe.records import PAGE_SIZE
from ..observe.snapshot import MappingView, ProcessView, Snapshot
from ..observe.verdict import Verdict
from . import strips
from .blob import Blob
from .events import (
    EventColumns,
    Places,
    StepCounts,
    assign_events,
    compare_events_meta,
    event_mappings,
    events_meta,
    series_events,
)
from .matching import match_mappings, match_processes
from .verdict import place_verdict

_RESIDENT = (PRIVATE, SHARED, PAGECACHE)

#: Legend code of a page the other series' mapping does not cover (model-vs-kernel view).
OUTSIDE = len(strips.CHARS)

_Refs = dict[tuple[Any, ...], tuple[np.ndarray, Any]]


# -- figures -----------------------------------------------------------------------------------

def _uss_kb(p: ProcessView) -> int:
    src = p.rollup if p.rollup is not None else None
    if src is not None:
        return src["Private_Clean"] + src["Private_Dirty"]
    return sum(m.smaps["Private_Clean"] + m.smaps["Private_Dirty"] for m in p.mappings if m.smaps)


def _field_kb(p: ProcessView, name: str) -> int:
    if p.rollup is not None:
        return p.rollup[name]
    return sum(m.smaps[name] for m in p.mappings if m.smaps)


def tree_total(snapshot: Snapshot) -> dict[str, Any]:
    """The tree's real memory: distinct resident frames across its processes, each counted once."""
    rss = sum(_field_kb(p, "Rss") for p in snapshot.processes)
    pss = sum(_field_kb(p, "Pss") for p in snapshot.processes)
    pfns: list[np.ndarray] = []
    exact = True
    for p in snapshot.processes:
        for m in p.mappings:
            if m.pages is None:
                if m.smaps is None or m.smaps["Rss"]:
                    exact = False
                continue
            res = np.isin(m.pages.state, _RESIDENT)
            f = m.pages.pfn[res]
            if len(f) and not np.all(f > 0):
                exact = False
            pfns.append(f)
    if exact:
        allp = np.sort(np.concatenate(pfns)) if pfns else np.zeros(0, dtype=np.int64)
        frames = int(np.count_nonzero(np.diff(allp)) + 1) if len(allp) else 0
        return {"total_kb": frames * PAGE_SIZE // 1024, "rss_sum_kb": rss, "pss_sum_kb": pss,
                "method": "distinct frames"}
    return {"total_kb": pss, "rss_sum_kb": rss, "pss_sum_kb": pss,
            "method": "PSS sum (PFNs not available)"}


def _mapping_label(m: MappingView) -> str:
    return f"{m.vma.start:x}-{m.vma.end:x} {m.vma.path or '[anon]'}"


def _counts(m: MappingView) -> dict[str, int]:
    if m.pages is None:
        return {}
    return {str(k): int(v) for k, v in m.pages.counts().items()}


# -- page columns ------------------------------------------------------------------------------

def _page_columns(m: MappingView) -> dict[str, np.ndarray] | None:
    """Legend code, map count and PFN per page of a mapping, or None without page data."""
    if m.pages is None or m.pages.sparse or len(m.pages) != m.vma.npages:
        return None  # no page data, or a huge mapping kept sparse: its counts summarise it
    return {"code": strips.page_codes(m.pages), "mc": np.minimum(m.pages.mapcount, 2**31 - 1),
            "pfn": np.asarray(m.pages.pfn, dtype=np.int64)}


def _aligned(cols: dict[str, np.ndarray], n: int, shift: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The other series' columns re-indexed on this mapping's pages (page i <- i + shift)."""
    j = np.arange(n) + shift
    valid = (j >= 0) & (j < len(cols["code"]))
    out = {"code": np.full(n, OUTSIDE, dtype=np.uint8), "mc": np.zeros(n, dtype=np.int64),
           "pfn": np.zeros(n, dtype=np.int64)}
    for k in out:
        out[k][valid] = cols[k][j[valid]]
    return out, valid


def _store_columns(blob: Blob, cols: dict[str, np.ndarray] | None, refs: _Refs, key: tuple[Any, ...],
                   ref_key: tuple[Any, ...] | None) -> dict[str, Any] | None:
    """Descriptors of a mapping's code, map count and PFN arrays (patched on ref_key's if close)."""
    if cols is None:
        return None
    out: dict[str, Any] = {}
    for name, arr in cols.items():
        ref = refs.get((*ref_key, name)) if ref_key is not None else None
        out[name] = blob.add_like(arr, ref, delta=name == "pfn")
        refs[(*key, name)] = (arr, out[name])
    return out


def _ref_key(refs: _Refs, series: str, step: int, p: ProcessView, m: MappingView) -> tuple[Any, ...] | None:
    """Key of the arrays to patch against: this mapping at the previous step, else the parent's now."""
    for key in ((series, step - 1, p.pid, m.vma.start, m.vma.npages),
                (series, step, p.ppid, m.vma.start, m.vma.npages)):
        if (*key, "pfn") in refs:
            return key
    return None


# -- the walk over steps, processes and mappings -------------------------------------------------

class _Builder:
    """One payload in the making: the blob, the page arrays stored so far, the mapping names."""

    def __init__(self, ev: EventColumns, cev: EventColumns, address_map: dict[int, int] | None) -> None:
        self.blob = Blob()
        self.refs: _Refs = {}
        self.mapping_names: list[str] = []
        self._name_index: dict[str, int] = {}
        self.address_map = address_map
        self.counts = StepCounts(ev)
        self.cmp_counts = StepCounts(cev)
        self.places: Places = {}  # where the compare series' processes lie on the main series

    def name_id(self, label: str) -> int:
        """The index of a mapping label in mapping_names (added at its first use)."""
        if label not in self._name_index:
            self._name_index[label] = len(self.mapping_names)
            self.mapping_names.append(label)
        return self._name_index[label]

    def step(self, k: int, snap: Snapshot, cmp_snap: Snapshot | None, note: str) -> dict[str, Any]:
        """Checkpoint k: its processes (paired with the compare series'), totals and event counts."""
        pairs = dict(match_processes(snap.processes, cmp_snap.processes)) if cmp_snap else {}
        procs = []
        new_frames = 0
        for i, p in enumerate(snap.processes):
            cp = cmp_snap.processes[pairs[i]] if cmp_snap is not None and i in pairs else None
            proc, replaced = self.process(k, p, cp)
            procs.append(proc)
            new_frames += replaced
        step = {"label": snap.label, "source": snap.source, "ts": snap.ts, "processes": procs, "note": note,
                "total": tree_total(snap), "new_frames": new_frames, **self.counts.of(k)}
        if cmp_snap is not None:
            step["cmp"] = {"label": cmp_snap.label, "source": cmp_snap.source, "total": tree_total(cmp_snap),
                           **self.cmp_counts.of(k)}
        return step

    def process(self, k: int, p: ProcessView, cp: ProcessView | None) -> tuple[dict[str, Any], int]:
        """A process's figures and mappings (and its counterpart's); the frames it replaced since step k-1."""
        mpairs = match_mappings(p.mappings, cp.mappings, self.address_map) if cp is not None else {}
        maps = []
        new_frames = 0
        spans = []
        for mi, m in enumerate(p.mappings):
            entry, cols, replaced = self.mapping(k, p, m)
            if cp is not None:
                entry["cmp"] = self.counterpart(k, p, m, cols, cp, mpairs.get(mi))
            if entry.get("cmp") is not None:
                cm = cp.mappings[mpairs[mi][0]]
                spans.append((cm.vma.start, cm.vma.end, m.vma.start, m.vma.npages, entry["cmp"]["shift"],
                              self.name_id(entry["label"])))
            maps.append(entry)
            new_frames += replaced
        proc: dict[str, Any] = {
            "pid": p.pid, "ppid": p.ppid, "name": p.name, "rss": _field_kb(p, "Rss"),
            "pss": _field_kb(p, "Pss"), "uss": _uss_kb(p), "swap": _field_kb(p, "Swap"),
            "mappings": maps,
        }
        if p.classes is not None:
            proc["classes"] = p.classes
        if cp is not None:
            self.places[(k, cp.pid)] = (p.pid, spans)
            proc["cmp"] = {"pid": cp.pid, "name": cp.name, "rss": _field_kb(cp, "Rss"),
                           "pss": _field_kb(cp, "Pss"), "uss": _uss_kb(cp)}
        return proc, new_frames

    def mapping(self, k: int, p: ProcessView, m: MappingView
                ) -> tuple[dict[str, Any], dict[str, np.ndarray] | None, int]:
        """A mapping's smaps figures and stored page columns; the columns; its frames replaced since k-1."""
        s = m.smaps
        entry: dict[str, Any] = {
            "start": m.vma.start, "end": m.vma.end, "perms": m.vma.perms,
            "path": m.vma.path, "npages": m.vma.npages, "label": _mapping_label(m),
            "rss": s["Rss"] if s else None, "pss": s["Pss"] if s else None,
            "priv": (s["Private_Clean"] + s["Private_Dirty"]) if s else None,
            "shared": (s["Shared_Clean"] + s["Shared_Dirty"]) if s else None,
            "counts": _counts(m),
        }
        cols = _page_columns(m)
        replaced = 0
        prev = self.refs.get(("m", k - 1, p.pid, m.vma.start, m.vma.npages, "pfn"))
        if cols is not None and prev is not None:  # frames replaced since the last checkpoint
            replaced = int(np.sum((cols["pfn"] != prev[0]) & (cols["pfn"] > 0) & (prev[0] > 0)))
        entry["pages"] = _store_columns(self.blob, cols, self.refs, ("m", k, p.pid, m.vma.start, m.vma.npages),
                                        _ref_key(self.refs, "m", k, p, m))
        if m.classes is not None:  # the source's own page classes (the inspector's, against the parent)
            key = ("cls", k, p.pid, m.vma.start, m.vma.npages)
            classes = np.asarray(m.classes, dtype=np.uint8)
            entry["classes"] = self.blob.add_like(classes, self.refs.get((*key[:1], k - 1, *key[2:])))
            self.refs[key] = (classes, entry["classes"])
        self.name_id(entry["label"])
        return entry, cols, replaced

    def counterpart(self, k: int, p: ProcessView, m: MappingView, cols: dict[str, np.ndarray] | None,
                    cp: ProcessView, pair: tuple[int, int] | None) -> dict[str, Any] | None:
        """The compare series' mapping paired with `m`: its pages re-indexed on m's, how many differ."""
        if pair is None:
            return None
        j, shift = pair
        cm = cp.mappings[j]
        ccols = _page_columns(cm)
        cpl, outside = None, None
        if ccols is not None and cols is not None:
            ccols, valid = _aligned(ccols, m.vma.npages, shift)
            outside = int(np.sum(~valid))
            cpl = _store_columns(self.blob, ccols, self.refs, ("c", k, p.pid, m.vma.start, m.vma.npages),
                                 _ref_key(self.refs, "c", k, p, m))
        return {"pid": cp.pid, "start": cm.vma.start, "label": _mapping_label(cm),
                "shift": shift, "pages": cpl, "outside": outside, "counts": _counts(cm)}


def _check_series(snapshots: Sequence[Snapshot], compare: Sequence[Snapshot | None] | None,
                  notes: Sequence[str] | None) -> None:
    """ValueError unless there is a snapshot, and notes and compare (if given) have one per snapshot."""
    if not snapshots:
        raise ValueError("write_report needs at least one snapshot")
    if notes is not None and len(notes) != len(snapshots):
        raise ValueError(f"{len(notes)} notes for {len(snapshots)} snapshots")
    if compare is not None and len(compare) != len(snapshots):
        raise ValueError(f"compare has {len(compare)} snapshots, the main series {len(snapshots)}")


def build_payload(snapshots: Sequence[Snapshot], events: Sequence[Any] | None = None,
                  compare: Sequence[Snapshot | None] | None = None, title: str = "cowscope report",
                  address_map: dict[int, int] | None = None, notes: Sequence[str] | None = None,
                  verdict: Verdict | None = None) -> tuple[dict[str, Any], str]:
    """The report's metadata (JSON-able) and its base64 deflated binary blob.

    `compare` holds one snapshot per step (None where that series has none, e.g. its run ended
    earlier). `verdict` is the comparison's (model vs kernel): the only source of difference marks;
    a `compare` series without one is drawn beside the main series, unjudged."""
    _check_series(snapshots, compare, notes)
    ev = assign_events(snapshots, events)
    cev = series_events(compare) if compare is not None else EventColumns()
    b = _Builder(ev, cev, address_map)
    steps = [b.step(k, snap, compare[k] if compare is not None else None, notes[k] if notes is not None else "")
             for k, snap in enumerate(snapshots)]
    ev_map = event_mappings(ev, snapshots, lambda m: b.name_id(_mapping_label(m)))
    meta = {"title": title, "generated": time.strftime("%Y-%m-%d %H:%M:%S"), "legend": legend(),
            "legend_groups": [{"char": c, "name": n} for c, n in strips.LEGEND],
            "steps": steps, "events": events_meta(b.blob, ev, ev_map),
            "cmp_events": compare_events_meta(b.blob, cev, b.places) if len(cev) else None,
            "mapping_names": b.mapping_names,
            "compare": compare is not None, "page_size": PAGE_SIZE, "outside_code": OUTSIDE,
            "sources": sorted({s.source for s in [*snapshots, *(compare or [])] if s is not None}),
            "class_legend": [{"code": i, "char": c, "name": n, "colour": col}
                             for i, (c, n, col) in enumerate(snapshots[-1].class_legend)],
            "verdict": place_verdict(verdict, steps) if verdict is not None else None}
    return meta, b.blob.encode()


# -- legend --------------------------------------------------------------------------------------

def legend() -> list[dict[str, Any]]:
    """Every legend code with its character, colour and name, and the "outside" code of comparisons."""
    out: list[dict[str, Any]] = [{"code": i, "char": strips.CHARS[i], "colour": strips.COLOURS[i],
                                  "name": code_name(i)} for i in range(len(strips.CHARS))]
    out.append({"code": OUTSIDE, "char": " ", "colour": "#ffffff", "name": "outside the other mapping"})
    return out


def code_name(code: int) -> str:
    """The name of a legend code ("private (exclusive)", "shared by 3", ...) as the page shows it."""
    if code in (14, 15):
        return "2 MiB THP mapped by one PMD" + (", shared" if code == 15 else "")
    state_of = {0: NOT_PRESENT, 1: ZERO, 2: PRIVATE, 12: PAGECACHE, 13: SWAPPED}
    if code in state_of:
        return {NOT_PRESENT: "not present", ZERO: "zero page", PRIVATE: "private (exclusive)",
                PAGECACHE: "page cache", SWAPPED: "swap/guard"}[state_of[code]]
    n = code - 1
    return "shared by 10+" if n >= 10 else f"shared by {n}"
