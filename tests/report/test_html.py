"""HTML rendering (report/html.py): the page carries build_payload's data intact, is self-contained,
and escapes what it shows."""

from __future__ import annotations

import re

import numpy as np
import pytest

from cowscope.observe.pages import PRIVATE, SHARED
from cowscope.report.html import render_html, write_report
from cowscope.report.payload import build_payload

from .decode import Payload
from .helpers import mapping, process, snapshot, states
from .scenarios import A, ev, fork_story, kernel_story


@pytest.fixture(scope="module")
def story_html() -> str:
    return render_html(fork_story(), title="fork story <test>")


def test_page_carries_the_payload_intact():
    snaps, cmp = fork_story(), kernel_story()
    meta, blob = build_payload(snaps, compare=cmp, notes=["a", "b", "c"], title="t")
    pl = Payload(render_html(snaps, compare=cmp, notes=["a", "b", "c"], title="t"))
    assert pl.raw == Payload.of(meta, blob).raw
    meta.pop("generated")
    pl.meta.pop("generated")
    assert pl.meta == Payload.of(meta, blob).meta


def test_report_is_self_contained(tmp_path, story_html):
    out = write_report(tmp_path / "sub" / "r.html", fork_story(), title="t")
    text = out.read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", text)
    assert "fork story &lt;test&gt;" in story_html  # title escaped
    assert Payload(story_html).meta["title"] == "fork story <test>"
    tricky = fork_story()
    tricky[0].label = "</script><!--<script>"
    pl = Payload(render_html(tricky))
    assert pl.meta["steps"][0]["label"] == "</script><!--<script>"


def test_large_mapping_stays_small(tmp_path):
    n = 262144
    rng = np.random.default_rng(0)
    pfn = np.arange(1 << 16, (1 << 16) + n)
    st = np.full(n, SHARED, dtype=np.uint8)
    before = snapshot("forked", [process(1, 0, "p", [mapping(A, states(st, pfn=pfn))]),
                                 process(2, 1, "c", [mapping(A, states(st, pfn=pfn))])])
    w = np.sort(rng.choice(n, n // 2, replace=False))
    st2 = st.copy()
    st2[w] = PRIVATE
    cpfn = pfn.copy()
    cpfn[w] = (1 << 20) + np.arange(len(w))
    after = snapshot("wrote", [process(1, 0, "p", [mapping(A, states(st2, pfn=pfn))]),
                               process(2, 1, "c", [mapping(A, states(st2, pfn=cpfn))])],
                     events=[ev(i, 2, "cow-copy", A + int(p) * 4096, int(pfn[p]), int(cpfn[p]))
                             for i, p in enumerate(w)])
    out = write_report(tmp_path / "big.html", [before, after])
    assert out.stat().st_size < 5_000_000
    pl = Payload(out.read_text())
    assert np.array_equal(pl.pages(1, 2, A)["pfn"], cpfn)
