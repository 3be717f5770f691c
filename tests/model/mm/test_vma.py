"""VMAs: lookup, placement, and the kernel's split and merge rules (incl. the fork anon_vma rule)."""

from __future__ import annotations

import pytest

from cowscope.model import Machine, Process
from cowscope.model.arch import MMAP_BASE, STACK_GUARD_GAP
from cowscope.model.fs.file import File
from cowscope.model.mm.vma import (
    MM,
    VM_MAYWRITE,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    VMA,
    AnonVma,
    anon_vma_compatible,
    can_merge,
)

PS = 4096
HINT = 0x100000000000
RW = VM_READ | VM_WRITE | VM_MAYWRITE


def _around(p: Process, lo: int, hi: int) -> list[tuple[int, int, str, str]]:
    """(start, end, perms, name) of the maps lines inside [lo, hi)."""
    return [(e.start, e.end, e.perms, e.path) for e in p.maps() if lo <= e.start < hi]


@pytest.fixture
def m() -> Machine:
    return Machine(allocator="firstfit")


# -- the MM structure ---------------------------------------------------------------------------

def test_find_vma_and_overlapping() -> None:
    mm = MM()
    a, b = VMA(0x10000, 0x20000, RW), VMA(0x30000, 0x40000, RW)
    mm.insert(b)
    mm.insert(a)
    assert mm.vmas == [a, b]
    assert mm.find_vma(0x10000) is a and mm.find_vma(0x1FFFF) is a
    assert mm.find_vma(0x20000) is None and mm.find_vma(0xFFFF) is None
    assert mm.vma_after(0x20000) is b and mm.vma_after(0x40000) is None
    assert mm.overlapping(0x18000, 0x31000) == [a, b]
    assert mm.overlapping(0x20000, 0x30000) == []


def test_split_advances_file_offset_and_shares_anon_vma() -> None:
    mm = MM()
    f = File("/f", 1, 16 * PS)
    v = VMA(0x10000, 0x10000 + 8 * PS, VM_READ | VM_MAYWRITE, 2, f, AnonVma())
    mm.insert(v)
    upper = mm.split(v, 0x10000 + 3 * PS)
    assert (v.vm_start, v.vm_end) == (0x10000, 0x13000)
    assert (upper.vm_start, upper.vm_end, upper.vm_pgoff) == (0x13000, 0x18000, 5)
    assert upper.anon_vma is v.anon_vma and upper.vm_file is f
    parts = mm.isolate(0x11000, 0x15000)
    assert [(x.vm_start, x.vm_end) for x in parts] == [(0x11000, 0x13000), (0x13000, 0x15000)]
    assert [(x.vm_start, x.vm_end) for x in mm.vmas] == \
        [(0x10000, 0x11000), (0x11000, 0x13000), (0x13000, 0x15000), (0x15000, 0x18000)]


def test_can_merge_rules() -> None:
    f = File("/f", 1, 16 * PS)
    g = File("/g", 2, 16 * PS)
    shm = File("/dev/zero (deleted)", 3, 8 * PS, shmem=True, shmem_anon=True)
    assert can_merge(VMA(0, PS, RW), VMA(PS, 2 * PS, RW))
    assert not can_merge(VMA(0, PS, RW), VMA(2 * PS, 3 * PS, RW))              # not adjacent
    assert not can_merge(VMA(0, PS, RW), VMA(PS, 2 * PS, VM_READ))             # flags differ
    assert can_merge(VMA(0, PS, RW, 0, f), VMA(PS, 2 * PS, RW, 1, f))         # contiguous offsets
    assert not can_merge(VMA(0, PS, RW, 0, f), VMA(PS, 2 * PS, RW, 5, f))     # offsets not contiguous
    assert not can_merge(VMA(0, PS, RW, 0, f), VMA(PS, 2 * PS, RW, 1, g))     # other file
    assert not can_merge(VMA(0, PS, RW, 0, f), VMA(PS, 2 * PS, RW))           # file vs anon
    sh = RW | VM_SHARED
    shm2 = File("/dev/zero (deleted)", 4, 8 * PS, shmem=True, shmem_anon=True)
    assert can_merge(VMA(0, PS, sh, 0, shm), VMA(PS, 2 * PS, sh, 1, shm))  # pieces of one mapping (D10)
    assert not can_merge(VMA(0, PS, sh, 0, shm), VMA(PS, 2 * PS, sh, 1, shm2))  # two mappings: two files
    assert not can_merge(VMA(0, PS, RW, name="[stack]"), VMA(PS, 2 * PS, RW))


