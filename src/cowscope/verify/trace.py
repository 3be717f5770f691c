"""Backend-independent traces of a scenario: every call, its outcome, and per-region observations.

`TracedMachine` wraps any backend's Machine (the model's or `cowscope.linux.Machine`). The scenario
runs against the wrapper; it records each operation with addresses rewritten relative to the
region they fall in ("R1+0x1000", "heap+0x2a0"), and at every `checkpoint(label)` observes each
live process's regions page by page. Two traces of one scenario on two backends compare entry by
entry (cowscope.verify.compare). Processes are named by their history ("P", "P.1" = P's first
child, "P.1.1"), regions by creator and order ("P#1"), PFNs by per-checkpoint letters.
"""

from __future__ import annotations

import hashlib
import string
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import CowscopeError, SyscallError
from ..observe.pages import NOT_PRESENT, PAGECACHE, PRIVATE, SHARED, SWAPPED, ZERO, classify
from ..observe.records import PAGE_SIZE

#: smaps fields compared per VMA (kB). Referenced and LazyFree are excluded, see EXCLUSIONS.
SMAPS_COMPARED = ("Size", "Rss", "Pss", "Pss_Dirty", "Shared_Clean", "Shared_Dirty", "Private_Clean",
                  "Private_Dirty", "Anonymous", "AnonHugePages", "Swap", "Locked")

#: prot of the guard pages around each region (PROT_NONE).
GUARD_PROT = ""

#: What is never compared, and why (printed by `cowscope verify` and `run --on both`).
EXCLUSIONS = {
    "status / smaps_rollup / fault counts": "whole-process figures include the program image, libc "
    "text and the agent's own stack and buffers, which differ between the model's image and the "
    "agent binary; shown side by side, not compared (measured over the suite: minor-fault deltas "
    "between checkpoints agree in 93 of 138 intervals, the others differ by 1-5 faults of the "
    "agent's own code and stack)",
    "smaps Referenced": "young bits: the kernel clears them at fork in the child and reclaim ages "
    "them; informational only (kernel-conformance.md conventions)",
    "smaps LazyFree": "MADV_FREE pages reach LazyFree only when the per-CPU LRU batch drains "
    "(0 or all pages on the kernel, C33)",
    "VmFlags nh": "the agent puts MADV_NOHUGEPAGE on every region so THP never "
    "enters these scenarios (the kernel's THP mode is madvise; the model's regions have no flag)",
    "untouched file/shmem pages": "read fault-around maps 0-15 neighbouring page-cache pages "
    "opportunistically; only pages a process accessed are compared in file and shmem regions, and "
    "a page's map count is not compared where another process mapped it by fault-around",
    "heap VMA and its smaps": "the model lays the program out without ASLR, so its [heap] VMA "
    "merges with the program's .bss; the kernel randomizes the break (randomize_va_space=2) and "
    "the agent's .bss differs in size: heap pages are compared, the heap's VMA range and smaps are not",
    "smaps of a VMA reaching beyond its region": "a region whose edge pages became PROT_NONE merges "
    "with its guard pages and then possibly with a neighbouring mapping, whose placement differs "
    "between backends: such a VMA's range is compared up to the guard pages, its smaps are not "
    "the region's own (the region's pages still are compared)",
    "page replaced after a drop": "after a process drops pages of a region (DONTNEED, munmap, "
    "mremap, free, brk shrink) and faults them again, the page allocator may hand back the very "
    "same frame; whether a page was replaced since the last checkpoint is then not comparable "
    "(copy vs reuse without a drop still is)",
    "VMAs around malloc's mmap'd chunks": "a block malloc served by mmap has no guard pages: the "
    "VMAs around it depend on where each backend placed it among the other mappings; its pages are "
    "compared, the VMA layout and smaps of regions named P@n are not",
    "copy or reuse after MADV_FREE": "MADV_FREE queues the pages on a per-CPU lazyfree batch that "
    "holds a reference until it drains (other activity on the CPU drains it), so a later write "
    "fault may copy a page that is mapped only once; whether such a region's pages were replaced "
    "is not compared",
    "pids and addresses": "they differ between backends; compared as process history names and "
    "region-relative offsets",
}


