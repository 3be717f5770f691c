"""Transparent huge pages (THP `madvise`): PMD faults, the huge zero page, fork, split and reuse.

Every region here is mapped on a 2 MiB boundary (the tracer's `mmap_aligned`) and given MADV_HUGEPAGE,
as the reference machine needs for a PMD (THP `madvise`); facts measured on Linux 6.18.
"""

from __future__ import annotations

from typing import Any

from ...observe.records import PM_FILE, PM_MMAP_EXCLUSIVE, PM_PRESENT
from . import PAGE, scenario

HUGE = 2 << 20
N = HUGE // PAGE  # 512 subpages


def huge_region(m: Any, p: Any, blocks: int = 1, advise: bool = True) -> int:
    """`blocks` aligned 2 MiB blocks of private anon RW memory, MADV_HUGEPAGE unless advise=False."""
    a = p.mmap_aligned(blocks * HUGE, HUGE)
    if advise:
        p.madvise(a, blocks * HUGE, "hugepage")
    return a


def expect_folio(m: Any, p: Any, a: int, what: str) -> None:
    """The 512 subpages at a are one aligned, physically contiguous folio."""
    pf = m.pfns(p, a, N)
    m.expect(pf[0] != 0 and pf[0] % N == 0 and pf == list(range(pf[0], pf[0] + N)),
             f"{what}: 512 contiguous PFNs from a 2 MiB-aligned one")


def vm_pte(p: Any) -> int:
    return int(p.status().fields["VmPTE"])


@scenario("C37", "PMD THP: write fault maps 2 MiB, fork shares the PMD, a write splits and copies 4 KiB")
def thp_fault_fork_split(m: Any) -> None:
    p = m.spawn("P")
    a = huge_region(m, p)
    p.write(a, b"\x01")
    m.checkpoint("P wrote p0")
    m.expect_eq(m.tokens(p, a, N), ["X"] * N, "P pagemap")
    expect_folio(m, p, a, "P")
    m.expect_smaps(p, a, "P smaps", Size=2048, Rss=2048, Pss=2048, Pss_Dirty=2048, Private_Dirty=2048,
                   Anonymous=2048, AnonHugePages=2048)
    m.expect("hg" in m.vma_at(p, a).vm_flags, "VmFlags hg")
    c = p.fork()
    m.checkpoint("after fork")
    m.expect_eq(m.tokens(c, a, N), ["S2"] * N, "C pagemap")
    m.expect_smaps(c, a, "C smaps", Size=2048, Rss=2048, Pss=1024, Pss_Dirty=1024, Shared_Dirty=2048,
                   Anonymous=2048, AnonHugePages=2048)
    c.write(a, b"\x02")
    m.checkpoint("C wrote p0")
    m.expect_eq(m.tokens(c, a, N), ["X"] + ["S2"] * (N - 1), "C pagemap: p0 copied, the rest shared")
    m.expect_eq(m.tokens(p, a, 2), ["X", "S2"], "P pagemap")
    m.expect(m.pfns(c, a, 1) != m.pfns(p, a, 1), "C's p0 is a new page")
    m.expect_smaps(c, a, "C smaps (PMD split)", Size=2048, Rss=2048, Pss=1026, Pss_Dirty=1026,
                   Shared_Dirty=2044, Private_Dirty=4, Anonymous=2048, AnonHugePages=0)
    m.expect_smaps(p, a, "P smaps (PMD kept)", Size=2048, Rss=2048, Pss=1026, Pss_Dirty=1026,
                   Shared_Dirty=2044, Private_Dirty=4, Anonymous=2048, AnonHugePages=2048)
    m.expect_eq((p.read(a, 1), c.read(a, 1)), (b"\x01", b"\x02"), "each sees its own p0")
    raw = p.pagemap_raw(a + PAGE, 1)[0]
    m.expect(bool(int(raw) & PM_MMAP_EXCLUSIVE), "P's p1 shows exclusive (bit 56 follows the head page)")


