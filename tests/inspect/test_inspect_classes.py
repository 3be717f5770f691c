"""Page classes of real fork trees must match the designed numbers exactly, page for page."""

from __future__ import annotations

import subprocess
import sys

import pytest
from forktree import PAGE, Tree, TreePlan, WorkerPlan, range_classes

from cowscope.inspect import classify as cl
from cowscope.inspect.figures import ProcessFigures
from cowscope.inspect.sample import MAX_MAPPING_PAGES, Sampler
from cowscope.observe import kpage, procfs
from cowscope.observe.records import pagemap_pfns

pytestmark = pytest.mark.kernel

KB = PAGE // 1024


def vma_of(pf: ProcessFigures, addr: int):
    """The mapping figures containing addr."""
    return next(m for m in pf.mappings if m.start <= addr < m.end)


PLAN = TreePlan(touched=64, tail=32, master_rewrites=4, workers=[
    WorkerPlan(copy_from=10, copies=5, zero_reads=3, new_in_r=2, own_pages=7),
    WorkerPlan(copy_from=20, copies=9, new_in_r=1, own_pages=3),
    WorkerPlan(copy_from=40, copies=12, zero_reads=6, children=[WorkerPlan()]),
])


def expected_worker(plan: TreePlan, wp: WorkerPlan) -> dict[int, int]:
    """Classes of a worker's view of R by design (grandchildren share its copies, not its parent's)."""
    siblings = len(plan.workers) > 1
    rewrites = plan.master_rewrites
    exp = {cl.SHARED_PARENT: plan.touched - rewrites - wp.copies}
    own = wp.copies + wp.new_in_r
    if wp.children:
        # Everything the worker owns is also mapped by its child, forked after its writes.
        exp[cl.SIBLING] = rewrites + own
    else:
        if siblings:
            exp[cl.SIBLING] = rewrites
        exp[cl.COPIED] = wp.copies + (0 if siblings else rewrites)
        exp[cl.NEW] = wp.new_in_r
    exp[cl.ZERO] = wp.zero_reads
    exp[cl.NOT_PRESENT] = plan.tail - wp.zero_reads - wp.new_in_r
    return {k: v for k, v in exp.items() if v}


def test_worker_classes_match_design_page_for_page(make_tree) -> None:
    t: Tree = make_tree(PLAN)
    s = Sampler([t.master], tree=True, mode="exact").sample()
    assert not s.missed
    npages = PLAN.touched + PLAN.tail
    for pid, wp in zip(t.workers, PLAN.workers, strict=True):
        pf = s.process(pid)
        assert pf.parent_in_tree and pf.ppid == t.master
        assert range_classes(pf, t.r_addr, npages) == expected_worker(PLAN, wp), f"worker {pid}"
        if wp.own_pages:
            assert range_classes(pf, t.own_addrs[pid], wp.own_pages) == {cl.NEW: wp.own_pages}
    grandchildren = [(pid, g[0]) for pid, g in t.grandchildren.items() if g]
    assert len(grandchildren) == 1
    for pid, g in grandchildren:
        gpf = s.process(g)
        assert gpf.ppid == pid
        wp = PLAN.workers[t.workers.index(pid)]
        touched = PLAN.touched + wp.new_in_r
        assert range_classes(gpf, t.r_addr, npages) == {
            cl.SHARED_PARENT: touched, cl.ZERO: wp.zero_reads,
            cl.NOT_PRESENT: npages - touched - wp.zero_reads}
    master = s.process(t.master)
    assert not master.parent_in_tree and master.copied_kb is None
    # The master's rewritten pages are its own; every other touched page is still shared with a worker.
    assert range_classes(master, t.r_addr, npages) == {
        cl.OWN: PLAN.master_rewrites, cl.SHARED_PARENT: PLAN.touched - PLAN.master_rewrites,
        cl.NOT_PRESENT: PLAN.tail}


def test_one_worker_owns_the_masters_rewritten_frames(make_tree) -> None:
    plan = TreePlan(touched=32, tail=8, master_rewrites=6, workers=[WorkerPlan(copy_from=8, copies=3)])
    t = make_tree(plan)
    s = Sampler([t.master], tree=True, mode="exact").sample()
    pf = s.process(t.workers[0])
    # No sibling keeps the old frames: after the master's rewrite they are the worker's alone.
    assert range_classes(pf, t.r_addr, 40) == {cl.SHARED_PARENT: 32 - 6 - 3, cl.COPIED: 6 + 3,
                                               cl.NOT_PRESENT: 8}


