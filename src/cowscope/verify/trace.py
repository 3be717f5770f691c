"""Backend-independent traces of a scenario: every call, its outcome, and per-region observations.

`TracedMachine` wraps any backend's Machine (the model's or `cowscope.linux.Machine`). The scenario
runs against the wrapper; its processes (`verify.process.TracedProcess`) record each operation with
addresses rewritten relative to the region they fall in ("R1+0x1000", "heap+0x2a0"), and at every
`checkpoint(label)` the machine observes each live process's regions page by page, naming PFNs by
per-checkpoint letters. Two traces of one scenario on two backends compare entry by entry
(`cowscope.verify.compare`).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import CowscopeError
from ..observe.backend import File, Machine, Process
from ..observe.pages import NOT_PRESENT, PAGECACHE, PRIVATE, SHARED, SWAPPED, ZERO, classify
from ..observe.records import (
    PAGE_SIZE,
    PM_FILE,
    PM_GUARD_REGION,
    PM_MMAP_EXCLUSIVE,
    PM_PRESENT,
    PM_SWAP,
    pagemap_pfns,
)
from .events import record_interval
from .exclusions import SMAPS_COMPARED
from .process import Region, TracedProcess, _bytes_text
from .replaced import is_arena


@dataclass
class Trace:
    """What one backend did: the op log and the checkpoint observations."""

    backend: str
    ops: list[tuple[str, str, tuple[Any, ...], Any]] = field(default_factory=list)
    checkpoints: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # failed expectations (facts)
    error: str | None = None  # an unexpected exception that ended the scenario, with its line
    outcome: str | None = None  # that exception as compared between backends (verify.outcome)
    needs_root: set[str] = field(default_factory=set)  # what facts read that only root can see
    skipped: str | None = None  # why this backend cannot run the scenario here (errors.Unsupported)
    kpage: bool = True
    marks: list[int] = field(default_factory=list)  # len(ops) at each checkpoint
    snapshots: list[Any] = field(default_factory=list)  # observe.snapshot.Snapshot per checkpoint
    addresses: dict[str, int] = field(default_factory=dict)  # region key -> its first address
    events_on: bool = False  # the backend's event log records (the model; linux.Machine(events=True))
    events: list[dict[str, list[tuple[str, int]]]] = field(default_factory=list)  # per checkpoint
    gup: list[set[str]] = field(default_factory=list)  # per checkpoint: regions populated via GUP
    raced: list[set[tuple[str, int]]] = field(default_factory=list)  # per checkpoint: see fork_race
    filebacked: set[str] = field(default_factory=set)  # file and shared regions (fault-around)
    # per checkpoint: process key -> (pid, {region key: (address, pages)}), where this backend had them
    places: list[dict[str, tuple[int, dict[str, tuple[int, int]]]]] = field(default_factory=list)


class TracedMachine:
    """Any backend's Machine, with every call logged and checkpoints observed."""

    def __init__(self, machine: Machine, backend: str, snapshots: bool = False) -> None:
        self._m = machine
        self.backend = backend
        self._snapshots = snapshots
        self._event_mark = 0
        self.gup: set[str] = set()  # regions populated through get_user_pages since the last checkpoint
        self.raced: set[tuple[str, int]] = set()  # (region, page) both sides of a fork wrote (fork_race)
        self.backend_is_linux = backend == "linux"
        self.trace = Trace(backend)
        self.procs: list[TracedProcess] = []
        self.thread_keys: dict[int, str] = {}  # tid -> the thread's history name (verify.thread)
        self.arena_keys: dict[int, str] = {}  # arena heap address -> its region key "A<n>"
        self._labels: dict[tuple[str, str], np.ndarray] = {}  # previous PFNs per (proc, region)
        self.trace.kpage = self._kpage_ok()
        self.trace.events_on = not isinstance(machine.events, list) and getattr(machine.events, "enabled", True)
        self._event_seq = len(machine.events) if self.trace.events_on else 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._m, name)

    def _kpage_ok(self) -> bool:
        return self._m.kpage_available and bool(self._m.zero_pfns)

    def _heap_of(self, p: Process) -> int:
        try:
            return int(p.brk())
        except CowscopeError:
            return 0

    def _add(self, proc: Process, key: str, parent: TracedProcess | None) -> TracedProcess:
        regions = [Region(r.key, r.addr, r.length, r.filebacked, r.guarded, r.kernel_placed)
                   for r in parent.regions] \
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
        return self.thread_keys.get(pid, f"pid?{pid}")

    def spawn(self, name: str = "app", image: Any = None) -> TracedProcess:
        """spawn, named by spawn order."""
        proc = self._m.spawn(name, image)
        n = sum(1 for p in self.procs if "." not in p.key)
        key = name if n == 0 else f"{name}{n}"
        self.trace.ops.append((key, "spawn", (name,), key))
        return self._add(proc, key, None)

    def create_file(self, path: str, data: bytes | None = None, size: int | None = None,
                    cached: bool = True) -> File:
        """create_file on the backend, logged."""
        self.trace.ops.append(("-", "create_file", (path, len(data or b""), size, cached), "ok"))
        return self._m.create_file(path, data=data, size=size, cached=cached)

    def pread(self, f: File, offset: int, n: int) -> bytes:
        """read(2) of a file, logged with what it read."""
        data = self._m.pread(f, offset, n)
        self.trace.ops.append(("-", "pread", (f.path, offset, n), _bytes_text(data)))
        return data

    def pwrite(self, f: File, offset: int, data: bytes) -> None:
        """write(2) to a file, logged."""
        self._m.pwrite(f, offset, data)
        self.trace.ops.append(("-", "pwrite", (f.path, offset, _bytes_text(bytes(data))), "ok"))

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
        """(state, mapcount, pfn) arrays of npages from addr in p; a swap entry (not a guard
        marker) has map count -1."""
        return self._classified(p, addr, npages)[1:]

    def _classified(self, p: TracedProcess, addr: int, npages: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                                                np.ndarray]:
        """(raw pagemap, state, mapcount, pfn) of npages from addr in p."""
        raw = p._p.pagemap_raw(addr, npages)
        pfns = pagemap_pfns(raw)
        kc = self._m.kpagecount_array(pfns) if self.trace.kpage else None
        st = classify(raw, kc, set(self._m.zero_pfns))
        swap = (st.state == SWAPPED) & ((np.asarray(raw, dtype=np.uint64) & np.uint64(PM_GUARD_REGION)) == 0)
        return raw, st.state, np.where(swap, -1, st.mapcount), st.pfn

    def tokens(self, p: TracedProcess, addr: int, npages: int) -> list[str]:
        """Per page: "-" none, "Z" zero page, "X" exclusive anon, "S<n>" shared anon, "F<n>" page
        cache (mapcount n), "W" swap entry (swapped out), "G" guard marker."""
        state, mc, _pfn = self.page_states(p, addr, npages)
        toks = [_token(int(s), int(c)) for s, c in zip(state, mc, strict=True)]
        if any(t[0] in "SF" for t in toks):
            self._root_only("map counts and the zero page (pagemap tells only present/exclusive)")
        return toks

    def pfns(self, p: TracedProcess, addr: int, npages: int) -> list[int]:
        """PFNs of npages from addr (0 when absent)."""
        self._root_only("PFNs")
        return [int(x) for x in self.page_states(p, addr, npages)[2]]

    def _root_only(self, what: str) -> None:
        """A fact reads `what`, which the kernel shows only to root: noted when not root, so that a
        failed fact is reported as needing root (`cowscope verify`), not as a kernel failure."""
        if self.backend_is_linux and not self.trace.kpage:
            self.trace.needs_root.add(what)

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
        places: dict[str, tuple[int, dict[str, tuple[int, int]]]] = {}
        self.trace.checkpoints.append((label, self.observe(places)))
        self.trace.places.append(places)
        if self.trace.events_on:
            self.trace.filebacked |= {r.key for tp in self.procs for r in tp.regions if r.filebacked}
            interval, self._event_seq = record_interval(self, self._event_seq)
            self.trace.events.append(interval)
            self.trace.gup.append(set(self.gup))
            self.trace.raced.append(set(self.raced))
        self.gup.clear()
        self.raced.clear()
        if self._snapshots:
            self.trace.snapshots.append(self._snapshot(label))
        self._m.checkpoint(label)

    def _snapshot(self, label: str) -> Any:
        """The backend's full views (observe.snapshot) with its events since the last checkpoint."""
        from ..observe.snapshot import take

        events = self._m.events
        since = list(events.since(self._event_mark))
        self._event_mark = len(events)
        for tp in self.procs:
            for r in tp.regions:
                self.trace.addresses.setdefault(r.key, r.addr)
            if tp.heap_base:
                self.trace.addresses.setdefault(f"heap:{tp.key}", tp.heap_base)
        return take(self._m, label, source=self.backend, events=since)

    def fork_race(self, tp: TracedProcess, stack: Region | None = None) -> None:
        """A fork by a process with threads: glibc's fork handlers write each arena's first page
        (its malloc_state: the lock) in the parent and in the child, and a thread that forks
        returns through its two top stack pages on both sides. The kernel runs both at once:
        which side writes first (copies) and which then reuses is the scheduler's choice."""
        for r in tp.regions:
            if is_arena(r.key):
                self.raced.add((r.key, 0))
        if stack is not None:
            self.raced |= {(stack.key, stack.npages - 1), (stack.key, stack.npages - 2)}

    def forget_frames(self, key: str) -> None:
        """Process `key` released its address space (exec): the PFNs its regions had say nothing
        about the frames its new ones get (a freed frame may come straight back)."""
        for k in [k for k in self._labels if k[0] == key]:
            del self._labels[k]

    def observe(self, places: dict[str, tuple[int, dict[str, tuple[int, int]]]] | None = None) -> dict[str, Any]:
        """Per process: state, exit status, per-region page tokens, PFN letters, VMAs; info figures.
        `places` gets each process's pid and each observed region's address and pages (not compared)."""
        letters: dict[int, str] = {}
        out: dict[str, Any] = {}
        zero = set(self._m.zero_pfns)
        places = {} if places is None else places

        for tp in self.procs:
            p = tp._p
            entry: dict[str, Any] = {"state": _state(p), "exit": p.exit_status}
            out[tp.key] = entry
            places[tp.key] = (p.pid, {})
            if not p.alive:
                continue
            smaps = p.smaps()
            regions: dict[str, Any] = {}
            for r in tp.regions + self._heap_region(tp):
                places[tp.key][1][r.key] = (r.addr, r.npages)
                raw, state, mc, pfn = self._classified(tp, r.addr, r.npages)
                prev = self._labels.get((tp.key, r.key))
                replaced = tp.replaced.get(r.key, set())
                toks, changed = [], []
                for i, (s, c, f) in enumerate(zip(state, mc, pfn, strict=True)):
                    tok = _token(int(s), int(c))
                    if self.trace.kpage and int(f) and int(f) not in zero:
                        tok += "." + letters.setdefault(int(f), _letter(len(letters)))
                    toks.append(tok)
                    changed.append(bool(prev is not None and ((i < len(prev) and prev[i] and f
                                                               and prev[i] != f) or i in replaced)))
                self._labels[(tp.key, r.key)] = pfn
                vmas = []
                for s in smaps:
                    if s.vma.end <= r.addr or s.vma.start >= r.addr + r.length:
                        continue
                    vmas.append({
                        "pages": ((s.vma.start - r.addr) // PAGE_SIZE, (s.vma.end - r.addr) // PAGE_SIZE),
                        "perms": s.vma.perms,
                        "vmflags": " ".join(s.vm_flags),
                        "thp_eligible": s.thp_eligible,
                        "smaps": {k: s.fields.get(k, 0) for k in SMAPS_COMPARED},
                    })
                # A page this process dropped (DONTNEED, munmap, ...) and faulted again may get
                # its old PFN back from the page allocator: then "replaced" is not decidable.
                regions[r.key] = {"pages": toks, "bits": pagemap_bits(raw), "moved": changed, "vmas": vmas,
                                  "recycled": r.key in tp.dropped, "guarded": r.guarded,
                                  "unplaced": r.kernel_placed,
                                  "filebacked": r.filebacked,
                                  "raced": sorted(i for k, i in self.raced if k == r.key),
                                  "accessed": sorted(tp.accessed.get(r.key, ()))}
            entry["regions"] = regions
            tp.dropped.clear()
            tp.replaced.clear()
            info: dict[str, Any] = {}
            try:
                st = p.status()
                info["status"] = {k: st.fields.get(k, 0) for k in ("VmRSS", "RssAnon", "RssFile",
                                                                   "RssShmem")}
                info["faults"] = p.fault_counts()
            except CowscopeError:
                pass
            entry["info"] = info
        return out


    def _heap_region(self, tp: TracedProcess) -> list[Region]:
        """The brk heap as a region (from the initial break to the current one), if it has pages."""
        if not tp.heap_base:
            return []
        end = int(tp._p.brk())
        return [Region("heap", tp.heap_base, end - tp.heap_base)] if end > tp.heap_base else []


def _state(p: Process) -> str:
    return "alive" if p.alive else p.state


def pagemap_bits(raw: np.ndarray) -> str:
    """Per page what pagemap tells anyone, root or not: "-" none, "X" present and exclusively
    mapped, "F" present with the file bit (page cache, and the huge zero page), "P" present
    otherwise (the zero page, a shared anon page), "W" a swap entry, "G" a guard marker."""
    pm = np.asarray(raw, dtype=np.uint64)
    def bit(b: int) -> np.ndarray:
        return (pm & np.uint64(b)) != 0
    present = bit(PM_PRESENT)
    out = np.full(len(pm), ord("-"), dtype=np.uint8)
    out[bit(PM_SWAP) & ~present] = ord("W")
    out[bit(PM_GUARD_REGION) & ~present] = ord("G")
    out[present] = ord("P")
    out[present & bit(PM_MMAP_EXCLUSIVE)] = ord("X")
    out[present & bit(PM_FILE)] = ord("F")
    return out.tobytes().decode("ascii")


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
        return "W" if mapcount < 0 else "G"
    return "?"


def _letter(n: int) -> str:
    """The n-th page name: A..Z, AA..ZZ, AAA.. (bijective base 26: never runs out)."""
    s = string.ascii_uppercase
    out = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        out = s[r] + out
    return out


def _diff_fields(have: dict[str, int], want: dict[str, int]) -> str:
    bad = [f"{k} {have[k]} (want {want[k]})" for k in want if have[k] != want[k]]
    return ", ".join(bad) if bad else "ok"
