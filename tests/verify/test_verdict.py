"""verify.verdict.build: the comparator's differences placed on the model's pids and page addresses.

Both sides run on the model here (fast, no kernel); the second with a deliberately wrong rule, so
the comparison finds a known difference.
"""

from __future__ import annotations

import pytest

from cowscope.model import Machine
from cowscope.model.mm import memory
from cowscope.verify.compare import compare, counted, run_traced
from cowscope.verify.events import compare_events
from cowscope.verify.exclusions import EXCLUSIONS
from cowscope.verify.verdict import build

PAGE = 4096


def three_sharers(m) -> None:
    """Fork twice, each side writes page 0, the children exit."""
    p = m.spawn("parent")
    a = p.mmap(3 * PAGE)
    p.fill(a, 3 * PAGE, 0x41)
    m.checkpoint("filled")
    c1, c2 = p.fork(), p.fork()
    m.checkpoint("forked")
    for proc, byte in ((c1, b"1"), (c2, b"2"), (p, b"p")):
        proc.write(a, byte)
    m.checkpoint("each wrote page 0")
    for c in (c1, c2):
        c.exit(0)
        p.wait(c)
    m.checkpoint("children gone")


@pytest.fixture(scope="module")
def traces():
    good = run_traced(three_sharers, Machine(), "model")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(memory, "wp_can_reuse_anon_folio", lambda *a: False)  # never reuse: always copy
        wrong = run_traced(three_sharers, Machine(), "linux")
    return good, wrong


def test_the_same_run_has_no_difference_and_compares_every_region(traces) -> None:
    good, _ = traces
    v = build(good, good, compare(good, good))
    assert v.differences == [] and v.counted == v.excluded == 0
    # the region, per live process and checkpoint, at the model's address: 1 + 3 + 3 + 1 + 1 ("end")
    assert [(c.step, c.name) for c in v.compared].count((2, "parent#1")) == 3
    assert len(v.compared) == 9
    addr = good.places[0]["parent"][1]["parent#1"][0]
    assert {(c.start, c.end) for c in v.compared} == {(addr, addr + 3 * PAGE)}
    assert v.outside.startswith("mappings outside the scenario's regions: ")
    assert v.whole_process == "status / smaps_rollup / fault counts: " + EXCLUSIONS[
        "status / smaps_rollup / fault counts"]


def test_a_wrong_rule_is_placed_on_its_page(traces) -> None:
    good, wrong = traces
    diffs = compare(good, wrong)
    assert [(d.step, d.process, d.region, d.pages) for d in counted(diffs)] == [(2, "parent", "parent#1", (0,))]
    v = build(good, wrong, diffs, compare_events(good, wrong), "events: 3/4")
    pid, regions = good.places[2]["parent"]
    addr = regions["parent#1"][0]
    state = [d for d in v.differences if not d.event]
    assert [(d.scope, d.step, d.pid, d.pages, d.span) for d in state if d.counted] == [
        ("page", 2, pid, (addr,), (addr, addr + 3 * PAGE))]
    assert v.counted == 1 and v.excluded == len(diffs) - 1
    ev = [d for d in v.differences if d.event]
    assert [(d.scope, d.step, d.pid, d.span) for d in ev] == [("region", 2, pid, (addr, addr + 3 * PAGE))]
    assert v.event_counted == 1 and "cow-copy@0" in ev[0].text and v.events == "events: 3/4"


def test_ops_belong_to_the_checkpoint_that_closes_their_interval(traces) -> None:
    good, _ = traces
    other = run_traced(lambda m: (three_sharers(m), m.spawn("extra")), Machine(), "linux")
    diffs = [d for d in compare(good, other) if d.op is not None]
    assert diffs and all(d.step is None for d in diffs)  # the extra spawn came after every checkpoint
    v = build(good, other, diffs)
    assert {(d.scope, d.step) for d in v.differences} == {("run", 4)}  # the final "end" checkpoint


def test_excluded_differences_carry_the_text_verify_prints(traces) -> None:
    good, _ = traces
    moved = run_traced(three_sharers, Machine(), "linux")
    moved.checkpoints[1][1]["parent"]["info"] = {"status": {"VmRSS": 1}}
    v = build(good, moved, compare(good, moved))
    [d] = v.differences
    what = "status / smaps_rollup / fault counts"
    assert d.excluded == f"{what}: {EXCLUSIONS[what]}" and d.scope == "process" and d.step == 1
    assert d.pid == good.places[1]["parent"][0] and v.counted == 0 and v.excluded == 1
