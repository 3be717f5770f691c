"""_int_free and malloc_consolidate of glibc 2.36: the tcache, fastbins, and merging free chunks.

_int_free is cut at the seams later glibc names (_int_free_chunk after the tcache,
_int_free_merge_chunk, _int_free_maybe_consolidate); the reads, writes and checks are 2.36's, in
its order.
"""

from __future__ import annotations

from .layout import (
    AV_FASTBINS,
    AV_FLAGS,
    AV_HAVE_FASTCHUNKS,
    AV_MUTEX,
    AV_SYSTEM_MEM,
    AV_TOP,
    CHUNK_HDR_SZ,
    FASTBIN_CONSOLIDATION_THRESHOLD,
    IS_MMAPPED,
    MALLOC_ALIGN_MASK,
    MASK64,
    MIN_LARGE_SIZE,
    MINSIZE,
    MP_TOP_PAD,
    MP_TRIM_THRESHOLD,
    NFASTBINS,
    NONCONTIGUOUS_BIT,
    PREV_INUSE,
    SIZE_BITS,
    TC_COUNTS,
    TC_ENTRIES,
    TE_KEY,
    csize2tidx,
    fastbin_index,
    protect_ptr,
)


class IntFreeMixin:
    """_int_free, its steps, and malloc_consolidate (state in simulated memory, see core.py)."""

    def _int_free(self, p: int, have_lock: bool = False) -> None:
        """_int_free: checks, then the tcache, a fastbin, munmap, or merging into unsorted/top."""
        r = self._r
        size = self.chunksize(p)
        if p > ((-size) & MASK64) or p & MALLOC_ALIGN_MASK:
            self.malloc_printerr("free(): invalid pointer")
        if size < MINSIZE or size & MALLOC_ALIGN_MASK:
            self.malloc_printerr("free(): invalid size")
        tc_idx = csize2tidx(size)
        tc = r(self.a_tcache)
        if tc and tc_idx < r(self.a_tcache_bins):
            e = p + CHUNK_HDR_SZ
            if r(e + TE_KEY) == r(self.a_key):
                self._tcache_double_free_check(e, tc, tc_idx)
            if self._r16(tc + TC_COUNTS + 2 * tc_idx) < r(self.a_tcache_count):
                self.tcache_put(p, tc_idx)
                return
        self._int_free_chunk(p, size, have_lock)

    def _int_free_chunk(self, p: int, size: int, have_lock: bool) -> None:
        """_int_free past the tcache (checked chunk p of size bytes): a fastbin, munmap, or merging."""
        if size <= self._r(self.a_max_fast):
            self._int_free_fast(p, size, have_lock)
        elif self.chunksize_nomask(p) & IS_MMAPPED:
            self.munmap_chunk(p)
        elif have_lock or self._r8(self.a_single):
            self._int_free_merge_chunk(p, size)
        else:                                       # a threaded process locks the arena
            mutex = self.A + AV_MUTEX
            self._w32(mutex, 1)
            self._int_free_merge_chunk(p, size)
            self._w32(mutex, 0)

    def _tcache_double_free_check(self, e: int, tc: int, tc_idx: int) -> None:
        """e carries the tcache key, so it may be in the tcache already: walk its bin."""
        r = self._r
        tcache_count = r(self.a_tcache_count)
        tmp = r(tc + TC_ENTRIES + 8 * tc_idx)
        cnt = 0
        while tmp:
            if cnt >= tcache_count:
                self.malloc_printerr("free(): too many chunks detected in tcache")
            if tmp & MALLOC_ALIGN_MASK:
                self.malloc_printerr("free(): unaligned chunk detected in tcache 2")
            if tmp == e:
                self.malloc_printerr("free(): double free detected in tcache 2")
            tmp = protect_ptr(tmp, r(tmp))
            cnt += 1

    def _int_free_fast(self, p: int, size: int, have_lock: bool) -> None:
        """Push p on its fastbin (safe-linked), after the next-size and fasttop checks."""
        r, A = self._r, self.A
        nhead = self.chunksize_nomask(p + size)
        if nhead <= CHUNK_HDR_SZ or (nhead & ~SIZE_BITS) >= r(A + AV_SYSTEM_MEM):
            self.malloc_printerr("free(): invalid next size (fast)")
        self.free_perturb(p + 16, size - CHUNK_HDR_SZ)
        self._w32(A + AV_HAVE_FASTCHUNKS, 1)
        idx = fastbin_index(size)
        fb = A + AV_FASTBINS + 8 * idx
        old = r(fb)
        if old == p:
            self.malloc_printerr("double free or corruption (fasttop)")
        self.set_fd(p, protect_ptr(p + 16, old))
        self._w(fb, p)
        if have_lock and old and fastbin_index(self.chunksize(old)) != idx:
            self.malloc_printerr("invalid fastbin entry (free)")

    def _int_free_merge_chunk(self, p: int, size: int) -> None:
        """Check p against top and its neighbours, merge it with free ones, put the result at the
        head of unsorted or into top; a large result may consolidate and trim."""
        r, A, printerr = self._r, self.A, self.malloc_printerr
        chunksize, chunksize_nomask, set_head, prev_size, set_prev_size = self.sizes
        nextchunk = p + size
        top = r(A + AV_TOP)
        if p == top:
            printerr("double free or corruption (top)")
        contiguous = not self._r32(A + AV_FLAGS) & NONCONTIGUOUS_BIT
        if contiguous and nextchunk >= top + chunksize(top):
            printerr("double free or corruption (out)")
        nhead = chunksize_nomask(nextchunk)
        if not nhead & PREV_INUSE:
            printerr("double free or corruption (!prev)")
        nextsize = nhead & ~SIZE_BITS
        if nhead <= CHUNK_HDR_SZ or nextsize >= r(A + AV_SYSTEM_MEM):
            printerr("free(): invalid next size (normal)")
        self.free_perturb(p + 16, size - CHUNK_HDR_SZ)
        if not chunksize_nomask(p) & PREV_INUSE:
            prevsize = prev_size(p)
            size += prevsize
            p = (p - prevsize) & MASK64
            if chunksize(p) != prevsize:
                printerr("corrupted size vs. prev_size while consolidating")
            self.unlink_chunk(p)
        if nextchunk == top:
            size += nextsize
            set_head(p, size | PREV_INUSE)
            self._w(A + AV_TOP, p)
        else:
            if not chunksize_nomask(nextchunk + nextsize) & PREV_INUSE:  # inuse_bit_at_offset
                self.unlink_chunk(nextchunk)
                size += nextsize
            else:
                set_head(nextchunk, nhead & ~PREV_INUSE)   # clear_inuse_bit_at_offset(nextchunk, 0)
            fd, bk, set_fd, set_bk = self.links           # place the chunk at the head of unsorted
            bck = self.UNSORTED
            fwd = fd(bck)
            if bk(fwd) != bck:
                printerr("free(): corrupted unsorted chunks")
            set_fd(p, fwd)
            set_bk(p, bck)
            if size >= MIN_LARGE_SIZE:
                self.set_fd_nextsize(p, 0)
                self.set_bk_nextsize(p, 0)
            set_fd(bck, p)
            set_bk(fwd, p)
            set_head(p, size | PREV_INUSE)
            set_prev_size(p + size, size)  # set_foot(p, size)
        if size >= FASTBIN_CONSOLIDATION_THRESHOLD:
            self._int_free_maybe_consolidate()

    def _int_free_maybe_consolidate(self) -> None:
        """After a free that left a chunk of 64 KiB or more: empty the fastbins, maybe trim the top."""
        r = self._r
        if self._r32(self.A + AV_HAVE_FASTCHUNKS):
            self.malloc_consolidate()
        top = r(self.A + AV_TOP)
        if self.A != self.MAIN:       # always heap_trim: the top's heap might go away
            self.heap_trim(self.heap_for_ptr(top), r(self.MP + MP_TOP_PAD))
        elif self.chunksize(top) >= r(self.MP + MP_TRIM_THRESHOLD):
            self.systrim(r(self.MP + MP_TOP_PAD))

    def free_perturb(self, mem: int, n: int) -> None:
        """free_perturb: fill a freed chunk's user bytes with perturb_byte (M_PERTURB) if set."""
        pb = self._r32(self.a_perturb)
        if pb:
            self.host.fill(mem, n, pb & 0xFF)

    # -- malloc_consolidate ---------------------------------------------------------------------------
    def malloc_consolidate(self) -> None:
        """malloc_consolidate: empty every fastbin, merging chunks with free neighbours."""
        r, w = self._r, self._w
        A = self.A
        self._w32(A + AV_HAVE_FASTCHUNKS, 0)
        for i in range(NFASTBINS):
            fb = A + AV_FASTBINS + 8 * i
            p = r(fb)
            w(fb, 0)
            while p:
                p = self._consolidate_chunk(p, i)

    def _consolidate_chunk(self, p: int, i: int) -> int:
        """Merge one chunk of fastbin i with its free neighbours into unsorted or top; the next one."""
        fd, _bk, set_fd, set_bk = self.links
        chunksize, chunksize_nomask, set_head, prev_size, set_prev_size = self.sizes
        if p & MALLOC_ALIGN_MASK:
            self.malloc_printerr("malloc_consolidate(): unaligned fastbin chunk detected")
        if fastbin_index(chunksize(p)) != i:
            self.malloc_printerr("malloc_consolidate(): invalid chunk size")
        nextp = protect_ptr(p + 16, fd(p))
        head = chunksize_nomask(p)
        size = head & ~SIZE_BITS
        nextchunk = p + size
        nextsize = chunksize(nextchunk)
        if not head & PREV_INUSE:
            prevsize = prev_size(p)
            size += prevsize
            p = (p - prevsize) & MASK64
            if chunksize(p) != prevsize:
                self.malloc_printerr("corrupted size vs. prev_size in fastbins")
            self.unlink_chunk(p)
        if nextchunk == self._r(self.A + AV_TOP):
            size += nextsize
            set_head(p, size | PREV_INUSE)
            self._w(self.A + AV_TOP, p)
            return nextp
        if not chunksize_nomask(nextchunk + nextsize) & PREV_INUSE:  # inuse_bit_at_offset
            size += nextsize
            self.unlink_chunk(nextchunk)
        else:
            set_head(nextchunk, chunksize_nomask(nextchunk) & ~PREV_INUSE)
        unsorted = self.UNSORTED
        first_unsorted = fd(unsorted)
        set_fd(unsorted, p)
        set_bk(first_unsorted, p)
        if size >= MIN_LARGE_SIZE:
            self.set_fd_nextsize(p, 0)
            self.set_bk_nextsize(p, 0)
        set_head(p, size | PREV_INUSE)
        set_bk(p, unsorted)
        set_fd(p, first_unsorted)
        set_prev_size(p + size, size)  # set_foot(p, size)
        return nextp
