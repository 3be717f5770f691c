"""Terminal output of `cowscope run --on both`: the agreement first, then the differences page by page.

Reads the two traces of one scenario (`verify.trace.Trace`: per checkpoint each process's regions
as page tokens and smaps figures) and the comparison's differences (`verify.compare.Diff`,
`verify.events.EventDiff`), duck-typed: report does not import verify. Each checkpoint shows, per
process, the regions where the backends differ, each drawn twice (model, linux) with the
differing pages in runs; regions that agree fold into one line per process. `all_regions` draws
every region and lists the operations and the excluded differences too. A difference is placed
by its own fields (checkpoint `step`, `process`, `region`, `pages`, `aspect`, `vma`), never by
parsing its text; the first line states the verdict in the HTML report's words (`headline`).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.text import Text

from ..observe.pages import NOT_PRESENT, PAGECACHE, PRIVATE, SHARED, SWAPPED, ZERO, PageStates
from . import layout
from .plain import plain, visible
from .strips import strip

FIGURES = ("Rss", "Pss", "Priv", "Shrd")
_TOKEN_STATE = {"-": NOT_PRESENT, "Z": ZERO, "X": PRIVATE, "S": SHARED, "F": PAGECACHE, "W": SWAPPED,
                "G": SWAPPED, "P": SHARED}


@dataclass
class BothView:
    """What the comparison prints: strip cells at most, and whether to show everything."""

    width: int = 48
    all_regions: bool = False


def token_states(tokens: Sequence[str]) -> PageStates:
    """A region's page tokens (`-`, `Z`, `X`, `S2`, `F3`, `W`, `G`, with `.A` PFN letters) as
    page states, for a strip."""
    st = np.array([_TOKEN_STATE.get(t[:1], NOT_PRESENT) for t in tokens], dtype=np.uint8)
    counts = [t[1:].split(".")[0] for t in tokens]
    mc = np.array([int(c) if c.isdigit() else (1 if s in (PRIVATE, PAGECACHE) else 2 if s == SHARED else 0)
                   for c, s in zip(counts, st, strict=True)], dtype=np.int64)
    return PageStates(st, mc, np.zeros(len(tokens), dtype=np.int64))


def region_figures(region: Mapping[str, Any] | None) -> list[str]:
    """Rss, Pss, Private, Shared (kB) of a region's VMAs, summed."""
    if not region:
        return ["-"] * 4
    s: dict[str, int] = {}
    for v in region["vmas"]:
        for k, n in v["smaps"].items():
            s[k] = s.get(k, 0) + n
    return [str(s.get("Rss", 0)), str(s.get("Pss", 0)), str(s.get("Private_Clean", 0) + s.get("Private_Dirty", 0)),
            str(s.get("Shared_Clean", 0) + s.get("Shared_Dirty", 0))]


def _row(side: str, region: Mapping[str, Any] | None) -> layout.Row:
    if not region:
        return layout.Row(side, "(not mapped)", ["-"] * 4)
    states = token_states(region["pages"])
    return layout.Row(side, "", region_figures(region), len(states), lambda cells: strip(states, cells))


def _at(d: Any, step: int, process: str | None, region: str | None) -> bool:
    """Whether a difference lies at this checkpoint, on this process and region (None: not on one)."""
    return d.step == step and d.process == process and d.region == region


def page_runs(diffs: Sequence[Any], step: int, process: str, region: str) -> list[tuple[int, int, Any, Any, bool]]:
    """The per-page state differences of one region as runs (first, end, model, linux, counted)."""
    pages = [(d.pages[0], d.model, d.linux, d.excluded is None) for d in diffs
             if d.aspect == "page" and d.pages and _at(d, step, process, region)]
    runs: list[tuple[int, int, Any, Any, bool]] = []
    for i, a, b, counted in sorted(pages, key=lambda x: x[0]):
        if runs and runs[-1][1] == i and runs[-1][2:] == (a, b, counted):
            runs[-1] = (runs[-1][0], i + 1, a, b, counted)
        else:
            runs.append((i, i + 1, a, b, counted))
    return runs


def _mark(counted: bool) -> str:
    return "≠" if counted else "~"


def headline(counted: int, excluded: int) -> str:
    """The verdict as the HTML report's header states it (report/assets/verdict.js)."""
    word = "DIFFER" if counted else "agree"
    return f"model vs kernel: {word} · {counted} difference{'' if counted == 1 else 's'}, {excluded} excluded"


def summary(console: Console, model: Any, linux: Any, diffs: Sequence[Any], reasons: Mapping[str, str],
            events: str | None) -> None:
    """The agreement first: how many differences, how many excluded and why, the event figure."""
    n = sum(d.excluded is None for d in diffs)
    console.print(Text(headline(n, len(diffs) - n), style="bold" if n == 0 else "bold red"))
    if events:
        console.print(Text(events))
    by_reason: dict[str, int] = {}
    for d in diffs:
        if d.excluded is not None:
            by_reason[d.excluded] = by_reason.get(d.excluded, 0) + 1
    for why, k in by_reason.items():
        console.print(Text(f"  excluded ({k}x) {reasons.get(why, why)}", style="dim"))
    if model.error or linux.error:
        same = "  (the same outcome)" if model.outcome == linux.outcome else ""
        console.print(plain(f"scenario error: model {model.error} | linux {linux.error}{same}", style="yellow"))
    for side, tr in (("model", model), ("linux", linux)):
        for f in tr.failures:
            console.print(plain(f"expectation failed on {side}: {f}", style="yellow"))


