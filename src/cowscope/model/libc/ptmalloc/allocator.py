"""The public entry points of glibc 2.36 malloc (__libc_malloc, __libc_free, ...) on a host."""

from __future__ import annotations

import random

from ....errors import SyscallError
from ....observe.backend import Mallinfo2
from ..base import Allocator, AllocatorHost, register
from .core import PtMallocCore
from .fastpath import FastPathMixin
from .layout import (
    AV_ATTACHED_THREADS,
    AV_BINMAP,
    AV_FASTBINS,
    AV_HAVE_FASTCHUNKS,
    AV_MUTEX,
    AV_NEXT,
    AV_SYSTEM_MEM,
    AV_TOP,
    CHUNK_HDR_SZ,
    DEFAULT_MMAP_MAX,
    DEFAULT_MMAP_THRESHOLD,
    DEFAULT_MXFAST,
    DEFAULT_TOP_PAD,
    EINVAL,
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
    MALLOC_ALIGNMENT,
    MASK64,
    MAX_FAST_SIZE,
    MINSIZE,
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
    PAGESIZE,
    PREV_INUSE,
    PTRDIFF_MAX,
    SIZE_BITS,
    SIZE_MAX,
    SIZE_SZ,
    TCACHE_FILL_COUNT,
    TCACHE_MAX_BINS,
    TCACHE_MAX_BYTES,
    TCACHE_STRUCT_SIZE,
    TLS_TCACHE,
    TLS_TCACHE_SHUTTING_DOWN,
    TLS_THREAD_ARENA,
    align_up,
    checked_request2size,
    powerof2,
    set_max_fast,
)


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
class PtMalloc(FastPathMixin, PtMallocCore, Allocator):
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
        self.UNSORTED = self.A + 0x60
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
            w(b + 16, b)
            w(b + 24, b)
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
        tc_idx = (nb - 17) >> 4
        r = self._r
        tc = r(self.a_tcache)
        if tc == 0:
            self.tcache_init()
            tc = r(self.a_tcache)
        if tc and tc_idx < r(self.a_tcache_bins) and self._r16(tc + 2 * tc_idx):
            return self.tcache_get(tc_idx)
        return self._int_malloc(size)

    def free(self, ptr: int) -> None:
        """__libc_free: munmap mmapped chunks (dynamic threshold), else _int_free; errno kept."""
        if ptr == 0:
            return
        err = self._r32(self.a_errno)
        p = (ptr - 16) & MASK64
        if self._r(p + 8) & IS_MMAPPED:
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
        oldtopsize = r(oldtop + 8) & ~SIZE_BITS
        hw = (r(self.MP + MP_SBRK_BASE) + r(self.A + AV_SYSTEM_MEM + 8) - oldtop) & MASK64
        if oldtopsize < hw:
            oldtopsize = hw
        mem = self._int_malloc(total)
        if mem == 0:
            return 0
        p = mem - 16
        if r(p + 8) & IS_MMAPPED:
            if self._r32(self.a_perturb):
                self.host.fill(mem, total, 0)
            return mem
        csz = r(p + 8) & ~SIZE_BITS
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
        head = self._r(p + 8)
        size = head & ~SIZE_BITS
        if head & IS_MMAPPED:
            return size - CHUNK_HDR_SZ
        if self._r(p + size + 8) & PREV_INUSE:
            return size - CHUNK_HDR_SZ + SIZE_SZ
        return 0

    # -- realloc ------------------------------------------------------------------------------------
    def realloc(self, ptr: int, size: int) -> int:
        """__libc_realloc: free on 0, malloc on NULL, mremap mmapped chunks, else _int_realloc."""
        if size == 0 and ptr != 0:
            self.free(ptr)
            return 0
        if ptr == 0:
            return self.malloc(size)
        r = self._r
        oldp = (ptr - 16) & MASK64
        head = r(oldp + 8)
        oldsize = head & ~SIZE_BITS
        if not head & IS_MMAPPED:
            self._maybe_init_tcache()
        if oldp > ((-oldsize) & MASK64) or oldp & MALLOC_ALIGN_MASK:
            self.malloc_printerr("realloc(): invalid pointer")
        nb = checked_request2size(size)
        if nb == 0:
            self.set_errno(ENOMEM)
            return 0
        if head & IS_MMAPPED:
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
        return self._int_realloc(oldp, oldsize, nb)

    def mremap_chunk(self, p: int, new_size: int) -> int:
        """mremap_chunk: resize an mmapped chunk's mapping (MREMAP_MAYMOVE); 0 on failure."""
        r, w = self._r, self._w
        offset = r(p)
        size = r(p + 8) & ~SIZE_BITS
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
        w(p + 8, (new_size - offset) | IS_MMAPPED)
        mp = self.MP
        new = (r(mp + MP_MMAPPED_MEM) + new_size - size - offset) & MASK64
        w(mp + MP_MMAPPED_MEM, new)
        if new > r(mp + MP_MMAPPED_MEM + 8):
            w(mp + MP_MMAPPED_MEM + 8, new)
        return p

    def _int_realloc(self, oldp: int, oldsize: int, nb: int) -> int:
        """_int_realloc: shrink in place, grow into top or a free next chunk, else move."""
        r, w = self._r, self._w
        A = self.A
        system_mem = r(A + AV_SYSTEM_MEM)
        if r(oldp + 8) <= CHUNK_HDR_SZ or oldsize >= system_mem:
            self.malloc_printerr("realloc(): invalid old size")
        nxt = oldp + oldsize
        nhead = r(nxt + 8)
        nextsize = nhead & ~SIZE_BITS
        if nhead <= CHUNK_HDR_SZ or nextsize >= system_mem:
            self.malloc_printerr("realloc(): invalid next size")
        top = r(A + AV_TOP)
        if oldsize >= nb:
            newp, newsize = oldp, oldsize
        elif nxt == top and oldsize + nextsize >= nb + MINSIZE:
            newsize = oldsize + nextsize
            w(oldp + 8, (r(oldp + 8) & SIZE_BITS) | nb)
            w(A + AV_TOP, oldp + nb)
            w(oldp + nb + 8, (newsize - nb) | PREV_INUSE)
            return oldp + 16
        elif nxt != top and not r(nxt + nextsize + 8) & PREV_INUSE and oldsize + nextsize >= nb:
            newp, newsize = oldp, oldsize + nextsize
            self.unlink_chunk(nxt)
        else:
            newmem = self._int_malloc(nb - MALLOC_ALIGN_MASK)
            if newmem == 0:
                return 0
            newp = newmem - 16
            newsize = r(newp + 8) & ~SIZE_BITS
            if newp == nxt:
                newsize += oldsize
                newp = oldp
            else:
                self.host.write(newmem, self.host.read(oldp + 16, oldsize - CHUNK_HDR_SZ + SIZE_SZ))
                self._int_free(oldp, True)
                return newmem
        remainder_size = newsize - nb
        if remainder_size < MINSIZE:
            w(newp + 8, (r(newp + 8) & SIZE_BITS) | newsize)
            w(newp + newsize + 8, r(newp + newsize + 8) | PREV_INUSE)
        else:
            rem = newp + nb
            w(newp + 8, (r(newp + 8) & SIZE_BITS) | nb)
            w(rem + 8, remainder_size | PREV_INUSE)
            w(rem + remainder_size + 8, r(rem + remainder_size + 8) | PREV_INUSE)
            self._int_free(rem, True)
        return newp + 16

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
        return self._int_memalign(alignment, size)

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

    def _int_memalign(self, alignment: int, nbytes: int) -> int:
        """_int_memalign: over-allocate, free the misaligned leader and the trailing space."""
        nb = checked_request2size(nbytes)
        if nb == 0 or nb > SIZE_MAX - alignment - MINSIZE:
            self.set_errno(ENOMEM)
            return 0
        m = self._int_malloc(nb + alignment + MINSIZE)
        if m == 0:
            return 0
        r, w = self._r, self._w
        p = m - 16
        if m % alignment != 0:
            brk = ((m + alignment - 1) & -alignment) - 16
            if brk - p < MINSIZE:
                brk += alignment
            newp = brk
            leadsize = brk - p
            newsize = (r(p + 8) & ~SIZE_BITS) - leadsize
            if r(p + 8) & IS_MMAPPED:
                w(newp, r(p) + leadsize)
                w(newp + 8, newsize | IS_MMAPPED)
                return newp + 16
            w(newp + 8, newsize | PREV_INUSE)
            w(newp + newsize + 8, r(newp + newsize + 8) | PREV_INUSE)
            w(p + 8, (r(p + 8) & SIZE_BITS) | leadsize)
            self._int_free(p, True)
            p = newp
        if not r(p + 8) & IS_MMAPPED:
            size = r(p + 8) & ~SIZE_BITS
            if size > nb + MINSIZE:
                rem = p + nb
                w(rem + 8, (size - nb) | PREV_INUSE)
                w(p + 8, (r(p + 8) & SIZE_BITS) | nb)
                self._int_free(rem, True)
        return p + 16

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
        avail = r(r(A + AV_TOP) + 8) & ~SIZE_BITS
        nblocks = 1
        nfastblocks = fastavail = 0
        for i in range(NFASTBINS):
            p = r(A + AV_FASTBINS + 8 * i)
            while p:
                if p & MALLOC_ALIGN_MASK:
                    self.malloc_printerr("int_mallinfo(): unaligned fastbin chunk detected")
                nfastblocks += 1
                fastavail += r(p + 8) & ~SIZE_BITS
                p = ((p + 16) >> 12) ^ r(p + 16)
        avail += fastavail
        for i in range(1, NBINS):
            b = self.bin_at(i)
            p = r(b + 24)
            while p != b:
                nblocks += 1
                avail += r(p + 8) & ~SIZE_BITS
                p = r(p + 24)
        system_mem = r(A + AV_SYSTEM_MEM)
        mp = self.MP
        info = Mallinfo2(arena=system_mem, ordblks=nblocks, smblks=nfastblocks,
                         hblks=self._r32(mp + MP_N_MMAPS), hblkhd=r(mp + MP_MMAPPED_MEM), usmblks=0,
                         fsmblks=fastavail, uordblks=system_mem - avail, fordblks=avail,
                         keepcost=r(r(A + AV_TOP) + 8) & ~SIZE_BITS)
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
