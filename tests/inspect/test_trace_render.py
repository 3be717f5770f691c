"""`cowscope trace`'s summary shows process names, mappings and code sites as plain text: a name
with escape sequences or rich markup reaches the terminal as visible characters."""

from __future__ import annotations

import io
from collections import Counter

from rich.console import Console

from cowscope.inspect.attribute import ProcessRow, TraceSummary
from cowscope.inspect.trace_render import render_summary

HOSTILE = "\x1b[2J[/]x[red]hidden"


def test_hostile_names_are_shown_not_obeyed() -> None:
    s = TraceSummary(0)
    s.kinds = Counter({"cow-copy": 3})
    s.processes = {7: ProcessRow(7, HOSTILE, "child", Counter({"cow-copy": 3}), Counter({0: 3}))}
    s.by_mapping = Counter({f"/tmp/{HOSTILE}": 3})
    s.by_site = Counter({f"{HOSTILE}+0x10": 3})
    s.by_cause = Counter({"write": 3})
    s.notes = [f"note about {HOSTILE}"]
    out = io.StringIO()
    render_summary(s, Console(file=out, width=300, color_system=None, force_terminal=False))
    text = out.getvalue()
    assert "\x1b" not in text
    shown = "\\x1b[2J[/]x[red]hidden"
    assert text.count(shown) == 4, text  # the process, the mapping, the site, the note
