"""glibc 2.36's threads (nptl) as they touch memory: stacks, the stack cache, TLS and malloc.

`pthread_create` (allocate_stack): a stack from the cache (the newest one of the right size),
else a fresh `mmap` of stacksize + guard, PROT_NONE with MAP_STACK, then everything above the
guard page mprotected read-write; the thread descriptor (TCB) at the top, libc's static TLS block
just below it (errno, tcache, thread_arena), and for a fresh stack a DTV `calloc`ed by the
creating thread (17 x 16 bytes: a program with one TLS module, libc's). The first
pthread_create clears `__libc_single_threaded` for good: malloc takes arena locks from then on.

Thread exit (start_thread): `__libc_thread_freeres` runs malloc's `tcache_thread_shutdown`
(every cached chunk back to its arena) and puts the thread's arena on the free list when it was
the last one attached; `advise_stack_range` MADV_DONTNEEDs the stack below 16 KiB under the last
frame; the kernel clears the TCB's tid. `pthread_join` moves the stack to the cache (40 MiB of
stacks at most: the oldest beyond that are freed, their DTV `free`d by the joining thread and
the stack unmapped). fork from any thread: the child's only thread is the caller; the other
threads' stacks stay mapped and go to the child's stack cache (`reclaim_stacks`).

Measured on glibc 2.36 / Linux 6.18 (RLIMIT_STACK 8 MiB): a thread's mapping is 8 MiB + 4 KiB,
the guard `---p` at the bottom (VmFlags `mr mw me nh`), the stack `rw-p` (`rd wr mr mw me ac
nh`); the TCB at top - 0x940, libc's TLS block at top - 0x9d8; a thread that only called malloc
has its two top pages resident. The lists themselves live in ld.so's and the descriptors'
memory in glibc; here they are Python lists, copied at fork as the memory would be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

PAGE = 4096
DEFAULT_STACKSIZE = 8 << 20         # RLIMIT_STACK's soft limit (8 MiB), the default attribute
GUARDSIZE = PAGE
TLS_TCB_SIZE = 0x940                # sizeof(struct pthread): pd = top - TLS_TCB_SIZE
LIBC_TLS_BELOW_TCB = 0x98           # libc's static TLS block at pd - 0x98
TCB_TID = 0x2D0                     # offsetof(struct pthread, tid): cleared by the kernel at exit
DTV_NMEMB, DTV_ENTRY = 17, 16       # calloc(dtv_length + 2, sizeof(dtv_t)), dtv_length = 1 + 14
STACK_CACHE_MAXSIZE = 40 << 20      # __nptl_stack_cache_maxsize
PTHREAD_STACK_MIN = 16384
LIBC_TLS_BLOCK = 0x98               # bytes of libc's TLS block re-initialised for a new thread
#: libc .data offsets (from the first rw page, as ptmalloc's layout): __nptl_nthreads
OFF_NPTL_NTHREADS = 0x1D3288 - 0x1D3000
OFF_SINGLE_THREADED = 0x1DB5D8 - 0x1D3000


@dataclass
class Stack:
    """One thread stack block: the mapping (guard page included) and the DTV made for it."""

    base: int
    size: int
    dtv: int = 0               # the calloc'ed block (dtv[-1]); 0 for none

    @property
    def top(self) -> int:
        """One past the highest byte: the TCB sits just below."""
        return self.base + self.size

    @property
    def tcb(self) -> int:
        """struct pthread (the thread pointer)."""
        return self.top - TLS_TCB_SIZE

    @property
    def tls(self) -> int:
        """libc's static TLS block of the thread on this stack."""
        return self.tcb - LIBC_TLS_BELOW_TCB

    @property
    def frames(self) -> int:
        """The page holding the thread's first frames (below the TCB page)."""
        return self.top - 2 * PAGE


@dataclass
class PThread:
    """A thread as glibc knows it: its id, stack (None: the process's initial thread), TLS."""

    tid: int
    tls: int
    stack: Stack | None = None
    state: str = "running"     # "running", "exited" (not joined yet), "joined"


