"""The heaps of glibc 2.36's non-main arenas (arena.c): reserved, grown, shrunk and dropped.

A heap is HEAP_MAX_SIZE (64 MiB) of address space reserved PROT_NONE (MAP_NORESERVE) at a
64 MiB-aligned address, its heap_info at the start; the first `size` bytes are read-write and
`grow_heap` mprotects more as the arena's top needs it. `shrink_heap` gives the tail back with
MADV_DONTNEED (the pages stay read-write: mprotect_size does not shrink), or under
vm.overcommit_memory=2 maps it PROT_NONE again. `heap_trim` unmaps a heap whose only chunk is
the top, after which the top is the old top of the previous heap (behind its fencepost).
`sysmalloc_heap` is sysmalloc's branch for a non-main arena.
"""

from __future__ import annotations

from ....errors import SyscallError
from .layout import (
    AV_SYSTEM_MEM,
    AV_TOP,
    CHUNK_HDR_SZ,
    HEAP_INFO_SIZE,
    HEAP_MAX_SIZE,
    HEAP_MIN_SIZE,
    HI_AR_PTR,
    HI_MPROTECT_SIZE,
    HI_PAGESIZE,
    HI_PREV,
    HI_SIZE,
    MALLOC_ALIGN_MASK,
    MINSIZE,
    MP_TOP_PAD,
    MP_TRIM_THRESHOLD,
    NON_MAIN_ARENA,
    OFF_ALIGNED_HEAP_AREA,
    OFF_MAY_SHRINK_HEAP,
    PAGESIZE,
    PREV_INUSE,
    SIZE_SZ,
    align_up,
)


