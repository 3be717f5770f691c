"""Terminal rendering of inspector samples with rich: tables, tree totals, trends, page pictures."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from rich.console import Group
from rich.text import Text

from ..report import strips
from ..report.fit import Cell, FitTable, Key
from ..report.plain import plain, visible
from ..report.strips import cell_codes, pages_per_cell
from . import classify as cl
from .figures import Exited, MappingFigures, ProcessFigures, Sample, find_mappings
from .options import SORT_KEYS

SPARK = "▁▂▃▄▅▆▇█"


def fmt_kb(kb: int | None) -> str:
    """kB as a short human figure (kB, MiB, GiB); '-' for unknown."""
    if kb is None:
        return "-"
    if abs(kb) >= 10 * 1024 * 1024:
        return f"{kb / (1024 * 1024):.1f}G"
    if abs(kb) >= 10 * 1024:
        return f"{kb / 1024:.1f}M"
    return f"{kb}k"


def fmt_delta(kb: int | None) -> str:
    """Signed change in kB."""
    if kb is None:
        return ""
    if kb == 0:
        return "±0"
    return ("+" if kb > 0 else "-") + fmt_kb(abs(kb))


def sparkline(values: Sequence[float], top: float, width: int = 16) -> str:
    """A small trend line of the last `width` values on one fixed scale, 0 to `top` (values above
    it draw as full), so every row of a table reads against the same ruler."""
    vals = list(values)[-width:]
    if top <= 0:
        top = max(vals, default=0) or 1
    steps = len(SPARK) - 1
    return "".join(SPARK[min(max(round(v / top * steps), 0), steps)] for v in vals)


def clock(ts: float) -> str:
    """A Unix time as the local wall-clock HH:MM:SS."""
    return time.strftime("%H:%M:%S", time.localtime(ts))


def exit_line(e: Exited) -> str:
    """One process that exited, and when (between the sample that last read it and the next)."""
    return (f"pid {e.pid} ({visible(e.label)}) exited between {clock(e.last_seen_ts)} and {clock(e.gone_by_ts)}")


COLUMNS = ("rss_kb", "pss_kb", "uss_kb", "swap_kb", "shared_with_parent_kb", "sibling_shared_kb",
           "copied_kb", "who_copied", "same_bytes", "new_kb", "released_kb")
HEADERS = ("RSS", "PSS", "USS", "swap", "shared", "in tree", "copied", "by c/p", "same", "new", "released")
#: Under the table: what the short headers mean.
CAPTION = ("shared: the parent's frame (a root: shared with its tree)  in tree: shared with other inspected "
           "processes, not the parent  by c/p: copied by the child / by the parent (+?: unknown)  same: copied "
           "pages still holding the parent's bytes  released: dropped since fork or first seen, the parent has it")


def same_bytes(f: ProcessFigures | MappingFigures) -> str:
    """How much of the copied memory still has the parent's bytes, as a share of it ("~": sampled)."""
    if f.copied_identical_kb is None or not f.copied_kb:
        return "-"
    compared = getattr(f, "copied_compared_kb", None)
    approx = "~" if compared is not None and compared < f.copied_kb else ""
    return f"{approx}{100 * f.copied_identical_kb / f.copied_kb:.0f}%"


def who_copied(f: ProcessFigures | MappingFigures) -> str:
    """The copied memory by the side that paid: "child/parent", with "+?" for what history cannot
    attribute; "-" when unknown (no frames, or a root)."""
    if f.copied_kb is None or f.copied_by_child_kb is None or f.copied_by_parent_kb is None:
        return "-"
    rest = f.copied_kb - f.copied_by_child_kb - f.copied_by_parent_kb
    text = f"{fmt_kb(f.copied_by_child_kb)}/{fmt_kb(f.copied_by_parent_kb)}"
    return text + (f" +{fmt_kb(rest)}?" if rest else "")


def cell(f: ProcessFigures | MappingFigures, column: str) -> str:
    """One table cell of a process or mapping."""
    if column == "who_copied":
        return who_copied(f)
    if column == "same_bytes":
        return same_bytes(f)
    return fmt_kb(getattr(f, column))


