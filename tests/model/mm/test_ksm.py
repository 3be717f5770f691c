"""KSM in the model: merging, counters and ksm_stat, copy on write, fork and teardown with a frame
mapped at several PTEs of one range, unmerge."""

from __future__ import annotations

from cowscope.model import Machine

P = 4096


def _merged(npages: int = 4):
    m = Machine()
    p = m.spawn()
    a = p.mmap(npages * P)
    p.fill(a, npages * P, 0x41)
    p.madvise(a, npages * P, "mergeable")
    m.ksm_scan()
    return m, p, a


def test_scan_merges_and_counts() -> None:
    m = Machine()
    p = m.spawn()
    a = p.mmap(4 * P)
    p.fill(a, 4 * P, 0x41)
    p.madvise(a, 4 * P, "mergeable")
    anon = m.meminfo()["AnonPages"]
    m.ksm_scan()
    assert len({e.pfn for e in p.pagemap(a, 4)}) == 1 and m.kpagecount(p.pagemap(a, 1)[0].pfn) == 4
    assert m.ksm_counters()["pages_shared"] == 1 and m.ksm_counters()["pages_sharing"] == 3
    assert p.ksm_stat()["ksm_merging_pages"] == 4 and p.ksm_stat()["ksm_process_profit"] == 4 * 4096 - 4 * 64
    assert anon - m.meminfo()["AnonPages"] == 12  # three of the four frames freed
    assert [ev.kind for ev in m.events].count("ksm-merge") == 4
    m.check()


def test_fork_exit_and_munmap_keep_counts_with_repeated_frames() -> None:
    m, p, a = _merged(6)
    kids = [p.fork() for _ in range(3)]
    assert m.kpagecount(p.pagemap(a, 1)[0].pfn) == 24
    m.check()
    for c in kids:
        c.write(a + P, b"x")
        c.exit(0)
    p.munmap(a, 3 * P)
    assert m.kpagecount(p.pagemap(a + 3 * P, 1)[0].pfn) == 3
    m.check()
    p.munmap(a + 3 * P, 3 * P)
    m.check()
    assert m.vmstat()["cow_ksm"] == 3


def test_write_copies_and_unmerge_restores_private_pages() -> None:
    m, p, a = _merged(3)
    p.write(a, b"\x01")
    assert p.pagemap(a, 1)[0].flags() == "PX" and m.vmstat()["cow_ksm"] == 1
    p.madvise(a, 3 * P, "unmergeable")
    assert len({e.pfn for e in p.pagemap(a, 3)}) == 3 and m.vmstat()["cow_ksm"] == 3
    assert p.read(a, 2) == b"\x01\x41" and p.read(a + 2 * P, 1) == b"\x41"
    assert "mg" not in next(s for s in p.smaps() if s.vma.start <= a < s.vma.end).vm_flags
    m.check()


def test_pageout_skips_ksm_pages() -> None:
    m = Machine(swap="1MiB")
    p = m.spawn()
    a = p.mmap(2 * P)
    p.fill(a, 2 * P, 7)
    p.madvise(a, 2 * P, "mergeable")
    m.ksm_scan()
    p.madvise(a, 2 * P, "pageout")
    assert [e.flags() for e in p.pagemap(a, 2)] == ["P", "P"]
    m.check()


def test_a_scan_with_nothing_mergeable_changes_nothing() -> None:
    m = Machine()
    p = m.spawn()
    a = p.mmap(2 * P)
    p.fill(a, 2 * P, 7)
    m.ksm_scan()
    assert p.pagemap(a, 1)[0].flags() == "PX" and p.ksm_stat()["ksm_mergeable"] == "no"
    assert m.ksm_counters()["full_scans"] == 2
