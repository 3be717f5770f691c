"""glibc 2.36's arena.c: which arena a thread's call uses, and the heaps of non-main arenas.

A thread's first call that needs an arena (`arena_get` with no `thread_arena`) runs `arena_get2`:
the free list first, a new arena while `narenas` is under the limit (M_ARENA_MAX, else 8 x CPUs once
`narenas` passed `arena_test`; `narenas_limit` is computed once), otherwise `reused_arena`'s round
robin from `next_to_use`. A non-main arena lives in heaps: 64 MiB reserved PROT_NONE at 64 MiB
alignment (`new_heap`), made read-write as it grows (`grow_heap`: mprotect), given back with
MADV_DONTNEED (`shrink_heap`) or unmapped whole (`heap_trim`). Every variable is where glibc keeps
it (libc .data/.bss, the heap_info at the start of each heap, the thread's TLS), so fork copies it.

Locks are written as glibc writes them (1 on lock, 0 on unlock): they cost page copies after fork.
The model runs one thread at a time, so every trylock succeeds and nothing waits.
"""

from __future__ import annotations

from .layout import (
    AV_ATTACHED_THREADS,
    AV_BINS,
    AV_FLAGS,
    AV_HAVE_FASTCHUNKS,
    AV_MAX_SYSTEM_MEM,
    AV_MUTEX,
    AV_NEXT,
    AV_NEXT_FREE,
    AV_SIZE,
    AV_SYSTEM_MEM,
    AV_TOP,
    CHUNK_HDR_SZ,
    HEAP_INFO_SIZE,
    HEAP_MAX_SIZE,
    HI_AR_PTR,
    HI_SIZE,
    MALLOC_ALIGN_MASK,
    MALLOC_ALIGNMENT,
    MASK64,
    MP_ARENA_MAX,
    MP_ARENA_TEST,
    MP_TOP_PAD,
    NBINS,
    NON_MAIN_ARENA,
    NONCONTIGUOUS_BIT,
    OFF_FREE_LIST,
    OFF_FREE_LIST_LOCK,
    OFF_LIST_LOCK,
    OFF_NARENAS,
    OFF_NARENAS_LIMIT,
    OFF_NEXT_TO_USE,
    PREV_INUSE,
    TC_ENTRIES,
    TCACHE_MAX_BINS,
    TLS_TCACHE,
    TLS_TCACHE_SHUTTING_DOWN,
)

ARENA_SIZE_HINT_OVERHEAD = HEAP_INFO_SIZE + AV_SIZE + MALLOC_ALIGNMENT  # _int_new_arena's extra


def narenas_from_ncores(n: int) -> int:
    """NARENAS_FROM_NCORES on 64-bit: 8 arenas per core."""
    return n * 8


