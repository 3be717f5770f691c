"""Files and their page cache: a file's bytes on "disk" and the frames caching its pages."""

from __future__ import annotations

from ..arch import PAGE_SHIFT, PAGE_SIZE
from ..mm.page_alloc import PG_DIRTY, PG_FILE, PG_SWAPBACKED, PhysMem


class File:
    """An inode: disk contents per page and the page cache (pgoff -> pfn)."""

    def __init__(self, path: str, inode: int, size: int, dev: str = "fe:00",
                 shmem: bool = False, shmem_anon: bool = False) -> None:
        self.path = path
        self.inode = inode
        self.dev = dev
        self.size = size
        self.is_shmem = shmem            # tmpfs/shmem: no disk, pages are swap-backed
        self.is_shmem_anon = shmem_anon  # MAP_SHARED|MAP_ANONYMOUS: "/dev/zero (deleted)"
        self.disk: dict[int, bytes | int] = {}  # page index -> page bytes (or one fill byte)
        self.page_cache: dict[int, int] = {}    # page index -> pfn (holds one reference)
        self.ra_marks: set[int] = set()         # page indexes whose folio has PG_readahead
        self.shmem_charge = 0                   # pages a MAP_SHARED|MAP_ANONYMOUS object commits

    @property
    def npages(self) -> int:
        return (self.size + PAGE_SIZE - 1) >> PAGE_SHIFT

    def disk_page(self, pgoff: int) -> bytes | int:
        """The page as stored on disk (zeros past EOF)."""
        return self.disk.get(pgoff, 0)

    def add_to_page_cache(self, phys: PhysMem, pgoff: int) -> int:
        """A new page-cache frame for pgoff holding the page as on disk (clean; the page cache's
        reference)."""
        flags = PG_FILE | (PG_SWAPBACKED if self.is_shmem else 0)
        pfn = phys.alloc_cache(flags)  # under memory pressure: reclaim, then the OOM killer
        phys.set_page(pfn, self.disk_page(pgoff))
        phys.refcount[pfn] = 1
        self.page_cache[pgoff] = pfn
        return pfn

    def read_cached(self, phys: PhysMem, pgoff: int, off: int, n: int) -> bytes:
        """n bytes at off of page pgoff, from its page-cache frame (the page must be cached)."""
        return phys.read(self.page_cache[pgoff], off, n)

    def write_cached(self, phys: PhysMem, pgoff: int, off: int, data: bytes) -> None:
        """Store into page pgoff's page-cache frame (mappers of it see the bytes), dirtying it. The
        frame is the file's contents until reclaim writes it back (`writeback`) and evicts it."""
        pfn = self.page_cache[pgoff]
        phys.write(pfn, off, data)
        phys.flags[pfn] |= PG_DIRTY


    def writeback(self, phys: PhysMem, pgoff: int) -> None:
        """Write a dirty page-cache page to disk: the disk holds its bytes, the page is clean."""
        pfn = self.page_cache[pgoff]
        if phys.flags[pfn] & PG_DIRTY:
            self.disk[pgoff] = phys.read(pfn, 0, PAGE_SIZE)
            phys.flags[pfn] &= ~PG_DIRTY & 0xFFFF


def file_from_bytes(path: str, inode: int, data: bytes) -> File:
    """A regular file holding `data`."""
    f = File(path, inode, len(data))
    for i in range(0, len(data), PAGE_SIZE):
        chunk = data[i:i + PAGE_SIZE]
        f.disk[i >> PAGE_SHIFT] = chunk[0] if chunk.count(chunk[0]) == PAGE_SIZE else chunk
    return f
