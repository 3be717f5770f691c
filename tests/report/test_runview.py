"""`cowscope run`'s checkpoints (report/runview.py, tree.py, changes.py, layout.py) on hand-built
snapshots: the tree line's figures, which mappings fold, the changes and their causes, widths."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from rich.cells import cell_len
from rich.console import Console

from cowscope.observe.pages import NOT_PRESENT, PAGECACHE, PRIVATE, SHARED, ZERO
from cowscope.report import layout
from cowscope.report.runview import RunView, print_checkpoint, print_run, render_snapshot

from .helpers import mapping, process, snapshot, states
from .scenarios import WRITTEN, A, F, N, ev, fork_story


def _console(width: int = 120) -> Console:
    return Console(file=io.StringIO(), width=width, highlight=False, markup=False, color_system=None)


def _text(console: Console) -> str:
    return console.file.getvalue()  # type: ignore[attr-defined]


def _run(view: RunView, width: int = 120, story: list | None = None) -> str:
    c = _console(width)
    print_run(c, story or fork_story(), None, view)
    return _text(c)


def _checkpoints(out: str) -> list[str]:
    """The output of each checkpoint, from its rule line to the next."""
    parts = re.split(r"(?m)^─* ?(?=checkpoint \d+/\d+: )", out)
    return parts[1:]


def _rows(section: str, pid: int) -> list[str]:
    """The lines of one process in a checkpoint's output, from its title to the next title."""
    lines = section.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"{pid} "))
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^\d+ ", lines[i])), len(lines))
    return lines[start:end]


def test_tree_line_counts_each_frame_once_and_the_copies_since_the_previous_checkpoint():
    first, forked, wrote = _checkpoints(_run(RunView()))
    rss = (N + 4) * 4  # the anon pages and the file's four
    assert f"1 process: RSS sum {rss} kB, really used {rss} kB\n" in first
    assert f"2 processes: RSS sum {2 * rss} kB, really used {rss} kB, copied since previous 0 kB" in forked
    assert f"11 worker ← 10: RSS {rss}, shared with parent {rss}, copied 0 (+0), new 0" in forked
    copied = WRITTEN * 4
    assert f"really used {rss + copied} kB, copied since previous {copied} kB" in wrote
    assert f"11 worker ← 10: RSS {rss}, shared with parent {rss - copied}, copied {copied} (+{copied}), new 0" in wrote
    assert f"10 server: RSS {rss}, shared with its tree {rss - copied}, own {copied}" in wrote


def test_without_events_the_copies_are_the_frames_replaced():
    story = fork_story()
    for s in story:
        s.events = []
    wrote = _checkpoints(_run(RunView(), story=story))[2]
    assert f"copied {WRITTEN * 4} (+{WRITTEN * 4})" in wrote  # the worker's frames differ from the parent's before
    assert "10 server: RSS 272, shared with its tree 240, own 32\n" in wrote  # the parent kept its frames


def test_without_pfns_the_classes_are_inferred_and_nothing_is_counted_once():
    story = fork_story()
    for s in story:
        for p in s.processes:
            for m in p.mappings:
                m.pages = states(m.pages.state, m.pages.mapcount, np.zeros(len(m.pages), dtype=np.int64))
    wrote = _checkpoints(_run(RunView(), story=story))[2]
    assert "really used unknown (no PFNs; PSS sum" in wrote
    assert "shared with parent ~" in wrote


def test_image_mappings_fold_unless_their_pages_moved():
    story = fork_story()
    image = {10: frozenset({(A, A + (N + 8) * 4096, "rw-p", ""), (F, F + 4 * 4096, "r--p", "/data/f")})}
    first, forked, wrote = _checkpoints(_run(RunView(images=image), story=story))
    assert "[anon]" not in first and "f, 1 anon: 272 kB resident, no page moved (2 mappings)" in first
    assert "[anon]" not in forked  # shared now, but no page moved
    # the worker's copies moved its pages; the parent kept its frames (they are only not shared now)
    shown = [ln.split()[0] for ln in wrote.splitlines() if re.match(r"^\d+ (server|worker)", ln) or "rw-p [anon]" in ln]
    assert shown == ["10", "11", "7f0000000000"]
    assert "f: 16 kB resident, no page moved (1 mapping)" in wrote
    everything = _run(RunView(images=image, all_mappings=True), story=story)
    assert everything.count("/data/f") == 5 and "no page moved" not in everything


def test_only_filters_mappings():
    out = _run(RunView(only="/data"))
    assert "/data/f" in out and "[anon]" not in out and "no page moved" not in out


