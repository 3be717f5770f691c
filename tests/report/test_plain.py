"""Names and paths chosen by other processes reach the terminal as plain text: markup is shown, not
interpreted (no MarkupError, `[heap]` stays), control characters are shown as escapes."""

from __future__ import annotations

import io
import json

import numpy as np
from rich.console import Console

from cowscope.inspect.figures import MappingFigures, ProcessFigures, Sample
from cowscope.inspect.recording import compare_table, load_recording
from cowscope.inspect.render import sample_view
from cowscope.observe.pages import PageStates
from cowscope.observe.records import MapsEntry
from cowscope.observe.snapshot import MappingView, ProcessView, Snapshot
from cowscope.report.plain import escaped, plain, visible
from cowscope.report.runview import RunView, print_run, render_snapshot

#: What a hostile (or merely unusual) process can call itself or map; how each must appear.
HOSTILE = {
    "[heap]": "[heap]",
    "[stack]": "[stack]",
    "[anon]": "[anon]",
    "[/]": "[/]",
    "[red]x": "[red]x",
    "\x1b[2Jwipe": "\\x1b[2Jwipe",
    "bell\x07\x9b31m": "bell\\x07\\x9b31m",
    "rtl\u202eexe.txt": "rtl\\u202eexe.txt",
}


def render(renderable: object, width: int = 400) -> str:
    buf = io.StringIO()
    Console(file=buf, width=width, force_terminal=True, color_system="standard", highlight=False).print(renderable)
    return buf.getvalue()


def assert_shown_plainly(out: str) -> None:
    for shown in HOSTILE.values():
        assert shown in out, f"{shown!r} missing from the output"
    assert "\x1b[2J" not in out and "\x07" not in out and "\u202e" not in out and "\x9b" not in out


def test_helpers() -> None:
    assert visible("a\x1b[2Jb\nc\td\x7f") == "a\\x1b[2Jb\\x0ac\\x09d\\x7f"
    assert visible("libc.so.6 (deleted) ünïcode") == "libc.so.6 (deleted) ünïcode"
    assert plain("[red]x").plain == "[red]x" and plain("[/]").spans == []
    assert render(escaped("[/] [bold]y\x1b")).strip() == "[/] [bold]y\\x1b"


def hostile_sample() -> Sample:
    names = list(HOSTILE)
    procs = []
    for i, name in enumerate(names):
        maps = [MappingFigures(0x1000 * (j + 1), 0x1000 * (j + 2), "rw-p", path, rss_kb=4 * (j + 1),
                               codes=np.zeros(1, dtype=np.uint8)) for j, path in enumerate(names)]
        procs.append(ProcessFigures(100 + i, 99 + i if i else 1, name, parent_in_tree=bool(i), mappings=maps))
    return Sample(seq=0, ts=0.0, mode="estimate", processes=procs, notes=["note about \x1b[2Jwipe"])


def test_inspect_view_shows_names_and_mapping_paths_plainly() -> None:
    s = hostile_sample()
    out = render(sample_view(s, mappings=len(HOSTILE), pages="[/]"))
    assert_shown_plainly(out)
    assert "mapping 4000-5000 rw-p [/]: one row per process" in out  # the one named exactly [/]


def test_compare_shows_recorded_names_plainly(tmp_path) -> None:
    """--compare of recordings whose mapping paths and file names are hostile."""
    paths = []
    (tmp_path / "a[").mkdir()
    for tag in ("a[/]", "b[red]x"):
        path = tmp_path / f"{tag}.jsonl"  # a[/].jsonl is the file ].jsonl in the directory a[
        worker = {"type": "process", "seq": 0, "pid": 2, "parent_in_tree": True, "copied_kb": 8,
                  "mappings": [{"path": p, "copied_kb": 4} for p in HOSTILE]}
        lines = [{"type": "header"}, worker, {"type": "tree", "seq": 0, "processes": 2}]
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
        paths.append(path)
    out = render(compare_table(load_recording(paths[0]), load_recording(paths[1]), top_mappings=len(HOSTILE)))
    title = "".join(out.split())  # the title wraps at the table's width
    assert "a[/].jsonl" in title and "b[red]x.jsonl" in title
    assert_shown_plainly(out)


def hostile_snapshot() -> Snapshot:
    procs = []
    for i, name in enumerate(HOSTILE):
        maps = [MappingView(MapsEntry(0x1000 * (j + 1), 0x1000 * (j + 2), "rw-p", 0, "00:00", 0, path), None,
                            PageStates(np.zeros(1, np.uint8), np.zeros(1, np.int64), np.zeros(1, np.int64)))
                for j, path in enumerate(HOSTILE)]
        procs.append(ProcessView(100 + i, 1, name, None, None, maps))
    return Snapshot("step [/] \x1b[2J", "model", 0.0, procs)


def test_run_output_shows_names_and_paths_plainly() -> None:
    snap = hostile_snapshot()
    buf = io.StringIO()
    console = Console(file=buf, width=400, force_terminal=True, color_system="standard", highlight=False)
    print_run(console, [snap], "pid 100 ([/]\x1b[2J) killed", RunView(all_mappings=True))
    render_snapshot(snap, console)
    out = buf.getvalue()
    assert_shown_plainly(out)
    assert "step [/] \\x1b[2J" in out
    buf.truncate(0)
    print_run(console, [snap, snap], None, RunView(changes=True))  # folded names, process lines, changes
    out = buf.getvalue()
    assert_shown_plainly(out)


def test_new_inspector_outputs_show_bracketed_names_plainly() -> None:
    """Titles in exit lines, the list of mappings a --pages name matches, kinds in --compare."""
    from cowscope.inspect.figures import Exited
    from cowscope.inspect.recording import Recording
    from cowscope.inspect.render import page_picture, totals_text

    s = hostile_sample()
    s.exited = [Exited(7, 1, name, name, 0.0, 1.0) for name in HOSTILE]
    assert_shown_plainly(render(totals_text(s)))
    out = render(page_picture(s, "")[0])  # every mapping matches: all listed, the first drawn
    assert f"{len(HOSTILE)} mappings match ''" in out
    assert_shown_plainly(out)
    worker = {"type": "process", "seq": 0, "pid": 2, "parent_in_tree": True, "copied_kb": 8, "mappings": [],
              "kinds": {name: {"copied_kb": 4} for name in HOSTILE}}
    rec = Recording("r", {}, {0: [worker]}, {0: {"type": "tree", "seq": 0}})
    assert_shown_plainly(render(compare_table(rec, rec)))
