"""Entry points the ops format does not reach directly (posix_memalign, mallinfo2, mallopt, ...)."""

from __future__ import annotations

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
