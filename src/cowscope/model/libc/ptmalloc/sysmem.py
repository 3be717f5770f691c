"""Getting memory from and giving it back to the kernel: sysmalloc, systrim, mtrim."""

from __future__ import annotations

from ....errors import SyscallError
from .layout import (
    AV_FLAGS,
    AV_MAX_SYSTEM_MEM,
    AV_SYSTEM_MEM,
    AV_TOP,
    CHUNK_HDR_SZ,
    ENOMEM,
    IS_MMAPPED,
    MALLOC_ALIGN_MASK,
    MALLOC_STRUCT_SIZE,
    MASK64,
    MINSIZE,
    MMAP_AS_MORECORE_SIZE,
    MP_MAX_MMAPPED_MEM,
    MP_MAX_N_MMAPS,
    MP_MMAP_THRESHOLD,
    MP_MMAPPED_MEM,
    MP_N_MMAPS,
    MP_N_MMAPS_MAX,
    MP_SBRK_BASE,
    MP_TOP_PAD,
    NBINS,
    NONCONTIGUOUS_BIT,
    PAGESIZE,
    PREV_INUSE,
    SIZE_SZ,
    align_up,
    bin_index,
)


def _signed(v: int) -> int:
    """A 64-bit value read as a signed long."""
    return v - (1 << 64) if v >= 1 << 63 else v


