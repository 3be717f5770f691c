"""A real model scenario (spawn, mmap, fill, fork, child writes) reported end to end."""

from __future__ import annotations

import numpy as np
import pytest

from cowscope.model import Machine
from cowscope.observe.pages import PRIVATE, SHARED
from cowscope.observe.snapshot import take
from cowscope.report.browser import Browser, find_chromium
from cowscope.report.html import render_html, write_report
from cowscope.report.payload import tree_total

from .decode import Payload

NPAGES = 64
WRITTEN = 8


@pytest.fixture(scope="module")
def story():
    m = Machine()
    p = m.spawn("server")
    a = p.mmap(NPAGES * 4096)
    p.fill(a, NPAGES * 4096, 0x41)
    snaps, mark = [], 0

    def snap(label: str) -> None:
        nonlocal mark
        snaps.append(take(m, label, events=list(m.events.since(mark))))
        mark = len(m.events)

    snap("filled")
    c = p.fork()
    snap("forked")
    c.write(a, b"x" * (WRITTEN * 4096))
    snap("child wrote")
    return snaps, p.pid, c.pid, a


def _vma(snapshot, pid, addr):
    return next(mv for mv in snapshot.process(pid).mappings if mv.vma.start <= addr < mv.vma.end)


def test_model_story_payload(story):
    snaps, ppid, cpid, a = story
    pl = Payload(render_html(snaps, title="model story"))
    meta = pl.meta
    assert [s["label"] for s in meta["steps"]] == ["filled", "forked", "child wrote"]
    mv = _vma(snaps[2], cpid, a)
    first = (a - mv.vma.start) // 4096
    got = pl.pages(2, cpid, mv.vma.start)
    assert np.array_equal(got["pfn"], mv.pages.pfn)
    assert list(got["code"][first:first + WRITTEN]) == [2] * WRITTEN  # '#': private copies
    assert set(got["code"][first + WRITTEN:first + NPAGES]) == {3}  # '2': still shared with the parent
    assert set(mv.pages.state[first:first + WRITTEN]) == {PRIVATE}
    assert set(mv.pages.state[first + WRITTEN:first + NPAGES]) == {SHARED}
    cols = pl.events()
    label = f"{mv.vma.start:x}-{mv.vma.end:x} [anon]"
    in_buf = (cols["addr"] >= a) & (cols["addr"] < a + NPAGES * 4096)
    copies = (cols["kind"] == meta["events"]["kinds"].index("cow-copy")) & in_buf
    assert int(np.sum(copies)) == WRITTEN  # (outside the buffer the parent also copies a stack page at fork)
    assert set(cols["step"][copies]) == {2} and set(cols["pid"][copies]) == {cpid}
    assert {meta["mapping_names"][i] for i in cols["mapping"][copies]} == {label}
    # the child's new frames are the events' new PFNs
    assert sorted(cols["new_pfn"][copies]) == sorted(mv.pages.pfn[first:first + WRITTEN])
    total = tree_total(snaps[2])
    assert total["method"] == "distinct frames"
    assert meta["steps"][2]["total"]["total_kb"] == total["total_kb"] < total["rss_sum_kb"]


@pytest.mark.skipif(find_chromium() is None, reason="chromium not installed (Debian: apt-get install -y chromium)")
def test_model_story_in_browser(story, tmp_path):
    snaps, ppid, cpid, a = story
    path = write_report(tmp_path / "model.html", snaps, title="model story")
    with Browser() as b:
        b.open(path.resolve().as_uri(), "window.cowscopeReport && (cowscopeReport.ready || "
                                         "document.body.dataset.ready === 'error')")
        assert b.evaluate("document.body.dataset.ready") == "1"
        assert b.console_errors == [] and b.evaluate("cowscopeReport.errors") == []
        start = _vma(snaps[2], cpid, a).vma.start
        sel = f'.mapping[data-pid="{cpid}"][data-start="{start}"] .changed'
        assert b.evaluate(f"+document.querySelector('{sel}').dataset.changed") == WRITTEN
        pfn = int(_vma(snaps[2], cpid, a).pages.pfn[(a - start) // 4096])
        text = b.evaluate(f"cowscopeReport.lastEventText(2, {cpid}, {a}, {pfn})")
        assert f"copied by pid {cpid} at {a:#x}" in text
