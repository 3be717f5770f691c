"""`cowscope run SCENARIO.py --on both` (cli/both.py): the scenario on the model and the kernel."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from rich.cells import cell_len

from .helpers import ROOT, colours, cowscope, in_terminal, without_escapes

pytestmark = pytest.mark.kernel


def test_example_agrees_and_writes_a_report(tmp_path) -> None:
    html = tmp_path / "both.html"
    r = cowscope("run", str(ROOT / "scenarios" / "fork_basics.py"), "--on", "both", "--html", str(html))
    assert r.returncode == 0, r.stderr
    assert "agree · 0 differences" in r.stdout and "never compared (by design)" in r.stdout
    assert html.stat().st_size > 10_000 and "report written to" in r.stdout


def test_a_difference_is_exit_1_and_a_bad_file_exit_2(tmp_path) -> None:
    differ = tmp_path / "differ.py"
    differ.write_text("def scenario(m):\n    p = m.spawn('P')\n    a = p.mmap(4096)\n"
                      "    p.fill(a, 1, 1 if m.backend == 'linux' else 2)\n    p.read(a, 1)\n")
    r = cowscope("run", str(differ), "--on", "both")
    assert r.returncode == 1 and "DIFFER ·" in r.stdout
    r = cowscope("run", str(tmp_path / "missing.py"), "--on", "both")
    assert r.returncode == 2 and "cowscope run:" in r.stderr and "Traceback" not in r.stderr


PAGES_DIFFER = ("def scenario(m):\n    p = m.spawn('P')\n    a = p.mmap(8 * 4096)\n    p.fill(a, 8 * 4096, 1)\n"
                "    m.checkpoint('filled')\n    c = p.fork()\n    if m.backend == 'linux':\n"
                "        c.write(a + 4096, b'x')\n    m.checkpoint('forked')\n")


def test_differences_fit_narrow_terminals_and_pipes(tmp_path) -> None:
    """The differing region drawn twice with its figures: plain and 80 columns when piped, every
    line within the terminal at 40 and 120 columns, no colour with NO_COLOR."""
    f = tmp_path / "differ.py"
    f.write_text(PAGES_DIFFER)
    r = cowscope("run", str(f), "--on", "both")
    assert r.returncode == 1 and "\x1b[" not in r.stdout, r.stdout + r.stderr
    assert "≠ p1: model S2 | linux X" in r.stdout and "DIFFER · " in r.stdout.splitlines()[0]
    assert [ln for ln in r.stdout.splitlines() if cell_len(ln) > 80] == []
    for columns in (40, 120):
        out = in_terminal("run", str(f), "--on", "both", columns=columns)
        text = without_escapes(out)
        assert colours(out) and " ".join(text.split()).startswith(r.stdout.splitlines()[0])
        assert [ln for ln in text.splitlines() if cell_len(ln) > columns] == [], text
        assert "≠ p1: model S2 | linux X" in text
    assert colours(in_terminal("run", str(f), "--on", "both", columns=80, env={"NO_COLOR": "1"})) == []


SAME_OUTCOME = {
    "double free": "    a = p.malloc(32)\n    p.free(a)\n    m.checkpoint('freed')\n    p.free(a)\n",
    "segfault": "    a = p.mmap(4096, 'r')\n    p.write(a + 8, b'x')\n",
    "syscall error": "    p.munmap(p.mmap(8192) + 1, 4096)\n",
    "call on a dead process": "    c = p.fork()\n    c.exit(3)\n    c.read(0, 1)\n",
}


@pytest.mark.parametrize("case", list(SAME_OUTCOME))
def test_the_same_outcome_on_both_is_no_difference(tmp_path, case: str) -> None:
    """Compared: the outcome's kind and message (process by name, region-relative address), not
    pids, raw addresses, the backends' wording or cowscope's own frames."""
    f = tmp_path / "s.py"
    f.write_text("def scenario(m):\n    p = m.spawn('P')\n" + SAME_OUTCOME[case])
    r = cowscope("run", str(f), "--on", "both")
    assert r.returncode == 2, r.stdout + r.stderr  # it failed, the same way on both
    assert "agree · 0 differences" in r.stdout and "(the same outcome)" in r.stdout and "DIFFER ·" not in r.stdout


def test_a_different_outcome_is_a_difference(tmp_path) -> None:
    f = tmp_path / "s.py"
    f.write_text("def scenario(m):\n    p = m.spawn('P')\n    a = p.mmap(4096, 'r')\n"
                 "    p.write(a + (8 if m.backend == 'linux' else 4096 + 8), b'x')\n")
    r = cowscope("run", str(f), "--on", "both")
    assert r.returncode == 1 and "how the scenario ended" in r.stdout and "DIFFER ·" in r.stdout


THREE_SHARERS = '''
PAGE = 4096


def scenario(m):
    """Three sharers: fork twice, each side writes page 0, the children exit."""
    p = m.spawn("parent")
    a = p.mmap(3 * PAGE)
    p.fill(a, 3 * PAGE, 0x41)
    m.checkpoint("filled")
    c1, c2 = p.fork(), p.fork()
    m.checkpoint("forked twice")
    c1.write(a, b"1")
    c2.write(a, b"2")
    p.write(a, b"p")
    m.checkpoint("each wrote page 0")
    for c in (c1, c2):
        c.exit(0)
        p.wait(c)
    m.checkpoint("children gone")
'''
TERMINAL = re.compile(r"model vs kernel: (?:agree|DIFFER) · (\d+) differences?, (\d+) excluded")
READY = "window.cowscopeReport && (cowscopeReport.ready || document.body.dataset.ready === 'error')"
MAGENTA_PIXELS = """[...document.querySelectorAll('canvas.pagemap')].reduce((s, c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] === 255 && d[i + 1] === 0 && d[i + 2] === 255) n++;
    return s + n; }, 0)"""


def _meta(html: Path) -> dict:
    text = html.read_text(encoding="utf-8")
    found = re.search(r'<script type="application/json" id="meta">(.*?)</script>', text, re.S)
    assert found, "the report carries its metadata"
    return json.loads(found.group(1))


def _marks(meta: dict) -> set[tuple[int, int, int, bool]]:
    """(step, pid, page address, counted) of every difference mark on the report's page maps."""
    diffs = meta["verdict"]["differences"]
    return {(k, p["pid"], m["start"] + j * 4096, diffs[i]["why"] < 0)
            for k, s in enumerate(meta["steps"]) for p in s["processes"] for m in p["mappings"]
            for j, i in m["verdict"]["marks"]}