def test_mapping_and_process_figures_agree_with_the_kernel(make_tree) -> None:
    t = make_tree(PLAN)
    s = Sampler([t.master], tree=True, mode="exact").sample()
    for pf in s.processes:
        m = vma_of(pf, t.r_addr) if pf.pid in (t.master, *t.workers) else None
        if m is not None:
            kernel = next(e for e in procfs.read_smaps(pf.pid) if e.vma.start == m.start)
            uss = kernel["Private_Clean"] + kernel["Private_Dirty"]
            assert (m.rss_kb, m.pss_kb, m.uss_kb, m.swap_kb) == (
                kernel["Rss"], kernel["Pss"], uss, kernel["Swap"])
            if pf.parent_in_tree:
                assert m.rss_kb == (m.shared_with_parent_kb or 0) + (m.sibling_shared_kb or 0) + (
                    m.copied_kb or 0) + (m.new_kb or 0)
        for k in ("shared_with_parent_kb", "sibling_shared_kb", "copied_kb", "new_kb"):
            v = getattr(pf, k)
            assert v is None or v == sum(getattr(mm, k) for mm in pf.mappings)
        if pf.parent_in_tree:
            classes = sum(getattr(pf, k) for k in ("shared_with_parent_kb", "sibling_shared_kb", "copied_kb",
                                                   "new_kb"))
            assert classes == sum(mm.rss_kb for mm in pf.mappings)
    w = s.process(t.workers[0])
    wp = PLAN.workers[0]
    assert vma_of(w, t.r_addr).uss_kb == (wp.copies + wp.new_in_r) * KB


def _frames_of(pids: list[int]) -> set[int]:
    """Every frame the processes map, counted here: zero pages, special mappings and mappings too
    large to read page by page left out, as the sampler leaves them out (with a note). The tree's
    processes are forks of this test process, whose own reservations come with them (after a full
    suite run: a 900 GB virtual mapping with 57 resident pages)."""
    zero = kpage.zero_page_pfns()
    frames: set[int] = set()
    for pid in pids:
        for m in procfs.read_maps(pid):
            if m.start >= procfs.USER_SPACE_END or m.path in procfs.SPECIAL_MAPPINGS:
                continue
            if m.npages > MAX_MAPPING_PAGES:
                continue
            for pfn in pagemap_pfns(procfs.read_pagemap(pid, m.start, m.npages)).tolist():
                if pfn and pfn not in zero:
                    frames.add(pfn)
    return frames


@pytest.mark.parametrize("reservation", [False, True])
def test_unique_memory_counts_each_frame_once(make_tree, reservation: bool) -> None:
    """The sample's unique memory is the frames counted independently, at a moment the frames do
    not change (the kernel may move a page while it compacts memory: a sample that straddles it
    is taken again, up to five times); a reservation too large to read page by page (here 20 GiB,
    3 pages resident, inherited by the whole tree) is left out and noted."""
    import mmap

    big = mmap.mmap(-1, 20 << 30, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x4000) if reservation else None
    for i in range(3 if big is not None else 0):  # 0x4000: MAP_NORESERVE
        big[i * (1 << 20)] = 1
    t = make_tree(PLAN)
    pids = t.all_pids()
    for _ in range(5):
        before = _frames_of(pids)
        s = Sampler([t.master], tree=True, mode="exact").sample()
        frames = _frames_of(pids)
        if frames == before:
            break
    assert sorted(pf.pid for pf in s.processes) == sorted(pids)
    too_big = any(m.npages > MAX_MAPPING_PAGES for m in procfs.read_maps(t.master))
    assert too_big == any("too large to read page by page" in n for n in s.notes)
    assert s.totals.unique_kb == len(frames) * KB
    assert s.totals.rss_sum_kb == sum(p.rss_kb for p in s.processes)
    assert s.totals.parent_rss_kb == s.process(t.master).rss_kb
    assert s.totals.copied_kb == sum(s.process(w).copied_kb for w in t.workers) + sum(
        s.process(g[0]).copied_kb for g in t.grandchildren.values() if g)


def test_estimate_mode_without_pfns_says_what_it_cannot_know(make_tree) -> None:
    t = make_tree(PLAN)
    exact = Sampler([t.master], tree=True, mode="exact").sample()
    est = Sampler([t.master], tree=True, mode="estimate").sample()
    assert est.mode == "estimate" and est.totals.unique_kb is None
    assert any("cannot" in n for n in est.notes)
    wp = PLAN.workers[0]
    pf = est.process(t.workers[0])
    assert not pf.exact
    # The exclusive bit gets copies and new pages right; zero-page reads look shared.
    assert range_classes(pf, t.r_addr, 96) == {
        cl.SHARED_PARENT: PLAN.touched - PLAN.master_rewrites - wp.copies,
        cl.SIBLING: PLAN.master_rewrites + wp.zero_reads, cl.COPIED: wp.copies, cl.NEW: wp.new_in_r,
        cl.NOT_PRESENT: PLAN.tail - wp.zero_reads - wp.new_in_r}
    me, mx = vma_of(pf, t.r_addr), vma_of(exact.process(t.workers[0]), t.r_addr)
    assert (me.rss_kb, me.pss_kb, me.uss_kb) == (mx.rss_kb, mx.pss_kb, mx.uss_kb)


