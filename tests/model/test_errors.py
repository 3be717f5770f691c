"""Failing syscalls (EINVAL/ENOMEM, nothing changed), SIGSEGV for one process only, and the OOM killer."""

from __future__ import annotations

import errno
import signal

import pytest

from cowscope.errors import OOMKilled, ProcessGone, Segfault, SyscallError
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
    _fails(p, errno.EINVAL, p.mmap, -PS)
    _fails(p, errno.EINVAL, p.mmap, PS, "rq")
    _fails(p, errno.EINVAL, p.mmap, PS, "rw", False, f, 100)           # offset not page aligned
    _fails(p, errno.EINVAL, p.mmap, PS, "rw", False, f, -PS)
    _fails(p, errno.EINVAL, p.mmap, PS, "rw", False, None, 0, 0x10001, True)  # MAP_FIXED unaligned
    _fails(p, errno.EINVAL, p.mmap, PS, "rw", False, None, 0, None, True)     # MAP_FIXED, no address


def test_mmap_enomem_when_no_room(m: Machine) -> None:
    """A length larger than the address space finds no free range."""
    p = m.spawn()
    _fails(p, errno.ENOMEM, p.mmap, 1 << 47)


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
    _fails(p, errno.EINVAL, p.mprotect, a, PS, "rz")
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
    _fails(p, errno.EINVAL, p.madvise, a, PS, "sideways")
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
    _fails(p, errno.ENOMEM, p.sbrk, -PS)          # below start_brk
    assert p.sbrk(3 * PS) == start and p.brk() == start + 3 * PS
    p.write(start, b"heap")
    assert p.brk(start) == start                 # shrinking unmaps the pages
    with pytest.raises(Segfault):
        p.read(start, 1)
    m.check()


# -- SIGSEGV: one process dies, the machine goes on ---------------------------------------------

@pytest.mark.parametrize("how", ["null", "unmapped", "write-ro", "read-none", "write-text", "after-munmap",
                                 "fill-across"])
def test_segfault_kills_only_that_process(m: Machine, how: str) -> None:
    p = m.spawn("victim")
    other = m.spawn("other")
    buf = other.mmap(2 * PS)
    other.fill(buf, 2 * PS, 7)
    child = p.fork()
    a = p.mmap(2 * PS)
    p.write(a, b"before")
    bad = {"null": 0, "unmapped": 0x100000000000, "write-ro": a, "read-none": a,
           "write-text": p.addrs["text"], "after-munmap": a, "fill-across": a}[how]
    if how == "write-ro":
        p.mprotect(a, 2 * PS, "r")
    elif how == "read-none":
        p.mprotect(a, 2 * PS, "")
    elif how == "after-munmap":
        p.munmap(a, 2 * PS)
    elif how == "fill-across":
        p.mprotect(a + PS, PS, "r")
    with pytest.raises(Segfault) as ei:
        if how in ("null", "unmapped", "read-none", "after-munmap"):
            p.read(bad, 8)
        elif how == "fill-across":
            p.fill(a, 2 * PS, 1)
        else:
            p.write(bad, b"x")
    expect = a + PS if how == "fill-across" else bad
    assert ei.value.address == expect and ei.value.pid == p.pid
    assert not p.alive and p.exit_status == ("signal", signal.SIGSEGV)
    assert [e.kind for e in m.events.filter(pid=p.pid)][-2:] == ["segv", "exit"]
    m.check()
    with pytest.raises(ProcessGone):
        p.read(a, 1)
    # the others go on, their memory intact
    assert other.read(buf, 2 * PS) == b"\7" * 2 * PS
    assert child.alive
    child.write(child.addrs["data"], b"still here")
    assert child.read(child.addrs["data"], 10) == b"still here"
    assert child.status().fields["VmRSS"] > 0
    m.check()


def test_segfault_in_vfork_child_releases_the_parent(m: Machine) -> None:
    p = m.spawn()
    a = p.mmap(PS, prot="r")
    v = p.vfork()
    assert p.state == "D"
    with pytest.raises(Segfault):
        v.write(a, b"x")
    assert p.state == "R" and p.alive
    assert p.read(a, 1) == b"\0"
    assert p.wait(v) == (v.pid, ("signal", signal.SIGSEGV))
    m.check()


def test_exited_process_calls_are_process_gone(m: Machine) -> None:
    p = m.spawn()
    p.exit(3)
    for call in (lambda: p.read(0, 1), lambda: p.mmap(PS), lambda: p.fork(), lambda: p.malloc(8)):
        with pytest.raises(ProcessGone):
            call()


# -- OOM ----------------------------------------------------------------------------------------

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
    m = Machine(ram="4MiB", allocator="firstfit")
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


# -- shared anonymous memory: freed with its last mapping -----------------------------------------

@pytest.mark.parametrize("how", ["munmap", "exit"])
def test_shared_anon_frames_freed_with_last_mapping(how: str) -> None:
    m = Machine(allocator="firstfit")
    p = m.spawn()
    a = p.mmap(2 * PS, shared=True)
    p.write(a, b"x")
    c = p.fork()
    assert c.read(a, 1) == b"x"
    c.exit(0)
    before = m.phys.nr_used
    if how == "munmap":
        p.munmap(a, 2 * PS)
    else:
        p.exit(0)
    m.check()
    assert m.meminfo()["Shmem"] == 0
    assert m.phys.nr_used < before
