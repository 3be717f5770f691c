"""Self-contained HTML report: page maps per checkpoint, process tree, timeline, event log, model vs kernel.

Everything the page needs is inside the one file. Page data travels as typed arrays (legend code,
map count and PFN per page; event columns), delta-coded or patched against the previous checkpoint
where that helps, deflated and base64-encoded; the page inflates them with the browser's
DecompressionStream and draws them on canvases. plotly.js's basic bundle is inlined as a plain script.
"""

from __future__ import annotations

import base64
import functools
import json
import operator
import re
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from ..observe.pages import NOT_PRESENT, PAGECACHE, PRIVATE, SHARED, SWAPPED, ZERO
from ..observe.records import PAGE_SIZE
from ..observe.snapshot import MappingView, ProcessView, Snapshot
from . import strips

#: Event kinds counted as copies in the timeline.
COPY_KINDS = ("cow-copy", "zero-cow", "file-copy")
_RESIDENT = (PRIVATE, SHARED, PAGECACHE)


class _Blob:
    """Accumulates typed arrays into one binary buffer and records where each one lives.

    Identical arrays are stored once; an array close to a reference array (the same mapping at the
    previous checkpoint) is stored as a patch: positions and values of the pages that differ.
    """

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self._seen: dict[tuple[str, bool, bytes], list[Any]] = {}

    def add(self, arr: np.ndarray, delta: bool = False) -> list[Any]:
        """Append an integer array; returns its descriptor [offset, length, dtype, delta]."""
        a = np.asarray(arr)
        if delta and len(a):
            a = np.diff(a.astype(np.int64), prepend=np.int64(0))
        if a.dtype == np.uint8:
            dt, data = "u1", a.astype("<u1")
        else:
            lo, hi = (int(a.min()), int(a.max())) if len(a) else (0, 0)
            if -(2**31) <= lo and hi < 2**31:
                dt, data = "i4", a.astype("<i4")
            else:
                dt, data = "f8", a.astype("<f8")
        raw = data.tobytes()
        key = (dt, bool(delta), raw)
        if key in self._seen:
            return self._seen[key]
        pad = (-self.size) % 8
        if pad:
            self.parts.append(b"\0" * pad)
            self.size += pad
        desc = [self.size, len(a), dt, bool(delta)]
        self.parts.append(raw)
        self.size += len(raw)
        self._seen[key] = desc
        return desc

    def add_like(self, arr: np.ndarray, ref: tuple[np.ndarray, Any] | None, delta: bool = False) -> Any:
        """Store `arr` as a patch on `ref` (array, descriptor) when under a quarter of it differs."""
        a = np.asarray(arr)
        if ref is not None and len(ref[0]) == len(a) and len(a):
            pos = np.flatnonzero(a != ref[0])
            if len(pos) == 0:
                return ref[1]
            if len(pos) <= len(a) // 4:
                return {"ref": ref[1], "n": len(a), "pos": self.add(pos, delta=True),
                        "val": self.add(a[pos].astype(np.int64), delta=True)}
        return self.add(a, delta=delta)

    def encode(self) -> str:
        """Deflate (zlib format) and base64 the whole buffer."""
        return base64.b64encode(zlib.compress(b"".join(self.parts), 6)).decode("ascii")


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
class _Events:
    """Events flattened into columns, with the step each belongs to.

    No address / no frame is -1: given as None, or as 0 the way the model writes it (page 0 and
    PFN 0 are never user pages).
    """

    seq: list[int] = field(default_factory=list)
    pid: list[int] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    addr: list[int] = field(default_factory=list)
    old_pfn: list[int] = field(default_factory=list)
    new_pfn: list[int] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)
    step: list[int] = field(default_factory=list)

    @classmethod
    def from_rows(cls, rows: list[tuple[Any, ...]], steps: list[int]) -> _Events:
        """Columns from _fields() tuples and their steps."""
        if not rows:
            return cls()
        seq, pid, kind, addr, old, new, detail = zip(*rows, strict=True)
        return cls([int(v) if v is not None else i for i, v in enumerate(seq)],
                   [int(v or 0) for v in pid], [str(v or "") for v in kind],
                   [int(v) if v else -1 for v in addr], [int(v) if v else -1 for v in old],
                   [int(v) if v else -1 for v in new], ["" if v is None else str(v) for v in detail],
                   list(steps))

    def __len__(self) -> int:
        return len(self.seq)


def _assign_events(snapshots: Sequence[Snapshot], events: Sequence[Any] | None) -> _Events:
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
        return _Events.from_rows(rows, steps)
    if not events:
        return _Events()
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
    return _Events.from_rows(rows, steps)


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


