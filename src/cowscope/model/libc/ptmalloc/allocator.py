"""The public entry points of glibc 2.36 malloc (__libc_malloc, __libc_free, ...) on a host."""

from __future__ import annotations

import random

from ..base import Allocator, AllocatorHost, register
from .core import PtMallocCore
from .fastpath import FastPathMixin
from .layout import (
    AV_ATTACHED_THREADS,
    AV_BINS,
    AV_HAVE_FASTCHUNKS,
    AV_MUTEX,
    AV_NEXT,
    AV_TOP,
    CHUNK_HDR_SZ,
    DEFAULT_MMAP_MAX,
    DEFAULT_MMAP_THRESHOLD,
    DEFAULT_MXFAST,
    DEFAULT_TOP_PAD,
    ENOMEM,
    HI_MPROTECT_SIZE,
    IS_MMAPPED,
    LIBC_DATA_MIN_SIZE,
    MASK64,
    MP_ARENA_TEST,
    MP_MMAP_THRESHOLD,
    MP_N_MMAPS_MAX,
    MP_TCACHE_BINS,
    MP_TCACHE_COUNT,
    MP_TCACHE_MAX_BYTES,
    MP_TOP_PAD,
    MP_TRIM_THRESHOLD,
    NBINS,
    NON_MAIN_ARENA,
    OFF_GLOBAL_MAX_FAST,
    OFF_MAIN_ARENA,
    OFF_MALLOC_INITIALIZED,
    OFF_MAY_SHRINK_HEAP,
    OFF_MP,
    OFF_NARENAS,
    OFF_NPTL_NTHREADS,
    OFF_SINGLE_THREADED,
    OFF_TCACHE_KEY,
    PTRDIFF_MAX,
    SIZE_BITS,
    SIZE_SZ,
    TC_COUNTS,
    TCACHE_FILL_COUNT,
    TCACHE_MAX_BINS,
    TCACHE_MAX_BYTES,
    TCACHE_STRUCT_SIZE,
    TLS_TCACHE_SHUTTING_DOWN,
    checked_request2size,
    csize2tidx,
    set_max_fast,
)
from .realloc import ReallocMixin
from .stats import StatsMixin


def static_libc_data(libc_data: int) -> list[tuple[int, bytes]]:
    """(address, bytes) of malloc's initialised .data in a libc loaded with rw data at libc_data.

    mp_'s defaults, main_arena.next = &main_arena (a relative relocation ld.so applies),
    main_arena.attached_threads = 1, narenas = 1, may_shrink_heap = -1, __nptl_nthreads = 1 and
    __libc_single_threaded = 1 (set by libc's early init); everything else of malloc's is zero.
    An image loader can write these at exec so the first malloc finds them, as on Linux.
    """
    mp = libc_data + OFF_MP
    a = libc_data + OFF_MAIN_ARENA

    def u64(v: int) -> bytes:
        """Little-endian 8 bytes."""
        return v.to_bytes(8, "little")

    return [(mp + MP_TRIM_THRESHOLD, u64(DEFAULT_MMAP_THRESHOLD)), (mp + MP_TOP_PAD, u64(DEFAULT_TOP_PAD)),
            (mp + MP_MMAP_THRESHOLD, u64(DEFAULT_MMAP_THRESHOLD)), (mp + MP_ARENA_TEST, u64(8)),
            (mp + MP_N_MMAPS_MAX, DEFAULT_MMAP_MAX.to_bytes(4, "little")),
            (mp + MP_TCACHE_BINS, u64(TCACHE_MAX_BINS)), (mp + MP_TCACHE_MAX_BYTES, u64(TCACHE_MAX_BYTES)),
            (mp + MP_TCACHE_COUNT, u64(TCACHE_FILL_COUNT)), (a + AV_NEXT, u64(a)),
            (a + AV_ATTACHED_THREADS, u64(1)), (libc_data + OFF_NARENAS, u64(1)),
            (libc_data + OFF_MAY_SHRINK_HEAP, (0xFFFFFFFF).to_bytes(4, "little")),
            (libc_data + OFF_NPTL_NTHREADS, (1).to_bytes(4, "little")),
            (libc_data + OFF_SINGLE_THREADED, b"\x01")]


