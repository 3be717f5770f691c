"""Terminal output of `demo` (report/terminal.py), on hand-built steps."""

from __future__ import annotations

import io

from rich.console import Console

from cowscope.model.kernel.exec import LIBC_PATH
from cowscope.observe.pages import PAGECACHE, PRIVATE, SHARED
from cowscope.report.demo import SHOWN, Check, Step
from cowscope.report.terminal import demo_pages_table, print_demo

from .helpers import mapping, process, snapshot, states
from .scenarios import A, F


def _console(width: int = 120) -> Console:
    return Console(file=io.StringIO(), width=width, highlight=False, markup=False, color_system=None)


def _text(console: Console) -> str:
    return console.file.getvalue()  # type: ignore[attr-defined]


def _demo_step(ok: bool) -> Step:
    heap = mapping(A, states([PRIVATE] * 4 + [SHARED] * 4), path="[heap]")
    libc = mapping(F, states([PAGECACHE] * 2, mapcount=[1, 1]), perms="r-xp", path=LIBC_PATH)
    other = mapping(F + (1 << 20), states([PRIVATE] * 2), path="/tmp/not-shown")
    snap = snapshot("s", [process(10, 1, "server", [heap, libc, other]), process(11, 10, "child", [heap])])
    return Step("1. A step", "what happened", [Check("a claim", ok, "the figures")], snap, pids=(10,))


def test_demo_table_shows_the_named_mappings_of_the_step_processes():
    c = _console()
    c.print(demo_pages_table(_demo_step(True), 16, SHOWN))
    rows = _text(c).splitlines()
    assert rows[0].split() == ["pid", "mapping", "Rss", "Pss", "Priv", "Shrd", "pages"]
    assert [r.split() for r in rows[1:]] == [["10", "[heap]", "32", "24", "16", "16", "####2222"],
                                             ["10", "libc", "code", "8", "8", "8", "0", "ff"]]


def test_demo_prints_each_step_and_the_tally():
    c = _console()
    failed = print_demo(c, "ptmalloc", [_demo_step(True), _demo_step(False)], 16, SHOWN)
    out = _text(c)
    assert failed == 1
    assert "malloc: ptmalloc" in out and out.count("1. A step") == 2
    assert "✓ a claim  — the figures" in out and "✗ a claim" in out
    assert out.rstrip().endswith("1/2 checks hold")
