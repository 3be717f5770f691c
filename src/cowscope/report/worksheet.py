"""Worksheets: `cowscope learn` problems as one printable HTML page, with the answer key or without.

Takes the plain data of `learn.sheet.sheet_json` (a dict per problem: lines, questions and, for
the key, answers), so the report does not depend on the learner; renders it with jinja2 like the
report, page strips in the report's legend colours.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from .strips import CHARS, COLOURS, LEGEND


def strip_cells(text: str) -> Markup:
    """A page strip as coloured cells (the report's colours), its characters kept for print."""
    cells = []
    for ch in str(text):
        if ch in CHARS:
            colour = COLOURS[CHARS.index(ch)]
            cells.append(f'<span class="cell" style="background:{colour}">{escape(ch)}</span>')
        else:
            cells.append(str(escape(ch)))
    return Markup("".join(cells))


def render_worksheet(sheets: Sequence[dict[str, Any]], answers: bool = False,
                     title: str = "cowscope learn worksheet") -> str:
    """The worksheet as one self-contained HTML string."""
    env = jinja2.Environment(autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    env.filters["strip"] = strip_cells
    template = env.from_string(resources.files(__package__).joinpath("assets", "worksheet.html")
                               .read_text(encoding="utf-8"))
    legend = [(ch, meaning, COLOURS[CHARS.index(ch[0])]) for ch, meaning in LEGEND if ch != "s"]
    return template.render(title=title, sheets=list(sheets), answers=answers, legend=legend)


def write_worksheet(path: str | Path, sheets: Sequence[dict[str, Any]], answers: bool = False,
                    title: str = "cowscope learn worksheet") -> Path:
    """Write the worksheet to `path` (its directory is created)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_worksheet(sheets, answers, title), encoding="utf-8")
    return out
