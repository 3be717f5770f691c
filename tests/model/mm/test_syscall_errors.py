"""Failing memory syscalls: EINVAL/ENOMEM/EACCES with nothing changed (mmap, munmap, mprotect, madvise, brk)."""

from __future__ import annotations

import errno

import pytest

from cowscope.errors import Segfault, SyscallError
from cowscope.model import Machine, Process

PS = 4096


@pytest.fixture
def m() -> Machine:
    return Machine(allocator="firstfit")


def _state(p: Process) -> tuple:
    """Everything a failed syscall must leave unchanged: maps, RSS, break."""
    return (p.maps(), p.status().fields["VmRSS"], p.brk())


def _fails(p: Process, err: int, call, *args) -> None:
    """call(*args) raises SyscallError(err) and changes nothing; the machine stays consistent."""
    before = _state(p)
    with pytest.raises(SyscallError) as ei:
        call(*args)
    assert ei.value.errno == err, str(ei.value)
    assert _state(p) == before
    assert p.alive
    p.machine.check()


# -- mmap ---------------------------------------------------------------------------------------

def test_mmap_einval(m: Machine) -> None:
    p = m.spawn()
    f = m.create_file("/f", size=4 * PS)
    _fails(p, errno.EINVAL, p.mmap, 0)
    with pytest.raises(ValueError, match="prot is letters"):      # a misspelling, not a syscall
        p.mmap(PS, "rq")
    _fails(p, errno.EINVAL, p.mmap, PS, "rw", False, f, 100)           # offset not page aligned
    _fails(p, errno.EOVERFLOW, p.mmap, PS, "rw", False, f, -PS)        # 2**64 - PS: past any file
    _fails(p, errno.EINVAL, p.mmap, PS, "rw", False, None, 0, 0x10001, True)  # MAP_FIXED unaligned
    _fails(p, errno.EINVAL, p.mmap, PS, "rw", False, None, 0, None, True)     # MAP_FIXED, no address


def test_mmap_enomem_when_no_room(m: Machine) -> None:
    """A length larger than the address space finds no free range."""
    p = m.spawn()
    _fails(p, errno.ENOMEM, p.mmap, 1 << 47)
    _fails(p, errno.ENOMEM, p.mmap, -PS)          # size_t: 2**64 - PS
    _fails(p, errno.ENOMEM, p.mmap, -1)           # PAGE_ALIGN overflows


# -- munmap -------------------------------------------------------------------------------------

def test_munmap_einval_and_holes(m: Machine) -> None:
    p = m.spawn()
    a = p.mmap(4 * PS)
    _fails(p, errno.EINVAL, p.munmap, a + 1, PS)
    _fails(p, errno.EINVAL, p.munmap, a, 0)
    _fails(p, errno.EINVAL, p.munmap, a, -PS)
    _fails(p, errno.EINVAL, p.munmap, (1 << 47) - PS, 2 * PS)   # beyond TASK_SIZE
    # unmapping a range that holds nothing is not an error
    before = p.maps()
    p.munmap(0x100000000000, 16 * PS)
    assert p.maps() == before
    m.check()


# -- mprotect -----------------------------------------------------------------------------------

def test_mprotect_einval_enomem(m: Machine) -> None:
    p = m.spawn()
    a = p.mmap(4 * PS)
    _fails(p, errno.EINVAL, p.mprotect, a + 8, PS, "r")
    with pytest.raises(ValueError, match="prot is letters"):
        p.mprotect(a, PS, "rz")
    _fails(p, errno.EINVAL, p.mprotect, a, PS, 0x10)              # PROT_* bits Linux does not know
    _fails(p, errno.ENOMEM, p.mprotect, a, -1, "r")               # the range wraps around
    _fails(p, errno.ENOMEM, p.mprotect, 0x100000000000, PS, "r")   # nothing mapped
    p.munmap(a + PS, PS)
    _fails(p, errno.ENOMEM, p.mprotect, a + PS, 2 * PS, "r")       # starts in the hole