def test_anon_vma_compatibility() -> None:
    """Equal anon_vmas merge; NULL merges with one that is not inherited through fork; two differ."""
    own, other = AnonVma(), AnonVma()
    inherited = AnonVma(parent=own)
    a = VMA(0, PS, RW)
    assert anon_vma_compatible(VMA(0, PS, RW, anon_vma=own), VMA(PS, 2 * PS, RW, anon_vma=own))
    assert anon_vma_compatible(a, VMA(PS, 2 * PS, RW, anon_vma=own))
    assert anon_vma_compatible(VMA(PS, 2 * PS, RW, anon_vma=own), a)
    assert not anon_vma_compatible(a, VMA(PS, 2 * PS, RW, anon_vma=inherited))
    assert not anon_vma_compatible(VMA(PS, 2 * PS, RW, anon_vma=inherited), a)
    assert not anon_vma_compatible(VMA(0, PS, RW, anon_vma=own), VMA(PS, 2 * PS, RW, anon_vma=other))


def test_get_unmapped_area_top_down() -> None:
    mm = MM()
    first = mm.get_unmapped_area(4 * PS)
    assert first == MMAP_BASE - 4 * PS
    mm.insert(VMA(first, first + 4 * PS, RW))
    assert mm.get_unmapped_area(PS) == first - PS
    assert mm.get_unmapped_area(PS, hint=HINT) == HINT                 # a free hint is taken
    assert mm.get_unmapped_area(PS, hint=first) == first - PS          # a taken one is not
    assert mm.get_unmapped_area(2 << 20, align=2 << 20) % (2 << 20) == 0


def test_mmap_below_the_stack_keeps_the_guard_gap(m: Machine) -> None:
    p = m.spawn()
    stack = next(e for e in p.maps() if e.path == "[stack]")
    for e in p.maps():
        if e.end <= stack.start and e.start > MMAP_BASE - (1 << 30):
            assert stack.start - e.end >= STACK_GUARD_GAP


# -- merge and split through the syscalls -------------------------------------------------------

def test_adjacent_anon_mmaps_merge(m: Machine) -> None:
    p = m.spawn()
    a = p.mmap(2 * PS, addr=HINT)
    b = p.mmap(3 * PS, addr=HINT + 2 * PS)
    assert b == HINT + 2 * PS
    assert _around(p, HINT, HINT + (1 << 30)) == [(HINT, HINT + 5 * PS, "rw-p", "")]
    c = p.mmap(PS, prot="r", addr=HINT + 5 * PS)            # different protection: its own VMA
    assert len(_around(p, HINT, HINT + (1 << 30))) == 2
    p.mprotect(c, PS, "rw")                                  # now compatible: merges back
    assert _around(p, HINT, HINT + (1 << 30)) == [(a, HINT + 6 * PS, "rw-p", "")]
    m.check()


def test_munmap_middle_splits_and_keeps_contents(m: Machine) -> None:
    p = m.spawn()
    a = p.mmap(6 * PS, addr=HINT)
    for i in range(6):
        p.write(a + i * PS, bytes([i + 1]) * 8)
    p.munmap(a + 2 * PS, 2 * PS)
    assert _around(p, HINT, HINT + (1 << 30)) == [(a, a + 2 * PS, "rw-p", ""), (a + 4 * PS, a + 6 * PS, "rw-p", "")]
    assert [p.read(a + i * PS, 1) for i in (0, 1, 4, 5)] == [b"\1", b"\2", b"\5", b"\6"]
    assert p.status().fields["RssAnon"] - 4 * 4 >= 0
    m.check()


def test_mprotect_middle_splits_in_three_and_back_to_one(m: Machine) -> None:
    p = m.spawn()
    a = p.mmap(6 * PS, addr=HINT)
    p.fill(a, 6 * PS, 9)
    p.mprotect(a + 2 * PS, 2 * PS, "r")
    assert _around(p, HINT, HINT + (1 << 30)) == [
        (a, a + 2 * PS, "rw-p", ""), (a + 2 * PS, a + 4 * PS, "r--p", ""), (a + 4 * PS, a + 6 * PS, "rw-p", "")]
    p.mprotect(a + 2 * PS, 2 * PS, "rw")
    assert _around(p, HINT, HINT + (1 << 30)) == [(a, a + 6 * PS, "rw-p", "")]
    assert p.read(a, 6 * PS) == b"\t" * 6 * PS
    m.check()


def test_madvise_flag_splits_and_remerges(m: Machine) -> None:
    p = m.spawn()
    a = p.mmap(4 * PS, addr=HINT)
    p.madvise(a + PS, PS, "dontfork")
    flags = {e.vma.start: e.vm_flags for e in p.smaps() if HINT <= e.vma.start < HINT + (1 << 30)}
    assert sorted(flags) == [a, a + PS, a + 2 * PS]
    assert "dc" in flags[a + PS] and "dc" not in flags[a]
    p.madvise(a + PS, PS, "dofork")
    assert len(_around(p, HINT, HINT + (1 << 30))) == 1
    m.check()


