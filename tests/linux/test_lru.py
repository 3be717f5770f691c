"""Every command starts with every CPU's LRU batches drained (linux.lru), as the model's are."""

from __future__ import annotations

import os

import pytest

from cowscope.linux import lru
from cowscope.linux.machine import Machine
from cowscope.observe.records import KPF_LRU, PAGE_SIZE, pagemap_pfns

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(os.geteuid() != 0, reason="PFNs and /proc/kpageflags need root")]


def _on_lru(m: Machine, p, addr: int, npages: int) -> list[bool]:
    return [bool(m.kpageflags(int(pfn)) & KPF_LRU) for pfn in pagemap_pfns(p.pagemap_raw(addr, npages))]


def test_drain_all_puts_just_faulted_pages_on_the_lru() -> None:
    """Pages a process just faulted wait in its CPU's batch (not yet on an LRU list) until the
    batch drains: drain_all drains it from another process (this one)."""
    with Machine(drain_lru=False) as m:
        p = m.spawn("P")
        a = p.mmap(4 * PAGE_SIZE)
        p.fill(a, 4 * PAGE_SIZE, 1)
        assert lru.drain_all()
        assert _on_lru(m, p, a, 4) == [True] * 4


def test_each_command_starts_drained() -> None:
    """With the default machine the pages a command faulted are on the LRU by the next command."""
    with Machine() as m:
        p = m.spawn("P")
        a = p.mmap(4 * PAGE_SIZE)
        p.fill(a, 4 * PAGE_SIZE, 1)
        p.read(a, 1)  # any command: the drain comes first
        assert _on_lru(m, p, a, 4) == [True] * 4
