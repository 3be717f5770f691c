"""The arena internals of glibc 2.36 malloc: memory accessors, chunk fields, tcache, bins, unlink.

_int_malloc lives in intmalloc.py, _int_free and malloc_consolidate in intfree.py, sysmalloc/systrim/
mtrim in sysmem.py (mixins of this class).

Every field is read from and written to the host's memory at the address glibc uses; nothing
is kept on the Python side except the fixed addresses of main_arena, mp_ and the TLS slots.
"""

from __future__ import annotations

from collections.abc import Callable

from ....errors import Aborted, SyscallError
from .arena import ArenaMixin
from .chunk import chunk_accessors
from .heap import HeapMixin
from .intfree import IntFreeMixin
from .intmalloc import IntMallocMixin
from .layout import (
    AV_BINS,
    DEFAULT_MMAP_THRESHOLD_MAX,
    ENOMEM,
    MALLOC_ALIGN_MASK,
    MASK64,
    MIN_LARGE_SIZE,
    MP_MMAP_THRESHOLD,
    MP_MMAPPED_MEM,
    MP_N_MMAPS,
    MP_NO_DYN_THRESHOLD,
    MP_TCACHE_BINS,
    MP_TCACHE_COUNT,
    MP_TRIM_THRESHOLD,
    NON_MAIN_ARENA,
    OFF_CURBRK,
    OFF_GLOBAL_MAX_FAST,
    OFF_MALLOC_INITIALIZED,
    OFF_PERTURB_BYTE,
    OFF_SINGLE_THREADED,
    OFF_TCACHE_KEY,
    PAGESIZE,
    SIZE_BITS,
    TC_COUNTS,
    TC_ENTRIES,
    TE_KEY,
    TLS_ERRNO,
    TLS_TCACHE,
    TLS_THREAD_ARENA,
    powerof2,
    protect_ptr,
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


class PtMallocCore(IntMallocMixin, IntFreeMixin, SysMemMixin, ArenaMixin, HeapMixin):
    """The arenas + mp_ + one thread's tcache, operated on in simulated memory."""

    host: object
    MAIN: int       # &main_arena
    A: int          # the arena the _int_* functions work on (main_arena between calls)
    av_bit: int     # NON_MAIN_ARENA when A is not main_arena (ORed into chunks handed out)
    MP: int         # &mp_
    UNSORTED: int   # bin_at(A, 1)
    tls: int        # this thread's libc TLS block (errno, tcache, thread_arena)
    # chunk field accessors (chunk.py), bound to the host's memory by _bind
    prev_size: Callable[[int], int]
    set_prev_size: Callable[[int, int], None]
    chunksize: Callable[[int], int]
    chunksize_nomask: Callable[[int], int]
    set_head: Callable[[int, int], None]
    set_head_size: Callable[[int, int], None]
    set_foot: Callable[[int, int], None]
    inuse_bit_at_offset: Callable[[int, int], int]
    set_inuse_bit_at_offset: Callable[[int, int], None]
    fd: Callable[[int], int]
    bk: Callable[[int], int]
    set_fd: Callable[[int, int], None]
    set_bk: Callable[[int, int], None]
    fd_nextsize: Callable[[int], int]
    bk_nextsize: Callable[[int], int]
    set_fd_nextsize: Callable[[int, int], None]
    set_bk_nextsize: Callable[[int, int], None]
    links: tuple[Callable, Callable, Callable, Callable]            # fd, bk, set_fd, set_bk
    nextsize_links: tuple[Callable, Callable, Callable, Callable]   # fd_nextsize, ..., set_bk_nextsize
    sizes: tuple[Callable, Callable, Callable, Callable, Callable]  # chunksize, chunksize_nomask, set_head,
    #                                                                 prev_size, set_prev_size

    # -- raw memory -----------------------------------------------------------------------------
    def _bind(self, host) -> None:
        """Bind the memory and chunk accessors of host (done again for a fork child)."""
        self.host = host
        fast = getattr(host, "accessors", None)
        acc = fast() if fast is not None else narrow_accessors(host.read_u64, host.write_u64)
        self._r, self._w = acc["r64"], acc["w64"]
        self._r8, self._w8 = acc["r8"], acc["w8"]
        self._r16, self._w16 = acc["r16"], acc["w16"]
        self._r32, self._w32 = acc["r32"], acc["w32"]
        c = chunk_accessors(acc)
        self.__dict__.update(c)
        # the same accessors in bundles a hot path unpacks into locals in one step
        self.links = (c["fd"], c["bk"], c["set_fd"], c["set_bk"])
        self.nextsize_links = (c["fd_nextsize"], c["bk_nextsize"], c["set_fd_nextsize"], c["set_bk_nextsize"])
        self.sizes = (c["chunksize"], c["chunksize_nomask"], c["set_head"], c["prev_size"], c["set_prev_size"])
        ld, tls = host.libc_data, self.tls
        self.UNSORTED = self.A + AV_BINS - 16
        self.av_bit = 0 if self.A == self.MAIN else NON_MAIN_ARENA
        self.a_thread_arena = tls + TLS_THREAD_ARENA
        self.a_single = ld + OFF_SINGLE_THREADED
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

    def munmap_chunk(self, p: int) -> None:
        """munmap_chunk: check the mapping bounds, update mp_ counters, munmap."""
        r = self._r
        size = self.chunksize(p)
        prev = self.prev_size(p)
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
        head = self.chunksize_nomask(p)
        if (not self._r32(mp + MP_NO_DYN_THRESHOLD) and head > r(mp + MP_MMAP_THRESHOLD)
                and head <= DEFAULT_MMAP_THRESHOLD_MAX):
            w(mp + MP_MMAP_THRESHOLD, head & ~SIZE_BITS)
            w(mp + MP_TRIM_THRESHOLD, 2 * (head & ~SIZE_BITS))

    # -- tcache -----------------------------------------------------------------------------------
    def tcache_put(self, chunk: int, tc_idx: int) -> None:
        """tcache_put: push chunk on tcache bin tc_idx (key, protected next, head, count)."""
        r, w = self._r, self._w
        tc = r(self.a_tcache)
        e = chunk + 16
        w(e + TE_KEY, r(self.a_key))
        slot = tc + TC_ENTRIES + 8 * tc_idx
        w(e, protect_ptr(e, r(slot)))
        w(slot, e)
        ca = tc + TC_COUNTS + 2 * tc_idx
        self._w16(ca, self._r16(ca) + 1)

    def tcache_get(self, tc_idx: int) -> int:
        """tcache_get: pop the head of tcache bin tc_idx, return the user pointer."""
        r, w = self._r, self._w
        tc = r(self.a_tcache)
        slot = tc + TC_ENTRIES + 8 * tc_idx
        e = r(slot)
        if e & MALLOC_ALIGN_MASK:
            self.malloc_printerr("malloc(): unaligned tcache chunk detected")
        w(slot, protect_ptr(e, r(e)))
        ca = tc + TC_COUNTS + 2 * tc_idx
        self._w16(ca, (self._r16(ca) - 1) & 0xFFFF)
        w(e + TE_KEY, 0)
        return e

    # -- bins ---------------------------------------------------------------------------------------
    def bin_at(self, i: int) -> int:
        """bin_at(av, i): the fake chunk whose fd/bk are bins[2(i-1)], bins[2(i-1)+1]."""
        return self.UNSORTED + (i - 1) * 16

    def unlink_chunk(self, p: int) -> None:
        """unlink_chunk: take a free chunk off its doubly linked list (and the nextsize ring of a
        large bin's size heads)."""
        fd, bk, set_fd, set_bk = self.links
        chunksize, chunksize_nomask, _set_head, prev_size, _set_prev_size = self.sizes
        size = chunksize(p)
        if size != prev_size(p + size):
            self.malloc_printerr("corrupted size vs. prev_size")
        f, b = fd(p), bk(p)
        if bk(f) != p or fd(b) != p:
            self.malloc_printerr("corrupted double-linked list")
        set_bk(f, b)
        set_fd(b, f)
        if chunksize_nomask(p) < MIN_LARGE_SIZE:
            return
        fd_nextsize, bk_nextsize, set_fd_nextsize, set_bk_nextsize = self.nextsize_links
        if fd_nextsize(p) == 0:
            return
        fdn, bkn = fd_nextsize(p), bk_nextsize(p)
        if bk_nextsize(fdn) != p or fd_nextsize(bkn) != p:
            self.malloc_printerr("corrupted double-linked list (not small)")
        if fd_nextsize(f) == 0:
            if fdn == p:
                set_fd_nextsize(f, f)
                set_bk_nextsize(f, f)
            else:
                set_fd_nextsize(f, fdn)
                set_bk_nextsize(f, bkn)
                set_bk_nextsize(fdn, f)
                set_fd_nextsize(bkn, f)
        else:
            set_bk_nextsize(fdn, bkn)
            set_fd_nextsize(bkn, fdn)