class HeapMixin:
    """new_heap, grow_heap, shrink_heap, heap_trim and sysmalloc's non-main branch."""

    def _mmap_reserve(self, addr: int | None, length: int) -> int | None:
        """MMAP(addr, length, PROT_NONE, MAP_NORESERVE): a reservation (None: MAP_FAILED)."""
        try:
            return self.host.mmap_anon(length, "", addr=addr, noreserve=True)
        except SyscallError:
            return None

    def new_heap(self, size: int, top_pad: int) -> int:
        """new_heap / alloc_new_heap: size (plus top_pad when it fits) rounded to pages, in a
        HEAP_MAX_SIZE-aligned reservation; its first `size` bytes read-write. 0 on failure."""
        if size + top_pad < HEAP_MIN_SIZE:
            size = HEAP_MIN_SIZE
        elif size + top_pad <= HEAP_MAX_SIZE:
            size += top_pad
        elif size > HEAP_MAX_SIZE:
            return 0
        else:
            size = HEAP_MAX_SIZE
        size = align_up(size, PAGESIZE)
        p2 = self._aligned_reservation()
        if p2 is None:
            return 0
        try:
            self.host.mprotect(p2, size, "rw")
        except SyscallError:
            self.host.munmap(p2, HEAP_MAX_SIZE)
            return 0
        w = self._w
        w(p2 + HI_SIZE, size)
        w(p2 + HI_MPROTECT_SIZE, size)
        w(p2 + HI_PAGESIZE, PAGESIZE)
        return p2

    def _aligned_reservation(self) -> int | None:
        """alloc_new_heap's placement: at aligned_heap_area if the kernel gives exactly that,
        else the aligned half of a 128 MiB reservation (the rest unmapped), else a lucky 64 MiB."""
        ahap = self.host.libc_data + OFF_ALIGNED_HEAP_AREA
        hint = self._r(ahap)
        if hint:
            p2 = self._mmap_reserve(hint, HEAP_MAX_SIZE)
            self._w(ahap, 0)
            if p2 is not None and p2 & (HEAP_MAX_SIZE - 1):
                self.host.munmap(p2, HEAP_MAX_SIZE)
                p2 = None
            if p2 is not None:
                return p2
        p1 = self._mmap_reserve(None, HEAP_MAX_SIZE << 1)
        if p1 is not None:
            p2 = (p1 + HEAP_MAX_SIZE - 1) & ~(HEAP_MAX_SIZE - 1)
            ul = p2 - p1
            if ul:
                self.host.munmap(p1, ul)
            else:
                self._w(ahap, p2 + HEAP_MAX_SIZE)
            self.host.munmap(p2 + HEAP_MAX_SIZE, HEAP_MAX_SIZE - ul)
            return p2
        p2 = self._mmap_reserve(None, HEAP_MAX_SIZE)
        if p2 is None:
            return None
        if p2 & (HEAP_MAX_SIZE - 1):
            self.host.munmap(p2, HEAP_MAX_SIZE)
            return None
        return p2

    def grow_heap(self, h: int, diff: int) -> int:
        """grow_heap: 0 on success; -1 past HEAP_MAX_SIZE, -2 if mprotect failed."""
        r, w = self._r, self._w
        diff = align_up(diff, r(h + HI_PAGESIZE))
        new_size = r(h + HI_SIZE) + diff
        if new_size > HEAP_MAX_SIZE:
            return -1
        mprotect_size = r(h + HI_MPROTECT_SIZE)
        if new_size > mprotect_size:
            try:
                self.host.mprotect(h + mprotect_size, new_size - mprotect_size, "rw")
            except SyscallError:
                return -2
            w(h + HI_MPROTECT_SIZE, new_size)
        w(h + HI_SIZE, new_size)
        return 0

    def check_may_shrink_heap(self) -> bool:
        """check_may_shrink_heap: reads /proc/sys/vm/overcommit_memory once (kept in .data);
        true only in mode 2, where shrinking remaps the tail PROT_NONE to give the commit back."""
        a = self.host.libc_data + OFF_MAY_SHRINK_HEAP
        v = self._ri32(a)
        if v >= 0:
            return bool(v)
        v = 1 if getattr(self.host, "overcommit_memory", 0) == 2 else 0
        self._w32(a, v)
        return bool(v)

    def shrink_heap(self, h: int, diff: int) -> int:
        """shrink_heap: MADV_DONTNEED the tail (or MAP_FIXED PROT_NONE over it in mode 2)."""
        r, w = self._r, self._w
        new_size = r(h + HI_SIZE) - diff
        if new_size < HEAP_INFO_SIZE:
            return -1
        if self.check_may_shrink_heap():
            try:
                self.host.mmap_anon(diff, "", addr=h + new_size, fixed=True, noreserve=True)
            except SyscallError:
                return -2
            w(h + HI_MPROTECT_SIZE, new_size)
        else:
            self.host.madvise(h + new_size, diff, "dontneed")
        w(h + HI_SIZE, new_size)
        return 0

    def heap_trim(self, heap: int, pad: int) -> int:
        """heap_trim: unmap whole heaps whose only chunk is top (the top moves back into the
        previous heap, past its fencepost), then shrink the last heap as systrim would."""
        r, w = self._r, self._w
        ar_ptr = r(heap + HI_AR_PTR)
        top_chunk = r(ar_ptr + AV_TOP)
        while top_chunk == heap + HEAP_INFO_SIZE:
            step = self._heap_drop_candidate(heap, pad)
            if step is None:
                break
            p, new_size, prev_heap = step
            w(ar_ptr + AV_SYSTEM_MEM, r(ar_ptr + AV_SYSTEM_MEM) - r(heap + HI_SIZE))
            ahap = self.host.libc_data + OFF_ALIGNED_HEAP_AREA
            if heap + HEAP_MAX_SIZE == r(ahap):
                w(ahap, 0)
            self.host.munmap(heap, HEAP_MAX_SIZE)
            heap = prev_heap
            if not self.chunksize_nomask(p) & PREV_INUSE:
                p = p - self.prev_size(p)
                self.unlink_chunk(p)
            w(ar_ptr + AV_TOP, p)
            top_chunk = p
            self.set_head(top_chunk, new_size | PREV_INUSE)
        return self._heap_shrink_top(heap, ar_ptr, top_chunk, pad)

    def _heap_drop_candidate(self, heap: int, pad: int) -> tuple[int, int, int] | None:
        """Can this heap go: (the chunk before the previous heap's fencepost, the new top size,
        the previous heap), or None when the previous heap could not take the pad."""
        prev_heap = self._r(heap + HI_PREV)
        prev_size = self._r(prev_heap + HI_SIZE) - (MINSIZE - 2 * SIZE_SZ)
        p = prev_heap + prev_size
        misalign = p & MALLOC_ALIGN_MASK
        p = prev_heap + prev_size - misalign
        if self.chunksize_nomask(p) != PREV_INUSE:
            self.malloc_printerr("Fatal glibc error: malloc assertion failure in heap_trim: "
                                 "chunksize_nomask (p) == (0 | PREV_INUSE)")
        p = p - self.prev_size(p)                    # prev_chunk: the fencepost's 0x10 part
        new_size = self.chunksize(p) + (MINSIZE - 2 * SIZE_SZ) + misalign
        if not self.chunksize_nomask(p) & PREV_INUSE:
            new_size += self.prev_size(p)
        if new_size + (HEAP_MAX_SIZE - self._r(prev_heap + HI_SIZE)) < pad + MINSIZE + \
                self._r(heap + HI_PAGESIZE):
            return None
        return p, new_size, prev_heap

    def _heap_shrink_top(self, heap: int, ar_ptr: int, top_chunk: int, pad: int) -> int:
        """heap_trim's second half: give back whole pages of the top beyond pad (trim_threshold)."""
        r = self._r
        top_size = self.chunksize(top_chunk)
        if top_size < r(self.MP + MP_TRIM_THRESHOLD):
            return 0
        top_area = top_size - MINSIZE - 1
        if top_area < 0 or top_area <= pad:
            return 0
        pagesize = r(heap + HI_PAGESIZE)
        extra = (top_area - pad) & ~(pagesize - 1)
        if extra == 0:
            return 0
        if self.shrink_heap(heap, extra) != 0:
            return 0
        self._w(ar_ptr + AV_SYSTEM_MEM, r(ar_ptr + AV_SYSTEM_MEM) - extra)
        self.set_head(top_chunk, (top_size - extra) | PREV_INUSE)
        return 1

    def sysmalloc_heap(self, nb: int, tried_mmap: bool) -> int:
        """sysmalloc for a non-main arena: grow the top's heap, else chain a new heap (the old
        top fenced off and freed), else (if not tried yet) mmap the chunk. Returns a mapped
        chunk's user pointer, else -1: split the top (grown, or too small if everything failed)."""
        r, av = self._r, self.A
        old_top = r(av + AV_TOP)
        old_size = self.chunksize(old_top)
        old_heap = self.heap_for_ptr(old_top)
        old_heap_size = r(old_heap + HI_SIZE)
        if MINSIZE + nb - old_size > 0 and self.grow_heap(old_heap, MINSIZE + nb - old_size) == 0:
            self._w(av + AV_SYSTEM_MEM, r(av + AV_SYSTEM_MEM) + r(old_heap + HI_SIZE) - old_heap_size)
            self.set_head(old_top, (old_heap + r(old_heap + HI_SIZE) - old_top) | PREV_INUSE)
            return -1
        heap = self.new_heap(nb + MINSIZE + HEAP_INFO_SIZE, r(self.MP + MP_TOP_PAD))
        if heap:
            self._sysmalloc_new_heap(heap, old_heap, old_top, old_size)
            return -1
        if not tried_mmap:
            mm = self.sysmalloc_mmap(nb)
            if mm:
                return mm
        return -1

    def _sysmalloc_new_heap(self, heap: int, old_heap: int, old_top: int, old_size: int) -> None:
        """Chain a new heap after old_heap; the top moves there, the old top is fenced and freed."""
        w, av = self._w, self.A
        w(heap + HI_AR_PTR, av)
        w(heap + HI_PREV, old_heap)
        w(av + AV_SYSTEM_MEM, self._r(av + AV_SYSTEM_MEM) + self._r(heap + HI_SIZE))
        top = heap + HEAP_INFO_SIZE
        w(av + AV_TOP, top)
        self.set_head(top, (self._r(heap + HI_SIZE) - HEAP_INFO_SIZE) | PREV_INUSE)
        old_size = (old_size - MINSIZE) & ~MALLOC_ALIGN_MASK
        self.set_head(old_top + old_size + CHUNK_HDR_SZ, 0 | PREV_INUSE)
        if old_size >= MINSIZE:
            self.set_head(old_top + old_size, CHUNK_HDR_SZ | PREV_INUSE)
            self.set_foot(old_top + old_size, CHUNK_HDR_SZ)
            self.set_head(old_top, old_size | PREV_INUSE | NON_MAIN_ARENA)
            self._int_free(old_top, True)
        else:
            self.set_head(old_top, (old_size + CHUNK_HDR_SZ) | PREV_INUSE)
            self.set_foot(old_top, old_size + CHUNK_HDR_SZ)