def _in_browser(html: Path) -> tuple[list[int], str, list[int]]:
    """In headless Chromium: magenta pixels on the page maps at each checkpoint, the header's verdict
    and the differences the step list marks per checkpoint (([], "", []) without Chromium)."""
    from cowscope.report.browser import Browser, find_chromium

    if find_chromium() is None:
        return [], "", []
    with Browser() as b:
        b.open(html.resolve().as_uri(), READY)
        assert b.evaluate("document.body.dataset.ready") == "1" and b.evaluate("cowscopeReport.errors") == []
        b.evaluate("document.getElementById('show-empty').click()")  # every mapping, folded ones too
        magenta = []
        for k in range(b.evaluate("cowscopeReport.meta.steps.length")):
            b.evaluate(f"cowscopeReport.setStep({k})")
            magenta.append(b.evaluate(MAGENTA_PIXELS))
        head = b.evaluate("document.querySelector('#verdict .verdict-line').textContent")
        steps = b.evaluate("[...document.querySelectorAll('#step-list button')].map(b => +b.dataset.differences)")
        return magenta, head, steps


def test_three_sharers_report_says_what_the_terminal_says(tmp_path) -> None:
    """0 differences: the report marks no page, greys the agent's image, and counts as the terminal."""
    f = tmp_path / "three.py"
    f.write_text(THREE_SHARERS)
    html = tmp_path / "three.html"
    r = cowscope("run", str(f), "--on", "both", "--html", str(html))
    assert r.returncode == 0, r.stdout + r.stderr
    counted, excluded = map(int, TERMINAL.search(r.stdout).groups())
    meta = _meta(html)
    assert (meta["verdict"]["counted"], meta["verdict"]["excluded"]) == (counted, excluded) == (0, excluded)
    assert {m for m in _marks(meta) if m[3]} == set()
    libc = [m for p in meta["steps"][-1]["processes"] for m in p["mappings"] if "libc" in m["path"]]
    assert libc and all(m["verdict"]["compared"] == [] for m in libc)
    assert meta["verdict"]["reasons"][libc[0]["verdict"]["around"]].startswith("mappings outside the scenario's")
    region = [m for p in meta["steps"][2]["processes"] for m in p["mappings"] if m["verdict"]["compared"]]
    assert len(region) == 3 and all(m["verdict"]["compared"] == [[0, 3, "parent#1"]] for m in region)
    magenta, head, steps = _in_browser(html)
    assert all(n == 0 for n in magenta) and all(n == 0 for n in steps)
    assert not head or f"agree · 0 differences, {excluded} excluded" in head
    assert not head or head.startswith(r.stdout.splitlines()[0])  # the terminal's first line, word for word


