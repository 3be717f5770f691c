"""ptmalloc on the full model: exactly which pages a fork child's malloc()/free() copies.

The expected page sets are derived from what glibc 2.36 writes on each path (fact sheet §17):
e.g. a tcache put writes the chunk's first 16 user bytes, the tcache struct's entry and count,
and errno; nothing else. Every page of those that the parent had present is copied in the
child (a "cow-copy" event); pages the parent never touched are zero-filled instead.
"""

from __future__ import annotations

import pytest

from cowscope.errors import Aborted
from cowscope.model import Machine
from cowscope.model.libc.ptmalloc import PtMalloc, check_heap
from cowscope.model.libc.ptmalloc.layout import (
    AV_TOP,
    OFF_MAIN_ARENA,
    OFF_MP,
    TLS_ERRNO,
)

PAGE = 4096


def page(addr: int) -> int:
    return addr & ~(PAGE - 1)


def copied_pages(m: Machine, pid: int, since: int) -> list[int]:
    """Pages the child copied (cow-copy events) since event index `since`, in order."""
    return [e.address for e in list(m.events)[since:] if e.pid == pid and e.kind == "cow-copy"]


def faults(m: Machine, pid: int, since: int) -> dict[str, set[int]]:
    """Write-fault events by kind since `since`."""
    out: dict[str, set[int]] = {}
    for e in list(m.events)[since:]:
        if e.pid == pid and e.kind in ("cow-copy", "cow-reuse", "zero-fill", "zero-cow", "file-copy"):
            out.setdefault(e.kind, set()).add(e.address)
    return out


@pytest.fixture
def machine() -> Machine:
    return Machine(allocator="ptmalloc")


def test_ptmalloc_is_the_machine_allocator(machine: Machine) -> None:
    p = machine.spawn("app")
    a = p.malloc(24)
    assert isinstance(p.allocator, PtMalloc)
    assert a - p.allocator.heap_start() == 0x2a0          # after the 0x290 tcache chunk
    assert p.malloc_usable_size(a) == 24


def test_child_free_into_tcache_copies_chunk_page_and_tls(machine: Machine) -> None:
    p = machine.spawn("app")
    a = p.malloc(24)
    p.malloc(24)
    c = p.fork()
    n = len(machine.events)
    c.free(a)
    heap = c.allocator.heap_start()
    # e->next/e->key at a, a+8; tcache entries[0]/counts[0] at H+0x90/H+0x10; errno in TLS
    expected = {page(a), page(heap + 0x10), page(heap + 0x90), page(c.tls + TLS_ERRNO)}
    assert set(copied_pages(machine, c.pid, n)) == expected
    assert len(copied_pages(machine, c.pid, n)) == len(expected) == 2  # heap page 0 and the TLS page
    # the parent's view is untouched: its tcache bin 0 is still empty
    assert p.read(p.allocator.heap_start() + 0x10, 2) == b"\0\0"
    assert c.read(heap + 0x10, 2) == b"\x01\0"


def test_child_malloc_from_tcache_copies_only_the_tcache_page(machine: Machine) -> None:
    p = machine.spawn("app")
    a = p.malloc(100)
    p.free(a)                      # parent: into tcache[5]
    c = p.fork()
    n = len(machine.events)
    assert c.malloc(100) == a      # tcache_get: entries, counts, e->key; no errno, no arena
    assert copied_pages(machine, c.pid, n) == [page(c.allocator.heap_start())]


def test_child_malloc_from_top_writes_header_top_and_main_arena(machine: Machine) -> None:
    p = machine.spawn("app")
    p.malloc(24)
    c = p.fork()
    alloc = c.allocator
    old_top = alloc.top_chunk()
    n = len(machine.events)
    mem = c.malloc(5000)           # 0x1390 chunk split from top
    assert mem == old_top + 16
    new_top = alloc.top_chunk()
    assert new_top == old_top + 0x1390
    f = faults(machine, c.pid, n)
    arena_top = c.libc_data + OFF_MAIN_ARENA + AV_TOP
    # old top header (victim size) and main_arena.top are on pages the parent had: copied;
    # the new top header is on a page nobody touched: a fresh zero page, not a copy
    assert f.get("cow-copy", set()) == {page(old_top + 8), page(arena_top)}
    assert f.get("zero-fill", set()) == {page(new_top + 8)}


def test_child_free_to_unsorted_copies_neighbours_and_arena(machine: Machine) -> None:
    p = machine.spawn("app")
    a = p.malloc(5000)             # too big for tcache and fastbins
    b = p.malloc(24)               # keeps a away from top
    c = p.fork()
    n = len(machine.events)
    c.free(a)
    chunk = a - 16
    nxt = b - 16
    unsorted = c.libc_data + OFF_MAIN_ARENA + 0x60
    expected = {page(chunk + 8), page(a), page(nxt), page(nxt + 8), page(unsorted + 16),
                page(c.tls + TLS_ERRNO)}
    assert set(copied_pages(machine, c.pid, n)) == expected
    check_heap(c.allocator, {b})
    check_heap(p.allocator, {a, b})


