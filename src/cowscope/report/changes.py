"""`cowscope run --changes`: every page whose strip character or frame changed since the previous
checkpoint, with the event that did it.

A process compares with its own pages at the previous checkpoint; a process forked since then
with its parent's there (what fork gave it), so only the pages that left the parent's frame are
listed for it. Runs of neighbouring pages with the same change and the same cause are one line.
The cause is read from the events the snapshot carries (the model's event log; on the kernel the
tracepoint events of `linux.Machine(events=True)`): the process's own last event at that page;
for a page that only changed its sharing, the fork, another process's copy away from its frame,
or an exit; "event unknown" when no event explains it (no events, munmap, madvise).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rich.console import Console
from rich.text import Text

from ..observe.events import COPYING_KINDS
from ..observe.pages import PageStates
from ..observe.records import PAGE_SIZE
from ..observe.snapshot import Snapshot
from . import layout
from . import tree as tr
from .plain import visible
from .strips import CHARS, page_codes

UNKNOWN = "event unknown"
#: Lines of changes one checkpoint prints at most (the rest are counted).
MAX_LINES = 200


@dataclass
class EventIndex:
    """The events of one checkpoint interval, indexed the ways a page's change is explained."""

    own: dict[tuple[int, int], Any] = field(default_factory=dict)            # (pid, page) -> last event
    copies_of: dict[int, list[Any]] = field(default_factory=dict)            # old PFN -> copies
    copies_at: dict[int, list[Any]] = field(default_factory=dict)            # page -> copies
    forks: dict[int, int] = field(default_factory=dict)                      # pid -> forks it made
    exits: list[int] = field(default_factory=list)                           # pids that exited
    any_events: bool = False

    @classmethod
    def of(cls, events: Iterable[Any]) -> EventIndex:
        """Index a checkpoint's events (Event records or anything with the same fields)."""
        idx = cls()
        for e in events:
            if e.kind == "checkpoint":
                continue
            idx.any_events = True
            if e.kind in ("fork", "vfork"):
                idx.forks[e.pid] = idx.forks.get(e.pid, 0) + 1
            elif e.kind == "exit":
                idx.exits.append(e.pid)
            if not e.address:
                continue
            page = e.address - e.address % PAGE_SIZE
            idx.own[(e.pid, page)] = e
            if e.kind in COPYING_KINDS:
                idx.copies_at.setdefault(page, []).append(e)
                if e.old_pfn:
                    idx.copies_of.setdefault(int(e.old_pfn), []).append(e)
        return idx

    def cause(self, pid: int, page: int, pfn: int, moved: bool, shared_more: bool) -> str:
        """What changed the page of `pid` at address `page` (its frame `pfn` now)."""
        e = self.own.get((pid, page))
        if e is not None:
            return e.kind
        if moved:
            return UNKNOWN
        if shared_more:
            if self.forks.get(pid):
                return "fork"
            return f"fork in pid {min(self.forks)}" if self.forks else UNKNOWN
        found = [c for c in self.copies_of.get(pfn, []) if c.pid != pid] if pfn else []
        if not found:  # the kernel's events name no old frame: a copy at the same address
            found = [c for c in self.copies_at.get(page, []) if c.pid != pid and c.old_pfn is None]
        if found:
            ids = sorted({c.pid for c in found})
            return f"{found[0].kind} in pid{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))}"
        if self.exits:
            return f"exit of pid{'s' if len(self.exits) > 1 else ''} {', '.join(map(str, sorted(self.exits)))}"
        return UNKNOWN


@dataclass(frozen=True)
class Change:
    """A run of neighbouring pages of one mapping with the same change and cause."""

    pid: int
    start: int      # the mapping's start address
    name: str
    first: int      # page offsets in the mapping, half-open
    end: int
    before: str     # strip characters
    after: str
    cause: str

    def pages(self) -> str:
        return f"p{self.first}" if self.end == self.first + 1 else f"p{self.first}-{self.end - 1}"


def _codes(p: tr.ProcessPages) -> np.ndarray:
    return page_codes(PageStates(p.state, p.mapcount, p.pfn, huge=p.huge))


