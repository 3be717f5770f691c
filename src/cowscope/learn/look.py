"""What a problem's answers are read from: pagemap, kpagecount, kpageflags and smaps of a backend.

Only the backends' shared API is used (docs/api.md), so the same code reads the model and the
real kernel. Without root the kernel hides PFNs, map counts and page flags: those fields are
None and `LookError`s say which question needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..observe.pages import classify
from ..observe.records import (
    KPF_ANON_EXCLUSIVE,
    PAGE_SIZE,
    PM_FILE,
    PM_MMAP_EXCLUSIVE,
    PM_PFN_MASK,
    PM_PRESENT,
    SmapsEntry,
)

if TYPE_CHECKING:
    from ..observe.backend import Machine, Process

#: Legend characters, one per page state (report.strips.CHARS without the swap marker).
STRIP_CHARS = ".0#23456789+f"


class LookError(Exception):
    """A fact this backend cannot show (e.g. PFNs without root)."""


@dataclass(frozen=True)
class PageLook:
    """One page of one process, as /proc shows it."""

    present: bool
    file: bool            # page cache or shmem (pagemap bit 61)
    excl: bool            # mapped by exactly one PTE (pagemap bit 56)
    pfn: int | None       # None when hidden (no root) or not present
    zero: bool | None     # the shared zero page; None when it cannot be told
    mapcount: int | None  # /proc/kpagecount
    anon_exclusive: bool | None  # PG_anon_exclusive: the page is this process's own, writable


def kpage(m: Machine) -> bool:
    """Whether the backend shows PFNs, map counts and page flags (always in the model)."""
    return bool(m.kpage_available)


def look_page(m: Machine, p: Process, addr: int) -> PageLook:
    """Read the page at addr in p."""
    raw = int(p.pagemap_raw(addr & ~(PAGE_SIZE - 1), 1)[0])
    present = bool(raw & PM_PRESENT)
    file = present and bool(raw & PM_FILE)
    excl = present and bool(raw & PM_MMAP_EXCLUSIVE)
    if not present:
        return PageLook(False, False, False, None, False, 0, None)
    if not kpage(m):
        zero = False if (file or excl) else None
        return PageLook(True, file, excl, None, zero, None, None)
    pfn = raw & PM_PFN_MASK
    zero = pfn in m.zero_pfns
    mapcount = 0 if zero else int(m.kpagecount_array(np.array([pfn], dtype=np.int64))[0])
    anon_excl = None if (zero or file) else bool(m.kpageflags(pfn) & KPF_ANON_EXCLUSIVE)
    return PageLook(True, file, excl, pfn, zero, mapcount, anon_excl)


def strip(m: Machine, p: Process, addr: int, npages: int) -> str:
    """The region's page strip: one legend character per page (. 0 # 2-9 + f).

    Without root a shared page shows as '2' (map count unknown, at least two) and the zero page
    cannot be told from a shared page: LookError when the strip would depend on it."""
    raw = p.pagemap_raw(addr, npages)
    pfns = (raw & np.uint64(PM_PFN_MASK)).astype(np.int64)
    counts = m.kpagecount_array(pfns) if kpage(m) else None
    states = classify(raw, counts, set(m.zero_pfns) if kpage(m) else set())
    from ..report.strips import page_codes

    return "".join(STRIP_CHARS[c] for c in page_codes(states))


def smaps_of(p: Process, addr: int) -> SmapsEntry:
    """The smaps block of the VMA holding addr."""
    for s in p.smaps():
        if s.vma.start <= addr < s.vma.end:
            return s
    raise LookError(f"no mapping at {addr:#x}")


def pfn_table(m: Machine, p: Process, ranges: list[tuple[int, int]]) -> list[np.ndarray]:
    """PFNs (0 = not present) of every page of each (addr, npages) range; LookError without root."""
    if not kpage(m):
        raise LookError("page identity needs PFNs (root)")
    return [(p.pagemap_raw(a, n) & np.uint64(PM_PFN_MASK)).astype(np.int64) for a, n in ranges]


def heap_and_libc(p: Process) -> list[tuple[str, int, int]]:
    """("[heap]" or "libc", addr, npages) of the process's [heap] and of the C library's writable
    data (main_arena, mp_)."""
    out = [("[heap]", e.start, e.npages) for e in p.maps() if e.path == "[heap]"]
    if p.libc_data:
        start = p.libc_data & ~(PAGE_SIZE - 1)
        end = p.libc_data + p.libc_data_size
        out.append(("libc", start, (end - start + PAGE_SIZE - 1) // PAGE_SIZE))
    return out


def code_range(p: Process) -> tuple[int, int]:
    """(addr, npages) of the C library's code: its r-xp mapping."""
    for e in p.maps():
        if e.perms == "r-xp" and "libc.so" in e.path:
            return e.start, e.npages
    raise LookError("no C library code mapping")