#: Measured behaviours the suite does not run, and why (printed by `cowscope verify`).
NOT_COVERED = {
    "C36 DMA-pinned page copied eagerly at fork": "needs io_uring buffer registration (a long-term "
    "pin); the shared API has no pinning call",
    "C37/C38 transparent huge pages": "kept out: every region has MADV_NOHUGEPAGE and THP is in "
    "'madvise' mode, so no PMD faults, huge zero page or PMD split occur",
    "swap, KSM, userfaultfd-wp": "not available on this machine (no swap device, ksm/run=0); see "
    "kernel-facts.md section 9",
}


@dataclass
class Region:
    """A range a scenario mapped: its stable key, its address in this backend, its length."""

    key: str
    addr: int
    length: int
    filebacked: bool = False  # file or shared mapping: fault-around may map untouched pages
    guarded: bool = True  # between the tracer's PROT_NONE guard pages (not after a move)

    @property
    def npages(self) -> int:
        """Pages the region spans."""
        return (self.length + PAGE_SIZE - 1) // PAGE_SIZE


@dataclass
class Trace:
    """What one backend did: the op log and the checkpoint observations."""

    backend: str
    ops: list[tuple[str, str, tuple[Any, ...], Any]] = field(default_factory=list)
    checkpoints: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # failed expectations (facts)
    error: str | None = None  # an unexpected exception that ended the scenario
    kpage: bool = True
    marks: list[int] = field(default_factory=list)  # len(ops) at each checkpoint
    snapshots: list[Any] = field(default_factory=list)  # observe.snapshot.Snapshot per checkpoint
    addresses: dict[str, int] = field(default_factory=dict)  # region key -> its first address


def _bytes_text(data: bytes) -> str:
    if len(data) <= 16:
        return data.hex(" ") or "(empty)"
    uniq = set(data)
    if len(uniq) == 1:
        return f"{len(data)} x {data[0]:02x}"
    return f"{len(data)} bytes sha1 {hashlib.sha1(data).hexdigest()[:12]}"


