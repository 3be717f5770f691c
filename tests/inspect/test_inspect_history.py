"""Released pages and the side that copied, judged against what a worker held at its start,
on real trees with designed numbers."""

from __future__ import annotations

import time

import pytest
from forktree import PAGE, TreePlan, WorkerPlan, range_classes

from cowscope.inspect import classify as cl
from cowscope.inspect.sample import Sampler

pytestmark = pytest.mark.kernel
KB = PAGE // 1024


def region(pf, t):
    """The worker's mapping of the master's region R."""
    return next(m for m in pf.mappings if m.start <= t.r_addr < m.end)


def staged(make_tree, plan: TreePlan, first_look: str) -> tuple[object, Sampler]:
    """Start a staged tree and take the first look at `first_look` ("prefork" or "forked"); run it to the end."""
    t = make_tree(plan)
    sampler = Sampler([t.master], tree=True, mode="exact")
    if first_look == "forked":
        t.advance()
    sampler.sample()
    time.sleep(0.03)  # the fork must come a clock tick after that read for the read to be known older
    while t.stage != "done":
        t.advance()
    return t, sampler


@pytest.mark.parametrize("first_look", ["prefork", "forked"])
def test_a_parent_that_rewrites_pays_for_its_copies(make_tree, first_look) -> None:
    # One worker: the master's 6 rewritten pages leave the worker alone with the original frames.
    plan = TreePlan(touched=32, tail=8, master_rewrites=6, stages=True,
                    workers=[WorkerPlan(copy_from=8, copies=3)])
    t, sampler = staged(make_tree, plan, first_look)
    w = sampler.sample().process(t.workers[0])
    assert w.history == ("fork" if first_look == "prefork" else "first-seen")
    r = region(w, t)
    assert r.copied_kb == (6 + 3) * KB
    assert (r.copied_by_parent_kb, r.copied_by_child_kb, r.released_kb) == (6 * KB, 3 * KB, 0)
    assert w.copied_by_parent_kb >= 6 * KB and w.copied_by_child_kb >= 3 * KB


@pytest.mark.parametrize("first_look", ["prefork", "forked"])
def test_a_child_that_releases_is_not_a_copy(make_tree, first_look) -> None:
    plan = TreePlan(touched=40, tail=8, master_rewrites=0, stages=True, workers=[
        WorkerPlan(copy_from=2, copies=2, release_from=20, releases=5), WorkerPlan(copy_from=30, copies=1)])
    t, sampler = staged(make_tree, plan, first_look)
    s = sampler.sample()
    w = s.process(t.workers[0])
    r = region(w, t)
    assert (r.released_kb, r.copied_kb, r.copied_by_child_kb) == (5 * KB, 2 * KB, 2 * KB)
    assert w.released_kb >= 5 * KB
    assert range_classes(w, t.r_addr, 48) == {cl.SHARED_PARENT: 40 - 2 - 5, cl.COPIED: 2, cl.RELEASED: 5,
                                              cl.NOT_PRESENT: 8}
    assert region(s.process(t.workers[1]), t).released_kb == 0
    assert s.totals.released_kb == w.released_kb + s.process(t.workers[1]).released_kb
    # Released pages are not resident: the classes still add up to the worker's RSS.
    assert w.rss_kb == sum(getattr(w, k) for k in ("shared_with_parent_kb", "sibling_shared_kb", "copied_kb",
                                                     "new_kb"))


def test_without_history_nothing_is_attributed(make_tree) -> None:
    plan = TreePlan(touched=32, tail=0, master_rewrites=4, workers=[
        WorkerPlan(copy_from=8, copies=3, release_from=20, releases=2)])
    t = make_tree(plan)
    w = Sampler([t.master], tree=True, mode="exact").sample().process(t.workers[0])
    # First seen after it all happened: which side copied, and what was dropped, cannot be known.
    r = region(w, t)
    assert w.history == "first-seen" and r.copied_kb == (4 + 3) * KB
    assert (w.copied_by_child_kb, w.copied_by_parent_kb, w.released_kb) == (0, 0, 0)


def test_a_released_page_is_released_in_estimate_mode_too(make_tree) -> None:
    plan = TreePlan(touched=24, tail=0, master_rewrites=0, stages=True,
                    workers=[WorkerPlan(release_from=4, releases=3)])
    t = make_tree(plan)
    sampler = Sampler([t.master], tree=True, mode="estimate")
    t.advance()
    sampler.sample()
    t.advance()
    w = sampler.sample().process(t.workers[0])
    assert region(w, t).released_kb == 3 * KB
    assert w.copied_by_child_kb is None  # frames are needed to tell who copied
