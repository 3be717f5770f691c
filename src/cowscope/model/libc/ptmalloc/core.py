"""The arena internals of glibc 2.36 malloc: _int_malloc, _int_free, bins, sysmalloc, systrim.

Every field is read from and written to the host's memory at the address glibc uses; nothing
is kept on the Python side except the fixed addresses of main_arena, mp_ and the TLS slots.
"""

from __future__ import annotations

from collections.abc import Callable

from ....errors import Aborted, SyscallError
from .layout import (
    AV_BINMAP,
    AV_FASTBINS,
    AV_FLAGS,
    AV_HAVE_FASTCHUNKS,
    AV_LAST_REMAINDER,
    AV_MAX_SYSTEM_MEM,
    AV_SYSTEM_MEM,
    AV_TOP,
    BINMAPSIZE,
    CHUNK_HDR_SZ,
    DEFAULT_MMAP_THRESHOLD_MAX,
    ENOMEM,
    FASTBIN_CONSOLIDATION_THRESHOLD,
    IS_MMAPPED,
    MALLOC_ALIGN_MASK,
    MALLOC_STRUCT_SIZE,
    MASK64,
    MIN_LARGE_SIZE,
    MINSIZE,
    MMAP_AS_MORECORE_SIZE,
    MP_MAX_MMAPPED_MEM,
    MP_MAX_N_MMAPS,
    MP_MMAP_THRESHOLD,
    MP_MMAPPED_MEM,
    MP_N_MMAPS,
    MP_N_MMAPS_MAX,
    MP_NO_DYN_THRESHOLD,
    MP_SBRK_BASE,
    MP_TCACHE_BINS,
    MP_TCACHE_COUNT,
    MP_TCACHE_UNSORTED_LIMIT,
    MP_TOP_PAD,
    MP_TRIM_THRESHOLD,
    NBINS,
    NFASTBINS,
    NONCONTIGUOUS_BIT,
    OFF_CURBRK,
    OFF_GLOBAL_MAX_FAST,
    OFF_MALLOC_INITIALIZED,
    OFF_TCACHE_KEY,
    PAGESIZE,
    PREV_INUSE,
    SIZE_BITS,
    SIZE_SZ,
    TC_ENTRIES,
    TLS_ERRNO,
    TLS_TCACHE,
    align_up,
    bin_index,
    checked_request2size,
    largebin_index,
    powerof2,
)


def narrow_accessors(r64: Callable[[int], int], w64: Callable[[int, int], None]) -> dict[str, Callable]:
    """8/16/32-bit loads and stores built on 64-bit ones (read-modify-write of the aligned word)."""

    def rn(nbytes: int) -> Callable[[int], int]:
        mask = (1 << (8 * nbytes)) - 1

        def r(addr: int) -> int:
            return (r64(addr & ~7) >> ((addr & 7) * 8)) & mask
        return r

    def wn(nbytes: int) -> Callable[[int, int], None]:
        mask = (1 << (8 * nbytes)) - 1

        def w(addr: int, value: int) -> None:
            base = addr & ~7
            sh = (addr & 7) * 8
            w64(base, (r64(base) & ~(mask << sh)) | ((value & mask) << sh))
        return w

    return {"r64": r64, "w64": w64, "r8": rn(1), "w8": wn(1), "r16": rn(2), "w16": wn(2),
            "r32": rn(4), "w32": wn(4)}


