"""Fitting rows of figures and strips into a terminal width: figures whole, names shortened, strips last.

A row is a label (fixed prefix such as an address, then a name that may be shortened from the
left: `…/libc.so.6`), right-aligned figures, and a strip drawn at whatever width is left. Figures
are never cut: at any width of 60 columns or more they fit beside a label of at least
`MIN_NAME` characters; the strip shares the line when `MIN_STRIP` cells fit beside them and goes
on its own line under the row otherwise. Names come in already made visible (`plain.visible`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.text import Text

from .strips import pages_per_cell

ELLIPSIS = "…"
#: Fewest characters a shortened name keeps (`…/libc.so.6` is 11).
MIN_NAME = 11
#: Fewest strip cells drawn beside the figures; fewer and the strip goes on a line of its own.
MIN_STRIP = 12
#: Columns between a row's parts.
GAP = 2


def shorten_left(text: str, width: int) -> str:
    """`text` in at most `width` characters, cut from the left: a path keeps its last components
    (`…/x86_64-linux-gnu/libc.so.6`, then `…/libc.so.6`), anything else its end (`…so.6`)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    parts = text.split("/")
    for k in range(1, len(parts)):
        tail = ELLIPSIS + "/" + "/".join(parts[k:])
        if len(tail) <= width and parts[k:] != [""]:
            return tail
    return ELLIPSIS + text[len(text) - width + 1:]


def shorten_right(text: str, width: int) -> str:
    """`text` in at most `width` characters, cut at the end (a process name: `gunicorn: wor…`)."""
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + ELLIPSIS if width >= 1 else ""


def library_name(path: str) -> str:
    """What a folded line calls a file mapping: `libc` for libc.so.6, `ld.so` for the loader,
    the base name otherwise (`app`, `[vdso]`; without a build hash: `cowscope-agent`); `anon` for
    an anonymous one."""
    if not path:
        return "anon"
    base = path.rsplit("/", 1)[-1] or path
    if base.startswith("ld-linux") or base.startswith("ld.so"):
        return "ld.so"
    if ".so" in base:
        return base.split(".so", 1)[0]
    return re.sub(r"-[0-9a-f]{12,}$", "", base)  # a build hash (cowscope's agent): the program's name


def strip_cells(npages: int, room: int, cap: int) -> int:
    """Most strip cells (at most `cap`) that fit in `room` columns with the strip's ` ×k` suffix."""
    cells = min(cap, room)
    while cells > 1 and cells + _suffix(npages, cells) > room:
        cells -= 1
    return max(cells, 1)


def _suffix(npages: int, cells: int) -> int:
    per = pages_per_cell(max(npages, 1), cells)
    return 0 if per == 1 else len(f" ×{per}")


@dataclass
class Row:
    """One row: `prefix` (kept whole) and `name` (shortened from the left) make the label; then
    the figures; then `strip(cells)` for a mapping of `npages` pages (None: no strip). The strip
    goes beside the figures, or under them when it is drawn whole there and not beside them."""

    prefix: str
    name: str
    figures: Sequence[str]
    npages: int = 0
    strip: Callable[[int], Text] | None = None
    style: str = ""


@dataclass
class Columns:
    """Widths chosen for a set of rows at one terminal width."""

    indent: int
    label: int
    figures: list[int]
    gap: int           # columns between figures
    strip_inline: bool
    strip_room: int    # columns for an inline strip and its suffix, after the figures
    width: int         # the whole line
    split: bool = False  # the label on a line of its own, the figures under it (very large figures)


def columns(rows: Sequence[Row], headers: Sequence[str], width: int, strip_cap: int = 48,
            indent: int = 2) -> Columns:
    """Column widths for `rows` at `width`: figures as wide as their widest value or header, the
    label as wide as its longest text or what the figures and the widest strip leave (never under
    `MIN_NAME` characters of name), the strip inline if `MIN_STRIP` cells fit. Figures never shrink:
    where they leave no room for a label, the label gets a line of its own."""
    figs = [max([len(h)] + [len(r.figures[i]) for r in rows]) for i, h in enumerate(headers)]
    natural = max([0] + [len(r.prefix) + (1 if r.prefix and r.name else 0) + len(r.name) for r in rows])
    least = max([0] + [len(r.prefix) + 1 + min(len(r.name), MIN_NAME) for r in rows])
    whole = max([least] + [len(r.prefix) + 1 + min(len(r.name), len(_base(r.name))) for r in rows])
    want = min(strip_cap, max([0] + [r.npages for r in rows if r.strip is not None])) + 6
    for gap in (GAP, 1):  # strips beside the figures, if base names stay whole
        room = width - indent - sum(gap + w for w in figs) - GAP  # what label and strip share
        label = min(natural, max(whole, room - want))
        if room - label >= MIN_STRIP:
            return Columns(indent, label, figs, gap, True, room - label, width)
    for gap in (GAP, 1):
        label = min(natural, width - indent - sum(gap + w for w in figs))
        if label >= least:
            return Columns(indent, label, figs, gap, False, 0, width)
    return Columns(indent, min(natural, width - indent), figs, 1, False, 0, width, split=True)


def _base(name: str) -> str:
    """What shortening keeps of a path at best: `…/` and its last component."""
    return ELLIPSIS + "/" + name.rsplit("/", 1)[-1] if "/" in name else name


def label_text(row: Row, width: int) -> str:
    """The row's label in at most `width` characters (the prefix kept, the name cut from the left)."""
    if not row.prefix:
        return shorten_left(row.name, width)
    room = max(width - len(row.prefix) - 1, 1)
    return f"{row.prefix} {shorten_left(row.name, room)}" if row.name else row.prefix


def _figures(row: Row, cols: Columns) -> str:
    return "".join(" " * cols.gap + value.rjust(w) for value, w in zip(row.figures, cols.figures, strict=True))


def render_row(row: Row, cols: Columns, strip_cap: int) -> list[Text]:
    """The row as one line (strip inline) or two (strip under it; label over the figures when split)."""
    label = label_text(row, cols.label)
    if cols.split:
        lines = [Text(" " * cols.indent + label, style=row.style), Text(" " * cols.indent + _figures(row, cols))]
    else:
        line = Text(" " * cols.indent)
        line.append(label.ljust(cols.label), style=row.style)
        line.append(_figures(row, cols))
        lines = [line]
    if row.strip is None:
        return lines
    own_line = max(cols.width - cols.indent - 2, MIN_STRIP)
    if cols.strip_inline:
        cells = strip_cells(row.npages, cols.strip_room, strip_cap)
        if row.npages <= cells or row.npages > min(own_line, strip_cap):  # whole here, or nowhere
            lines[-1].append(" " * GAP)
            lines[-1].append_text(row.strip(cells))
            return lines
    cells = strip_cells(row.npages, own_line, strip_cap)
    return lines + [Text(" " * (cols.indent + 2)) + row.strip(cells)]


def header_text(headers: Sequence[str], cols: Columns, title: str = "", strip_title: str = "pages") -> Text:
    """The heading line of a set of rows: `title` over the labels, then the figure headers."""
    line = Text(" " * cols.indent + shorten_right(title, cols.label).ljust(cols.label), style="bold")
    if cols.split:
        line.append("\n" + " " * cols.indent)
    for h, w in zip(headers, cols.figures, strict=True):
        line.append(" " * cols.gap + h.rjust(w), style="bold")
    if cols.strip_inline and strip_title:
        line.append(" " * GAP + strip_title, style="bold")
    return line
