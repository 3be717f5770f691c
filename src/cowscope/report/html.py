"""Self-contained HTML report: page maps per checkpoint, process tree, timeline, event log, model vs kernel.

Everything the page needs is inside the one file. payload.py builds the data: page data travels
as typed arrays (legend code, map count and PFN per page; event columns), delta-coded or patched
against the previous checkpoint where that helps, deflated and base64-encoded; the page inflates
them with the browser's DecompressionStream and draws them on canvases. Here the jinja2 template
(assets/report.html) gets the metadata, the blob, the CSS and scripts; plotly.js's basic bundle is
inlined as a plain script.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from ..observe.snapshot import Snapshot
from ..observe.verdict import Verdict
from .payload import build_payload


@functools.lru_cache(maxsize=1)
def plotly_js() -> str:
    """plotly.js for inlining, with any ``</script`` escaped (cached).

    The report ships plotly.js's "basic" bundle (scatter, bar; MIT, kept in assets/ at the same
    version as the plotly package's): a quarter of the full bundle, which takes seconds to start in
    a cold browser. Without it, the full bundle from the installed plotly package is used.
    """
    try:
        js = _asset("plotly-basic.min.js")
    except FileNotFoundError:
        from plotly.offline import get_plotlyjs

        js = get_plotlyjs()
    return re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE)


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def render_html(snapshots: Sequence[Snapshot], events: Sequence[Any] | None = None,
                compare: Sequence[Snapshot | None] | None = None, title: str = "cowscope report",
                address_map: dict[int, int] | None = None, notes: Sequence[str] | None = None,
                verdict: Verdict | None = None) -> str:
    """The complete report as one HTML string."""
    meta, blob = build_payload(snapshots, events, compare, title, address_map, notes, verdict)
    env = jinja2.Environment(autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    template = env.from_string(_asset("report.html"))
    meta_json = json.dumps(meta, separators=(",", ":")).replace("<", "\\u003c")  # nothing closes the script
    return template.render(title=title, css=_asset("report.css"), js=_asset("report.js"),
                           verdict_js=_asset("verdict.js"),
                           meta_json=meta_json, blob=blob, plotly=plotly_js())


def write_report(path: str | Path, snapshots: Sequence[Snapshot], events: Sequence[Any] | None = None,
                 compare: Sequence[Snapshot | None] | None = None, title: str = "cowscope report",
                 address_map: dict[int, int] | None = None, notes: Sequence[str] | None = None,
                 verdict: Verdict | None = None) -> Path:
    """Write a self-contained HTML report of `snapshots` (and a second series to compare) to `path`.

    `address_map` maps addresses of the main series to the same objects' addresses in `compare`
    (e.g. each mmap's result on both backends), so mappings placed differently still line up.
    `notes` gives one text per snapshot, shown with its checkpoint (e.g. what the step did and why).
    `verdict` is a model-vs-kernel comparison's (`cowscope.verify.verdict.build`): the page marks
    its differences and greys what it did not compare; without one nothing is marked different.
    """
    out = Path(path)
    if out.parent and not out.parent.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(snapshots, events, compare, title, address_map, notes, verdict), encoding="utf-8")
    return out
