"""`run --on both` for the terminal (report/both.py) on hand-built traces: the agreement first,
differing regions drawn twice with the differing pages in runs, the rest folded; every width fits."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from rich.cells import cell_len
from rich.console import Console

from cowscope.report.both import BothView, both_text, print_both, token_states
from cowscope.report.strips import strip
from cowscope.verify.compare import compare
from cowscope.verify.trace import Trace

SMAPS = ("Size", "Rss", "Pss", "Pss_Dirty", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty",
         "Anonymous", "AnonHugePages", "Swap", "Locked")


def region(pages: list[str], **smaps: int) -> dict:
    return {"pages": pages, "moved": [False] * len(pages), "filebacked": False, "accessed": [],
            "vmas": [{"pages": (0, len(pages)), "perms": "rw-p", "vmflags": "rd wr",
                      "smaps": {k: 0 for k in SMAPS} | smaps}]}


def trace(backend: str, checkpoints: list[tuple[str, dict]], ops=()) -> Trace:
    t = Trace(backend)
    t.ops = list(ops)
    t.checkpoints = checkpoints
    t.marks = [len(t.ops)] * len(checkpoints)
    return t


def story(child_pages: list[str], child_rss: int) -> list[tuple[str, dict]]:
    """Two checkpoints: the parent's heap and region agree; the child's region as given, twice."""
    heap = region(["X.A"] * 4 + ["-"] * 4, Rss=16)
    parent = {"state": "alive", "exit": None, "info": {},
              "regions": {"heap": heap, "R1": region(["S2.B"] * 8, Rss=32, Pss=16)}}
    child = {"state": "alive", "exit": None, "info": {},
             "regions": {"R1": region(child_pages, Rss=child_rss, Pss=16)}}
    return [(label, {"P": parent, "P.1": child}) for label in ("forked", "end")]


def _print(model: Trace, linux: Trace, width: int = 80, view: BothView | None = None) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, highlight=False, markup=False)
    print_both(console, model, linux, compare(model, linux), {}, "events: 3/3 agree", (), view)
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_agreement_is_one_line_per_process():
    m = trace("model", story(["S2.B"] * 8, 32))
    out = _print(m, trace("linux", story(["S2.B"] * 8, 32)))
    lines = out.splitlines()
    assert lines[0] == "model vs kernel: agree · 0 differences, 0 excluded"
    assert lines[1] == "events: 3/3 agree"
    assert "P: R1, heap agree" in lines and "P.1: R1 agree" in lines
    assert "model" not in out.split("checkpoint 1/2")[1]  # no region drawn


def test_differing_pages_in_runs_under_both_strips_and_repeats_folded():
    m = trace("model", story(["S2.B"] * 8, 32))
    k = trace("linux", story(["X.C", "X.D", "X.E"] + ["S2.B"] * 5, 32))
    out = _print(m, k)
    assert out.splitlines()[0] == "model vs kernel: DIFFER · 6 differences, 0 excluded"
    first, second = out.split("checkpoint 1/2: forked")[1].split("checkpoint 2/2: end")
    assert "P: R1, heap agree" in first
    rows = [ln.split() for ln in first.splitlines() if ln.strip().startswith(("model", "linux", "R1"))]
    assert rows == [["R1", "Rss", "Pss", "Priv", "Shrd", "pages"], ["model", "32", "16", "0", "0", "22222222"],
                    ["linux", "32", "16", "0", "0", "###22222"]]
    assert "    ≠ p0-2: model S2 | linux X" in first.splitlines()
    assert "P.1: R1 differ as at the previous checkpoint" in second  # the same differences: folded


def test_smaps_fields_of_a_vma_on_one_line():
    out = _print(trace("model", story(["S2.B"] * 8, 32)), trace("linux", story(["S2.B"] * 8, 36)))
    assert "    ≠ vma[0, 8] smaps model|linux: Rss 32|36" in out


def test_all_regions_draws_everything_and_the_operations():
    ops = [("P", "fork", (), "P.1")]
    m = trace("model", story(["S2.B"] * 8, 32), ops)
    out = _print(m, trace("linux", story(["S2.B"] * 8, 32), ops), view=BothView(all_regions=True))
    assert "    1 P fork() -> P.1" in out.splitlines()
    assert out.count("    model") == 6 and "agree" not in out.split("checkpoint 1/2")[1]


def test_dead_processes_say_how_they_ended_once():
    cps = story(["S2.B"] * 8, 32)
    cps[1][1]["P.1"] = {"state": "X", "exit": ("exit", 0)}
    out = _print(trace("model", cps), trace("linux", cps))
    assert "P.1 (X, exit 0 on both)" in out


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_every_line_fits(width: int):
    m = trace("model", story(["S2.B"] * 8, 32))
    k = trace("linux", story(["X.C", "X.D", "X.E"] + ["S2.B"] * 5, 32))
    out = _print(m, k, width)
    assert [ln for ln in out.splitlines() if cell_len(ln) > width] == []


def test_tokens_draw_as_strips():
    assert strip(token_states(["-", "Z", "X.A", "S3.B", "F2", "W", "S12.C"])).plain == ".0#3fs+"


def test_text_form_for_messages():
    m = trace("model", story(["S2.B"] * 8, 32))
    assert "P: " not in both_text(m, m, []) and "    model" in both_text(m, m, [])


def test_differences_are_placed_by_their_fields_not_their_text():
    """The where text is for people: with it blanked, every difference still lands on its
    checkpoint, process, region and pages."""
    m = trace("model", story(["S2.B"] * 8, 32))
    k = trace("linux", story(["X.C", "X.D", "X.E"] + ["S2.B"] * 5, 36))
    diffs = compare(m, k)
    assert diffs and all(d.process == "P.1" and d.region == "R1" and d.aspect for d in diffs)
    blank = [replace(d, where="?") for d in diffs]
    console = Console(file=io.StringIO(), width=80, color_system=None, highlight=False, markup=False)
    print_both(console, m, k, blank, {})
    out = console.file.getvalue()
    assert out == _print(m, k).replace("events: 3/3 agree\n", "")
    assert "    ≠ p0-2: model S2 | linux X" in out and "    ≠ vma[0, 8] smaps model|linux: Rss 32|36" in out


def test_names_are_shown_plainly():
    """Process and region names come from the scenario: markup is shown, control characters escaped."""
    name, region_name = "[red]x\x1b[2J", "[/]\x07"

    def renamed(pages: list[str]) -> list[tuple[str, dict]]:
        return [(label + "[bold]", {name: {**obs["P.1"], "regions": {region_name: obs["P.1"]["regions"]["R1"]}}})
                for label, obs in story(pages, 32)]

    m, k = trace("model", renamed(["S2.B"] * 8)), trace("linux", renamed(["X.C"] + ["S2.B"] * 7))
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=True, color_system="standard", highlight=False)
    print_both(console, m, k, compare(m, k), {})
    out = buf.getvalue()
    assert "[red]x\\x1b[2J" in out and "[/]\\x07" in out and "forked[bold]" in out
    assert "\x1b[2J" not in out and "\x07" not in out