class ArenaMixin:
    """arena_get and friends, heaps, and the fork handlers (state in simulated memory)."""

    # -- which arena the arena code works on ---------------------------------------------------
    def _use_arena(self, av: int) -> int:
        """Point the _int_* code at arena av (its bins, top, flags); returns the arena it replaced."""
        old = self.A
        self.A = av
        self.UNSORTED = av + AV_BINS - 16
        self.av_bit = 0 if av == self.MAIN else NON_MAIN_ARENA
        return old

    def single_thread_p(self) -> bool:
        """SINGLE_THREAD_P on x86-64: __libc_single_threaded_internal != 0 (cleared for good by
        the first pthread_create; a fork child keeps it cleared)."""
        return self._r8(self.a_single) != 0

    @staticmethod
    def heap_for_ptr(ptr: int) -> int:
        """heap_for_ptr: heaps are aligned to HEAP_MAX_SIZE."""
        return ptr & ~(HEAP_MAX_SIZE - 1)

    def arena_for_chunk(self, p: int) -> int:
        """arena_for_chunk: main_arena unless the chunk's A bit sends us to its heap's ar_ptr."""
        if not self.chunksize_nomask(p) & NON_MAIN_ARENA:
            return self.MAIN
        return self._r(self.heap_for_ptr(p) + HI_AR_PTR)

    def lock(self, addr: int) -> None:
        """__libc_lock_lock / trylock of an uncontended lock: the CAS stores 1."""
        self._w32(addr, 1)

    def unlock(self, addr: int) -> None:
        """__libc_lock_unlock: the exchange stores 0 (as does __libc_lock_init)."""
        self._w32(addr, 0)

    def thread_arena(self) -> int:
        """The TLS variable thread_arena (0 before the thread's first call that needed one)."""
        return self._r(self.a_thread_arena)

    # -- arena_get ------------------------------------------------------------------------------
    def arena_get(self, size: int) -> int:
        """arena_get: the thread's arena, locked; a first call runs arena_get2 (0: none usable)."""
        ptr = self._r(self.a_thread_arena)
        if ptr:
            self.lock(ptr + AV_MUTEX)
            return ptr
        return self.arena_get2(size, 0)

    def arena_get2(self, size: int, avoid: int) -> int:
        """arena_get2: free list, a new arena under the limit, or reused_arena's round robin."""
        a = self.get_free_list()
        if a:
            return a
        ld = self.host.libc_data
        limit = self._r(ld + OFF_NARENAS_LIMIT)
        if limit == 0:
            arena_max = self._r(self.MP + MP_ARENA_MAX)
            if arena_max:
                limit = arena_max
            elif self._r(ld + OFF_NARENAS) > self._r(self.MP + MP_ARENA_TEST):
                n = getattr(self.host, "nprocs", 2)   # __get_nprocs(): the online CPUs
                limit = narenas_from_ncores(n if n >= 1 else 2)
            if limit:
                self._w(ld + OFF_NARENAS_LIMIT, limit)
        n = self._r(ld + OFF_NARENAS)
        if n <= (limit - 1) & MASK64:
            self._w(ld + OFF_NARENAS, n + 1)
            a = self._int_new_arena(size)
            if not a:
                self._w(ld + OFF_NARENAS, self._r(ld + OFF_NARENAS) - 1)
            return a
        return self.reused_arena(avoid)

    def detach_arena(self, replaced: int) -> None:
        """detach_arena: the thread no longer counts as attached to its old arena."""
        if replaced:
            a = replaced + AV_ATTACHED_THREADS
            self._w(a, self._r(a) - 1)

    def get_free_list(self) -> int:
        """get_free_list: pop the free list's head, attach it to this thread, lock it (0: empty)."""
        ld = self.host.libc_data
        replaced = self._r(self.a_thread_arena)
        result = self._r(ld + OFF_FREE_LIST)
        if not result:
            return 0
        self.lock(ld + OFF_FREE_LIST_LOCK)
        self._w(ld + OFF_FREE_LIST, self._r(result + AV_NEXT_FREE))
        self._w(result + AV_ATTACHED_THREADS, 1)
        self.detach_arena(replaced)
        self.unlock(ld + OFF_FREE_LIST_LOCK)
        self.lock(result + AV_MUTEX)
        self._w(self.a_thread_arena, result)
        return result

    def remove_from_free_list(self, arena: int) -> None:
        """remove_from_free_list: unlink arena from the free list if it is there."""
        prev = self.host.libc_data + OFF_FREE_LIST
        p = self._r(prev)
        while p:
            if p == arena:
                self._w(prev, self._r(p + AV_NEXT_FREE))
                return
            prev = p + AV_NEXT_FREE
            p = self._r(prev)

    def reused_arena(self, avoid: int) -> int:
        """reused_arena: the arena at next_to_use (its trylock succeeds: one thread at a time),
        attached to this thread; next_to_use moves to its ->next."""
        ld = self.host.libc_data
        nxt = self._r(ld + OFF_NEXT_TO_USE)
        if nxt == 0:
            nxt = self.MAIN
            self._w(ld + OFF_NEXT_TO_USE, nxt)
        result = nxt
        self.lock(result + AV_MUTEX)              # __libc_lock_trylock succeeds
        replaced = self._r(self.a_thread_arena)
        self.lock(ld + OFF_FREE_LIST_LOCK)
        self.detach_arena(replaced)
        self.remove_from_free_list(result)
        self._w(result + AV_ATTACHED_THREADS, self._r(result + AV_ATTACHED_THREADS) + 1)
        self.unlock(ld + OFF_FREE_LIST_LOCK)
        self._w(self.a_thread_arena, result)
        self._w(ld + OFF_NEXT_TO_USE, self._r(result + AV_NEXT))
        return result

    def arena_get_retry(self, ar_ptr: int, nbytes: int) -> int:
        """arena_get_retry: after a failed allocation, main_arena (from another arena) or another
        arena (from main_arena)."""
        self.unlock(ar_ptr + AV_MUTEX)
        if ar_ptr != self.MAIN:
            self.lock(self.MAIN + AV_MUTEX)
            return self.MAIN
        return self.arena_get2(nbytes, ar_ptr)

    # -- new arenas and their heaps ---------------------------------------------------------------
    def _int_new_arena(self, size: int) -> int:
        """_int_new_arena: a heap with the malloc_state right after its heap_info, the top chunk
        after that; linked after main_arena, attached to this thread, locked (0 on failure)."""
        h = self.new_heap(size + ARENA_SIZE_HINT_OVERHEAD, self._r(self.MP + MP_TOP_PAD))
        if not h:
            h = self.new_heap(ARENA_SIZE_HINT_OVERHEAD, self._r(self.MP + MP_TOP_PAD))
            if not h:
                return 0
        a = h + HEAP_INFO_SIZE
        w = self._w
        w(h + HI_AR_PTR, a)
        self.malloc_init_state(a)
        w(a + AV_ATTACHED_THREADS, 1)
        hsize = self._r(h + HI_SIZE)
        w(a + AV_SYSTEM_MEM, hsize)
        w(a + AV_MAX_SYSTEM_MEM, hsize)
        ptr = a + AV_SIZE
        misalign = (ptr + CHUNK_HDR_SZ) & MALLOC_ALIGN_MASK
        if misalign:
            ptr += MALLOC_ALIGNMENT - misalign
        w(a + AV_TOP, ptr)
        self.set_head(ptr, (h + hsize - ptr) | PREV_INUSE)
        replaced = self._r(self.a_thread_arena)
        w(self.a_thread_arena, a)
        self.unlock(a + AV_MUTEX)                  # __libc_lock_init
        ld = self.host.libc_data
        self.lock(ld + OFF_LIST_LOCK)
        w(a + AV_NEXT, self._r(self.MAIN + AV_NEXT))
        w(self.MAIN + AV_NEXT, a)
        self.unlock(ld + OFF_LIST_LOCK)
        self.lock(ld + OFF_FREE_LIST_LOCK)
        self.detach_arena(replaced)
        self.unlock(ld + OFF_FREE_LIST_LOCK)
        self.lock(a + AV_MUTEX)
        return a

    def malloc_init_state(self, av: int) -> None:
        """malloc_init_state of a non-main arena: circular bins, NONCONTIGUOUS, no fastchunks,
        top = the initial top (main_arena's own initialisation is ptmalloc_init's)."""
        unsorted = av + AV_BINS - 16
        set_fd, set_bk = self.set_fd, self.set_bk
        for i in range(1, NBINS):
            b = unsorted + (i - 1) * 16
            set_fd(b, b)
            set_bk(b, b)
        self._w32(av + AV_FLAGS, self._r32(av + AV_FLAGS) | NONCONTIGUOUS_BIT)
        self._w32(av + AV_HAVE_FASTCHUNKS, 0)
        self._w(av + AV_TOP, unsorted)

    # -- fork (posix/fork.c calls these directly in a multi-threaded process) ----------------------
    def malloc_fork_lock_parent(self) -> None:
        """__malloc_fork_lock_parent: list_lock, then every arena's mutex from main_arena on."""
        if not self._initialized():
            return
        self.lock(self.host.libc_data + OFF_LIST_LOCK)
        for av in self.arenas():
            self.lock(av + AV_MUTEX)

    def malloc_fork_unlock_parent(self) -> None:
        """__malloc_fork_unlock_parent: the same locks released, in the same order."""
        if not self._initialized():
            return
        for av in self.arenas():
            self.unlock(av + AV_MUTEX)
        self.unlock(self.host.libc_data + OFF_LIST_LOCK)

    def malloc_fork_unlock_child(self) -> None:
        """__malloc_fork_unlock_child: locks re-initialised; every arena but the calling thread's
        goes on the free list (pushed in list order, so the last in the list comes out first)."""
        if not self._initialized():
            return
        ld, w = self.host.libc_data, self._w
        self.unlock(ld + OFF_FREE_LIST_LOCK)
        mine = self._r(self.a_thread_arena)
        if mine:
            w(mine + AV_ATTACHED_THREADS, 1)
        w(ld + OFF_FREE_LIST, 0)
        for av in self.arenas():
            self.unlock(av + AV_MUTEX)
            if av != mine:
                w(av + AV_ATTACHED_THREADS, 0)
                w(av + AV_NEXT_FREE, self._r(ld + OFF_FREE_LIST))
                w(ld + OFF_FREE_LIST, av)
        self.unlock(ld + OFF_LIST_LOCK)

    def arenas(self) -> list[int]:
        """Every arena, main_arena first, following ->next (newest arena first after main)."""
        out = [self.MAIN]
        av = self._r(self.MAIN + AV_NEXT)
        while av != self.MAIN and len(out) < 1 << 16:
            out.append(av)
            av = self._r(av + AV_NEXT)
        return out

    def free_list(self) -> list[int]:
        """The arena free list, head first."""
        out = []
        a = self._r(self.host.libc_data + OFF_FREE_LIST)
        while a and len(out) < 1 << 16:
            out.append(a)
            a = self._r(a + AV_NEXT_FREE)
        return out

    # -- thread exit ------------------------------------------------------------------------------
    def arena_thread_freeres(self) -> None:
        """__malloc_arena_thread_freeres: tcache_thread_shutdown, then the thread leaves its arena
        (onto the free list if it was the last thread attached)."""
        self.tcache_thread_shutdown()
        a = self._r(self.a_thread_arena)
        self._w(self.a_thread_arena, 0)
        if a:
            ld = self.host.libc_data
            self.lock(ld + OFF_FREE_LIST_LOCK)
            n = self._r(a + AV_ATTACHED_THREADS) - 1
            self._w(a + AV_ATTACHED_THREADS, n)
            if n == 0:
                self._w(a + AV_NEXT_FREE, self._r(ld + OFF_FREE_LIST))
                self._w(ld + OFF_FREE_LIST, a)
            self.unlock(ld + OFF_FREE_LIST_LOCK)

    def tcache_thread_shutdown(self) -> None:
        """tcache_thread_shutdown: disable the tcache and free every cached chunk and the tcache
        itself through __libc_free (now without a tcache: back into their arenas)."""
        tls = self.tls
        tc = self._r(tls + TLS_TCACHE)
        self._w8(tls + TLS_TCACHE_SHUTTING_DOWN, 1)
        if not tc:
            return
        self._w(tls + TLS_TCACHE, 0)
        for i in range(TCACHE_MAX_BINS):
            slot = tc + TC_ENTRIES + 8 * i
            while True:
                e = self._r(slot)
                if not e:
                    break
                if e & MALLOC_ALIGN_MASK:
                    self.malloc_printerr("tcache_thread_shutdown(): unaligned tcache chunk detected")
                self._w(slot, (e >> 12) ^ self._r(e))
                self.free(e)
        self.free(tc)


__all__ = ["ArenaMixin", "narenas_from_ncores"]
