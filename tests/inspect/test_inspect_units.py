"""Classification and helpers on synthetic pagemap arrays (no kernel needed)."""

from __future__ import annotations

import numpy as np

from cowscope.inspect import classify as cl
from cowscope.inspect.render import fmt_kb, sparkline
from cowscope.inspect.run import DutyCycle
from cowscope.observe.records import PM_MMAP_EXCLUSIVE, PM_PRESENT, PM_SWAP, MapsEntry

P = np.uint64(PM_PRESENT)
X = np.uint64(PM_MMAP_EXCLUSIVE)
ZERO_PFN = 7


def pages(vma: MapsEntry, entries: list[int]) -> cl.ProcPages:
    """ProcPages of one mapping from raw entries."""
    return cl.ProcPages.decode([vma], [np.array(entries, dtype=np.uint64)], {ZERO_PFN})


def present(pfn: int, excl: bool = False) -> int:
    """A present pagemap entry."""
    return int(P) | (int(X) if excl else 0) | pfn


VMA = MapsEntry(0x10000, 0x10000 + 6 * 4096, "rw-p")


def test_exact_classes_by_frame_identity_and_tree_counts() -> None:
    parent = pages(VMA, [present(100), present(101), present(102), 0, present(ZERO_PFN), PM_SWAP])
    child = pages(VMA, [present(100), present(201), present(202), present(203), present(204), present(205)])
    table = cl.PfnTable([parent.pfn, child.pfn, np.array([201])])  # a sibling maps frame 201
    codes = cl.classify_pages(child, cl.align_parent(parent, child), table.tree_count(child.pfn), exact=True)
    assert codes.tolist() == [cl.SHARED_PARENT, cl.SIBLING, cl.COPIED, cl.NEW, cl.NEW, cl.COPIED]
    root = cl.classify_pages(parent, None, table.tree_count(parent.pfn), exact=True)
    assert root.tolist() == [cl.SHARED_PARENT, cl.OWN, cl.OWN, cl.NOT_PRESENT, cl.ZERO, cl.SWAP]


def test_estimate_uses_the_exclusive_bit() -> None:
    parent = pages(VMA, [present(0), present(0, True), present(0), 0, 0, 0])
    child = pages(VMA, [present(0), present(0), present(0, True), present(0, True), 0, 0])
    codes = cl.classify_pages(child, cl.align_parent(parent, child), None, exact=False)
    assert codes.tolist() == [cl.SHARED_PARENT, cl.SIBLING, cl.COPIED, cl.NEW, 0, 0]


def test_zero_pages_small_and_huge_are_not_resident() -> None:
    huge = range(1024, 1536)  # the huge zero page's 512 subpages
    vma = MapsEntry(0x10000, 0x10000 + 6 * 4096, "rw-p")
    entries = [present(ZERO_PFN), present(1024), present(1535), present(1536), present(1023), 0]
    pp = cl.ProcPages.decode([vma], [np.array(entries, dtype=np.uint64)], {ZERO_PFN, *huge})
    assert pp.zero.tolist() == [True, True, True, False, False, False]
    assert pp.real.tolist() == [False, False, False, True, True, False]
    assert pp.pfn.tolist() == [0, 0, 0, 1536, 1023, 0]
    assert cl.pfn_runs({ZERO_PFN, *huge}) == [(ZERO_PFN, ZERO_PFN + 1), (1024, 1536)]


def test_parent_alignment_across_split_mappings() -> None:
    a = MapsEntry(0x10000, 0x12000, "rw-p")
    b = MapsEntry(0x12000, 0x14000, "r--p")
    parent = cl.ProcPages.decode([a, b], [np.array([present(1), present(2)], dtype=np.uint64),
                                          np.array([present(3), present(4)], dtype=np.uint64)], ())
    child = cl.ProcPages.decode([MapsEntry(0x11000, 0x14000, "rw-p")],
                                [np.array([present(2), present(9), present(4)], dtype=np.uint64)], ())
    view = cl.align_parent(parent, child)
    assert view.pfn.tolist() == [2, 3, 4]


def test_sparse_and_dense_frame_tables_agree(monkeypatch) -> None:
    rng = np.random.default_rng(5)
    arrays = [rng.integers(0, 5000, 2000) for _ in range(4)]
    shared = [arrays[1][:50]]
    dense = cl.PfnTable(arrays, shared)
    monkeypatch.setattr(cl, "DENSE_PFN_LIMIT", 10)
    sparse = cl.PfnTable(arrays, shared)
    assert dense.dense and not sparse.dense
    assert dense.unique.tolist() == sparse.unique.tolist()
    assert dense.need.tolist() == sparse.need.tolist() == sorted(set(shared[0].tolist()) - {0})
    counts = np.arange(len(dense.need)) + 2
    dense.set_mapcounts(counts)
    sparse.set_mapcounts(counts)
    probe = np.concatenate([arrays[0], arrays[1][:60], [0, 4999, 12345 % 5000, 10**6]])
    assert dense.tree_count(probe).tolist() == sparse.tree_count(probe).tolist()
    assert dense.mapcount(probe).tolist() == sparse.mapcount(probe).tolist()
    expect = {int(p): int(c) for p, c in zip(dense.need, counts, strict=True)}
    got = dense.mapcount(probe).tolist()
    for pfn, mc in zip(probe.tolist(), got, strict=True):
        in_tree = pfn > 0 and any(pfn in a for a in arrays)
        assert mc == (expect.get(pfn, 1) if in_tree else 0)


def test_pss_weights_follow_the_kernels_fixed_point() -> None:
    w = cl.pss_weights(np.array([1, 2, 3, 3, 3]))
    assert cl.pss_kb(int(w.sum())) == (4096 + 2048 + 3 * ((4096 << 12) // 3 >> 12)) // 1024


def test_sparkline_and_sizes() -> None:
    assert sparkline([1, 2, 3, 4], 4) == "▃▅▆█"
    assert sparkline([5, 5], 10) == "▅▅"
    assert fmt_kb(None) == "-" and fmt_kb(512) == "512k" and fmt_kb(20 * 1024) == "20.0M"


def test_duty_cycle_arithmetic() -> None:
    d = DutyCycle(0.25)
    assert d.allow(0.0)
    d.record(10.0, 0.5)  # half a second of reading buys two seconds of rest at 25 %
    assert not d.allow(11.9) and d.allow(12.0)
    assert "25%" in d.skip_reason(11.0) and d.skipped == 1