def _match_processes(a: Sequence[ProcessView], b: Sequence[ProcessView]) -> list[tuple[int, int]]:
    """Pair processes of two backends: same pid first, then by name in pid order."""
    pairs: list[tuple[int, int]] = []
    bpids = {p.pid: j for j, p in enumerate(b)}
    used: set[int] = set()
    if all(p.pid in bpids for p in a):
        return [(i, bpids[p.pid]) for i, p in enumerate(a)]
    by_name: dict[str, list[int]] = {}
    for j in sorted(range(len(b)), key=lambda j: b[j].pid):
        by_name.setdefault(b[j].name, []).append(j)
    for i in sorted(range(len(a)), key=lambda i: a[i].pid):
        cands = [j for j in by_name.get(a[i].name, []) if j not in used]
        if cands:
            used.add(cands[0])
            pairs.append((i, cands[0]))
    return pairs


def _containing(ms: Sequence[MappingView], addr: int, used: set[int]) -> int | None:
    return next((j for j, m in enumerate(ms) if j not in used and m.vma.start <= addr < m.vma.end), None)


def _match_mappings(a: Sequence[MappingView], b: Sequence[MappingView],
                    address_map: dict[int, int] | None = None) -> dict[int, tuple[int, int]]:
    """Pair mappings of two backends: {index in a: (index in b, shift)}, b's page = a's page + shift.

    In order: mappings holding addresses the caller knows on both sides (`address_map`, e.g. a
    scenario's mmap results), aligned on those addresses; the same start, path and perms; file
    mappings with the same path, perms and file offset; then the n-th mapping with the same path
    (or anon) and perms in address order, aligned at the start ([stack]: at the end).
    """
    out: dict[int, tuple[int, int]] = {}
    used: set[int] = set()

    def pair(i: int, j: int, shift: int) -> None:
        out[i] = (j, shift)
        used.add(j)

    for am, km in sorted((address_map or {}).items()):
        i = _containing(a, am, set(out))
        j = _containing(b, km, used)
        if i is not None and j is not None and a[i].vma.perms == b[j].vma.perms:
            pair(i, j, (km - b[j].vma.start) // PAGE_SIZE - (am - a[i].vma.start) // PAGE_SIZE)
    starts = {(m.vma.start, m.vma.path, m.vma.perms): j for j, m in enumerate(b)}
    for i, m in enumerate(a):
        j = starts.get((m.vma.start, m.vma.path, m.vma.perms))
        if i not in out and j is not None and j not in used:
            pair(i, j, 0)
    files = {(m.vma.path, m.vma.perms, m.vma.offset): j for j, m in enumerate(b) if m.vma.path.startswith("/")}
    for i, m in enumerate(a):
        j = files.get((m.vma.path, m.vma.perms, m.vma.offset))
        if i not in out and m.vma.path.startswith("/") and j is not None and j not in used:
            pair(i, j, 0)
    for i, m in enumerate(a):
        if i in out:
            continue
        key = (m.vma.path, m.vma.perms)
        nth = sum(1 for k, n in enumerate(a) if k < i and (n.vma.path, n.vma.perms) == key)
        same = [j for j, n in enumerate(b) if (n.vma.path, n.vma.perms) == key]
        if nth < len(same) and same[nth] not in used:
            j = same[nth]
            pair(i, j, b[j].vma.npages - m.vma.npages if m.vma.path == "[stack]" else 0)
    return out


#: Legend code of a page the other series' mapping does not cover (model-vs-kernel view).
OUTSIDE = len(strips.CHARS)


def _page_columns(m: MappingView) -> dict[str, np.ndarray] | None:
    """Legend code, map count and PFN per page of a mapping, or None without page data."""
    if m.pages is None or len(m.pages) != m.vma.npages:
        return None
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


_Refs = dict[tuple[Any, ...], tuple[np.ndarray, Any]]


def _store_columns(blob: _Blob, cols: dict[str, np.ndarray] | None, refs: _Refs, key: tuple[Any, ...],
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


def _counts(m: MappingView) -> dict[str, int]:
    if m.pages is None:
        return {}
    return {str(k): int(v) for k, v in m.pages.counts().items()}


def build_payload(snapshots: Sequence[Snapshot], events: Sequence[Any] | None = None,
                  compare: Sequence[Snapshot] | None = None, title: str = "cowscope report",
                  address_map: dict[int, int] | None = None, notes: Sequence[str] | None = None,
                  ) -> tuple[dict[str, Any], str]:
    """The report's metadata (JSON-able) and its base64 deflated binary blob."""
    if not snapshots:
        raise ValueError("write_report needs at least one snapshot")
    if notes is not None and len(notes) != len(snapshots):
        raise ValueError(f"{len(notes)} notes for {len(snapshots)} snapshots")
    if compare is not None and len(compare) != len(snapshots):
        raise ValueError(f"compare has {len(compare)} snapshots, the main series {len(snapshots)}")
    blob = _Blob()
    ev = _assign_events(snapshots, events)
    arrays = {
        "step": np.asarray(ev.step, dtype=np.int64), "pid": np.asarray(ev.pid, dtype=np.int64),
        "addr": np.asarray(ev.addr, dtype=np.int64), "kind": np.asarray(ev.kind, dtype=object),
    }
    arrays["copy"] = np.isin(arrays["kind"], COPY_KINDS) if len(ev) else np.zeros(0, dtype=bool)
    mapping_names: list[str] = []
    mapping_index: dict[str, int] = {}

    def name_id(label: str) -> int:
        if label not in mapping_index:
            mapping_index[label] = len(mapping_names)
            mapping_names.append(label)
        return mapping_index[label]

    refs: _Refs = {}
    step_kinds = Counter(zip(ev.step, ev.kind, strict=True))
    steps = []
    for k, snap in enumerate(snapshots):
        procs = []
        new_frames = 0
        cmp_snap = compare[k] if compare is not None else None
        pairs = dict(_match_processes(snap.processes, cmp_snap.processes)) if cmp_snap else {}
        for i, p in enumerate(snap.processes):
            maps = []
            cp = cmp_snap.processes[pairs[i]] if cmp_snap is not None and i in pairs else None
            mpairs = _match_mappings(p.mappings, cp.mappings, address_map) if cp is not None else {}
            for mi, m in enumerate(p.mappings):
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
                prev = refs.get(("m", k - 1, p.pid, m.vma.start, m.vma.npages, "pfn"))
                if cols is not None and prev is not None:  # frames replaced since the last checkpoint
                    new_frames += int(np.sum((cols["pfn"] != prev[0]) & (cols["pfn"] > 0) & (prev[0] > 0)))
                entry["pages"] = _store_columns(blob, cols, refs, ("m", k, p.pid, m.vma.start, m.vma.npages),
                                                _ref_key(refs, "m", k, p, m))
                name_id(entry["label"])
                if cp is not None:
                    entry["cmp"] = None
                    if mi in mpairs:
                        j, shift = mpairs[mi]
                        cm = cp.mappings[j]
                        ccols = _page_columns(cm)
                        cpl, diff, outside = None, None, None
                        if ccols is not None and cols is not None:
                            ccols, valid = _aligned(ccols, m.vma.npages, shift)
                            diff = int(np.sum(valid & (ccols["code"] != cols["code"])))
                            outside = int(np.sum(~valid))
                            cpl = _store_columns(blob, ccols, refs, ("c", k, p.pid, m.vma.start, m.vma.npages),
                                                 _ref_key(refs, "c", k, p, m))
                        entry["cmp"] = {"pid": cp.pid, "start": cm.vma.start, "label": _mapping_label(cm),
                                        "shift": shift, "pages": cpl, "diff": diff, "outside": outside,
                                        "counts": _counts(cm)}
                maps.append(entry)
            proc: dict[str, Any] = {
                "pid": p.pid, "ppid": p.ppid, "name": p.name, "rss": _field_kb(p, "Rss"),
                "pss": _field_kb(p, "Pss"), "uss": _uss_kb(p), "swap": _field_kb(p, "Swap"),
                "mappings": maps,
            }
            if cp is not None:
                proc["cmp"] = {"pid": cp.pid, "name": cp.name, "rss": _field_kb(cp, "Rss"),
                               "pss": _field_kb(cp, "Pss"), "uss": _uss_kb(cp)}
            procs.append(proc)
        step = {"label": snap.label, "source": snap.source, "ts": snap.ts, "processes": procs,
                "note": notes[k] if notes is not None else "",
                "total": tree_total(snap),
                "copies": int(np.sum(arrays["copy"] & (arrays["step"] == k))), "new_frames": new_frames,
                "events": int(np.sum(arrays["step"] == k)),
                "kinds": {kd: n for (st, kd), n in sorted(step_kinds.items()) if st == k}}
        if cmp_snap is not None:
            step["cmp"] = {"label": cmp_snap.label, "source": cmp_snap.source, "total": tree_total(cmp_snap)}
        steps.append(step)

    # Each event's mapping is looked up in its process at its step, else at the nearest earlier step.
    ev_map = np.full(len(ev), -1, dtype=np.int64)
    for k in range(len(snapshots) - 1, -1, -1):
        for p in snapshots[k].processes:
            cand = np.flatnonzero((arrays["step"] >= k) & (ev_map < 0) & (arrays["pid"] == p.pid)
                                  & (arrays["addr"] >= 0))
            if not len(cand) or not p.mappings:
                continue
            ms = sorted(p.mappings, key=lambda m: m.vma.start)
            starts = np.asarray([m.vma.start for m in ms], dtype=np.int64)
            ends = np.asarray([m.vma.end for m in ms], dtype=np.int64)
            ids = np.asarray([name_id(_mapping_label(m)) for m in ms], dtype=np.int64)
            a = arrays["addr"][cand]
            pos = np.searchsorted(starts, a, side="right") - 1
            ok = (pos >= 0) & (a < ends[np.clip(pos, 0, None)])
            ev_map[cand[ok]] = ids[pos[ok]]
    kinds = sorted(set(ev.kind))
    kind_id = {k: i for i, k in enumerate(kinds)}
    details = sorted(set(ev.detail))
    detail_id = {d: i for i, d in enumerate(details)}
    events_meta = {
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
    legend = [{"code": i, "char": strips.CHARS[i], "colour": strips.COLOURS[i],
               "name": _code_name(i)} for i in range(len(strips.CHARS))]
    legend.append({"code": OUTSIDE, "char": " ", "colour": "#ffffff", "name": "outside the other mapping"})
    meta = {"title": title, "generated": time.strftime("%Y-%m-%d %H:%M:%S"), "legend": legend,
            "legend_groups": [{"char": c, "name": n} for c, n in strips.LEGEND],
            "steps": steps, "events": events_meta, "mapping_names": mapping_names,
            "compare": compare is not None, "page_size": PAGE_SIZE, "outside_code": OUTSIDE,
            "sources": sorted({s.source for s in [*snapshots, *(compare or [])]})}
    return meta, blob.encode()


def _code_name(code: int) -> str:
    state_of = {0: NOT_PRESENT, 1: ZERO, 2: PRIVATE, 12: PAGECACHE, 13: SWAPPED}
    if code in state_of:
        return {NOT_PRESENT: "not present", ZERO: "zero page", PRIVATE: "private (exclusive)",
                PAGECACHE: "page cache", SWAPPED: "swap/guard"}[state_of[code]]
    n = code - 1
    return "shared by 10+" if n >= 10 else f"shared by {n}"


@functools.lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js for inlining, with any ``</script`` escaped (cached).

    The report ships plotly.js's "basic" bundle (scatter, bar; MIT, kept in assets/ at the same
    version as the plotly package's): a quarter of the full bundle, which takes seconds to start in
    a cold browser. Without it, the full bundle from the installed plotly package is used.
    """
    try:
        js = _asset("plotly-basic.min.js")
    except FileNotFoundError:
        from plotly.offline import get_plotlyjs

        js = get_plotlyjs()
    return re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE)


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def render_html(snapshots: Sequence[Snapshot], events: Sequence[Any] | None = None,
                compare: Sequence[Snapshot] | None = None, title: str = "cowscope report",
                address_map: dict[int, int] | None = None, notes: Sequence[str] | None = None) -> str:
    """The complete report as one HTML string."""
    meta, blob = build_payload(snapshots, events, compare, title, address_map, notes)
    env = jinja2.Environment(autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    template = env.from_string(_asset("report.html"))
    meta_json = json.dumps(meta, separators=(",", ":")).replace("<", "\\u003c")  # nothing closes the script
    return template.render(title=title, css=_asset("report.css"), js=_asset("report.js"),
                           meta_json=meta_json, blob=blob, plotly=plotly_js())


def write_report(path: str | Path, snapshots: Sequence[Snapshot], events: Sequence[Any] | None = None,
                 compare: Sequence[Snapshot] | None = None, title: str = "cowscope report",
                 address_map: dict[int, int] | None = None, notes: Sequence[str] | None = None) -> Path:
    """Write a self-contained HTML report of `snapshots` (and a second series to compare) to `path`.

    `address_map` maps addresses of the main series to the same objects' addresses in `compare`
    (e.g. each mmap's result on both backends), so mappings placed differently still line up.
    `notes` gives one text per snapshot, shown with its checkpoint (e.g. what the step did and why).
    """
    out = Path(path)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(snapshots, events, compare, title, address_map, notes), encoding="utf-8")
    return out