def test_a_wrong_model_rule_is_marked_on_exactly_its_pages(tmp_path, monkeypatch, capsys) -> None:
    """A model that never reuses a page on a write fault: the parent's last write to page 0 copies
    in the model, reuses on the kernel. The report marks that page, at that checkpoint, and no other."""
    import argparse

    from cowscope.cli.both import run_both
    from cowscope.model.mm import memory

    if os.geteuid() != 0:
        pytest.skip("PFN identity needs root")
    monkeypatch.setattr(memory, "wp_can_reuse_anon_folio", lambda *a: False)
    f = tmp_path / "three.py"
    f.write_text(THREE_SHARERS)
    html = tmp_path / "wrong.html"
    assert run_both(argparse.Namespace(scenario=str(f), html=str(html), allocator=None)) == 1
    out = capsys.readouterr().out
    counted, excluded = map(int, TERMINAL.search(out).groups())
    meta = _meta(html)
    v = meta["verdict"]
    assert (v["counted"], v["excluded"]) == (counted, excluded) == (1, excluded)
    parent = meta["steps"][2]["processes"][0]
    region = next(m for m in parent["mappings"] if m["verdict"]["compared"])
    assert {m for m in _marks(meta) if m[3]} == {(2, parent["pid"], region["start"], True)}
    assert [s["verdict"]["counted"] for s in meta["steps"]] == [0, 0, 1, 0, 0]
    magenta, head, steps = _in_browser(html)
    if magenta:  # the mark is drawn on both panes of that page, at that checkpoint only
        assert magenta[2] > 0 and [n for k, n in enumerate(magenta) if k != 2] == [0] * 4
        assert f"DIFFER · 1 difference, {excluded} excluded" in head and head.startswith(out.splitlines()[0])
        assert steps[2] >= 1 and [n for k, n in enumerate(steps) if k != 2] == [0] * 4  # (+ 1 with events)


def test_a_run_that_ends_early_on_the_kernel_still_gets_its_report(tmp_path) -> None:
    """The kernel's run stops at a SIGSEGV the model does not have: fewer kernel checkpoints. The
    report draws the model's, the kernel's where it has them, and lists the differences."""
    f = tmp_path / "s.py"
    f.write_text("def scenario(m):\n    p = m.spawn('P')\n    a = p.mmap(4096, 'r')\n    m.checkpoint('mapped')\n"
                 "    if m.backend == 'linux':\n        p.write(a, b'x')\n    m.checkpoint('wrote')\n")
    html = tmp_path / "r.html"
    r = cowscope("run", str(f), "--on", "both", "--html", str(html))
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
    counted, excluded = map(int, TERMINAL.search(r.stdout).groups())
    meta = _meta(html)
    assert [s["label"] for s in meta["steps"]] == ["mapped", "wrote", "end"]
    assert ["cmp" in s for s in meta["steps"]] == [True, False, False]
    v = meta["verdict"]
    assert (v["counted"], v["excluded"]) == (counted, excluded) and counted >= 2
    assert any(d["text"].startswith("how the scenario ended") and d["shown"] == "" for d in v["differences"])
