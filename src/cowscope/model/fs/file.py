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

    @property
    def npages(self) -> int:
        return (self.size + PAGE_SIZE - 1) >> PAGE_SHIFT

    def disk_page(self, pgoff: int) -> bytes | int:
        """The page as stored on disk (zeros past EOF)."""
        return self.disk.get(pgoff, 0)

    def find_get_page(self, phys: PhysMem, pgoff: int) -> tuple[int, bool]:
        """The page-cache frame for pgoff, read from disk if absent; returns (pfn, major)."""
        pfn = self.page_cache.get(pgoff)
        if pfn is not None:
            return pfn, False
        flags = PG_FILE | (PG_SWAPBACKED if self.is_shmem else 0)
        pfn = phys.alloc_one(flags)
        phys.set_page(pfn, self.disk_page(pgoff))
        phys.refcount[pfn] = 1  # the page cache's reference
        self.page_cache[pgoff] = pfn
        return pfn, not self.is_shmem

    def pread(self, phys: PhysMem, offset: int, n: int) -> bytes:
        """read(2) through the page cache (sees MAP_SHARED writes immediately)."""
        n = max(0, min(n, self.size - offset))
        out = bytearray()
        while n > 0:
            pgoff, off = offset >> PAGE_SHIFT, offset & (PAGE_SIZE - 1)
            k = min(n, PAGE_SIZE - off)
            pfn = self.page_cache.get(pgoff)
            if pfn is not None:
                out += phys.read(pfn, off, k)
            else:
                page = self.disk_page(pgoff)
                out += bytes((page,)) * k if isinstance(page, int) else page[off:off + k]
            offset += k
            n -= k
        return bytes(out)

    def pwrite(self, phys: PhysMem, offset: int, data: bytes) -> None:
        """write(2) through the page cache: cached pages change (mappers see it), disk too."""
        self.size = max(self.size, offset + len(data))
        pos = 0
        while pos < len(data):
            pgoff, off = (offset + pos) >> PAGE_SHIFT, (offset + pos) & (PAGE_SIZE - 1)
            k = min(len(data) - pos, PAGE_SIZE - off)
            chunk = data[pos:pos + k]
            page = bytearray(self._page_bytes(pgoff))
            page[off:off + k] = chunk
            self.disk[pgoff] = bytes(page)
            pfn = self.page_cache.get(pgoff)
            if pfn is not None:
                phys.write(pfn, off, chunk)
                phys.flags[pfn] |= PG_DIRTY
            pos += k

    def _page_bytes(self, pgoff: int) -> bytes:
        page = self.disk_page(pgoff)
        return bytes((page,)) * PAGE_SIZE if isinstance(page, int) else page.ljust(PAGE_SIZE, b"\0")


def file_from_bytes(path: str, inode: int, data: bytes) -> File:
    """A regular file holding `data`."""
    f = File(path, inode, len(data))
    for i in range(0, len(data), PAGE_SIZE):
        chunk = data[i:i + PAGE_SIZE]
        f.disk[i >> PAGE_SHIFT] = chunk[0] if chunk.count(chunk[0]) == PAGE_SIZE else chunk
    return f
