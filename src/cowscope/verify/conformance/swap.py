"""Swap: MADV_PAGEOUT and MADV_COLD, swap entries across fork, swap-in and the swap cache.

Each scenario adds a 64 MiB swap area first (`m.swapon`: on the kernel a swapfile under /var/tmp,
root only, removed when the machine closes). Facts measured on Linux 6.18 with a swapfile: a page
written out stays in the swap cache (nothing reclaims it without memory pressure), so swap-ins here
find their old frame again.
"""

from __future__ import annotations

from typing import Any

from ...errors import SyscallError
from . import PAGE, region, scenario
from .thp import HUGE, N, huge_region

SWAP = "64MiB"


def vm_swap(p: Any) -> int:
    return int(p.status().fields["VmSwap"])


def pattern(p: Any, a: int, npages: int) -> None:
    """Page i holds byte 0x10 + i."""
    for i in range(npages):
        p.fill(a + i * PAGE, PAGE, 0x10 + i)


@scenario("W01", "MADV_PAGEOUT: exclusive anon pages become swap entries; reading them back")
def pageout_exclusive(m: Any) -> None:
    m.swapon(SWAP)
    p = m.spawn("P")
    a = region(m, p, 6)
    pattern(p, a, 4)
    p.read(a + 4 * PAGE, 1)
    swap0 = vm_swap(p)
    p.madvise(a, 6 * PAGE, "pageout")
    m.checkpoint("paged out")
    m.expect_eq(m.tokens(p, a, 6), ["W"] * 4 + ["Z", "-"], "pagemap: swap entries; zero page kept")
    raw = [int(x) for x in p.pagemap_raw(a, 2)]
    m.expect_eq([r >> 62 & 1 for r in raw], [1, 1], "pagemap bit 62 (swapped)")
    m.expect(raw[0] != raw[1], "one swap slot (type and offset) per page")
    m.expect_smaps(p, a, "smaps", Size=24, Swap=16, SwapPss=16)
    m.expect_eq(vm_swap(p) - swap0, 16, "VmSwap +16 kB")
    m.expect_eq([p.read(a + i * PAGE, 1)[0] for i in range(4)], [0x10, 0x11, 0x12, 0x13], "contents")
    m.checkpoint("read back")
    m.expect_eq(m.tokens(p, a, 4), ["X"] * 4, "swapped in, mapped by P alone")
    m.expect_smaps(p, a, "smaps after swap-in", Size=24, Rss=16, Pss=16, Private_Clean=16, Anonymous=16)


@scenario("W02", "MADV_PAGEOUT skips pages another process maps too")
def pageout_skips_shared(m: Any) -> None:
    m.swapon(SWAP)
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x21)
    c = p.fork()
    c.madvise(a, 4 * PAGE, "pageout")
    p.madvise(a, 4 * PAGE, "pageout")
    m.checkpoint("both asked")
    for who in (p, c):
        m.expect_eq(m.tokens(who, a, 4), ["S2"] * 4, f"{who.key}: still mapped, shared")
        m.expect_smaps(who, a, f"{who.key} smaps", Size=16, Rss=16, Pss=8, Pss_Dirty=8, Shared_Dirty=16,
                       Anonymous=16)


@scenario("W03", "fork copies swap entries: both reference the slot, SwapPss halves")
def fork_copies_swap_entries(m: Any) -> None:
    m.swapon(SWAP)
    p = m.spawn("P")
    a = region(m, p, 4)
    pattern(p, a, 4)
    p.madvise(a, 2 * PAGE, "pageout")
    c = p.fork()
    m.checkpoint("after fork")
    m.expect_eq(m.tokens(c, a, 4), ["W", "W", "S2", "S2"], "C pagemap")
    m.expect_eq([int(x) for x in c.pagemap_raw(a, 2)], [int(x) for x in p.pagemap_raw(a, 2)],
                "the same swap entries in both")
    for who in (p, c):
        m.expect_smaps(who, a, f"{who.key} smaps", Size=16, Rss=8, Pss=4, Pss_Dirty=4, Shared_Dirty=8,
                       Anonymous=8, Swap=8, SwapPss=4)
    m.expect_eq(c.read(a + PAGE, 2), b"\x11\x11", "C reads p1 back")


