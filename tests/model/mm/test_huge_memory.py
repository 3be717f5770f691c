"""Transparent huge pages in the model: modes, the huge zero page, split, reuse, old-kernel rules,
fallback and the deferred split queue (facts from /work/shared/reference and measured on 6.18)."""

from __future__ import annotations

import numpy as np
import pytest

from cowscope.model import Machine
from cowscope.model.mm.page_alloc import FOLIO_NR, PG_COMPOUND, PG_HEAD, OutOfMemory, PhysMem

P = 4096
HUGE = 2 << 20


def block(p, n: int = 1, advise: bool = True) -> int:
    """n aligned 2 MiB blocks inside a larger private anon mapping (MADV_HUGEPAGE unless not)."""
    base = p.mmap((n + 1) * HUGE)
    a = (base + HUGE - 1) & ~(HUGE - 1)
    if advise:
        p.madvise(a, n * HUGE, "hugepage")
    return a


def ahp(p, a: int) -> int:
    return next(s for s in p.smaps() if s.vma.start <= a < s.vma.end).fields["AnonHugePages"]


def vmstat_delta(m: Machine, before: dict[str, int]) -> dict[str, int]:
    now = m.vmstat()
    return {k: now[k] - before.get(k, 0) for k in now if k.startswith("thp_") and now[k] != before.get(k, 0)}


@pytest.mark.parametrize(("mode", "advise", "huge"), [
    ("madvise", True, True), ("madvise", False, False), ("always", False, True), ("never", True, False)])
def test_thp_modes(mode: str, advise: bool, huge: bool) -> None:
    m = Machine(thp=mode)
    p = m.spawn()
    a = block(p, advise=advise)
    p.write(a, b"x")
    assert ahp(p, a) == (2048 if huge else 0)
    assert m.meminfo()["AnonHugePages"] == (2048 if huge else 0)
    sm = next(s for s in p.smaps() if s.vma.start <= a < s.vma.end)
    assert sm.thp_eligible == int(huge)
    m.check()


def test_bad_thp_mode_and_kernel_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="thp must be one of"):
        Machine(thp="sometimes")
    with pytest.raises(ValueError, match="kernel must look like"):
        Machine(kernel="linux")


def test_nohugepage_wins_over_always() -> None:
    m = Machine(thp="always")
    p = m.spawn()
    a = block(p, advise=False)
    p.madvise(a, HUGE, "nohugepage")
    p.write(a, b"x")
    assert ahp(p, a) == 0


def test_without_huge_zero_page_a_read_maps_a_folio() -> None:
    m = Machine(thp_zero_page=False)
    p = m.spawn()
    a = block(p)
    assert p.read(a, 4) == bytes(4)
    assert ahp(p, a) == 2048 and p.pagemap(a, 1)[0].flags() == "PX"


def test_fill_and_contents_through_a_pmd() -> None:
    m = Machine()
    p = m.spawn()
    a = block(p, 2)
    p.fill(a, 2 * HUGE, 0x5A)
    p.write(a + HUGE + 3 * P + 5, b"hello")
    assert ahp(p, a) == 4096
    assert p.read(a + HUGE + 3 * P + 3, 9) == b"\x5a\x5ahello\x5a\x5a"
    c = p.fork()
    c.write(a + 7, b"C")
    assert (p.read(a + 5, 4), c.read(a + 5, 4)) == (b"\x5a" * 4, b"\x5a\x5aC\x5a")
    assert c.read(a + HUGE + 3 * P + 5, 5) == b"hello"
    m.check()


def test_vmstat_counters_and_vmpte() -> None:
    m = Machine()
    p = m.spawn()
    a = block(p, 2)
    pte = p.status().fields["VmPTE"]
    before = m.vmstat()
    p.write(a, b"x")
    p.read(a + HUGE, 1)
    assert vmstat_delta(m, before) == {"thp_fault_alloc": 1, "thp_zero_page_alloc": 1}
    assert p.status().fields["VmPTE"] - pte == 8  # one deposited table per huge PMD
    assert m.vmstat()["nr_anon_transparent_hugepages"] == 1
    c = p.fork()
    before = m.vmstat()
    c.write(a + P, b"y")
    assert vmstat_delta(m, before) == {"thp_split_pmd": 1}
    c.exit(0)
    p.munmap(a + 5 * P, P)
    assert vmstat_delta(m, before) == {"thp_split_pmd": 2, "thp_deferred_split_page": 1}
    m.check()