def _other_diffs(diffs: Sequence[Any], step: int, process: str, region: str | None, view: BothView) -> list[Any]:
    """Differences at one place that are not a page's state (VMAs, smaps, state, identity)."""
    return [d for d in diffs if _at(d, step, process, region) and d.aspect != "page"
            and (d.excluded is None or view.all_regions)]


_VMA_FLAGS = ("perms", "vmflags", "thp_eligible")


def label(d: Any) -> str:
    """What differs, within its region or process: `p3`, `vma[0, 8] perms`, `VMAs`, `exit`."""
    if d.aspect == "page" and d.pages:
        return f"p{d.pages[0]}"
    if d.aspect == "identity" and d.pages:
        return f"p{d.pages[0]} same physical page as"
    if d.vma is not None:
        return f"vma{list(d.vma)} {d.aspect}"
    return d.aspect or d.where


def detail_lines(ds: Sequence[Any], width: int) -> list[Text]:
    """The non-page differences of one region or process: smaps figures of a VMA on one line
    (`Pss 18|22`), replaced pages as runs, the rest one per line."""
    lines: list[Text] = []
    smaps: dict[tuple[tuple[int, int], bool], list[str]] = {}
    for d in ds:
        if d.vma is not None and d.aspect not in _VMA_FLAGS:
            smaps.setdefault((d.vma, d.excluded is None), []).append(f"{d.aspect} {d.model}|{d.linux}")
        elif d.aspect == "moved":
            kept = [p for p, x in zip(d.pages, d.model, strict=False) if not x]
            lines.append(plain(f"    {_mark(d.excluded is None)} a new frame since the previous checkpoint: "
                               f"model at {_runs(d.pages, d.model)}, linux at {_runs(d.pages, d.linux)}"
                               + ("" if kept or not d.excluded else f" ({d.excluded})")))
        else:
            lines.append(diff_text(d, width, label(d)))
    for (vma, counted), fields in smaps.items():
        lines += wrapped(f"    {_mark(counted)} vma{list(vma)} smaps model|linux:", fields, width)
    return lines


def wrapped(head: str, items: Sequence[str], width: int, indent: int = 6) -> list[Text]:
    """`head` and the items, comma-separated, in lines of at most `width` (continuations indented)."""
    lines, line = [], head
    for k, item in enumerate(items):
        piece = item + ("," if k < len(items) - 1 else "")
        if len(line) + 1 + len(piece) > width and line.strip():
            lines.append(plain(line))
            line = " " * (indent - 1)
        line += " " + piece
    return lines + [plain(line)]


def _runs(pages: Sequence[int], flags: Sequence[Any]) -> str:
    chosen = [p for p, f in zip(pages, flags, strict=False) if f]
    if not chosen:
        return "none"
    out: list[list[int]] = []
    for p in chosen:
        if out and out[-1][1] == p - 1:
            out[-1][1] = p
        else:
            out.append([p, p])
    return ", ".join(f"p{a}" if a == b else f"p{a}-{b}" for a, b in out)


def diff_text(d: Any, width: int, what: str | None = None) -> Text:
    """One difference in a line: `≠ what: model X | linux Y` (what: the comparator's where)."""
    a, b = _short(d.model), _short(d.linux)
    tail = f" ({d.excluded})" if d.excluded else ""
    text = f"    {_mark(d.excluded is None)} {visible(d.where if what is None else what)}: model {a} | linux {b}"
    return plain(text + (layout.shorten_right(tail, max(width - len(text), 12)) if tail else ""))


def _short(value: Any, limit: int = 48) -> str:
    return layout.shorten_right(visible(repr(value) if not isinstance(value, str) else value), limit)


def print_ops(console: Console, model: Any, linux: Any, span: range, diffs: Sequence[Any], view: BothView) -> None:
    """The operations of one checkpoint interval: those that differ (all with `all_regions`)."""
    bad = {d.op for d in diffs if d.excluded is None and d.op is not None}
    for i in span:
        a = model.ops[i] if i < len(model.ops) else None
        b = linux.ops[i] if i < len(linux.ops) else None
        differs = i in bad
        if differs or view.all_regions:
            console.print(plain(f"{'≠' if differs else ' '} {i + 1:>3} {_op(a)}"))
            if differs:
                console.print(plain(f"      linux: {_op(b)}", style="red"))


def _op(op: Any) -> str:
    if op is None:
        return "(none)"
    key, name, args, res = op
    return f"{key} {name}({', '.join(map(str, args))}) -> {res}"


def _signature(diffs: Sequence[Any], step: int, process: str, region: str) -> tuple[tuple[Any, ...], ...]:
    """A region's counted differences at one checkpoint, without the checkpoint (to tell repeats);
    replaced pages are news of one interval and left out."""
    return tuple((d.aspect, d.vma, d.pages, repr(d.model), repr(d.linux)) for d in diffs
                 if d.excluded is None and d.aspect != "moved" and _at(d, step, process, region))


