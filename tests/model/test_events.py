"""The event trace: one record per fault decision and process event, with the right frames."""

from __future__ import annotations

import numpy as np
import pytest

from cowscope.errors import Segfault
from cowscope.model import Event, EventLog, Machine
from cowscope.model.events import KINDS
from cowscope.observe.records import pagemap_pfns

PS = 4096
HINT = 0x100000000000


@pytest.fixture
def m() -> Machine:
    return Machine(allocator="firstfit")


def _pfn(p, addr: int) -> int:
    return p.pagemap(addr, 1)[0].pfn


def _new(m: Machine, since: int, kind: str | None = None) -> list[Event]:
    return m.events.filter(kind=kind, since=since)


def test_anon_read_then_write(m: Machine) -> None:
    p = m.spawn()
    a = p.mmap(2 * PS, addr=HINT)
    s = len(m.events)
    p.read(a, 1)
    (e,) = _new(m, s)
    assert (e.kind, e.pid, e.address, e.new_pfn) == ("zero-page-map", p.pid, a, m.zero_pfn)
    s = len(m.events)
    p.write(a, b"x")
    (e,) = _new(m, s)
    assert (e.kind, e.old_pfn, e.new_pfn) == ("zero-cow", m.zero_pfn, _pfn(p, a))
    s = len(m.events)
    p.write(a + PS + 5, b"y")                      # untouched page, write first
    (e,) = _new(m, s)
    assert (e.kind, e.address, e.new_pfn) == ("zero-fill", a + PS, _pfn(p, a + PS))
    s = len(m.events)
    p.write(a, b"again")                           # already writable: no fault, no event
    assert len(m.events) == s


def test_cow_copy_then_reuse(m: Machine) -> None:
    p = m.spawn()
    a = p.mmap(2 * PS, addr=HINT)
    p.fill(a, 2 * PS, 1)
    old = _pfn(p, a)
    s = len(m.events)
    c = p.fork()
    assert not [e for e in _new(m, s) if a <= e.address < a + 2 * PS]   # fork itself copies nothing
    s = len(m.events)
    c.write(a, b"child")
    (e,) = _new(m, s, "cow-copy")
    assert (e.pid, e.address, e.old_pfn, e.new_pfn) == (c.pid, a, old, _pfn(c, a))
    assert e.new_pfn != old and _pfn(p, a) == old
    s = len(m.events)
    p.write(a, b"parent")                          # nobody else maps it now: reused
    (e,) = _new(m, s, "cow-reuse")
    assert (e.pid, e.old_pfn, e.new_pfn) == (p.pid, old, old)
    c.exit(0)
    s = len(m.events)
    p.write(a + PS, b"after exit")                 # the child's exit left the page exclusive
    assert [e.kind for e in _new(m, s)] == ["cow-reuse"]
    assert m.vmstat()["cow_copy"] >= 1 and m.vmstat()["cow_reuse"] >= 2


def test_file_events(m: Machine) -> None:
    f = m.create_file("/data/f", data=bytes(range(256)) * 16 * 4, cached=False)
    p = m.spawn()
    a = p.mmap(4 * PS, prot="r", file=f, addr=HINT)
    s = len(m.events)
    major = p.fault_counts()["major"]
    p.read(a, 1)
    first = _new(m, s)
    assert [e.kind for e in first] == ["pagecache-map"] and "major" in first[0].detail
    assert p.fault_counts()["major"] == major + 1
    q = m.spawn()
    b = q.mmap(4 * PS, prot="rw", file=f, addr=HINT)
    s = len(m.events)
    q.read(b, 1)                                   # cached now: minor
    (e,) = _new(m, s)
    assert e.kind == "pagecache-map" and "major" not in e.detail and e.new_pfn == first[0].new_pfn
    s = len(m.events)
    q.write(b, b"private")                         # a private file page copied on write
    (e,) = _new(m, s)
    assert (e.kind, e.old_pfn, e.new_pfn) == ("file-copy", first[0].new_pfn, _pfn(q, b))
    s = len(m.events)
    q.write(b + 3 * PS, b"first access is a write")
    assert [e.kind for e in _new(m, s)] == ["file-copy"]
    r = m.spawn()
    c = r.mmap(4 * PS, prot="rw", shared=True, file=f, addr=HINT)
    s = len(m.events)
    r.write(c, b"shared")
    (e,) = _new(m, s)
    assert (e.kind, e.new_pfn) == ("shared-write", first[0].new_pfn)
    assert p.read(a, 6) == b"shared"


def test_shmem_alloc_event(m: Machine) -> None:
    p = m.spawn()
    a = p.mmap(PS, shared=True, addr=HINT)
    s = len(m.events)
    p.write(a, b"x")
    assert [e.kind for e in _new(m, s)] == ["shmem-alloc"]


