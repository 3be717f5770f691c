"""The event comparison: sequences per (checkpoint, process, region), normalised and excluded with
reasons, and the kernel's own events agreeing with the model's on real scenarios."""

from __future__ import annotations

import os

import pytest

from cowscope.cli.main import main
from cowscope.verify.events import EventScore, compare_events
from cowscope.verify.exclusions import EVENT_EXCLUSIONS
from cowscope.verify.trace import Trace


def _trace(backend: str, intervals: list[dict], gup: list[set] | None = None, filebacked: set | None = None) -> Trace:
    t = Trace(backend, events_on=True)
    t.checkpoints = [(f"c{i}", {}) for i in range(len(intervals))]
    t.events = intervals
    t.gup = gup or [set() for _ in intervals]
    t.filebacked = filebacked or set()
    return t


def test_equal_sequences_agree_and_a_different_one_is_counted() -> None:
    model = _trace("model", [{"P/P#1": [("cow-copy", 0)]}, {"P/P#1": [("cow-reuse", 1)]}])
    linux = _trace("linux", [{"P/P#1": [("cow-copy", 0)]}, {"P/P#1": [("cow-copy", 1)]}])
    score = EventScore()
    (d,) = compare_events(model, linux, score)
    assert (score.compared, score.agreed) == (2, 1) and d.excluded is None and d.checkpoint == "c1"


def test_normalisation_stack_grow_thp_zero_and_fault_around() -> None:
    model = _trace("model", [{"P/P#1": [("stack-grow", 0), ("thp-zero-map", 0)],
                              "P/F": [("pagecache-map", 0), ("pagecache-map", 1), ("file-copy", 1)]}],
                   filebacked={"F"})
    linux = _trace("linux", [{"P/P#1": [("zero-page-map", 0)], "P/F": [("pagecache-map", 0), ("file-copy", 1)]}])
    score = EventScore()
    assert compare_events(model, linux, score) == [] and score.agreed == score.compared == 2


def test_exclusions_carry_their_reason() -> None:
    """A region populated through get_user_pages is excluded with its reason; copy vs reuse is
    compared everywhere else (also after MADV_FREE or mlock: the Linux backend drains the per-CPU
    batches whose references once made it random)."""
    model = _trace("model", [{"P/P#1": [("zero-fill", 0)], "P/P#2": [("cow-copy", 0)]}], gup=[{"P#1"}])
    linux = _trace("linux", [{"P/P#2": [("cow-reuse", 0)]}])
    score = EventScore()
    diffs = compare_events(model, linux, score)
    assert [d.excluded for d in diffs] == ["populated through get_user_pages", None]
    assert diffs[0].excluded in EVENT_EXCLUSIONS and score.compared == 1 and score.excluded == 1


def test_fork_race_excuses_only_who_copied_pages_both_sides_wrote() -> None:
    """After a threaded fork the arena's first page and the forking thread's top stack pages are
    written by both sides in an order the scheduler picks: copy and reuse (and their order) may
    swap there, but not anywhere else, nor may a write go missing."""
    model = _trace("model", [{"P/A1": [("zero-fill", 3), ("cow-copy", 0)], "P.1/A1": [("cow-reuse", 0)],
                              "P/P/t1:stack": [("cow-copy", 2047), ("cow-copy", 2048)]}])
    linux = _trace("linux", [{"P/A1": [("zero-fill", 3), ("cow-reuse", 0)], "P.1/A1": [("cow-copy", 0)],
                              "P/P/t1:stack": [("cow-reuse", 2048), ("cow-reuse", 2047)]}])
    model.raced = linux.raced = [{("A1", 0), ("P/t1:stack", 2047), ("P/t1:stack", 2048)}]
    score = EventScore()
    diffs = compare_events(model, linux, score)
    assert len(diffs) == 3 and {d.excluded for d in diffs} == {"who writes first after a threaded fork"}
    assert "who writes first after a threaded fork" in EVENT_EXCLUSIONS
    model.raced = linux.raced = [{("A1", 1)}]  # another page raced: nothing excused
    assert [d.excluded for d in compare_events(model, linux)] == [None] * 3
    linux.events = [{"P/A1": [("zero-fill", 3)], "P.1/A1": [("cow-copy", 0)],
                     "P/P/t1:stack": [("cow-reuse", 2048), ("cow-reuse", 2047)]}]
    model.raced = linux.raced = [{("A1", 0), ("P/t1:stack", 2047), ("P/t1:stack", 2048)}]
    assert {d.where: d.excluded for d in compare_events(model, linux)}["P/A1"] is None  # a write missing


@pytest.mark.kernel
@pytest.mark.skipif(os.geteuid() != 0, reason="the kernel's events need root")
def test_verify_reports_event_agreement(capsys) -> None:
    assert main(["verify", "C05", "V01", "C34", "-v"]) == 0
    out = capsys.readouterr().out
    assert "event agreement: 3/3 scenarios (100.0%)" in out
    assert "[excluded: populated through get_user_pages]" in out
    assert "populated through get_user_pages: MADV_POPULATE_READ/WRITE" in out


@pytest.mark.kernel
@pytest.mark.skipif(os.geteuid() != 0, reason="the kernel's events and KSM need root")
def test_ksm_cases_agree_on_events_with_stated_exclusions(capsys) -> None:
    """ksmd's merges are not faults (the model's ksm-merge events are dropped) and MADV_UNMERGEABLE's
    copies raise no fault tracepoint (that interval is excluded); every other event agrees."""
    assert main(["verify", "K01", "K02", "K03", "K04", "K05", "-v"]) == 0
    out = capsys.readouterr().out
    assert "event agreement: 5/5 scenarios (100.0%)" in out
    assert "ksm-merge: ksmd, a kernel thread" in out
    unmerged = [line for line in out.splitlines() if "events unmerged P/P#1" in line]
    assert len(unmerged) == 1 and unmerged[0].endswith("[excluded: populated through get_user_pages]")
    assert "zero-fill" not in unmerged[0]  # K05's writes are compared at "merged", before the unmerge
