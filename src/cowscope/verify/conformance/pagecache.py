"""The page cache under mappings: the fault-around window, readahead on cold faults, read(2) and
write(2) through the cache.

Files start in the page cache (written out, clean) unless created with `cached=False` (the kernel
backend drops them with POSIX_FADV_DONTNEED). Mappings are placed at chosen offsets from a
2 MiB boundary (inside a PROT_NONE reservation), because the fault-around window depends on
where a VMA starts. Facts measured on Linux 6.18 (read_ahead_kb 8192 on the reference disk).
"""

from __future__ import annotations

from typing import Any

from . import PAGE, pattern_file, scenario

PTE_TABLE = 512  # pages one PTE table maps (2 MiB)


def table_aligned(m: Any, p: Any, npages: int) -> int:
    """The start of a 2 MiB-aligned stretch of npages free addresses for fixed mappings: found with
    a PROT_NONE reservation that is unmapped again (so it is not a region the comparison sees;
    where it landed differs between backends)."""
    res = p.mmap((npages + PTE_TABLE) * PAGE, prot="")
    p.munmap(res, (npages + PTE_TABLE) * PAGE)
    step = PTE_TABLE * PAGE
    return (res + step - 1) // step * step


def _major(p: Any) -> int:
    return int(p.fault_counts()["major"])


@scenario("D16", "fault-around maps 16 pages from the VMA's start when it starts inside a 64 KiB block")
def fault_around_window(m: Any) -> None:
    f = pattern_file(m, "/data/d16", 64)
    p = m.spawn("P")
    base = table_aligned(m, p, PTE_TABLE + 16)
    a = p.mmap(40 * PAGE, prot="r", file=f, addr=base + 3 * PAGE, fixed=True)
    p.read(a, 1)
    m.checkpoint("read p0 of a VMA 3 pages into a block")
    m.expect_eq(m.tokens(p, a, 20), ["F1"] * 16 + ["-"] * 4, "16 pages from the VMA's start")
    p.read(a + 17 * PAGE, 1)                      # va index 20: the window is 16..31 of the table
    m.checkpoint("read p17")
    m.expect_eq(m.tokens(p, a, 32), ["F1"] * 29 + ["-"] * 3, "the aligned window 16..31")
    b = p.mmap(6 * PAGE, prot="r", file=f, addr=base + 67 * PAGE, fixed=True)
    p.read(b, 1)
    m.checkpoint("a 6-page VMA")
    m.expect_eq(m.tokens(p, b, 6), ["F2"] * 6, "clipped to the VMA (file pages 0-5: a maps them too)")
    e = p.mmap(16 * PAGE, prot="r", file=f, addr=base + (PTE_TABLE - 5) * PAGE, fixed=True)
    p.read(e, 1)
    m.checkpoint("a VMA across a PTE table boundary")
    m.expect_eq(m.tokens(p, e, 8), ["F3"] * 5 + ["-"] * 3, "clipped to the PTE table (a and b map them too)")
    s = p.mmap(40 * PAGE, shared=True, addr=base + 131 * PAGE, fixed=True)
    p.fill(s, 40 * PAGE, 0x5A)
    c = p.fork()
    c.read(s, 1)
    m.checkpoint("child reads shared anonymous memory")
    m.expect_eq(m.tokens(c, s, 20), ["F2"] * 16 + ["-"] * 4, "shmem: 16 pages from the VMA's start")


