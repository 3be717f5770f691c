"""The demo story (report/demo.py): every claim holds on the model, and the snapshots bear the claims out."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from cowscope.observe.pages import PRIVATE, SHARED
from cowscope.report.demo import BUF_BYTES, CHILD_WRITES, STORY, run_demo, step_notes


@pytest.fixture(scope="module", params=["ptmalloc", "firstfit"])
def played(request):
    return run_demo(request.param)


def test_every_claim_holds(played):
    _m, steps = played
    assert len(steps) == len(STORY) == 6
    assert [s.title.split(".")[0] for s in steps] == ["1", "2", "3", "4", "5", "6"]
    failed = [(s.title, c.claim, c.evidence) for s in steps for c in s.checks if not c.ok]
    assert not failed
    assert all(s.checks for s in steps)


def test_each_step_holds_the_events_since_the_previous_one(played):
    m, steps = played
    # no event lost or told twice: the steps' events are the machine's log, in order
    told = [e.seq for s in steps for e in s.snapshot.events]
    assert told == [e.seq for e in m.events]
    assert all(s.snapshot.label == s.title for s in steps)
    for s in steps:
        live = {p.pid for p in s.snapshot.processes}
        assert set(s.pids) <= live


def _heap_states(step, pid):
    p = next(p for p in step.snapshot.processes if p.pid == pid)
    heap = next(mv for mv in p.mappings if mv.vma.path == "[heap]")
    return heap.pages.state


def test_snapshots_show_what_the_checks_claim(played):
    # an independent reading: from the snapshots' page states, not the pagemap the story reads
    _m, steps = played
    parent, child = steps[1].pids
    filled = _heap_states(steps[0], parent)
    forked = _heap_states(steps[1], child)
    wrote = _heap_states(steps[2], child)
    assert np.count_nonzero(filled == PRIVATE) >= BUF_BYTES // 4096
    assert np.count_nonzero(forked == PRIVATE) == 0  # after fork every resident heap page is shared
    assert np.count_nonzero(wrote == PRIVATE) == CHILD_WRITES
    assert np.count_nonzero(wrote == SHARED) == np.count_nonzero(forked == SHARED) - CHILD_WRITES
    assert steps[5].pids == (parent,)
    assert child not in {p.pid for p in steps[5].snapshot.processes}


def test_step_notes_tell_each_claim_with_its_mark(played):
    _m, steps = played
    notes = step_notes(steps)
    assert len(notes) == len(steps)
    assert notes[2].startswith(steps[2].text) and f"✓ exactly {CHILD_WRITES} pages were copied" in notes[2]
    failing = [replace(s, checks=[replace(c, ok=False) for c in s.checks]) for s in steps]
    assert f"✗ exactly {CHILD_WRITES} pages were copied" in step_notes(failing)[2]
