"""Swap in the model: the swap device, the swap cache, memory pressure before the OOM killer."""

from __future__ import annotations

import pytest

from cowscope.errors import CowscopeError, OOMKilled
from cowscope.model import Machine
from cowscope.observe.records import KPF_SWAPCACHE

P = 4096


def test_memory_pressure_swaps_out_before_the_oom_killer() -> None:
    m = Machine(ram="2MiB", swap="16MiB")
    p = m.spawn()
    a = p.mmap(1024 * P)  # 4 MiB of private anon memory in 2 MiB of RAM
    for i in range(1024):
        p.fill(a + i * P, P, i & 0xFF)
    assert p.alive and m.vmstat()["pswpout"] >= 512 and p.status()["VmSwap"] > 0
    assert [p.read(a + i * P, 1)[0] for i in range(0, 1024, 37)] == [i & 0xFF for i in range(0, 1024, 37)]
    assert m.vmstat()["pswpin"] > 0 and p.fault_counts()["major"] > 0
    m.check()


def test_without_swap_the_oom_killer_runs() -> None:
    m = Machine(ram="2MiB", overcommit_memory=1)  # 4 MiB mapped: more than the default heuristic grants
    p = m.spawn()
    a = p.mmap(1024 * P)
    with pytest.raises(OOMKilled):
        for i in range(1024):
            p.fill(a + i * P, P, 1)
    m.check()


def test_pageout_without_swap_does_nothing_and_full_swap_stops() -> None:
    m = Machine()
    p = m.spawn()
    a = p.mmap(4 * P)
    p.fill(a, 4 * P, 7)
    p.madvise(a, 4 * P, "pageout")
    assert [e.flags() for e in p.pagemap(a, 4)] == ["PX"] * 4
    m2 = Machine(swap=3 * P)  # two usable slots
    q = m2.spawn()
    b = q.mmap(4 * P)
    q.fill(b, 4 * P, 7)
    q.madvise(b, 4 * P, "pageout")
    assert [e.flags() for e in q.pagemap(b, 4)] == ["S", "S", "PX", "PX"]
    assert m2.meminfo()["SwapFree"] == 0 and q.read(b, 1) == b"\x07"
    m2.check()


def test_swap_views_meminfo_vmstat_kpageflags() -> None:
    m = Machine(swap="1MiB")
    p = m.spawn()
    a = p.mmap(2 * P)
    p.write(a, b"abc")
    pfn = p.pagemap(a, 1)[0].pfn
    p.madvise(a, P, "pageout")
    mi = m.meminfo()
    assert (mi["SwapTotal"], mi["SwapFree"], mi["SwapCached"]) == (1020, 1016, 4)
    assert m.kpageflags(pfn) & KPF_SWAPCACHE  # still in the swap cache
    e = p.pagemap(a, 1)[0]
    assert e.swapped and (e.swap_type, e.swap_offset) == (0, 1)  # the one swap area, slot 1
    assert m.vmstat()["pswpout"] == 1 and m.vmstat()["nr_swapcached"] == 1
    assert p.read(a, 3) == b"abc" and p.pagemap(a, 1)[0].pfn == pfn
    assert [ev.kind for ev in m.events][-2:] == ["swap-out", "swap-in"]


def test_swapon_errors() -> None:
    m = Machine(swap="1MiB")
    with pytest.raises(CowscopeError):
        m.swapon("1MiB")
    with pytest.raises(ValueError):
        Machine(swap=100)


def test_exit_frees_slots_and_cached_frames() -> None:
    m = Machine(swap="1MiB")
    p = m.spawn()
    used = m.phys.nr_used
    a = p.mmap(8 * P)
    p.fill(a, 8 * P, 3)
    p.madvise(a, 8 * P, "pageout")
    c = p.fork()
    c.exit(0)
    p.munmap(a, 8 * P)
    assert m.meminfo()["SwapFree"] == m.meminfo()["SwapTotal"] and m.phys.nr_used <= used
    m.check()


@pytest.mark.parametrize("unmap", ["exit", "munmap", "dontneed"])
def test_a_swapped_in_page_leaves_the_swap_cache_when_it_is_unmapped(unmap: str) -> None:
    """A read fault maps the page from the swap cache and keeps it cached (free_swap_cache runs
    only after the zap): unmapping it then frees the frame; nothing stays in the swap cache."""
    m = Machine(swap="1MiB")
    p = m.spawn()
    a = p.mmap(2 * P)
    p.write(a, bytes(range(256)) * 32)
    p.madvise(a, 2 * P, "pageout")
    p.madvise(a, P, "populate_read")
    assert m.meminfo()["SwapCached"] == 8 and [e.flags() for e in p.pagemap(a, 2)][1] == "S"
    if unmap == "exit":
        p.exit(0)
    else:
        p.munmap(a, 2 * P) if unmap == "munmap" else p.madvise(a, 2 * P, "dontneed")
    mi = m.meminfo()
    assert mi["SwapCached"] == 0 and mi["SwapFree"] == mi["SwapTotal"]
    if unmap == "exit":
        assert mi["AnonPages"] == 0
    m.check()


def test_anonpages_counts_mapped_anon_pages_only() -> None:
    """meminfo AnonPages is NR_ANON_MAPPED: pages waiting in the swap cache after MADV_PAGEOUT leave it
    and come back when read in (measured on 6.18: 16 MiB paged out, AnonPages -15.8 MiB, +15.8 MiB)."""
    m = Machine(swap="64MiB")
    p = m.spawn("p")
    a = p.mmap(1024 * P, "rw")
    p.fill(a, 1024 * P, 7)
    before = m.meminfo()["AnonPages"]
    p.madvise(a, 1024 * P, "pageout")
    mi = m.meminfo()
    assert before - mi["AnonPages"] == 4096 and mi["SwapCached"] == 4096
    p.madvise(a, 1024 * P, "populate_read")
    assert m.meminfo()["AnonPages"] == before
