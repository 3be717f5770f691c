"""The threads story (`cowscope demo threads`): every claim holds, computed from what the model shows,
and the claims fail when the story they tell does not happen (arenas limited by M_ARENA_MAX)."""

from __future__ import annotations

import pytest

from cowscope.report.demo_threads import HEAP, THREADS, run_demo_threads


@pytest.fixture(scope="module")
def played():
    return run_demo_threads()


def test_every_claim_holds(played) -> None:
    _m, steps = played
    assert len(steps) == 4 and all(c.ok for s in steps for c in s.checks), \
        [c for s in steps for c in s.checks if not c.ok]


def test_snapshots_show_four_shared_arenas_in_the_child(played) -> None:
    """Independently of the checks: the child's view after fork has four 64 MiB-aligned arena heaps,
    each with all but its first page shared (map count 2), and one thread."""
    _m, steps = played
    snap = steps[1].snapshot
    parent, child = snap.processes[0], snap.processes[-1]
    assert child.pid != parent.pid
    arenas = [mv for mv in child.mappings if mv.vma.start % HEAP == 0 and mv.vma.perms == "rw-p"]
    assert len(arenas) == THREADS
    for mv in arenas:
        counts = [int(c) for c in mv.pages.mapcount[:50]]
        assert counts[0] == 1 and counts[1:] == [2] * 49


def test_claims_fail_when_threads_share_arenas() -> None:
    """M_ARENA_MAX 2: the four threads share one arena besides the main one: the story's first
    claim is false, and the model's figures say so."""
    _m, steps = run_demo_threads(arena_max=2)
    first = steps[0].checks[0]
    assert not first.ok and "four threads" in first.claim
