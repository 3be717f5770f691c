"""Copied pages whose bytes still equal the parent's: counted exactly when few, sampled when many."""

from __future__ import annotations

import numpy as np
import pytest
from forktree import PAGE, TreePlan, WorkerPlan

from cowscope.inspect import content
from cowscope.inspect.sample import Sampler
from cowscope.observe.procmem import read_pieces

pytestmark = pytest.mark.kernel
KB = PAGE // 1024

# One worker: 7 pages copied with new bytes, 5 written with the byte already there (copied, identical),
# and 3 the master rewrote with new bytes (the worker keeps the old page: copied, different).
PLAN = TreePlan(touched=40, tail=0, master_rewrites=3, workers=[
    WorkerPlan(copy_from=10, copies=7, same_from=20, same_copies=5)])


def region(pf, t):
    return next(m for m in pf.mappings if m.start <= t.r_addr < m.end)


def test_identical_copies_are_counted_exactly(make_tree) -> None:
    t = make_tree(PLAN)
    w = Sampler([t.master], tree=True, mode="exact", compare_pages=100_000).sample().process(t.workers[0])
    r = region(w, t)
    assert r.copied_kb == (7 + 5 + 3) * KB
    assert w.copied_compared_kb == w.copied_kb  # under the bound: every copied page compared
    assert r.copied_identical_kb == 5 * KB


def test_many_copies_are_sampled_within_the_bound(make_tree, monkeypatch) -> None:
    t = make_tree(PLAN)
    calls = []
    real = content.read_pieces

    def counting(pid, addrs, size):
        calls.append(len(addrs))
        return real(pid, addrs, size)

    monkeypatch.setattr(content, "read_pieces", counting)
    w = Sampler([t.master], tree=True, mode="exact", compare_pages=6).sample().process(t.workers[0])
    assert w.copied_compared_kb == 6 * KB and max(calls) == 6
    # Scaled back to all copied pages; the exact count is 5 of R's 15 plus whatever the worker's
    # Python copied elsewhere, so only the bounds are certain here.
    assert 0 <= w.copied_identical_kb <= w.copied_kb
    assert w.copied_identical_kb % KB == 0


def test_read_pieces_reads_scattered_pieces_around_holes(make_tree) -> None:
    t = make_tree(TreePlan(touched=8, tail=0, master_rewrites=0, workers=[]))
    addrs = np.array([0x1000, t.r_addr, t.r_addr + 16, t.r_addr + 3 * PAGE, t.r_addr + 5 * PAGE + 100],
                     dtype=np.uint64)
    out, ok = read_pieces(t.master, addrs, 16)
    assert ok.tolist() == [False, True, True, True, True]  # nothing is mapped at 0x1000
    assert out[1:4, 0].tolist() == [1, 0, 1] and out[4].tolist() == [0] * 16


def test_reading_a_shared_page_does_not_unshare_it(make_tree) -> None:
    """process_vm_readv's read-only pin would make the kernel copy a page shared after fork; the
    inspector's reads must leave every frame where it was."""
    from cowscope.observe.procfs import read_pagemap
    from cowscope.observe.records import pagemap_pfns

    t = make_tree(TreePlan(touched=8, tail=0, master_rewrites=0, workers=[WorkerPlan(), WorkerPlan()]))
    pids = [t.master, *t.workers]
    before = {p: pagemap_pfns(read_pagemap(p, t.r_addr, 8)).tolist() for p in pids}
    addrs = (t.r_addr + np.arange(8) * PAGE).astype(np.uint64)
    for p in pids:
        assert read_pieces(p, addrs, PAGE)[1].all()
    after = {p: pagemap_pfns(read_pagemap(p, t.r_addr, 8)).tolist() for p in pids}
    assert after == before and before[t.master] == before[t.workers[0]]