class TracedProcess:
    """A process of the wrapped backend, named by history, logging every call."""

    def __init__(self, tm: TracedMachine, proc: Any, key: str, regions: list[Region], heap: int) -> None:
        self._tm = tm
        self._p = proc
        self.key = key
        self.regions = regions
        self.heap_base = heap
        self._nchildren = 0
        self._nmaps = 0
        self.accessed: dict[str, set[int]] = {}  # region key -> page indexes this process touched
        self.dropped: set[str] = set()  # regions whose pages may have been freed since the checkpoint

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

    def _do(self, op: str, args: tuple[Any, ...], fn: Any, shown: Any = None) -> Any:
        try:
            result = fn()
        except CowscopeError as exc:
            detail = type(exc).__name__
            if isinstance(exc, SyscallError):
                detail += f" errno {exc.errno}"
            self._tm.trace.ops.append((self.key, op, args, "!" + detail))
            raise
        self._tm.trace.ops.append((self.key, op, args, shown(result) if shown else result))
        return result

    # --- lifecycle -------------------------------------------------------------------------

    def fork(self) -> TracedProcess:
        """fork, logged with region-relative addresses."""
        self._nchildren += 1
        key = f"{self.key}.{self._nchildren}"
        child = self._do("fork", (), self._p.fork, lambda c: key)
        return self._tm._add(child, key, self)

    def vfork(self) -> TracedProcess:
        """vfork, logged with region-relative addresses."""
        self._nchildren += 1
        key = f"{self.key}.{self._nchildren}"
        child = self._do("vfork", (), self._p.vfork, lambda c: key)
        return self._tm._add(child, key, self)

    def exec(self, image: Any = None) -> None:
        """exec, logged with region-relative addresses."""
        self._do("exec", (), lambda: self._p.exec(image))
        self.regions = []
        self.accessed = {}
        self.heap_base = self._tm._heap_of(self._p)

    def exit(self, code: int = 0) -> None:
        """exit, logged with region-relative addresses."""
        self._do("exit", (code,), lambda: self._p.exit(code))

    def wait(self, child: TracedProcess | None = None) -> Any:
        """wait, logged with region-relative addresses."""
        def shown(res: Any) -> Any:
            """wait's result with the child's name."""
            pid, status = res
            return (self._tm.key_of(pid), status)
        return self._do("wait", (child.key if child else None,),
                        lambda: self._p.wait(child._p if child else None), shown)

    # --- memory ----------------------------------------------------------------------------

    def mmap(self, length: int, prot: str = "rw", shared: bool = False, file: Any = None,
             offset: int = 0, addr: int | None = None, fixed: bool = False) -> int:
        """mmap; without addr, between two PROT_NONE guard pages (same on every backend), so the
        region's VMA never merges with a neighbour and its smaps figures are its own."""
        self._nmaps += 1
        key = f"{self.key}#{self._nmaps}"
        args = (length, prot, shared, getattr(file, "path", None), offset, fixed)

        def call() -> int:
            """The mmap call(s) on the backend."""
            if addr is not None or fixed:
                return self._p.mmap(length, prot=prot, shared=shared, file=file, offset=offset,
                                    addr=addr, fixed=fixed)
            span = (length + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
            base = self._p.mmap(span + 2 * PAGE_SIZE, prot=GUARD_PROT)
            return self._p.mmap(length, prot=prot, shared=shared, file=file, offset=offset,
                                addr=base + PAGE_SIZE, fixed=True)

        a = self._do("mmap", args, call, lambda _a: key)
        self.regions = [r for r in self.regions if r.addr != a] + [
            Region(key, a, length, bool(file is not None or shared), addr is None and not fixed)]
        return a

    def mremap(self, addr: int, old_len: int, new_len: int, may_move: bool = True) -> int:
        """mremap, logged with region-relative addresses."""
        where = self.where(addr)
        self._drop(addr, old_len)
        new = self._do("mremap", (where, old_len, new_len, may_move),
                       lambda: self._p.mremap(addr, old_len, new_len, may_move=may_move),
                       lambda a: "moved" if a != addr else "in place")
        for r in self.regions:
            if r.addr == addr:
                r.guarded = r.guarded and new == addr and new_len <= r.length
                r.addr, r.length = new, new_len
        return new

    def munmap(self, addr: int, n: int) -> None:
        """munmap, logged with region-relative addresses; a region unmapped whole is forgotten."""
        self._drop(addr, n)
        self.regions = [r for r in self.regions if not (addr <= r.addr and r.addr + r.length <= addr + n)]
        self._do("munmap", (self.where(addr), n), lambda: self._p.munmap(addr, n))

    def mprotect(self, addr: int, n: int, prot: str) -> None:
        """mprotect, logged with region-relative addresses."""
        self._do("mprotect", (self.where(addr), n, prot), lambda: self._p.mprotect(addr, n, prot))

    def madvise(self, addr: int, n: int, advice: str) -> None:
        """madvise, logged with region-relative addresses."""
        if advice in ("dontneed", "free", "remove", "pageout", "guard_install", "guard_remove"):
            self._drop(addr, n)
        if advice == "free":
            self._tm.lazyfree.update(r.key for r in self.regions
                                     if r.addr < addr + n and addr < r.addr + r.length)
        if advice.startswith("populate"):
            self._mark(addr, n)
        self._do("madvise", (self.where(addr), n, advice), lambda: self._p.madvise(addr, n, advice))

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
        self._do("write", (self.where(addr), _bytes_text(bytes(data))), lambda: self._p.write(addr, data))

    def fill(self, addr: int, n: int, byte: int) -> None:
        """fill, logged with region-relative addresses."""
        self._mark(addr, n)
        self._do("fill", (self.where(addr), n, byte), lambda: self._p.fill(addr, n, byte))

    def touch(self, addr: int, n: int, write: bool = False) -> None:
        """touch, logged with region-relative addresses."""
        self._mark(addr, n)
        self._do("touch", (self.where(addr), n, write), lambda: self._p.touch(addr, n, write=write))

    def read_u64(self, addr: int) -> int:
        """read_u64, logged with region-relative addresses."""
        self._mark(addr, 8)
        return self._do("read_u64", (self.where(addr),), lambda: self._p.read_u64(addr))

    def write_u64(self, addr: int, value: int) -> None:
        """write_u64, logged with region-relative addresses."""
        self._mark(addr, 8)
        self._do("write_u64", (self.where(addr), value), lambda: self._p.write_u64(addr, value))

    def _forget_chunk(self, ptr: int) -> None:
        """Stop observing the mmap'd chunk region of block ptr (free/realloc unmapped it)."""
        self.regions = [r for r in self.regions
                        if not ("@" in r.key and r.addr == ptr & ~(PAGE_SIZE - 1))]

    def _chunk_region(self, ptr: int) -> int:
        """A block malloc served by mmap (outside the heap) becomes a region "KEY@n" of its own."""
        if ptr and self.where(ptr).startswith("mmap+"):
            self._nmaps += 1
            start = ptr & ~(PAGE_SIZE - 1)
            end = ptr + int(self._p.malloc_usable_size(ptr))
            length = (end - start + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
            self.regions.append(Region(f"{self.key}@{self._nmaps}", start, length, guarded=False))
        return ptr

    def malloc(self, n: int) -> int:
        """malloc, logged with region-relative addresses."""
        return self._chunk_region(self._do("malloc", (n,), lambda: self._p.malloc(n), self.where))

    def calloc(self, n: int, size: int) -> int:
        """calloc, logged with region-relative addresses."""
        return self._chunk_region(self._do("calloc", (n, size), lambda: self._p.calloc(n, size), self.where))

    def realloc(self, ptr: int, n: int) -> int:
        """realloc, logged with region-relative addresses."""
        self._drop(ptr, 1)
        self.dropped.add("heap")
        new = self._do("realloc", (self.where(ptr), n), lambda: self._p.realloc(ptr, n), self.where)
        if new != ptr:
            self._forget_chunk(ptr)
        return self._chunk_region(new)

    def memalign(self, alignment: int, n: int) -> int:
        """memalign, logged with region-relative addresses."""
        return self._chunk_region(self._do("memalign", (alignment, n), lambda: self._p.memalign(alignment, n),
                                           self.where))

    def free(self, ptr: int) -> None:
        """free, logged with region-relative addresses; a block's own mmap'd region goes with it."""
        self._drop(ptr, 1)
        self.dropped.add("heap")  # free may trim the top of the heap
        self._forget_chunk(ptr)
        self._do("free", (self.where(ptr),), lambda: self._p.free(ptr))

    def malloc_usable_size(self, ptr: int) -> int:
        """malloc_usable_size, logged with region-relative addresses."""
        return self._do("malloc_usable_size", (self.where(ptr),), lambda: self._p.malloc_usable_size(ptr))


class TracedMachine:
    """Any backend's Machine, with every call logged and checkpoints observed."""

    def __init__(self, machine: Any, backend: str, snapshots: bool = False) -> None:
        self._m = machine
        self.backend = backend
        self._snapshots = snapshots
        self._event_mark = 0
        self.lazyfree: set[str] = set()  # regions that had MADV_FREE (see EXCLUSIONS)
        self.backend_is_linux = backend == "linux"
        self.trace = Trace(backend)
        self.procs: list[TracedProcess] = []
        self._labels: dict[tuple[str, str], np.ndarray] = {}  # previous PFNs per (proc, region)
        self.trace.kpage = self._kpage_ok()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._m, name)

    def _kpage_ok(self) -> bool:
        return bool(getattr(self._m, "kpage_available", True)) and bool(self._m.zero_pfns)

    def _heap_of(self, p: Any) -> int:
        try:
            return int(p.brk())
        except (CowscopeError, AttributeError):
            return 0

    def _add(self, proc: Any, key: str, parent: TracedProcess | None) -> TracedProcess:
        regions = [Region(r.key, r.addr, r.length, r.filebacked, r.guarded) for r in parent.regions] \
            if parent else []
        heap = parent.heap_base if parent else self._heap_of(proc)
        tp = TracedProcess(self, proc, key, regions, heap)
        self.procs.append(tp)
        return tp

    def key_of(self, pid: int) -> str:
        """The history name of a pid."""
        for tp in self.procs:
            if tp._p.pid == pid:
                return tp.key
        return f"pid?{pid}"

    def spawn(self, name: str = "P", image: Any = None) -> TracedProcess:
        """spawn, named by spawn order."""
        proc = self._m.spawn(name, image) if image is not None else self._m.spawn(name)
        n = sum(1 for p in self.procs if "." not in p.key)
        key = name if n == 0 else f"{name}{n}"
        self.trace.ops.append((key, "spawn", (name,), key))
        return self._add(proc, key, None)

    def create_file(self, name: str, data: bytes | None = None, size: int | None = None) -> Any:
        """create_file on the backend."""
        if size is None:
            return self._m.create_file(name, data=data)
        return self._m.create_file(name, data=data, size=size)

    # --- expectations (facts a scenario asserts on every backend) -------------------------

    def expect(self, cond: bool, what: str) -> bool:
        """Record a failed fact unless cond."""
        if not cond:
            self.trace.failures.append(what)
        return bool(cond)

    def expect_eq(self, actual: Any, expected: Any, what: str) -> bool:
        """Record a failed fact unless actual == expected."""
        return self.expect(actual == expected, f"{what}: got {actual!r}, expected {expected!r}")

    def expect_raises(self, exc_type: type[BaseException], fn: Any, what: str) -> BaseException | None:
        """Record a failed fact unless fn raises exc_type; returns the exception."""
        try:
            fn()
        except exc_type as exc:
            return exc
        self.trace.failures.append(f"{what}: expected {exc_type.__name__}, nothing raised")
        return None

    # --- observations ----------------------------------------------------------------------

    def page_states(self, p: TracedProcess, addr: int, npages: int) -> tuple[np.ndarray, np.ndarray,
                                                                              np.ndarray]:
        """(state, mapcount, pfn) arrays of npages from addr in p."""
        raw = p._p.pagemap_raw(addr, npages)
        pfns = np.where((raw >> np.uint64(63)) != 0, (raw & np.uint64((1 << 55) - 1)).astype(np.int64), 0)
        kc = self._m.kpagecount_array(pfns) if self.trace.kpage else None
        st = classify(raw, kc, set(self._m.zero_pfns))
        return st.state, st.mapcount, st.pfn

    def tokens(self, p: TracedProcess, addr: int, npages: int) -> list[str]:
        """Per page: "-" none, "Z" zero page, "X" exclusive anon, "S<n>" shared anon, "F<n>" page
        cache (mapcount n), "G" swap/guard entry."""
        state, mc, _pfn = self.page_states(p, addr, npages)
        return [_token(int(s), int(c)) for s, c in zip(state, mc, strict=True)]

    def pfns(self, p: TracedProcess, addr: int, npages: int) -> list[int]:
        """PFNs of npages from addr (0 when absent)."""
        return [int(x) for x in self.page_states(p, addr, npages)[2]]

    def smaps_at(self, p: TracedProcess, addr: int) -> dict[str, int]:
        """The smaps fields (kB) of the VMA containing addr ({} if none)."""
        for s in p._p.smaps():
            if s.vma.start <= addr < s.vma.end:
                return dict(s.fields)
        return {}

    def vma_at(self, p: TracedProcess, addr: int) -> Any:
        """The smaps block of the VMA containing addr."""
        for s in p._p.smaps():
            if s.vma.start <= addr < s.vma.end:
                return s
        return None

    def expect_smaps(self, p: TracedProcess, addr: int, what: str, **kb: int) -> bool:
        """The region VMA's smaps: the given fields (kB) and 0 for the other core fields."""
        got = self.smaps_at(p, addr)
        core = ("Rss", "Pss", "Pss_Dirty", "Shared_Clean", "Shared_Dirty", "Private_Clean",
                "Private_Dirty", "Anonymous")
        want = {k: kb.get(k, 0) for k in core} | kb
        have = {k: got.get(k, 0) for k in want}
        return self.expect(have == want, f"{what}: smaps {_diff_fields(have, want)}")

    def checkpoint(self, label: str) -> None:
        """Observe every live process's regions (and forward the checkpoint to the backend)."""
        self.trace.marks.append(len(self.trace.ops))
        self.trace.checkpoints.append((label, self.observe()))
        if self._snapshots:
            self.trace.snapshots.append(self._snapshot(label))
        if hasattr(self._m, "checkpoint"):
            self._m.checkpoint(label)

    def _snapshot(self, label: str) -> Any:
        """The backend's full views (observe.snapshot) with its events since the last checkpoint."""
        from ..observe.snapshot import take

        events = getattr(self._m, "events", None)
        since = list(events.since(self._event_mark)) if events is not None and hasattr(events, "since") else []
        if events is not None:
            self._event_mark = len(events)
        for tp in self.procs:
            for r in tp.regions:
                self.trace.addresses.setdefault(r.key, r.addr)
            if tp.heap_base:
                self.trace.addresses.setdefault(f"heap:{tp.key}", tp.heap_base)
        return take(self._m, label, source=self.backend, events=since)

    def observe(self) -> dict[str, Any]:
        """Per process: state, exit status, per-region page tokens, PFN letters, VMAs; info figures."""
        letters: dict[int, str] = {}
        out: dict[str, Any] = {}
        zero = set(self._m.zero_pfns)

        for tp in self.procs:
            p = tp._p
            entry: dict[str, Any] = {"state": _state(p), "exit": getattr(p, "exit_status", None)}
            out[tp.key] = entry
            if not p.alive:
                continue
            smaps = p.smaps()
            regions: dict[str, Any] = {}
            for r in tp.regions + self._heap_region(tp):
                state, mc, pfn = self.page_states(tp, r.addr, r.npages)
                prev = self._labels.get((tp.key, r.key))
                toks, changed = [], []
                for i, (s, c, f) in enumerate(zip(state, mc, pfn, strict=True)):
                    tok = _token(int(s), int(c))
                    if self.trace.kpage and int(f) and int(f) not in zero:
                        tok += "." + letters.setdefault(int(f), _letter(len(letters)))
                    toks.append(tok)
                    changed.append(bool(prev is not None and i < len(prev) and prev[i] and f
                                        and prev[i] != f))
                self._labels[(tp.key, r.key)] = pfn
                vmas = []
                for s in smaps:
                    if s.vma.end <= r.addr or s.vma.start >= r.addr + r.length:
                        continue
                    vmas.append({
                        "pages": ((s.vma.start - r.addr) // PAGE_SIZE, (s.vma.end - r.addr) // PAGE_SIZE),
                        "perms": s.vma.perms,
                        "vmflags": " ".join(f for f in s.vm_flags if f != "nh"),
                        "smaps": {k: s.fields.get(k, 0) for k in SMAPS_COMPARED},
                    })
                # A page this process dropped (DONTNEED, munmap, ...) and faulted again may get
                # its old PFN back from the page allocator: then "replaced" is not decidable.
                regions[r.key] = {"pages": toks, "moved": changed, "vmas": vmas,
                                  "recycled": r.key in tp.dropped, "guarded": r.guarded,
                                  "lazyfree": r.key in self.lazyfree,
                                  "filebacked": r.filebacked,
                                  "accessed": sorted(tp.accessed.get(r.key, ()))}
            entry["regions"] = regions
            tp.dropped.clear()
            info: dict[str, Any] = {}
            try:
                st = p.status()
                info["status"] = {k: st.fields.get(k, 0) for k in ("VmRSS", "RssAnon", "RssFile",
                                                                   "RssShmem")}
                info["faults"] = p.fault_counts()
            except (CowscopeError, AttributeError):
                pass
            entry["info"] = info
        return out


    def _heap_region(self, tp: TracedProcess) -> list[Region]:
        """The brk heap as a region (from the initial break to the current one), if it has pages."""
        if not tp.heap_base:
            return []
        end = int(tp._p.brk())
        return [Region("heap", tp.heap_base, end - tp.heap_base)] if end > tp.heap_base else []


def _state(p: Any) -> str:
    st = getattr(p, "state", "?")
    return "alive" if st in ("R", "S", "D") else st


def _token(state: int, mapcount: int) -> str:
    if state == NOT_PRESENT:
        return "-"
    if state == ZERO:
        return "Z"
    if state == PRIVATE:
        return "X"
    if state == SHARED:
        return f"S{mapcount}"
    if state == PAGECACHE:
        return f"F{mapcount}"
    if state == SWAPPED:
        return "G"
    return "?"


def _letter(n: int) -> str:
    s = string.ascii_uppercase
    return s[n] if n < 26 else s[n // 26 - 1] + s[n % 26]


def _diff_fields(have: dict[str, int], want: dict[str, int]) -> str:
    bad = [f"{k} {have[k]} (want {want[k]})" for k in want if have[k] != want[k]]
    return ", ".join(bad) if bad else "ok"
