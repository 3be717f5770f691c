"""JSON lines for scripts, recordings (--save) and their side-by-side comparison (--compare)."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rich.table import Table

from ..report.plain import plain
from .figures import Sample
from .render import fmt_delta, fmt_kb

SCHEMA_VERSION = 1
#: Fields every process object carries (docs/inspect.md documents them).
PROCESS_KEYS = ("type", "ts", "seq", "pid", "ppid", "name", "title", "parent_in_tree", "exact", "rss_kb", "pss_kb",
                "uss_kb", "swap_kb", "zero_kb", "shared_with_parent_kb", "sibling_shared_kb", "copied_kb",
                "new_kb", "released_kb", "copied_by_child_kb", "copied_by_parent_kb", "copied_identical_kb",
                "copied_compared_kb", "history", "shared_in_tree_kb", "kinds", "mappings")
MAPPING_KEYS = ("start", "end", "perms", "path", "rss_kb", "pss_kb", "uss_kb", "swap_kb", "zero_kb",
                "shared_with_parent_kb", "sibling_shared_kb", "copied_kb", "new_kb", "released_kb",
                "copied_by_child_kb", "copied_by_parent_kb", "copied_identical_kb", "shared_in_tree_kb")


def process_objects(sample: Sample) -> list[dict[str, Any]]:
    """One JSON object per process of the sample."""
    return [p.to_dict(sample.ts, sample.seq) for p in sample.processes]


def tree_object(sample: Sample) -> dict[str, Any]:
    """The sample's tree totals, missed processes and notes (recordings only)."""
    return {"type": "tree", "ts": round(sample.ts, 6), "seq": sample.seq, "mode": sample.mode,
            "duration_s": round(sample.duration_s, 6), **sample.totals.to_dict(),
            "missed": [m.to_dict() for m in sample.missed], "skipped": sample.skipped}


def write_sample(out: IO[str], sample: Sample, tree: bool) -> None:
    """Write one sample as JSON lines (process objects, then an exit object per process gone since
    the last sample; with `tree`, its tree object last)."""
    if sample.skipped is None:
        for obj in [*process_objects(sample), *(e.to_dict(sample.seq) for e in sample.exited)]:
            out.write(json.dumps(obj, separators=(",", ":")) + "\n")
    if tree:
        out.write(json.dumps(tree_object(sample), separators=(",", ":")) + "\n")
    out.flush()


def header_object(argv: list[str] | None, mode: str) -> dict[str, Any]:
    """First line of a recording."""
    return {"type": "header", "schema": SCHEMA_VERSION, "tool": "cowscope inspect", "started": time.time(),
            "host": platform.node(), "kernel": platform.release(), "argv": argv or [], "mode": mode}


@dataclass
class Recording:
    """A recording read back: its header and samples (process objects grouped by seq) with tree totals."""

    path: str
    header: dict[str, Any]
    processes: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    trees: dict[int, dict[str, Any]] = field(default_factory=dict)
    exits: list[dict[str, Any]] = field(default_factory=list)

    def last_seq(self) -> int:
        """The last sample that was actually taken."""
        taken = [s for s, t in self.trees.items() if not t.get("skipped")]
        if not taken:
            raise ValueError(f"{self.path}: no sample was taken in this recording")
        return max(taken)


def load_recording(path: str | Path) -> Recording:
    """Read a --save file; ValueError naming the line on bad input."""
    rec: Recording | None = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{path}:{n}: not a recording line (a JSON object)")
            if rec is None:
                if obj.get("type") != "header":
                    raise ValueError(f"{path}:{n}: not a cowscope recording (no header line)")
                rec = Recording(str(path), obj)
                continue
            try:
                _add_line(rec, obj)
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{path}:{n}: not a recording line (no whole number 'seq')") from None
    if rec is None:
        raise ValueError(f"{path}: empty file")
    return rec


def _add_line(rec: Recording, obj: dict[str, Any]) -> None:
    """One line of a --save file after its header into its recording."""
    kind = obj.get("type")
    if kind == "process":
        rec.processes.setdefault(int(obj["seq"]), []).append(obj)
    elif kind == "tree":
        rec.trees[int(obj["seq"])] = obj
    elif kind == "exit":
        rec.exits.append(obj)


