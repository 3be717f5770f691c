"""Process-level libc calls: passthroughs to the allocator, and aborts charged to the right process."""

from __future__ import annotations

import signal

import pytest

from cowscope.errors import Aborted, CowscopeError
from cowscope.model import Machine


def test_vfork_child_abort_kills_the_child_only():
    m = Machine()
    p = m.spawn()
    a = p.malloc(64)
    p.free(a)
    v = p.vfork()
    with pytest.raises(Aborted) as e:
        v.free(a)  # double free in the vfork child
    assert e.value.pid == v.pid and "double free" in e.value.message
    assert v.exit_status == ("signal", signal.SIGABRT) and "double free" in v.stderr
    assert p.alive and p.state == "R" and p.stderr == ""
    m.check()


def test_malloc_passthroughs():
    m = Machine()
    p = m.spawn()
    err, ptr = p.posix_memalign(256, 100)
    assert err == 0 and ptr % 256 == 0
    assert p.aligned_alloc(64, 10) % 64 == 0
    assert p.mallopt(-1, 1 << 20) == 1  # M_TRIM_THRESHOLD
    assert p.mallinfo2().uordblks > 0
    assert p.malloc_trim(0) in (0, 1)


def test_firstfit_says_what_it_lacks():
    p = Machine(allocator="firstfit").spawn()
    with pytest.raises(CowscopeError, match="no mallopt"):
        p.mallopt(-1, 0)


def test_libc_malloc_state_is_in_place_after_exec():
    """ld.so has relocated libc's .data: main_arena.next points at main_arena before any malloc."""
    from cowscope.model.libc.ptmalloc.layout import OFF_MAIN_ARENA

    m = Machine()
    p = m.spawn()
    arena = p.libc_data + OFF_MAIN_ARENA
    values = {addr: data for addr, data in m.allocator_class().static_libc_data(p.libc_data)}
    assert values and all(p.read(addr, len(data)) == data for addr, data in values.items())
    assert any(int.from_bytes(d, "little") == arena for d in values.values() if len(d) == 8)
