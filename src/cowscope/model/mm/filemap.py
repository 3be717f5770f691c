"""The page cache's side of faults and of read(2)/write(2) (mm/filemap.c).

`filemap_fault` finds (or reads, with readahead) the page-cache frame behind a faulting file page;
`filemap_map_pages` says which cached pages fault-around may map; `filemap_read` and
`filemap_write` are pread(2)/pwrite(2): they go through the page cache, so a later fault on a
page they touched is minor. Mapping the frames into page tables is mm/memory.py's business.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from ..arch import PAGE_SHIFT, PAGE_SIZE
from .readahead import (
    FileRaState,
    do_async_mmap_readahead,
    do_sync_mmap_readahead,
    page_cache_async_ra,
    page_cache_sync_ra,
)
from .vma import VM_RAND_READ, VM_SEQ_READ

if TYPE_CHECKING:
    from ..fs.file import File
    from .page_alloc import PhysMem
    from .vma import VMA


class FileFault(NamedTuple):
    """What filemap_fault found: the frame, whether a shmem page was created for this fault, and
    whether the fault is major (it read from disk, or waited for readahead it started)."""

    pfn: int
    fresh: bool
    major: bool


def file_ra(vma: VMA, ra_pages: int) -> FileRaState:
    """The readahead state of the open file behind vma (a fresh one for VMAs without their own)."""
    if vma.vm_ra is None:
        vma.vm_ra = FileRaState(ra_pages)
    return vma.vm_ra


def filemap_fault(phys: PhysMem, vma: VMA, va: int, ra_pages: int) -> FileFault:
    """The page-cache frame behind va. shmem: the page, created zeroed if absent (shmem_fault, no
    readahead). A file: a cached page is a minor fault (one carrying PG_readahead starts reading
    the next window first; the kernel retries that fault, still minor); a missing page is read
    with the window around it (do_sync_mmap_readahead): major."""
    f = vma.vm_file
    assert f is not None
    pgoff = vma.pgoff_at(va)
    pfn = f.page_cache.get(pgoff)
    if f.is_shmem:
        if pfn is None:
            return FileFault(f.add_to_page_cache(phys, pgoff), True, False)
        return FileFault(pfn, False, False)
    ra = file_ra(vma, ra_pages)
    hint = "random" if vma.vm_flags & VM_RAND_READ else "sequential" if vma.vm_flags & VM_SEQ_READ else ""
    if pfn is not None:
        do_async_mmap_readahead(phys, f, ra, pgoff, hint)
        return FileFault(pfn, False, False)
    do_sync_mmap_readahead(phys, f, ra, pgoff, hint)
    if pgoff not in f.page_cache:  # readahead off or the file shrank: read the one page
        f.add_to_page_cache(phys, pgoff)
    return FileFault(f.page_cache[pgoff], False, True)


def filemap_map_pages(f: File, start_pgoff: int, end_pgoff: int) -> list[tuple[int, int]]:
    """(pgoff, pfn) of the pages fault-around may map in [start_pgoff, end_pgoff]: cached, below
    EOF, and without PG_readahead (next_uptodate_folio leaves those to a real fault)."""
    out = []
    for pgoff in range(start_pgoff, min(end_pgoff, f.npages - 1) + 1):
        pfn = f.page_cache.get(pgoff)
        if pfn is not None and pgoff not in f.ra_marks:
            out.append((pgoff, pfn))
    return out


def filemap_read(phys: PhysMem, f: File, offset: int, n: int, ra_pages: int) -> bytes:
    """read(2) of n bytes at offset by a freshly opened file: cached pages are copied; a miss starts
    synchronous readahead for the rest of the request; a batch ending on a PG_readahead page starts
    the next window (filemap_get_pages)."""
    if n <= 0 or offset >= f.size:
        return b""
    ra = FileRaState(ra_pages)
    last_index = (offset + n + PAGE_SIZE - 1) >> PAGE_SHIFT
    end = min(offset + n, f.size)
    out = bytearray()
    pos = offset
    while pos < end:
        index = pos >> PAGE_SHIFT
        if index not in f.page_cache:
            page_cache_sync_ra(phys, f, ra, index, last_index - index)
            if index not in f.page_cache:
                f.add_to_page_cache(phys, index)
        batch = _read_batch(f, index, last_index)
        if batch[-1] in f.ra_marks:
            page_cache_async_ra(phys, f, ra, batch[-1], last_index - batch[-1])
        for pgoff in batch:
            off = pos & (PAGE_SIZE - 1)
            k = min(end - pos, PAGE_SIZE - off)
            if k <= 0:
                break
            out += f.read_cached(phys, pgoff, off, k)
            pos += k
    return bytes(out)


def _read_batch(f: File, index: int, last_index: int) -> list[int]:
    """Consecutive cached pages from index (filemap_get_read_batch): it ends after a page with
    PG_readahead, before a missing page, or at the end of the request."""
    batch = []
    for pgoff in range(index, last_index):
        if pgoff not in f.page_cache:
            break
        batch.append(pgoff)
        if pgoff in f.ra_marks:
            break
    return batch


def filemap_write(phys: PhysMem, f: File, offset: int, data: bytes) -> None:
    """write(2) through the page cache (generic_perform_write): each page written is looked up or
    created (a partly written page is read from disk first, no readahead) and dirtied; the file
    grows to cover the write."""
    pos = 0
    while pos < len(data):
        pgoff, off = (offset + pos) >> PAGE_SHIFT, (offset + pos) & (PAGE_SIZE - 1)
        k = min(len(data) - pos, PAGE_SIZE - off)
        if pgoff not in f.page_cache:
            f.add_to_page_cache(phys, pgoff)
        f.write_cached(phys, pgoff, off, data[pos:pos + k])
        pos += k
    f.size = max(f.size, offset + len(data))