class PtMallocCore:
    """main_arena + mp_ + the thread's tcache, operated on in simulated memory."""

    host: object
    A: int          # &main_arena
    MP: int         # &mp_
    UNSORTED: int   # bin_at(1) = &main_arena + 0x60

    # -- raw memory -----------------------------------------------------------------------------
    def _bind(self, host) -> None:
        """Bind the memory accessors of host (done again for a fork child)."""
        self.host = host
        fast = getattr(host, "accessors", None)
        acc = fast() if fast is not None else narrow_accessors(host.read_u64, host.write_u64)
        self._r, self._w = acc["r64"], acc["w64"]
        self._r8, self._w8 = acc["r8"], acc["w8"]
        self._r16, self._w16 = acc["r16"], acc["w16"]
        self._r32, self._w32 = acc["r32"], acc["w32"]
        ld, tls = host.libc_data, host.tls
        self.a_tcache = tls + TLS_TCACHE
        self.a_errno = tls + TLS_ERRNO
        self.a_max_fast = ld + OFF_GLOBAL_MAX_FAST
        self.a_key = ld + OFF_TCACHE_KEY
        self.a_curbrk = ld + OFF_CURBRK
        self.a_init = ld + OFF_MALLOC_INITIALIZED
        self.a_tcache_bins = self.MP + MP_TCACHE_BINS
        self.a_tcache_count = self.MP + MP_TCACHE_COUNT

    def _ri32(self, addr: int) -> int:
        """Load a signed int."""
        v = self._r32(addr)
        return v - (1 << 32) if v & 0x80000000 else v

    def malloc_printerr(self, msg: str) -> None:
        """malloc_printerr: print the message and abort the process."""
        self.host.abort(msg)
        raise Aborted(getattr(self.host, "pid", 0), msg)

    def set_errno(self, err: int) -> None:
        """__set_errno (TLS errno)."""
        self._w32(self.a_errno, err)

    def _tcache(self) -> int:
        """The thread's tcache pointer (TLS)."""
        return self._r(self.a_tcache)

    def _max_fast(self) -> int:
        """get_max_fast()."""
        return self._r(self.a_max_fast)

    def _tcache_key(self) -> int:
        """tcache_key (libc .bss)."""
        return self._r(self.a_key)

    # -- morecore / mmap ----------------------------------------------------------------------------
    def libc_sbrk(self, delta: int) -> int | None:
        """glibc's __sbrk (MORECORE): move the break, update __curbrk; None on failure."""
        cb = self.a_curbrk
        if self._r(cb) == 0:
            self._w(cb, self.host.sbrk(0))
        if delta == 0:
            return self._r(cb)
        try:
            old = self.host.sbrk(delta)
        except SyscallError:
            self.set_errno(ENOMEM)
            return None
        self._w(cb, old + delta)
        return old

    # -- tcache -----------------------------------------------------------------------------------
    def tcache_put(self, chunk: int, tc_idx: int) -> None:
        """tcache_put: push chunk on tcache bin tc_idx (key, protected next, head, count)."""
        r, w = self._r, self._w
        tc = r(self.a_tcache)
        e = chunk + 16
        w(e + 8, r(self.a_key))
        slot = tc + TC_ENTRIES + 8 * tc_idx
        w(e, (e >> 12) ^ r(slot))
        w(slot, e)
        ca = tc + 2 * tc_idx
        self._w16(ca, self._r16(ca) + 1)

    def tcache_get(self, tc_idx: int) -> int:
        """tcache_get: pop the head of tcache bin tc_idx, return the user pointer."""
        r, w = self._r, self._w
        tc = r(self.a_tcache)
        slot = tc + TC_ENTRIES + 8 * tc_idx
        e = r(slot)
        if e & MALLOC_ALIGN_MASK:
            self.malloc_printerr("malloc(): unaligned tcache chunk detected")
        w(slot, (e >> 12) ^ r(e))
        ca = tc + 2 * tc_idx
        self._w16(ca, (self._r16(ca) - 1) & 0xFFFF)
        w(e + 8, 0)
        return e

    # -- bins ---------------------------------------------------------------------------------------
    def bin_at(self, i: int) -> int:
        """bin_at(av, i): the fake chunk whose fd/bk are bins[2(i-1)], bins[2(i-1)+1]."""
        return self.UNSORTED + (i - 1) * 16

    def mark_bin(self, i: int) -> None:
        """mark_bin: set bit i of the binmap."""
        a = self.A + AV_BINMAP + 4 * (i >> 5)
        self._w32(a, self._r32(a) | (1 << (i & 31)))

    def unlink_chunk(self, p: int) -> None:
        """unlink_chunk: take a free chunk off its doubly linked (and nextsize) list."""
        r, w = self._r, self._w
        size = r(p + 8) & ~SIZE_BITS
        if size != r(p + size):
            self.malloc_printerr("corrupted size vs. prev_size")
        fd = r(p + 16)
        bk = r(p + 24)
        if r(fd + 24) != p or r(bk + 16) != p:
            self.malloc_printerr("corrupted double-linked list")
        w(fd + 24, bk)
        w(bk + 16, fd)
        if r(p + 8) >= MIN_LARGE_SIZE and r(p + 32) != 0:
            fdn = r(p + 32)
            bkn = r(p + 40)
            if r(fdn + 40) != p or r(bkn + 32) != p:
                self.malloc_printerr("corrupted double-linked list (not small)")
            if r(fd + 32) == 0:
                if fdn == p:
                    w(fd + 32, fd)
                    w(fd + 40, fd)
                else:
                    w(fd + 32, fdn)
                    w(fd + 40, bkn)
                    w(fdn + 40, fd)
                    w(bkn + 32, fd)
            else:
                w(fdn + 40, bkn)
                w(bkn + 32, fdn)

    def malloc_consolidate(self) -> None:
        """malloc_consolidate: empty every fastbin, merging chunks with free neighbours."""
        r, w = self._r, self._w
        A = self.A
        self._w32(A + AV_HAVE_FASTCHUNKS, 0)
        unsorted = self.UNSORTED
        for i in range(NFASTBINS):
            fb = A + AV_FASTBINS + 8 * i
            p = r(fb)
            w(fb, 0)
            while p:
                if p & MALLOC_ALIGN_MASK:
                    self.malloc_printerr("malloc_consolidate(): unaligned fastbin chunk detected")
                if ((r(p + 8) & ~SIZE_BITS) >> 4) - 2 != i:
                    self.malloc_printerr("malloc_consolidate(): invalid chunk size")
                nextp = ((p + 16) >> 12) ^ r(p + 16)
                head = r(p + 8)
                size = head & ~SIZE_BITS
                nextchunk = p + size
                nextsize = r(nextchunk + 8) & ~SIZE_BITS
                if not head & PREV_INUSE:
                    prevsize = r(p)
                    size += prevsize
                    p = (p - prevsize) & MASK64
                    if r(p + 8) & ~SIZE_BITS != prevsize:
                        self.malloc_printerr("corrupted size vs. prev_size in fastbins")
                    self.unlink_chunk(p)
                if nextchunk != r(A + AV_TOP):
                    if not r(nextchunk + nextsize + 8) & PREV_INUSE:
                        size += nextsize
                        self.unlink_chunk(nextchunk)
                    else:
                        w(nextchunk + 8, r(nextchunk + 8) & ~PREV_INUSE)
                    first_unsorted = r(unsorted + 16)
                    w(unsorted + 16, p)
                    w(first_unsorted + 24, p)
                    if size >= MIN_LARGE_SIZE:
                        w(p + 32, 0)
                        w(p + 40, 0)
                    w(p + 8, size | PREV_INUSE)
                    w(p + 24, unsorted)
                    w(p + 16, first_unsorted)
                    w(p + size, size)
                else:
                    size += nextsize
                    w(p + 8, size | PREV_INUSE)
                    w(A + AV_TOP, p)
                p = nextp

    # -- _int_malloc --------------------------------------------------------------------------------
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
        """_int_malloc(&main_arena, bytes): fastbin, smallbin, unsorted scan, bins, top, sysmalloc."""
        nb = checked_request2size(nbytes)
        if nb == 0:
            self.set_errno(ENOMEM)
            return 0
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
                return victim + 16

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
                return victim + 16
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
                    return victim + 16

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
                    return victim + 16

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
                    return self.tcache_get(tc_idx)
                iters += 1
                if iters >= 10000:
                    break

            if return_cached:
                return self.tcache_get(tc_idx)

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
                    return self._split_rest(victim, size, nb, "malloc(): corrupted unsorted chunks", False)

            idx += 1
            b = self.bin_at(idx)
            block = idx >> 5
            bmap = self._r32(A + AV_BINMAP + 4 * block)
            bit = 1 << (idx & 31)
            use_top = False
            while True:
                if bit > bmap or bit == 0:
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
                    b = self.bin_at(block << 5)
                    bit = 1
                while not bit & bmap:
                    b += 16
                    bit = (bit << 1) & 0xFFFFFFFF
                victim = r(b + 24)
                if victim == b:
                    bmap &= ~bit
                    self._w32(A + AV_BINMAP + 4 * block, bmap)
                    b += 16
                    bit = (bit << 1) & 0xFFFFFFFF
                else:
                    size = r(victim + 8) & ~SIZE_BITS
                    return self._split_rest(victim, size, nb, "malloc(): corrupted unsorted chunks 2",
                                            nb < MIN_LARGE_SIZE)

            victim = r(A + AV_TOP)
            size = r(victim + 8) & ~SIZE_BITS
            if size > r(A + AV_SYSTEM_MEM):
                self.malloc_printerr("malloc(): corrupted top size")
            if size >= nb + MINSIZE:
                rem = victim + nb
                w(A + AV_TOP, rem)
                w(victim + 8, nb | PREV_INUSE)
                w(rem + 8, (size - nb) | PREV_INUSE)
                return victim + 16
            if self._r32(A + AV_HAVE_FASTCHUNKS):
                self.malloc_consolidate()
                idx = nb >> 4 if nb < MIN_LARGE_SIZE else largebin_index(nb)
                continue
            return self.sysmalloc(nb)

    # -- sysmalloc / systrim --------------------------------------------------------------------------
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
        size = nb + r(mp + MP_TOP_PAD) + MINSIZE
        if contiguous:
            size -= old_size
        size = align_up(size, PAGESIZE)
        brk = None
        snd_brk = None
        if size > 0:
            brk = self.libc_sbrk(size)
        if brk is None:
            msize = align_up(size + old_size, PAGESIZE) if contiguous else size
            msize = max(msize, MMAP_AS_MORECORE_SIZE)
            if msize > nb:
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
        """systrim: give back whole pages at the top of the heap above pad (sbrk down)."""
        r, w = self._r, self._w
        top = r(self.A + AV_TOP)
        top_size = r(top + 8) & ~SIZE_BITS
        top_area = (top_size - MINSIZE - 1) & MASK64
        if top_area <= pad:
            return 0
        extra = ((top_area - pad) & MASK64) & ~(PAGESIZE - 1)
        if extra == 0 or extra >= 1 << 63:
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

    # -- _int_free ----------------------------------------------------------------------------------
    def _int_free(self, p: int, have_lock: bool = False) -> None:
        """_int_free: tcache, fastbin, or coalesce into unsorted/top (then consolidate/trim)."""
        r, w = self._r, self._w
        A = self.A
        size = r(p + 8) & ~SIZE_BITS
        if p > ((-size) & MASK64) or p & MALLOC_ALIGN_MASK:
            self.malloc_printerr("free(): invalid pointer")
        if size < MINSIZE or size & MALLOC_ALIGN_MASK:
            self.malloc_printerr("free(): invalid size")
        tc_idx = (size - 17) // 16
        tc = r(self.a_tcache)
        mp = self.MP
        if tc and tc_idx < r(mp + MP_TCACHE_BINS):
            e = p + 16
            if r(e + 8) == r(self.a_key):
                tcache_count = r(mp + MP_TCACHE_COUNT)
                tmp = r(tc + TC_ENTRIES + 8 * tc_idx)
                cnt = 0
                while tmp:
                    if cnt >= tcache_count:
                        self.malloc_printerr("free(): too many chunks detected in tcache")
                    if tmp & MALLOC_ALIGN_MASK:
                        self.malloc_printerr("free(): unaligned chunk detected in tcache 2")
                    if tmp == e:
                        self.malloc_printerr("free(): double free detected in tcache 2")
                    tmp = (tmp >> 12) ^ r(tmp)
                    cnt += 1
            if self._r16(tc + 2 * tc_idx) < r(mp + MP_TCACHE_COUNT):
                self.tcache_put(p, tc_idx)
                return

        if size <= r(self.a_max_fast):
            nhead = r(p + size + 8)
            if nhead <= CHUNK_HDR_SZ or (nhead & ~SIZE_BITS) >= r(A + AV_SYSTEM_MEM):
                self.malloc_printerr("free(): invalid next size (fast)")
            self._w32(A + AV_HAVE_FASTCHUNKS, 1)
            idx = (size >> 4) - 2
            fb = A + AV_FASTBINS + 8 * idx
            old = r(fb)
            if old == p:
                self.malloc_printerr("double free or corruption (fasttop)")
            w(p + 16, ((p + 16) >> 12) ^ old)
            w(fb, p)
            if have_lock and old and ((r(old + 8) & ~SIZE_BITS) >> 4) - 2 != idx:
                self.malloc_printerr("invalid fastbin entry (free)")
            return

        if r(p + 8) & IS_MMAPPED:
            self.munmap_chunk(p)
            return

        nextchunk = p + size
        top = r(A + AV_TOP)
        if p == top:
            self.malloc_printerr("double free or corruption (top)")
        contiguous = not self._r32(A + AV_FLAGS) & NONCONTIGUOUS_BIT
        if contiguous and nextchunk >= top + (r(top + 8) & ~SIZE_BITS):
            self.malloc_printerr("double free or corruption (out)")
        nhead = r(nextchunk + 8)
        if not nhead & PREV_INUSE:
            self.malloc_printerr("double free or corruption (!prev)")
        nextsize = nhead & ~SIZE_BITS
        if nhead <= CHUNK_HDR_SZ or nextsize >= r(A + AV_SYSTEM_MEM):
            self.malloc_printerr("free(): invalid next size (normal)")
        if not r(p + 8) & PREV_INUSE:
            prevsize = r(p)
            size += prevsize
            p = (p - prevsize) & MASK64
            if r(p + 8) & ~SIZE_BITS != prevsize:
                self.malloc_printerr("corrupted size vs. prev_size while consolidating")
            self.unlink_chunk(p)
        if nextchunk != top:
            if not r(nextchunk + nextsize + 8) & PREV_INUSE:
                self.unlink_chunk(nextchunk)
                size += nextsize
            else:
                w(nextchunk + 8, nhead & ~PREV_INUSE)
            bck = self.UNSORTED
            fwd = r(bck + 16)
            if r(fwd + 24) != bck:
                self.malloc_printerr("free(): corrupted unsorted chunks")
            w(p + 16, fwd)
            w(p + 24, bck)
            if size >= MIN_LARGE_SIZE:
                w(p + 32, 0)
                w(p + 40, 0)
            w(bck + 16, p)
            w(fwd + 24, p)
            w(p + 8, size | PREV_INUSE)
            w(p + size, size)
        else:
            size += nextsize
            w(p + 8, size | PREV_INUSE)
            w(A + AV_TOP, p)
        if size >= FASTBIN_CONSOLIDATION_THRESHOLD:
            if self._r32(A + AV_HAVE_FASTCHUNKS):
                self.malloc_consolidate()
            top = r(A + AV_TOP)
            if r(top + 8) & ~SIZE_BITS >= r(mp + MP_TRIM_THRESHOLD):
                self.systrim(r(mp + MP_TOP_PAD))

    def munmap_chunk(self, p: int) -> None:
        """munmap_chunk: check the mapping bounds, update mp_ counters, munmap."""
        r = self._r
        size = r(p + 8) & ~SIZE_BITS
        prev = r(p)
        block = (p - prev) & MASK64
        total = (prev + size) & MASK64
        mem = p + 16
        if (block | total) & (PAGESIZE - 1) or not powerof2(mem & (PAGESIZE - 1)):
            self.malloc_printerr("munmap_chunk(): invalid pointer")
        mp = self.MP
        self._w32(mp + MP_N_MMAPS, (self._r32(mp + MP_N_MMAPS) - 1) & 0xFFFFFFFF)
        self._w(mp + MP_MMAPPED_MEM, (r(mp + MP_MMAPPED_MEM) - total) & MASK64)
        try:
            self.host.munmap(block, total)
        except SyscallError:
            pass

    def dyn_threshold_on_free(self, p: int) -> None:
        """__libc_free's dynamic mmap threshold: raise it to the size of a freed mmapped chunk."""
        r, w = self._r, self._w
        mp = self.MP
        head = r(p + 8)
        if (not self._r32(mp + MP_NO_DYN_THRESHOLD) and head > r(mp + MP_MMAP_THRESHOLD)
                and head <= DEFAULT_MMAP_THRESHOLD_MAX):
            w(mp + MP_MMAP_THRESHOLD, head & ~SIZE_BITS)
            w(mp + MP_TRIM_THRESHOLD, 2 * (head & ~SIZE_BITS))

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
