"""SIGSEGV kills only the faulting process (a vfork parent is released); the others go on."""

from __future__ import annotations

import signal

import pytest

from cowscope.errors import ProcessGone, Segfault
from cowscope.model import Machine

PS = 4096


@pytest.fixture
def m() -> Machine:
    return Machine(allocator="firstfit")


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
