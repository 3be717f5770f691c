"""mlock: what locked memory does under mremap, mprotect and madvise, and mlock over holes.

Facts measured on Linux 6.18 with small C programs (the random differential found each one):
locked memory is populated when it grows or becomes writable, the LRU advices refuse it, and
mlock/munlock change the VMAs before a hole, then fail.
"""

from __future__ import annotations

import errno
from typing import Any

from ...errors import SyscallError
from . import PAGE, region, scenario


def _flags(m: Any, p: Any, addr: int) -> tuple[str, ...]:
    s = m.vma_at(p, addr)
    return tuple(s.vm_flags) if s is not None else ()


def _errno(m: Any, fn: Any, what: str, want: int) -> None:
    exc = m.expect_raises(SyscallError, fn, what)
    m.expect(exc is None or exc.errno == want, f"{what}: errno {getattr(exc, 'errno', None)}, want {want}")


@scenario("D12", "mremap growing an mlocked region populates the new part (written if writable)")
def mremap_locked(m: Any) -> None:
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x11)
    p.mlock(a, 4 * PAGE)
    b = p.mremap(a, 4 * PAGE, 8 * PAGE)            # the guard page above: it moves
    m.checkpoint("grown")
    m.expect_eq(m.tokens(p, b, 8), ["X"] * 8, "all 8 pages present, the new ones allocated")
    m.expect_eq(p.status().fields.get("VmLck"), 32, "VmLck")
    m.expect_eq(p.read(b + 5 * PAGE, 1), b"\x00", "the new pages are zero")
    r = region(m, p, 2, prot="r")
    p.mlock(r, 2 * PAGE)
    r2 = p.mremap(r, 2 * PAGE, 4 * PAGE)
    m.checkpoint("read-only grown")
    m.expect_eq(m.tokens(p, r2, 4), ["Z"] * 4, "read-only: the zero page everywhere")


@scenario("D13", "mprotect making a locked private region writable write-faults every page")
def mprotect_locked(m: Any) -> None:
    p = m.spawn("P")
    a = region(m, p, 6)
    p.fill(a, 3 * PAGE, 0x22)                       # p0-2 written, p3-5 untouched
    p.mprotect(a, 6 * PAGE, "r")
    p.mlock(a, 6 * PAGE)                            # read-only: p3-5 map the zero page
    c = p.fork()
    m.checkpoint("locked read-only, shared with a child")
    m.expect_eq(m.tokens(p, a, 6), ["S2"] * 3 + ["Z"] * 3, "parent before")
    p.mprotect(a, 6 * PAGE, "rw")
    m.checkpoint("made writable")
    m.expect_eq(m.tokens(p, a, 6), ["X"] * 6, "parent: copies and new pages")
    m.expect_eq(m.tokens(c, a, 6), ["X"] * 3 + ["Z"] * 3, "child keeps the originals")
    m.expect(all(x != y for x, y in zip(m.pfns(p, a, 3), m.pfns(c, a, 3), strict=True)), "p0-2 copied")
    n = region(m, p, 2, prot="")
    _errno(m, lambda: p.mlock(n, 2 * PAGE), "mlock of PROT_NONE", errno.ENOMEM)
    m.expect("lo" in _flags(m, p, n), "PROT_NONE locked all the same")
    p.mprotect(n, PAGE, "r")
    p.mprotect(n + PAGE, PAGE, "rw")
    m.checkpoint("locked PROT_NONE made r / rw")
    m.expect_eq(m.tokens(p, n, 2), ["-", "X"], "none->r stays empty, none->rw is populated")


@scenario("D14", "MADV_FREE and MADV_DONTNEED on locked memory: EINVAL after the unlocked part")
def madvise_locked(m: Any) -> None:
    p = m.spawn("P")
    a = region(m, p, 4, fill=0x33)
    p.mlock(a + 2 * PAGE, 2 * PAGE)
    for advice in ("free", "dontneed"):
        _errno(m, lambda advice=advice: p.madvise(a + 2 * PAGE, 2 * PAGE, advice), f"{advice} on locked",
               errno.EINVAL)
    _errno(m, lambda: p.madvise(a, 4 * PAGE, "dontneed"), "dontneed over [unlocked|locked]", errno.EINVAL)
    m.checkpoint("dontneed over both")
    m.expect_eq(m.tokens(p, a, 4), ["-", "-", "X", "X"], "the unlocked part was zapped")
    m.expect_eq(p.read(a + 2 * PAGE, 1), b"\x33", "locked data kept")


@scenario("D15", "mlock/munlock over a hole: ENOMEM, the VMAs before it changed; PROT_NONE stops populate")
def mlock_hole(m: Any) -> None:
    p = m.spawn("P")
    a = region(m, p, 8)
    p.munmap(a + 3 * PAGE, 2 * PAGE)
    _errno(m, lambda: p.mlock(a, 8 * PAGE), "mlock over a hole", errno.ENOMEM)
    m.checkpoint("mlock over a hole")
    m.expect("lo" in _flags(m, p, a) and "lo" not in _flags(m, p, a + 5 * PAGE), "locked up to the hole")
    m.expect_eq(m.tokens(p, a, 3), ["-"] * 3, "and not populated")
    m.expect_eq(p.status().fields.get("VmLck"), 12, "VmLck")
    p.mlock(a + 5 * PAGE, 3 * PAGE)
    _errno(m, lambda: p.munlock(a, 8 * PAGE), "munlock over a hole", errno.ENOMEM)
    m.expect("lo" not in _flags(m, p, a) and "lo" in _flags(m, p, a + 5 * PAGE), "unlocked up to the hole")
    _errno(m, lambda: p.mlock(a + 3 * PAGE, 5 * PAGE), "mlock starting in a hole", errno.ENOMEM)
    m.expect("lo" in _flags(m, p, a + 5 * PAGE) and "lo" not in _flags(m, p, a), "nothing changed")
    b = region(m, p, 6)
    p.mprotect(b + 2 * PAGE, 2 * PAGE, "")
    _errno(m, lambda: p.mlock(b, 6 * PAGE), "mlock over [rw|none|rw]", errno.ENOMEM)
    m.checkpoint("mlock over PROT_NONE")
    m.expect_eq(m.tokens(p, b, 6), ["X", "X", "-", "-", "-", "-"], "populated up to PROT_NONE")
    m.expect(all("lo" in _flags(m, p, b + i * PAGE) for i in (0, 2, 4)), "all three VMAs locked")