class SysMemMixin:
    """sysmalloc (mmap / brk growth), systrim and malloc_trim's mtrim."""

    def sysmalloc_mmap(self, nb: int) -> int:
        """sysmalloc_mmap: a chunk of its own mapping; 0 (MAP_FAILED) on failure."""
        size = align_up(nb + SIZE_SZ, PAGESIZE)
        if size <= nb:
            return 0
        try:
            mm = self.host.mmap(size, "rw")
        except SyscallError:
            return 0
        self.set_prev_size(mm, 0)
        self.set_head(mm, size | IS_MMAPPED)
        mp = self.MP
        new = self._r32(mp + MP_N_MMAPS) + 1
        self._w32(mp + MP_N_MMAPS, new)
        if new > self._r32(mp + MP_MAX_N_MMAPS):
            self._w32(mp + MP_MAX_N_MMAPS, new)
        total = self._r(mp + MP_MMAPPED_MEM) + size
        self._w(mp + MP_MMAPPED_MEM, total)
        if total > self._r(mp + MP_MAX_MMAPPED_MEM):
            self._w(mp + MP_MAX_MMAPPED_MEM, total)
        return mm + 16

    def sysmalloc(self, nb: int) -> int:
        """sysmalloc: mmap a big chunk, or grow the heap with sbrk (top_pad, page rounding)."""
        r, A, mp = self._r, self.A, self.MP
        tried_mmap = False
        if nb >= r(mp + MP_MMAP_THRESHOLD) and self._r32(mp + MP_N_MMAPS) < self._ri32(mp + MP_N_MMAPS_MAX):
            mm = self.sysmalloc_mmap(nb)
            if mm:
                return mm
            tried_mmap = True
        old_top = r(A + AV_TOP)
        old_size = self.chunksize(old_top)
        old_end = old_top + old_size
        contiguous = not self._r32(A + AV_FLAGS) & NONCONTIGUOUS_BIT
        if not ((old_top == self.UNSORTED and old_size == 0)
                or (old_size >= MINSIZE and self.chunksize_nomask(old_top) & PREV_INUSE
                    and old_end & (PAGESIZE - 1) == 0)):
            self.malloc_printerr("Fatal glibc error: malloc assertion failure in sysmalloc: "
                                 "(old_top == initial_top (av) && old_size == 0) || ((unsigned long) "
                                 "(old_size) >= MINSIZE && prev_inuse (old_top) && ((unsigned long) "
                                 "old_end & (pagesize - 1)) == 0)")
        if A != self.MAIN:
            mm = self.sysmalloc_heap(nb, tried_mmap)
            if mm > 0:
                return mm
            return self._sysmalloc_finish(nb)
        # `long int size` in glibc: the size_t sum wraps, then it is signed
        size = _signed((nb + r(mp + MP_TOP_PAD) + MINSIZE) & MASK64)
        if contiguous:
            size -= old_size
        size = _signed(align_up(size, PAGESIZE) & MASK64)
        brk = self.libc_sbrk(size) if size > 0 else None
        snd_brk = None
        if brk is None:
            brk, size, snd_brk, contiguous = self.sysmalloc_mmap_fallback(nb, size, old_size, contiguous)
        if brk is not None:
            self._sysmalloc_grow_top(brk, size, snd_brk, contiguous, old_top, old_size)
        return self._sysmalloc_finish(nb)

    def _sysmalloc_finish(self, nb: int) -> int:
        """max_system_mem follows system_mem; then split nb off the (grown) top, or ENOMEM."""
        r, A = self._r, self.A
        sm = r(A + AV_SYSTEM_MEM)
        if sm > r(A + AV_MAX_SYSTEM_MEM):
            self._w(A + AV_MAX_SYSTEM_MEM, sm)
        return self._sysmalloc_take(nb)

    def sysmalloc_mmap_fallback(self, nb: int, size: int, old_size: int,
                                contiguous: bool) -> tuple[int | None, int, int | None, bool]:
        """sbrk failed: mmap at least 1 MiB as a non-contiguous heap segment.
        Returns (brk, size, snd_brk, contiguous), brk None if the mmap failed too."""
        # sizes compared as unsigned long
        msize = _signed(align_up(size + old_size, PAGESIZE) & MASK64) if contiguous else size
        if msize & MASK64 < MMAP_AS_MORECORE_SIZE:
            msize = MMAP_AS_MORECORE_SIZE
        if not (msize & MASK64 > nb and msize > 0):
            return None, size, None, contiguous
        try:
            brk = self.host.mmap(msize, "rw")
        except SyscallError:
            return None, size, None, contiguous
        self._w32(self.A + AV_FLAGS, self._r32(self.A + AV_FLAGS) | NONCONTIGUOUS_BIT)
        return brk, msize, brk + msize, False

    def _sysmalloc_grow_top(self, brk: int, size: int, snd_brk: int | None, contiguous: bool,
                            old_top: int, old_size: int) -> None:
        """New memory at brk: extend top in place, or make it the new top (alignment correction,
        fenceposts at the end of the old top, which is freed)."""
        r, w, A, mp = self._r, self._w, self.A, self.MP
        old_end = old_top + old_size
        if r(mp + MP_SBRK_BASE) == 0:
            w(mp + MP_SBRK_BASE, brk)
        w(A + AV_SYSTEM_MEM, r(A + AV_SYSTEM_MEM) + size)
        if brk == old_end and snd_brk is None:
            self.set_head(old_top, (size + old_size) | PREV_INUSE)
            return
        if contiguous and old_size and brk < old_end:
            self.malloc_printerr("break adjusted to free malloc space")
        correction = 0
        aligned_brk = brk
        if contiguous:
            if old_size:
                w(A + AV_SYSTEM_MEM, r(A + AV_SYSTEM_MEM) + brk - old_end)
            front_misalign = (brk + 16) & MALLOC_ALIGN_MASK
            if front_misalign > 0:
                correction = 16 - front_misalign
                aligned_brk += correction
            correction += old_size
            end_misalign = brk + size + correction
            correction += align_up(end_misalign, PAGESIZE) - end_misalign
            snd_brk = self.libc_sbrk(correction)
            if snd_brk is None:
                correction = 0
                snd_brk = self.libc_sbrk(0)
        elif snd_brk is None:
            snd_brk = self.libc_sbrk(0)
        w(A + AV_TOP, aligned_brk)
        self.set_head(aligned_brk, (snd_brk - aligned_brk + correction) | PREV_INUSE)
        w(A + AV_SYSTEM_MEM, r(A + AV_SYSTEM_MEM) + correction)
        if old_size != 0:
            self._sysmalloc_fence_old_top(old_top, old_size)

    def _sysmalloc_fence_old_top(self, old_top: int, old_size: int) -> None:
        """Shrink the old top, put two fenceposts after it, and free it if anything is left."""
        old_size = (old_size - 2 * CHUNK_HDR_SZ) & ~MALLOC_ALIGN_MASK
        self.set_head(old_top, old_size | PREV_INUSE)
        self.set_head(old_top + old_size, CHUNK_HDR_SZ | PREV_INUSE)
        self.set_head(old_top + old_size + CHUNK_HDR_SZ, CHUNK_HDR_SZ | PREV_INUSE)
        if old_size >= MINSIZE:
            self._int_free(old_top, True)

    def _sysmalloc_take(self, nb: int) -> int:
        """sysmalloc's end: split nb off the (grown) top, or ENOMEM."""
        p = self._r(self.A + AV_TOP)
        size = self.chunksize(p)
        if size >= nb + MINSIZE:
            rem = p + nb
            self._w(self.A + AV_TOP, rem)
            self.set_head(p, nb | PREV_INUSE | self.av_bit)
            self.set_head(rem, (size - nb) | PREV_INUSE)
            return p + 16
        self.set_errno(ENOMEM)
        return 0

    def systrim(self, pad: int) -> int:
        """systrim: give back whole pages at the top of the heap above pad (sbrk down).

        As in glibc, a top smaller than MINSIZE + 1 makes `top_area` negative (-1 for a 0x20
        top): it compares as a huge unsigned value, `extra` comes out as -4096, and the
        "trim" sbrk()s one page *more* and grows the top by it (seen on glibc 2.36).
        """
        r, w = self._r, self._w
        top = r(self.A + AV_TOP)
        top_size = self.chunksize(top)
        top_area = (top_size - MINSIZE - 1) & MASK64       # long, compared as size_t
        if top_area <= pad:
            return 0
        extra = ((top_area - pad) & MASK64) & ~(PAGESIZE - 1)
        if extra >= 1 << 63:
            extra -= 1 << 64                                # back to a signed long
        if extra == 0:
            return 0
        current_brk = self.libc_sbrk(0)
        if current_brk == top + top_size:
            self.libc_sbrk(-extra)
            new_brk = self.libc_sbrk(0)
            if new_brk is not None:
                released = current_brk - new_brk
                if released != 0:
                    w(self.A + AV_SYSTEM_MEM, r(self.A + AV_SYSTEM_MEM) - released)
                    self.set_head(top, (top_size - released) | PREV_INUSE)
                    return 1
        return 0

    def mtrim(self, pad: int) -> int:
        """mtrim: consolidate, MADV_DONTNEED the whole free pages of big free chunks, systrim."""
        chunksize, bk = self.chunksize, self.bk
        self.malloc_consolidate()
        psindex = bin_index(PAGESIZE)
        result = 0
        madvise = getattr(self.host, "madvise", None)
        for i in range(1, NBINS):
            if i == 1 or i >= psindex:
                b = self.bin_at(i)
                p = bk(b)
                while p != b:
                    size = chunksize(p)
                    if size > PAGESIZE - 1 + MALLOC_STRUCT_SIZE:
                        paligned = (p + MALLOC_STRUCT_SIZE + PAGESIZE - 1) & ~(PAGESIZE - 1)
                        size -= paligned - p
                        if size > PAGESIZE - 1:
                            if madvise is not None:
                                madvise(paligned, size & ~(PAGESIZE - 1), "dontneed")
                            result = 1
                    p = bk(p)
        return result | (self.systrim(pad) if self.A == self.MAIN else 0)
