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
    SIZE_BITS,
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
        w = self._w
        w(mm, 0)
        w(mm + 8, size | IS_MMAPPED)
        mp = self.MP
        new = self._r32(mp + MP_N_MMAPS) + 1
        self._w32(mp + MP_N_MMAPS, new)
        if new > self._r32(mp + MP_MAX_N_MMAPS):
            self._w32(mp + MP_MAX_N_MMAPS, new)
        total = self._r(mp + MP_MMAPPED_MEM) + size
        w(mp + MP_MMAPPED_MEM, total)
        if total > self._r(mp + MP_MAX_MMAPPED_MEM):
            w(mp + MP_MAX_MMAPPED_MEM, total)
        return mm + 16

    def sysmalloc(self, nb: int) -> int:
        """sysmalloc: mmap a big chunk, or grow the heap with sbrk (top_pad, page rounding)."""
        r, w = self._r, self._w
        A, mp = self.A, self.MP
        if nb >= r(mp + MP_MMAP_THRESHOLD) and self._r32(mp + MP_N_MMAPS) < self._ri32(mp + MP_N_MMAPS_MAX):
            mm = self.sysmalloc_mmap(nb)
            if mm:
                return mm
        old_top = r(A + AV_TOP)
        old_size = r(old_top + 8) & ~SIZE_BITS
        old_end = old_top + old_size
        contiguous = not self._r32(A + AV_FLAGS) & NONCONTIGUOUS_BIT
        if not ((old_top == self.UNSORTED and old_size == 0)
                or (old_size >= MINSIZE and r(old_top + 8) & PREV_INUSE and old_end & (PAGESIZE - 1) == 0)):
            self.malloc_printerr("Fatal glibc error: malloc assertion failure in sysmalloc: "
                                 "(old_top == initial_top (av) && old_size == 0) || ((unsigned long) "
                                 "(old_size) >= MINSIZE && prev_inuse (old_top) && ((unsigned long) "
                                 "old_end & (pagesize - 1)) == 0)")
        # `long int size` in glibc: the size_t sum wraps, then it is signed
        size = _signed((nb + r(mp + MP_TOP_PAD) + MINSIZE) & MASK64)
        if contiguous:
            size -= old_size
        size = _signed(align_up(size, PAGESIZE) & MASK64)
        brk = None
        snd_brk = None
        if size > 0:
            brk = self.libc_sbrk(size)
        if brk is None:
            # sysmalloc_mmap_fallback (sizes compared as unsigned long)
            msize = _signed(align_up(size + old_size, PAGESIZE) & MASK64) if contiguous else size
            if msize & MASK64 < MMAP_AS_MORECORE_SIZE:
                msize = MMAP_AS_MORECORE_SIZE
            if msize & MASK64 > nb and msize > 0:
                try:
                    brk = self.host.mmap(msize, "rw")
                except SyscallError:
                    brk = None
                if brk is not None:
                    self._w32(A + AV_FLAGS, self._r32(A + AV_FLAGS) | NONCONTIGUOUS_BIT)
                    contiguous = False
                    size = msize
                    snd_brk = brk + size
        if brk is not None:
            if r(mp + MP_SBRK_BASE) == 0:
                w(mp + MP_SBRK_BASE, brk)
            w(A + AV_SYSTEM_MEM, r(A + AV_SYSTEM_MEM) + size)
            if brk == old_end and snd_brk is None:
                w(old_top + 8, (size + old_size) | PREV_INUSE)
            elif contiguous and old_size and brk < old_end:
                self.malloc_printerr("break adjusted to free malloc space")
            else:
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
                else:
                    if snd_brk is None:
                        snd_brk = self.libc_sbrk(0)
                w(A + AV_TOP, aligned_brk)
                w(aligned_brk + 8, (snd_brk - aligned_brk + correction) | PREV_INUSE)
                w(A + AV_SYSTEM_MEM, r(A + AV_SYSTEM_MEM) + correction)
                if old_size != 0:
                    old_size = (old_size - 2 * CHUNK_HDR_SZ) & ~MALLOC_ALIGN_MASK
                    w(old_top + 8, old_size | PREV_INUSE)
                    w(old_top + old_size + 8, CHUNK_HDR_SZ | PREV_INUSE)
                    w(old_top + old_size + CHUNK_HDR_SZ + 8, CHUNK_HDR_SZ | PREV_INUSE)
                    if old_size >= MINSIZE:
                        self._int_free(old_top, True)
        sm = r(A + AV_SYSTEM_MEM)
        if sm > r(A + AV_MAX_SYSTEM_MEM):
            w(A + AV_MAX_SYSTEM_MEM, sm)
        p = r(A + AV_TOP)
        size = r(p + 8) & ~SIZE_BITS
        if size >= nb + MINSIZE:
            rem = p + nb
            w(A + AV_TOP, rem)
            w(p + 8, nb | PREV_INUSE)
            w(rem + 8, (size - nb) | PREV_INUSE)
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
        top_size = r(top + 8) & ~SIZE_BITS
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
                    w(top + 8, (top_size - released) | PREV_INUSE)
                    return 1
        return 0

    def mtrim(self, pad: int) -> int:
        """mtrim: consolidate, MADV_DONTNEED the whole free pages of big free chunks, systrim."""
        r = self._r
        self.malloc_consolidate()
        psindex = bin_index(PAGESIZE)
        result = 0
        madvise = getattr(self.host, "madvise", None)
        for i in range(1, NBINS):
            if i == 1 or i >= psindex:
                b = self.bin_at(i)
                p = r(b + 24)
                while p != b:
                    size = r(p + 8) & ~SIZE_BITS
                    if size > PAGESIZE - 1 + MALLOC_STRUCT_SIZE:
                        paligned = (p + MALLOC_STRUCT_SIZE + PAGESIZE - 1) & ~(PAGESIZE - 1)
                        size -= paligned - p
                        if size > PAGESIZE - 1:
                            if madvise is not None:
                                madvise(paligned, size & ~(PAGESIZE - 1), "dontneed")
                            result = 1
                    p = r(p + 24)
        return result | self.systrim(pad)
