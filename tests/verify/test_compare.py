"""Side-by-side comparison: real traces that differ are caught; exclusions only where they belong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cowscope.report.both import both_text
from cowscope.verify.compare import compare, counted, run_traced
from cowscope.verify.exclusions import EXCLUSIONS
from cowscope.verify.trace import Trace

PAGE = 4096
CLI = [sys.executable, "-c", "from cowscope.cli.main import entry; entry()"]


def _linux():
    from cowscope.linux.machine import Machine

    return Machine()


def _obs(pages: list[str], smaps: dict[str, int], filebacked: bool = False, accessed=(), key="P#1",
         vma=(0, 2), guarded: bool = True) -> dict:
    base = {k: 0 for k in ("Size", "Rss", "Pss", "Pss_Dirty", "Shared_Clean", "Shared_Dirty",
                           "Private_Clean", "Private_Dirty", "Anonymous", "AnonHugePages", "Swap", "Locked")}
    region = {"pages": pages, "moved": [False] * len(pages), "filebacked": filebacked, "guarded": guarded,
              "accessed": list(accessed),
              "vmas": [{"pages": vma, "perms": "rw-p", "vmflags": "rd wr", "smaps": base | smaps}]}
    return {"P": {"state": "alive", "exit": None, "regions": {key: region}, "info": {}}}


def _trace(backend: str, obs: dict, ops=()) -> Trace:
    t = Trace(backend)
    t.ops = list(ops)
    t.checkpoints = [("c", obs)]
    return t


def test_hand_built_traces_page_smaps_and_op_differences() -> None:
    a = _trace("model", _obs(["X.A", "S2.B"], {"Rss": 8}), [("P", "read", ("P#1+0x0", 1), "00")])
    b = _trace("linux", _obs(["X.A", "X.B"], {"Rss": 4}), [("P", "read", ("P#1+0x0", 1), "01")])
    d = counted(compare(a, b))
    wheres = {x.where for x in d}
    assert "op 1" in wheres and "[c] P P#1 p1" in wheres and "[c] P P#1 vma[0, 2] Rss" in wheres
    assert compare(a, _trace("linux", _obs(["X.A", "S2.B"], {"Rss": 8}), a.ops)) == []


def test_differences_carry_their_place_as_data() -> None:
    """Checkpoint, process, region and pages of each difference (what the HTML report places)."""
    a = _trace("model", _obs(["X.A", "S2.B"], {"Rss": 8}), [("P", "read", ("P#1+0x0", 1), "00")])
    b = _trace("linux", _obs(["X.A", "X.B"], {"Rss": 4}), [("P", "read", ("P#1+0x0", 1), "01")])
    place = {d.where: (d.step, d.process, d.region, d.pages, d.op) for d in compare(a, b)}
    assert place["op 1"] == (None, None, None, (), 0)
    assert place["[c] P P#1 p1"] == (0, "P", "P#1", (1,), None)
    assert place["[c] P P#1 vma[0, 2] Rss"] == (0, "P", "P#1", (), None)
    merged = _trace("linux", _obs(["S2.Q", "S2.Q"], {}))
    same = [d for d in compare(_trace("model", _obs(["S2.A", "S2.B"], {})), merged) if "same physical" in d.where]
    assert sorted((d.process, d.region, d.pages) for d in same) == [("P", "P#1", (0,)), ("P", "P#1", (1,))]


def test_fault_around_pages_excluded_only_when_untouched_in_a_moved_region() -> None:
    a = _trace("model", _obs(["F1.A", "-"], {"Rss": 4}, filebacked=True, accessed=[0], guarded=False))
    b = _trace("linux", _obs(["F1.A", "F1.B"], {"Rss": 8}, filebacked=True, accessed=[0], guarded=False))
    diffs = compare(a, b)
    assert diffs and counted(diffs) == []
    assert all(x.excluded == EXCLUSIONS["untouched file/shmem pages"] for x in diffs)
    # a region both backends placed alike (2 MiB aligned, between guards) has the same window
    a1 = _trace("model", _obs(["F1.A", "-"], {"Rss": 4}, filebacked=True, accessed=[0]))
    b1 = _trace("linux", _obs(["F1.A", "F1.B"], {"Rss": 8}, filebacked=True, accessed=[0]))
    assert {x.where for x in counted(compare(a1, b1))} == {"[c] P P#1 p1", "[c] P P#1 vma[0, 2] Rss"}
    # the same difference on a page the process did access counts
    b2 = _trace("linux", _obs(["-", "F1.B"], {"Rss": 4}, filebacked=True, accessed=[0], guarded=False))
    assert [x.where for x in counted(compare(a, b2))] == ["[c] P P#1 p0"]
    # and anonymous regions get no fault-around excuse
    a3 = _trace("model", _obs(["X.A", "-"], {}))
    b3 = _trace("linux", _obs(["X.A", "Z"], {}))
    assert len(counted(compare(a3, b3))) == 1


def test_merged_vma_smaps_excluded_but_pages_compared() -> None:
    a = _trace("model", _obs(["X.A", "X.B"], {"Rss": 8}, vma=(0, 3)))
    b = _trace("linux", _obs(["X.A", "X.B"], {"Rss": 12}, vma=(0, 3)))
    diffs = compare(a, b)
    assert len(diffs) == 1 and diffs[0].excluded
    b2 = _trace("linux", _obs(["X.A", "-"], {"Rss": 12}, vma=(0, 3)))
    assert len(counted(compare(a, b2))) == 1


def test_without_pfns_letters_and_counts_are_not_compared() -> None:
    a = _trace("model", _obs(["S3.A", "X.B"], {}))
    b = _trace("linux", _obs(["S2", "X"], {}))
    b.kpage = False
    assert counted(compare(a, b)) == []
    b.kpage = True
    assert [d.where for d in counted(compare(a, b))] == ["[c] P P#1 p0"]  # S3 vs S2


def test_page_identity_is_compared_as_a_relation_not_as_names() -> None:
    a = _trace("model", _obs(["S2.A", "S2.B"], {}))
    same = _trace("linux", _obs(["S2.Q", "S2.R"], {}))  # other letters, same pattern
    assert counted(compare(a, same)) == []
    merged = _trace("linux", _obs(["S2.Q", "S2.Q"], {}))  # one page where the model has two
    bad = counted(compare(a, merged))
    assert len(bad) == 2 and all("same physical page" in d.where for d in bad)
    assert sorted((d.aspect, d.pages) for d in bad) == [("identity", (0,)), ("identity", (1,))]


@pytest.mark.kernel
def test_real_traces_that_differ_are_caught() -> None:
    """Two real kernel runs of scenarios differing in one write: op log, pages and smaps differ."""
    if os.geteuid() != 0:
        pytest.skip("needs root for PFNs")

    def scenario(variant: bool):
        def run(m) -> None:
            p = m.spawn("P")
            a = p.mmap(4 * PAGE)
            p.fill(a, 2 * PAGE, 1)
            c = p.fork()
            if variant:
                c.write(a, b"\x02")
            m.checkpoint("after")
            c.read(a, 1)
        return run

    same = compare(run_traced(scenario(False), _linux(), "linux"), run_traced(scenario(False), _linux(), "linux"))
    assert counted(same) == []
    t1 = run_traced(scenario(False), _linux(), "model")
    t2 = run_traced(scenario(True), _linux(), "linux")
    bad = counted(compare(t1, t2))
    wheres = " ".join(x.where for x in bad)
    assert "op " in wheres and "[after] P.1 P#1 p0" in wheres and "Private_Dirty" in wheres
    text = both_text(t1, t2, compare(t1, t2), all_regions=False)
    assert "≠" in text and "P#1" in text and "DIFFER ·" in text and "p0: model S2 | linux X" in text
    page = next(d for d in bad if d.where == "[after] P.1 P#1 p0")  # where it lies, also as data
    assert (page.step, page.process, page.region, page.pages, page.aspect) == (0, "P.1", "P#1", (0,), "page")
    smaps = next(d for d in bad if d.where == "[after] P.1 P#1 vma[0, 4] Private_Dirty")
    assert (smaps.process, smaps.region, smaps.aspect, smaps.vma) == ("P.1", "P#1", "Private_Dirty", (0, 4))
    assert {d.aspect for d in bad if d.where.startswith("op ")} == {"op"}


DISAGREE = '''
PAGE = 4096

def scenario(m):
    p = m.spawn("P")
    a = p.mmap(2 * PAGE)
    p.fill(a, PAGE, 1)
    if getattr(m, "backend", "model") == "linux":
        p.fill(a + PAGE, PAGE, 1)
    m.checkpoint("done")
'''


@pytest.mark.kernel
@pytest.mark.parametrize("backend_differs", [False, True])
def test_run_on_both_cli_exit_status(tmp_path: Path, backend_differs: bool) -> None:
    src = DISAGREE if backend_differs else DISAGREE.replace('== "linux"', '== "neither"')
    f = tmp_path / "s.py"
    f.write_text(src)
    out = subprocess.run([*CLI, "run", str(f), "--on", "both"],
                         capture_output=True, text=True, timeout=60)
    if backend_differs:
        assert out.returncode == 1, out.stdout + out.stderr
        assert "≠" in out.stdout and "P#1" in out.stdout
    else:
        assert out.returncode == 0, out.stdout + out.stderr
        assert "agree · 0 differences" in out.stdout


@pytest.mark.kernel
def test_run_on_both_html_report(tmp_path: Path) -> None:
    f = tmp_path / "s.py"
    f.write_text(DISAGREE)
    html = tmp_path / "r.html"
    out = subprocess.run([*CLI, "run", str(f), "--on", "both", "--html", str(html)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "report written to" in out.stdout
    text = html.read_text()
    assert "--on both" in text and len(text) > 10000


@pytest.mark.kernel
def test_verify_cli_prints_lines_exclusions_and_score() -> None:
    out = subprocess.run([*CLI, "verify", "C05", "C16", "H02"],
                         capture_output=True, text=True, timeout=60)
    lines = out.stdout.splitlines()
    assert [ln.split()[0] for ln in lines[:3]] == ["C05", "C16", "H02"]
    assert "agreement: 3/3 scenarios (100.0%)" in out.stdout
    for what in EXCLUSIONS:
        assert what in out.stdout
    assert out.returncode == 0


@pytest.mark.kernel
def test_without_root_compares_what_remains(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """As an unprivileged user sees it: PFN fields zeroed, /proc/kpagecount unreadable."""
    from cowscope.linux import machine as lm
    from cowscope.model import Machine as ModelMachine
    from cowscope.observe import kpage, procfs
    from cowscope.observe.records import PM_PFN_MASK
    from cowscope.verify.conformance import all_scenarios

    real = procfs.read_pagemap

    def hidden(pid: int, addr: int, npages: int, root: str = "/proc"):
        raw = real(pid, addr, npages)
        return raw & ~np.uint64(PM_PFN_MASK)

    monkeypatch.setattr(procfs, "read_pagemap", hidden)
    monkeypatch.setattr(kpage, "kpage_available", lambda root="/proc": False)
    monkeypatch.setattr(kpage, "zero_pfns", lambda: frozenset())
    monkeypatch.setattr(lm, "_KPAGE_NOTE_SHOWN", False)
    chosen = [s for s in all_scenarios() if s.id in ("C02", "C05", "C06", "C14")]
    for sc in chosen:
        linux = run_traced(sc.fn, lm.Machine(), "linux")
        model = run_traced(sc.fn, ModelMachine(), "model")
        assert not linux.kpage and linux.error is None
        assert counted(compare(model, linux)) == [], sc.id
    err = capsys.readouterr().err
    assert err.count("need root") == 1


@pytest.mark.kernel
@pytest.mark.parametrize("seed", range(8))
def test_random_scenarios_are_reproducible_on_the_kernel(seed: int) -> None:
    """The harness is deterministic: two kernel runs of one random scenario never differ."""
    if os.geteuid() != 0:
        pytest.skip("needs root for PFNs")
    from cowscope.verify.fuzz import random_scenario

    fn = random_scenario(seed)
    first = run_traced(fn, _linux(), "linux")
    second = run_traced(fn, _linux(), "linux")
    assert first.error is None and second.error is None
    assert counted(compare(first, second)) == []


@pytest.mark.kernel
def test_run_on_linux_cli() -> None:
    out = subprocess.run([*CLI, "run", "scenarios/bad_access.py", "--on", "linux"], capture_output=True,
                         text=True, timeout=60, cwd=Path(__file__).parent.parent.parent)
    assert out.returncode == 0, out.stderr
    assert "checkpoint 2/2: child killed by SIGSEGV; parent goes on (linux)" in out.stdout
    assert "cowscope-agent, libc" in out.stdout  # real mappings of the agent binary, folded


def test_fault_around_in_another_process_excuses_only_the_map_count() -> None:
    def two(p_pages, c_pages, p_acc, c_acc):
        obs = _obs(p_pages, {}, filebacked=True, accessed=p_acc, guarded=False)
        obs["C"] = _obs(c_pages, {}, filebacked=True, accessed=c_acc, guarded=False)["P"]
        return obs

    model = _trace("model", two(["F1.A", "-"], ["-", "F1.B"], [0], [1]))
    linux = _trace("linux", two(["F2.A", "F1.B"], ["F2.A", "F1.B"], [0], [1]))  # both faulted around
    assert counted(compare(model, linux)) == []
    linux2 = _trace("linux", two(["F3.A", "F1.B"], ["-", "F1.B"], [0], [1]))  # nobody explains F3
    assert [d.where for d in counted(compare(model, linux2))] == ["[c] P P#1 p0"]


@pytest.mark.kernel
def test_verify_random_option_reports_each_seed() -> None:
    out = subprocess.run([*CLI, "verify", "C01", "--random", "3", "--seed", "7"], capture_output=True,
                         text=True, timeout=120)
    assert "random differential runs: seeds 7..9" in out.stdout
    assert "seeds agree (seeds 7..9" in out.stdout
    disagree = [ln for ln in out.stdout.splitlines() if ln.strip().startswith("seed ")]
    assert out.returncode == (1 if disagree else 0)


def _many_frames(m) -> None:
    p = m.spawn("P")
    a = p.mmap(1000 * PAGE)
    p.fill(a, 1000 * PAGE, 1)            # 1000 distinct frames, each its own letter
    child = p.fork()
    child.fill(a, 10 * PAGE, 2)          # 10 copies: 1010 distinct frames at the checkpoint
    m.checkpoint("filled")


def test_page_letters_never_run_out() -> None:
    """More than 702 distinct frames at a checkpoint (A..ZZ): the names go on with AAA (it was an
    IndexError, run --on both exit 2, for ordinary workloads)."""
    from cowscope.model import Machine
    from cowscope.verify.trace import _letter

    assert [_letter(n) for n in (0, 25, 26, 701, 702, 18277, 18278)] == \
        ["A", "Z", "AA", "ZZ", "AAA", "ZZZ", "AAAA"]
    tr = run_traced(_many_frames, Machine(), "model")
    assert tr.error is None
    letters = {t.split(".")[1] for obs in tr.checkpoints[0][1].values()
               for r in obs["regions"].values() for t in r["pages"] if "." in t}
    assert len(letters) == 1010 and "AAA" in letters
    assert counted(compare(tr, run_traced(_many_frames, Machine(), "model"))) == []


@pytest.mark.kernel
def test_many_frames_on_both_backends() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for PFNs")
    from cowscope.model import Machine

    model = run_traced(_many_frames, Machine(), "model")
    linux = run_traced(_many_frames, _linux(), "linux")
    assert linux.error is None and counted(compare(model, linux)) == []


def test_fork_race_excuses_a_replaced_page_only_where_both_sides_wrote() -> None:
    """Whether the parent kept the frame of a page both sides of a threaded fork wrote (an arena's
    first page) is the scheduler's choice: not compared there, compared everywhere else."""
    a = _trace("model", _obs(["X.A", "X.B"], {}, key="A1"))
    b = _trace("linux", _obs(["X.A", "X.B"], {}, key="A1"))
    a.checkpoints[0][1]["P"]["regions"]["A1"]["moved"] = [False, False]
    b.checkpoints[0][1]["P"]["regions"]["A1"]["moved"] = [True, False]
    (d,) = compare(a, b)
    assert d.excluded is None
    for t in (a, b):
        t.checkpoints[0][1]["P"]["regions"]["A1"]["raced"] = [0]
    (d,) = compare(a, b)
    assert d.excluded == EXCLUSIONS["who writes first after a threaded fork"]
    b.checkpoints[0][1]["P"]["regions"]["A1"]["moved"] = [True, True]
    assert [x.excluded for x in compare(a, b)] == [None]