def test_summary_mode_reports_rollup_figures_only(make_tree) -> None:
    t = make_tree(TreePlan(workers=[WorkerPlan(copies=3)]))
    pids = [t.master, t.workers[0]]
    before = {p: procfs.read_smaps_rollup(p) for p in pids}
    s = Sampler(pids, mode="summary").sample()
    after = {p: procfs.read_smaps_rollup(p) for p in pids}
    for pf in s.processes:
        # Shared library pages turn private when other processes unmap them: bracket the read.
        b, a = before[pf.pid], after[pf.pid]
        assert pf.rss_kb == b["Rss"] == a["Rss"] and pf.swap_kb == b["Swap"]
        ub, ua = (r["Private_Clean"] + r["Private_Dirty"] for r in (b, a))
        assert min(ub, ua) <= pf.uss_kb <= max(ub, ua)
        assert pf.copied_kb is None and pf.mappings == []


def test_exact_process_totals_equal_smaps_rollup(make_tree) -> None:
    t = make_tree(PLAN)
    pids = t.all_pids()
    before = {p: procfs.read_smaps_rollup(p) for p in pids}
    s = Sampler([t.master], tree=True, mode="exact").sample()
    after = {p: procfs.read_smaps_rollup(p) for p in pids}
    for pf in s.processes:
        b, a = before[pf.pid], after[pf.pid]
        assert (pf.rss_kb, pf.swap_kb) == (b["Rss"], b["Swap"]) == (a["Rss"], a["Swap"])
        # The master still shares pages with this test process, which keeps writing its own: pages
        # turn private and PSS rises while we read. Bracket by the kernel's figures before and after.
        ub, ua = (r["Private_Clean"] + r["Private_Dirty"] for r in (b, a))
        assert min(ub, ua) <= pf.uss_kb <= max(ub, ua)
        assert min(b["Pss"], a["Pss"]) - 8 <= pf.pss_kb <= max(b["Pss"], a["Pss"]) + 8
        assert pf.rss_kb == sum(m.rss_kb for m in pf.mappings)


def test_huge_mappings_are_left_to_the_kernels_totals(make_tree, monkeypatch) -> None:
    from cowscope.inspect import sample as sample_mod

    t = make_tree(TreePlan(touched=64, tail=32, workers=[WorkerPlan(copy_from=10, copies=5)]))
    monkeypatch.setattr(sample_mod, "MAX_MAPPING_PAGES", 90)  # R has 96 pages
    s = Sampler([t.master], tree=True, mode="exact").sample()
    w = s.process(t.workers[0])
    assert not any(m.start <= t.r_addr < m.end for m in w.mappings)
    assert any(f"{t.r_addr:x}-" in n and "too large" in n for n in s.notes)
    r = procfs.read_smaps_rollup(w.pid)
    assert w.rss_kb == r["Rss"] and w.rss_kb > sum(m.rss_kb for m in w.mappings)


HUGE_ZERO_READER = """
import ctypes, mmap, sys, time
huge = 2 << 20
m = mmap.mmap(-1, 2 * huge, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
base = ctypes.addressof(ctypes.c_char.from_buffer(m))
off = -base % huge
m.madvise(mmap.MADV_HUGEPAGE, off, huge)
_ = m[off]  # a read fault on a THP-eligible 2 MiB block maps the huge zero page
print(hex(base + off), flush=True)
time.sleep(60)
"""


def test_huge_zero_page_is_not_resident_memory(make_tree) -> None:
    """A read-only THP block maps the huge zero page: smaps does not count it in Rss, nor may we."""
    if not kpage.huge_zero_pfns():
        pytest.skip("THP does not map the huge zero page here (THP never, or use_zero_page 0)")
    p = subprocess.Popen([sys.executable, "-c", HUGE_ZERO_READER], stdout=subprocess.PIPE, text=True)
    try:
        addr = int(p.stdout.readline(), 16)
        s = Sampler([p.pid], mode="exact").sample()
        pf = s.process(p.pid)
        m = vma_of(pf, addr)
        assert m.zero_kb >= 2048 and m.rss_kb < 2048
        assert pf.rss_kb == procfs.read_smaps_rollup(p.pid)["Rss"]
    finally:
        p.kill()
        p.wait()