@scenario("W04", "swap-in of an entry another process still holds: read-only, a write then copies")
def swapin_shared_entry(m: Any) -> None:
    m.swapon(SWAP)
    p = m.spawn("P")
    a = region(m, p, 2)
    pattern(p, a, 2)
    before = m.pfns(p, a, 1)
    p.madvise(a, 2 * PAGE, "pageout")
    c = p.fork()
    p.read(a, 1)
    m.checkpoint("P read p0")
    m.expect_eq(m.tokens(p, a, 2), ["X", "W"], "P: p0 mapped again")
    m.expect_eq(m.pfns(p, a, 1), before, "the same frame: it waited in the swap cache")
    m.expect_smaps(p, a, "P smaps", Size=8, Rss=4, Pss=4, Private_Clean=4, Anonymous=4, Swap=4, SwapPss=2)
    m.expect_smaps(c, a, "C smaps", Size=8, Swap=8, SwapPss=6)
    p.write(a, b"\x66")
    m.checkpoint("P wrote p0")
    m.expect(m.pfns(p, a, 1) != before, "P's write copied the page (C's entry still needs it)")
    m.expect_eq((c.read(a, 1), p.read(a, 1)), (b"\x10", b"\x66"), "C reads the old byte")
    m.checkpoint("C read p0")
    m.expect_eq(m.pfns(c, a, 1), before, "C maps the cached frame")
    c.write(a, b"\x77")
    m.checkpoint("C wrote p0")
    m.expect_eq(m.pfns(c, a, 1), before, "C, the last holder, reuses it")
    m.expect_smaps(c, a, "C smaps", Size=8, Rss=4, Pss=4, Pss_Dirty=4, Private_Dirty=4, Anonymous=4,
                   Swap=4, SwapPss=2)


@scenario("W05", "both processes read a shared swap entry: one page from the swap cache, mapped twice")
def swapin_both_read(m: Any) -> None:
    m.swapon(SWAP)
    p = m.spawn("P")
    a = region(m, p, 1, fill=0x31)
    p.madvise(a, PAGE, "pageout")
    c = p.fork()
    p.read(a, 1)
    c.read(a, 1)
    m.checkpoint("both read")
    m.expect_eq((m.tokens(p, a, 1), m.tokens(c, a, 1)), (["S2"], ["S2"]), "pagemaps")
    m.expect_eq(m.pfns(p, a, 1), m.pfns(c, a, 1), "the same frame")
    m.expect_smaps(c, a, "C smaps", Size=4, Rss=4, Pss=2, Shared_Clean=4, Anonymous=4)


@scenario("W06", "swap-in of an exclusive entry: a write reuses the cached frame, a read maps it writable")
def swapin_exclusive(m: Any) -> None:
    m.swapon(SWAP)
    p = m.spawn("P")
    a = region(m, p, 2)
    pattern(p, a, 2)
    before = m.pfns(p, a, 2)
    p.madvise(a, 2 * PAGE, "pageout")
    p.write(a, b"\x01")
    p.read(a + PAGE, 1)
    m.checkpoint("wrote p0, read p1")
    m.expect_eq(m.pfns(p, a, 2), before, "both back in their old frames")
    m.expect_smaps(p, a, "smaps", Size=8, Rss=8, Pss=8, Pss_Dirty=4, Private_Clean=4, Private_Dirty=4,
                   Anonymous=8)
    p.write(a + PAGE, b"\x02")
    m.checkpoint("wrote p1")
    m.expect_eq(m.pfns(p, a, 2), before, "no copy")
    m.expect_eq(p.read(a, 2) + p.read(a + PAGE, 2), b"\x01\x10\x02\x11", "contents")


@scenario("W07", "MADV_DONTNEED and MADV_FREE drop swap entries: the range reads zeros")
def drop_swap_entries(m: Any) -> None:
    m.swapon(SWAP)
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x41)
    p.madvise(a, 4 * PAGE, "pageout")
    p.madvise(a, 2 * PAGE, "dontneed")
    p.madvise(a + 2 * PAGE, PAGE, "free")
    m.checkpoint("dropped p0-p2")
    m.expect_eq(m.tokens(p, a, 4), ["-", "-", "-", "W"], "pagemap")
    m.expect_smaps(p, a, "smaps", Size=16, Swap=4, SwapPss=4)
    m.expect_eq([p.read(a + i * PAGE, 1) for i in range(4)], [b"\0", b"\0", b"\0", b"\x41"], "contents")


@scenario("W08", "the child's exit releases its swap entries: the parent's SwapPss doubles back")
def swap_entries_at_exit(m: Any) -> None:
    m.swapon(SWAP)
    p = m.spawn("P")
    a = region(m, p, 2, fill=0x51)
    p.madvise(a, 2 * PAGE, "pageout")
    c = p.fork()
    m.expect_smaps(p, a, "P smaps with C alive", Size=8, Swap=8, SwapPss=4)
    c.exit(0)
    p.wait(c)
    m.checkpoint("C exited")
    m.expect_smaps(p, a, "P smaps", Size=8, Swap=8, SwapPss=8)
    m.expect_eq(p.read(a + PAGE, 1), b"\x51", "P reads its data")


@scenario("W09", "mprotect keeps swap entries; mremap moves them")
def swap_entries_mprotect_mremap(m: Any) -> None:
    m.swapon(SWAP)
    p = m.spawn("P")
    a = region(m, p, 4)
    pattern(p, a, 4)
    p.madvise(a, 4 * PAGE, "pageout")
    p.mprotect(a, 4 * PAGE, "r")
    m.checkpoint("read-only")
    m.expect_eq(m.tokens(p, a, 4), ["W"] * 4, "still swapped")
    m.expect_eq(p.read(a + PAGE, 1), b"\x11", "a read swaps in")
    p.mprotect(a, 4 * PAGE, "rw")
    n = p.mremap(a, 4 * PAGE, 16 * PAGE)
    m.checkpoint("moved")
    m.expect_eq(m.tokens(p, n, 4), ["W", "X", "W", "W"], "entries moved with the range")
    m.expect_eq(p.read(n + 3 * PAGE, 1), b"\x13", "contents")


