"""`cowscope run SCENARIO.py --on both --html`: the kernel's own events in the report, beside the
model's, placed on the model's pages (cli/both.py, report/events.py, assets/report.js)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import pytest

from .decode import Payload

pytestmark = pytest.mark.kernel

CHILD_WRITES = '''
PAGE = 4096


def scenario(m):
    p = m.spawn("parent")
    a = p.mmap(4 * PAGE)
    p.fill(a, 4 * PAGE, 0x41)
    m.checkpoint("filled")
    c = p.fork()
    m.checkpoint("forked")
    c.write(a + PAGE, b"x")
    m.checkpoint("child wrote page 1")
'''
READY = "window.cowscopeReport && (cowscopeReport.ready || document.body.dataset.ready === 'error')"
#: Hover page `page` of the mapping at `start` of process `pid` on its kernel pane; the tooltip's text.
HOVER_KERNEL = """((pid, start, page) => {
    const box = [...document.querySelectorAll('.mapping')]
        .find(b => +b.dataset.pid === pid && +b.dataset.start === start);
    const c = box.querySelectorAll('canvas.pagemap')[1];
    const r = c.getBoundingClientRect(), cs = c.height;  // one row of 4 cells
    c.dispatchEvent(new MouseEvent('mousemove', { clientX: r.left + (page + 0.5) * cs * r.width / c.width,
                                                  clientY: r.top + 0.5 * r.height }));
    return document.getElementById('tooltip').textContent; })"""


def _columns(pl: Payload, side: str) -> dict[str, np.ndarray]:
    e = pl.meta[side]
    cols = {k: pl.col(v) for k, v in e.items() if isinstance(v, list) and len(v) == 4 and isinstance(v[0], int)}
    cols["kind_name"] = np.asarray([e["kinds"][k] for k in cols["kind"]], dtype=object)
    return cols


def test_the_kernels_events_are_on_the_models_pages(tmp_path, capsys) -> None:
    """The child's write after the fork is a cow-copy on both sides, at the same (model) page, in
    the same step; the kernel's copy has its own pid and address, an unknown old frame (not 0) and
    its new frame; the kernel pane's page detail names it; the event log lists both sides."""
    from cowscope.cli.both import run_both
    from cowscope.linux.tracefs import tracing_problem

    if tracing_problem() is not None:
        pytest.skip(f"the kernel's events need tracefs: {tracing_problem()}")
    f = tmp_path / "child.py"
    f.write_text(CHILD_WRITES)
    html = tmp_path / "child.html"
    assert run_both(argparse.Namespace(scenario=str(f), html=str(html), allocator=None)) == 0, capsys.readouterr()
    pl = Payload(html.read_text(encoding="utf-8"))
    model, kernel = _columns(pl, "events"), _columns(pl, "cmp_events")
    step = 2
    child = pl.meta["steps"][step]["processes"][1]
    mcopy = (model["step"] == step) & (model["kind_name"] == "cow-copy")
    assert list(model["pid"][mcopy]) == [child["pid"]]
    page1 = int(model["addr"][mcopy][0])
    buf = next(m for m in child["mappings"] if m["start"] <= page1 < m["end"])
    assert page1 == buf["start"] + 4096  # the model's copy: page 1 of the buffer
    kcopy = (kernel["step"] == step) & (kernel["kind_name"] == "cow-copy")
    assert list(kernel["mpid"][kcopy]) == [child["pid"]] and list(kernel["maddr"][kcopy]) == [page1]
    kaddr = int(kernel["addr"][kcopy][0])
    assert list(kernel["pid"][kcopy]) == [child["cmp"]["pid"]] and kaddr == buf["cmp"]["start"] + 4096
    assert kernel["old_pfn"][kcopy][0] == -2 and kernel["new_pfn"][kcopy][0] > 0  # unknown, not 0
    # the kernel's events of the buffer, per step: zero-fills by the parent, the child's one copy
    on_buf = kernel["mapping"] == pl.meta["mapping_names"].index(buf["label"])
    assert [(int(s), k) for s, k in zip(kernel["step"][on_buf], kernel["kind_name"][on_buf], strict=True)] \
        == [(0, "zero-fill")] * 4 + [(2, "cow-copy")]
    assert pl.meta["steps"][step]["cmp"]["kinds"].get("cow-copy") == 1
    _in_browser(html, child["pid"], buf["start"], kaddr)


def _in_browser(html: Path, pid: int, start: int, kaddr: int) -> None:
    from cowscope.report.browser import Browser, find_chromium

    if find_chromium() is None:
        return
    with Browser() as b:
        b.open(html.resolve().as_uri(), READY)
        assert b.evaluate("document.body.dataset.ready") == "1" and b.evaluate("cowscopeReport.errors") == []
        tip = b.evaluate(f"{HOVER_KERNEL}({pid}, {start}, 1)")
        assert f"at {hex(kaddr)}" in tip and re.search(
            rf"last change on the kernel: #\d+ copied by pid \d+ at {hex(kaddr)}, PFN unknown → 0x[0-9a-f]+", tip), tip
        assert "\nlast change: " not in tip  # the model's last event is the model pane's
        b.evaluate("""(() => { const s = document.getElementById('f-side'); s.value = 'kernel';
            s.dispatchEvent(new Event('change')); })()""")
        n = json.loads(b.evaluate("JSON.stringify(cowscopeReport.meta.cmp_events.n)"))
        assert b.evaluate("+document.getElementById('event-count').dataset.matching") == n > 0
        sides = b.evaluate("[...document.querySelectorAll('#event-table tbody tr')].map(r => r.dataset.side)")
        assert set(sides) == {"kernel"}
