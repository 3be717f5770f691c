"""The public entry points of glibc 2.36 malloc (__libc_malloc, __libc_free, ...) on a host."""

from __future__ import annotations

import random

from ....observe.backend import Mallinfo2
from ..base import Allocator, AllocatorHost, register
from .core import PtMallocCore
from .fastpath import FastPathMixin
from .layout import (
    AV_ATTACHED_THREADS,
    AV_BINMAP,
    AV_FASTBINS,
    AV_HAVE_FASTCHUNKS,
    AV_MAX_SYSTEM_MEM,
    AV_MUTEX,
    AV_NEXT,
    AV_SYSTEM_MEM,
    AV_TOP,
    CHUNK_HDR_SZ,
    DEFAULT_MMAP_MAX,
    DEFAULT_MMAP_THRESHOLD,
    DEFAULT_MXFAST,
    DEFAULT_TOP_PAD,
    ENOMEM,
    IS_MMAPPED,
    LIBC_DATA_MIN_SIZE,
    M_ARENA_MAX,
    M_ARENA_TEST,
    M_MMAP_MAX,
    M_MMAP_THRESHOLD,
    M_MXFAST,
    M_PERTURB,
    M_TOP_PAD,
    M_TRIM_THRESHOLD,
    MALLOC_ALIGN_MASK,
    MASK64,
    MAX_FAST_SIZE,
    MP_ARENA_MAX,
    MP_ARENA_TEST,
    MP_MMAP_THRESHOLD,
    MP_MMAPPED_MEM,
    MP_N_MMAPS,
    MP_N_MMAPS_MAX,
    MP_NO_DYN_THRESHOLD,
    MP_SBRK_BASE,
    MP_TCACHE_BINS,
    MP_TCACHE_COUNT,
    MP_TCACHE_MAX_BYTES,
    MP_TOP_PAD,
    MP_TRIM_THRESHOLD,
    NBINS,
    NFASTBINS,
    OFF_GLOBAL_MAX_FAST,
    OFF_MAIN_ARENA,
    OFF_MALLOC_INITIALIZED,
    OFF_MP,
    OFF_TCACHE_KEY,
    PTRDIFF_MAX,
    SIZE_BITS,
    SIZE_SZ,
    TC_COUNTS,
    TCACHE_FILL_COUNT,
    TCACHE_MAX_BINS,
    TCACHE_MAX_BYTES,
    TCACHE_STRUCT_SIZE,
    TLS_TCACHE,
    TLS_TCACHE_SHUTTING_DOWN,
    TLS_THREAD_ARENA,
    checked_request2size,
    csize2tidx,
    protect_ptr,
    set_max_fast,
)
from .realloc import ReallocMixin


