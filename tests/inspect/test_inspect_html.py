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