def _life(p: Mapping[str, Any]) -> str:
    """`alive`, or the state letter and how it ended (`X, exit 0`)."""
    how = p.get("exit")
    end = ", " + " ".join(map(str, how)) if isinstance(how, (tuple, list)) else f", {how}" if how else ""
    return f"{p.get('state')}{end}"


def _state(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    sa, sb = _life(a), _life(b)
    if sa == sb:
        return "" if sa == "alive" else f" ({sa} on both)"
    return f" (model {sa} | linux {sb})"


def print_process(console: Console, step: int, key: str, a: Mapping[str, Any], b: Mapping[str, Any],
                  diffs: Sequence[Any], view: BothView, seen: dict[tuple[str, str], Any]) -> None:
    """One process at one checkpoint: its regions that differ, drawn twice; those that agree, and
    those that differ as at the previous checkpoint, folded into a line each."""
    ra, rb = a.get("regions", {}), b.get("regions", {})
    agree, repeated, shown = [], [], []
    for rk in sorted(set(ra) | set(rb)):
        sig = _signature(diffs, step, key, rk)
        last, seen[(key, rk)] = seen.get((key, rk)), sig
        if view.all_regions or (sig and sig != last):
            shown.append(rk)
        else:
            (repeated if sig else agree).append(rk)
    folded = [f"{', '.join(map(visible, agree))} agree"] if agree else []
    folded += [f"{', '.join(map(visible, repeated))} differ as at the previous checkpoint"] if repeated else []
    console.print(plain(f"{visible(key)}{_state(a, b)}" + (": " + "; ".join(folded) if folded and not shown else ""),
                        style="" if not shown else "bold"))
    rows = [layout.Row(visible(rk), "", ["0"] * 4) for rk in shown]
    rows += [_row(side, r.get(rk)) for rk in shown for side, r in (("model", ra), ("linux", rb))]
    cols = layout.columns(rows, FIGURES, console.width, view.width, indent=4)
    for rk in shown:
        console.print(layout.header_text(FIGURES, cols, visible(rk)), no_wrap=True, crop=False)
        for side, r in (("model", ra), ("linux", rb)):
            for line in layout.render_row(_row(side, r.get(rk)), cols, view.width):
                console.print(line, no_wrap=True, crop=False)
        for first, end, x, y, counted in page_runs(diffs, step, key, rk):
            if counted or view.all_regions:
                pages = f"p{first}" if end == first + 1 else f"p{first}-{end - 1}"
                console.print(plain(f"    {_mark(counted)} {pages}: model {x} | linux {y}"))
        for line in detail_lines(_other_diffs(diffs, step, key, rk, view), console.width):
            console.print(line)
    if shown and folded:
        console.print(Text("    " + "; ".join(folded), style="dim"))
    for line in detail_lines(_other_diffs(diffs, step, key, None, view), console.width):
        console.print(line)


def print_both(console: Console, model: Any, linux: Any, diffs: Sequence[Any], reasons: Mapping[str, str],
               events: str | None = None, event_diffs: Sequence[Any] = (), view: BothView | None = None) -> None:
    """The whole comparison: summary, then each checkpoint's differences (folded where they agree)."""
    view = view or BothView()
    summary(console, model, linux, diffs, reasons, events)
    nops = max(len(model.ops), len(linux.ops))
    ends = [max(a, b) for a, b in zip(model.marks, linux.marks, strict=False)] + [nops]
    labels = [lbl for lbl, _ in model.checkpoints]
    start = 0
    seen: dict[tuple[str, str], Any] = {}
    for k, end in enumerate(ends):
        if k >= min(len(model.checkpoints), len(linux.checkpoints)):
            print_ops(console, model, linux, range(start, nops), diffs, view)
            break
        console.rule(plain(f"checkpoint {k + 1}/{len(labels)}: {labels[k]}", style="bold"))
        print_ops(console, model, linux, range(start, end), diffs, view)
        start = end
        mo, lo = model.checkpoints[k][1], linux.checkpoints[k][1]
        for key in sorted(set(mo) | set(lo)):
            print_process(console, k, key, mo.get(key, {}), lo.get(key, {}), diffs, view, seen)
        for e in event_diffs:
            if e.step == k and (e.excluded is None or view.all_regions):
                console.print(plain(f"  {'≠' if e.excluded is None else '~'} {e.line()}"))
    for d in diffs:
        if d.excluded is None and d.step is None and d.op is None:  # the outcome, the checkpoints' names
            console.print(diff_text(d, console.width))


def both_text(model: Any, linux: Any, diffs: Sequence[Any], reasons: Mapping[str, str] | None = None,
              width: int = 120, all_regions: bool = True) -> str:
    """The comparison as plain text (for messages and tests): every region by default."""
    console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False, markup=False)
    print_both(console, model, linux, diffs, reasons or {}, view=BothView(all_regions=all_regions))
    return console.file.getvalue()  # type: ignore[attr-defined]
