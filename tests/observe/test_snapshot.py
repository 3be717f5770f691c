"""Snapshots read only what is populated: a huge, mostly untouched mapping costs neither time nor
memory, on both backends, and page states where pages are agree with a whole-range pagemap read."""

from __future__ import annotations

import os
import time
import tracemalloc

import numpy as np
import pytest

from cowscope.model import Machine as ModelMachine
from cowscope.observe.pages import PageStates, classify, merge_runs, populated_runs, run_pages, runs_of
from cowscope.observe.records import PM_PRESENT, PM_SOFT_DIRTY, PM_SWAP, pagemap_pfns
from cowscope.observe.snapshot import DENSE_PAGES, SCAN_PAGES, take
from cowscope.report import strips
from cowscope.report.payload import build_payload

PAGE = 4096
HUGE = 64 << 30        # 16 Mi pages: far above DENSE_PAGES
MIDDLE = 256 << 20     # 64 Ki pages: scanned (above SCAN_PAGES), kept per page
BACKENDS = ["model", pytest.param("linux", marks=pytest.mark.kernel)]


def machine(backend: str):
    if backend == "model":
        return ModelMachine(ram="256MiB")
    if os.geteuid() != 0:
        pytest.skip("PFNs and kpagecount need root")
    from cowscope.linux.machine import Machine

    return Machine()


def test_runs_helpers() -> None:
    assert runs_of(np.array([1, 2, 3, 7, 9, 10])).tolist() == [[1, 4], [7, 8], [9, 11]]
    assert merge_runs(np.array([[1, 4], [7, 8], [9, 11]]), 3).tolist() == [[1, 4], [7, 11]]
    assert run_pages(np.array([[1, 4], [7, 8], [9, 11]])).tolist() == [1, 2, 3, 7, 9, 10]
    assert run_pages(np.zeros((0, 2), dtype=np.int64)).tolist() == []
    entries = np.array([0, PM_PRESENT, PM_SOFT_DIRTY, PM_SWAP, 0], dtype=np.uint64)  # soft-dirty alone: a hole
    assert populated_runs(entries, 10).tolist() == [[11, 12], [13, 14]]


def test_sparse_states_count_and_draw_like_dense_ones() -> None:
    n = 1000
    index = np.array([0, 1, 500, 999])
    sparse = PageStates(np.array([2, 2, 1, 4], dtype=np.uint8), np.array([1, 1, 0, 3]), np.array([5, 6, 0, 9]),
                        index, n)
    dense = sparse.dense()
    assert len(sparse) == len(dense) == n and sparse.counts() == dense.counts()
    for width in (7, 48, 1000, 4000):
        assert strips.state_cells(sparse, width).tolist() == strips.cell_codes(strips.page_codes(dense),
                                                                                width).tolist()
    assert PageStates.untouched(n).counts() == {"not present": n}


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_untouched_mapping_is_summarised_not_walked(backend: str) -> None:
    with machine(backend) as m:
        p = m.spawn("P")
        big = p.mmap(HUGE, "r")
        p.read(big, 1)
        p.read(big + HUGE // 2 + 5 * PAGE, 1)  # two zero-page PTEs in 16 Mi pages
        mid = p.mmap(MIDDLE)
        p.fill(mid, 3 * PAGE, 1)
        p.fill(mid + MIDDLE - PAGE, PAGE, 2)
        p.madvise(mid + 100 * PAGE, PAGE, "guard_install")
        c = p.fork()
        c.write(mid, b"x")
        tracemalloc.start()
        t0 = time.perf_counter()
        snap = take(m, "now")
        seconds = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert seconds < 10 and peak < 64 << 20, (seconds, peak)  # was 128 MB of pagemap + arrays per GiB-ish
        for proc in (p, c):
            view = snap.process(proc.pid)
            mbig = next(v for v in view.mappings if v.vma.start == big)
            assert mbig.pages is not None and mbig.pages.sparse and len(mbig.pages) == HUGE // PAGE > DENSE_PAGES
            zero = 2 if proc is p else 0  # fork copies no PTE of a VMA without anon_vma
            assert mbig.pages.counts() == {"zero page": zero, "not present": HUGE // PAGE - zero} if zero else \
                {"not present": HUGE // PAGE}
            assert strips.strip(mbig.pages, 48).plain.startswith("." * 48)
            mmid = next(v for v in view.mappings if v.vma.start == mid)
            assert mmid.vma.npages > SCAN_PAGES and not mmid.pages.sparse
            whole = proc.pagemap_raw(mid, mmid.vma.npages)  # the old way: every entry
            want = classify(whole, m.kpagecount_array(pagemap_pfns(whole)), set(m.zero_pfns))
            for a in ("state", "mapcount", "pfn"):
                assert np.array_equal(getattr(mmid.pages, a), getattr(want, a)), a
            assert mmid.pages.counts()["swap/guard"] == 1
        assert build_payload([snap]) is not None