@dataclass
class Nptl:
    """One process's threads and stack cache, working through its allocator host.

    `alloc_for(tls)` gives the allocator as the thread with that TLS block calls it (ptmalloc's
    `for_thread`); `host` maps, protects and writes memory (a model Process or a FlatHost)."""

    host: object
    alloc_for: Callable[[int], object]
    main: PThread
    threads: list[PThread] = field(default_factory=list)      # live, the initial thread first
    used: list[Stack] = field(default_factory=list)           # GL(dl_stack_used), newest first
    cache: list[Stack] = field(default_factory=list)          # GL(dl_stack_cache), newest first
    actsize: int = 0                                          # GL(dl_stack_cache_actsize)
    stacksize: int = DEFAULT_STACKSIZE

    def __post_init__(self) -> None:
        if not self.threads:
            self.threads = [self.main]

    # -- pthread_create -----------------------------------------------------------------------------
    def create(self, creator: PThread, tid: int) -> PThread:
        """pthread_create from `creator`: a stack (cached or fresh), the TCB and TLS written,
        the process marked multi-threaded. Returns the new thread (it starts running at once:
        its first frames are written)."""
        h, ld = self.host, self.host.libc_data
        if h.read(ld + OFF_SINGLE_THREADED, 1) != b"\0":
            h.write(ld + OFF_SINGLE_THREADED, b"\0")          # late_init, then single = 0
        size = self.stacksize + GUARDSIZE
        stack = self.get_cached_stack(size)
        if stack is None:
            stack = self._fresh_stack(creator, size)
        self.used.insert(0, stack)
        h.fill(stack.tls, LIBC_TLS_BLOCK, 0)                    # _dl_allocate_tls_init
        h.write_u64(stack.tcb, stack.tcb)                       # header.self, tid, start routine...
        h.write(stack.tcb + TCB_TID, tid.to_bytes(4, "little"))
        nthreads = ld + OFF_NPTL_NTHREADS
        h.write(nthreads, (int.from_bytes(h.read(nthreads, 4), "little") + 1).to_bytes(4, "little"))
        t = PThread(tid, stack.tls, stack)
        self.threads.append(t)
        h.write_u64(stack.frames + PAGE - 8, 0)                 # start_thread's first frame
        return t

    def _fresh_stack(self, creator: PThread, size: int) -> Stack:
        """mmap PROT_NONE with MAP_STACK, mprotect all but the guard page, calloc the DTV."""
        h = self.host
        base = h.mmap_anon(size, "", stack=True)
        h.mprotect(base + GUARDSIZE, size - GUARDSIZE, "rw")
        stack = Stack(base, size)
        dtv = self.alloc_for(creator.tls).calloc(DTV_NMEMB, DTV_ENTRY)
        if dtv:
            h.write_u64(dtv, DTV_NMEMB - 2)                     # dtv[-1].counter = dtv_length
            stack.dtv = dtv
        return stack

    def get_cached_stack(self, size: int) -> Stack | None:
        """get_cached_stack: the first cached stack of exactly `size`, else the smallest larger one
        (not more than 4 x size); the DTV is cleared for reuse."""
        best = None
        for s in self.cache:
            if s.size >= size:
                if s.size == size:
                    best = s
                    break
                if best is None or best.size > s.size:
                    best = s
        if best is None or best.size > 4 * size:
            return None
        self.cache.remove(best)
        self.actsize -= best.size
        if best.dtv:
            self.host.fill(best.dtv + DTV_ENTRY, (DTV_NMEMB - 1) * DTV_ENTRY, 0)
        return best

    # -- exit and join ----------------------------------------------------------------------------
    def exit(self, t: PThread) -> None:
        """pthread_exit / return from the start routine: malloc's thread freeres, the stack below
        the last frames given back, tid cleared by the kernel (CLONE_CHILD_CLEARTID)."""
        alloc = self.alloc_for(t.tls)
        freeres = getattr(alloc, "arena_thread_freeres", None)
        if freeres is not None:
            freeres()
        h, ld = self.host, self.host.libc_data
        nthreads = ld + OFF_NPTL_NTHREADS
        h.write(nthreads, (int.from_bytes(h.read(nthreads, 4), "little") - 1).to_bytes(4, "little"))
        assert t.stack is not None
        freesize = t.stack.frames - t.stack.base
        if freesize > PTHREAD_STACK_MIN:
            h.madvise(t.stack.base, freesize - PTHREAD_STACK_MIN, "dontneed")
        h.write(t.stack.tcb + TCB_TID, b"\0\0\0\0")
        t.state = "exited"
        self.threads.remove(t)

    def join(self, joiner: PThread, t: PThread) -> None:
        """pthread_join of an exited thread: its stack goes to the cache (queue_stack), which
        frees the oldest stacks beyond 40 MiB (their DTV free()d by the joiner, then munmap)."""
        assert t.stack is not None
        stack = t.stack
        self.used.remove(stack)
        self.host.write_u64(stack.tcb + 8, 0)                   # cancelhandling, list links
        self.cache.insert(0, stack)
        self.actsize += stack.size
        t.state = "joined"
        if self.actsize > STACK_CACHE_MAXSIZE:
            self.free_stacks(joiner, STACK_CACHE_MAXSIZE)

    def free_stacks(self, caller: PThread, limit: int) -> None:
        """__nptl_free_stacks: free cached stacks from the oldest until at most `limit` bytes."""
        for s in list(reversed(self.cache)):
            self.cache.remove(s)
            self.actsize -= s.size
            if s.dtv:
                self.alloc_for(caller.tls).free(s.dtv)
            self.host.munmap(s.base, s.size)
            if self.actsize <= limit:
                break

    # -- fork -------------------------------------------------------------------------------------
    def fork_child(self, host: object, alloc_for: Callable[[int], object], caller: PThread,
                   child_tid: int) -> Nptl:
        """The child's view after fork from `caller` (reclaim_stacks): one thread, the caller's
        copy; every other thread's stack marked free (tid 0, written in the child) and put at the
        head of the cache, no stack freed yet; __nptl_nthreads = 1."""
        me = PThread(child_tid, caller.tls, caller.stack)
        others = [s for s in self.used if s is not caller.stack]
        for s in others:
            host.write(s.tcb + TCB_TID, b"\0\0\0\0")
        host.write(host.libc_data + OFF_NPTL_NTHREADS, (1).to_bytes(4, "little"))
        used = [caller.stack] if caller.stack is not None else []
        return Nptl(host, alloc_for, me, [me], used, others + list(self.cache),
                    self.actsize + sum(s.size for s in others), self.stacksize)

    def thread(self, tid: int) -> PThread | None:
        """The live thread with this tid."""
        return next((t for t in self.threads if t.tid == tid), None)
