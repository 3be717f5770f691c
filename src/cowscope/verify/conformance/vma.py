"""VMA operations: mprotect, munmap, brk, mremap."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import Segfault
from . import PAGE, region, scenario

if TYPE_CHECKING:
    from ..process import TracedProcess
    from ..trace import TracedMachine


def _vmas_in(m: TracedMachine, p: TracedProcess, a: int, npages: int) -> list[tuple[int, int]]:
    """The VMAs overlapping [a, a+npages) as page ranges relative to a."""
    out = []
    for s in p.smaps():
        if s.vma.end > a and s.vma.start < a + npages * PAGE:
            out.append(((s.vma.start - a) // PAGE, (s.vma.end - a) // PAGE))
    return out


@scenario("V01", "mprotect read-only, then a write: SIGSEGV")
def mprotect_ro_write(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 2, fill=0x11)
    c = p.fork()
    c.mprotect(a, 2 * PAGE, "r")
    m.expect_eq(c.read(a, 1), b"\x11", "still readable")
    m.expect_raises(Segfault, lambda: c.write(a, b"\x01"), "write to a read-only page")
    m.checkpoint("child killed")
    m.expect_eq(c.alive, False, "the child is dead")
    m.expect_eq(p.wait(c)[1], ("signal", 11), "killed by SIGSEGV")
    m.expect_eq(p.read(a, 1), b"\x11", "the parent is unaffected")


@scenario("V02", "cow.c #2: fork, mprotect R then RW in the parent, the parent's write still copies")
def mprotect_optimization(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 2, fill=0x11)
    c = p.fork()
    p.mprotect(a, 2 * PAGE, "r")
    p.mprotect(a, 2 * PAGE, "rw")
    m.checkpoint("mprotect back to rw")
    m.expect_eq(m.tokens(p, a, 2), ["S2", "S2"], "still shared after mprotect")
    p.fill(a, 2 * PAGE, 0xFF)
    m.checkpoint("parent wrote")
    m.expect_eq(c.read(a, 2 * PAGE), b"\x11" * 2 * PAGE, "no leak from parent into child")
    m.expect_eq(m.tokens(p, a, 2), ["X", "X"], "parent copied")


@scenario("V03", "mprotect PROT_NONE keeps pages; restoring RW keeps the contents")
def mprotect_none(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 2, fill=0x33)
    p.mprotect(a, 2 * PAGE, "")
    m.checkpoint("prot none")
    m.expect_eq(m.tokens(p, a, 2), ["X", "X"], "pages stay present")
    m.expect_smaps(p, a, "smaps", Size=8, Rss=8, Pss=8, Pss_Dirty=8, Private_Dirty=8, Anonymous=8)
    p.mprotect(a, 2 * PAGE, "rw")
    m.expect_eq(p.read(a, 1), b"\x33", "contents kept")


@scenario("V04", "mprotect of the middle splits into three VMAs; restoring merges them")
def mprotect_split_merge(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x01)
    p.mprotect(a + PAGE, 2 * PAGE, "r")
    m.checkpoint("split")
    m.expect_eq(_vmas_in(m, p, a, 4), [(0, 1), (1, 3), (3, 4)], "three VMAs")
    p.mprotect(a + PAGE, 2 * PAGE, "rw")
    m.checkpoint("merged")
    m.expect_eq(_vmas_in(m, p, a, 4), [(0, 4)], "one VMA again")


@scenario("C28", "munmap of the middle splits the VMA, kept pages untouched")
def munmap_middle(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 8, fill=0x5A)
    before = m.pfns(p, a, 8)
    p.munmap(a + 3 * PAGE, 2 * PAGE)
    m.checkpoint("unmapped p3 p4")
    m.expect_eq(_vmas_in(m, p, a, 8), [(0, 3), (5, 8)], "two VMAs")
    m.expect_eq(m.tokens(p, a, 8), ["X", "X", "X", "-", "-", "X", "X", "X"], "pagemap")
    after = m.pfns(p, a, 8)
    m.expect_eq([after[i] for i in (0, 1, 2, 5, 6, 7)], [before[i] for i in (0, 1, 2, 5, 6, 7)], "PFNs kept")
    for part in (a, a + 5 * PAGE):
        m.expect_smaps(p, part, "part smaps", Size=12, Rss=12, Pss=12, Pss_Dirty=12, Private_Dirty=12,
                       Anonymous=12)


@scenario("V05", "access to an unmapped hole: SIGSEGV")
def munmap_access(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 3, fill=0x01)
    c = p.fork()
    c.munmap(a + PAGE, PAGE)
    m.expect_raises(Segfault, lambda: c.read(a + PAGE, 1), "read of the hole")
    m.checkpoint("child dead")
    m.expect_eq(p.wait(c)[1], ("signal", 11), "killed by SIGSEGV")
    m.expect_eq(m.tokens(p, a, 3), ["X", "X", "X"], "parent's pages exclusive again")


@scenario("V06", "brk growth: new heap pages are demand-zero")
def brk_grow(m: TracedMachine) -> None:
    p = m.spawn("P")
    start = p.brk()
    old = p.sbrk(4 * PAGE)
    m.expect_eq(old, start, "sbrk returns the old break")
    m.expect_eq(p.brk(), start + 4 * PAGE, "break moved up by 4 pages")
    m.expect_eq(m.tokens(p, start, 4), ["-"] * 4, "no pages yet")
    p.write(start + PAGE, b"\x01")
    p.read(start + 2 * PAGE, 1)
    m.checkpoint("heap used")
    m.expect_eq(m.tokens(p, start, 4), ["-", "X", "Z", "-"], "heap pagemap")


@scenario("V07", "brk shrink: released heap pages are gone, access is SIGSEGV")
def brk_shrink(m: TracedMachine) -> None:
    p = m.spawn("P")
    start = p.brk()
    p.sbrk(4 * PAGE)
    p.fill(start, 4 * PAGE, 0x77)
    c = p.fork()
    c.sbrk(-2 * PAGE)
    m.checkpoint("child shrank")
    m.expect_eq(c.brk(), start + 2 * PAGE, "child break")
    m.expect_eq(m.tokens(p, start, 4), ["S2", "S2", "X", "X"], "parent: released pages exclusive")
    m.expect_raises(Segfault, lambda: c.read(start + 3 * PAGE, 1), "read above the break")
    m.expect_eq(p.read(start + 3 * PAGE, 1), b"\x77", "parent keeps its heap")


@scenario("V08", "mremap grow (may move) keeps the data")
def mremap_grow(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 2, fill=0x21)
    b = p.mremap(a, 2 * PAGE, 4 * PAGE, may_move=True)
    m.checkpoint("grown")
    m.expect_eq(p.read(b, 2 * PAGE), b"\x21" * 2 * PAGE, "data kept")
    m.expect_eq(m.tokens(p, b, 4), ["X", "X", "-", "-"], "old pages moved, new ones absent")
    m.expect_eq(p.read(b + 3 * PAGE, 1), b"\x00", "new part reads zero")


@scenario("V09", "mremap MREMAP_FIXED replaces what lies at the target; the pages move with their sharing")
def mremap_fixed(m: TracedMachine) -> None:
    import errno

    from ...errors import SyscallError

    p = m.spawn("P")
    a = region(m, p, 4, fill=0x11)
    c = p.fork()
    t = region(m, p, 8, fill=0x55)
    b = p.mremap(a, 4 * PAGE, 6 * PAGE, new_addr=t)
    m.checkpoint("moved onto another region")
    m.expect_eq(b, t, "at the address asked for")
    m.expect_eq(m.tokens(p, t, 8), ["S2"] * 4 + ["-", "-", "X", "X"],
                "the moved pages still shared with the child; what lay there is gone but its tail")
    m.expect_eq(_vmas_in(m, p, t, 8), [(0, 6), (6, 8)], "no merge with the rest (another anon_vma)")
    m.expect_eq(p.read(t + 3 * PAGE, 1) + p.read(t + 7 * PAGE, 1), b"\x11\x55", "data moved, tail kept")
    m.expect_eq(_vmas_in(m, p, a, 4), [], "the old range is unmapped")
    m.expect_eq(m.tokens(c, a, 4), ["S2"] * 4, "the child's mapping is its own")
    s = region(m, p, 4, fill=0x22)
    d = p.mremap(s, 4 * PAGE, 2 * PAGE, new_addr=t + 6 * PAGE)
    m.checkpoint("shrunk while moved")
    m.expect_eq(m.tokens(p, d, 2), ["X", "X"], "two pages moved")
    m.expect_eq(_vmas_in(m, p, s, 4), [], "the old range and its tail are unmapped")
    exc = m.expect_raises(SyscallError, lambda: p.mremap(d, 2 * PAGE, 4 * PAGE, new_addr=d + PAGE),
                          "overlapping ranges")
    m.expect(exc is None or exc.errno == errno.EINVAL, "EINVAL for overlapping ranges")


@scenario("V10", "a moved VMA merges at its new place only if never faulted (copy_vma resets its pgoff)")
def mremap_merge_at_new_place(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 2, prot="")                    # PROT_NONE, never faulted: like the guards
    b = p.mremap(a, 2 * PAGE, 4 * PAGE)             # the tracer moves it between new guards
    c = region(m, p, 2, fill=0x33)
    p.mprotect(c, 2 * PAGE, "")                     # faulted (it has an anon_vma), then PROT_NONE
    d = p.mremap(c, 2 * PAGE, 4 * PAGE)
    m.checkpoint("moved")
    (lo, hi), = _vmas_in(m, p, b, 4)
    m.expect(lo < 0 and hi > 4, f"never faulted: one VMA with the guards around it, got {(lo, hi)}")
    m.expect_eq(_vmas_in(m, p, d, 4), [(0, 4)], "faulted: its own VMA (its old pgoff does not line up)")
