"""Which pages of a range are populated at all: present, swapped out, or a PTE marker (guard).

Snapshots read page states only there, so a 1 TiB reservation with two pages touched costs one
`PAGEMAP_SCAN` ioctl (Linux 6.7+) and two pagemap entries instead of 2 GiB of pagemap and the
arrays built from it. Where the kernel lacks the ioctl, /proc/PID/pagemap is read block by block
and only the runs are kept. Runs are page offsets from the start of the range, half-open, as an
(n, 2) int64 array (`observe.pages.runs_of`).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import struct

import numpy as np

from .pages import merge_runs, populated_runs
from .procfs import PAGEMAP_BLOCK, PROC, PagemapReader, _raise_for
from .records import PAGE_SIZE

#: _IOWR('f', 16, struct pm_scan_arg) (include/uapi/linux/fs.h).
PAGEMAP_SCAN = 0xC0606610
#: struct pm_scan_arg: size, flags, start, end, walk_end, vec, vec_len, max_pages,
#: category_inverted, category_mask, category_anyof_mask, return_mask.
_SCAN_ARG = struct.Struct("<12Q")
#: page categories: PAGE_IS_PRESENT, PAGE_IS_SWAPPED (a swap entry or a PTE marker such as a guard),
#: PAGE_IS_HUGE (mapped by a huge PMD: a THP, or hugetlb).
PAGE_IS_PRESENT, PAGE_IS_SWAPPED, PAGE_IS_HUGE = 1 << 3, 1 << 4, 1 << 6
#: page_region entries (start, end, categories) asked for per ioctl.
_VEC_LEN = 1024
def scan_pagemap(pid: int, addr: int, npages: int, root: str = PROC) -> np.ndarray:
    """Runs of the populated pages of [addr, addr + npages pages) in process `pid`."""
    with PagemapReader(pid, root) as reader:
        runs = _ioctl_scan(reader, addr, npages)
        if runs is None:  # a kernel before 6.7: read the entries, keep the runs
            runs = _read_scan(reader, addr, npages)
    return runs


def huge_runs(pid: int, addr: int, npages: int, root: str = PROC) -> np.ndarray:
    """Runs of the pages of [addr, addr + npages pages) mapped by huge PMDs (PAGE_IS_HUGE); empty
    on a kernel without PAGEMAP_SCAN (before 6.7), which cannot tell."""
    with PagemapReader(pid, root) as reader:
        runs = _ioctl_scan(reader, addr, npages, PAGE_IS_HUGE)
    return np.zeros((0, 2), dtype=np.int64) if runs is None else runs


def _ioctl_scan(reader: PagemapReader, addr: int, npages: int,
                want: int = PAGE_IS_PRESENT | PAGE_IS_SWAPPED) -> np.ndarray | None:
    """PAGEMAP_SCAN for the pages in any category of `want` (present or swapped); None when this
    kernel has no such ioctl."""
    vec = (ctypes.c_uint64 * (3 * _VEC_LEN))()
    start, end = addr, addr + npages * PAGE_SIZE
    found: list[np.ndarray] = []
    while start < end:
        arg = bytearray(_SCAN_ARG.pack(_SCAN_ARG.size, 0, start, end, 0, ctypes.addressof(vec), _VEC_LEN,
                                       0, 0, 0, want, want))
        try:
            n = fcntl.ioctl(reader.fd, PAGEMAP_SCAN, arg, True)
        except OSError as exc:
            if exc.errno in (errno.ENOTTY, errno.EINVAL, errno.EOPNOTSUPP, errno.EFAULT) and not found:
                return None  # no such ioctl here, or a range past TASK_SIZE (vsyscall): read instead
            _raise_for(reader.pid, "pagemap", exc)
        regions = np.frombuffer(vec, dtype=np.uint64, count=3 * n).reshape(n, 3)[:, :2].astype(np.int64)
        found.append((regions - addr) // PAGE_SIZE)
        walk_end = _SCAN_ARG.unpack(arg)[4]
        if walk_end <= start:
            break
        start = walk_end
    runs = np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)
    return merge_runs(runs, 1)  # regions split by category or by a full vector join again


def _read_scan(reader: PagemapReader, addr: int, npages: int) -> np.ndarray:
    """The runs from the pagemap entries themselves, one block at a time (bounded memory)."""
    parts = []
    for first in range(0, npages, PAGEMAP_BLOCK):
        n = min(PAGEMAP_BLOCK, npages - first)
        parts.append(populated_runs(reader.read(addr + first * PAGE_SIZE, n), first))
    runs = np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)
    return merge_runs(runs, 1)


__all__ = ["PAGEMAP_SCAN", "huge_runs", "scan_pagemap"]
