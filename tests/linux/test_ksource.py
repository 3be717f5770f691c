"""The kernel event source on real processes: each fault path gives the model's kind at the
right page, in the right process; nothing is lost at this rate."""

from __future__ import annotations

import os

import pytest

from cowscope.linux.ksource import KernelEvents
from cowscope.linux.machine import Machine
from cowscope.linux.tracefs import TraceUnavailable

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(os.geteuid() != 0, reason="tracing needs root")]
PS = 4096


@pytest.fixture
def traced():
    m = Machine()
    p = m.spawn("traced")
    try:
        ev = KernelEvents([p.pid], buffer_kb=2048)
    except TraceUnavailable as exc:
        m.close()
        pytest.skip(str(exc))
    yield m, p, ev
    ev.close()
    m.close()


def _mark(ev: KernelEvents) -> int:
    """Everything so far read: the seq the next event will have."""
    ev.sync(quiescent=True)
    return len(ev)


def _in(ev: KernelEvents, since: int, lo: int, n: int) -> list[tuple[int, str, int]]:
    ev.sync(quiescent=True)
    return [(e.pid, e.kind, (e.address - lo) // PS) for e in ev.since(since) if lo <= e.address < lo + n * PS]


def test_anon_paths(traced) -> None:
    m, p, ev = traced
    a = p.mmap(8 * PS)
    s = _mark(ev)
    p.touch(a, 1, write=True)
    p.touch(a + PS, 1)
    p.touch(a + PS, 1, write=True)
    p.touch(a + 2 * PS, 1, write=True)
    assert _in(ev, s, a, 8) == [(p.pid, "zero-fill", 0), (p.pid, "zero-page-map", 1), (p.pid, "zero-cow", 1),
                                (p.pid, "zero-fill", 2)]
    c = p.fork()
    s = _mark(ev)
    c.touch(a + 2 * PS, 1, write=True)   # copied in the child
    p.touch(a, 1, write=True)            # copied in the parent: the child still maps it
    c.exit(0)
    p.wait(c)
    p.touch(a + 2 * PS, 1, write=True)   # the child's gone: reused
    got = _in(ev, s, a, 8)
    assert got == [(c.pid, "cow-copy", 2), (p.pid, "cow-copy", 0), (p.pid, "cow-reuse", 2)]
    forks = [e for e in ev.filter(kind="fork") if e.pid == p.pid]
    assert forks and forks[-1].detail == f"child pid {c.pid}"
    assert any(e.kind == "exit" and e.pid == c.pid for e in ev)


def test_copy_pfn_is_the_new_frame(traced) -> None:
    m, p, ev = traced
    a = p.mmap(2 * PS)
    p.fill(a, 2 * PS, 7)
    c = p.fork()
    s = _mark(ev)
    c.touch(a, 1, write=True)
    ev.sync(quiescent=True)
    (e,) = [e for e in ev.since(s) if e.address == a]
    assert e.kind == "cow-copy" and e.old_pfn is None and e.time_ns and e.ip
    if m.kpage_available:
        assert e.new_pfn == c.pagemap(a, 1)[0].pfn


def test_file_and_shared_paths(traced) -> None:
    m, p, ev = traced
    f = m.create_file("data", b"f" * 8 * PS)
    priv = p.mmap(8 * PS, file=f)
    shared = p.mmap(8 * PS, file=f, shared=True)
    p.madvise(priv, 8 * PS, "random")
    p.madvise(shared, 8 * PS, "random")
    shm = p.mmap(4 * PS, shared=True)
    s = _mark(ev)
    p.touch(priv, 1, write=True)          # do_cow_fault
    p.touch(priv + PS, 1)                 # page cache mapped read-only
    p.touch(priv + PS, 1, write=True)     # wp_page_copy of a page-cache page
    assert [k for _p, k, _i in _in(ev, s, priv, 8)] == ["file-copy", "pagecache-map", "file-copy"]
    s = _mark(ev)
    p.touch(shared + 2 * PS, 1)
    p.touch(shared + 2 * PS, 1, write=True)
    assert [k for _p, k, _i in _in(ev, s, shared, 8)] == ["pagecache-map", "shared-write"]
    s = _mark(ev)
    p.touch(shm, 1, write=True)
    assert _in(ev, s, shm, 4) == [(p.pid, "shmem-alloc", 0)]


def test_segv_is_an_event(traced) -> None:
    from cowscope.errors import Segfault

    m, p, ev = traced
    a = p.mmap(PS, prot="r")
    with pytest.raises(Segfault):
        p.touch(a, 1, write=True)
    ev.sync(quiescent=True)
    assert any(e.kind == "segv" and e.pid == p.pid and e.address == a for e in ev)


def test_many_copies_none_lost(traced) -> None:
    m, p, ev = traced
    n = 4096
    a = p.mmap(n * PS)
    p.fill(a, n * PS, 1)
    c = p.fork()
    s = _mark(ev)
    c.fill(a, n * PS, 2)
    got = _in(ev, s, a, n)
    assert len(got) == n and {k for _p, k, _i in got} == {"cow-copy"}
    assert not ev.losses()


@pytest.mark.parametrize("how", ["fork", "vfork"])
def test_fork_and_vfork_are_named_as_the_model_names_them(how: str) -> None:
    from cowscope.model import Machine as Model

    kinds = []
    for machine in (Machine(events=True), Model()):
        with machine as m:
            p = m.spawn("P")
            c = getattr(p, how)()
            c.exit(0)
            kinds.append([(e.kind, e.detail) for e in m.events if e.pid == p.pid and e.kind in ("fork", "vfork")])
            kinds[-1] = [(k, d.replace(str(c.pid), "C")) for k, d in kinds[-1]]
    assert kinds[0] == kinds[1] == [(how, "child pid C")]


def test_machine_events_are_the_model_vocabulary() -> None:
    """linux.Machine(events=True): m.events like the model's log, children followed, checkpoints in it."""
    with Machine(events=True) as m:
        p = m.spawn("traced")
        a = p.mmap(4 * PS)
        p.fill(a, 4 * PS, 1)
        m.checkpoint("filled")
        s = len(m.events)
        c = p.fork()
        c.touch(a, 1, write=True)
        p.touch(a + PS, 1, write=True)
        got = [(e.pid, e.kind, e.address) for e in m.events.since(s) if a <= e.address < a + 4 * PS]
        assert got == [(c.pid, "cow-copy", a), (p.pid, "cow-copy", a + PS)]
        assert [e.detail for e in m.events.filter(kind="checkpoint")] == ["filled"]
        assert m.events.counts(pid=p.pid)["zero-fill"] >= 4 and m.events.losses() == 0
