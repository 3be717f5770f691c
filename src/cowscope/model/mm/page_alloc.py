"""Physical memory: page frames with refcount, mapcount, flags and sparse contents.

A frame is an index (pfn) into numpy arrays. Contents are sparse: a page whose bytes all hold
one value stores only that value (`content[pfn] >= 0`); any other page owns a 4 KiB bytearray
(`content[pfn] == BUFFER`, bytes in `data[pfn]`). The shared zero page is a reserved frame.
"""

from __future__ import annotations

import numpy as np

from ..arch import PAGE_SIZE

# struct page flags (a subset, named as the kernel names them)
PG_ANON = 1 << 0            # folio_test_anon
PG_ANON_EXCLUSIVE = 1 << 1  # PageAnonExclusive
PG_DIRTY = 1 << 2           # PG_dirty (page cache / shmem)
PG_SWAPBACKED = 1 << 3      # anon and shmem; cleared by MADV_FREE (lazyfree)
PG_FILE = 1 << 4            # in a page cache (regular file or shmem)
PG_INUSE = 1 << 5           # allocated (not on the free list)
PG_REFERENCED = 1 << 6

BUFFER = -1                 # content code: the page's bytes live in PhysMem.data[pfn]
ZERO_PFN = 0x100            # the shared zero page
FIRST_PFN = 0x1000          # frames below are "the kernel's"


class OutOfMemory(Exception):
    """No free frame: the caller runs the OOM killer."""


