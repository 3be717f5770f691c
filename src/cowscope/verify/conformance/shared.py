"""MAP_SHARED|MAP_ANONYMOUS memory across fork."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import PAGE, region, scenario

if TYPE_CHECKING:
    from ..trace import TracedMachine


@scenario("C14", "MAP_SHARED anonymous: not copied at fork, writes seen by both")
def shared_anon_fork(m: TracedMachine) -> None:
    p = m.spawn("P")
    s = region(m, p, 4, shared=True)
    p.fill(s, PAGE, 0x11)
    m.checkpoint("parent wrote p0")
    m.expect_eq(m.tokens(p, s, 4), ["F1", "-", "-", "-"], "parent pagemap")
    m.expect_smaps(p, s, "parent smaps", Size=16, Rss=4, Pss=4, Pss_Dirty=4, Private_Dirty=4)
    c = p.fork()
    m.checkpoint("after fork")
    m.expect_eq(m.tokens(c, s, 4), ["-"] * 4, "child pagemap (shared VMAs are not copied)")
    m.expect_eq(c.read(s, 1), b"\x11", "child reads the parent's write")
    c.fill(s + PAGE, PAGE, 0x22)
    m.expect_eq(p.read(s + PAGE, 1), b"\x22", "parent reads the child's write")
    m.checkpoint("both mapped p0 p1")
    for who in (p, c):
        m.expect_eq(m.tokens(who, s, 4), ["F2", "F2", "-", "-"], f"{who.key} pagemap")
        m.expect_smaps(who, s, f"{who.key} smaps", Size=16, Rss=8, Pss=4, Pss_Dirty=4, Shared_Dirty=8)
    m.expect_eq(m.pfns(p, s, 2), m.pfns(c, s, 2), "same pages in both")


@scenario("C15", "MADV_DONTNEED on shared anonymous memory keeps the data")
def shared_dontneed(m: TracedMachine) -> None:
    p = m.spawn("P")
    s = region(m, p, 4, shared=True)
    p.fill(s, PAGE, 0x11)
    c = p.fork()
    c.read(s, 1)
    pfn = m.pfns(p, s, 1)[0]
    c.madvise(s, 4 * PAGE, "dontneed")
    m.checkpoint("child dontneed")
    m.expect_eq(m.tokens(c, s, 4), ["-"] * 4, "child pagemap")
    m.expect_eq(c.read(s, 1), b"\x11", "the data is still there")
    m.expect_eq(m.pfns(c, s, 1)[0], pfn, "same page again")
    p.fill(s + 2 * PAGE, PAGE, 0x77)
    p.madvise(s + 2 * PAGE, PAGE, "dontneed")
    m.expect_eq(p.read(s + 2 * PAGE, 1), b"\x77", "standalone: the write survives DONTNEED")


@scenario("S01", "shared anonymous page written after fork by the child only")
def shared_child_first(m: TracedMachine) -> None:
    p = m.spawn("P")
    s = region(m, p, 2, shared=True)
    c = p.fork()
    c.fill(s, 2 * PAGE, 0x42)
    m.checkpoint("child wrote")
    m.expect_eq(m.tokens(c, s, 2), ["F1", "F1"], "child pagemap")
    m.expect_eq(m.tokens(p, s, 2), ["-", "-"], "parent pagemap")
    m.expect_eq(p.read(s, 2 * PAGE), b"\x42" * 2 * PAGE, "parent reads the child's data")
    m.checkpoint("parent read")
    m.expect_eq(m.tokens(p, s, 2), ["F2", "F2"], "parent pagemap after read")


@scenario("S02", "shared and private anonymous regions side by side across fork")
def shared_and_private(m: TracedMachine) -> None:
    p = m.spawn("P")
    s = region(m, p, 1, shared=True)
    a = region(m, p, 1)
    p.write(s, b"\x01")
    p.write(a, b"\x01")
    c = p.fork()
    c.write(s, b"\x02")
    c.write(a, b"\x02")
    m.checkpoint("child wrote both")
    m.expect_eq((p.read(s, 1), p.read(a, 1)), (b"\x02", b"\x01"), "parent sees shared write only")
    m.expect_eq((m.tokens(c, s, 1), m.tokens(c, a, 1)), (["F2"], ["X"]), "child pagemaps")