def static_libc_data(libc_data: int) -> list[tuple[int, bytes]]:
    """(address, bytes) of malloc's initialised .data in a libc loaded with rw data at libc_data.

    mp_'s defaults, main_arena.next = &main_arena (a relative relocation ld.so applies) and
    main_arena.attached_threads = 1; everything else of malloc's is zero (.data zeros or .bss).
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
            (a + AV_ATTACHED_THREADS, u64(1))]


@register
class PtMalloc(FastPathMixin, ReallocMixin, PtMallocCore, Allocator):
    """ptmalloc2 as in glibc 2.36 (x86-64, single thread, main arena)."""

    name = "ptmalloc"
    glibc_version = "2.36"
    static_libc_data = staticmethod(static_libc_data)

    def __init__(self, host: AllocatorHost, tcache_key: int | None = None) -> None:
        """Bind to host; load libc's static malloc data if the image has not."""
        super().__init__(host)
        if host.libc_data_size < LIBC_DATA_MIN_SIZE:
            raise ValueError(f"ptmalloc needs a libc data area of at least {LIBC_DATA_MIN_SIZE:#x} bytes")
        self.A = host.libc_data + OFF_MAIN_ARENA
        self.MP = host.libc_data + OFF_MP
        self._bind(host)
        self._key_seed = tcache_key
        if self._r(self.A + AV_NEXT) != self.A:
            self._load_static_data()

    def _bind(self, host) -> None:
        """Bind the host's memory accessors and the fast paths built on them."""
        super()._bind(host)
        self._install_fast_paths()

    def fork_child(self, child: AllocatorHost) -> PtMalloc:
        """The child's allocator: all state is in (copy-on-write) memory; rebind the accessors."""
        clone = super().fork_child(child)
        clone._bind(child)
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
        """ptmalloc_init: tcache key, thread_arena, malloc_init_state (circular bins, max_fast, top)."""
        ld = self.host.libc_data
        self._w8(ld + OFF_MALLOC_INITIALIZED, 1)
        seed = self._key_seed if self._key_seed is not None else (0x5EED0000 ^ self.host.pid)
        self._w(ld + OFF_TCACHE_KEY, random.Random(seed).getrandbits(64) | 1)
        self._w(self.host.tls + TLS_THREAD_ARENA, self.A)
        w = self._w
        for i in range(1, NBINS):
            b = self.bin_at(i)
            self.set_fd(b, b)
            self.set_bk(b, b)
        w(ld + OFF_GLOBAL_MAX_FAST, set_max_fast(DEFAULT_MXFAST))
        self._w32(self.A + AV_HAVE_FASTCHUNKS, 0)
        w(self.A + AV_TOP, self.UNSORTED)

    def tcache_init(self) -> None:
        """tcache_init: carve the tcache_perthread_struct with _int_malloc and zero it."""
        if self._r(self.host.tls + TLS_TCACHE_SHUTTING_DOWN):
            return
        victim = self._int_malloc(TCACHE_STRUCT_SIZE)
        if victim:
            self._w(self.host.tls + TLS_TCACHE, victim)
            self.host.fill(victim, TCACHE_STRUCT_SIZE, 0)

    def _maybe_init_tcache(self) -> None:
        """MAYBE_INIT_TCACHE."""
        if self._r(self.host.tls + TLS_TCACHE) == 0:
            self.tcache_init()

    def _lock(self) -> None:
        """__libc_lock_lock(main_arena.mutex) (single thread: always free)."""
        self._w32(self.A + AV_MUTEX, 1)

    def _unlock(self) -> None:
        """__libc_lock_unlock(main_arena.mutex)."""
        self._w32(self.A + AV_MUTEX, 0)

    # -- malloc / free ------------------------------------------------------------------------------
    def malloc(self, size: int) -> int:
        """__libc_malloc: tcache first, then _int_malloc."""
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
        return self._int_malloc(size)

    def free(self, ptr: int) -> None:
        """__libc_free: munmap mmapped chunks (dynamic threshold), else _int_free; errno kept."""
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
            self._int_free(p, False)
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
        r = self._r
        oldtop = r(self.A + AV_TOP)
        oldtopsize = self.chunksize(oldtop)
        hw = (r(self.MP + MP_SBRK_BASE) + r(self.A + AV_MAX_SYSTEM_MEM) - oldtop) & MASK64
        if oldtopsize < hw:
            oldtopsize = hw
        mem = self._int_malloc(total)
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

    # -- mallopt, malloc_trim, mallinfo2 -------------------------------------------------------------
    def mallopt(self, param: int, value: int) -> int:
        """__libc_mallopt: consolidate, then set one parameter (most set no_dyn_threshold)."""
        if not self._initialized():
            self.ptmalloc_init()
        self._lock()
        self.malloc_consolidate()
        res = 1
        w, mp = self._w, self.MP
        v = value & MASK64
        if param == M_MXFAST:
            if 0 <= value <= MAX_FAST_SIZE:
                w(self.host.libc_data + OFF_GLOBAL_MAX_FAST, set_max_fast(value))
            else:
                res = 0
        elif param == M_TRIM_THRESHOLD:
            w(mp + MP_TRIM_THRESHOLD, v)
            self._w32(mp + MP_NO_DYN_THRESHOLD, 1)
        elif param == M_TOP_PAD:
            w(mp + MP_TOP_PAD, v)
            self._w32(mp + MP_NO_DYN_THRESHOLD, 1)
        elif param == M_MMAP_THRESHOLD:
            w(mp + MP_MMAP_THRESHOLD, v)
            self._w32(mp + MP_NO_DYN_THRESHOLD, 1)
        elif param == M_MMAP_MAX:
            self._w32(mp + MP_N_MMAPS_MAX, value & 0xFFFFFFFF)
            self._w32(mp + MP_NO_DYN_THRESHOLD, 1)
        elif param == M_PERTURB:
            self._w32(self.a_perturb, value & 0xFFFFFFFF)
        elif param == M_ARENA_TEST:
            if value > 0:
                w(mp + MP_ARENA_TEST, v)
        elif param == M_ARENA_MAX:
            if value > 0:
                w(mp + MP_ARENA_MAX, v)
        self._unlock()
        return res

    def malloc_trim(self, pad: int) -> int:
        """__malloc_trim: mtrim of the main arena under its lock."""
        if not self._initialized():
            self.ptmalloc_init()
        self._lock()
        result = self.mtrim(pad & MASK64)
        self._unlock()
        return result

    def mallinfo2(self) -> Mallinfo2:
        """__libc_mallinfo2: int_mallinfo of the main arena (no consolidation)."""
        if not self._initialized():
            self.ptmalloc_init()
        self._lock()
        r, A = self._r, self.A
        chunksize = self.chunksize
        avail = chunksize(r(A + AV_TOP))
        nblocks = 1
        nfastblocks = fastavail = 0
        for i in range(NFASTBINS):
            p = r(A + AV_FASTBINS + 8 * i)
            while p:
                if p & MALLOC_ALIGN_MASK:
                    self.malloc_printerr("int_mallinfo(): unaligned fastbin chunk detected")
                nfastblocks += 1
                fastavail += chunksize(p)
                p = protect_ptr(p + 16, self.fd(p))
        avail += fastavail
        for i in range(1, NBINS):
            b = self.bin_at(i)
            p = self.bk(b)
            while p != b:
                nblocks += 1
                avail += chunksize(p)
                p = self.bk(p)
        system_mem = r(A + AV_SYSTEM_MEM)
        mp = self.MP
        info = Mallinfo2(arena=system_mem, ordblks=nblocks, smblks=nfastblocks,
                         hblks=self._r32(mp + MP_N_MMAPS), hblkhd=r(mp + MP_MMAPPED_MEM), usmblks=0,
                         fsmblks=fastavail, uordblks=system_mem - avail, fordblks=avail,
                         keepcost=chunksize(r(A + AV_TOP)))
        self._unlock()
        return info

    # -- introspection helpers (read-only) ----------------------------------------------------------
    def heap_start(self) -> int:
        """mp_.sbrk_base (0 before the first sbrk)."""
        return self._r(self.MP + MP_SBRK_BASE)

    def top_chunk(self) -> int:
        """main_arena.top."""
        return self._r(self.A + AV_TOP)

    def params(self) -> dict[str, int]:
        """The mp_ fields the harness reports."""
        r, mp = self._r, self.MP
        return {"mmap_threshold": r(mp + MP_MMAP_THRESHOLD), "trim_threshold": r(mp + MP_TRIM_THRESHOLD),
                "top_pad": r(mp + MP_TOP_PAD), "n_mmaps": self._r32(mp + MP_N_MMAPS),
                "mmapped_mem": r(mp + MP_MMAPPED_MEM),
                "no_dyn_threshold": self._r32(mp + MP_NO_DYN_THRESHOLD),
                "sbrk_base": r(mp + MP_SBRK_BASE)}

    def binmap(self) -> list[int]:
        """main_arena.binmap[4]."""
        return [self._r32(self.A + AV_BINMAP + 4 * i) for i in range(4)]