TREE_ROWS = (("processes", "processes"), ("rss_sum_kb", "RSS sum"), ("pss_sum_kb", "PSS sum"),
             ("uss_sum_kb", "USS sum"), ("unique_kb", "really used (each frame once)"),
             ("parent_rss_kb", "parents' resident"), ("shared_with_parent_kb", "workers shared w/ parent"),
             ("sibling_shared_kb", "workers shared in tree"), ("copied_kb", "workers copied"),
             ("copied_by_child_kb", "workers copied, by the workers"),
             ("copied_by_parent_kb", "workers copied, by their parents"),
             ("copied_identical_kb", "workers copied, same bytes as the parent's"), ("new_kb", "workers new"),
             ("released_kb", "workers released"))
WORKER_ROWS = (("rss_kb", "RSS"), ("pss_kb", "PSS"), ("uss_kb", "USS"),
               ("shared_with_parent_kb", "shared w/ parent"), ("copied_kb", "copied"),
               ("copied_by_child_kb", "copied by itself"), ("copied_by_parent_kb", "copied by its parent"),
               ("copied_identical_kb", "copied, same bytes as the parent's"),
               ("new_kb", "new"), ("released_kb", "released"))


def _avg(objs: list[dict[str, Any]], key: str) -> int | None:
    vals = [o[key] for o in objs if o.get(key) is not None]
    return round(sum(vals) / len(vals)) if vals else None


def compare_table(a: Recording, b: Recording, top_mappings: int = 6) -> Table:
    """The last sample of each recording side by side: tree totals, the average worker, where it copies."""
    sa, sb = a.last_seq(), b.last_seq()
    t = Table(title=plain(f"A = {a.path} (sample {sa})   B = {b.path} (sample {sb})"), title_justify="left",
              show_edge=False, pad_edge=False)
    t.add_column("figure")
    t.add_column("A", justify="right")
    t.add_column("B", justify="right")
    t.add_column("B - A", justify="right")
    t.add_column("B / A", justify="right")
    ta, tb = a.trees[sa], b.trees[sb]

    def row(label: str, va: int | None, vb: int | None, kb: bool = True) -> None:
        f = fmt_kb if kb else (lambda v: "-" if v is None else str(v))
        diff = fmt_delta(vb - va) if kb and va is not None and vb is not None else ""
        ratio = f"{vb / va:.2f}" if va and vb is not None else ""
        t.add_row(plain(label), f(va), f(vb), diff, ratio)

    for key, label in TREE_ROWS:
        row(label, ta.get(key), tb.get(key), kb=key != "processes")
    wa = [o for o in a.processes.get(sa, []) if o.get("parent_in_tree")]
    wb = [o for o in b.processes.get(sb, []) if o.get("parent_in_tree")]
    t.add_section()
    row("workers", len(wa), len(wb), kb=False)
    for key, label in WORKER_ROWS:
        row(f"average worker {label}", _avg(wa, key), _avg(wb, key))
    ka, kb = copied_by_kind(wa), copied_by_kind(wb)
    if ka or kb:
        t.add_section()
        for name in sorted(set(ka) | set(kb), key=lambda k: -max(ka.get(k, 0), kb.get(k, 0))):
            row(f"average worker copied in {name} memory", ka.get(name, 0), kb.get(name, 0))
    ca, cb = copied_by_mapping(wa), copied_by_mapping(wb)
    top = sorted(set(ca) | set(cb), key=lambda k: -max(ca.get(k, 0), cb.get(k, 0)))[:top_mappings]
    if top:
        t.add_section()
        for name in top:
            row(f"average worker copied in {name}", ca.get(name, 0), cb.get(name, 0))
    return t


def copied_by_kind(workers: list[dict[str, Any]]) -> dict[str, int]:
    """Average copied kB per worker by kind of memory (recordings made with kinds)."""
    total: dict[str, int] = {}
    for w in workers:
        for kind, f in (w.get("kinds") or {}).items():
            total[kind] = total.get(kind, 0) + f.get("copied_kb", 0)
    return {k: round(v / len(workers)) for k, v in total.items() if v} if workers else {}


def copied_by_mapping(workers: list[dict[str, Any]]) -> dict[str, int]:
    """Average copied kB per worker, by mapping name ([heap], [anon], a file's base name), over the
    workers' mappings."""
    total: dict[str, int] = {}
    for w in workers:
        for m in w.get("mappings", []):
            if m.get("copied_kb"):
                path = m.get("path") or "[anon]"
                name = path if path.startswith("[") else path.rsplit("/", 1)[-1]  # a file by its name
                total[name] = total.get(name, 0) + m["copied_kb"]
    return {k: round(v / len(workers)) for k, v in total.items()} if workers else {}