@scenario("C38", "huge zero page: a read fault maps it by PMD; it is not counted")
def huge_zero_page(m: Any) -> None:
    p = m.spawn("P")
    a = huge_region(m, p)
    m.expect_eq(p.read(a, 8), bytes(8), "bytes read")
    m.checkpoint("P read p0")
    m.expect_eq(m.tokens(p, a, N), ["Z"] * N, "pagemap: the huge zero page")
    expect_folio(m, p, a, "huge zero page")
    raw = int(p.pagemap_raw(a, 1)[0])
    m.expect_eq(tuple(bool(raw & b) for b in (PM_PRESENT, PM_FILE, PM_MMAP_EXCLUSIVE)), (True, True, False),
                "pagemap P F, not X")
    pf = m.pfns(p, a, 2)
    if pf[0]:
        m.expect_eq(m.kpageflags(pf[0]) & 0x1ffffff, 0x1408000, "kpageflags ZERO_PAGE THP COMPOUND_HEAD")
        m.expect_eq(m.kpageflags(pf[1]) & 0x1ffffff, 0x1410000, "kpageflags of a tail")
    m.expect_smaps(p, a, "smaps", Size=2048)


@scenario("T01", "write to the huge zero page allocates a 2 MiB folio (Linux 6.13+)")
def huge_zero_write(m: Any) -> None:
    p = m.spawn("P")
    a = huge_region(m, p)
    p.read(a, 1)
    c = p.fork()
    m.checkpoint("after fork")
    m.expect_eq(m.tokens(c, a, 2), ["Z", "Z"], "C shares the huge zero page")
    c.write(a + 3 * PAGE, b"\x04")
    m.checkpoint("C wrote p3")
    m.expect_eq(m.tokens(c, a, N), ["X"] * N, "C: a new exclusive folio")
    expect_folio(m, c, a, "C")
    m.expect_eq(m.tokens(p, a, 2), ["Z", "Z"], "P keeps the huge zero page")
    m.expect_smaps(c, a, "C smaps", Size=2048, Rss=2048, Pss=2048, Pss_Dirty=2048, Private_Dirty=2048,
                   Anonymous=2048, AnonHugePages=2048)
    m.expect_eq(c.read(a + 3 * PAGE, 2), b"\x04\x00", "C's byte")


@scenario("T02", "after the child exits, a write to the write-protected PMD reuses all 2 MiB")
def thp_reuse_after_exit(m: Any) -> None:
    p = m.spawn("P")
    a = huge_region(m, p)
    p.fill(a, HUGE, 0x11)
    c = p.fork()
    c.write(a + 5 * PAGE, b"\x05")
    m.checkpoint("C wrote p5")
    m.expect_eq(m.tokens(p, a, 6), ["S2"] * 5 + ["X"], "P: p5 is mapped only by P's PMD now")
    m.expect_eq(int(p.pagemap_raw(a, 1)[0]) & PM_MMAP_EXCLUSIVE, 0, "P's bit 56 follows the head (mapped twice)")
    before = m.pfns(p, a, N)
    c.exit(0)
    p.wait(c)
    p.write(a, b"\x03")
    m.checkpoint("P wrote p0 after C exited")
    m.expect_eq(m.pfns(p, a, N), before, "the same folio: reused, not copied")
    m.expect_eq(m.tokens(p, a, N), ["X"] * N, "P pagemap")
    m.expect_smaps(p, a, "P smaps", Size=2048, Rss=2048, Pss=2048, Pss_Dirty=2048, Private_Dirty=2048,
                   Anonymous=2048, AnonHugePages=2048)


@scenario("T03", "a write to a PMD shared with the child's PTEs splits it and copies 4 KiB")
def thp_write_shared_pmd(m: Any) -> None:
    p = m.spawn("P")
    a = huge_region(m, p)
    p.fill(a, HUGE, 0x11)
    c = p.fork()
    c.write(a, b"\x02")
    p.write(a + 7 * PAGE, b"\x07")
    m.checkpoint("P wrote p7")
    m.expect_eq(m.tokens(p, a, 9), ["X"] + ["S2"] * 6 + ["X", "S2"], "P pagemap")
    m.expect_eq(m.tokens(c, a, 9), ["X"] + ["S2"] * 6 + ["X", "S2"], "C pagemap: p7 is C's alone now")
    m.expect_smaps(p, a, "P smaps (split)", Size=2048, Rss=2048, Pss=1028, Pss_Dirty=1028,
                   Shared_Dirty=2040, Private_Dirty=8, Anonymous=2048)
    m.expect_eq((p.read(a + 7 * PAGE, 1), c.read(a + 7 * PAGE, 1)), (b"\x07", b"\x11"), "p7 bytes")