@register
class PtMalloc(FastPathMixin, ReallocMixin, StatsMixin, PtMallocCore, Allocator):
    """ptmalloc2 as in glibc 2.36 (x86-64), as one thread of its process calls it.

    All state is in the process's memory, so one instance per thread (`for_thread`) shares
    everything but the TLS block it reads errno, the tcache and thread_arena from.
    """

    name = "ptmalloc"
    glibc_version = "2.36"
    static_libc_data = staticmethod(static_libc_data)

    def __init__(self, host: AllocatorHost, tcache_key: int | None = None, tls: int | None = None) -> None:
        """Bind to host (as the thread whose libc TLS block is at tls, the main thread's by
        default); load libc's static malloc data if the image has not."""
        super().__init__(host)
        if host.libc_data_size < LIBC_DATA_MIN_SIZE:
            raise ValueError(f"ptmalloc needs a libc data area of at least {LIBC_DATA_MIN_SIZE:#x} bytes")
        self.MAIN = self.A = host.libc_data + OFF_MAIN_ARENA
        self.MP = host.libc_data + OFF_MP
        self.tls = host.tls if tls is None else tls
        self._bind(host)
        self._key_seed = tcache_key
        if self._r(self.A + AV_NEXT) != self.A:
            self._load_static_data()

    def _bind(self, host) -> None:
        """Bind the host's memory accessors and the fast paths built on them."""
        super()._bind(host)
        self._install_fast_paths()

    def fork_child(self, child: AllocatorHost) -> PtMalloc:
        """The child's allocator: all state is in (copy-on-write) memory; rebind the accessors.
        The child's only thread is a copy of this one (same TLS block)."""
        clone = super().fork_child(child)
        clone._bind(child)
        return clone

    def for_thread(self, tls: int) -> PtMalloc:
        """The allocator as the thread whose libc TLS block is at tls calls it."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.tls = tls
        clone._use_arena(self.MAIN)
        clone._bind(self.host)
        return clone

    # -- image load and initialisation -----------------------------------------------------------
    def _load_static_data(self) -> None:
        """Write libc's statically initialised malloc data (when the image did not provide it)."""
        for addr, data in static_libc_data(self.host.libc_data):
            self.host.write(addr, data)

    def _initialized(self) -> bool:
        """__malloc_initialized."""
        return bool(self._r8(self.a_init))

    def ptmalloc_init(self) -> None:
        """ptmalloc_init: tcache key, the calling thread's thread_arena = main_arena,
        malloc_init_state (circular bins, max_fast, top)."""
        ld = self.host.libc_data
        self._w8(ld + OFF_MALLOC_INITIALIZED, 1)
        seed = self._key_seed if self._key_seed is not None else (0x5EED0000 ^ self.host.pid)
        self._w(ld + OFF_TCACHE_KEY, random.Random(seed).getrandbits(64) | 1)
        self._w(self.a_thread_arena, self.MAIN)
        w, A = self._w, self.MAIN
        unsorted = A + AV_BINS - 16
        for i in range(1, NBINS):
            b = unsorted + (i - 1) * 16
            self.set_fd(b, b)
            self.set_bk(b, b)
        w(ld + OFF_GLOBAL_MAX_FAST, set_max_fast(DEFAULT_MXFAST))
        self._w32(A + AV_HAVE_FASTCHUNKS, 0)
        w(A + AV_TOP, unsorted)

    def tcache_init(self) -> None:
        """tcache_init: carve the tcache_perthread_struct with _int_malloc in the thread's arena
        (arena_get: a new thread gets its arena here) and zero it."""
        if self._r(self.tls + TLS_TCACHE_SHUTTING_DOWN):
            return
        ar_ptr = self.arena_get(TCACHE_STRUCT_SIZE)
        victim = self._int_malloc_on(ar_ptr, TCACHE_STRUCT_SIZE)
        if not victim and ar_ptr:
            ar_ptr = self.arena_get_retry(ar_ptr, TCACHE_STRUCT_SIZE)
            victim = self._int_malloc_on(ar_ptr, TCACHE_STRUCT_SIZE)
        if ar_ptr:
            self.unlock(ar_ptr + AV_MUTEX)
        if victim:
            self._w(self.a_tcache, victim)
            self.host.fill(victim, TCACHE_STRUCT_SIZE, 0)

    def _maybe_init_tcache(self) -> None:
        """MAYBE_INIT_TCACHE."""
        if self._r(self.a_tcache) == 0:
            self.tcache_init()

    # -- running the _int_* functions on an arena ---------------------------------------------------
    def _int_malloc_on(self, av: int, nbytes: int) -> int:
        """_int_malloc(av, bytes); av 0 (no usable arena): a chunk of its own mapping, or 0."""
        if not av:
            nb = checked_request2size(nbytes)
            mem = self.sysmalloc_mmap(nb) if nb else 0
            pb = self._r32(self.a_perturb)
            if mem and pb:
                self.host.fill(mem, nbytes, (pb ^ 0xFF) & 0xFF)
            return mem
        old = self._use_arena(av)
        try:
            return self._int_malloc(nbytes)
        finally:
            self._use_arena(old)

    def _malloc_past_tcache(self, nbytes: int) -> int:
        """__libc_malloc after the tcache: main_arena in a process that never had a second
        thread, else the thread's arena (arena_get) under its lock, retried once elsewhere."""
        if self._r8(self.a_single):
            return self._int_malloc(nbytes)
        ar_ptr = self.arena_get(nbytes)
        victim = self._int_malloc_on(ar_ptr, nbytes)
        if not victim and ar_ptr:
            ar_ptr = self.arena_get_retry(ar_ptr, nbytes)
            victim = self._int_malloc_on(ar_ptr, nbytes)
        if ar_ptr:
            self.unlock(ar_ptr + AV_MUTEX)
        return victim

    def _free_past_tcache(self, p: int, size: int | None = None) -> None:
        """_int_free(arena_for_chunk(p), p, 0); with size, the tcache is known full (the fast
        paths' _int_free_chunk)."""
        if self.chunksize_nomask(p) & NON_MAIN_ARENA:
            old = self._use_arena(self.arena_for_chunk(p))
            try:
                if size is None:
                    self._int_free(p, False)
                else:
                    self._int_free_chunk(p, size, False)
            finally:
                self._use_arena(old)
        elif size is None:
            self._int_free(p, False)
        else:
            self._int_free_chunk(p, size, False)

    # -- malloc / free ------------------------------------------------------------------------------
    def malloc(self, size: int) -> int:
        """__libc_malloc: tcache first, then an arena's _int_malloc."""
        if not self._r8(self.a_init):
            self.ptmalloc_init()
        nb = checked_request2size(size)
        if nb == 0:
            self.set_errno(ENOMEM)
            return 0
        tc_idx = csize2tidx(nb)
        r = self._r
        tc = r(self.a_tcache)
        if tc == 0:
            self.tcache_init()
            tc = r(self.a_tcache)
        if tc and tc_idx < r(self.a_tcache_bins) and self._r16(tc + TC_COUNTS + 2 * tc_idx):
            return self.tcache_get(tc_idx)
        return self._malloc_past_tcache(size)

    def free(self, ptr: int) -> None:
        """__libc_free: munmap mmapped chunks (dynamic threshold), else _int_free in the chunk's
        arena (the calling thread's tcache first); errno kept."""
        if ptr == 0:
            return
        err = self._r32(self.a_errno)
        p = (ptr - 16) & MASK64
        if self.chunksize_nomask(p) & IS_MMAPPED:
            self.dyn_threshold_on_free(p)
            self.munmap_chunk(p)
        else:
            if self._r(self.a_tcache) == 0:
                self.tcache_init()
            self._free_past_tcache(p)
        self._w32(self.a_errno, err)

    def calloc(self, n: int, size: int) -> int:
        """__libc_calloc: _int_malloc (never the tcache), clear unless fresh from the kernel."""
        total = n * size
        if total > PTRDIFF_MAX:
            self.set_errno(ENOMEM)
            return 0
        if not self._initialized():
            self.ptmalloc_init()
        self._maybe_init_tcache()
        single = self._r8(self.a_single)
        av = self.MAIN if single else self.arena_get(total)
        oldtop, oldtopsize = self._calloc_oldtop(av)
        mem = self._int_malloc_on(av, total)
        if not single:
            if mem == 0 and av:
                av = self.arena_get_retry(av, total)
                mem = self._int_malloc_on(av, total)
            if av:
                self.unlock(av + AV_MUTEX)
        if mem == 0:
            return 0
        p = mem - 16
        if self.chunksize_nomask(p) & IS_MMAPPED:
            if self._r32(self.a_perturb):
                self.host.fill(mem, total, 0)
            return mem
        csz = self.chunksize(p)
        perturb = self._r32(self.a_perturb)
        if not perturb and p == oldtop and csz > oldtopsize:
            csz = oldtopsize
        self.host.fill(mem, csz - SIZE_SZ, 0)
        return mem

    def _calloc_oldtop(self, av: int) -> tuple[int, int]:
        """calloc's MORECORE_CLEARS bookkeeping: the top before the call and how much of it may
        hold old bytes (main_arena: the top itself; a heap: its mprotect'ed part). Measured on the
        reference glibc: memory sbrk gave back after a trim and took again is not written by
        calloc (its pages stay unfaulted), as MORECORE_CLEARS 2 has it, not 1's high-water mark."""
        if not av:
            return 0, 0
        r = self._r
        oldtop = r(av + AV_TOP)
        oldtopsize = self.chunksize(oldtop)
        if av == self.MAIN:
            hw = 0
        else:
            heap = self.heap_for_ptr(oldtop)
            hw = (heap + r(heap + HI_MPROTECT_SIZE) - oldtop) & MASK64
        return oldtop, max(oldtopsize, hw)

    def malloc_usable_size(self, ptr: int) -> int:
        """malloc_usable_size (musable)."""
        if ptr == 0:
            return 0
        p = ptr - 16
        head = self.chunksize_nomask(p)
        size = head & ~SIZE_BITS
        if head & IS_MMAPPED:
            return size - CHUNK_HDR_SZ
        if self.inuse_bit_at_offset(p, size):
            return size - CHUNK_HDR_SZ + SIZE_SZ
        return 0
