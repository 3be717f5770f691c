"""Terminal page strips: one line of legend characters per mapping, coloured with rich.

Legend (shared with the HTML report, see `LEGEND`):

  ``.`` not present   ``0`` zero page   ``#`` private (exclusive)   ``2``..``9`` shared by N
  ``+`` shared by 10 or more   ``f`` page cache   ``s`` swap / guard marker
  ``H`` a page of a 2 MiB THP mapped by one PMD, private   ``h`` the same, shared (after fork)

A PMD-mapped folio is one unit: its 512 pages all show ``H`` (or ``h``), whatever their own map
counts, and `runs()` writes it as ``H×512`` (×1024 for two). Where the backend cannot tell
(a kernel before 6.7), THP pages show as ordinary pages.

A mapping with more pages than the strip is wide is drawn at a fixed width: every cell covers a
run of ``k`` consecutive pages and shows the most common character among them; the strip is then
followed by ``×k`` (one cell = k pages). `runs()` gives the exact run-length form (``#×1024 .×3``).
Colours come from rich, which drops them for ``NO_COLOR`` and for output that is not a terminal.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from rich.text import Text

from ..observe.pages import NOT_PRESENT, PAGECACHE, PRIVATE, SHARED, SWAPPED, ZERO, PageStates

#: Per-page codes: 0 '.', 1 '0', 2 '#', 3..10 '2'..'9', 11 '+', 12 'f', 13 's', 14 'H', 15 'h'.
CHARS = ".0#23456789+fsHh"
#: rich style of each code (same order as CHARS); the HTML report uses the same hues.
STYLES = (
    "grey42", "bright_blue", "bold red",
    "green", "green", "bright_green", "bright_green", "bright_green", "cyan", "cyan", "cyan", "bright_cyan",
    "yellow", "magenta", "bold bright_red", "bold bright_green",
)
#: Hex colours of each code for the HTML report, matching STYLES.
COLOURS = (
    "#e6e6e6", "#5b8def", "#d62728",
    "#2ca02c", "#35b335", "#3fc43f", "#49d049", "#1fb5a5", "#17becf", "#12a8c0", "#0e93b0", "#0b7fa0",
    "#e6b800", "#b04fc6", "#8c1c13", "#1b6e1b",
)
#: (character, meaning) pairs in display order.
LEGEND = (
    (".", "not present"), ("0", "zero page"), ("#", "private (exclusive)"),
    ("2-9", "shared by N PTEs"), ("+", "shared by 10+"), ("f", "page cache"), ("s", "swap/guard"),
    ("H", "2 MiB THP, one PMD (h: shared)"),
)
# Tie-break when two characters are equally common in a cell: prefer the more informative one.
_PRIORITY = np.array([0, 1, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 2, 3, 5, 5], dtype=np.int64)


def page_codes(states: PageStates) -> np.ndarray:
    """Per-page legend code (index into CHARS) as a uint8 array (of the listed pages only, for
    sparse states: `states.index` says which)."""
    st = np.asarray(states.state)
    mc = np.asarray(states.mapcount, dtype=np.int64)
    codes = np.zeros(len(st), dtype=np.uint8)
    codes[st == ZERO] = 1
    codes[st == PRIVATE] = 2
    shared = st == SHARED
    codes[shared] = (np.clip(mc[shared], 2, 10) + 1).astype(np.uint8)
    codes[st == PAGECACHE] = 12
    codes[st == SWAPPED] = 13
    codes[st == NOT_PRESENT] = 0
    if states.huge is not None:  # a PMD-mapped folio shows as one unit
        huge = np.asarray(states.huge, dtype=bool) & (st != NOT_PRESENT) & (st != ZERO)
        codes[huge] = np.where(mc[huge] >= 2, 15, 14)
    return codes


def pages_per_cell(npages: int, width: int) -> int:
    """How many pages one strip cell covers for a mapping of npages at this width."""
    if width < 1:
        raise ValueError(f"strip width must be at least 1, got {width}")
    return max(1, -(-npages // width))


def cell_codes(codes: np.ndarray, width: int) -> np.ndarray:
    """Summarise per-page codes into at most `width` cells, each the most common code of its run."""
    n = len(codes)
    per = pages_per_cell(n, width)
    if per == 1:
        return codes.astype(np.uint8)
    cell_of = np.arange(n) // per
    counts = np.zeros((-(-n // per), len(CHARS)), dtype=np.int64)
    np.add.at(counts, (cell_of, codes.astype(np.int64)), 1)
    return _most_common(counts)


def _most_common(counts: np.ndarray) -> np.ndarray:
    score = counts * 16 + np.where(counts > 0, _PRIORITY, 0)
    return np.argmax(score, axis=1).astype(np.uint8)


def state_cells(states: PageStates, width: int) -> np.ndarray:
    """`cell_codes` of a mapping's page states; a sparse one (a huge, mostly untouched mapping)
    without materialising its pages: unlisted pages count as not present."""
    if not states.sparse:
        return cell_codes(page_codes(states), width)
    n = len(states)
    per = pages_per_cell(n, width)
    ncells = -(-n // per)
    counts = np.zeros((ncells, len(CHARS)), dtype=np.int64)
    counts[:, 0] = per
    counts[-1, 0] = n - per * (ncells - 1)
    cell_of = np.asarray(states.index, dtype=np.int64) // per
    np.add.at(counts, (cell_of, page_codes(states).astype(np.int64)), 1)
    np.add.at(counts[:, 0], cell_of, -1)
    return _most_common(counts)


def _styled(codes: Iterable[int]) -> Text:
    text = Text()
    prev = -1
    buf: list[str] = []
    for c in codes:
        c = int(c)
        if c != prev and buf:
            text.append("".join(buf), style=STYLES[prev])
            buf = []
        buf.append(CHARS[c])
        prev = c
    if buf:
        text.append("".join(buf), style=STYLES[prev])
    return text


def strip(states: PageStates, width: int = 64) -> Text:
    """One-line strip of a mapping's pages, at most `width` cells, suffixed ``×k`` when cells are runs."""
    text = _styled(state_cells(states, width))
    per = pages_per_cell(len(states), width)
    if per > 1:
        text.append(f" ×{per}", style="dim")
    return text


def runs(states: PageStates) -> Text:
    """Exact run-length notation: ``#×1024 .×3 2×16`` (a run of one page has no count)."""
    codes = page_codes(states.dense())  # exact runs: for mappings small enough to list
    text = Text()
    if len(codes) == 0:
        return text
    edges = np.flatnonzero(np.diff(codes.astype(np.int16))) + 1
    starts = np.concatenate(([0], edges))
    ends = np.concatenate((edges, [len(codes)]))
    for i, (a, b) in enumerate(zip(starts, ends, strict=True)):
        if i:
            text.append(" ")
        c = int(codes[a])
        n = int(b - a)
        text.append(CHARS[c] + (f"×{n}" if n > 1 else ""), style=STYLES[c])
    return text


def legend() -> Text:
    """The strip legend as one line of styled text, including the ``×k`` run convention."""
    text = Text()
    samples = {".": 0, "0": 1, "#": 2, "2-9": 3, "+": 11, "f": 12, "s": 13, "H": 14}
    for ch, meaning in LEGEND:
        text.append(ch, style=STYLES[samples[ch]])
        text.append(f" {meaning}  ")
    text.append("×k: one cell = k pages, showing their most common state", style="dim")
    return text