def test_child_free_of_mmapped_chunk_writes_only_mp_and_errno(machine: Machine) -> None:
    p = machine.spawn("app")
    p.malloc(24)
    big = p.malloc(300000)
    assert p.allocator.params()["n_mmaps"] == 1
    c = p.fork()
    n = len(machine.events)
    c.free(big)
    mp = c.libc_data + OFF_MP
    assert set(copied_pages(machine, c.pid, n)) == {page(mp), page(c.tls + TLS_ERRNO)}
    assert c.allocator.params()["n_mmaps"] == 0 and p.allocator.params()["n_mmaps"] == 1
    assert c.allocator.params()["mmap_threshold"] == 0x4a000     # dynamic threshold, child only
    assert p.allocator.params()["mmap_threshold"] == 0x20000
    p.free(big)                    # the parent's mapping is still there
    assert p.allocator.params()["mmapped_mem"] == 0


def test_first_malloc_in_child_initialises_everything_there(machine: Machine) -> None:
    p = machine.spawn("app")
    c = p.fork()
    n = len(machine.events)
    mem = c.malloc(24)
    heap = c.allocator.heap_start()
    assert mem == heap + 0x2a0
    written = set().union(*faults(machine, c.pid, n).values())
    ld = c.libc_data
    # main_arena spans libc data pages 0 and 1; tcache_key/__malloc_initialized/global_max_fast
    # share .bss page 7, __curbrk is on page 8; TLS (tcache, thread_arena); the new heap pages
    for off in (0xC60, 0x1000, 0x7478, 0x8338):
        assert page(ld + off) in written
    assert page(c.tls) in written and page(heap) in written
    # the parent has not initialised malloc: its main_arena.top is still NULL
    assert p.read_u64(ld + OFF_MAIN_ARENA + AV_TOP) == 0


def test_abort_in_child_leaves_parent_running(machine: Machine) -> None:
    p = machine.spawn("app")
    a = p.malloc(24)
    c = p.fork()
    c.free(a)
    with pytest.raises(Aborted) as exc:
        c.free(a)
    assert exc.value.message == "free(): double free detected in tcache 2"
    assert c.stderr == "free(): double free detected in tcache 2\n"
    assert c.exit_status == ("signal", 6)
    assert p.alive
    p.free(a)                       # the parent's copy of the chunk was never freed
    assert p.malloc(24) == a


def test_child_realloc_growing_into_top_moves_only_headers(machine: Machine) -> None:
    p = machine.spawn("app")
    a = p.malloc(100)
    c = p.fork()
    old_top = c.allocator.top_chunk()
    n = len(machine.events)
    assert c.realloc(a, 1000) == a                       # next chunk is top: grows in place
    new_top = c.allocator.top_chunk()
    assert new_top == a - 16 + 0x3f0
    f = faults(machine, c.pid, n)
    arena_top = c.libc_data + OFF_MAIN_ARENA + AV_TOP
    assert f.get("cow-copy", set()) == {page(a - 8), page(arena_top)} | ({page(new_top + 8)}
                                                                        & {page(old_top + 8)})
    assert set().union(*f.values()) == {page(a - 8), page(arena_top), page(new_top + 8)}


def test_child_calloc_clears_through_fresh_pages(machine: Machine) -> None:
    p = machine.spawn("app")
    p.malloc(24)
    c = p.fork()
    old_top = c.allocator.top_chunk()
    n = len(machine.events)
    mem = c.calloc(1, 20000)                             # from top; memory below max_system_mem: cleared
    assert mem == old_top + 16 and c.read(mem, 20000) == bytes(20000)
    new_top = c.allocator.top_chunk()
    f = faults(machine, c.pid, n)
    arena_top = c.libc_data + OFF_MAIN_ARENA + AV_TOP
    assert f["cow-copy"] == {page(old_top + 8), page(arena_top)}   # what the parent had
    cleared = set(range(page(old_top + 8) + PAGE, page(new_top + 8) + PAGE, PAGE))
    assert f["zero-fill"] == cleared                      # the rest of [header, new top header]


def test_child_malloc_trim_gives_pages_back_only_in_the_child(machine: Machine) -> None:
    p = machine.spawn("app")
    p.malloc(24)
    a = p.malloc(100000)
    b = p.malloc(100000)                                 # the heap had to grow for this one
    parent_brk = p.brk()
    assert parent_brk - p.allocator.heap_start() > 0x21000
    c = p.fork()
    c.free(b)
    c.free(a)                                            # both merge into top: systrim in the child
    assert c.brk() < parent_brk
    n = len(machine.events)
    c.allocator.mallopt(-2, 0)                           # M_TOP_PAD 0 (lock, consolidate, unlock)
    c.allocator.malloc_trim(0)
    assert c.brk() - c.allocator.heap_start() == 0x1000  # one page left, as on glibc (case p02)
    assert p.brk() == parent_brk
    check_heap(c.allocator, set())
    check_heap(p.allocator, {a, b})
    assert not copied_pages(machine, c.pid, n)           # the child had copied these pages already
