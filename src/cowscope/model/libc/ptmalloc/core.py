"""The arena internals of glibc 2.36 malloc: accessors, tcache, bins, unlink, consolidate, _int_free.

_int_malloc lives in intmalloc.py, sysmalloc/systrim/mtrim in sysmem.py (mixins of this class).

Every field is read from and written to the host's memory at the address glibc uses; nothing
is kept on the Python side except the fixed addresses of main_arena, mp_ and the TLS slots.
"""

from __future__ import annotations

from collections.abc import Callable

from ....errors import Aborted, SyscallError
from .intmalloc import IntMallocMixin
from .layout import (
    AV_BINMAP,
    AV_FASTBINS,
    AV_FLAGS,
    AV_HAVE_FASTCHUNKS,
    AV_SYSTEM_MEM,
    AV_TOP,
    CHUNK_HDR_SZ,
    DEFAULT_MMAP_THRESHOLD_MAX,
    ENOMEM,
    FASTBIN_CONSOLIDATION_THRESHOLD,
    IS_MMAPPED,
    MALLOC_ALIGN_MASK,
    MASK64,
    MIN_LARGE_SIZE,
    MINSIZE,
    MP_MMAP_THRESHOLD,
    MP_MMAPPED_MEM,
    MP_N_MMAPS,
    MP_NO_DYN_THRESHOLD,
    MP_TCACHE_BINS,
    MP_TCACHE_COUNT,
    MP_TOP_PAD,
    MP_TRIM_THRESHOLD,
    NFASTBINS,
    NONCONTIGUOUS_BIT,
    OFF_CURBRK,
    OFF_GLOBAL_MAX_FAST,
    OFF_MALLOC_INITIALIZED,
    OFF_PERTURB_BYTE,
    OFF_TCACHE_KEY,
    PAGESIZE,
    PREV_INUSE,
    SIZE_BITS,
    TC_ENTRIES,
    TLS_ERRNO,
    TLS_TCACHE,
    powerof2,
)
from .sysmem import SysMemMixin


def narrow_accessors(r64: Callable[[int], int], w64: Callable[[int, int], None]) -> dict[str, Callable]:
    """8/16/32-bit loads and stores built on 64-bit ones (read-modify-write of the aligned word)."""

    def rn(nbytes: int) -> Callable[[int], int]:
        """A load of nbytes."""
        mask = (1 << (8 * nbytes)) - 1

        def r(addr: int) -> int:
            """Load through the containing aligned word."""
            return (r64(addr & ~7) >> ((addr & 7) * 8)) & mask
        return r

    def wn(nbytes: int) -> Callable[[int, int], None]:
        """A store of nbytes."""
        mask = (1 << (8 * nbytes)) - 1

        def w(addr: int, value: int) -> None:
            """Read-modify-write of the containing aligned word."""
            base = addr & ~7
            sh = (addr & 7) * 8
            w64(base, (r64(base) & ~(mask << sh)) | ((value & mask) << sh))
        return w

    return {"r64": r64, "w64": w64, "r8": rn(1), "w8": wn(1), "r16": rn(2), "w16": wn(2),
            "r32": rn(4), "w32": wn(4)}


class PtMallocCore(IntMallocMixin, SysMemMixin):
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
        self.a_perturb = ld + OFF_PERTURB_BYTE
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
            self.free_perturb(p + 16, size - CHUNK_HDR_SZ)
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
        self.free_perturb(p + 16, size - CHUNK_HDR_SZ)
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

    def free_perturb(self, mem: int, n: int) -> None:
        """free_perturb: fill a freed chunk's user bytes with perturb_byte (M_PERTURB) if set."""
        pb = self._r32(self.a_perturb)
        if pb:
            self.host.fill(mem, n, pb & 0xFF)

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