def _depth(sample: Sample) -> dict[int, int]:
    by_pid = {p.pid: p for p in sample.processes}
    depth: dict[int, int] = {}
    for p in sample.processes:
        d, q, seen = 0, p, set()
        while q.ppid in by_pid and q.pid not in seen:
            seen.add(q.pid)
            q = by_pid[q.ppid]
            d += 1
        depth[p.pid] = d
    return depth


def process_table(sample: Sample, baseline: dict[int, ProcessFigures] | None = None,
                  history: dict[int, list[int]] | None = None, title: str | None = None,
                  trend_top: int = 0) -> FitTable:
    """One row per process; with `baseline` (each pid when first seen), the change since; with `history`,
    a trend of shared memory, every row on the same scale: 0 to `trend_top` kB (the parents' resident)."""
    headers = list(HEADERS) + (["Δ shared", "Δ copied"] if baseline is not None else [])
    if history is not None:
        headers.append(f"sharing trend\n(0-{fmt_kb(trend_top)})" if trend_top > 0 else "sharing trend")
    t = FitTable([Key("PID", justify="right"), Key("name", "end")], headers, title, CAPTION)
    depth = _depth(sample)
    before = baseline or {}
    for p in sample.processes:
        row: list[Cell] = [str(p.pid), plain("  " * depth[p.pid] + p.label)]
        row += [cell(p, c) for c in COLUMNS]
        if p.parent_in_tree is False and p.shared_in_tree_kb is not None:
            row[HEADERS.index("in tree") + 2] = fmt_kb(p.shared_in_tree_kb)
        if baseline is not None:
            b = before.get(p.pid)
            for c in ("shared_with_parent_kb", "copied_kb"):
                now, then = getattr(p, c), getattr(b, c) if b is not None else None
                row.append(fmt_delta(now - then) if now is not None and then is not None else "")
        if history is not None:
            row.append(sparkline(history.get(p.pid, []), trend_top))
        t.add_row(*row)
    return t


def totals_text(sample: Sample, first: Sample | None = None, exits: Sequence[Exited] | None = None) -> Text:
    """Tree totals: unique memory vs the RSS sum, the parent's resident ceiling, class sums; the
    processes that exited (`exits`, else this sample's)."""
    tt = sample.totals
    text = Text()
    text.append(f"tree: {tt.processes} processes  RSS sum {fmt_kb(tt.rss_sum_kb)}"
                f"  PSS sum {fmt_kb(tt.pss_sum_kb)}")
    if tt.unique_kb is not None:
        text.append(f"  really used (each frame once) {fmt_kb(tt.unique_kb)}", style="bold")
        text.append(f"  saved by sharing {fmt_kb(tt.rss_sum_kb - tt.unique_kb)}")
    text.append(f"\nparents' resident memory (ceiling CoW can erode) {fmt_kb(tt.parent_rss_kb)}")
    if tt.parent_rss_at_fork_kb is not None:
        text.append(f" (at the first fork {fmt_kb(tt.parent_rss_at_fork_kb)}, read "
                    f"{(tt.at_fork_read_age_s or 0) * 1000:.0f} ms before it was seen)")
    elif first is not None and first is not sample:
        text.append(f" (at the first sample {fmt_kb(first.totals.parent_rss_kb)})")
    if tt.copied_kb is not None:
        text.append(f"  workers: shared w/ parent {fmt_kb(tt.shared_with_parent_kb)}"
                    f"  shared in tree {fmt_kb(tt.sibling_shared_kb)}  copied {fmt_kb(tt.copied_kb)}")
        if tt.copied_by_child_kb is not None:
            text.append(f" (by the workers {fmt_kb(tt.copied_by_child_kb)}, by their parents "
                        f"{fmt_kb(tt.copied_by_parent_kb)}, side unknown "
                        f"{fmt_kb(tt.copied_kb - tt.copied_by_child_kb - (tt.copied_by_parent_kb or 0))})")
        text.append(f"  new {fmt_kb(tt.new_kb)}  released {fmt_kb(tt.released_kb)}")
        if tt.copied_identical_kb is not None and tt.copied_kb:
            text.append(f"\ncopied with the parent's bytes unchanged {fmt_kb(tt.copied_identical_kb)} "
                        f"({100 * tt.copied_identical_kb / tt.copied_kb:.1f}% of copied; "
                        f"{fmt_kb(tt.copied_compared_kb)} compared)")
    text.append(f"\nmode {sample.mode}, read in {sample.duration_s * 1000:.0f} ms", style="dim")
    for e in (sample.exited if exits is None else exits):
        text.append(f"\n{exit_line(e)}", style="yellow")
    for m in sample.missed:
        text.append(f"\nmissed: {visible(m.reason)}", style="yellow")
    for n in sample.notes:
        text.append(f"\nnote: {visible(n)}", style="dim")
    return text