@scenario("T04", "a PTE-mapped THP only one process maps is reused on write (Linux 6.15+)")
def thp_pte_mapped_reuse(m: Any) -> None:
    p = m.spawn("P")
    a = huge_region(m, p)
    p.fill(a, HUGE, 0x11)
    c = p.fork()
    c.write(a, b"\x02")
    p.write(a + 7 * PAGE, b"\x07")
    c.exit(0)
    p.wait(c)
    before = m.pfns(p, a + 11 * PAGE, 1)
    p.write(a + 11 * PAGE, b"\x0b")
    m.checkpoint("P wrote p11")
    m.expect_eq(m.pfns(p, a + 11 * PAGE, 1), before, "p11 reused in place")
    m.expect_eq(m.tokens(p, a, 12), ["X"] * 12, "P pagemap")
    m.expect_smaps(p, a, "P smaps", Size=2048, Rss=2048, Pss=2048, Pss_Dirty=2048, Private_Dirty=2048,
                   Anonymous=2048)


@scenario("T05", "munmap of one page of a PMD-mapped THP splits the PMD")
def thp_partial_munmap(m: Any) -> None:
    p = m.spawn("P")
    a = huge_region(m, p, 2)
    p.fill(a, 2 * HUGE, 0x22)
    pte = vm_pte(p)
    p.munmap(a + 3 * PAGE, PAGE)
    m.checkpoint("unmapped p3")
    m.expect_eq(m.tokens(p, a, 5), ["X", "X", "X", "-", "X"], "pagemap")
    m.expect_smaps(p, a, "smaps below the hole", Size=12, Rss=12, Pss=12, Pss_Dirty=12, Private_Dirty=12,
                   Anonymous=12, AnonHugePages=0)
    m.expect_smaps(p, a + 4 * PAGE, "smaps above the hole", Size=4080, Rss=4080, Pss=4080, Pss_Dirty=4080,
                   Private_Dirty=4080, Anonymous=4080, AnonHugePages=2048)
    m.expect_eq(vm_pte(p) - pte, 0, "VmPTE unchanged: the deposited table became the PTE table")
    m.expect_eq(p.read(a + 4 * PAGE, 1), b"\x22", "the data stays")


@scenario("T06", "mprotect of part of a THP splits the PMD; of all of it keeps the PMD")
def thp_mprotect(m: Any) -> None:
    p = m.spawn("P")
    a = huge_region(m, p, 2)
    p.fill(a, 2 * HUGE, 0x33)
    p.mprotect(a + 5 * PAGE, PAGE, "r")
    p.mprotect(a + HUGE, HUGE, "r")
    m.checkpoint("mprotect p5 and block 1")
    m.expect_smaps(p, a, "below p5", Size=20, Rss=20, Pss=20, Pss_Dirty=20, Private_Dirty=20, Anonymous=20)
    m.expect_smaps(p, a + 5 * PAGE, "p5", Size=4, Rss=4, Pss=4, Pss_Dirty=4, Private_Dirty=4, Anonymous=4)
    m.expect_smaps(p, a + HUGE, "block 1 read-only, still one PMD", Size=2048, Rss=2048, Pss=2048,
                   Pss_Dirty=2048, Private_Dirty=2048, Anonymous=2048, AnonHugePages=2048)
    p.mprotect(a + HUGE, HUGE, "rw")
    p.write(a + HUGE + 8, b"\x02")
    m.checkpoint("block 1 writable again and written")
    m.expect_smaps(p, a + HUGE, "block 1 merged back with p6.. of block 0", Size=4072, Rss=4072,
                   Pss=4072, Pss_Dirty=4072, Private_Dirty=4072, Anonymous=4072, AnonHugePages=2048)


@scenario("T07", "MADV_DONTNEED: one page splits the PMD; all 2 MiB drops the PMD and its table")
def thp_dontneed(m: Any) -> None:
    p = m.spawn("P")
    a = huge_region(m, p, 2)
    p.fill(a, 2 * HUGE, 0x44)
    p.madvise(a + 4 * PAGE, PAGE, "dontneed")
    m.checkpoint("dontneed p4")
    m.expect_eq(m.tokens(p, a, 6), ["X"] * 4 + ["-", "X"], "pagemap")
    m.expect_smaps(p, a, "smaps", Size=4096, Rss=4092, Pss=4092, Pss_Dirty=4092, Private_Dirty=4092,
                   Anonymous=4092, AnonHugePages=2048)
    pte = vm_pte(p)
    p.madvise(a + HUGE, HUGE, "dontneed")
    m.checkpoint("dontneed block 1")
    m.expect_eq(m.tokens(p, a + HUGE, 2), ["-", "-"], "block 1 empty")
    m.expect_eq(pte - vm_pte(p), 4, "VmPTE -4 kB: the PMD's deposited table is freed")
    m.expect_eq(p.read(a + HUGE, 1), b"\x00", "block 1 reads zero again")