@scenario("W10", "MADV_PAGEOUT of a THP: the PMD and the folio are split, 512 pages go to swap")
def pageout_thp(m: Any) -> None:
    m.swapon(SWAP)
    p = m.spawn("P")
    a = huge_region(m, p)
    p.fill(a, HUGE, 0x33)
    p.write(a + 5 * PAGE, b"\x07")
    p.madvise(a, HUGE, "pageout")
    m.checkpoint("paged out")
    m.expect_eq(m.tokens(p, a, N), ["W"] * N, "all 512 subpages swapped")
    m.expect_smaps(p, a, "smaps", Size=2048, Swap=2048, SwapPss=2048)
    m.expect_eq(p.read(a + 5 * PAGE, 2), b"\x07\x33", "contents")
    m.checkpoint("read p5")
    m.expect_eq(m.tokens(p, a, 6), ["W"] * 5 + ["X"], "one 4 KiB page back")
    m.expect_smaps(p, a, "smaps", Size=2048, Rss=4, Pss=4, Private_Clean=4, Anonymous=4, Swap=2044,
                   SwapPss=2044)


@scenario("W11", "MADV_PAGEOUT leaves the huge zero page and a THP shared with a child alone")
def pageout_thp_skipped(m: Any) -> None:
    m.swapon(SWAP)
    p = m.spawn("P")
    z = huge_region(m, p)
    p.read(z, 1)
    s = huge_region(m, p)
    p.fill(s, HUGE, 1)
    c = p.fork()
    p.madvise(z, HUGE, "pageout")
    p.madvise(s, HUGE, "pageout")
    m.checkpoint("asked")
    m.expect_eq(m.tokens(p, z, 2), ["Z", "Z"], "huge zero page kept")
    m.expect_smaps(p, s, "shared THP kept", Size=2048, Rss=2048, Pss=1024, Pss_Dirty=1024,
                   Shared_Dirty=2048, Anonymous=2048, AnonHugePages=2048)
    m.expect_eq(m.tokens(c, s, 1), ["S2"], "C still shares it")


@scenario("W12", "MADV_COLD clears the accessed bit of pages mapped once; MADV_PAGEOUT on mlocked memory is EINVAL")
def cold_and_locked(m: Any) -> None:
    m.swapon(SWAP)
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x61)
    p.madvise(a, 2 * PAGE, "cold")
    m.checkpoint("cold p0 p1")
    m.expect_eq(m.smaps_at(p, a).get("Referenced"), 8, "smaps Referenced: p2 p3 only")
    m.expect_eq(m.tokens(p, a, 4), ["X"] * 4, "nothing swapped")
    b = region(m, p, 2, fill=1)
    p.mlock(b, 2 * PAGE)
    err = m.expect_raises(SyscallError, lambda: p.madvise(b, 2 * PAGE, "pageout"), "pageout of mlocked")
    m.expect_eq(getattr(err, "errno", None), 22, "EINVAL")
    m.expect_eq(m.tokens(p, b, 2), ["X", "X"], "nothing swapped")


@scenario("W13", "unmapping swapped-in pages frees their swap cache and slots")
def unmap_frees_swap_cache(m: Any) -> None:
    m.swapon(SWAP)
    p = m.spawn("P")
    n = 8192  # 32 MiB: SwapCached/SwapFree are system-wide, so a margin of 1/8 for whatever else swaps
    a = region(m, p, n, fill=0x71)
    kb, margin = n * PAGE // 1024, n * PAGE // 8192
    before, anon0 = m.meminfo(), rss_anon(p)
    p.madvise(a, n * PAGE, "pageout")
    out = m.meminfo()  # no checkpoint: a few pages still in a per-CPU LRU batch are not paged out
    m.expect(anon0 - rss_anon(p) > kb - margin, "RssAnon down by the region")
    m.expect(abs(out["SwapCached"] - before["SwapCached"] - kb) < margin, "the pages wait in the swap cache")
    p.madvise(a, n * PAGE, "populate_read")
    back = m.meminfo()
    m.expect(abs(rss_anon(p) - anon0) < margin, "RssAnon back: mapped again")
    m.expect(abs(back["SwapCached"] - out["SwapCached"]) < margin, "still in the swap cache (read faults)")
    p.munmap(a, n * PAGE)
    gone = m.meminfo()
    m.checkpoint("unmapped")
    m.expect(abs(gone["SwapCached"] - before["SwapCached"]) < margin, "SwapCached back where it was")
    used = [mi["SwapTotal"] - mi["SwapFree"] for mi in (before, gone)]  # another swap area may come and go
    m.expect(abs(used[1] - used[0]) < margin, "every slot free again")


def rss_anon(p: Any) -> int:
    return int(p.status().fields["RssAnon"])
