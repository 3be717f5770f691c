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


def _maxrss_kb() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def test_multi_gib_heap_and_chunks_cost_only_what_is_written() -> None:
    """A 1.5 GiB brk heap (mmap disabled) and 4/8 GiB mmapped chunks, as glibc serves them on the
    reference machine: no 1 GiB heap limit, no MemoryError, host memory only for written pages."""
    from cowscope.model.libc.ptmalloc import PtMalloc

    before = _maxrss_kb()
    a = PtMalloc(FlatHost())
    a.mallopt(-4, 0)                                   # M_MMAP_MAX = 0: everything from brk
    heap = a.malloc(1536 << 20)
    assert heap and a.host.heap_base < heap < a.host.heap_base + 0x1000
    a.host.write_u64(heap + (1536 << 20) - 8, 7)
    a.free(heap)
    a.mallopt(-4, 65536)
    big = a.malloc(4 << 30)
    a.host.write_u64(big + (4 << 30) - 8, 5)
    bigger = a.realloc(big, 8 << 30)                   # mremap: the data moves with the mapping
    assert bigger and a.host.read_u64(bigger + (4 << 30) - 8) == 5
    a.host.madvise((bigger & ~0xFFF) + (1 << 30), 4 << 30, "dontneed")   # past the chunk header
    assert a.host.read_u64(bigger + (4 << 30) - 8) == 0
    a.free(bigger)
    assert _maxrss_kb() - before < 64 << 10            # < 64 MiB of this process's RSS


def test_overcommit_heuristic_refuses_one_request_beyond_ram() -> None:
    """vm.overcommit_memory=0: one mmap, brk increase or mremap growth above RAM + swap is ENOMEM
    (malloc returns NULL); requests up to it are granted, however many."""
    from cowscope.model.libc.ptmalloc import PtMalloc

    h = FlatHost(commit_pages=1 << 18)                 # a 1 GiB machine
    with pytest.raises(SyscallError):
        h.mmap((1 << 30) + 4096)
    assert h.mmap(1 << 30) and h.mmap(1 << 30)          # each fits: heuristic, not a sum
    old = h.sbrk(0)
    with pytest.raises(SyscallError):
        h.sbrk((1 << 30) + 4096)
    assert h.sbrk(0) == old
    m = h.mmap(4096)
    with pytest.raises(SyscallError):
        h.mremap(m, 4096, (1 << 30) + 8192)
    a = PtMalloc(FlatHost(commit_pages=1 << 18))
    assert a.malloc(2 << 30) == 0 and a.malloc(512 << 20) != 0


def test_field_accessors_follow_the_break() -> None:
    """The struct-field accessors (what ptmalloc's chunk fields are built on) see what r64/w64 see,
    including the break moving under them: regained pages read zero, pages above it fault."""
    h = FlatHost()
    acc = h.accessors()
    load, store = acc["field"](16)
    masked, _ = acc["field"](8, ~7 & 0xFFFFFFFFFFFFFFFF)
    base = h.sbrk(0x2000)
    store(base, 0x1234)
    acc["w64"](base + 8, 0x95)
    assert load(base) == acc["r64"](base + 16) == 0x1234 and masked(base) == 0x90
    with pytest.raises(Segfault):
        load(base + 0x2000 - 16)                      # the field lies past the break
    h.sbrk(0x1000)
    store(base + 0x2000 - 16, 7)                      # ... until the break moves above it
    assert acc["r64"](base + 0x2000) == 7
    h.sbrk(-0x2000)
    with pytest.raises(Segfault):
        load(base + 0x1000)
    h.sbrk(0x2000)
    assert load(base + 0x2000 - 16) == 0              # regained: zeros again


def test_mmap_anon_hint_fixed_and_split_like_the_kernel() -> None:
    """A free hint is taken as is, MAP_FIXED replaces what was there, and a reservation split by
    munmap keeps the written bytes of the part that stays (what glibc's new_heap relies on)."""
    from cowscope.model.libc.flat import FlatHost

    h = FlatHost()
    big = h.mmap_anon(128 << 20, "", noreserve=True)
    aligned = (big + (64 << 20) - 1) & ~((64 << 20) - 1)
    if aligned > big:
        h.munmap(big, aligned - big)
    h.munmap(aligned + (64 << 20), (64 << 20) - (aligned - big))
    assert sorted(h.maps) == [aligned] and len(h.maps[aligned]) == 64 << 20
    h.write_u64(aligned + 8, 0x1234)
    h.munmap(aligned + (32 << 20), 32 << 20)
    assert h.read_u64(aligned + 8) == 0x1234
    hint = aligned + (32 << 20)
    assert h.mmap_anon(4096, "rw", addr=hint) == hint
    assert h.mmap_anon(4096, "rw", addr=hint) != hint          # taken: placed elsewhere
    h.write_u64(hint, 7)
    assert h.mmap_anon(4096, "", addr=hint, fixed=True) == hint and h.read_u64(hint) == 0
