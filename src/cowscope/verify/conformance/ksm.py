"""KSM: MADV_MERGEABLE areas, one `m.ksm_scan()` step, KSM pages across fork and on write.

On the kernel `m.ksm_scan()` sets /sys/kernel/mm/ksm/run to 1 until ksmd has made three full scans,
then restores it (root only). Facts measured on Linux 6.18 (use_zero_pages 0, smart_scan 1).
Machine-wide counters are not asserted here (another KSM user on the machine would move them);
/proc/PID/ksm_stat is.
"""

from __future__ import annotations

import os
from typing import Any

from . import PAGE, region, scenario

#: ksmd merges identical pages of every process on the machine: the last bytes of each filled page
#: are this run's own (the same on both backends), so another run's pages never join ours.
SALT = os.urandom(15) + b"\x01"


def fill_pages(p: Any, a: int, values: list[int | None]) -> None:
    """Page i gets byte values[i] everywhere but its last 16 bytes, which hold SALT (None: a read,
    so the zero page)."""
    for i, v in enumerate(values):
        if v is None:
            p.read(a + i * PAGE, 1)
        else:
            p.fill(a + i * PAGE, PAGE, v)
            p.write(a + (i + 1) * PAGE - len(SALT), SALT)


@scenario("K01", "identical pages of a MADV_MERGEABLE area merge into read-only KSM pages")
def ksm_merge(m: Any) -> None:
    p = m.spawn("P")
    a = region(m, p, 8)
    fill_pages(p, a, [0x41, 0x41, 0x41, 0x42, 0, 0, None, 0x43])
    p.madvise(a, 8 * PAGE, "mergeable")
    m.ksm_scan()
    m.checkpoint("scanned")
    m.expect_eq(m.tokens(p, a, 8), ["S3", "S3", "S3", "X", "S2", "S2", "Z", "X"], "pagemap")
    pf = m.pfns(p, a, 6)
    m.expect(pf[0] == pf[1] == pf[2] and pf[4] == pf[5] and pf[0] != pf[4], "two KSM pages")
    if pf[0]:
        m.expect(bool(m.kpageflags(pf[0]) & (1 << 21)), "kpageflags KSM")
    m.expect_smaps(p, a, "smaps", Size=32, Rss=28, Pss=15, Pss_Dirty=15, Shared_Dirty=20, Private_Dirty=8,
                   Anonymous=28, KSM=20)
    m.expect("mg" in m.vma_at(p, a).vm_flags, "VmFlags mg")
    st = p.ksm_stat()
    m.expect_eq({k: st.get(k) for k in ("ksm_rmap_items", "ksm_merging_pages", "ksm_process_profit",
                                        "ksm_mergeable")},
                {"ksm_rmap_items": 7, "ksm_merging_pages": 5, "ksm_process_profit": 5 * 4096 - 7 * 64,
                 "ksm_mergeable": "yes"}, "ksm_stat")
    m.expect_eq(p.read(a + 2 * PAGE, 2) + p.read(a + 5 * PAGE, 1), b"AA\0", "contents")


@scenario("K02", "pages a fork shares are merged too: the second one scanned becomes the KSM page")
def ksm_merge_forked(m: Any) -> None:
    p = m.spawn("P")
    a = region(m, p, 6)
    fill_pages(p, a, [0x41, 0x41, 0x41, 0x42, 0, 0])
    before = m.pfns(p, a, 6)
    c = p.fork()
    p.madvise(a, 6 * PAGE, "mergeable")
    m.ksm_scan()
    m.checkpoint("scanned")
    m.expect_eq(m.tokens(p, a, 6), ["S4", "S4", "S4", "S2", "S3", "S3"], "P pagemap")
    m.expect_eq(m.tokens(c, a, 6), ["X", "S4", "X", "S2", "X", "S3"], "C keeps its mappings")
    m.expect_eq(m.pfns(p, a, 1), [before[1]], "p1's page became the KSM page")
    m.expect_eq(m.pfns(c, a, 1), [before[0]], "C still maps P's old p0")
    m.expect_smaps(c, a, "C smaps", Size=24, Rss=24, Pss=16, Pss_Dirty=16, Shared_Dirty=12,
                   Private_Dirty=12, Anonymous=24, KSM=8)
    m.expect_eq(c.ksm_stat().get("ksm_mergeable"), "no", "C's VMA was forked before MADV_MERGEABLE")


