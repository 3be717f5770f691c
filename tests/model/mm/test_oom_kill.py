"""The OOM killer: the largest RSS dies (possibly the faulting process); the machine stays consistent."""

from __future__ import annotations

import signal

import pytest

from cowscope.errors import OOMKilled
from cowscope.model import Machine


def test_oom_kills_the_largest_rss() -> None:
    """4 MiB of RAM: the bigger process dies when the smaller one needs a frame; both consistent."""
    m = Machine(ram="4MiB", allocator="firstfit")
    big, small, idle = m.spawn("big"), m.spawn("small"), m.spawn("idle")
    a = big.mmap(2 << 20)
    big.fill(a, 2 << 20, 1)
    b = small.mmap(2 << 20)
    small.fill(b, 2 << 20, 2)             # needs more frames than are free
    assert not big.alive and big.exit_status == ("signal", signal.SIGKILL)
    kills = m.events.filter(kind="oom-kill")
    assert [e.pid for e in kills] == [big.pid]
    assert small.read(b, 2 << 20) == b"\2" * (2 << 20)
    assert idle.alive
    assert m.vmstat()["oom_kill"] == 1
    assert m.phys.nr_used <= m.phys.nr_pages
    m.check()


def test_oom_kills_the_faulting_process_when_it_is_the_largest() -> None:
    # 8 MiB on a 4 MiB machine: only vm.overcommit_memory=1 lets the mmap through (the default
    # heuristic refuses a mapping larger than RAM + swap: test_overcommit.py)
    m = Machine(ram="4MiB", allocator="firstfit", overcommit_memory=1)
    hog, bystander = m.spawn("hog"), m.spawn("bystander")
    a = hog.mmap(8 << 20)
    with pytest.raises(OOMKilled) as ei:
        hog.fill(a, 8 << 20, 3)
    assert ei.value.pid == hog.pid and ei.value.rss_kb > 0
    assert not hog.alive and bystander.alive
    assert [e.pid for e in m.events.filter(kind="oom-kill")] == [hog.pid]
    assert bystander.read(bystander.addrs["text"], 2) != b""
    m.check()
    # the freed memory is usable again
    c = bystander.mmap(1 << 20)
    bystander.fill(c, 1 << 20, 4)
    m.check()


def test_oom_during_fork_cow() -> None:
    """Copy-on-write after fork can exhaust RAM: the killer picks the largest, the rest is consistent."""
    m = Machine(ram="4MiB", allocator="firstfit")
    p = m.spawn()
    a = p.mmap(2400 * 1024)
    p.fill(a, 2400 * 1024, 5)
    c = p.fork()
    try:
        c.touch(a, 2400 * 1024, write=True)
    except OOMKilled:
        pass
    assert m.events.filter(kind="oom-kill")
    assert p.alive != c.alive or not (p.alive or c.alive)
    survivor = p if p.alive else c
    assert survivor.read(a, 2400 * 1024) == b"\5" * (2400 * 1024)
    m.check()
