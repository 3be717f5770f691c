"""Terminal output of `run` and `demo` (report/terminal.py), on hand-built snapshots and steps."""

from __future__ import annotations

import io

from rich.console import Console

from cowscope.model.kernel.exec import LIBC_PATH
from cowscope.observe.pages import PAGECACHE, PRIVATE, SHARED
from cowscope.report.demo import SHOWN, Check, Step
from cowscope.report.terminal import demo_pages_table, print_checkpoint, print_demo, print_run

from .helpers import mapping, process, snapshot, states
from .scenarios import A, F, ev, fork_story


def _console(width: int = 120) -> Console:
    return Console(file=io.StringIO(), width=width, highlight=False, markup=False, color_system=None)


def _text(console: Console) -> str:
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_checkpoint_names_itself_counts_events_and_draws_every_process():
    c = _console()
    snap = fork_story()[2]
    snap.events.append(ev(99, 0, "checkpoint", detail="child wrote"))
    print_checkpoint(c, snap, 32, None)
    out = _text(c)
    assert "checkpoint: child wrote (model)" in out
    assert "events since previous: cow-copy 8" in out and "checkpoint 1" not in out
    assert "pid 10 (server) ppid 1" in out and "pid 11 (worker) ppid 10" in out
    assert "/data/f" in out and "ffff" in out
    assert "│      32 │    224 │ ###222" in out  # the copied pages are private, the rest shared by 2


def test_checkpoint_only_filters_mappings():
    c = _console()
    print_checkpoint(c, fork_story()[0], 32, "/data")
    out = _text(c)
    assert "/data/f" in out and "[anon]" not in out


def test_run_prints_legend_every_checkpoint_and_the_outcome():
    c = _console()
    print_run(c, fork_story(), "SIGSEGV in pid 11", 32, None)
    out = _text(c)
    assert out.startswith(". not present")
    assert [line.split("checkpoint: ")[1].split(" (")[0] for line in out.splitlines() if "checkpoint: " in line] \
        == ["filled", "forked", "child wrote"]
    assert out.rstrip().endswith("scenario stopped: SIGSEGV in pid 11")
    c = _console()
    print_run(c, fork_story()[:1], None, 32, None)
    assert "scenario stopped" not in _text(c)


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