@scenario("T08", "MADV_NOHUGEPAGE keeps a mapped THP; new faults there are 4 KiB")
def thp_nohugepage(m: Any) -> None:
    p = m.spawn("P")
    a = huge_region(m, p, 2)
    p.write(a, b"\x01")
    p.madvise(a, 2 * HUGE, "nohugepage")
    p.write(a + HUGE, b"\x01")
    m.checkpoint("nohugepage, then wrote block 1")
    m.expect_smaps(p, a, "smaps", Size=4096, Rss=2052, Pss=2052, Pss_Dirty=2052, Private_Dirty=2052,
                   Anonymous=2052, AnonHugePages=2048)
    m.expect_eq(m.tokens(p, a + HUGE, 2), ["X", "-"], "block 1: one 4 KiB page")
    m.expect_eq(m.vma_at(p, a).thp_eligible, 0, "THPeligible 0")


@scenario("T09", "a 2 MiB block with a page table already (4 KiB fault before MADV_HUGEPAGE) stays 4 KiB")
def thp_table_exists(m: Any) -> None:
    p = m.spawn("P")
    a = huge_region(m, p, 2, advise=False)
    p.write(a, b"\x01")
    p.madvise(a, 2 * HUGE, "hugepage")
    p.write(a + PAGE, b"\x01")
    p.write(a + HUGE, b"\x01")
    m.checkpoint("wrote p1 and block 1")
    m.expect_eq(m.tokens(p, a, 3), ["X", "X", "-"], "block 0: 4 KiB pages")
    m.expect_eq(m.tokens(p, a + HUGE, N), ["X"] * N, "block 1: one THP")
    m.expect_smaps(p, a, "smaps", Size=4096, Rss=2056, Pss=2056, Pss_Dirty=2056, Private_Dirty=2056,
                   Anonymous=2056, AnonHugePages=2048)


@scenario("T10", "THPeligible: a VMA with MADV_HUGEPAGE and an aligned 2 MiB inside")
def thp_eligible(m: Any) -> None:
    p = m.spawn("P")
    big = huge_region(m, p, 2)
    half = p.mmap_aligned(HUGE // 2, HUGE)
    p.madvise(half, HUGE // 2, "hugepage")
    plain = huge_region(m, p, 1, advise=False)
    p.write(half, b"\x01")
    m.checkpoint("three regions")
    m.expect_eq([m.vma_at(p, x).thp_eligible for x in (big, half, plain)], [1, 0, 0], "THPeligible")
    m.expect_eq(m.tokens(p, half, 2), ["X", "-"], "a 1 MiB region faults 4 KiB pages")
    m.expect_smaps(p, half, "1 MiB region", Size=1024, Rss=4, Pss=4, Pss_Dirty=4, Private_Dirty=4,
                   Anonymous=4)


@scenario("T11", "fork shares the huge zero page; both read it without a copy")
def huge_zero_fork(m: Any) -> None:
    p = m.spawn("P")
    a = huge_region(m, p)
    p.read(a, 1)
    c = p.fork()
    m.expect_eq(c.read(a + 100 * PAGE, 4), bytes(4), "C reads zeros")
    m.checkpoint("C read")
    m.expect_eq(m.tokens(c, a, N), ["Z"] * N, "C pagemap")
    m.expect_eq(m.pfns(c, a, 1), m.pfns(p, a, 1), "the same huge zero page")
    m.expect_smaps(c, a, "C smaps", Size=2048)


@scenario("T12", "a VMA edge inside a PMD (partial MADV_DONTFORK) splits it; the child gets the rest")
def thp_split_by_vma_edge(m: Any) -> None:
    p = m.spawn("P")
    a = huge_region(m, p)
    p.fill(a, HUGE, 0x55)
    p.madvise(a + HUGE // 2, HUGE // 2, "dontfork")
    c = p.fork()
    m.checkpoint("after fork")
    m.expect_smaps(p, a, "P lower half", Size=1024, Rss=1024, Pss=512, Pss_Dirty=512, Shared_Dirty=1024,
                   Anonymous=1024)
    m.expect_eq(m.tokens(c, a, 2), ["S2", "S2"], "C maps the lower half")
    m.expect_eq(m.tokens(p, a + HUGE // 2, 2), ["X", "X"], "P keeps the upper half alone")
    m.expect_eq(c.read(a, 1), b"\x55", "C reads the data")
