"""Tables whose figures are never cut, at any width: the inspector's process, mapping and kind tables.

A `FitTable` has key columns (a pid, a process name, a mapping) and figure columns. When it is
drawn, each figure column is as wide as its widest value (a long header wraps between words); the
names take what is left, a process name cut at its end, a path from the left (`…/libc.so.6`),
never below `layout.MIN_NAME` characters. When the figures do not fit beside the names, they are
split into several tables stacked one under the other, each repeating the key columns: a reader
loses a line, never a figure. rich's own Table would squeeze every column to `…` instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from . import layout

#: Columns between two cells of a row: padding, the rule, padding.
SEP = 3

Cell = str | Text | tuple[str, str]


@dataclass(frozen=True)
class Key:
    """A key column: its header, and how its cells shrink: "" never, "end" cut at the end (a
    name), "path" cells are (head, path) pairs whose path is cut from the left."""

    header: str
    shrink: str = ""
    justify: str = "left"


def _text(c: Cell) -> str:
    if isinstance(c, tuple):
        return f"{c[0]} {c[1]}"
    return c.plain if isinstance(c, Text) else c


#: A figure's header up to this long stays on one line ("Δ shared"); a longer one wraps between words
#: (or at the line breaks it has: "sharing trend\n(0-2180k)").
SHORT_HEADER = 10


def _header_width(header: str) -> int:
    """A figure header's width: its longest line if it has several, else all of it when short,
    else its longest word."""
    if "\n" in header:
        return max(cell_len(line) for line in header.splitlines())
    if cell_len(header) <= SHORT_HEADER:
        return cell_len(header)
    return max((cell_len(w) for w in header.split()), default=0)


class FitTable:
    """A table of key columns and figure columns, drawn to fit the console (see the module)."""

    def __init__(self, keys: Sequence[Key], headers: Sequence[str], title: Text | str | None = None,
                 caption: str | None = None) -> None:
        self.keys = list(keys)
        self.headers = list(headers)
        self.title = title
        self.caption = caption
        self.rows: list[list[Cell]] = []

    def add_row(self, *cells: Cell) -> None:
        """One row: a cell per key column, then one per figure column."""
        if len(cells) != len(self.keys) + len(self.headers):
            raise ValueError(f"a row needs {len(self.keys) + len(self.headers)} cells, got {len(cells)}")
        self.rows.append(list(cells))

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def _natural(self, i: int, header: str, figure: bool) -> int:
        head = _header_width(header) if figure else cell_len(header)
        return max([head] + [cell_len(_text(r[i])) for r in self.rows])

    def widths(self, width: int) -> tuple[list[int], list[list[int]]]:
        """The key columns' least widths and the figure columns in groups that fit beside them."""
        nk = len(self.keys)
        keys = [self._natural(i, k.header, False) for i, k in enumerate(self.keys)]
        least = self._least(keys)
        figs = [self._natural(nk + j, h, True) for j, h in enumerate(self.headers)]
        room = width + SEP - sum(w + SEP for w in least)
        groups: list[list[int]] = [[]]
        used = 0
        for j, w in enumerate(figs):
            if groups[-1] and used + w + SEP > room:
                groups.append([])
                used = 0
            groups[-1].append(j)
            used += w + SEP
        return keys, groups

    def _least(self, keys: list[int]) -> list[int]:
        """The narrowest each key column gets: its natural width if it never shrinks; a name
        `layout.MIN_NAME` characters; a mapping its address and permissions and as much of its path."""
        least = []
        for i, (w, k) in enumerate(zip(keys, self.keys, strict=True)):
            if k.shrink == "path":
                heads = [cell_len(r[i][0]) + 1 for r in self.rows if isinstance(r[i], tuple)]
                w = min(w, max(heads, default=0) + layout.MIN_NAME)
            elif k.shrink:
                w = min(w, layout.MIN_NAME)
            least.append(max(w, cell_len(k.header)))
        return least

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        keys, groups = self.widths(options.max_width)
        nk = len(self.keys)
        figs = [self._natural(nk + j, h, True) for j, h in enumerate(self.headers)]
        rest = options.max_width + SEP - max(sum(figs[j] + SEP for j in group) for group in groups)
        rest -= sum(w + SEP for w, k in zip(keys, self.keys, strict=True) if not k.shrink)
        sizes = self._key_sizes(keys, rest)  # the same in every part: a name reads the same
        for g, group in enumerate(groups):
            t = Table(title=self.title if g == 0 else None, title_justify="left", show_edge=False, pad_edge=False,
                      caption=self.caption if g == len(groups) - 1 else None, caption_justify="left")
            for k, w in zip(self.keys, sizes, strict=True):
                t.add_column(k.header, justify=k.justify, width=w, no_wrap=True, overflow="ellipsis")  # type: ignore[arg-type]
            for j in group:
                t.add_column(self.headers[j], justify="right", width=figs[j])
            for r in self.rows:
                t.add_row(*[_shrunk(c, k, w) for c, k, w in zip(r[:nk], self.keys, sizes, strict=True)],
                          *[r[nk + j] for j in group])  # type: ignore[misc]
            yield t

    def _key_sizes(self, keys: list[int], rest: int) -> list[int]:
        """The key columns' widths: fixed ones natural, shrinking ones sharing `rest` in order."""
        sizes = []
        for w, least, k in zip(keys, self._least(keys), self.keys, strict=True):
            if not k.shrink:
                sizes.append(w)
                continue
            size = max(min(w, rest - SEP), least)
            sizes.append(size)
            rest -= size + SEP
        return sizes


def _shrunk(c: Cell, key: Key, width: int) -> str | Text:
    """A key cell in `width` characters: a path cut from the left, anything else at its end."""
    if isinstance(c, tuple):
        head, path = c
        return Text(f"{head} {layout.shorten_left(path, max(width - cell_len(head) - 1, 1))}")
    if isinstance(c, Text):
        if c.cell_len <= width:
            return c
        cut = c.copy()
        cut.truncate(width, overflow="ellipsis")
        return cut
    return layout.shorten_right(c, width)