@scenario("K03", "pages of two processes merge; a write to a KSM page copies it, even mapped once")
def ksm_cow(m: Any) -> None:
    p = m.spawn("P")
    a = region(m, p, 2)
    p.madvise(a, 2 * PAGE, "mergeable")
    c = p.fork()
    for who in (p, c):
        fill_pages(who, a, [0x51, 0x60 + (who is c)])
    m.ksm_scan()
    m.checkpoint("scanned")
    m.expect_eq((m.tokens(p, a, 2), m.tokens(c, a, 2)), (["S2", "X"], ["S2", "X"]), "pagemaps")
    m.expect_eq(m.pfns(p, a, 1), m.pfns(c, a, 1), "one KSM page for both")
    c.exit(0)
    p.wait(c)
    k = m.pfns(p, a, 1)
    p.write(a, b"\x01")
    m.checkpoint("P wrote its KSM page")
    m.expect(m.pfns(p, a, 1) != k, "copied although P mapped it alone")
    m.expect_eq(m.tokens(p, a, 2), ["X", "X"], "pagemap")
    m.expect_eq(p.read(a, 2), b"\x01\x51", "contents")


@scenario("K04", "fork of KSM pages: the child maps them too; writes copy on both sides")
def ksm_fork(m: Any) -> None:
    p = m.spawn("P")
    a = region(m, p, 3)
    fill_pages(p, a, [0x71, 0x71, 0x71])
    p.madvise(a, 3 * PAGE, "mergeable")
    m.ksm_scan()
    c = p.fork()
    m.checkpoint("after fork")
    m.expect_eq(m.tokens(c, a, 3), ["S6"] * 3, "C pagemap")
    m.expect_smaps(c, a, "C smaps", Size=12, Rss=12, Pss=1, Pss_Dirty=1, Shared_Dirty=12, Anonymous=12,
                   KSM=12)
    m.expect("mg" in m.vma_at(c, a).vm_flags, "the child's VMA stays mergeable")
    c.write(a, b"x")
    p.write(a + 2 * PAGE, b"z")
    m.checkpoint("both wrote")
    m.expect_eq(m.tokens(c, a, 3), ["X", "S4", "S4"], "C pagemap")
    m.expect_eq(m.tokens(p, a, 3), ["S4", "S4", "X"], "P pagemap")


@scenario("K05", "MADV_UNMERGEABLE copies every KSM page of the range back (clean private copies)")
def ksm_unmerge(m: Any) -> None:
    p = m.spawn("P")
    a = region(m, p, 4)
    fill_pages(p, a, [0x61, 0x61, 0x62, 0x62])
    p.madvise(a, 4 * PAGE, "mergeable")
    m.ksm_scan()
    m.checkpoint("merged")  # the writes' faults compared here; break_ksm's copies raise no fault tracepoint
    m.expect_eq(m.tokens(p, a, 4), ["S2"] * 4, "two KSM pages, each mapped twice")
    p.madvise(a, 4 * PAGE, "unmergeable")
    m.checkpoint("unmerged")
    m.expect_eq(m.tokens(p, a, 4), ["X"] * 4, "pagemap")
    m.expect_eq(len(set(m.pfns(p, a, 4))), 4, "four pages again")
    m.expect_smaps(p, a, "smaps", Size=16, Rss=16, Pss=16, Private_Clean=16, Anonymous=16)
    m.expect("mg" not in m.vma_at(p, a).vm_flags, "VmFlags without mg")
    m.expect_eq(p.ksm_stat().get("ksm_mergeable"), "no", "ksm_mergeable")
    m.expect_eq([p.read(a + i * PAGE, 1) for i in range(4)], [b"a", b"a", b"b", b"b"], "contents")


@scenario("K06", "KSM leaves alone: a non-mergeable area, the zero page, MAP_SHARED")
def ksm_not_merged(m: Any) -> None:
    p = m.spawn("P")
    a = region(m, p, 2)
    fill_pages(p, a, [0x41, None])
    b = region(m, p, 2)
    fill_pages(p, b, [0x41, 0x41])  # same bytes, but b is not mergeable
    s = region(m, p, 2, shared=True)
    fill_pages(p, s, [0x41, 0x41])
    for x in (a, s):
        p.madvise(x, 2 * PAGE, "mergeable")
    m.ksm_scan()
    m.checkpoint("scanned")
    m.expect_eq(m.tokens(p, a, 2), ["X", "Z"], "the lone page and the zero page")
    m.expect_eq(m.tokens(p, b, 2), ["X", "X"], "not mergeable")
    m.expect_eq(m.tokens(p, s, 2), ["F1", "F1"], "MAP_SHARED: no KSM")
    m.expect("mg" not in m.vma_at(p, s).vm_flags, "MAP_SHARED never gets VM_MERGEABLE")