def process_changes(p: tr.ProcessPages, before: tr.ProcessPages | None, own: bool, idx: EventIndex,
                    exact: bool) -> Iterator[Change]:
    """The changed pages of one process, as runs."""
    b = tr.aligned(before, p)
    cb, cn = _codes(b), _codes(p)
    moved = tr.moved(p, before, exact)
    changed = moved | ((cb != cn) if own else False)
    for k, vma in enumerate(p.vmas):
        sl = p.mapping(k)
        run: Change | None = None
        for i in np.flatnonzero(changed[sl]).tolist():
            g = sl.start + i
            cause = idx.cause(p.pid, vma.start + i * PAGE_SIZE, int(p.pfn[g]), bool(moved[g]),
                              int(p.mapcount[g]) > int(b.mapcount[g]))
            c = Change(p.pid, vma.start, visible(vma.path or "[anon]"), i, i + 1, CHARS[cb[g]], CHARS[cn[g]], cause)
            if run is not None and run.end == i and (run.before, run.after, run.cause) == (c.before, c.after, c.cause):
                run = Change(run.pid, run.start, run.name, run.first, i + 1, run.before, run.after, run.cause)
                continue
            if run is not None:
                yield run
            run = c
        if run is not None:
            yield run


#: Widest mapping name a line of changes gives (longer paths are shortened from the left).
NAME_WIDTH = 18


def change_lines(changes: list[Change], width: int) -> list[Text]:
    """One aligned line per change: `  1001 55555556b000 [heap]   p4-7   2 → #  cow-copy`; the
    name shortened from the left to fit, the cause last (wrapped by the terminal if it must)."""
    if not changes:
        return []
    pid_w = max(len(str(c.pid)) for c in changes)
    page_w = max(len(c.pages()) for c in changes)
    fixed = 2 + pid_w + 1 + 12 + 1 + 1 + page_w + 1 + 5 + 2 + 12
    name_w = max(min(max(len(c.name) for c in changes), NAME_WIDTH, width - fixed), layout.MIN_NAME)
    return [Text(f"  {c.pid:>{pid_w}} {c.start:x} {layout.shorten_left(c.name, name_w):<{name_w}} "
                 f"{c.pages():<{page_w}} {c.before} → {c.after}  {c.cause}") for c in changes]


def checkpoint_changes(snap: Snapshot, pages: dict[int, tr.ProcessPages], before: dict[int, tr.ProcessPages],
                       exact: bool) -> tuple[list[Change], list[str]]:
    """Every change of a checkpoint, and a note per process new since the previous one."""
    idx = EventIndex.of(snap.events)
    out: list[Change] = []
    notes = []
    for pv in snap.processes:
        p = pages[pv.pid]
        b, own = tr.before_of(pv.pid, pv.ppid, p, before)
        if not own:
            notes.append(f"  {pv.pid} is new: compared with {pv.ppid}'s pages at the previous checkpoint"
                         if b is not None else f"  {pv.pid} is new, its parent unseen: every page listed")
        out += process_changes(p, b, own, idx, exact)
    return out, notes


def print_changes(console: Console, snap: Snapshot, pages: dict[int, tr.ProcessPages],
                  before: dict[int, tr.ProcessPages] | None, exact: bool) -> None:
    """The changes of one checkpoint, after its mappings."""
    if before is None:
        n = sum(1 for e in snap.events if e.kind != "checkpoint")
        console.print(Text(f"changes: the first checkpoint, every page is new ({n} events since the start)",
                           style="bold"))
        return
    changes, notes = checkpoint_changes(snap, pages, before, exact)
    note = "" if snap.events else " (no events recorded: causes unknown)"
    console.print(Text(f"changes since the previous checkpoint (page: before → after, cause){note}:", style="bold"))
    for n in notes:
        console.print(Text(n, style="dim"))
    for line in change_lines(changes[:MAX_LINES], console.width):
        console.print(line)
    if not changes:
        console.print(Text("  no page changed", style="dim"))
    elif len(changes) > MAX_LINES:
        console.print(Text(f"  ... and {len(changes) - MAX_LINES} more runs of changed pages", style="dim"))
