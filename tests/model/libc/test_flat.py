"""FlatHost, the page-granular stand-in process ptmalloc runs on: placement, mremap, brk."""

from __future__ import annotations

import pytest

from cowscope.errors import Segfault, SyscallError
from cowscope.model.libc.flat import FlatHost


def test_flat_host_mremap_and_placement() -> None:
    h = FlatHost()
    m1 = h.mmap(0x3000)
    m2 = h.mmap(0x2000)
    assert m1 == h.mmap_base - 0x3000 and m2 == m1 - 0x2000   # top-down, adjacent
    h.write(m2, b"abc")
    assert h.mremap(m2, 0x2000, 0x1000) == m2                 # shrink in place
    moved = h.mremap(m2, 0x1000, 0x5000)                      # m1 is right above: must move
    assert moved != m2 and h.read(moved, 3) == b"abc"
    h.munmap(m1, 0x3000)
    assert h.mremap(moved, 0x5000, 0x6000) in (moved, h.mmap_base - 0x6000)
    with pytest.raises(SyscallError):
        h.mremap(0x1234000, 0x1000, 0x2000)
    big = h.mmap(4 << 20)
    assert big % (2 << 20) == 0                               # THP-aligned like Linux 6.x


def test_flat_host_brk_zeroes_regained_pages_and_faults_outside() -> None:
    h = FlatHost()
    old = h.sbrk(0x3000)
    h.write(old + 0x2000, b"x" * 8)
    h.sbrk(-0x2000)
    with pytest.raises(Segfault):
        h.read(old + 0x2000, 1)
    h.sbrk(0x2000)
    assert h.read(old + 0x2000, 8) == bytes(8)
    with pytest.raises(SyscallError):
        h.sbrk(1 << 40)
