"""Private anonymous memory: zero page, zero-fill, fork sharing, CoW copy and reuse."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import PAGE, region, scenario

if TYPE_CHECKING:
    from ..trace import TracedMachine


@scenario("C01", "untouched private anon region has no pages")
def untouched(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4)
    m.checkpoint("mapped")
    m.expect_eq(m.tokens(p, a, 4), ["-"] * 4, "pagemap")
    m.expect_smaps(p, a, "smaps", Size=16)
    s = m.vma_at(p, a)
    m.expect(s is not None and {"rd", "wr", "mr", "mw", "me", "ac"} <= set(s.vm_flags),
             f"VmFlags rd wr mr mw me ac: {s and s.vm_flags}")


@scenario("C02", "read fault maps the shared zero page")
def zero_page_read(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4)
    m.expect_eq(p.read(a, 2 * PAGE), bytes(2 * PAGE), "bytes read")
    m.checkpoint("read p0 p1")
    m.expect_eq(m.tokens(p, a, 4), ["Z", "Z", "-", "-"], "pagemap")
    pf = m.pfns(p, a, 2)
    m.expect(pf[0] == pf[1] != 0, "p0 and p1 map one zero page")
    m.expect_smaps(p, a, "smaps", Size=16)


@scenario("C03", "write fault allocates an exclusive zero-filled page")
def zero_fill_write(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4)
    p.read(a, 2 * PAGE)
    p.write(a + 2 * PAGE, b"\x07")
    m.checkpoint("wrote p2")
    m.expect_eq(m.tokens(p, a, 4), ["Z", "Z", "X", "-"], "pagemap")
    m.expect_eq(p.read(a + 2 * PAGE, 8), b"\x07" + bytes(7), "p2 bytes")
    m.expect_smaps(p, a, "smaps", Size=16, Rss=4, Pss=4, Pss_Dirty=4, Private_Dirty=4, Anonymous=4)


@scenario("C04", "write after read replaces the zero page")
def zero_page_cow(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4)
    p.read(a, 2 * PAGE)
    p.write(a + 2 * PAGE, b"\x07")
    z = m.pfns(p, a + PAGE, 1)[0]
    p.write(a + PAGE, b"\x09")
    m.checkpoint("wrote p1")
    m.expect_eq(m.tokens(p, a, 4), ["Z", "X", "X", "-"], "pagemap")
    m.expect(m.pfns(p, a + PAGE, 1)[0] != z, "p1 left the zero page")
    m.expect_eq([p.read(a + i * PAGE, 1)[0] for i in range(4)], [0, 9, 7, 0], "first bytes")
    m.expect_eq(p.read(a + PAGE + 1, PAGE - 1), bytes(PAGE - 1), "rest of p1 is zero")
    m.expect_smaps(p, a, "smaps", Size=16, Rss=8, Pss=8, Pss_Dirty=8, Private_Dirty=8, Anonymous=8)


@scenario("C05", "fork: written pages become CoW-shared by parent and child")
def fork_shares(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x11)
    before = m.pfns(p, a, 4)
    c = p.fork()
    m.checkpoint("after fork")
    for who in (p, c):
        m.expect_eq(m.tokens(who, a, 4), ["S2"] * 4, f"{who.key} pagemap")
        m.expect_eq(m.pfns(who, a, 4), before, f"{who.key} keeps the parent's PFNs")
        m.expect_smaps(who, a, f"{who.key} smaps", Size=16, Rss=16, Pss=8, Pss_Dirty=8, Shared_Dirty=16,
                       Anonymous=16)
    m.expect_eq(c.read(a, PAGE), b"\x11" * PAGE, "child reads the parent's data")


@scenario("C06", "child writes: copy in the child, the parent's page becomes exclusive")
def child_copies(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x11)
    orig = m.pfns(p, a, 4)
    c = p.fork()
    c.fill(a, PAGE, 0x22)
    m.checkpoint("child wrote p0")
    m.expect_eq(m.tokens(c, a, 4), ["X", "S2", "S2", "S2"], "child pagemap")
    m.expect_eq(m.tokens(p, a, 4), ["X", "S2", "S2", "S2"], "parent pagemap")
    m.expect(m.pfns(c, a, 1)[0] != orig[0] and m.pfns(p, a, 1)[0] == orig[0], "child got a new page")
    m.expect_eq((p.read(a, 1), c.read(a, 1)), (b"\x11", b"\x22"), "p0 bytes (parent, child)")
    for who in (p, c):
        m.expect_smaps(who, a, f"{who.key} smaps", Size=16, Rss=16, Pss=10, Pss_Dirty=10, Shared_Dirty=12,
                       Private_Dirty=4, Anonymous=16)


@scenario("C07", "parent writes a page only it still maps: reused, no copy")
def parent_reuses(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x11)
    orig = m.pfns(p, a, 1)[0]
    c = p.fork()
    c.fill(a, PAGE, 0x22)
    p.fill(a, PAGE, 0x33)
    m.checkpoint("parent wrote p0")
    m.expect_eq(m.pfns(p, a, 1)[0], orig, "parent keeps PFN A")
    m.expect_eq(m.tokens(p, a, 2), ["X", "S2"], "parent pagemap")
    m.expect_eq((p.read(a, 1), c.read(a, 1)), (b"\x33", b"\x22"), "p0 bytes (parent, child)")


@scenario("C08", "parent writes a page still shared: copy in the writer, the child's becomes exclusive")
def parent_copies(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x11)
    orig = m.pfns(p, a, 4)
    c = p.fork()
    c.fill(a, PAGE, 0x22)
    p.fill(a, PAGE, 0x33)
    p.fill(a + PAGE, PAGE, 0x44)
    m.checkpoint("parent wrote p1")
    m.expect_eq(m.tokens(p, a, 4), ["X", "X", "S2", "S2"], "parent pagemap")
    m.expect_eq(m.tokens(c, a, 4), ["X", "X", "S2", "S2"], "child pagemap")
    m.expect_eq(m.pfns(c, a + PAGE, 1)[0], orig[1], "child keeps PFN B")
    m.expect(m.pfns(p, a + PAGE, 1)[0] != orig[1], "parent got a new page for p1")
    for who in (p, c):
        m.expect_smaps(who, a, f"{who.key} smaps", Size=16, Rss=16, Pss=12, Pss_Dirty=12, Shared_Dirty=8,
                       Private_Dirty=8, Anonymous=16)
    m.expect_eq([c.read(a, 1), c.read(a + PAGE, 1), p.read(a, 1), p.read(a + PAGE, 1)],
                [b"\x22", b"\x11", b"\x33", b"\x44"], "bytes C p0 p1, P p0 p1")


@scenario("C09", "reuse after the child exited: the parent's write keeps the PFN")
def reuse_after_exit(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 2, fill=0x11)
    orig = m.pfns(p, a, 2)
    c = p.fork()
    c.exit(0)
    m.checkpoint("child exited")
    m.expect_eq(m.tokens(p, a, 2), ["X", "X"], "parent pagemap after the child exited")
    p.fill(a, 2 * PAGE, 0x55)
    m.checkpoint("parent wrote")
    m.expect_eq(m.pfns(p, a, 2), orig, "parent keeps both PFNs")
    m.expect_eq(p.wait(c)[1], ("exit", 0), "wait status")


@scenario("C11", "fork of a region that only took read faults copies nothing")
def fork_read_only_faults(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4)
    p.read(a, 2 * PAGE)
    c = p.fork()
    m.checkpoint("after fork")
    m.expect_eq(m.tokens(p, a, 4), ["Z", "Z", "-", "-"], "parent pagemap")
    m.expect_eq(m.tokens(c, a, 4), ["-"] * 4, "child pagemap")
    m.expect_eq(c.read(a, 1), b"\x00", "child reads 0")
    m.checkpoint("child read p0")
    m.expect_eq(m.tokens(c, a, 4), ["Z", "-", "-", "-"], "child pagemap after read")


@scenario("A01", "fork of a written region copies its zero-page PTEs too")
def fork_copies_zero_ptes(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4)
    p.read(a, 2 * PAGE)
    p.write(a + 2 * PAGE, b"\x01")
    c = p.fork()
    m.checkpoint("after fork")
    m.expect_eq(m.tokens(c, a, 4), ["Z", "Z", "S2", "-"], "child pagemap")
    m.expect_eq(m.tokens(p, a, 4), ["Z", "Z", "S2", "-"], "parent pagemap")
    c.write(a, b"\x02")
    m.checkpoint("child wrote the zero page")
    m.expect_eq(m.tokens(c, a, 4), ["X", "Z", "S2", "-"], "child pagemap after write")
    m.expect_eq(p.read(a, 1), b"\x00", "parent still reads 0")


@scenario("A02", "three children: map count 4, Pss split four ways")
def several_children(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x11)
    kids = [p.fork() for _ in range(3)]
    m.checkpoint("three children")
    for who in [p, *kids]:
        m.expect_eq(m.tokens(who, a, 4), ["S4"] * 4, f"{who.key} pagemap")
        m.expect_smaps(who, a, f"{who.key} smaps", Size=16, Rss=16, Pss=4, Pss_Dirty=4, Shared_Dirty=16,
                       Anonymous=16)
    kids[1].exit(0)
    p.wait(kids[1])
    m.checkpoint("one child gone")
    m.expect_eq(m.tokens(p, a, 4), ["S3"] * 4, "parent pagemap after one exit")


@scenario("A03", "Pss of 3 pages shared by 3 truncates to 3 kB")
def pss_truncation(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 3, fill=0x11)
    p.fork()
    p.fork()
    m.checkpoint("three sharers")
    m.expect_eq(m.tokens(p, a, 3), ["S3"] * 3, "pagemap")
    m.expect_smaps(p, a, "parent smaps", Size=12, Rss=12, Pss=3, Pss_Dirty=3, Shared_Dirty=12, Anonymous=12)


@scenario("A04", "grandchild: three sharers, then the grandchild copies")
def grandchild(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 2, fill=0x11)
    c = p.fork()
    g = c.fork()
    m.checkpoint("grandchild")
    for who in (p, c, g):
        m.expect_eq(m.tokens(who, a, 2), ["S3", "S3"], f"{who.key} pagemap")
    g.fill(a, PAGE, 0x77)
    m.checkpoint("grandchild wrote p0")
    m.expect_eq(m.tokens(g, a, 2), ["X", "S3"], "grandchild pagemap")
    m.expect_eq(m.tokens(p, a, 2), ["S2", "S3"], "parent pagemap")
    m.expect_eq((p.read(a, 1), c.read(a, 1), g.read(a, 1)), (b"\x11", b"\x11", b"\x77"), "p0 bytes")


@scenario("A05", "both sides write the same page: child copies, parent reuses")
def both_write(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 1, fill=0x11)
    orig = m.pfns(p, a, 1)[0]
    c = p.fork()
    c.write(a, b"\x22")
    p.write(a, b"\x33")
    m.checkpoint("both wrote")
    m.expect_eq((m.tokens(p, a, 1), m.tokens(c, a, 1)), (["X"], ["X"]), "pagemaps")
    m.expect_eq(m.pfns(p, a, 1)[0], orig, "parent reused its page")
    m.expect_smaps(c, a, "child smaps", Size=4, Rss=4, Pss=4, Pss_Dirty=4, Private_Dirty=4, Anonymous=4)


@scenario("A06", "child DONTNEEDs its copy: the parent's pages become exclusive and are reused")
def child_dontneed(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 2, fill=0x11)
    orig = m.pfns(p, a, 2)
    c = p.fork()
    c.madvise(a, 2 * PAGE, "dontneed")
    m.checkpoint("child dontneed")
    m.expect_eq(m.tokens(c, a, 2), ["-", "-"], "child pagemap")
    m.expect_eq(m.tokens(p, a, 2), ["X", "X"], "parent pagemap")
    p.write(a, b"\x44")
    m.expect_eq(m.pfns(p, a, 2), orig, "parent reuses")
    m.expect_eq(c.read(a, 1), b"\x00", "child reads zero")


@scenario("A07", "child munmaps the region: the parent's write reuses the page")
def child_munmap(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 2, fill=0x11)
    orig = m.pfns(p, a, 2)
    c = p.fork()
    c.munmap(a, 2 * PAGE)
    m.checkpoint("child unmapped")
    m.expect_eq(m.tokens(p, a, 2), ["X", "X"], "parent pagemap")
    p.fill(a, 2 * PAGE, 0x66)
    m.checkpoint("parent wrote")
    m.expect_eq(m.pfns(p, a, 2), orig, "parent reuses")


@scenario("A08", "cow.c basic: no leak from parent into child (and back)")
def no_leak(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x5A)
    c = p.fork()
    p.fill(a, 4 * PAGE, 0xFF)
    m.expect_eq(c.read(a, 4 * PAGE), b"\x5a" * 4 * PAGE, "child sees the old data")
    c.fill(a, 4 * PAGE, 0x01)
    m.expect_eq(p.read(a, 4 * PAGE), b"\xff" * 4 * PAGE, "parent sees its own data")
    m.checkpoint("both wrote everything")
    m.expect_eq(m.tokens(p, a, 4), ["X"] * 4, "parent pagemap")
    m.expect_eq(m.tokens(c, a, 4), ["X"] * 4, "child pagemap")
