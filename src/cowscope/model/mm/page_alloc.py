"""Physical memory: page frames with refcount, mapcount, flags and sparse contents.

A frame is an index (pfn) into numpy arrays. Contents are sparse: a page whose bytes all hold
one value stores only that value (`content[pfn] >= 0`); any other page owns a 4 KiB bytearray
(`content[pfn] == BUFFER`, bytes in `data[pfn]`). The shared zero page is a reserved frame, and so
is the huge zero folio (512 frames).

Large folios (2 MiB THPs) are 512 frames aligned to 512 in pfn space, flagged PG_HEAD/PG_TAIL.
`mapcount[pfn]` counts the PTEs mapping each subpage (the kernel's per-page _mapcount) and
`refcount[pfn]` the references held per subpage (PTEs, swap cache); the PMDs mapping a folio whole
are counted once per folio in `entire[pfn >> 9]` (the kernel's _entire_mapcount). A folio is freed
when nothing references any of its subpages; one still mapped in part, but by no PMD, waits on the
deferred split queue (`deferred`) until memory pressure splits it (split_folio).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

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
PG_HEAD = 1 << 7            # first frame of a large folio (compound head)
PG_TAIL = 1 << 8            # the other 511 frames of a large folio
PG_SWAPCACHE = 1 << 9       # in the swap cache (holds one reference)
PG_KSM = 1 << 10            # a KSM page (stable tree): never reused on write
PG_COMPOUND = PG_HEAD | PG_TAIL

BUFFER = -1                 # content code: the page's bytes live in PhysMem.data[pfn]
ZERO_PFN = 0x100            # the shared zero page
HUGE_ZERO_PFN = 0x200       # the huge zero folio: 512 frames from here
FOLIO_NR = 512              # frames in a PMD-sized folio
FOLIO_SHIFT = 9
FIRST_PFN = 0x1000          # frames below are "the kernel's"


class OutOfMemory(Exception):
    """No free frame: the caller runs the OOM killer."""


class PhysMem:
    """The machine's RAM: allocation, reference/map counts and page contents."""

    def __init__(self, nr_pages: int) -> None:
        self.nr_pages = nr_pages          # frames available to users (RAM size)
        self.pressure: Callable[[], None] | None = None  # reclaim/OOM for page-cache allocations
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
        self.entire = np.zeros(cap >> FOLIO_SHIFT, dtype=np.int32)  # PMD maps per 512-frame block
        self.nr_folios = 0                         # large folios allocated
        self.deferred: set[int] = set()            # heads of partially mapped folios (deferred split)
        self._free_huge: list[int] = []            # heads of free aligned 512-frame blocks
        self.aliased = False                       # one frame may be mapped twice in a range (KSM)
        self.stat: Counter[str] = Counter()        # vm events (the machine shares this counter)

    # -- allocation --------------------------------------------------------------------------
    def _grow(self, need: int) -> None:
        """Make the arrays hold pfns up to `need` (doubling, bounded by RAM)."""
        cap = len(self.refcount)
        if need <= cap:
            return
        new = min(max(need, cap * 2), self._limit())
        for name in ("refcount", "mapcount", "flags", "content"):
            old = getattr(self, name)
            arr = np.zeros(new, dtype=old.dtype)
            arr[:cap] = old
            setattr(self, name, arr)
        entire = np.zeros((new + FOLIO_NR - 1) >> FOLIO_SHIFT, dtype=np.int32)
        entire[:len(self.entire)] = self.entire
        self.entire = entire

    def _limit(self) -> int:
        """Highest pfn + 1 the arrays may reach: RAM plus the alignment slack of large folios."""
        return FIRST_PFN + self.nr_pages + (FOLIO_NR if self.nr_pages >= FOLIO_NR else 0)

    def _take_fresh(self, n: int) -> np.ndarray:
        """n never-used frames above the high-water mark, or frames of free large-folio blocks."""
        if self._next + n > self._limit() and self._free_huge:
            head = self._free_huge.pop()
            self._push_free(np.arange(head, head + FOLIO_NR, dtype=np.int64))
            take = min(n, self._nfree)
            out = self._free[self._nfree - take:self._nfree].copy()
            self._nfree -= take
            return out if take == n else np.concatenate([out, self._take_fresh(n - take)])
        self._grow(self._next + n)
        out = np.arange(self._next, self._next + n, dtype=np.int64)
        self._next += n
        return out

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
            parts.append(self._take_fresh(rest))
        pfns = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self.flags[pfns] = flags | PG_INUSE
        self.content[pfns] = value
        self.refcount[pfns] = 0
        self.mapcount[pfns] = 0
        self.nr_used += n
        self.pgalloc += n
        return pfns

    def alloc_cache(self, flags: int) -> int:
        """One frame for the page cache: on OutOfMemory, `pressure` (the machine's reclaim, then its
        OOM killer) frees memory and the allocation is retried; without one, OutOfMemory."""
        while True:
            try:
                return self.alloc_one(flags)
            except OutOfMemory:
                if self.pressure is None:
                    raise
                self.pressure()

    def alloc_one(self, flags: int, value: int = 0) -> int:
        """Allocate one frame (scalar fast path of alloc)."""
        if self.nr_used >= self.nr_pages:
            raise OutOfMemory(1)
        if self._nfree:
            self._nfree -= 1
            pfn = int(self._free[self._nfree])
        elif self._next < self._limit() or not self._free_huge:
            self._grow(self._next + 1)
            pfn = self._next
            self._next += 1
        else:
            pfn = int(self._take_fresh(1)[0])
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
        self._push_free(pfns)
        self.nr_used -= n
        self.pgfree += n

    def _push_free(self, pfns: np.ndarray) -> None:
        n = len(pfns)
        if self._nfree + n > len(self._free):
            grown = np.zeros(max(2 * len(self._free), self._nfree + n, 1024), dtype=np.int64)
            grown[:self._nfree] = self._free[:self._nfree]
            self._free = grown
        self._free[self._nfree:self._nfree + n] = pfns
        self._nfree += n

    def put(self, pfns: np.ndarray) -> None:
        """Drop one reference from each frame; free those that reach zero (put_page). A subpage
        of a large folio is freed with its folio, when no subpage is referenced any more."""
        if not len(pfns):
            return
        if self.aliased:  # a KSM page can appear several times in pfns
            np.subtract.at(self.refcount, pfns, 1)
            pfns = np.unique(pfns)
        else:
            self.refcount[pfns] -= 1
        dead = pfns[self.refcount[pfns] == 0]
        if len(dead):
            if self.nr_folios:
                large = (self.flags[dead] & PG_COMPOUND) != 0
                if large.any():
                    for head in np.unique(dead[large] & ~(FOLIO_NR - 1)).tolist():
                        self.folio_put(head)
                    dead = dead[~large]
            self.free(dead)

    def map_add(self, pfns: np.ndarray, delta: int) -> None:
        """Add delta to the map count and the reference count of each frame (one PTE each; a
        frame listed twice counts twice)."""
        if self.aliased:
            np.add.at(self.mapcount, pfns, delta)
            np.add.at(self.refcount, pfns, delta)
        else:
            self.mapcount[pfns] += delta
            self.refcount[pfns] += delta

    def unmap(self, pfns: np.ndarray) -> None:
        """One PTE mapping each frame went away: map count down, then put_page."""
        if self.aliased:
            np.subtract.at(self.mapcount, pfns, 1)
        else:
            self.mapcount[pfns] -= 1
        self.put(pfns)

    # -- large folios (2 MiB THPs) --------------------------------------------------------------
    def alloc_folio(self, flags: int, value: int = 0) -> int:
        """A 512-frame folio aligned to 512 pfns (head returned); OutOfMemory if none is free."""
        if self.nr_used + FOLIO_NR > self.nr_pages:
            raise OutOfMemory(FOLIO_NR)
        if self._free_huge:
            head = self._free_huge.pop()
        else:
            head = (self._next + FOLIO_NR - 1) & ~(FOLIO_NR - 1)
            if head + FOLIO_NR > self._limit():
                raise OutOfMemory(FOLIO_NR)
            self._grow(head + FOLIO_NR)
            if head > self._next:  # the alignment gap becomes ordinary free frames
                self._push_free(np.arange(self._next, head, dtype=np.int64))
            self._next = head + FOLIO_NR
        sl = slice(head, head + FOLIO_NR)
        self.flags[sl] = flags | PG_INUSE | PG_TAIL
        self.flags[head] = flags | PG_INUSE | PG_HEAD
        self.content[sl] = value
        self.refcount[sl] = 0
        self.mapcount[sl] = 0
        self.entire[head >> FOLIO_SHIFT] = 0
        self.nr_used += FOLIO_NR
        self.pgalloc += FOLIO_NR
        self.nr_folios += 1
        return head

    def folio_put(self, head: int) -> None:
        """A reference to the folio at head went away: free it if none is left; queue it for a
        deferred split if it is still mapped in part but by no PMD (deferred_split_folio)."""
        if self.entire[head >> FOLIO_SHIFT]:
            return
        sl = slice(head, head + FOLIO_NR)
        if not self.refcount[sl].any():
            self.deferred.discard(head)
            self._free_folio(head)
        elif head not in self.deferred and (self.refcount[sl] == 0).any():
            self.deferred.add(head)
            self.stat["thp_deferred_split_page"] += 1

    def _free_folio(self, head: int) -> None:
        sl = slice(head, head + FOLIO_NR)
        if self.data:
            for pfn in range(head, head + FOLIO_NR):
                self.data.pop(pfn, None)
        self.flags[sl] = 0
        self.content[sl] = 0
        self._free_huge.append(head)
        self.nr_used -= FOLIO_NR
        self.pgfree += FOLIO_NR
        self.nr_folios -= 1

    def split_folio(self, head: int) -> None:
        """split_huge_page of a folio no PMD maps: 512 order-0 pages; unreferenced ones are freed."""
        assert not self.entire[head >> FOLIO_SHIFT], f"split_folio: {head:#x} is still PMD-mapped"
        sl = slice(head, head + FOLIO_NR)
        self.flags[sl] &= np.uint16(~PG_COMPOUND & 0xFFFF)
        self.deferred.discard(head)
        self.nr_folios -= 1
        self.stat["thp_split_page"] += 1
        pfns = np.arange(head, head + FOLIO_NR, dtype=np.int64)
        self.free(pfns[self.refcount[sl] == 0])

    def folio_head(self, pfn: int) -> int:
        """The head frame of pfn's folio (pfn itself for an order-0 page)."""
        return pfn & ~(FOLIO_NR - 1) if self.flags[pfn] & PG_COMPOUND else pfn

    def precise_mapcount(self, pfns: np.ndarray) -> np.ndarray:
        """Per-page map count as /proc/kpagecount and smaps see it: PTEs plus the folio's PMDs."""
        mc = self.mapcount[pfns].astype(np.int64)
        if self.nr_folios:
            large = (self.flags[pfns] & PG_COMPOUND) != 0
            if large.any():
                mc[large] += self.entire[pfns[large] >> FOLIO_SHIFT]
        return mc

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
