"""The files indexed by PFN, /proc/kpagecount and /proc/kpageflags, and the zero pages' PFNs.

One reader for both files (sorted distinct PFNs, nearby runs in one preadv), for every consumer.
They need CAP_SYS_ADMIN: without it the readers raise `KpageUnavailable`, and the zero-page
probes (which read pagemap PFNs) find nothing.
"""

from __future__ import annotations

import mmap
import os
from functools import lru_cache

import numpy as np

from .procfs import PROC, read_pagemap
from .records import KPF_ZERO_PAGE, PAGE_SIZE, pagemap_pfns

#: PFN gaps up to this many entries are read through rather than split into another pread.
KPAGE_GAP = 64


class KpageUnavailable(PermissionError):
    """/proc/kpagecount or /proc/kpageflags cannot be read (needs root)."""


def _read_kpage_file(name: str, pfns: np.ndarray | list[int], root: str) -> np.ndarray:
    """Read one uint64 per PFN from /proc/kpagecount or /proc/kpageflags: the distinct PFNs are
    sorted and read in coalesced runs (one pread per run, nearby runs merged), then mapped back."""
    pfns = np.asarray(pfns, dtype=np.int64)
    if len(pfns) == 0:
        return np.zeros(0, dtype=np.uint64)
    uniq, inverse = np.unique(pfns, return_inverse=True)
    gaps = np.flatnonzero(np.diff(uniq) > KPAGE_GAP)
    starts = np.concatenate(([0], gaps + 1))
    ends = np.concatenate((gaps + 1, [len(uniq)]))
    lo = uniq[starts]
    n = uniq[ends - 1] - lo + 1
    at = np.concatenate(([0], np.cumsum(n)))  # where each run lands in one buffer
    buf = np.zeros(int(at[-1]), dtype=np.uint64)
    view = memoryview(buf).cast("B")
    try:
        fd = os.open(f"{root}/{name}", os.O_RDONLY | os.O_CLOEXEC)
    except PermissionError as exc:
        raise KpageUnavailable(exc.errno, f"{root}/{name}: {exc.strerror} (needs root)") from None
    try:
        for a, b, first in zip(at[:-1].tolist(), at[1:].tolist(), lo.tolist(), strict=True):
            try:
                os.preadv(fd, [view[a * 8:b * 8]], first * 8)  # a short read (end of memory) leaves zeros
            except PermissionError as exc:
                raise KpageUnavailable(exc.errno, f"{root}/{name}: {exc.strerror} (needs root)") from None
    finally:
        os.close(fd)
    run = np.repeat(np.arange(len(starts)), ends - starts)
    return buf[at[run] + (uniq - lo[run])][inverse]


def read_kpagecount(pfns: np.ndarray | list[int], root: str = PROC) -> np.ndarray:
    """/proc/kpagecount for each PFN (int64); KpageUnavailable without root."""
    return _read_kpage_file("kpagecount", pfns, root).astype(np.int64)


def read_kpageflags(pfns: np.ndarray | list[int], root: str = PROC) -> np.ndarray:
    """/proc/kpageflags for each PFN (uint64); KpageUnavailable without root."""
    return _read_kpage_file("kpageflags", pfns, root)


def kpage_available(root: str = PROC) -> bool:
    """True if /proc/kpagecount can be read (root / CAP_SYS_ADMIN)."""
    try:
        fd = os.open(f"{root}/kpagecount", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return len(os.pread(fd, 8, 0)) == 8
    except OSError:
        return False
    finally:
        os.close(fd)


@lru_cache(maxsize=1)
def zero_pfns() -> frozenset[int]:
    """PFNs of the shared 4 KiB zero page, found by read-faulting a private anon page here.

    Empty when PFNs are hidden (no CAP_SYS_ADMIN).
    """
    m = mmap.mmap(-1, PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        if hasattr(m, "madvise") and hasattr(mmap, "MADV_NOHUGEPAGE"):
            m.madvise(mmap.MADV_NOHUGEPAGE)
        _ = m[0]  # read fault: maps the zero page
        import ctypes

        buf = (ctypes.c_char * 1).from_buffer(m)
        addr = ctypes.addressof(buf)
        del buf
        raw = read_pagemap(os.getpid(), addr, 1)
    finally:
        m.close()
    pfn = int(pagemap_pfns(raw)[0])
    return frozenset({pfn} if pfn else set())


#: this process's huge-zero mapping, kept so the folio (and its PFN) stays, and the block's address
_HUGE_ZERO_KEEP: list[tuple[mmap.mmap, int]] = []


def huge_zero_pfns() -> frozenset[int]:
    """PFNs of the 512 subpages of the huge zero page, found by read-faulting a MADV_HUGEPAGE
    2 MiB block here (THP `madvise` or `always`, use_zero_page 1). The mapping is kept, so the
    kernel does not free the huge zero folio (and change its PFN) while this process runs.

    Empty when PFNs are hidden or THP does not map the huge zero page. Once found, later calls
    read the kept block's PFN again instead of mapping another one.
    """
    if _HUGE_ZERO_KEEP:
        pfn = int(pagemap_pfns(read_pagemap(os.getpid(), _HUGE_ZERO_KEEP[0][1], 1))[0])
        return frozenset(range(pfn, pfn + 512)) if pfn else frozenset()
    huge = 2 << 20
    m = mmap.mmap(-1, 2 * huge, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
    import ctypes

    buf = (ctypes.c_char * 1).from_buffer(m)
    base = ctypes.addressof(buf)
    del buf
    off = -base % huge
    if hasattr(m, "madvise") and hasattr(mmap, "MADV_HUGEPAGE"):
        m.madvise(mmap.MADV_HUGEPAGE, off, huge)
    _ = m[off]  # read fault: maps the huge zero page if THP allows it here
    pfn = int(pagemap_pfns(read_pagemap(os.getpid(), base + off, 1))[0])
    if not pfn or not int(read_kpageflags([pfn])[0]) & KPF_ZERO_PAGE or not pfn % 512 == 0:
        m.close()
        return frozenset()
    _HUGE_ZERO_KEEP.append((m, base + off))
    return frozenset(range(pfn, pfn + 512))


def zero_page_pfns() -> frozenset[int]:
    """Every PFN a read of never-written private anonymous memory can map: the 4 KiB zero page
    and the huge zero page's 512 subpages. Empty when PFNs are hidden (no root)."""
    small = zero_pfns()
    return small | huge_zero_pfns() if small else small