def mapping_order(p: ProcessFigures, sort: str | None) -> tuple[str, list[MappingFigures]]:
    """The sort key's name and p's mappings in that order: by `sort` (a SORT_KEYS name), else by copied
    for a worker and by RSS for a root."""
    name = sort or ("copied" if p.parent_in_tree else "rss")
    attr = SORT_KEYS[name]
    if attr == "start":
        return name, sorted(p.mappings, key=lambda m: m.start)
    return name, sorted(p.mappings, key=lambda m: (-(getattr(m, attr) or 0), -m.rss_kb, m.start))


def mapping_table(p: ProcessFigures, top: int = 12, sort: str | None = None) -> FitTable:
    """The first `top` mappings of one process in `sort` order, with their figures and classes."""
    name, ordered = mapping_order(p, sort)
    t = FitTable([Key("mapping", "path")], HEADERS, plain(f"pid {p.pid} ({p.label}) mappings by {name}"))
    for m in ordered[:top]:
        row: list[Cell] = [(f"{m.start:x} {m.perms}", visible(m.label))]
        row += [cell(m, c) for c in COLUMNS]
        if p.parent_in_tree is False and m.shared_in_tree_kb is not None:
            row[HEADERS.index("in tree") + 1] = fmt_kb(m.shared_in_tree_kb)
        t.add_row(*row)
    return t


KIND_COLUMNS = (("rss_kb", "workers RSS"), ("shared_with_parent_kb", "shared"), ("sibling_shared_kb", "in tree"),
                ("copied_kb", "copied"), ("copied_identical_kb", "same bytes"), ("new_kb", "new"),
                ("released_kb", "released"))


def kinds_table(sample: Sample) -> FitTable:
    """Memory by kind (kinds.py): the roots' resident memory and the workers' figures, summed."""
    from .kinds import KINDS

    t = FitTable([Key("kind", "end")], ["roots RSS"] + [h for _, h in KIND_COLUMNS],
                 "by kind of memory (roots; workers summed)")
    for kind in KINDS:
        roots = [p.kinds.get(kind, {}) for p in sample.processes if p.kinds is not None and not p.parent_in_tree]
        workers = [p.kinds.get(kind, {}) for p in sample.processes if p.kinds is not None and p.parent_in_tree]
        if not any(roots) and not any(workers):
            continue
        row = [kind, fmt_kb(sum(r.get("rss_kb", 0) for r in roots))]
        row += [fmt_kb(sum(w.get(k, 0) for w in workers)) if workers else "-" for k, _ in KIND_COLUMNS]
        t.add_row(*row)
    return t


def class_strip(codes: np.ndarray, width: int) -> Text:
    """One line of class characters, each cell the most common class of its run of pages."""
    cells = cell_codes(codes.astype(np.uint8), width)
    text = Text()
    for c in cells.tolist():
        text.append(cl.CLASS_CHARS[c], style=cl.CLASS_STYLES[c])
    per = pages_per_cell(len(codes), width)
    if per > 1:
        text.append(f" ×{per}", style="dim")
    return text


def class_legend() -> Text:
    """Legend of the page-picture characters."""
    text = Text()
    for i, (ch, meaning) in enumerate(cl.CLASS_LEGEND):
        text.append(ch, style=cl.CLASS_STYLES[i])
        text.append(f" {meaning}  ")
    return text


#: Most mappings one page picture draws; the others that match are listed.
MAX_PICTURES = 4