def test_file_mappings_merge_only_within_one_open_file(m: Machine) -> None:
    """is_mergeable_vma compares the struct file: two mmap calls open the file twice (as the kernel
    backend's agent does) and never merge, even at contiguous offsets (measured on 6.18: two
    open()s -> 2 VMAs, one fd mapped twice -> 1); pieces of one mapping re-merge."""
    p = m.spawn()
    f = m.create_file("/data/f", size=8 * PS)
    p.mmap(2 * PS, prot="r", file=f, offset=0, addr=HINT)
    p.mmap(2 * PS, prot="r", file=f, offset=2 * PS, addr=HINT + 2 * PS)
    assert [(s, e) for s, e, _, _ in _around(p, HINT, HINT + (1 << 30))] == [(HINT, HINT + 2 * PS),
                                                                          (HINT + 2 * PS, HINT + 4 * PS)]
    p.mmap(4 * PS, prot="r", file=f, offset=4 * PS, addr=HINT + 4 * PS)
    p.mprotect(HINT + 5 * PS, PS, "")
    assert len(_around(p, HINT + 4 * PS, HINT + 8 * PS)) == 3
    p.mprotect(HINT + 5 * PS, PS, "r")                       # contiguous offsets, one open file
    lines = [e for e in p.maps() if HINT <= e.start < HINT + (1 << 30)]
    assert [(e.start, e.offset) for e in lines] == [(HINT, 0), (HINT + 2 * PS, 2 * PS), (HINT + 4 * PS, 4 * PS)]
    assert all(e.path == "/data/f" and e.inode == f.inode for e in lines)


def test_shared_anon_mappings_never_merge(m: Machine) -> None:
    p = m.spawn()
    p.mmap(PS, shared=True, addr=HINT)
    p.mmap(PS, shared=True, addr=HINT + PS)
    lines = _around(p, HINT, HINT + (1 << 30))
    assert [x[2:] for x in lines] == [("rw-s", "/dev/zero (deleted)")] * 2


# -- the fork rule: a child's inherited anon_vma does not merge with a new VMA ---------------------

def test_fork_child_does_not_merge_inherited_anon_vma(m: Machine) -> None:
    p = m.spawn()
    a = p.mmap(2 * PS, addr=HINT)
    p.write(a, b"anon page")                       # the VMA gets an anon_vma
    c = p.fork()
    c.mmap(2 * PS, addr=HINT + 2 * PS)             # child: stays two VMAs
    p.mmap(2 * PS, addr=HINT + 2 * PS)             # parent: merges
    assert len(_around(c, HINT, HINT + (1 << 30))) == 2
    assert _around(p, HINT, HINT + (1 << 30)) == [(a, a + 4 * PS, "rw-p", "")]
    m.check()


def test_fork_child_merges_vma_without_anon_pages(m: Machine) -> None:
    """No anon page before fork: no anon_vma to inherit, so the child merges like anyone."""
    p = m.spawn()
    a = p.mmap(2 * PS, addr=HINT)
    c = p.fork()
    c.mmap(2 * PS, addr=HINT + 2 * PS)
    assert _around(c, HINT, HINT + (1 << 30)) == [(a, a + 4 * PS, "rw-p", "")]


def test_brk_in_fork_child_gives_two_heaps(m: Machine) -> None:
    """The child's inherited [heap] cannot absorb the new brk range: maps shows [heap] twice."""
    p = m.spawn()
    start = p.brk()
    p.brk(start + 4 * PS)
    p.write(start, b"malloc'd")
    c = p.fork()
    c.brk(start + 8 * PS)
    p.brk(start + 8 * PS)
    heaps_c = [(e.start, e.end) for e in c.maps() if e.path == "[heap]"]
    heaps_p = [(e.start, e.end) for e in p.maps() if e.path == "[heap]"]
    # (the first [heap] VMA may begin below start_brk: brk memory merges with an adjacent anon bss)
    assert len(heaps_c) == 2 and heaps_c[0][0] <= start
    assert heaps_c[0][1] == start + 4 * PS and heaps_c[1] == (start + 4 * PS, start + 8 * PS)
    assert heaps_p == [(heaps_c[0][0], start + 8 * PS)]
    c.write(start + 5 * PS, b"new heap")
    assert c.read(start, 8) == b"malloc'd"
    m.check()


def test_heap_name_needs_a_moved_break(m: Machine) -> None:
    p = m.spawn()
    assert not [e for e in p.maps() if e.path == "[heap]"]
    start = p.brk()
    p.sbrk(PS)
    heaps = [(e.start, e.end) for e in p.maps() if e.path == "[heap]"]
    assert len(heaps) == 1 and heaps[0][0] <= start and heaps[0][1] == start + PS


def test_dontfork_vma_absent_and_wipeonfork_empty_in_child(m: Machine) -> None:
    p = m.spawn()
    keep = p.mmap(PS, addr=HINT)
    gone = p.mmap(PS, addr=HINT + 4 * PS)
    wipe = p.mmap(PS, addr=HINT + 8 * PS)
    for a in (keep, gone, wipe):
        p.write(a, b"parent")
    p.madvise(gone, PS, "dontfork")
    p.madvise(wipe, PS, "wipeonfork")
    c = p.fork()
    starts = [e.start for e in c.maps()]
    assert keep in starts and gone not in starts and wipe in starts
    assert c.read(keep, 6) == b"parent" and c.read(wipe, 6) == b"\0" * 6
    assert p.read(wipe, 6) == b"parent"
    m.check()