class PhysMem:
    """The machine's RAM: allocation, reference/map counts and page contents."""

    def __init__(self, nr_pages: int) -> None:
        self.nr_pages = nr_pages          # frames available to users (RAM size)
        cap = FIRST_PFN + min(nr_pages, 1 << 16)
        self.refcount = np.zeros(cap, dtype=np.int32)
        self.mapcount = np.zeros(cap, dtype=np.int32)
        self.flags = np.zeros(cap, dtype=np.uint16)
        self.content = np.zeros(cap, dtype=np.int16)
        self.data: dict[int, bytearray] = {}
        self._free = np.zeros(0, dtype=np.int64)  # stack of freed pfns
        self._nfree = 0
        self._next = FIRST_PFN                     # high-water mark
        self.nr_used = 0
        self.pgalloc = 0
        self.pgfree = 0
        self.flags[ZERO_PFN] = PG_INUSE

    # -- allocation --------------------------------------------------------------------------
    def _grow(self, need: int) -> None:
        """Make the arrays hold pfns up to `need` (doubling, bounded by RAM)."""
        cap = len(self.refcount)
        if need <= cap:
            return
        new = min(max(need, cap * 2), FIRST_PFN + self.nr_pages)
        for name in ("refcount", "mapcount", "flags", "content"):
            old = getattr(self, name)
            arr = np.zeros(new, dtype=old.dtype)
            arr[:cap] = old
            setattr(self, name, arr)

    def alloc(self, n: int, flags: int, value: int = 0) -> np.ndarray:
        """Allocate n frames filled with byte `value`; raises OutOfMemory if RAM is exhausted."""
        if self.nr_used + n > self.nr_pages:
            raise OutOfMemory(n)
        take = min(n, self._nfree)
        parts = []
        if take:
            parts.append(self._free[self._nfree - take:self._nfree].copy())
            self._nfree -= take
        rest = n - take
        if rest:
            self._grow(self._next + rest)
            parts.append(np.arange(self._next, self._next + rest, dtype=np.int64))
            self._next += rest
        pfns = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self.flags[pfns] = flags | PG_INUSE
        self.content[pfns] = value
        self.refcount[pfns] = 0
        self.mapcount[pfns] = 0
        self.nr_used += n
        self.pgalloc += n
        return pfns

    def alloc_one(self, flags: int, value: int = 0) -> int:
        """Allocate one frame (scalar fast path of alloc)."""
        if self.nr_used >= self.nr_pages:
            raise OutOfMemory(1)
        if self._nfree:
            self._nfree -= 1
            pfn = int(self._free[self._nfree])
        else:
            self._grow(self._next + 1)
            pfn = self._next
            self._next += 1
        self.flags[pfn] = flags | PG_INUSE
        self.content[pfn] = value
        self.refcount[pfn] = 0
        self.mapcount[pfn] = 0
        self.nr_used += 1
        self.pgalloc += 1
        return pfn

    def free(self, pfns: np.ndarray) -> None:
        """Return frames to the free list (their counts must already be zero)."""
        n = len(pfns)
        if not n:
            return
        if self.data:
            for pfn in pfns[self.content[pfns] == BUFFER].tolist():
                del self.data[pfn]
        self.flags[pfns] = 0
        self.content[pfns] = 0
        if self._nfree + n > len(self._free):
            grown = np.zeros(max(2 * len(self._free), self._nfree + n, 1024), dtype=np.int64)
            grown[:self._nfree] = self._free[:self._nfree]
            self._free = grown
        self._free[self._nfree:self._nfree + n] = pfns
        self._nfree += n
        self.nr_used -= n
        self.pgfree += n

    def put(self, pfns: np.ndarray) -> None:
        """Drop one reference from each frame; free those that reach zero (put_page)."""
        if not len(pfns):
            return
        self.refcount[pfns] -= 1
        dead = pfns[self.refcount[pfns] == 0]
        if len(dead):
            self.free(dead)

    # -- contents ----------------------------------------------------------------------------
    def read(self, pfn: int, off: int, n: int) -> bytes:
        """Bytes [off, off+n) of a frame."""
        c = int(self.content[pfn])
        if c >= 0:
            return bytes((c,)) * n
        return bytes(self.data[pfn][off:off + n])

    def write(self, pfn: int, off: int, data: bytes) -> None:
        """Store bytes into a frame, materialising a buffer only when the page stops being uniform."""
        c = int(self.content[pfn])
        if c >= 0:
            if data.count(c) == len(data):
                return
            if len(data) == PAGE_SIZE and data.count(data[0]) == PAGE_SIZE:
                self.content[pfn] = data[0]
                return
            buf = bytearray((c,)) * PAGE_SIZE
            self.data[pfn] = buf
            self.content[pfn] = BUFFER
        else:
            buf = self.data[pfn]
        buf[off:off + len(data)] = data

    def fill(self, pfn: int, off: int, n: int, value: int) -> None:
        """Set n bytes of a frame to one value; a whole-page fill makes the page uniform again."""
        if n == PAGE_SIZE:
            if self.content[pfn] == BUFFER:
                del self.data[pfn]
            self.content[pfn] = value
            return
        self.write(pfn, off, bytes((value,)) * n)

    def copy(self, dst: np.ndarray, src: np.ndarray) -> None:
        """Copy page contents src -> dst (the kernel's copy_user_highpage, vectorised)."""
        codes = self.content[src]
        self.content[dst] = codes
        if self.data:
            for d, s in zip(dst[codes == BUFFER].tolist(), src[codes == BUFFER].tolist()):
                self.data[d] = bytearray(self.data[s])

    def page_bytes(self, pfn: int) -> bytes:
        """The whole 4 KiB of a frame."""
        return self.read(pfn, 0, PAGE_SIZE)

    def set_page(self, pfn: int, data: bytes | int) -> None:
        """Load a whole page (from a file) into a frame."""
        if isinstance(data, int):
            self.fill(pfn, 0, PAGE_SIZE, data)
        elif data.count(data[0]) == len(data) == PAGE_SIZE:
            self.fill(pfn, 0, PAGE_SIZE, data[0])
        else:
            self.content[pfn] = BUFFER
            buf = bytearray(PAGE_SIZE)
            buf[:len(data)] = data
            self.data[pfn] = buf