def _matching(sample: Sample, spec: str, limit: int) -> tuple[dict[tuple[int, int, str, str], list[
        tuple[ProcessFigures, MappingFigures]]], list[str]]:
    """The mappings `spec` names in the first `limit` processes, grouped by (start, end, perms, path)."""
    groups: dict[tuple[int, int, str, str], list[tuple[ProcessFigures, MappingFigures]]] = {}
    problems: list[str] = []
    for p in sample.processes[:limit]:
        found = [m for m in find_mappings(p, spec) if m.codes is not None]
        if not found:
            problems.append(f"pid {p.pid}: no mapping matches {spec!r}")
        for m in found:
            groups.setdefault((m.start, m.end, m.perms, m.path), []).append((p, m))
    return groups, problems


def _which(spec: str, keys: list[tuple[int, int, str, str]], shown: int) -> Text:
    """The line that says which of several matching mappings are drawn, and how to pick one."""
    listed = ", ".join(f"{a:x}-{b:x} {perms} {path or '[anon]'}" for a, b, perms, path in keys)
    more = f"; drawing the first {shown}" if shown < len(keys) else ""
    return plain(f"{len(keys)} mappings match {spec!r}: {listed}{more} (pick one with NAME:PERMS, "
                 f"e.g. {spec.split(':')[0] + ':rw'!r}, or a hex address)", style="yellow")


def _picture(key: tuple[int, int, str, str], rows: list[tuple[ProcessFigures, MappingFigures]],
             width: int) -> list[Text]:
    """One mapping drawn for each process that has it: class strip, and page states under it."""
    a, b, perms, path = key
    with_states = any(m.states is not None for _, m in rows)
    head = "one row per process" + (": classes against the parent, then page states" if with_states else "")
    parts = [plain(f"mapping {a:x}-{b:x} {perms} {path or '[anon]'}: {head}", style="bold")]
    for p, m in rows:
        assert m.codes is not None
        line = Text(f"{p.pid:>8} {m.start:x}-{m.end:x} ")
        strip_text = class_strip(m.codes, width)
        line.append_text(strip_text)
        parts.append(line)
        if m.states is not None:
            pad = " " * (len(line.plain) - len(strip_text.plain))
            parts.append(Text(pad) + strips.strip(m.states, width))
    return parts


def page_picture(sample: Sample, spec: str, width: int = 64, limit: int = 8) -> tuple[Group, list[str]]:
    """Strips of the mappings `spec` names (find_mappings) for up to `limit` processes, one row each;
    when several mappings match, says which are drawn and how to pick one."""
    groups, problems = _matching(sample, spec, limit)
    keys = sorted(groups)
    parts: list[Text] = []
    if len(keys) > 1:
        parts.append(_which(spec, keys, min(len(keys), MAX_PICTURES)))
    for key in keys[:MAX_PICTURES]:
        parts += _picture(key, groups[key], width)
    if not keys:
        parts.append(plain(f"no mapping matches {spec!r}", style="bold"))
    parts.append(class_legend())
    if any(m.states is not None for rows in groups.values() for _, m in rows):
        parts.append(strips.legend())
    return Group(*parts), problems


def sample_view(sample: Sample, first: Sample | None = None, history: dict[int, list[int]] | None = None,
                mappings: int = 0, pages: str | None = None, width: int = 64,
                baseline: dict[int, ProcessFigures] | None = None, trend_top: int = 0,
                exits: Sequence[Exited] | None = None, sort: str | None = None, kinds: bool = False) -> Group:
    """Everything about one sample as one renderable (changes against `baseline`, else `first`)."""
    if baseline is None and first is not None:
        baseline = {p.pid: p for p in first.processes}
    parts: list[object] = [process_table(sample, baseline, history, trend_top=trend_top),
                           totals_text(sample, first, exits)]
    if mappings:
        parts += [mapping_table(p, mappings, sort) for p in sample.processes]
    if kinds:
        parts.append(kinds_table(sample))
    if pages:
        pic, problems = page_picture(sample, pages, width)
        parts.append(pic)
        parts += [plain(msg, style="yellow") for msg in problems]
    return Group(*parts)  # type: ignore[arg-type]