@scenario("D17", "a cold file's first fault is major and reads ahead; the rest of it faults minor")
def cold_readahead(m: Any) -> None:
    f = m.create_file("/data/d17", data=b"".join(bytes([0x61 + i % 26]) * PAGE for i in range(64)),
                      cached=False)
    p = m.spawn("P")
    base = table_aligned(m, p, 64)
    a = p.mmap(64 * PAGE, prot="r", file=f, addr=base, fixed=True)
    before = _major(p)
    m.expect_eq(p.read(a, 1), b"a", "p0")
    m.checkpoint("first fault")
    m.expect_eq(_major(p) - before, 1, "one major fault")
    m.expect_eq(m.tokens(p, a, 64), ["F1"] * 16 + ["-"] * 48, "fault-around maps 16 pages")
    p.touch(a, 64 * PAGE)
    m.checkpoint("every page read")
    m.expect_eq(_major(p) - before, 1, "readahead brought the whole file in: no other major fault")
    m.expect_eq(m.tokens(p, a, 64), ["F1"] * 64, "all mapped")
    q = m.spawn("Q")
    qb = table_aligned(m, q, 64)
    b = q.mmap(64 * PAGE, prot="r", file=f, addr=qb, fixed=True)
    before = _major(q)
    q.touch(b, 64 * PAGE)
    m.expect_eq(_major(q) - before, 0, "another process: all minor")


@scenario("D18", "read(2) and write(2) go through the page cache: a later fault is minor")
def read_write_page_cache(m: Any) -> None:
    data = b"".join(bytes([0x61 + i % 26]) * PAGE for i in range(64))
    f = m.create_file("/data/d18", data=data, cached=False)
    m.expect_eq(m.pread(f, 0, PAGE), data[:PAGE], "pread p0")
    p = m.spawn("P")
    base = table_aligned(m, p, 192)
    a = p.mmap(64 * PAGE, prot="r", file=f, addr=base, fixed=True)
    before = _major(p)
    p.read(a, 1)
    m.checkpoint("fault after pread of p0")
    m.expect_eq(_major(p) - before, 0, "minor: pread cached it")
    m.expect_eq(m.tokens(p, a, 8), ["F1", "-", "F1", "F1", "-", "-", "-", "-"],
                "the 4 pages pread read ahead, but not p1 (PG_readahead: fault-around skips it)")
    g = m.create_file("/data/d18b", data=data, cached=False)
    m.expect_eq(m.pread(g, 30 * PAGE, 100), data[30 * PAGE:30 * PAGE + 100], "pread 100 bytes of p30")
    m.pwrite(g, 40 * PAGE + 10, b"hello")
    b = p.mmap(64 * PAGE, prot="r", shared=True, file=g, addr=base + 64 * PAGE, fixed=True)
    before = _major(p)
    p.read(b + 30 * PAGE, 1)
    p.read(b + 40 * PAGE, 1)
    m.checkpoint("faults after a small pread and a pwrite")
    m.expect_eq(_major(p) - before, 0, "both minor")
    m.expect_eq(m.tokens(p, b + 24 * PAGE, 24), ["-"] * 6 + ["F1"] + ["-"] * 9 + ["F1"] + ["-"] * 7,
                "a small random read caches only its page; a write only the page it writes")
    m.expect_eq(p.read(b + 40 * PAGE + 10, 5), b"hello", "the write is visible through the mapping")


@scenario("D22", "a read fault past EOF faults around first, unless the only page it finds is the last")
def fault_around_past_eof(m: Any) -> None:
    import errno

    from ...errors import SyscallError

    two = pattern_file(m, "/data/d22a", 2)
    one = pattern_file(m, "/data/d22b", 1)
    p = m.spawn("P")
    base = table_aligned(m, p, 2 * PTE_TABLE)
    a = p.mmap(3 * PAGE, prot="r", file=two, addr=base, fixed=True)
    exc = m.expect_raises(SyscallError, lambda: p.madvise(a + 2 * PAGE, PAGE, "populate_read"), "populate p2")
    m.expect(exc is None or exc.errno == errno.EFAULT, "EFAULT past the end")
    b = p.mmap(2 * PAGE, prot="r", file=one, addr=base + PTE_TABLE * PAGE, fixed=True)
    exc = m.expect_raises(SyscallError, lambda: p.madvise(b + PAGE, PAGE, "populate_read"), "populate p1")
    m.checkpoint("populated past EOF")
    m.expect_eq(m.tokens(p, a, 3), ["F1", "F1", "-"], "fault-around mapped the file's pages")
    m.expect_eq(m.tokens(p, b, 2), ["-", "-"], "the last page alone, in a fresh PTE table: nothing")