def test_mprotect_readonly_shared_file_eacces(m: Machine) -> None:
    """A valid range whose VMAs allow it changes; EINVAL/EACCES leave it alone."""
    p = m.spawn()
    a = p.mmap(2 * PS, prot="r")
    p.mprotect(a, 2 * PS, "rw")
    p.write(a, b"ok")
    assert p.read(a, 2) == b"ok"
    m.check()


def test_mprotect_with_hole_changes_the_part_before_it(m: Machine) -> None:
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.munmap(a + PS, PS)
    with pytest.raises(SyscallError) as ei:
        p.mprotect(a, 3 * PS, "r")
    assert ei.value.errno == errno.ENOMEM
    assert [e.perms for e in p.maps() if e.start == a] == ["r--p"]


# -- madvise ------------------------------------------------------------------------------------

def test_madvise_einval_enomem(m: Machine) -> None:
    p = m.spawn()
    a = p.mmap(4 * PS)
    sh = p.mmap(2 * PS, shared=True)
    f = m.create_file("/f", size=2 * PS)
    fm = p.mmap(2 * PS, file=f)
    with pytest.raises(ValueError, match="unknown advice"):
        p.madvise(a, PS, "sideways")
    _fails(p, errno.EINVAL, p.madvise, a, PS, 999)                # an advice number Linux does not know
    _fails(p, errno.EINVAL, p.madvise, a, -1, "dontneed")         # the range wraps around
    _fails(p, errno.EINVAL, p.madvise, a + 1, PS, "dontneed")
    _fails(p, errno.ENOMEM, p.madvise, 0x100000000000, PS, "dontneed")
    _fails(p, errno.EINVAL, p.madvise, sh, PS, "wipeonfork")
    _fails(p, errno.EINVAL, p.madvise, fm, PS, "wipeonfork")
    _fails(p, errno.EINVAL, p.madvise, sh, PS, "free")
    _fails(p, errno.EINVAL, p.madvise, fm, PS, "free")


def test_madvise_with_hole_advises_the_mapped_part(m: Machine) -> None:
    p = m.spawn()
    a = p.mmap(3 * PS)
    p.write(a, b"x")
    p.munmap(a + PS, PS)
    with pytest.raises(SyscallError) as ei:
        p.madvise(a, 3 * PS, "dontneed")
    assert ei.value.errno == errno.ENOMEM
    assert p.read(a, 1) == b"\0"


def test_populate_write_on_readonly_mapping(m: Machine) -> None:
    p = m.spawn()
    a = p.mmap(2 * PS, prot="r")
    try:
        p.madvise(a, 2 * PS, "populate_write")
    except SyscallError:
        pass
    with pytest.raises(Segfault):
        p.write(a, b"x")


def test_populate_read_on_prot_none(m: Machine) -> None:
    p = m.spawn()
    a = p.mmap(2 * PS, prot="")
    try:
        p.madvise(a, 2 * PS, "populate_read")
    except SyscallError:
        pass
    with pytest.raises(Segfault):
        p.read(a, 1)


# -- brk ----------------------------------------------------------------------------------------

def test_brk_refusals_leave_the_break(m: Machine) -> None:
    p = m.spawn()
    start = p.brk()
    assert p.brk(start - PS) == start            # below start_brk: refused, break unchanged
    assert p.brk(1 << 47) == start                # into the stack / beyond: refused
    _fails(p, errno.ENOMEM, p.sbrk, 1 << 46)
    assert p.sbrk(-PS) == start and p.brk() == start  # below start_brk: brk(2) refuses, glibc's
    # __brk sees a break above the one it asked for and calls that success (as on Linux 6.18)
    _fails(p, errno.ENOMEM, p.sbrk, -(1 << 62))   # the new break would wrap around
    assert p.sbrk(3 * PS) == start and p.brk() == start + 3 * PS
    p.write(start, b"heap")
    assert p.brk(start) == start                 # shrinking unmaps the pages
    with pytest.raises(Segfault):
        p.read(start, 1)
    m.check()
