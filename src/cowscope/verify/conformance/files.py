"""File mappings: page cache sharing, private copies, MAP_SHARED write-through."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import PAGE, pattern_file, scenario, touch_pages

if TYPE_CHECKING:
    from ..trace import TracedMachine


@scenario("C16", "MAP_PRIVATE file: lazy at fork, the page cache is shared")
def private_file_fork(m: TracedMachine) -> None:
    f = pattern_file(m, "/data/f16", 4)
    p = m.spawn("P")
    a = p.mmap(4 * PAGE, prot="rw", file=f)
    touch_pages(p, a, 4)
    m.checkpoint("parent read all")
    m.expect_eq(m.tokens(p, a, 4), ["F1"] * 4, "parent pagemap")
    m.expect_smaps(p, a, "parent smaps", Size=16, Rss=16, Pss=16, Private_Clean=16)
    c = p.fork()
    m.checkpoint("after fork")
    m.expect_eq(m.tokens(c, a, 4), ["-"] * 4, "child pagemap: untouched file pages absent")
    m.expect_smaps(c, a, "child smaps", Size=16)
    m.expect_eq([c.read(a + i * PAGE, 1)[0] for i in range(4)], [0x61, 0x62, 0x63, 0x64], "child bytes")
    m.checkpoint("child read all")
    for who in (p, c):
        m.expect_eq(m.tokens(who, a, 4), ["F2"] * 4, f"{who.key} pagemap")
        m.expect_smaps(who, a, f"{who.key} smaps", Size=16, Rss=16, Pss=8, Shared_Clean=16)


@scenario("C17", "CoW of a private file page: anon copy, the file unchanged")
def private_file_cow(m: TracedMachine) -> None:
    f = pattern_file(m, "/data/f17", 4)
    p = m.spawn("P")
    a = p.mmap(4 * PAGE, prot="rw", file=f)
    touch_pages(p, a, 4)
    c = p.fork()
    touch_pages(c, a, 4)
    p.write(a + 2 * PAGE, b"Z")
    m.checkpoint("parent wrote p2")
    m.expect_eq(m.tokens(p, a, 4), ["F2", "F2", "X", "F2"], "parent pagemap")
    m.expect_eq(m.pread(f, 2 * PAGE, 1), b"c", "the file is unchanged")
    m.expect_eq(c.read(a + 2 * PAGE, 1), b"c", "the child still reads the file")
    m.expect_smaps(p, a, "parent smaps", Size=16, Rss=16, Pss=10, Pss_Dirty=4, Shared_Clean=12,
                   Private_Dirty=4, Anonymous=4)


@scenario("C19", "first access to a private file page is a write: copied from the file")
def private_file_write_first(m: TracedMachine) -> None:
    f = pattern_file(m, "/data/f19", 4)
    p = m.spawn("P")
    a = p.mmap(4 * PAGE, prot="rw", file=f)
    p.write(a + PAGE, b"W")
    m.checkpoint("wrote p1")
    m.expect_eq(m.tokens(p, a, 4), ["-", "X", "-", "-"], "no fault-around on a write fault")
    m.expect_smaps(p, a, "smaps", Size=16, Rss=4, Pss=4, Pss_Dirty=4, Private_Dirty=4, Anonymous=4)
    m.expect_eq(p.read(a + PAGE, 2), b"Wb", "rest of the page comes from the file")
    m.expect_eq(m.pread(f, PAGE, 1), b"b", "the file is unchanged")


@scenario("C21", "MAP_SHARED file: writes reach the file, nothing copied at fork")
def shared_file(m: TracedMachine) -> None:
    f = pattern_file(m, "/data/f21", 4)
    p = m.spawn("P")
    a = p.mmap(4 * PAGE, prot="rw", shared=True, file=f)
    touch_pages(p, a, 4)
    p.write(a + PAGE, b"z")
    m.expect_eq(m.pread(f, PAGE, 1), b"z", "pread sees the write")
    m.checkpoint("parent wrote p1")
    m.expect_eq(m.tokens(p, a, 4), ["F1"] * 4, "parent pagemap")
    m.expect_smaps(p, a, "parent smaps", Size=16, Rss=16, Pss=16, Pss_Dirty=4, Private_Clean=12,
                   Private_Dirty=4)
    c = p.fork()
    m.checkpoint("after fork")
    m.expect_eq(m.tokens(c, a, 4), ["-"] * 4, "child pagemap")
    c.write(a + 3 * PAGE, b"y")
    m.expect_eq((p.read(a + 3 * PAGE, 1), m.pread(f, 3 * PAGE, 1)), (b"y", b"y"), "child's write is shared")


@scenario("F01", "private file after one CoW write: fork copies every PTE")
def private_file_anon_vma_fork(m: TracedMachine) -> None:
    f = pattern_file(m, "/data/f01", 4)
    p = m.spawn("P")
    a = p.mmap(4 * PAGE, prot="rw", file=f)
    touch_pages(p, a, 4)
    p.write(a + 2 * PAGE, b"E")
    c = p.fork()
    m.checkpoint("after fork")
    m.expect_eq(m.tokens(c, a, 4), ["F2", "F2", "S2", "F2"], "child pagemap")
    m.expect_eq(c.read(a + 2 * PAGE, 1), b"E", "child sees the parent's private copy")


@scenario("F02", "cow.c non-anon: a private write does not change the file's shared mapping")
def private_vs_shared_mapping(m: TracedMachine) -> None:
    f = pattern_file(m, "/data/f02", 1)
    p = m.spawn("P")
    priv = p.mmap(PAGE, prot="rw", file=f)
    shr = p.mmap(PAGE, prot="r", shared=True, file=f)
    p.read(priv, 1)
    p.read(shr, 1)
    p.fill(priv, PAGE, 0xFF)
    m.checkpoint("private write")
    m.expect_eq(p.read(shr, 1), b"a", "the other mapping is not modified")
    m.expect_eq((m.tokens(p, priv, 1), m.tokens(p, shr, 1)), (["X"], ["F1"]), "pagemaps")


@scenario("C32b", "MADV_DONTNEED on a private file mapping: the file content again")
def private_file_dontneed(m: TracedMachine) -> None:
    f = pattern_file(m, "/data/f32", 2)
    p = m.spawn("P")
    a = p.mmap(2 * PAGE, prot="rw", file=f)
    p.write(a, b"Z")
    p.madvise(a, 2 * PAGE, "dontneed")
    m.checkpoint("dontneed")
    m.expect_eq(m.tokens(p, a, 1), ["-"], "p0 unmapped")
    m.expect_eq(p.read(a, 1), b"a", "p0 reads the file again")