def test_changes_list_runs_with_their_causes():
    out = _run(RunView(changes=True))
    first, forked, wrote = _checkpoints(out)
    assert "the first checkpoint, every page is new (68 events since the start)" in first
    assert "11 is new: compared with 10's pages at the previous checkpoint" in forked
    assert [ln.split() for ln in forked.splitlines() if " → 2" in ln] \
        == [["10", "7f0000000000", "[anon]", f"p0-{N - 1}", "#", "→", "2", "fork"]]
    lines = [ln.split() for ln in wrote.splitlines() if " → " in ln and ln.startswith("  ")]
    pages = f"p0-{WRITTEN - 1}"
    assert lines == [["10", "7f0000000000", "[anon]", pages, "2", "→", "#", "cow-copy", "in", "pid", "11"],
                     ["11", "7f0000000000", "[anon]", pages, "2", "→", "#", "cow-copy"]]


def test_changes_say_when_no_event_explains_them():
    story = fork_story()
    for s in story:
        s.events = []
    wrote = _checkpoints(_run(RunView(changes=True), story=story))[2]
    assert "(no events recorded: causes unknown)" in wrote
    assert f"p0-{WRITTEN - 1} 2 → #  event unknown" in wrote


def test_a_sharing_partner_exiting_is_the_cause():
    story = fork_story()
    parent = story[1].processes[0]
    alone = states([PRIVATE] * N + [NOT_PRESENT] * 4 + [ZERO] * 4, pfn=parent.mappings[0].pages.pfn,
                   mapcount=[1] * N + [0] * 8)
    gone = snapshot("child exited", [process(10, 1, "server", [mapping(A, alone), parent.mappings[1]])],
                    events=[ev(99, 11, "exit")])
    out = _checkpoints(_run(RunView(changes=True), story=[story[0], story[1], gone]))[2]
    assert f"p0-{N - 1} 2 → #  exit of pid 11" in out


def test_checkpoint_counts_events_without_the_markers():
    c = _console()
    snap = fork_story()[2]
    snap.events.append(ev(99, 0, "checkpoint", detail="child wrote"))
    print_checkpoint(c, snap, RunView(), fork_story()[1], "3/3: ")
    out = _text(c)
    assert "checkpoint 3/3: child wrote (model)" in out
    assert "events since previous: cow-copy 8\n" in out


def test_run_prints_the_legend_and_the_outcome():
    c = _console()
    print_run(c, fork_story(), "SIGSEGV in pid 11", RunView())
    out = _text(c)
    assert out.startswith(". not present")
    assert out.rstrip().endswith("scenario stopped: SIGSEGV in pid 11")


def _big_story() -> list:
    """One process with a long library path and huge figures."""
    big = states([PRIVATE] * 3000 + [SHARED] * 3000, mapcount=[1] * 3000 + [3] * 3000)
    lib = states([PAGECACHE] * 40, mapcount=[7] * 40)
    path = "/usr/lib/x86_64-linux-gnu/some/very/deep/directory/libverylongname-with-version.so.1.2.3"
    return [snapshot("big", [process(4242, 1, "a-process-with-a-long-name-indeed", [
        mapping(A, big), mapping(F, lib, perms="r-xp", path=path)])])]


@pytest.mark.parametrize("width", [60, 80, 120])
def test_every_line_fits_and_every_figure_is_whole(width: int):
    for story in (fork_story(), _big_story()):
        out = _run(RunView(all_mappings=True, changes=True), width, story)
        too_long = [ln for ln in out.splitlines() if cell_len(ln) > width]
        assert too_long == []
        for snap, section in zip(story, _checkpoints(out), strict=True):
            for p in snap.processes:
                for m in p.mappings:
                    s = m.smaps
                    figs = [str(s["Size"]), str(s["Rss"]), str(s["Pss"]), str(s["Private_Dirty"]),
                            str(s["Shared_Dirty"])]
                    assert row_figures(_rows(section, p.pid), m.vma) == figs


def row_figures(lines: list[str], vma) -> list[str]:
    """The five figures of a mapping's row: beside its label, or on the line under it (a label
    with a line of its own)."""
    i = next(i for i, ln in enumerate(lines) if ln.startswith(f"  {vma.start:x} {vma.perms}"))
    figs = lines[i].split()[3:8]
    return figs if len(figs) == 5 and all(f.isdigit() for f in figs) else lines[i + 1].split()[:5]


