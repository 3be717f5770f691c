"""_int_malloc of glibc 2.36: fastbins, small bins, the unsorted scan, large bins, binmap, top."""

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
    MP_TCACHE_BINS,
    MP_TCACHE_COUNT,
    MP_TCACHE_UNSORTED_LIMIT,
    PREV_INUSE,
    SIZE_BITS,
    checked_request2size,
    largebin_index,
)


class IntMallocMixin:
    """_int_malloc and its bin-splitting helper (state in simulated memory, see core.py)."""

    def _split_rest(self, victim: int, size: int, nb: int, msg: str, set_lr: bool) -> int:
        """Exhaust or split a chunk taken from a bin (remainder to the unsorted head)."""
        r, w = self._r, self._w
        remainder_size = size - nb
        self.unlink_chunk(victim)
        if remainder_size < MINSIZE:
            w(victim + size + 8, r(victim + size + 8) | PREV_INUSE)
        else:
            rem = victim + nb
            bck = self.UNSORTED
            fwd = r(bck + 16)
            if r(fwd + 24) != bck:
                self.malloc_printerr(msg)
            w(rem + 24, bck)
            w(rem + 16, fwd)
            w(bck + 16, rem)
            w(fwd + 24, rem)
            if set_lr:
                w(self.A + AV_LAST_REMAINDER, rem)
            if remainder_size >= MIN_LARGE_SIZE:
                w(rem + 32, 0)
                w(rem + 40, 0)
            w(victim + 8, nb | PREV_INUSE)
            w(rem + 8, remainder_size | PREV_INUSE)
            w(rem + remainder_size, remainder_size)
        return victim + 16

    def _int_malloc(self, nbytes: int) -> int:
        """_int_malloc(&main_arena, bytes); alloc_perturb on every path but the return_cached one."""
        mem, perturb = self._int_malloc_search(nbytes)
        if mem and perturb:
            pb = self._r32(self.a_perturb)
            if pb:
                self.host.fill(mem, nbytes, (pb ^ 0xFF) & 0xFF)
        return mem

    def _int_malloc_search(self, nbytes: int) -> tuple[int, bool]:
        """_int_malloc's search: fastbin, smallbin, unsorted scan, bins, top, sysmalloc.

        Returns (mem, perturb?): the chunk handed back from the tcache (return_cached) is not
        perturbed by glibc."""
        nb = checked_request2size(nbytes)
        if nb == 0:
            self.set_errno(ENOMEM)
            return 0, False
        r, w = self._r, self._w
        A = self.A
        tc = r(self.a_tcache)
        mp = self.MP
        tcache_bins = r(mp + MP_TCACHE_BINS)
        tcache_count = r(mp + MP_TCACHE_COUNT)
        tc_idx = (nb - 17) // 16

        if nb <= r(self.a_max_fast):
            idx = (nb >> 4) - 2
            fb = A + AV_FASTBINS + 8 * idx
            victim = r(fb)
            if victim:
                if victim & MALLOC_ALIGN_MASK:
                    self.malloc_printerr("malloc(): unaligned fastbin chunk detected 2")
                w(fb, ((victim + 16) >> 12) ^ r(victim + 16))
                if ((r(victim + 8) & ~SIZE_BITS) >> 4) - 2 != idx:
                    self.malloc_printerr("malloc(): memory corruption (fast)")
                if tc and tc_idx < tcache_bins:
                    ca = tc + 2 * tc_idx
                    while self._r16(ca) < tcache_count:
                        tcv = r(fb)
                        if not tcv:
                            break
                        if tcv & MALLOC_ALIGN_MASK:
                            self.malloc_printerr("malloc(): unaligned fastbin chunk detected 3")
                        w(fb, ((tcv + 16) >> 12) ^ r(tcv + 16))
                        self.tcache_put(tcv, tc_idx)
                return victim + 16, True

        if nb < MIN_LARGE_SIZE:
            idx = nb >> 4
            b = self.bin_at(idx)
            victim = r(b + 24)
            if victim != b:
                bck = r(victim + 24)
                if r(bck + 16) != victim:
                    self.malloc_printerr("malloc(): smallbin double linked list corrupted")
                w(victim + nb + 8, r(victim + nb + 8) | PREV_INUSE)
                w(b + 24, bck)
                w(bck + 16, b)
                if tc and tc_idx < tcache_bins:
                    ca = tc + 2 * tc_idx
                    while self._r16(ca) < tcache_count:
                        tcv = r(b + 24)
                        if tcv == b:
                            break
                        bck = r(tcv + 24)
                        w(tcv + nb + 8, r(tcv + nb + 8) | PREV_INUSE)
                        w(b + 24, bck)
                        w(bck + 16, b)
                        self.tcache_put(tcv, tc_idx)
                return victim + 16, True
        else:
            idx = largebin_index(nb)
            if self._r32(A + AV_HAVE_FASTCHUNKS):
                self.malloc_consolidate()

        tcache_nb = nb if (tc and tc_idx < tcache_bins) else 0
        return_cached = False
        tcache_unsorted_count = 0
        unsorted = self.UNSORTED
        while True:
            iters = 0
            while True:
                victim = r(unsorted + 24)
                if victim == unsorted:
                    break
                bck = r(victim + 24)
                head = r(victim + 8)
                size = head & ~SIZE_BITS
                nxt = victim + size
                system_mem = r(A + AV_SYSTEM_MEM)
                if size <= CHUNK_HDR_SZ or size > system_mem:
                    self.malloc_printerr("malloc(): invalid size (unsorted)")
                nhead = r(nxt + 8)
                if nhead < CHUNK_HDR_SZ or nhead > system_mem:
                    self.malloc_printerr("malloc(): invalid next size (unsorted)")
                if r(nxt) & ~SIZE_BITS != size:
                    self.malloc_printerr("malloc(): mismatching next->prev_size (unsorted)")
                if r(bck + 16) != victim or r(victim + 16) != unsorted:
                    self.malloc_printerr("malloc(): unsorted double linked list corrupted")
                if nhead & PREV_INUSE:
                    self.malloc_printerr("malloc(): invalid next->prev_inuse (unsorted)")

                if (nb < MIN_LARGE_SIZE and bck == unsorted
                        and victim == r(A + AV_LAST_REMAINDER) and size > nb + MINSIZE):
                    remainder_size = size - nb
                    rem = victim + nb
                    w(unsorted + 24, rem)
                    w(unsorted + 16, rem)
                    w(A + AV_LAST_REMAINDER, rem)
                    w(rem + 24, unsorted)
                    w(rem + 16, unsorted)
                    if remainder_size >= MIN_LARGE_SIZE:
                        w(rem + 32, 0)
                        w(rem + 40, 0)
                    w(victim + 8, nb | PREV_INUSE)
                    w(rem + 8, remainder_size | PREV_INUSE)
                    w(rem + remainder_size, remainder_size)
                    return victim + 16, True

                if r(bck + 16) != victim:
                    self.malloc_printerr("malloc(): corrupted unsorted chunks 3")
                w(unsorted + 24, bck)
                w(bck + 16, unsorted)

                if size == nb:
                    w(nxt + 8, r(nxt + 8) | PREV_INUSE)
                    if tcache_nb and self._r16(tc + 2 * tc_idx) < tcache_count:
                        self.tcache_put(victim, tc_idx)
                        return_cached = True
                        continue
                    return victim + 16, True

                if size < MIN_LARGE_SIZE:
                    victim_index = size >> 4
                    bck = self.bin_at(victim_index)
                    fwd = r(bck + 16)
                else:
                    victim_index = largebin_index(size)
                    bck = self.bin_at(victim_index)
                    fwd = r(bck + 16)
                    if fwd != bck:
                        size |= PREV_INUSE
                        last = r(bck + 24)
                        if size < r(last + 8):
                            fwd = bck
                            bck = last
                            ffd = r(fwd + 16)
                            w(victim + 32, ffd)
                            w(victim + 40, r(ffd + 40))
                            w(ffd + 40, victim)
                            w(r(victim + 40) + 32, victim)
                        else:
                            while size < r(fwd + 8):
                                fwd = r(fwd + 32)
                            if size == r(fwd + 8):
                                fwd = r(fwd + 16)
                            else:
                                w(victim + 32, fwd)
                                w(victim + 40, r(fwd + 40))
                                if r(r(fwd + 40) + 32) != fwd:
                                    self.malloc_printerr(
                                        "malloc(): largebin double linked list corrupted (nextsize)")
                                w(fwd + 40, victim)
                                w(r(victim + 40) + 32, victim)
                            bck = r(fwd + 24)
                            if r(bck + 16) != fwd:
                                self.malloc_printerr("malloc(): largebin double linked list corrupted (bk)")
                    else:
                        w(victim + 32, victim)
                        w(victim + 40, victim)

                self.mark_bin(victim_index)
                w(victim + 24, bck)
                w(victim + 16, fwd)
                w(fwd + 24, victim)
                w(bck + 16, victim)

                tcache_unsorted_count += 1
                limit = r(mp + MP_TCACHE_UNSORTED_LIMIT)
                if return_cached and limit > 0 and tcache_unsorted_count > limit:
                    return self.tcache_get(tc_idx), False
                iters += 1
                if iters >= 10000:
                    break

            if return_cached:
                return self.tcache_get(tc_idx), False

            if nb >= MIN_LARGE_SIZE:
                b = self.bin_at(idx)
                victim = r(b + 16)
                if victim != b and r(victim + 8) >= nb:
                    victim = r(victim + 40)
                    while True:
                        size = r(victim + 8) & ~SIZE_BITS
                        if size >= nb:
                            break
                        victim = r(victim + 40)
                    if victim != r(b + 24) and r(victim + 8) == r(r(victim + 16) + 8):
                        victim = r(victim + 16)
                    return self._split_rest(victim, size, nb, "malloc(): corrupted unsorted chunks", False), True

            # binmap search; the bit-by-bit walk of glibc is done a word at a time: the first
            # set bit at or above `bit` is the bin glibc's loop stops at (same reads and writes)
            idx += 1
            block = idx >> 5
            bmap = self._r32(A + AV_BINMAP + 4 * block)
            bit = 1 << (idx & 31)
            use_top = False
            while True:
                above = bmap & ~(bit - 1)              # empty iff bit > map (or bit overflowed)
                if not above:
                    while True:
                        block += 1
                        if block >= BINMAPSIZE:
                            use_top = True
                            break
                        bmap = self._r32(A + AV_BINMAP + 4 * block)
                        if bmap:
                            break
                    if use_top:
                        break
                    above = bmap
                bit = above & -above
                b = self.UNSORTED + ((block << 5) + bit.bit_length() - 2) * 16   # bin_at(i)
                victim = r(b + 24)
                if victim == b:
                    bmap &= ~bit
                    self._w32(A + AV_BINMAP + 4 * block, bmap)
                    bit <<= 1
                else:
                    size = r(victim + 8) & ~SIZE_BITS
                    mem = self._split_rest(victim, size, nb, "malloc(): corrupted unsorted chunks 2",
                                           nb < MIN_LARGE_SIZE)
                    return mem, True

            victim = r(A + AV_TOP)
            size = r(victim + 8) & ~SIZE_BITS
            if size > r(A + AV_SYSTEM_MEM):
                self.malloc_printerr("malloc(): corrupted top size")
            if size >= nb + MINSIZE:
                rem = victim + nb
                w(A + AV_TOP, rem)
                w(victim + 8, nb | PREV_INUSE)
                w(rem + 8, (size - nb) | PREV_INUSE)
                return victim + 16, True
            if self._r32(A + AV_HAVE_FASTCHUNKS):
                self.malloc_consolidate()
                idx = nb >> 4 if nb < MIN_LARGE_SIZE else largebin_index(nb)
                continue
            return self.sysmalloc(nb), True

    # -- sysmalloc / systrim --------------------------------------------------------------------------
