"""`cowscope inspect --html`: the samples of a real tree become the shared HTML report."""

from __future__ import annotations

from forktree import PAGE, TreePlan, WorkerPlan

from cowscope.cli.main import main
from cowscope.inspect.snapshots import snapshot_of
from cowscope.observe.pages import PAGECACHE, PRIVATE, SHARED

PLAN = TreePlan(touched=16, tail=0, master_rewrites=0, workers=[WorkerPlan(copy_from=0, copies=3)])


def test_snapshot_of_a_live_tree_has_exact_page_states(make_tree) -> None:
    t = make_tree(PLAN)
    w = t.workers[0]
    snap = snapshot_of([(t.master, 0, "master"), (w, t.master, "worker")], "now")
    assert snap is not None and {p.pid for p in snap.processes} == {t.master, w}
    region = next(mv for mv in snap.process(w).mappings if mv.vma.start <= t.r_addr < mv.vma.end)
    first = (t.r_addr - region.vma.start) // PAGE
    states = region.pages.state[first:first + 16].tolist()
    assert states == [PRIVATE] * 3 + [SHARED] * 13
    assert region.pages.mapcount[first + 3] == 2
    libc = [mv for mv in snap.process(w).mappings if "libc" in mv.vma.path and mv.pages is not None]
    assert any((mv.pages.state == PAGECACHE).any() for mv in libc)


def test_inspect_html_writes_every_sample(make_tree, tmp_path, capsys) -> None:
    t = make_tree(PLAN)
    out = tmp_path / "inspect.html"
    assert main(["inspect", "--tree", str(t.master), "--watch", "0.05", "--count", "2", "--max-duty", "1",
                 "--html", str(out)]) == 0
    html = out.read_text()
    assert "<html" in html and str(t.workers[0]) in html
    assert "sample 0" in html and "sample 1" in html  # one report step per sample


def _meta(html: str) -> dict:
    import json
    import re

    return json.loads(re.search(r'<script type="application/json" id="meta">(.*?)</script>', html, re.S).group(1))


CLASSED = TreePlan(touched=32, tail=8, master_rewrites=2, workers=[WorkerPlan(copy_from=4, copies=5, new_in_r=3),
                                                                   WorkerPlan(copy_from=20, copies=2)])


def test_inspect_html_carries_the_inspectors_classes(make_tree, tmp_path, capsys) -> None:
    t = make_tree(CLASSED)
    out = tmp_path / "classes.html"
    assert main(["inspect", "--tree", str(t.master), "--html", str(out)]) == 0
    meta = _meta(out.read_text())
    assert [c["char"] for c in meta["class_legend"]] == list(".0s=~c+#-")
    step = meta["steps"][-1]
    procs = {p["pid"]: p for p in step["processes"]}
    w = procs[t.workers[0]]
    assert w["classes"]["copied_kb"] >= 5 * 4 and w["classes"]["new_kb"] >= 3 * 4
    assert set(procs[t.master]["classes"]) == {"shared_in_tree_kb"}
    region = next(m for m in w["mappings"] if m["start"] <= t.r_addr < m["end"])
    assert region["classes"] is not None
    assert meta["events"]["n"] == 0


def test_inspect_html_in_a_browser(make_tree, tmp_path) -> None:
    import pytest

    from cowscope.report.browser import Browser, find_chromium

    if find_chromium() is None:
        pytest.skip("chromium not installed (Debian: apt-get install -y chromium)")
    t = make_tree(CLASSED)
    out = tmp_path / "classes.html"
    assert main(["inspect", "--tree", str(t.master), "--watch", "0.05", "--count", "2", "--max-duty", "1",
                 "--html", str(out)]) == 0
    ready = "window.cowscopeReport && (cowscopeReport.ready || document.body.dataset.ready === 'error')"
    with Browser() as b:
        b.open(out.resolve().as_uri(), ready)
        assert b.evaluate("document.body.dataset.ready") == "1", b.evaluate("cowscopeReport.errors")
        heads = b.evaluate("[...document.querySelectorAll('#tree-table th')].map(th => th.textContent)")
        assert "copied" in heads and "released" in heads and "copied, same bytes" in heads
        copied = b.evaluate(f"document.querySelector('tr[data-pid=\"{t.workers[0]}\"] td[data-class=\"copied_kb\"]')"
                            ".textContent")
        assert copied.endswith("kB") or copied.endswith("MiB")
        assert b.evaluate("document.getElementById('events-section').hidden") is True
        assert b.evaluate("!!document.getElementById('class-legend')") is True
        assert b.evaluate("document.getElementById('colour-by-label').hidden") is False
        region = (f"[...document.querySelectorAll('.mapping[data-pid=\"{t.workers[0]}\"]')]"
                  f".find(m => Number(m.dataset.start) <= {t.r_addr} && {t.r_addr} < Number(m.dataset.start) + "
                  "4096 * Number(m.dataset.npages))")
        counts = b.evaluate(f"JSON.parse({region}.querySelector('.class-counts').dataset.classes)")
        assert counts["copied"] >= 5 and counts["new since fork"] >= 3
        names = b.evaluate("[...document.querySelectorAll('#timeline .legendtext')].map(e => e.textContent)")
        assert any(n.endswith("copied") for n in names) and any(n.endswith("released") for n in names)