def test_long_paths_shorten_from_the_left():
    out = _run(RunView(all_mappings=True), 120, _big_story())
    assert "7f2000000000 r-xp …/libverylongname-with-version.so.1.2.3 " in out
    out = _run(RunView(all_mappings=True), 80, _big_story())
    assert "7f2000000000 r-xp …me-with-version.so.1.2.3 " in out  # what 80 columns leave beside the figures


def test_layout_helpers():
    assert layout.shorten_left("/usr/lib/x86_64-linux-gnu/libc.so.6", 11) == "…/libc.so.6"
    assert layout.shorten_left("/usr/lib/x86_64-linux-gnu/libc.so.6", 30) == "…/x86_64-linux-gnu/libc.so.6"
    assert layout.shorten_left("ld-linux-x86-64.so.2", 8) == "…64.so.2"
    assert layout.shorten_left("[heap]", 11) == "[heap]"
    assert layout.shorten_right("gunicorn: worker", 10) == "gunicorn:…"
    assert [layout.library_name(p) for p in ("/usr/lib/x86_64-linux-gnu/libc.so.6",
                                             "/lib64/ld-linux-x86-64.so.2", "/usr/bin/app", "", "[vdso]",
                                             "/root/.cache/cowscope/cowscope-agent-2aaa180f9ea8e92f")] \
        == ["libc", "ld.so", "app", "anon", "[vdso]", "cowscope-agent"]


def test_figures_get_a_line_of_their_own_before_they_would_be_cut():
    rows = [layout.Row("7fffffffffff rw-p", "/some/path", ["123456789"] * 5, 10, None)]
    cols = layout.columns(rows, ("Size", "Rss", "Pss", "Priv", "Shrd"), 60)
    assert cols.split
    lines = [t.plain for t in layout.render_row(rows[0], cols, 48)]
    assert lines[1].split() == ["123456789"] * 5 and all(len(ln) <= 60 for ln in lines)


# --- render_snapshot (the library function of docs/report.md) ------------------------------------


def _snap():
    parent = process(10, 1, "server", [
        mapping(0x7F0000000000, states([PRIVATE] * 8 + [SHARED] * 8)),
        mapping(0x7F1000000000, states([PAGECACHE] * 4), perms="r--p", path="/data/f"),
    ])
    child = process(11, 10, "worker", [mapping(0x7F0000000000, states([SHARED] * 16))])
    return snapshot("after fork", [parent, child])


def _render(**kw) -> str:
    buf = io.StringIO()
    console = kw.pop("console", None) or Console(file=buf, width=200)
    render_snapshot(_snap(), console, **kw)
    return buf.getvalue()


def test_render_snapshot_plain_when_not_a_tty():
    out = _render()
    assert "\x1b[" not in out
    assert "pid 10 (server)" in out and "pid 11 (worker)" in out
    assert "########22222222" in out
    assert "/data/f" in out and "ffff" in out
    assert "[anon]" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("  7f0000000000") and "####" in ln)
    assert line.split()[3:8] == ["64", "64", "48", "32", "32"]  # Size, Rss, Pss, Private, Shared


def test_render_snapshot_colour_on_tty_and_no_color(monkeypatch):
    buf = io.StringIO()
    render_snapshot(_snap(), Console(file=buf, width=200, force_terminal=True))
    assert "\x1b[" in buf.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    buf = io.StringIO()
    render_snapshot(_snap(), Console(file=buf, width=200, force_terminal=True))
    coloured = [ln for ln in buf.getvalue().splitlines() if "\x1b[3" in ln or "\x1b[9" in ln]
    assert coloured == []


def test_render_snapshot_filters():
    out = _render(only_pids=[11])
    assert "pid 11" in out and "pid 10 (server)" not in out
    out = _render(path_filter="/data")
    assert "/data/f" in out and "[anon]" not in out


@pytest.mark.parametrize("width", [60, 80])
def test_narrow_console_keeps_figures_and_strips(width: int):
    buf = io.StringIO()
    render_snapshot(_snap(), Console(file=buf, width=width))
    out = buf.getvalue()
    assert all(cell_len(ln) <= width for ln in out.splitlines())
    assert "########22222222" in out


def test_pmd_mapped_thp_pages_keep_their_legend():
    ps = states([PRIVATE] * 8 + [NOT_PRESENT] * 8)
    huge = type(ps)(ps.state, ps.mapcount, ps.pfn, huge=np.array([True] * 8 + [False] * 8))
    out = _run(RunView(), 120, [snapshot("thp", [process(10, 1, "p", [mapping(A, huge)])])])
    assert "HHHHHHHH........" in out
