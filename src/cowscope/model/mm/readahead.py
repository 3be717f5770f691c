"""Readahead (mm/readahead.c and the mmap read-around of mm/filemap.c): which pages a cold read
brings into the page cache, and which page carries the PG_readahead marker.

A `FileRaState` is struct file_ra_state: one per open file. The model opens a file once per
mmap call (as the real-kernel backend's agent does) and once per `Machine.pread`/`pwrite` call, so
a mapping's faults share one state and every read(2) starts from a fresh one. `File.ra_marks`
holds the page indexes whose folio has PG_readahead: fault-around skips them, and a fault or read
that reaches one starts asynchronous readahead of the next window.

Left out: large folios (the kernel's async readahead allocates order-2 folios, so its marker then
covers 4 pages; sync readahead and mmap read-around use order 0, as here), I/O timing (readahead
completes at once: a retried fault finds every page it started uptodate), memory pressure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..fs.file import File
    from .page_alloc import PhysMem

#: mmap_miss above this: the file is read randomly, stop mmap read-around (MMAP_LOTSAMISS)
MMAP_LOTSAMISS = 100


@dataclass(eq=False)
class FileRaState:
    """struct file_ra_state: the current window [start, start+size) and its async tail."""

    ra_pages: int            # the window, from the device's read_ahead_kb
    start: int = 0
    size: int = 0
    async_size: int = 0
    mmap_miss: int = 0


def get_init_ra_size(size: int, max_pages: int) -> int:
    """The first window for a read of `size` pages: 4x small reads, 2x medium, else the maximum."""
    newsize = 1 << max(size - 1, 0).bit_length()  # roundup_pow_of_two
    if newsize <= max_pages // 32:
        return newsize * 4
    if newsize <= max_pages // 4:
        return newsize * 2
    return max_pages


def get_next_ra_size(ra: FileRaState, max_pages: int) -> int:
    """The next window after a sequential hit: ramp up 4x, then 2x, up to the maximum."""
    cur = ra.size
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


def do_page_cache_ra(phys: PhysMem, f: File, index: int, nr_to_read: int, lookahead: int) -> int:
    """Read [index, index+nr_to_read) (clipped at EOF) into the page cache, skipping cached pages;
    the page `lookahead` pages before the end gets PG_readahead if this read created it
    (page_cache_ra_unbounded). Returns how many pages were read from disk."""
    end_index = f.npages - 1
    if f.is_shmem or index > end_index or nr_to_read <= 0:
        return 0
    nr_to_read = min(nr_to_read, end_index - index + 1)
    mark = index + nr_to_read - lookahead if lookahead <= nr_to_read else -1
    nread = 0
    for pgoff in range(index, index + nr_to_read):
        if pgoff in f.page_cache:
            continue
        f.add_to_page_cache(phys, pgoff)
        nread += 1
        if pgoff == mark:
            f.ra_marks.add(pgoff)
    return nread


def ra_submit(phys: PhysMem, f: File, ra: FileRaState) -> int:
    """Read the window ra describes, its marker `async_size` pages before its end (page_cache_ra_order
    for order-0 folios)."""
    return do_page_cache_ra(phys, f, ra.start, ra.size, ra.async_size)


def page_cache_sync_ra(phys: PhysMem, f: File, ra: FileRaState, index: int, req_count: int) -> None:
    """A read(2) missed the page cache at index: an initial window at the start of the file (or
    for an oversized read), a larger one when the pages before index are cached (a stream), else
    just the requested pages. (The sequential-read check against prev_pos never fires: every read
    here is a fresh open file.)"""
    max_pages = ra.ra_pages
    if not max_pages:
        do_page_cache_ra(phys, f, index, req_count, 0)
        return
    if index == 0 or req_count > max_pages:
        ra.start, ra.size = index, get_init_ra_size(req_count, max_pages)
        ra.async_size = ra.size - req_count if ra.size > req_count else ra.size >> 1
        ra_submit(phys, f, ra)
        return
    miss = page_cache_prev_miss(f, index - 1, max_pages)
    contig_count = index - miss - 1
    if contig_count <= req_count:  # a standalone small random read: read as is
        do_page_cache_ra(phys, f, index, req_count, 0)
        return
    if miss < 0:  # cached from the start of the file: a long stream
        contig_count *= 2
    ra.start, ra.size, ra.async_size = index, min(contig_count + req_count, max_pages), 1
    ra_submit(phys, f, ra)


def page_cache_async_ra(phys: PhysMem, f: File, ra: FileRaState, index: int, req_count: int) -> None:
    """A read reached the PG_readahead page at index: clear the mark and read the next window
    (the expected marker pushes the window forward; another one restarts from the next hole)."""
    f.ra_marks.discard(index)
    max_pages = ra.ra_pages
    if not max_pages:
        return
    if index == ra.start + ra.size - ra.async_size:
        ra.start += ra.size
        ra.size = max(ra.size, get_next_ra_size(ra, max_pages))
        ra.async_size = ra.size
    else:
        start = page_cache_next_miss(f, index + 1, max_pages)
        if start - index > max_pages:
            return
        ra.start, ra.size = start, start - index + req_count
        ra.size = get_next_ra_size(ra, max_pages)
        ra.async_size = ra.size
    ra_submit(phys, f, ra)


def do_sync_mmap_readahead(phys: PhysMem, f: File, ra: FileRaState, pgoff: int, hint: str = "") -> None:
    """A page fault missed the page cache: read around pgoff (ra_pages centred on it, marker a
    quarter before the end), unless the mapping misses much more than it hits. `hint`: the VMA's
    MADV_RANDOM ("random": just the page) or MADV_SEQUENTIAL ("sequential": a read(2)-style
    window from pgoff)."""
    if not ra.ra_pages or hint == "random":
        do_page_cache_ra(phys, f, pgoff, 1, 0)
        return
    if hint == "sequential":
        page_cache_sync_ra(phys, f, ra, pgoff, ra.ra_pages)
        return
    ra.mmap_miss = min(ra.mmap_miss + 1, MMAP_LOTSAMISS * 10)
    if ra.mmap_miss > MMAP_LOTSAMISS:
        do_page_cache_ra(phys, f, pgoff, 1, 0)
        return
    ra.start = max(0, pgoff - ra.ra_pages // 2)
    ra.size = ra.ra_pages
    ra.async_size = ra.ra_pages // 4
    ra_submit(phys, f, ra)


def do_async_mmap_readahead(phys: PhysMem, f: File, ra: FileRaState, pgoff: int, hint: str = "") -> bool:
    """A page fault found pgoff cached: one miss less; if it carries PG_readahead, read the next
    window (True). The kernel retries such a fault, counted minor: the first attempt was not.
    Not under MADV_RANDOM."""
    if hint == "random" or not ra.ra_pages:
        return False
    ra.mmap_miss = max(ra.mmap_miss - 1, 0)
    if pgoff not in f.ra_marks:
        return False
    page_cache_async_ra(phys, f, ra, pgoff, ra.ra_pages)
    return True


def page_cache_prev_miss(f: File, index: int, max_scan: int) -> int:
    """The first page at or before index (scanning back at most max_scan pages) that is not
    cached; -1 when every page down to the start of the file is (ULONG_MAX in the kernel)."""
    for pgoff in range(index, max(index - max_scan, -1), -1):
        if pgoff not in f.page_cache:
            return pgoff
    return -1 if index - max_scan < 0 else index - max_scan


def page_cache_next_miss(f: File, index: int, max_scan: int) -> int:
    """The first page at or after index (within max_scan pages) that is not cached."""
    for pgoff in range(index, index + max_scan):
        if pgoff not in f.page_cache:
            return pgoff
    return index + max_scan


def force_page_cache_ra(phys: PhysMem, f: File, index: int, nr_to_read: int, ra_pages: int) -> None:
    """POSIX_FADV_WILLNEED / MADV_WILLNEED: read the range in, window by window, with no
    PG_readahead marker (force_page_cache_ra)."""
    step = max(ra_pages, 1)
    for start in range(index, index + nr_to_read, step):
        do_page_cache_ra(phys, f, start, min(step, index + nr_to_read - start), 0)