def test_rule_before_5_8_copies_the_whole_folio() -> None:
    m = Machine(kernel="5.4")
    p = m.spawn()
    a = block(p)
    p.fill(a, HUGE, 0x11)
    c = p.fork()
    c.write(a, b"\x02")
    assert ahp(c, a) == 2048 and ahp(p, a) == 2048
    assert [e.pfn for e in c.pagemap(a, 2)] != [e.pfn for e in p.pagemap(a, 2)]
    assert [ev.kind for ev in m.events][-1] == "thp-copy"
    assert (c.read(a, 2), p.read(a, 2)) == (b"\x02\x11", b"\x11\x11")
    m.check()


def test_rule_before_6_13_splits_the_huge_zero_page() -> None:
    m = Machine(kernel="6.1")
    p = m.spawn()
    a = block(p)
    p.read(a, 1)
    p.write(a + P, b"x")
    assert ahp(p, a) == 0
    assert [e.flags() for e in p.pagemap(a, 3)] == ["P", "PX", "P"]  # zero pages around the copy
    m.check()


def test_rule_before_6_15_copies_a_pte_mapped_subpage() -> None:
    for kernel, reused in (("6.18", True), ("6.12", False)):
        m = Machine(kernel=kernel)
        p = m.spawn()
        a = block(p)
        p.fill(a, HUGE, 1)
        c = p.fork()
        c.write(a, b"\x02")
        p.write(a + 7 * P, b"\x07")
        c.exit(0)
        before = p.pagemap(a + 11 * P, 1)[0].pfn
        p.write(a + 11 * P, b"\x0b")
        assert (p.pagemap(a + 11 * P, 1)[0].pfn == before) is reused, kernel


def test_thp_allocation_falls_back_to_4k_when_no_folio_fits() -> None:
    m = Machine(ram="3MiB", overcommit_memory=1)  # a 4 MiB mapping: more than the default heuristic grants
    p = m.spawn()
    a = block(p, 2)
    p.write(a, b"x")
    before = m.vmstat()
    p.write(a + HUGE, b"y")  # the remaining RAM has no free 2 MiB folio
    assert vmstat_delta(m, before) == {"thp_fault_fallback": 1}
    assert p.pagemap(a + HUGE, 1)[0].flags() == "PX" and ahp(p, a) == 2048
    m.check()


def test_memory_pressure_splits_deferred_folios_before_oom() -> None:
    m = Machine(ram="4MiB")
    p = m.spawn()
    a = block(p)
    p.fill(a, HUGE, 1)
    p.madvise(a + P, HUGE - P, "dontneed")  # one subpage left mapped: 511 frames stay allocated
    assert m.phys.deferred and m.meminfo()["MemFree"] < 2 * 1024
    b = p.mmap(600 * P)
    p.fill(b, 600 * P, 2)  # needs the deferred folio's free subpages
    assert not m.phys.deferred and m.vmstat()["thp_split_page"] == 1
    assert p.read(a, 1) == b"\x01" and p.alive
    m.check()


def test_mremap_of_a_huge_range_moves_its_pages() -> None:
    m = Machine()
    p = m.spawn()
    a = block(p)
    p.fill(a, HUGE, 7)
    n = p.mremap(a, HUGE, 2 * HUGE)
    assert p.read(n + HUGE - 1, 1) == b"\x07"
    m.check()


def test_folio_allocation_is_aligned_and_freed_whole() -> None:
    ph = PhysMem(4 * FOLIO_NR)
    ph.alloc(3, 0)
    head = ph.alloc_folio(0)
    assert head % FOLIO_NR == 0 and ph.flags[head] & PG_HEAD
    assert np.all(ph.flags[head:head + FOLIO_NR] & PG_COMPOUND)
    assert ph.nr_used == 3 + FOLIO_NR
    ph.entire[head >> 9] = 1
    ph.entire[head >> 9] = 0
    ph.folio_put(head)  # nothing references it any more
    assert ph.nr_used == 3 and ph.nr_folios == 0
    assert ph.alloc_folio(0) == head  # the freed block is reused whole
    with pytest.raises(OutOfMemory):
        PhysMem(100).alloc_folio(0)
