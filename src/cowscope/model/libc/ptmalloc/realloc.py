"""Resizing and aligned allocation in glibc 2.36 malloc: realloc, mremap_chunk, memalign and kin."""

from __future__ import annotations

from ....errors import SyscallError
from .layout import (
    AV_MUTEX,
    AV_SYSTEM_MEM,
    AV_TOP,
    CHUNK_HDR_SZ,
    EINVAL,
    ENOMEM,
    IS_MMAPPED,
    MALLOC_ALIGN_MASK,
    MALLOC_ALIGNMENT,
    MASK64,
    MINSIZE,
    MP_MAX_MMAPPED_MEM,
    MP_MMAPPED_MEM,
    PAGESIZE,
    PREV_INUSE,
    SIZE_BITS,
    SIZE_MAX,
    SIZE_SZ,
    align_up,
    checked_request2size,
    powerof2,
)


class ReallocMixin:
    """__libc_realloc / _int_realloc / mremap_chunk and __libc_memalign / _int_memalign."""

    # -- realloc ------------------------------------------------------------------------------------
    def realloc(self, ptr: int, size: int) -> int:
        """__libc_realloc: free on 0, malloc on NULL, mremap mmapped chunks, else _int_realloc."""
        if size == 0 and ptr != 0:
            self.free(ptr)
            return 0
        if ptr == 0:
            return self.malloc(size)
        oldp = (ptr - 16) & MASK64
        head = self.chunksize_nomask(oldp)
        oldsize = head & ~SIZE_BITS
        if not head & IS_MMAPPED:
            self._maybe_init_tcache()
        if oldp > ((-oldsize) & MASK64) or oldp & MALLOC_ALIGN_MASK:
            self.malloc_printerr("realloc(): invalid pointer")
        nb = checked_request2size(size)
        if nb == 0:
            self.set_errno(ENOMEM)
            return 0
        if not head & IS_MMAPPED:
            return self._realloc_in_arena(oldp, oldsize, nb, size)
        newp = self.mremap_chunk(oldp, nb)
        if newp:
            return newp + 16
        if oldsize - SIZE_SZ >= nb:
            return ptr
        newmem = self.malloc(size)
        if newmem == 0:
            return 0
        self.host.write(newmem, self.host.read(ptr, oldsize - CHUNK_HDR_SZ))
        self.munmap_chunk(oldp)
        return newmem

    def _realloc_in_arena(self, oldp: int, oldsize: int, nb: int, size: int) -> int:
        """_int_realloc in the chunk's own arena (whichever thread calls), under its lock in a
        threaded process; if that fails, malloc in the caller's arena, copy, free the old one."""
        av = self.arena_for_chunk(oldp)
        old = self._use_arena(av)
        try:
            if self._r8(self.a_single):
                return self._int_realloc(oldp, oldsize, nb)
            self.lock(av + AV_MUTEX)
            newmem = self._int_realloc(oldp, oldsize, nb)
            self.unlock(av + AV_MUTEX)
            if newmem:
                return newmem
        finally:
            self._use_arena(old)
        newmem = self.malloc(size)
        if newmem:
            self.host.write(newmem, self.host.read(oldp + 16, self.chunksize(oldp) - CHUNK_HDR_SZ + SIZE_SZ))
            old = self._use_arena(av)
            try:
                self._int_free(oldp, False)
            finally:
                self._use_arena(old)
        return newmem

    def mremap_chunk(self, p: int, new_size: int) -> int:
        """mremap_chunk: resize an mmapped chunk's mapping (MREMAP_MAYMOVE); 0 on failure."""
        r, w = self._r, self._w
        offset = self.prev_size(p)
        size = self.chunksize(p)
        block = (p - offset) & MASK64
        mem = p + 16
        total = offset + size
        if (block | total) & (PAGESIZE - 1) or not powerof2(mem & (PAGESIZE - 1)):
            self.malloc_printerr("mremap_chunk(): invalid pointer")
        new_size = align_up(new_size + offset + SIZE_SZ, PAGESIZE)
        if total == new_size:
            return p
        try:
            cp = self.host.mremap(block, total, new_size, True)
        except SyscallError:
            return 0
        p = cp + offset
        self.set_head(p, (new_size - offset) | IS_MMAPPED)
        mp = self.MP
        new = (r(mp + MP_MMAPPED_MEM) + new_size - size - offset) & MASK64
        w(mp + MP_MMAPPED_MEM, new)
        if new > r(mp + MP_MAX_MMAPPED_MEM):
            w(mp + MP_MAX_MMAPPED_MEM, new)
        return p

    def _int_realloc(self, oldp: int, oldsize: int, nb: int) -> int:
        """_int_realloc: shrink in place, grow into top or a free next chunk, else move."""
        r, A = self._r, self.A
        system_mem = r(A + AV_SYSTEM_MEM)
        if self.chunksize_nomask(oldp) <= CHUNK_HDR_SZ or oldsize >= system_mem:
            self.malloc_printerr("realloc(): invalid old size")
        nxt = oldp + oldsize
        nhead = self.chunksize_nomask(nxt)
        nextsize = nhead & ~SIZE_BITS
        if nhead <= CHUNK_HDR_SZ or nextsize >= system_mem:
            self.malloc_printerr("realloc(): invalid next size")
        top = r(A + AV_TOP)
        if oldsize >= nb:
            newp, newsize = oldp, oldsize
        elif nxt == top and oldsize + nextsize >= nb + MINSIZE:
            newsize = oldsize + nextsize
            self.set_head_size(oldp, nb | self.av_bit)
            self._w(A + AV_TOP, oldp + nb)
            self.set_head(oldp + nb, (newsize - nb) | PREV_INUSE)
            return oldp + 16
        elif nxt != top and not self.inuse_bit_at_offset(nxt, nextsize) and oldsize + nextsize >= nb:
            newp, newsize = oldp, oldsize + nextsize
            self.unlink_chunk(nxt)
        else:
            newmem = self._int_malloc(nb - MALLOC_ALIGN_MASK)
            if newmem == 0:
                return 0
            newp = newmem - 16
            newsize = self.chunksize(newp)
            if newp != nxt:
                self.host.write(newmem, self.host.read(oldp + 16, oldsize - CHUNK_HDR_SZ + SIZE_SZ))
                self._int_free(oldp, True)
                return newmem
            newsize += oldsize
            newp = oldp
        self._realloc_trim(newp, newsize, nb)
        return newp + 16

    def _realloc_trim(self, newp: int, newsize: int, nb: int) -> None:
        """_int_realloc's end: keep newsize bytes, or split off and free what is past nb."""
        remainder_size = newsize - nb
        if remainder_size < MINSIZE:
            self.set_head_size(newp, newsize | self.av_bit)
            self.set_inuse_bit_at_offset(newp, newsize)
            return
        rem = newp + nb
        self.set_head_size(newp, nb | self.av_bit)
        self.set_head(rem, remainder_size | PREV_INUSE | self.av_bit)
        self.set_inuse_bit_at_offset(rem, remainder_size)
        self._int_free(rem, True)

    # -- memalign -----------------------------------------------------------------------------------
    def memalign(self, alignment: int, size: int) -> int:
        """__libc_memalign / _mid_memalign: tiny alignments go to malloc, else _int_memalign."""
        if not self._initialized():
            self.ptmalloc_init()
        if alignment <= MALLOC_ALIGNMENT:
            return self.malloc(size)
        if alignment < MINSIZE:
            alignment = MINSIZE
        if alignment > SIZE_MAX // 2 + 1:
            self.set_errno(EINVAL)
            return 0
        if not powerof2(alignment):
            a = MALLOC_ALIGNMENT * 2
            while a < alignment:
                a <<= 1
            alignment = a
        if self._r8(self.a_single):
            return self._int_memalign(alignment, size)
        return self._memalign_in_arena(alignment, size)

    def _memalign_in_arena(self, alignment: int, size: int) -> int:
        """_mid_memalign in a threaded process: the thread's arena (its hint is the padded
        request), retried once elsewhere, under the arena's lock."""
        ar_ptr = self.arena_get((size + alignment + MINSIZE) & MASK64)
        p = self._int_memalign_on(ar_ptr, alignment, size)
        if not p and ar_ptr:
            ar_ptr = self.arena_get_retry(ar_ptr, size)
            p = self._int_memalign_on(ar_ptr, alignment, size)
        if ar_ptr:
            self.unlock(ar_ptr + AV_MUTEX)
        return p

    def _int_memalign_on(self, av: int, alignment: int, size: int) -> int:
        """_int_memalign(av, ...) (av 0: its _int_malloc maps a chunk of its own)."""
        old = self._use_arena(av) if av else None
        try:
            return self._int_memalign(alignment, size, av)
        finally:
            if old is not None:
                self._use_arena(old)

    def posix_memalign(self, alignment: int, size: int) -> tuple[int, int]:
        """posix_memalign: (error, pointer); EINVAL unless a power-of-two multiple of 8."""
        if alignment % SIZE_SZ != 0 or not powerof2(alignment // SIZE_SZ) or alignment == 0:
            return EINVAL, 0
        if not self._initialized():
            self.ptmalloc_init()
        if alignment <= MALLOC_ALIGNMENT:
            mem = self.malloc(size)
        else:
            mem = self.memalign(alignment, size)
        return (0, mem) if mem else (ENOMEM, 0)

    def aligned_alloc(self, alignment: int, size: int) -> int:
        """aligned_alloc (2.36: same as memalign, any alignment accepted)."""
        return self.memalign(alignment, size)

    def _int_memalign(self, alignment: int, nbytes: int, av: int = -1) -> int:
        """_int_memalign: over-allocate, free the misaligned leader and the trailing space
        (av 0: no arena, the request is mmapped)."""
        nb = checked_request2size(nbytes)
        if nb == 0 or nb > SIZE_MAX - alignment - MINSIZE:
            self.set_errno(ENOMEM)
            return 0
        m = self._int_malloc(nb + alignment + MINSIZE) if av else self._int_malloc_on(0, nb + alignment + MINSIZE)
        if m == 0:
            return 0
        p = m - 16
        if m % alignment != 0:
            brk = ((m + alignment - 1) & -alignment) - 16
            if brk - p < MINSIZE:
                brk += alignment
            newp = brk
            leadsize = brk - p
            newsize = self.chunksize(p) - leadsize
            if self.chunksize_nomask(p) & IS_MMAPPED:
                self.set_prev_size(newp, self.prev_size(p) + leadsize)
                self.set_head(newp, newsize | IS_MMAPPED)
                return newp + 16
            self.set_head(newp, newsize | PREV_INUSE | self.av_bit)
            self.set_inuse_bit_at_offset(newp, newsize)
            self.set_head_size(p, leadsize | self.av_bit)
            self._int_free(p, True)
            p = newp
        if not self.chunksize_nomask(p) & IS_MMAPPED:
            size = self.chunksize(p)
            if size > nb + MINSIZE:
                rem = p + nb
                self.set_head(rem, (size - nb) | PREV_INUSE | self.av_bit)
                self.set_head_size(p, nb)
                self._int_free(rem, True)
        return p + 16
