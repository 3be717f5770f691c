"""madvise: DONTNEED, DONTFORK/DOFORK, WIPEONFORK/KEEPONFORK, FREE, POPULATE."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from ...errors import Segfault, SyscallError
from . import PAGE, pattern_file, region, scenario

if TYPE_CHECKING:
    from ..process import TracedProcess
    from ..trace import TracedMachine


def _nvmas(p: TracedProcess, a: int, npages: int) -> int:
    return sum(1 for s in p.smaps() if s.vma.end > a and s.vma.start < a + npages * PAGE)


@scenario("C32", "MADV_DONTNEED on private anon: pages gone, zeroes after")
def dontneed_anon(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 2, fill=0x11)
    p.madvise(a, 2 * PAGE, "dontneed")
    m.checkpoint("dontneed")
    m.expect_eq(m.tokens(p, a, 2), ["-", "-"], "pagemap")
    m.expect_smaps(p, a, "smaps", Size=8)
    m.expect_eq(p.read(a, 1), b"\x00", "reads zero")
    m.checkpoint("read again")
    m.expect_eq(m.tokens(p, a, 2), ["Z", "-"], "zero page after the read")


@scenario("C23", "MADV_DONTFORK: the child has no such VMA, access is SIGSEGV; DOFORK re-merges")
def dontfork(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x11)
    p.madvise(a + PAGE, 2 * PAGE, "dontfork")
    m.expect_eq(_nvmas(p, a, 4), 3, "split into 3 VMAs")
    c = p.fork()
    m.checkpoint("after fork")
    m.expect_eq(m.tokens(p, a, 4), ["S2", "X", "X", "S2"], "parent pagemap")
    m.expect_eq(m.tokens(c, a, 4), ["S2", "-", "-", "S2"], "child pagemap")
    m.expect_eq(_nvmas(c, a, 4), 2, "child lacks the middle VMA")
    m.expect_eq(c.read(a, 1), b"\x11", "child reads p0")
    m.expect_raises(Segfault, lambda: c.read(a + PAGE, 1), "child reads p1")
    p.madvise(a + PAGE, 2 * PAGE, "dofork")
    m.checkpoint("dofork")
    m.expect_eq(_nvmas(p, a, 4), 1, "one VMA again")
    m.expect_eq(p.wait(c)[1], ("signal", 11), "child died of SIGSEGV")


@scenario("C24", "MADV_WIPEONFORK: zeroes in the child and grandchild; KEEPONFORK undoes it")
def wipeonfork(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x33)
    p.madvise(a, 4 * PAGE, "wipeonfork")
    s = m.vma_at(p, a)
    m.expect(s is not None and "wf" in s.vm_flags, "VmFlags gain wf")
    c = p.fork()
    m.checkpoint("after fork")
    m.expect_eq(m.tokens(p, a, 4), ["X"] * 4, "parent unchanged")
    m.expect_eq(m.tokens(c, a, 4), ["-"] * 4, "child empty")
    m.expect_smaps(c, a, "child smaps", Size=16)
    m.expect_eq(c.read(a, 4 * PAGE), bytes(4 * PAGE), "child reads zeroes")
    m.checkpoint("child read")
    m.expect_eq(m.tokens(c, a, 4), ["Z"] * 4, "child maps the zero page")
    c.fill(a, 4 * PAGE, 0x55)
    g = c.fork()
    m.expect_eq(g.read(a, 4 * PAGE), bytes(4 * PAGE), "grandchild wiped too")
    p.madvise(a, 4 * PAGE, "keeponfork")
    c2 = p.fork()
    m.expect_eq(sum(c2.read(a, 4 * PAGE)), 4 * PAGE * 0x33, "KEEPONFORK: the child sees the data")


@scenario("C24b", "MADV_WIPEONFORK is EINVAL on shared and file mappings")
def wipeonfork_einval(m: TracedMachine) -> None:
    f = pattern_file(m, "/data/f24", 1)
    p = m.spawn("P")
    s = region(m, p, 1, shared=True)
    fm = p.mmap(PAGE, prot="rw", file=f)
    for addr, what in ((s, "MAP_SHARED anon"), (fm, "MAP_PRIVATE file")):
        exc = m.expect_raises(SyscallError, lambda addr=addr: p.madvise(addr, PAGE, "wipeonfork"), what)
        m.expect(exc is None or exc.errno == errno.EINVAL, f"{what}: errno EINVAL")


@scenario("C33", "MADV_FREE without memory pressure: data kept, pages clean")
def madv_free(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x11)
    p.madvise(a, 4 * PAGE, "free")
    m.checkpoint("freed")
    m.expect_eq(m.tokens(p, a, 4), ["X"] * 4, "pages stay")
    m.expect_smaps(p, a, "smaps", Size=16, Rss=16, Pss=16, Private_Clean=16, Anonymous=16)
    m.expect_eq(p.read(a, 4 * PAGE), b"\x11" * 4 * PAGE, "data kept")
    p.write(a + PAGE, b"\x12")
    m.checkpoint("rewrote p1")
    m.expect_smaps(p, a, "smaps after a write", Size=16, Rss=16, Pss=16, Pss_Dirty=4, Private_Clean=12,
                   Private_Dirty=4, Anonymous=16)


@scenario("C33b", "MADV_FREE of pages shared with a child: lazyfree unless swapped in")
def madv_free_shared(m: TracedMachine) -> None:
    """madvise_free_pte_range asks for a page mapped once only if the folio is dirty or in the
    swap cache: a written anon page shared by fork is neither, so the caller's MADV_FREE cleans
    its own PTEs and makes the page lazyfree for both (measured on 6.18)."""
    p = m.spawn("P")
    a = region(m, p, 2, fill=0x21)
    c = p.fork()
    c.madvise(a, 2 * PAGE, "free")
    m.checkpoint("C freed shared pages")
    m.expect_eq((m.tokens(p, a, 2), m.tokens(c, a, 2)), (["S2"] * 2, ["S2"] * 2), "still shared")
    m.expect_smaps(c, a, "C smaps", Size=8, Rss=8, Pss=4, Shared_Clean=8, Anonymous=8, LazyFree=8)
    m.expect_smaps(p, a, "P smaps", Size=8, Rss=8, Pss=4, Pss_Dirty=4, Shared_Dirty=8, Anonymous=8,
                   LazyFree=0)
    p.write(a, b"\x22")
    m.checkpoint("P wrote p0")
    m.expect_smaps(c, a, "C smaps after P's copy", Size=8, Rss=8, Pss=6, Shared_Clean=4, Private_Clean=4,
                   Anonymous=8, LazyFree=8)
    m.expect_eq((c.read(a, 2), p.read(a, 2)), (b"\x21\x21", b"\x22\x21"), "data kept")
    m.swapon("64MiB")
    q = m.spawn("Q")
    b = region(m, q, 2, fill=0x31)
    q.madvise(b, 2 * PAGE, "pageout")
    d = q.fork()
    q.read(b, 2 * PAGE)
    d.read(b, 2 * PAGE)
    d.madvise(b, 2 * PAGE, "free")
    m.checkpoint("D freed shared swapped-in pages")
    m.expect_smaps(d, b, "D smaps: the swap cache's pages are skipped", Size=8, Rss=8, Pss=4, Shared_Clean=8,
                   Anonymous=8, LazyFree=0)
    r = m.spawn("R")
    e = region(m, r, 2, fill=0x41)
    r.mlock(e, 2 * PAGE)
    k = r.fork()  # the child's VMA is not locked, the pages stay mlocked (R's)
    k.madvise(e, 2 * PAGE, "free")
    m.checkpoint("K freed pages R has locked")
    m.expect_smaps(k, e, "K smaps: mlocked pages are skipped", Size=8, Rss=8, Pss=4, Shared_Clean=8,
                   Anonymous=8, LazyFree=0)


@scenario("C34", "MADV_POPULATE_READ maps the zero page, POPULATE_WRITE allocates")
def populate(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 2)
    p.madvise(a, 2 * PAGE, "populate_read")
    m.checkpoint("populate read")
    m.expect_eq(m.tokens(p, a, 2), ["Z", "Z"], "zero pages")
    m.expect_smaps(p, a, "smaps", Size=8)
    p.madvise(a, 2 * PAGE, "populate_write")
    m.checkpoint("populate write")
    m.expect_eq(m.tokens(p, a, 2), ["X", "X"], "allocated")
    m.expect_smaps(p, a, "smaps", Size=8, Rss=8, Pss=8, Pss_Dirty=8, Private_Dirty=8, Anonymous=8)
    s = region(m, p, 2, shared=True)
    p.madvise(s, 2 * PAGE, "populate_read")
    m.checkpoint("shared populate read")
    m.expect_eq(m.tokens(p, s, 2), ["F1", "F1"], "shmem pages allocated")
    m.expect_smaps(p, s, "shmem smaps", Size=8, Rss=8, Pss=8, Private_Clean=8)


@scenario("M01", "MADV_DONTNEED of part of a CoW-shared region in the parent")
def dontneed_partial_shared(m: TracedMachine) -> None:
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x11)
    c = p.fork()
    p.madvise(a + PAGE, 2 * PAGE, "dontneed")
    m.checkpoint("parent dropped p1 p2")
    m.expect_eq(m.tokens(p, a, 4), ["S2", "-", "-", "S2"], "parent pagemap")
    m.expect_eq(m.tokens(c, a, 4), ["S2", "X", "X", "S2"], "child pagemap")
    m.expect_eq((p.read(a + PAGE, 1), c.read(a + PAGE, 1)), (b"\x00", b"\x11"), "p1 bytes")
