"""Tuning and statistics in glibc 2.36 malloc: mallopt, malloc_trim, mallinfo2, malloc_stats.

mallopt works on main_arena only; malloc_trim, mallinfo2 and malloc_stats visit every arena
(main_arena, then ->next), each under its lock.
"""

from __future__ import annotations

from ....observe.backend import Mallinfo2
from .layout import (
    AV_BINMAP,
    AV_FASTBINS,
    AV_MUTEX,
    AV_SYSTEM_MEM,
    AV_TOP,
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
    MP_MAX_MMAPPED_MEM,
    MP_MAX_N_MMAPS,
    MP_MMAP_THRESHOLD,
    MP_MMAPPED_MEM,
    MP_N_MMAPS,
    MP_N_MMAPS_MAX,
    MP_NO_DYN_THRESHOLD,
    MP_SBRK_BASE,
    MP_TOP_PAD,
    MP_TRIM_THRESHOLD,
    NBINS,
    NFASTBINS,
    OFF_GLOBAL_MAX_FAST,
    protect_ptr,
    set_max_fast,
)


class StatsMixin:
    """mallopt, malloc_trim, mallinfo2, malloc_stats and read-only introspection."""

    def mallopt(self, param: int, value: int) -> int:
        """__libc_mallopt: consolidate main_arena, then set one parameter (most set
        no_dyn_threshold)."""
        if not self._initialized():
            self.ptmalloc_init()
        self.lock(self.MAIN + AV_MUTEX)
        old = self._use_arena(self.MAIN)
        self.malloc_consolidate()
        self._use_arena(old)
        res = 1
        w, mp = self._w, self.MP
        v = value & MASK64
        if param == M_MXFAST:
            if 0 <= value <= MAX_FAST_SIZE:
                w(self.host.libc_data + OFF_GLOBAL_MAX_FAST, set_max_fast(value))
            else:
                res = 0
        elif param in (M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD):
            w(mp + {M_TRIM_THRESHOLD: MP_TRIM_THRESHOLD, M_TOP_PAD: MP_TOP_PAD,
                    M_MMAP_THRESHOLD: MP_MMAP_THRESHOLD}[param], v)
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
        self.unlock(self.MAIN + AV_MUTEX)
        return res

    def malloc_trim(self, pad: int) -> int:
        """__malloc_trim: mtrim of every arena under its lock (only main_arena's top is sbrk'ed
        back; the others give whole free pages back with MADV_DONTNEED)."""
        if not self._initialized():
            self.ptmalloc_init()
        result = 0
        for av in self.arenas():
            self.lock(av + AV_MUTEX)
            old = self._use_arena(av)
            try:
                result |= self.mtrim(pad & MASK64)
            finally:
                self._use_arena(old)
            self.unlock(av + AV_MUTEX)
        return result

    def int_mallinfo(self, av: int) -> tuple[int, int, int, int, int]:
        """int_mallinfo of one arena: (system_mem, free chunks incl. top, fastbin chunks, fastbin
        bytes, free bytes incl. top)."""
        r, chunksize = self._r, self.chunksize
        avail = chunksize(r(av + AV_TOP))
        nblocks, nfast, fastavail = 1, 0, 0
        for i in range(NFASTBINS):
            p = r(av + AV_FASTBINS + 8 * i)
            while p:
                if p & MALLOC_ALIGN_MASK:
                    self.malloc_printerr("int_mallinfo(): unaligned fastbin chunk detected")
                nfast += 1
                fastavail += chunksize(p)
                p = protect_ptr(p + 16, self.fd(p))
        avail += fastavail
        unsorted = av + 0x60
        for i in range(1, NBINS):
            b = unsorted + (i - 1) * 16
            p = self.bk(b)
            while p != b:
                nblocks += 1
                avail += chunksize(p)
                p = self.bk(p)
        return r(av + AV_SYSTEM_MEM), nblocks, nfast, fastavail, avail

    def mallinfo2(self) -> Mallinfo2:
        """__libc_mallinfo2: int_mallinfo summed over every arena (no consolidation); the mmap
        counts and keepcost are main_arena's."""
        if not self._initialized():
            self.ptmalloc_init()
        arena = ordblks = smblks = fsmblks = fordblks = uordblks = 0
        for av in self.arenas():
            self.lock(av + AV_MUTEX)
            system_mem, nblocks, nfast, fastavail, avail = self.int_mallinfo(av)
            arena += system_mem
            ordblks += nblocks
            smblks += nfast
            fsmblks += fastavail
            fordblks += avail
            uordblks += system_mem - avail
            self.unlock(av + AV_MUTEX)
        mp = self.MP
        return Mallinfo2(arena=arena, ordblks=ordblks, smblks=smblks, hblks=self._r32(mp + MP_N_MMAPS),
                         hblkhd=self._r(mp + MP_MMAPPED_MEM), usmblks=0, fsmblks=fsmblks,
                         uordblks=uordblks, fordblks=fordblks,
                         keepcost=self.chunksize(self._r(self.MAIN + AV_TOP)))

    def malloc_stats(self) -> str:
        """__malloc_stats: per arena its system and in-use bytes, then the totals (mmapped
        memory included, as 32-bit unsigned figures) and the mmap peaks; glibc prints this on
        stderr, the host's stderr gets it too."""
        if not self._initialized():
            self.ptmalloc_init()
        mp = self.MP
        in_use = system = self._r(mp + MP_MMAPPED_MEM) & 0xFFFFFFFF
        lines = []
        for i, av in enumerate(self.arenas()):
            self.lock(av + AV_MUTEX)
            system_mem, _nb, _nf, _fa, avail = self.int_mallinfo(av)
            lines += [f"Arena {i}:", f"system bytes     = {system_mem & 0xFFFFFFFF:10d}",
                      f"in use bytes     = {(system_mem - avail) & 0xFFFFFFFF:10d}"]
            system = (system + system_mem) & 0xFFFFFFFF
            in_use = (in_use + system_mem - avail) & 0xFFFFFFFF
            self.unlock(av + AV_MUTEX)
        lines += ["Total (incl. mmap):", f"system bytes     = {system:10d}", f"in use bytes     = {in_use:10d}",
                  f"max mmap regions = {self._r32(mp + MP_MAX_N_MMAPS):10d}",
                  f"max mmap bytes   = {self._r(mp + MP_MAX_MMAPPED_MEM):10d}"]
        text = "".join(x + "\n" for x in lines)
        emit = getattr(self.host, "print_stderr", None)
        if emit is not None:
            emit(text)
        return text

    # -- introspection helpers (read-only) ----------------------------------------------------------
    def heap_start(self) -> int:
        """mp_.sbrk_base (0 before the first sbrk)."""
        return self._r(self.MP + MP_SBRK_BASE)

    def top_chunk(self, av: int | None = None) -> int:
        """The top chunk of arena av (main_arena by default)."""
        return self._r((self.MAIN if av is None else av) + AV_TOP)

    def params(self) -> dict[str, int]:
        """The mp_ fields the harness reports."""
        r, mp = self._r, self.MP
        return {"mmap_threshold": r(mp + MP_MMAP_THRESHOLD), "trim_threshold": r(mp + MP_TRIM_THRESHOLD),
                "top_pad": r(mp + MP_TOP_PAD), "n_mmaps": self._r32(mp + MP_N_MMAPS),
                "mmapped_mem": r(mp + MP_MMAPPED_MEM),
                "no_dyn_threshold": self._r32(mp + MP_NO_DYN_THRESHOLD),
                "sbrk_base": r(mp + MP_SBRK_BASE)}

    def binmap(self, av: int | None = None) -> list[int]:
        """The binmap[4] of arena av (main_arena by default)."""
        base = (self.MAIN if av is None else av) + AV_BINMAP
        return [self._r32(base + 4 * i) for i in range(4)]
