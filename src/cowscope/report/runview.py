"""Terminal output of `cowscope run`: per checkpoint the tree line, then the mappings that matter.

A checkpoint prints its label, the events since the previous one, the tree line (`tree.py`: RSS
sum against each frame once, copies since the previous checkpoint), then per process one line of
classes and a row per mapping shown: address, permissions, name, Size / Rss / Pss / Private /
Shared from smaps (kB) and its page strip. By default a mapping is shown when the scenario made it
(it was not in the process's image when it was spawned), when it is the heap or the stack, or when
a page of it moved since the previous checkpoint (`tree.moved`); the others fold into one line per
process. Rows are laid out by `layout.py`: figures whole at any width of 60 columns or more.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from rich.console import Console
from rich.text import Text

from ..observe.snapshot import MappingView, ProcessView, Snapshot
from . import layout
from . import tree as tr
from .changes import print_changes
from .plain import plain, visible
from .strips import legend, strip

#: (start, end, perms, path) of the mappings a process had when it was spawned, by pid.
Images = Mapping[int, frozenset[tuple[int, int, str, str]]]
FIGURES = ("Size", "Rss", "Pss", "Priv", "Shrd")
ALWAYS = ("[heap]", "[stack]")


@dataclass
class RunView:
    """What `cowscope run` prints: strip cells at most, filters, and the images of its processes."""

    width: int = 48
    only: str | None = None
    all_mappings: bool = False
    changes: bool = False
    images: Images = field(default_factory=dict)


def figures(m: MappingView) -> list[str]:
    """Size, Rss, Pss, Private, Shared of a mapping (kB) as the smaps block gives them."""
    s = m.smaps
    if s is None:
        return [str(m.vma.size_kb)] + ["-"] * 4
    return [str(s["Size"] if "Size" in s.fields else m.vma.size_kb), str(s["Rss"]), str(s["Pss"]),
            str(s["Private_Clean"] + s["Private_Dirty"]), str(s["Shared_Clean"] + s["Shared_Dirty"])]


def mapping_row(m: MappingView, pages: tr.ProcessPages | None = None, k: int = 0) -> layout.Row:
    """A mapping as a layout row: start address and permissions, its path, figures, strip."""
    states = pages.states(k) if pages is not None else m.pages
    draw = None if states is None or len(states) == 0 else (lambda cells: strip(states, cells))
    return layout.Row(f"{m.vma.start:x} {m.vma.perms}", visible(m.vma.path or "[anon]"), figures(m),
                      m.vma.npages, draw)


def _image_of(pid: int, snap: Snapshot, images: Images) -> frozenset[tuple[int, int, str, str]] | None:
    """The spawn-time mappings of a process or, for a forked one, of its nearest ancestor spawned."""
    by_pid = {p.pid: p for p in snap.processes}
    seen: set[int] = set()
    while pid not in images and pid in by_pid and pid not in seen:
        seen.add(pid)
        pid = by_pid[pid].ppid
    return images.get(pid)


def selection(pv: ProcessView, moved: np.ndarray, pages: tr.ProcessPages, image: frozenset[tuple[int, int, str, str]]
              | None, view: RunView) -> tuple[list[int], list[int]]:
    """(shown, folded) mapping indexes of one process."""
    if view.only is not None:
        return [k for k, m in enumerate(pv.mappings) if view.only in (m.vma.path or "[anon]")], []
    if view.all_mappings:
        return list(range(len(pv.mappings))), []
    shown, folded = [], []
    for k, m in enumerate(pv.mappings):
        v = m.vma
        own = (v.start, v.end, v.perms, v.path) not in image if image is not None else not v.path
        if own or v.path in ALWAYS or bool(moved[pages.mapping(k)].any()):
            shown.append(k)
        else:
            folded.append(k)
    return shown, folded


def folded_line(pv: ProcessView, pages: tr.ProcessPages, folded: Sequence[int], width: int, indent: int) -> Text:
    """One line for the mappings not shown: their names, resident kB, and that no page moved."""
    names: list[str] = []
    anon = 0
    for k in folded:
        path = pv.mappings[k].vma.path
        if not path:
            anon += 1
        elif (n := visible(layout.library_name(path))) not in names:
            names.append(n)
    if anon:
        names.append(f"{anon} anon")
    kb = tr.resident_kb(pages, folded)
    text = ", ".join(names)
    count = f"{len(folded)} mapping{'s' if len(folded) > 1 else ''}"
    for tail in (f": {kb} kB resident, no page moved ({count})", f": {kb} kB resident, no page moved",
                 f": {kb} kB resident, unchanged"):
        if indent + len(text) + len(tail) <= width:
            break
    head = layout.shorten_right(text, max(width - indent - len(tail), 12))
    return Text(" " * indent + head + tail, style="dim")


def process_title(pl: tr.ProcessLine, exact: bool, width: int) -> str:
    """The process's line: pid, name, parent, RSS and its pages in the inspector's classes (kB)."""
    since = "" if pl.copied_since_kb is None else f" (+{pl.copied_since_kb})"
    approx = "" if exact else "~"
    if pl.root:
        figures = f"RSS {pl.rss_kb}, shared with its tree {approx}{pl.shared_kb}, own {approx}{pl.new_kb}"
        figures += f" (+{pl.copied_since_kb} copied)" if pl.copied_since_kb else ""
        parent = ""
    else:
        figures = f"RSS {pl.rss_kb}, shared with parent {approx}{pl.shared_kb}"
        if pl.in_tree_kb:
            figures += f", in tree {approx}{pl.in_tree_kb}"
        figures += f", copied {approx}{pl.copied_kb}{since}, new {approx}{pl.new_kb}"
        parent = f" ← {pl.ppid}"
    room = width - len(str(pl.pid)) - len(parent) - len(figures) - 3
    return f"{pl.pid} {layout.shorten_right(visible(pl.name), max(room, 12))}{parent}: {figures}"


def tree_text(t: tr.TreeLine) -> Text:
    """The tree line: processes, RSS sum, really used, copies since the previous checkpoint."""
    used = f"really used {t.unique_kb} kB" if t.unique_kb is not None else \
        f"really used unknown (no PFNs; PSS sum {t.pss_sum_kb} kB)"
    since = "" if t.copied_since_kb is None else f", copied since previous {t.copied_since_kb} kB"
    n = len(t.processes)
    return Text(f"{n} process{'es' if n != 1 else ''}: RSS sum {t.rss_sum_kb} kB, {used}{since}", style="bold")


def event_counts(snap: Snapshot) -> Text | None:
    """'events since previous: cow-copy 1, ...' or None when there were none."""
    kinds: dict[str, int] = {}
    for e in snap.events:
        if e.kind != "checkpoint":
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
    if not kinds:
        return None
    return Text("events since previous: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())), style="dim")


def print_checkpoint(console: Console, snap: Snapshot, view: RunView, prev: Snapshot | None = None,
                     number: str = "") -> None:
    """One checkpoint: label, events, tree line, per process its line and the mappings shown."""
    before = tr.snapshot_pages(prev) if prev is not None else None
    _print_checkpoint(console, snap, view, tr.snapshot_pages(snap), before, number)


def _print_checkpoint(console: Console, snap: Snapshot, view: RunView, pages: dict[int, tr.ProcessPages],
                      before: dict[int, tr.ProcessPages] | None, number: str) -> None:
    console.rule(plain(f"checkpoint {number}{snap.label} ({snap.source})", style="bold"))
    counts = event_counts(snap)
    if counts is not None:
        console.print(counts)
    tline = tr.tree_line(snap, pages, before)
    console.print(tree_text(tline))
    parts = []
    for pv, pl in zip(snap.processes, tline.processes, strict=True):
        p = pages[pv.pid]
        b, _own = tr.before_of(pv.pid, pv.ppid, p, before)
        mv = tr.moved(p, b, tline.exact) if before is not None else np.zeros(len(p.state), dtype=bool)
        shown, folded = selection(pv, mv, p, _image_of(pv.pid, snap, view.images), view)
        parts.append((pv, pl, p, [mapping_row(pv.mappings[k], p, k) for k in shown], folded))
    cols = layout.columns([r for *_, rows, _f in parts for r in rows], FIGURES, console.width, view.width)
    console.print(layout.header_text(FIGURES, cols, "mapping (kB)"), no_wrap=True, crop=False)
    for pv, pl, p, rows, folded in parts:
        console.print(Text(process_title(pl, tline.exact, console.width), style="bold"))
        for row in rows:
            for line in layout.render_row(row, cols, view.width):
                console.print(line, no_wrap=True, crop=False)
        if folded:
            console.print(folded_line(pv, p, folded, console.width, cols.indent))
    if view.changes:
        print_changes(console, snap, pages, before, tline.exact)


def explain() -> Text:
    """What the tree line and the process lines mean (printed once, under the legend)."""
    return Text("kB. really used: each resident frame once. shared: the parent's frame at that address (a "
                "root: frames its tree shares); copied: its own frame where the parent has a page; "
                "(+N): pages it copied since the previous checkpoint; new: the parent has none there. Priv, Shrd: "
                "smaps Private_* and Shared_*. Shown: the mappings the scenario made, heap, stack, and "
                "those whose pages moved (--all-mappings: all).", style="dim")


def print_run(console: Console, snapshots: Sequence[Snapshot], outcome: str | None, view: RunView) -> None:
    """A scenario run: the legend, every checkpoint, and how the scenario stopped if it did."""
    console.print(legend())
    console.print(explain())
    before = None
    for i, snap in enumerate(snapshots):
        pages = tr.snapshot_pages(snap)  # once a checkpoint: it is the next one's `before`
        _print_checkpoint(console, snap, view, pages, before, f"{i + 1}/{len(snapshots)}: ")
        before = pages
    if outcome:
        console.print(plain(f"scenario stopped: {outcome}", style="bold yellow"))


# --- one snapshot, every mapping (the library function of docs/report.md) --------------------------


def _path_ok(path: str, path_filter: Callable[[str], bool] | str | None) -> bool:
    if path_filter is None:
        return True
    if callable(path_filter):
        return bool(path_filter(path))
    return path_filter in (path or "[anon]")


def render_snapshot(snapshot: Snapshot, console: Console | None = None, only_pids: Iterable[int] | None = None,
                    path_filter: Callable[[str], bool] | str | None = None, width: int = 64) -> None:
    """Print the legend, then per process its mappings: figures (kB) and strips of at most `width`
    cells, laid out for the console's width."""
    console = console or Console()
    pids = set(only_pids) if only_pids is not None else None
    console.print(plain(f"== {snapshot.label} ({snapshot.source})", style="bold"))
    console.print(legend())
    procs = [p for p in snapshot.processes if pids is None or p.pid in pids]
    shown = {p.pid: [m for m in p.mappings if _path_ok(m.vma.path, path_filter)] for p in procs}
    cols = layout.columns([mapping_row(m) for p in procs for m in shown[p.pid]], FIGURES, console.width, width)
    for p in procs:
        console.print(plain(f"pid {p.pid} ({p.name}) ppid {p.ppid}", style="bold"))
        console.print(layout.header_text(FIGURES, cols, "mapping (kB)"), no_wrap=True, crop=False)
        for m in shown[p.pid]:
            for line in layout.render_row(mapping_row(m), cols, width):
                console.print(line, no_wrap=True, crop=False)
