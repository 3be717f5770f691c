"""A traced process: every call of the wrapped backend's process, logged backend-independently.

Processes are named by their history ("P", "P.1" = P's first child, "P.1.1"), regions by creator
and order ("P#1", malloc's mmap'd chunks "P@n"), addresses as "REGION+off" / "heap+off". Each
region a scenario maps without an address lies between two PROT_NONE guard pages, the same on every
backend, so its VMA never merges with a neighbour.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CowscopeError, SyscallError
from ..observe.backend import ExitStatus, File, Mallinfo2, Process
from ..observe.records import PAGE_SIZE
from . import replaced
from .replaced import is_arena

if TYPE_CHECKING:
    from .thread import TracedThread
    from .trace import TracedMachine

#: HEAP_MAX_SIZE of glibc 2.36 on 64-bit: a non-main arena's heap is reserved at this alignment.
HEAP_MAX = 64 << 20
#: the size field's bits: the chunk belongs to a non-main arena / was mmap'd
NON_MAIN_ARENA, IS_MMAPPED = 0x4, 0x2
#: prot of the guard pages around each region (PROT_NONE).
GUARD_PROT = ""
#: where an unplaced region starts: a PTE table (2 MiB) boundary on every backend
REGION_ALIGN = 512 * PAGE_SIZE


@dataclass
class Region:
    """A range a scenario mapped: its stable key, its address in this backend, its length."""

    key: str
    addr: int
    length: int
    filebacked: bool = False  # file or shared mapping: fault-around may map untouched pages
    guarded: bool = True  # between the tracer's PROT_NONE guard pages (not after a move)
    kernel_placed: bool = False  # where it lies is a kernel's choice (an unguarded region it moved)

    @property
    def npages(self) -> int:
        """Pages the region spans."""
        return (self.length + PAGE_SIZE - 1) // PAGE_SIZE


def _bytes_text(data: bytes) -> str:
    if len(data) <= 16:
        return data.hex(" ") or "(empty)"
    uniq = set(data)
    if len(uniq) == 1:
        return f"{len(data)} x {data[0]:02x}"
    return f"{len(data)} bytes sha1 {hashlib.sha1(data).hexdigest()[:12]}"


class TracedProcess:
    """A process of the wrapped backend, named by history, logging every call."""

    def __init__(self, tm: TracedMachine, proc: Process, key: str, regions: list[Region], heap: int) -> None:
        self._tm = tm
        self._p = proc
        self.key = key
        self.regions = regions
        self.heap_base = heap
        self._nchildren = 0
        self._nmaps = 0
        self._nthreads = 0
        self.accessed: dict[str, set[int]] = {}  # region key -> page indexes this process touched
        self.dropped: set[str] = set()  # regions whose pages may have been freed since the checkpoint
        self.locked: set[str] = set()  # regions mlock'ed (mprotect of them populates, no faults)
        self.replaced: dict[str, set[int]] = {}  # region key -> pages a write gave a new frame

    def __getattr__(self, name: str) -> Any:
        return getattr(self._p, name)

    def __repr__(self) -> str:
        return f"<{self.key} pid {self._p.pid}>"

    # --- naming ----------------------------------------------------------------------------

    def where(self, addr: int) -> str:
        """addr as "REGION+off" / "heap+off" (backend independent) or hex when outside both."""
        for r in reversed(self.regions):  # the newest mapping wins where an old one was replaced
            if r.addr <= addr < r.addr + max(r.length, PAGE_SIZE):
                return f"{r.key}+{addr - r.addr:#x}"
        if self.heap_base and self.heap_base <= addr < self.heap_base + (1 << 30):
            return f"heap+{addr - self.heap_base:#x}"
        if addr == 0:
            return "NULL"
        return f"mmap+{addr & (PAGE_SIZE - 1):#x}"

    def _drop(self, addr: int | None = None, n: int = 0) -> None:
        """Pages of the regions overlapping [addr, addr+n) (all regions and the heap if addr is None)
        may be freed: a later fault may get the same PFN back, so "replaced" is not decidable."""
        for r in self.regions:
            if addr is None or (r.addr < addr + n and addr < r.addr + r.length):
                self.dropped.add(r.key)
        if addr is None or self.where(addr).startswith("heap"):
            self.dropped.add("heap")

    def _mark(self, addr: int, n: int) -> None:
        for r in self.regions:
            lo, hi = max(addr, r.addr), min(addr + n, r.addr + r.length)
            if lo < hi:
                pages = self.accessed.setdefault(r.key, set())
                pages.update(range((lo - r.addr) // PAGE_SIZE, (hi - 1 - r.addr) // PAGE_SIZE + 1))

    def _do(self, op: str, args: tuple[Any, ...], fn: Any, shown: Any = None, key: str | None = None) -> Any:
        """Run fn and log the call under `key` (a thread's name; the process's by default)."""
        key = self.key if key is None else key
        try:
            result = self._replacing_heap(fn) if op in replaced.MALLOC_OPS else fn()
        except CowscopeError as exc:
            detail = type(exc).__name__
            if isinstance(exc, SyscallError):
                detail += f" errno {exc.errno}"
            self._tm.trace.ops.append((key, op, args, "!" + detail))
            raise
        self._tm.trace.ops.append((key, op, args, shown(result) if shown else result))
        return result

    # --- lifecycle -------------------------------------------------------------------------

    def fork(self) -> TracedProcess:
        """fork, logged with region-relative addresses."""
        self._nchildren += 1
        key = f"{self.key}.{self._nchildren}"
        child = self._do("fork", (), self._p.fork, lambda c: key)
        self._tm.fork_race(self)
        return self._tm._add(child, key, self)

    def vfork(self) -> TracedProcess:
        """vfork, logged with region-relative addresses."""
        self._nchildren += 1
        key = f"{self.key}.{self._nchildren}"
        child = self._do("vfork", (), self._p.vfork, lambda c: key)
        return self._tm._add(child, key, self)

    def exec(self, image: Any = None, name: str | None = None) -> None:
        """exec, logged with region-relative addresses."""
        self._do("exec", (), lambda: self._p.exec(image, name))
        self.regions = []
        self.accessed = {}
        self.heap_base = self._tm._heap_of(self._p)
        self._tm.forget_frames(self.key)  # the old image's frames are free: any may come back

    def exit(self, code: int = 0) -> None:
        """exit, logged with region-relative addresses."""
        self._do("exit", (code,), lambda: self._p.exit(code))

    def wait(self, child: TracedProcess | None = None) -> tuple[int, ExitStatus]:  # type: ignore[override]
        """wait, logged with region-relative addresses."""
        def shown(res: Any) -> Any:
            """wait's result with the child's name."""
            pid, status = res
            return (self._tm.key_of(pid), status)
        return self._do("wait", (child.key if child else None,),
                        lambda: self._p.wait(child._p if child else None), shown)

    # --- threads ---------------------------------------------------------------------------

    def pthread_create(self) -> TracedThread:
        """pthread_create from the initial thread: the thread is named "KEY/t<n>" (verify.thread)."""
        from .thread import TracedThread  # it builds on this module

        self._nthreads += 1
        key = f"{self.key}/t{self._nthreads}"
        t = self._do("pthread_create", (), self._p.pthread_create, lambda _t: key)
        return TracedThread(self, t, key)

    def pthread_join(self, thread: TracedThread) -> None:
        """pthread_join from the initial thread, logged with the thread's name."""
        self._do("pthread_join", (thread.key,), lambda: self._p.pthread_join(thread._t))

    # --- memory ----------------------------------------------------------------------------

    def mmap(self, length: int, prot: str = "rw", shared: bool = False, file: File | None = None,
             offset: int = 0, addr: int | None = None, fixed: bool = False, populate: bool = False) -> int:
        """mmap; without addr, between PROT_NONE guard pages (same on every backend), so the
        region's VMA never merges with a neighbour and its smaps figures are its own, and starting
        on a 2 MiB boundary: where a VMA starts within its PTE table decides the fault-around
        window, so both backends place it alike."""
        return self._mmap(length, prot, shared, file, offset, addr, fixed, populate)

    def mmap_aligned(self, length: int, align: int, prot: str = "rw") -> int:
        """A private anonymous guarded region whose start lies on an `align` boundary (2 MiB for
        huge pages) on every backend."""
        return self._mmap(length, prot, False, None, 0, None, False, False, align)

    def _mmap(self, length: int, prot: str, shared: bool, file: File | None, offset: int,
              addr: int | None, fixed: bool, populate: bool, align: int = 0) -> int:
        self._nmaps += 1
        key = f"{self.key}#{self._nmaps}"
        args = (length, prot, shared, getattr(file, "path", None), offset, fixed) + \
            (("populate",) if populate else ()) + ((align,) if align else ())

        def call() -> int:
            """The mmap call(s) on the backend."""
            if addr is not None or fixed:
                return self._p.mmap(length, prot=prot, shared=shared, file=file, offset=offset,
                                    addr=addr, fixed=fixed, populate=populate)
            base, reserved, start = self._reserve(length, align)
            try:
                return self._p.mmap(length, prot=prot, shared=shared, file=file, offset=offset,
                                    addr=start, fixed=True, populate=populate)
            except SyscallError:  # a failed mmap changes nothing: the reservation goes too
                self._p.munmap(base, reserved)
                raise

        a = self._do("mmap", args, call, lambda _a: key)
        self.regions = [r for r in self.regions if r.addr != a] + [
            Region(key, a, length, bool(file is not None or shared), addr is None and not fixed,
                   addr is not None and not fixed and a != addr)]
        if populate:
            self._mark(a, length)
            self._gup(a, length)
        return a

    def _reserve(self, length: int, align: int = 0) -> tuple[int, int, int]:
        """A PROT_NONE reservation with room for `length` bytes starting on an `align` (2 MiB)
        boundary between guard pages: (its base, its length, that start)."""
        span = (length + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
        step = align or REGION_ALIGN
        reserved = span + 2 * PAGE_SIZE + step
        base = self._p.mmap(reserved, prot=GUARD_PROT)
        return base, reserved, (base + PAGE_SIZE + step - 1) // step * step

    def _keys(self, addr: int, length: int) -> set[str]:
        """The regions [addr, addr + length) overlaps."""
        return {r.key for r in self.regions if r.addr < addr + length and addr < r.addr + r.length}

    def _gup(self, addr: int, length: int) -> None:
        """Regions faulted in through get_user_pages in this interval (no fault tracepoint fires)."""
        self._tm.gup.update(self._keys(addr, length))


    def mremap(self, addr: int, old_len: int, new_len: int, may_move: bool = True,
               new_addr: int | None = None) -> int:
        """mremap, logged with region-relative addresses. A guarded region that grows has to move
        (its guard page is in the way): the tracer moves it with MREMAP_FIXED to a new 2 MiB
        aligned place between guard pages, as mmap places regions, so where it lands (what it
        merges with, its fault-around window) is the same on every backend. A region without
        guards (placed by the scenario) grows where the kernel decides; `new_addr` is passed on."""
        where = self.where(addr)
        guarded = any(r.addr == addr and r.guarded for r in self.regions)
        self._drop(addr, old_len)
        fixed, reservation = new_addr, None
        if new_addr is None and guarded and may_move and new_len > old_len:
            *reservation, fixed = self._reserve(new_len)

        def call() -> int:
            """The mremap on the backend (a failed one gives the tracer's reservation back)."""
            try:
                return self._p.mremap(addr, old_len, new_len, may_move=may_move, new_addr=fixed)
            except SyscallError:
                if reservation:
                    self._p.munmap(*reservation)
                raise

        def shown(a: int) -> str:
            """The outcome as compared."""
            if not guarded and new_addr is None and new_len > old_len:
                return "grown (placement decides whether in place)"
            return "moved" if a != addr else "in place"
        args = (where, old_len, new_len, may_move) + (() if new_addr is None else (self.where(new_addr),))
        new = self._do("mremap", args, call, shown)
        for r in self.regions:
            if r.addr == addr:
                r.kernel_placed = r.kernel_placed or (not r.guarded and new_addr is None and new != addr)
                r.guarded = r.guarded and new_addr is None and (new != addr or new_len <= r.length)
                r.addr, r.length = new, new_len
        return new

    def munmap(self, addr: int, length: int) -> None:
        """munmap, logged with region-relative addresses; a region unmapped whole is forgotten."""
        self._drop(addr, length)
        self.regions = [r for r in self.regions if not (addr <= r.addr and r.addr + r.length <= addr + length)]
        self._do("munmap", (self.where(addr), length), lambda: self._p.munmap(addr, length))

    def mprotect(self, addr: int, length: int, prot: str) -> None:
        """mprotect, logged with region-relative addresses."""
        if self._keys(addr, length) & self.locked:
            self._gup(addr, length)  # a VM_LOCKED range is populated again by mprotect, through GUP
        self._do("mprotect", (self.where(addr), length, prot), lambda: self._p.mprotect(addr, length, prot))

    def madvise(self, addr: int, length: int, advice: str) -> None:
        """madvise, logged with region-relative addresses."""
        if advice in ("dontneed", "free", "remove", "pageout", "guard_install", "guard_remove"):
            self._drop(addr, length)
        if advice.startswith("populate"):
            self._mark(addr, length)
            self._gup(addr, length)
        if advice == "unmergeable":  # break_ksm faults KSM pages back from inside the call, as GUP does
            self._gup(addr, length)
        self._do("madvise", (self.where(addr), length, advice), lambda: self._p.madvise(addr, length, advice))

    def mlock(self, addr: int, length: int) -> None:
        """mlock, logged with region-relative addresses (it populates, through get_user_pages: pages
        count as accessed, and no fault tracepoint fires)."""
        self._mark(addr, length)
        self._gup(addr, length)
        self.locked |= self._keys(addr, length)
        self._do("mlock", (self.where(addr), length), lambda: self._p.mlock(addr, length))

    def munlock(self, addr: int, length: int) -> None:
        """munlock, logged with region-relative addresses."""
        self.locked -= self._keys(addr, length)
        self._do("munlock", (self.where(addr), length), lambda: self._p.munlock(addr, length))

    def brk(self, new_end: int | None = None) -> int:
        """brk, logged with region-relative addresses."""
        self.dropped.add("heap")
        return self._do("brk", (None if new_end is None else self.where(new_end),),
                        lambda: self._p.brk(new_end), self.where)

    def sbrk(self, delta: int) -> int:
        """sbrk, logged with region-relative addresses."""
        self.dropped.add("heap")
        return self._do("sbrk", (delta,), lambda: self._p.sbrk(delta), self.where)

    def read(self, addr: int, n: int) -> bytes:
        """read, logged with region-relative addresses."""
        self._mark(addr, n)
        return self._do("read", (self.where(addr), n), lambda: self._p.read(addr, n), _bytes_text)

    def write(self, addr: int, data: bytes) -> None:
        """write, logged with region-relative addresses."""
        self._mark(addr, len(data))
        self._replacing(addr, len(data), lambda: self._do("write", (self.where(addr), _bytes_text(bytes(data))),
                                                           lambda: self._p.write(addr, data)))

    def fill(self, addr: int, length: int, byte: int) -> None:
        """fill, logged with region-relative addresses."""
        self._mark(addr, length)
        self._replacing(addr, length, lambda: self._do("fill", (self.where(addr), length, byte),
                                                        lambda: self._p.fill(addr, length, byte)))

    def touch(self, addr: int, length: int, write: bool = False) -> None:
        """touch, logged with region-relative addresses."""
        self._mark(addr, length)
        self._replacing(addr, length if write else 0, lambda: self._do(
            "touch", (self.where(addr), length, write), lambda: self._p.touch(addr, length, write=write)))

    def read_u64(self, addr: int) -> int:
        """read_u64, logged with region-relative addresses."""
        self._mark(addr, 8)
        return self._do("read_u64", (self.where(addr),), lambda: self._p.read_u64(addr))

    def write_u64(self, addr: int, value: int) -> None:
        """write_u64, logged with region-relative addresses."""
        self._mark(addr, 8)
        self._replacing(addr, 8, lambda: self._do("write_u64", (self.where(addr), value),
                                                   lambda: self._p.write_u64(addr, value)))

    def _replacing(self, addr: int, length: int, call: Any) -> Any:
        """Run a write of [addr, addr+length), noting the pages of this process's regions it gave a
        new frame (verify.replaced: the frame a checkpoint sees may be the old one again)."""
        if not length or not self._tm.trace.kpage:
            return call()
        return replaced.noting(self, replaced.spans(self.regions, addr, length), call)

    def _replacing_heap(self, call: Any) -> Any:
        """Run a malloc call, noting the heap and arena pages its own writes gave a new frame."""
        if not self._tm.trace.kpage or not self._p.alive:
            return call()
        try:
            heap = self._tm._heap_region(self)
        except CowscopeError:  # suspended in vfork: the call itself says so
            return call()
        return replaced.noting(self, replaced.whole(heap + [r for r in self.regions if is_arena(r.key)]), call)

    def _forget_chunk(self, ptr: int) -> None:
        """Stop observing the mmap'd chunk region of block ptr (free/realloc unmapped it)."""
        self.regions = [r for r in self.regions
                        if not ("@" in r.key and r.addr == ptr & ~(PAGE_SIZE - 1))]

    def _block_where(self, ptr: int) -> str:
        """A block malloc returned, named (see _arena_region)."""
        self._arena_region(ptr)
        return self.where(ptr)

    def _arena_region(self, ptr: int) -> None:
        """A block outside the known regions that belongs to a non-main arena makes the arena's heap
        (its whole 64 MiB reservation) a region, named "A<n>" in the machine's order of discovery."""
        if ptr and self.where(ptr).startswith("mmap+"):
            size = int(self._p.read_u64(ptr - 8))  # the chunk's size field and its A|M|P bits
            if size & NON_MAIN_ARENA and not size & IS_MMAPPED:
                heap = ptr & ~(HEAP_MAX - 1)
                names = self._tm.arena_keys
                key = names.setdefault(heap, f"A{len(names) + 1}")
                self.regions.append(Region(key, heap, HEAP_MAX, guarded=False))

    def _chunk_region(self, ptr: int) -> int:
        """A block malloc served by mmap (outside the heap) becomes a region "KEY@n" of its own."""
        if ptr and self.where(ptr).startswith("mmap+"):
            self._nmaps += 1
            start = ptr & ~(PAGE_SIZE - 1)
            end = ptr + int(self._p.malloc_usable_size(ptr))
            length = (end - start + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
            self.regions.append(Region(f"{self.key}@{self._nmaps}", start, length, guarded=False))
        return ptr

    def malloc(self, size: int) -> int:
        """malloc, logged with region-relative addresses."""
        return self._chunk_region(self._do("malloc", (size,), lambda: self._p.malloc(size), self._block_where))

    def calloc(self, n: int, size: int) -> int:
        """calloc, logged with region-relative addresses."""
        return self._chunk_region(self._do("calloc", (n, size), lambda: self._p.calloc(n, size), self._block_where))

    def realloc(self, ptr: int, size: int) -> int:
        """realloc, logged with region-relative addresses."""
        self._drop(ptr, 1)
        self.dropped.add("heap")
        new = self._do("realloc", (self.where(ptr), size), lambda: self._p.realloc(ptr, size), self._block_where)
        return self._realloced(ptr, new)

    def _realloced(self, ptr: int, new: int) -> int:
        """After realloc(ptr) returned new (from this process or one of its threads): a moved
        block's mmap'd region is forgotten, one resized in place (mremap) takes its new length,
        and new's own mmap'd chunk becomes a region."""
        if new != ptr:
            self._forget_chunk(ptr)
        elif new:
            for r in self.regions:
                if "@" in r.key and r.addr == new & ~(PAGE_SIZE - 1):
                    end = new + int(self._p.malloc_usable_size(new))
                    r.length = (end - r.addr + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
        return self._chunk_region(new)

    def memalign(self, alignment: int, size: int) -> int:
        """memalign, logged with region-relative addresses."""
        return self._chunk_region(self._do("memalign", (alignment, size), lambda: self._p.memalign(alignment, size),
                                           self._block_where))

    def free(self, ptr: int) -> None:
        """free, logged with region-relative addresses; a block's own mmap'd region goes with it."""
        self._drop(ptr, 1)
        self.dropped.add("heap")  # free may trim the top of the heap
        self._forget_chunk(ptr)
        self._do("free", (self.where(ptr),), lambda: self._p.free(ptr))

    def malloc_usable_size(self, ptr: int) -> int:
        """malloc_usable_size, logged with region-relative addresses."""
        return self._do("malloc_usable_size", (self.where(ptr),), lambda: self._p.malloc_usable_size(ptr))

    def posix_memalign(self, alignment: int, size: int) -> tuple[int, int]:
        """posix_memalign, logged with region-relative addresses: (error, pointer)."""
        err, ptr = self._do("posix_memalign", (alignment, size), lambda: self._p.posix_memalign(alignment, size),
                            lambda r: (r[0], self._block_where(r[1])))
        return err, self._chunk_region(ptr)

    def aligned_alloc(self, alignment: int, size: int) -> int:
        """aligned_alloc, logged with region-relative addresses."""
        return self._chunk_region(self._do("aligned_alloc", (alignment, size),
                                           lambda: self._p.aligned_alloc(alignment, size), self._block_where))

    def mallopt(self, param: int, value: int) -> int:
        """mallopt, logged (it may consolidate and trim the heap)."""
        self.dropped.add("heap")
        return self._do("mallopt", (param, value), lambda: self._p.mallopt(param, value))

    def malloc_trim(self, pad: int = 0) -> int:
        """malloc_trim, logged (it gives heap pages back)."""
        self.dropped.add("heap")
        return self._do("malloc_trim", (pad,), lambda: self._p.malloc_trim(pad))

    def mallinfo2(self) -> Mallinfo2:
        """mallinfo2, logged with its figures (the same allocator on both sides: they compare)."""
        return self._do("mallinfo2", (), self._p.mallinfo2)