def test_a_moved_regions_fault_around_excuses_map_counts_in_other_regions() -> None:
    """The same file mapped twice: fault-around in a region mremap moved (placed by each kernel)
    may map a page another region maps too; that page's map count there is then not compared."""
    def obs(moved_pages, other_pages):
        o = _obs(moved_pages, {}, filebacked=True, accessed=[0], key="P#1", guarded=False)
        other = _obs(other_pages, {}, filebacked=True, accessed=[0], key="P#2")
        o["P"]["regions"]["P#2"] = other["P"]["regions"]["P#2"]
        return o

    model = _trace("model", obs(["F2.A", "-"], ["F2.A", "F1.B"]))
    linux = _trace("linux", obs(["F2.A", "F2.B"], ["F2.A", "F2.B"]))
    assert counted(compare(model, linux)) == []
    linux2 = _trace("linux", obs(["F2.A", "-"], ["F2.A", "F2.B"]))  # no fault-around difference
    assert [d.where for d in counted(compare(model, linux2))] == ["[c] P P#2 p1"]


def test_random_seeds_count_in_the_exit_status_unless_informational(monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from cowscope.cli import verify as verify_cli
    from cowscope.cli.main import main
    from cowscope.verify import fuzz

    def fake(first, count, make_model, make_linux, steps=48, on_seed=None):
        on_seed(first + 1, ["[end] P P#1 p0: model 'X' | linux '-'  DIFFERS"])
        return fuzz.RandomResult(first, count, {first + 1: ["[end] P P#1 p0: model 'X' | linux '-'  DIFFERS"]}, 0.1)

    monkeypatch.setattr(fuzz, "run_random", fake)
    from cowscope.verify import replay

    monkeypatch.setattr(replay, "minimal_program", lambda seed, *a, **kw: f"def scenario(m):\n    # seed {seed}\n")
    monkeypatch.setattr("cowscope.linux.build.backend_problem", lambda: None)
    monkeypatch.setattr(verify_cli, "_host_config", lambda: {})
    assert main(["verify", "--random", "3", "--seed", "40", "--random-only"]) == 1
    out = capsys.readouterr().out
    assert "seed 41" in out and "random differential: 2/3 seeds agree (seeds 40..42" in out
    assert "replay: cowscope verify --random 1 --seed 41 --random-only -v" in out
    assert "        def scenario(m):\n            # seed 41" in out  # the shrunk program, indented
    assert main(["verify", "--random", "3", "--seed", "40", "--random-only", "--random-informational"]) == 0
    assert "informational: not in the exit status" in capsys.readouterr().out


def _frame_comes_back(m, on_thread: bool = False) -> None:
    p = m.spawn("P")
    a = p.mmap(4 * PAGE)
    p.fill(a, 4 * PAGE, 1)
    w = p.pthread_create() if on_thread else p  # the writes below: from the process or a thread
    c = p.fork()
    m.checkpoint("one")
    w.fill(a, PAGE, 2)   # a copy: P gets a new frame, the child keeps the old one
    c.exit(0)
    p.wait(c)            # the old frame is freed
    p.fork()
    w.fill(a, PAGE, 3)   # a copy again: the allocator may hand back the frame the child freed
    m.checkpoint("two")


@pytest.mark.parametrize("on_thread", [False, True])
def test_a_page_replaced_twice_is_new_even_when_its_old_frame_comes_back(on_thread: bool) -> None:
    """The model's allocator hands the freed frame straight back (the same PFN as at "one"): the
    page was still replaced since then, as the kernel (another frame) says; a thread's writes too."""
    from cowscope.model import Machine

    model = run_traced(lambda m: _frame_comes_back(m, on_thread), Machine(), "model")
    moved = model.checkpoints[1][1]["P"]["regions"]["P#1"]["moved"]
    assert moved == [True, False, False, False]
    if os.geteuid() == 0:
        linux = run_traced(lambda m: _frame_comes_back(m, on_thread), _linux(), "linux")
        assert counted(compare(model, linux)) == []


def test_fault_around_is_excused_only_where_a_kernel_placed_the_region() -> None:
    """Unguarded regions the scenario placed have the same window on both backends: compared."""
    def trace(backend, pages, unplaced):
        obs = _obs(pages, {"Rss": 4 * sum(p != "-" for p in pages)}, filebacked=True, accessed=[0], guarded=False)
        obs["P"]["regions"]["P#1"]["unplaced"] = unplaced
        return _trace(backend, obs)

    placed = counted(compare(trace("model", ["F1.A", "-"], False), trace("linux", ["F1.A", "F1.B"], False)))
    assert "[c] P P#1 p1" in {d.where for d in placed}
    moved = compare(trace("model", ["F1.A", "-"], False), trace("linux", ["F1.A", "F1.B"], True))
    assert moved and counted(moved) == []


def _shrink_in_place(m, on_thread: bool) -> None:
    p = m.spawn("P")
    w = p.pthread_create() if on_thread else p
    x = w.malloc(300 * 1024)       # above the mmap threshold: a chunk of its own, region P@1
    w.fill(x, 300 * 1024, 1)
    assert w.realloc(x, 100 * 1024) == x  # mremap shrinks it where it is
    m.checkpoint("shrunk")


@pytest.mark.parametrize("on_thread", [False, True])
def test_a_chunk_realloc_shrinks_in_place_is_observed_at_its_new_length(on_thread: bool) -> None:
    """100 KiB and the chunk's header page: 26 pages observed, not the 76 it had (from a thread too)."""
    from cowscope.model import Machine

    model = run_traced(lambda m: _shrink_in_place(m, on_thread), Machine(), "model")
    assert len(model.checkpoints[-1][1]["P"]["regions"]["P@1"]["pages"]) == 26
    if os.geteuid() == 0:
        linux = run_traced(lambda m: _shrink_in_place(m, on_thread), _linux(), "linux")
        assert len(linux.checkpoints[-1][1]["P"]["regions"]["P@1"]["pages"]) == 26
        assert counted(compare(model, linux)) == []
