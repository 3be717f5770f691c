"""_int_malloc of glibc 2.36: fastbins, small bins, the unsorted scan, large bins, binmap, top.

_int_malloc_search is glibc's function cut at its own seams, in its order: a fastbin or small-bin
hit (refilling the tcache from the same bin), then the loop of the unsorted scan (which files
chunks into their bins and may fill the tcache and return from it), the request's large bin, the
binmap, top, and sysmalloc. The reads, writes and checks are 2.36's, in its order.
"""

from __future__ import annotations

from .layout import (
    AV_BINMAP,
    AV_FASTBINS,
    AV_HAVE_FASTCHUNKS,
    AV_LAST_REMAINDER,
    AV_SYSTEM_MEM,
    AV_TOP,
    BINMAPSIZE,
    CHUNK_HDR_SZ,
    ENOMEM,
    MALLOC_ALIGN_MASK,
    MIN_LARGE_SIZE,
    MINSIZE,
    MP_TCACHE_UNSORTED_LIMIT,
    PREV_INUSE,
    SIZE_BITS,
    TC_COUNTS,
    checked_request2size,
    csize2tidx,
    fastbin_index,
    largebin_index,
    protect_ptr,
)

MAX_ITERS = 10000  # chunks the unsorted scan files into bins per pass


class IntMallocMixin:
    """_int_malloc and its steps (state in simulated memory, see core.py)."""

    def _int_malloc(self, nbytes: int) -> int:
        """_int_malloc(&main_arena, bytes); alloc_perturb on every path but the return_cached one."""
        mem, perturb = self._int_malloc_search(nbytes)
        if mem and perturb:
            pb = self._r32(self.a_perturb)
            if pb:
                self.host.fill(mem, nbytes, (pb ^ 0xFF) & 0xFF)
        return mem

    def _int_malloc_search(self, nbytes: int) -> tuple[int, bool]:
        """_int_malloc's search. Returns (mem, perturb?): a chunk handed back from the tcache
        (return_cached) is not perturbed by glibc."""
        nb = checked_request2size(nbytes)
        if nb == 0:
            self.set_errno(ENOMEM)
            return 0, False
        r = self._r
        tc = r(self.a_tcache)
        tcache_bins = r(self.a_tcache_bins)
        tcache_count = r(self.a_tcache_count)
        tc_idx = csize2tidx(nb)
        counts = tc + TC_COUNTS + 2 * tc_idx if tc and tc_idx < tcache_bins else 0  # 0: no tcache bin
        if nb <= r(self.a_max_fast):
            mem = self._malloc_fastbin(nb, tc_idx, counts, tcache_count)
            if mem:
                return mem, True
        if nb < MIN_LARGE_SIZE:
            idx = nb >> 4  # smallbin_index
            mem = self._malloc_smallbin(nb, idx, tc_idx, counts, tcache_count)
            if mem:
                return mem, True
        else:
            idx = largebin_index(nb)
            if self._r32(self.A + AV_HAVE_FASTCHUNKS):
                self.malloc_consolidate()
        scan = [0, False]  # chunks filed into bins so far (tcache_unsorted_count), return_cached
        while True:  # the for (;;) of _int_malloc; once more after consolidating the fastbins
            mem, perturb = self._malloc_unsorted(nb, tc_idx, counts, tcache_count, scan)
            if mem:
                return mem, perturb
            if nb >= MIN_LARGE_SIZE:
                mem = self._malloc_largebin(nb, idx)
                if mem:
                    return mem, True
            mem = self._malloc_binmap(nb, idx + 1) or self._malloc_top(nb)
            if mem:
                return mem, True
            if not self._r32(self.A + AV_HAVE_FASTCHUNKS):
                return self.sysmalloc(nb), True
            self.malloc_consolidate()

    # -- the fast and small bins ------------------------------------------------------------------
    def _malloc_fastbin(self, nb: int, tc_idx: int, counts: int, tcache_count: int) -> int:
        """Take the head of nb's fastbin and move the rest of it into the tcache; 0 if it is empty."""
        r = self._r
        idx = fastbin_index(nb)
        fb = self.A + AV_FASTBINS + 8 * idx
        victim = r(fb)
        if not victim:
            return 0
        if victim & MALLOC_ALIGN_MASK:
            self.malloc_printerr("malloc(): unaligned fastbin chunk detected 2")
        self._w(fb, protect_ptr(victim + 16, self.fd(victim)))
        if fastbin_index(self.chunksize(victim)) != idx:
            self.malloc_printerr("malloc(): memory corruption (fast)")
        if counts:
            while self._r16(counts) < tcache_count:
                tcv = r(fb)
                if not tcv:
                    break
                if tcv & MALLOC_ALIGN_MASK:
                    self.malloc_printerr("malloc(): unaligned fastbin chunk detected 3")
                self._w(fb, protect_ptr(tcv + 16, self.fd(tcv)))
                self.tcache_put(tcv, tc_idx)
        return victim + 16

    def _malloc_smallbin(self, nb: int, idx: int, tc_idx: int, counts: int, tcache_count: int) -> int:
        """Take the last chunk of small bin idx and move the rest of it into the tcache; 0 if empty."""
        fd, bk, set_fd, set_bk = self.links
        b = self.bin_at(idx)
        victim = bk(b)
        if victim == b:
            return 0
        bck = bk(victim)
        if fd(bck) != victim:
            self.malloc_printerr("malloc(): smallbin double linked list corrupted")
        self.set_inuse_bit_at_offset(victim, nb)
        set_bk(b, bck)
        set_fd(bck, b)
        if self.av_bit:
            self.set_non_main_arena(victim)
        if counts:
            while self._r16(counts) < tcache_count:
                tcv = bk(b)
                if tcv == b:
                    break
                bck = bk(tcv)
                self.set_inuse_bit_at_offset(tcv, nb)
                if self.av_bit:
                    self.set_non_main_arena(tcv)
                set_bk(b, bck)
                set_fd(bck, b)
                self.tcache_put(tcv, tc_idx)
        return victim + 16

    # -- the unsorted scan ------------------------------------------------------------------------
    def _malloc_unsorted(self, nb: int, tc_idx: int, counts: int, tcache_count: int,
                         scan: list) -> tuple[int, bool]:
        """Scan the unsorted list: check each chunk, split the last remainder, take (or cache) an
        exact fit, place the rest in their bins. Returns (mem, perturb?), mem 0 if none was found."""
        r, A, unsorted, printerr = self._r, self.A, self.UNSORTED, self.malloc_printerr
        r32, w32, binmap = self._r32, self._w32, self.A + AV_BINMAP
        fd, bk, set_fd, set_bk = self.links
        chunksize, chunksize_nomask, set_head, prev_size, _set_prev_size = self.sizes
        iters = 0
        while iters < MAX_ITERS:
            victim = bk(unsorted)
            if victim == unsorted:
                break
            bck = bk(victim)
            size = chunksize(victim)
            nxt = victim + size
            system_mem = r(A + AV_SYSTEM_MEM)
            if size <= CHUNK_HDR_SZ or size > system_mem:
                printerr("malloc(): invalid size (unsorted)")
            nhead = chunksize_nomask(nxt)
            if nhead < CHUNK_HDR_SZ or nhead > system_mem:
                printerr("malloc(): invalid next size (unsorted)")
            if prev_size(nxt) & ~SIZE_BITS != size:
                printerr("malloc(): mismatching next->prev_size (unsorted)")
            if fd(bck) != victim or fd(victim) != unsorted:
                printerr("malloc(): unsorted double linked list corrupted")
            if nhead & PREV_INUSE:
                printerr("malloc(): invalid next->prev_inuse (unsorted)")
            if (nb < MIN_LARGE_SIZE and bck == unsorted and victim == r(A + AV_LAST_REMAINDER)
                    and size > nb + MINSIZE):
                return self._split_last_remainder(victim, size, nb), True
            if fd(bck) != victim:
                printerr("malloc(): corrupted unsorted chunks 3")
            set_bk(unsorted, bck)
            set_fd(bck, unsorted)
            if size == nb:
                set_head(nxt, chunksize_nomask(nxt) | PREV_INUSE)  # set_inuse_bit_at_offset(victim, size)
                if self.av_bit:
                    self.set_non_main_arena(victim)
                if not counts or self._r16(counts) >= tcache_count:
                    return victim + 16, True
                self.tcache_put(victim, tc_idx)
                scan[1] = True
                continue
            if size < MIN_LARGE_SIZE:  # place the chunk in its bin
                victim_index = size >> 4
                bck = unsorted + (victim_index - 1) * 16  # bin_at(victim_index)
                fwd = fd(bck)
            else:
                victim_index = largebin_index(size)
                bck, fwd = self._largebin_position(victim, size, unsorted + (victim_index - 1) * 16)
            bits = binmap + 4 * (victim_index >> 5)  # mark_bin(victim_index)
            w32(bits, r32(bits) | (1 << (victim_index & 31)))
            set_bk(victim, bck)
            set_fd(victim, fwd)
            set_bk(fwd, victim)
            set_fd(bck, victim)
            scan[0] += 1
            limit = r(self.MP + MP_TCACHE_UNSORTED_LIMIT)
            if scan[1] and limit > 0 and scan[0] > limit:
                return self.tcache_get(tc_idx), False
            iters += 1
        return (self.tcache_get(tc_idx), False) if scan[1] else (0, True)

    def _split_last_remainder(self, victim: int, size: int, nb: int) -> int:
        """A small request served from the last remainder, alone in unsorted: split it in place."""
        unsorted = self.UNSORTED
        remainder_size = size - nb
        rem = victim + nb
        self.set_bk(unsorted, rem)
        self.set_fd(unsorted, rem)
        self._w(self.A + AV_LAST_REMAINDER, rem)
        self.set_bk(rem, unsorted)
        self.set_fd(rem, unsorted)
        if remainder_size >= MIN_LARGE_SIZE:
            self.set_fd_nextsize(rem, 0)
            self.set_bk_nextsize(rem, 0)
        self.set_head(victim, nb | PREV_INUSE | self.av_bit)
        self.set_head(rem, remainder_size | PREV_INUSE)
        self.set_foot(rem, remainder_size)
        return victim + 16

    def _largebin_position(self, victim: int, size: int, bck: int) -> tuple[int, int]:
        """Where victim goes in large bin bck (sorted by size, with the nextsize ring of size heads
        kept up to date): the (bck, fwd) to link it between."""
        fd, bk, _set_fd, _set_bk = self.links
        fd_nextsize, bk_nextsize, set_fd_nextsize, set_bk_nextsize = self.nextsize_links
        fwd = fd(bck)
        if fwd == bck:
            set_fd_nextsize(victim, victim)
            set_bk_nextsize(victim, victim)
            return bck, fwd
        size |= PREV_INUSE
        last = bk(bck)
        if size < self.chunksize_nomask(last):
            fwd, bck = bck, last
            ffd = fd(fwd)
            set_fd_nextsize(victim, ffd)
            set_bk_nextsize(victim, bk_nextsize(ffd))
            set_bk_nextsize(ffd, victim)
            set_fd_nextsize(bk_nextsize(victim), victim)
            return bck, fwd
        while size < self.chunksize_nomask(fwd):
            fwd = fd_nextsize(fwd)
        if size == self.chunksize_nomask(fwd):
            fwd = fd(fwd)
        else:
            set_fd_nextsize(victim, fwd)
            set_bk_nextsize(victim, bk_nextsize(fwd))
            if fd_nextsize(bk_nextsize(fwd)) != fwd:
                self.malloc_printerr("malloc(): largebin double linked list corrupted (nextsize)")
            set_bk_nextsize(fwd, victim)
            set_fd_nextsize(bk_nextsize(victim), victim)
        bck = bk(fwd)
        if fd(bck) != fwd:
            self.malloc_printerr("malloc(): largebin double linked list corrupted (bk)")
        return bck, fwd

    # -- the large bins, the binmap, top -----------------------------------------------------------
    def _malloc_largebin(self, nb: int, idx: int) -> int:
        """The smallest chunk of at least nb in the request's own large bin, split; 0 if none."""
        fd, bk, _set_fd, _set_bk = self.links
        chunksize, chunksize_nomask, _set_head, _prev_size, _set_prev_size = self.sizes
        b = self.bin_at(idx)
        victim = fd(b)
        if victim == b or chunksize_nomask(victim) < nb:
            return 0
        bk_nextsize = self.bk_nextsize
        victim = bk_nextsize(victim)
        while True:
            size = chunksize(victim)
            if size >= nb:
                break
            victim = bk_nextsize(victim)
        if victim != bk(b) and chunksize_nomask(victim) == chunksize_nomask(fd(victim)):
            victim = fd(victim)
        return self._split_rest(victim, size, nb, "malloc(): corrupted unsorted chunks", False)

    def _malloc_binmap(self, nb: int, idx: int) -> int:
        """The first non-empty bin from idx up (empty ones found marked clear), split; 0 if none.

        glibc's bit-by-bit walk is done a word at a time: the first set bit at or above `bit` is
        the bin glibc's loop stops at (same reads and writes)."""
        r32, binmap, bk = self._r32, self.A + AV_BINMAP, self.bk
        block = idx >> 5
        bmap = r32(binmap + 4 * block)
        bit = 1 << (idx & 31)
        while True:
            above = bmap & ~(bit - 1)              # empty iff bit > map (or bit overflowed)
            if not above:
                while True:
                    block += 1
                    if block >= BINMAPSIZE:
                        return 0
                    bmap = r32(binmap + 4 * block)
                    if bmap:
                        break
                above = bmap
            bit = above & -above
            b = self.UNSORTED + ((block << 5) + bit.bit_length() - 2) * 16  # bin_at(i)
            victim = bk(b)
            if victim != b:
                return self._split_rest(victim, self.chunksize(victim), nb, "malloc(): corrupted unsorted chunks 2",
                                        nb < MIN_LARGE_SIZE)
            bmap &= ~bit
            self._w32(binmap + 4 * block, bmap)
            bit <<= 1

    def _malloc_top(self, nb: int) -> int:
        """Split nb off the top chunk if it leaves at least MINSIZE; 0 if it is too small."""
        victim = self._r(self.A + AV_TOP)
        size = self.chunksize(victim)
        if size > self._r(self.A + AV_SYSTEM_MEM):
            self.malloc_printerr("malloc(): corrupted top size")
        if size < nb + MINSIZE:
            return 0
        rem = victim + nb
        self._w(self.A + AV_TOP, rem)
        self.set_head(victim, nb | PREV_INUSE | self.av_bit)
        self.set_head(rem, (size - nb) | PREV_INUSE)
        return victim + 16

    def _split_rest(self, victim: int, size: int, nb: int, msg: str, set_lr: bool) -> int:
        """Exhaust or split a chunk taken from a bin (remainder to the unsorted head)."""
        remainder_size = size - nb
        self.unlink_chunk(victim)
        if remainder_size < MINSIZE:
            self.set_inuse_bit_at_offset(victim, size)
            if self.av_bit:
                self.set_non_main_arena(victim)
            return victim + 16
        fd, bk, set_fd, set_bk = self.links
        set_head = self.set_head
        rem = victim + nb
        bck = self.UNSORTED
        fwd = fd(bck)
        if bk(fwd) != bck:
            self.malloc_printerr(msg)
        set_bk(rem, bck)
        set_fd(rem, fwd)
        set_fd(bck, rem)
        set_bk(fwd, rem)
        if set_lr:
            self._w(self.A + AV_LAST_REMAINDER, rem)
        if remainder_size >= MIN_LARGE_SIZE:
            self.set_fd_nextsize(rem, 0)
            self.set_bk_nextsize(rem, 0)
        set_head(victim, nb | PREV_INUSE | self.av_bit)
        set_head(rem, remainder_size | PREV_INUSE)
        self.set_prev_size(rem + remainder_size, remainder_size)  # set_foot(rem, remainder_size)
        return victim + 16