def test_process_events(m: Machine) -> None:
    p = m.spawn()
    kinds = [e.kind for e in m.events.filter(pid=p.pid)]
    assert kinds[0] == "exec"
    c = p.fork()
    fork = m.events.filter(pid=p.pid, kind="fork")[-1]
    assert str(c.pid) in fork.detail
    v = p.vfork()
    assert m.events.filter(kind="vfork")[-1].pid == p.pid
    v.exec()
    assert m.events.filter(pid=v.pid)[0].kind == "exec"
    c.exit(7)
    assert m.events.filter(pid=c.pid, kind="exit")[-1].detail == "exit 7"
    s = len(m.events)
    with pytest.raises(Segfault):
        p.read(0x10, 1)
    kinds = [(e.kind, e.address) for e in _new(m, s)]
    assert kinds == [("segv", 0x10), ("exit", 0)]
    m.checkpoint("done")
    assert m.events[-1].kind == "checkpoint" and m.events[-1].detail == "done"
    assert m.checkpoints[-1] == ("done", len(m.events) - 1)


def test_stack_grow_event(m: Machine) -> None:
    p = m.spawn()
    stack = next(e for e in p.maps() if e.path == "[stack]")
    s = len(m.events)
    p.write(stack.start - 2 * PS, b"deep recursion")
    kinds = [e.kind for e in _new(m, s)]
    assert kinds == ["stack-grow", "zero-fill"]
    assert next(e for e in p.maps() if e.path == "[stack]").start == stack.start - 2 * PS


def test_bulk_touch_records_one_event_per_page(m: Machine) -> None:
    p = m.spawn()
    n = 1000
    a = p.mmap(n * PS, addr=HINT)
    s = len(m.events)
    p.touch(a, n * PS, write=True)
    evs = _new(m, s)
    assert len(evs) == n and {e.kind for e in evs} == {"zero-fill"}
    assert [e.address for e in evs] == [a + i * PS for i in range(n)]
    pfns = pagemap_pfns(p.pagemap_raw(a, n))
    assert [e.new_pfn for e in evs] == pfns.tolist()
    c = p.fork()
    s = len(m.events)
    c.touch(a, n * PS, write=True)
    counts = m.events.counts(since=s, pid=c.pid)
    assert counts["cow-copy"] == n
    assert m.events.counts(since=s, pid=p.pid) == {}


def test_eventlog_sequence_api() -> None:
    log = EventLog()
    log.add(1, "fork", 0, detail="child pid 2")
    log.add_bulk(2, "zero-fill", np.array([0x1000, 0x2000]), np.zeros(2), np.array([5, 6]))
    log.add(2, "exit", 0)
    assert len(log) == 4
    assert [e.seq for e in log] == [0, 1, 2, 3]
    assert log[1] == Event(1, 2, "zero-fill", 0x1000, 0, 5)
    assert log[-1].kind == "exit" and log[0].detail == "child pid 2"
    assert [e.seq for e in log.since(2)] == [2, 3]
    assert log.counts() == {"fork": 1, "zero-fill": 2, "exit": 1}
    assert log.counts(pid=2) == {"zero-fill": 2, "exit": 1}
    assert [e.address for e in log.filter(kind="zero-fill")] == [0x1000, 0x2000]
    with pytest.raises(IndexError):
        log[4]
    with pytest.raises(KeyError):
        log.add(1, "no-such-kind", 0)
    assert "zero-fill" in KINDS and "pfn 0x5" in log[1].describe()


def test_recording_off() -> None:
    m = Machine(allocator="firstfit", record_events=False)
    p = m.spawn()
    a = p.mmap(PS)
    p.write(a, b"x")
    assert len(m.events) == 0 and list(m.events) == []
    assert m.vmstat()["zero_fill"] >= 1     # the counters still count


def test_since_reads_only_the_new_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """Polling for new events after each operation (malloc replay --machine) never concatenates
    the whole log: that made the replay quadratic. The events read back are the same."""
    log = EventLog()
    seen = []
    for i in range(3000):
        log.add(7, "zero-fill", 0x1000 * i, 0, i + 1, detail="d" if i % 100 == 0 else "")
        if i % 500 == 0:
            log.add_bulk(7, "cow-copy", np.arange(3) * 4096, np.ones(3), np.arange(3) + 9)
        mark = len(seen)
        monkeypatch.setattr(EventLog, "_columns", lambda self: pytest.fail("since() concatenated the log"))
        seen.extend(log.since(mark))
        monkeypatch.undo()
    assert [e.seq for e in seen] == list(range(len(log)))
    assert seen == list(log)
    assert sum(e.detail == "d" for e in seen) == 30 and {e.kind for e in seen} == {"zero-fill", "cow-copy"}


@pytest.mark.parametrize("address", [0xFFFFFFFFFFFFF000, 2**63, 2**64 - 1])
def test_fault_far_above_user_space_is_a_segfault_in_the_log(address: int, tmp_path) -> None:
    """p.read(0xfffffffffffff000, 1), p.free(-1): a SIGSEGV of that process, kept in the event log
    (an unsigned address) and in the HTML report (as no address)."""
    from cowscope.errors import Segfault
    from cowscope.observe.snapshot import take
    from cowscope.report.html import write_report

    m = Machine()
    p, q = m.spawn("P"), m.spawn("Q")
    with pytest.raises(Segfault):
        p.read(address, 1)
    with pytest.raises(Segfault):
        q.free(-1)
    segv = [e for e in m.events if e.kind == "segv"]
    assert [e.address for e in segv] == [address, 2**64 - 1 - 8]  # free reads the size field below ptr
    m.checkpoint("after")
    out = write_report(tmp_path / "r.html", [take(m, "after")], events=list(m.events))
    assert out.stat().st_size > 1000
