"""Entry points the ops format does not reach directly, and the FlatHost they run on."""

from __future__ import annotations

import pytest

from cowscope.errors import Segfault, SyscallError
from cowscope.model.libc import ALLOCATORS
from cowscope.model.libc.flat import FlatHost
from cowscope.model.libc.ptmalloc import PtMalloc, check_heap
from cowscope.model.libc.ptmalloc.layout import EINVAL, ENOMEM, TLS_ERRNO


def fresh() -> PtMalloc:
    return PtMalloc(FlatHost())


def test_registered_under_its_name() -> None:
    assert ALLOCATORS["ptmalloc"] is PtMalloc


def test_posix_memalign_and_aligned_alloc() -> None:
    a = fresh()
    assert a.posix_memalign(24, 100) == (EINVAL, 0)          # not a power-of-two multiple of 8
    assert a.posix_memalign(0, 100) == (EINVAL, 0)
    err, p = a.posix_memalign(256, 100)
    assert err == 0 and p % 256 == 0 and a.malloc_usable_size(p) >= 100
    q = a.aligned_alloc(100, 10)                             # 2.36: rounded up to 128 like memalign
    assert q % 128 == 0
    assert a.memalign(1 << 63 | 1, 10) == 0                  # > SIZE_MAX/2+1
    assert a.host.read(a.host.tls + TLS_ERRNO, 4) == EINVAL.to_bytes(4, "little")
    check_heap(a, {p, q})


def test_enomem_for_impossible_requests() -> None:
    a = fresh()
    assert a.malloc(1 << 63) == 0
    assert a.host.read(a.host.tls + TLS_ERRNO, 4) == ENOMEM.to_bytes(4, "little")
    assert a.calloc(1 << 32, 1 << 32) == 0
    assert a.malloc(1 << 40) == 0                           # mmap and brk both refuse a TiB
    p = a.malloc(10)
    assert a.realloc(p, 1 << 63) == 0 and a.malloc_usable_size(p) == 24


def test_mallinfo2_accounts_every_free_byte() -> None:
    a = fresh()
    ptrs = [a.malloc(n) for n in (24, 100, 2000, 3000, 50, 300000)]
    for p in ptrs[1:4]:
        a.free(p)
    info = a.mallinfo2()
    assert info.arena == 0x21000 and info.hblks == 1 and info.hblkhd == 0x4a000
    top = a.top_chunk()
    assert info.keepcost == a.host.read_u64(top + 8) & ~7
    assert info.fordblks + info.uordblks == info.arena
    # 100 went to the tcache (counts as in use); 2000 and 3000 coalesced in the unsorted bin
    assert info.ordblks == 2 and info.smblks == 0
    assert info.fordblks == info.keepcost + 0x7e0 + 0xbc0


def test_mallopt_return_values_and_trim() -> None:
    a = fresh()
    assert a.mallopt(1, 161) == 0 and a.mallopt(1, 64) == 1
    assert a.mallopt(-1, 0) == 1 and a.params()["no_dyn_threshold"] == 1
    p = a.malloc(200000)                                     # above the 128 KiB threshold: mmapped
    assert a.params()["n_mmaps"] == 1
    a.free(p)
    assert a.params()["mmap_threshold"] == 0x20000           # no dynamic raise once set
    q = a.malloc(60000)
    a.malloc(24)
    a.free(q)
    assert a.malloc_trim(0) == 1                             # the 60000-byte hole is madvised


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
