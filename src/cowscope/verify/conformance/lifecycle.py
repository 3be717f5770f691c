"""Process lifecycle: vfork, exec, exit and wait, zombies, a segfault in a child."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import ProcessGone, Segfault
from . import PAGE, region, scenario

if TYPE_CHECKING:
    from ..trace import TracedMachine


@scenario("C27", "vfork shares the address space: the child's writes are the parent's")
def vfork_shares(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 2, fill=0x11)
    before = m.pfns(p, a, 2)
    v = p.vfork()
    v.write(a, b"\x22")
    v.write(a + PAGE, b"\x33")
    v.exit(0)
    m.checkpoint("vfork child exited")
    m.expect_eq((p.read(a, 1), p.read(a + PAGE, 1)), (b"\x22", b"\x33"), "parent sees the writes")
    m.expect_eq(m.tokens(p, a, 2), ["X", "X"], "pagemap unchanged")
    m.expect_eq(m.pfns(p, a, 2), before, "same pages")
    m.expect_eq(p.wait(v)[1], ("exit", 0), "wait status")


@scenario("L01", "vfork then exec: the parent resumes untouched, the child has a fresh image")
def vfork_exec(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 2, fill=0x11)
    v = p.vfork()
    v.exec()
    m.checkpoint("child exec'd")
    m.expect_eq(m.tokens(p, a, 2), ["X", "X"], "parent pages exclusive")
    m.expect_eq(m.tokens(v, a, 2), ["-", "-"], "nothing at the region's address in the child")
    m.expect(all(s.vma.end <= a or s.vma.start >= a + 2 * PAGE for s in v.smaps()),
             "the child has no VMA there")
    v.exit(3)
    m.expect_eq(p.wait(v)[1], ("exit", 3), "wait status")


@scenario("C26", "exec in the child releases its mappings: the parent's pages become exclusive")
def exec_frees(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x11)
    c = p.fork()
    m.expect_eq(m.tokens(p, a, 4), ["S2"] * 4, "shared before exec")
    c.exec()
    m.checkpoint("child exec'd")
    m.expect_eq(m.tokens(p, a, 4), ["X"] * 4, "parent pagemap")
    m.expect_smaps(p, a, "parent smaps", Size=16, Rss=16, Pss=16, Pss_Dirty=16, Private_Dirty=16,
                   Anonymous=16)
    m.expect_eq(m.tokens(c, a, 4), ["-"] * 4, "child has nothing there")


@scenario("L02", "an exited child is a zombie until waited for")
def zombie(m: TracedMachine) -> None:
    p = m.spawn("P")
    region(m, p, 1, fill=0x01)
    c = p.fork()
    c.exit(7)
    m.checkpoint("child exited")
    m.expect_eq(c.state, "Z", "zombie")
    m.expect_eq(c.exit_status, ("exit", 7), "exit status")
    m.expect_raises(ProcessGone, lambda: c.maps(), "a zombie has no maps")
    pid, status = p.wait(c)
    m.expect_eq((pid, status), (c.pid, ("exit", 7)), "wait result")
    m.checkpoint("reaped")
    m.expect_eq(c.state, "X", "reaped")


@scenario("L03", "a segfaulting child leaves the parent and the shared pages intact")
def child_segv(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 2, fill=0x11)
    c = p.fork()
    c.write(a, b"\x22")
    m.expect_raises(Segfault, lambda: c.read(a - PAGE, 1), "read of the guard page")
    m.checkpoint("child killed")
    m.expect_eq(m.tokens(p, a, 2), ["X", "X"], "parent's pages exclusive")
    m.expect_eq(p.read(a, 1), b"\x11", "parent data")
    m.expect_eq(c.exit_status, ("signal", 11), "exit status")


@scenario("L04", "parent exits first: the orphan keeps its pages, now exclusive")
def parent_exits(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 2, fill=0x11)
    c = p.fork()
    p.exit(0)
    m.checkpoint("parent exited")
    m.expect_eq(m.tokens(c, a, 2), ["X", "X"], "orphan's pages")
    c.write(a, b"\x01")
    m.expect_eq(c.read(a, 2), b"\x01\x11", "orphan data")


@scenario("L05", "exec in the parent's child after it wrote: its copies are freed")
def exec_after_copy(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 2, fill=0x11)
    c = p.fork()
    c.fill(a, PAGE, 0x22)
    c.exec()
    m.checkpoint("exec'd")
    m.expect_eq(m.tokens(p, a, 2), ["X", "X"], "parent pagemap")
    m.expect_eq(m.tokens(c, a, 2), ["-", "-"], "child pagemap")
