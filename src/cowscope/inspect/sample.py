"""One sample of a process tree: per-process and per-mapping figures, page classes and tree totals."""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import ProcessGone
from ..observe import procfs
from ..observe.pages import PageStates
from ..observe.pages import classify as classify_states
from ..observe.procfs import SPECIAL_MAPPINGS, USER_SPACE_END, PagemapReader, ProcPermissionError
from ..observe.records import PAGE_SIZE, MapsEntry, SmapsEntry
from . import classify as cl
from .tree import Missed, discover

KB = PAGE_SIZE // 1024
CLASS_FIELDS = ("shared_with_parent_kb", "sibling_shared_kb", "copied_kb", "new_kb")
MODES = ("auto", "exact", "estimate", "summary")
#: Mappings larger than this (16 GiB) are not read page by page (sparse reservations of huge VMAs).
MAX_MAPPING_PAGES = 1 << 22


@dataclass
class MappingFigures:
    """Figures of one mapping (VMA) of one process, in kB."""

    start: int
    end: int
    perms: str
    path: str
    rss_kb: int = 0
    pss_kb: int = 0
    uss_kb: int = 0
    swap_kb: int = 0
    zero_kb: int | None = None
    shared_with_parent_kb: int | None = None
    sibling_shared_kb: int | None = None
    copied_kb: int | None = None
    new_kb: int | None = None
    shared_in_tree_kb: int | None = None
    codes: np.ndarray | None = field(default=None, repr=False)  # per-page class codes (not serialised)
    states: PageStates | None = field(default=None, repr=False)  # observe.pages states (with states=True)

    @property
    def label(self) -> str:
        """Short name: the path, or [anon]."""
        return self.path or "[anon]"

    def to_dict(self) -> dict[str, object]:
        """JSON form (see docs/inspect.md)."""
        return {"start": f"{self.start:x}", "end": f"{self.end:x}", "perms": self.perms, "path": self.path,
                "rss_kb": self.rss_kb, "pss_kb": self.pss_kb, "uss_kb": self.uss_kb, "swap_kb": self.swap_kb,
                "zero_kb": self.zero_kb, **{k: getattr(self, k) for k in CLASS_FIELDS},
                "shared_in_tree_kb": self.shared_in_tree_kb}


@dataclass
class ProcessFigures:
    """Figures of one process at one sample, in kB."""

    pid: int
    ppid: int
    name: str
    parent_in_tree: bool = False
    exact: bool = False
    rss_kb: int = 0
    pss_kb: int = 0
    uss_kb: int = 0
    swap_kb: int = 0
    zero_kb: int | None = None
    shared_with_parent_kb: int | None = None
    sibling_shared_kb: int | None = None
    copied_kb: int | None = None
    new_kb: int | None = None
    shared_in_tree_kb: int | None = None
    mappings: list[MappingFigures] = field(default_factory=list)

    def to_dict(self, ts: float, seq: int) -> dict[str, object]:
        """One JSON-lines object (see docs/inspect.md)."""
        return {"type": "process", "ts": round(ts, 6), "seq": seq, "pid": self.pid, "ppid": self.ppid,
                "name": self.name, "parent_in_tree": self.parent_in_tree, "exact": self.exact,
                "rss_kb": self.rss_kb, "pss_kb": self.pss_kb, "uss_kb": self.uss_kb, "swap_kb": self.swap_kb,
                "zero_kb": self.zero_kb, **{k: getattr(self, k) for k in CLASS_FIELDS},
                "shared_in_tree_kb": self.shared_in_tree_kb,
                "mappings": [m.to_dict() for m in self.mappings]}


@dataclass
class TreeTotals:
    """What the inspected processes use together, in kB."""

    processes: int = 0
    rss_sum_kb: int = 0
    pss_sum_kb: int = 0
    uss_sum_kb: int = 0
    swap_sum_kb: int = 0
    unique_kb: int | None = None          # each resident frame once (exact mode only)
    parent_rss_kb: int = 0                # RSS of the roots: the most copy-on-write can erode
    shared_with_parent_kb: int | None = None
    sibling_shared_kb: int | None = None
    copied_kb: int | None = None
    new_kb: int | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return dict(self.__dict__)


@dataclass
class Sample:
    """Everything read at one tick."""

    seq: int
    ts: float
    mode: str
    duration_s: float = 0.0
    processes: list[ProcessFigures] = field(default_factory=list)
    missed: list[Missed] = field(default_factory=list)
    totals: TreeTotals = field(default_factory=TreeTotals)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None  # why this tick was not sampled (duty-cycle limit)

    def process(self, pid: int) -> ProcessFigures:
        """The figures of one pid (KeyError if not in this sample)."""
        for p in self.processes:
            if p.pid == pid:
                return p
        raise KeyError(pid)


@dataclass
class _Raw:
    pid: int
    ppid: int
    name: str
    rollup: dict[str, int] | None
    pages: cl.ProcPages | None = None
    smaps: dict[int, SmapsEntry] | None = None
    too_big: list[MapsEntry] = field(default_factory=list)


Hook = Callable[[int, str], None]


def resolve_mode(mode: str) -> tuple[str, list[str]]:
    """The mode actually used for `mode` on this machine, and notes saying what cannot be known."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    notes: list[str] = []
    pfns_ok = procfs.kpage_available() and bool(procfs.zero_pfns())
    if mode in ("auto", "exact") and not pfns_ok:
        if mode == "exact":
            raise PermissionError("exact mode needs root (CAP_SYS_ADMIN) for pagemap PFNs and "
                                  "/proc/kpagecount")
        mode = "estimate"
    elif mode == "auto":
        mode = "exact"
    if mode == "estimate":
        notes.append("estimated classes (no PFNs, e.g. not root): RSS/PSS/USS/swap are the kernel's smaps figures; "
                     "shared-with-parent vs sibling-shared is inferred from pagemap's exclusive bit (a frame "
                     "shared by parent and worker cannot be told from one shared elsewhere), zero-page "
                     "mappings count as shared, and the tree's unique memory is unknown")
    if mode == "summary":
        notes.append("summary mode: smaps_rollup figures only, no page classes")
    return mode, notes


class Sampler:
    """Reads a fixed set of PIDs, or trees under root PIDs, into Samples."""

    def __init__(self, pids: list[int], tree: bool = False, mode: str = "auto", mappings: bool = True,
                 hook: Hook | None = None, threads: int | None = None, states: bool = False) -> None:
        self.roots = list(pids)
        self.tree = tree
        self.mode, self.notes = resolve_mode(mode)
        self.mappings = mappings
        self.states = states
        self.hook = hook
        self.threads = threads if threads is not None else min(4, os.cpu_count() or 1)
        self.seq = 0
        self.zero_pfn = min(procfs.zero_pfns(), default=0) if self.mode == "exact" else 0

    def sample(self) -> Sample:
        """Discover the processes and read them all once."""
        t0 = time.perf_counter()
        s = Sample(self.seq, time.time(), self.mode, notes=list(self.notes))
        self.seq += 1
        pids, s.missed = discover(self.roots, self.tree)
        raws: list[_Raw] = []
        if self.threads > 1 and len(pids) > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                results = list(pool.map(self._read_or_error, pids))
        else:
            results = [self._read_or_error(pid) for pid in pids]
        for pid, res in zip(pids, results, strict=True):
            if isinstance(res, _Raw):
                raws.append(res)
                continue
            try:
                raise res
            except _NotFound:
                s.missed.append(Missed(pid, "not-found", f"no process with pid {pid}"))
            except ProcessGone:
                s.missed.append(Missed(pid, "gone", f"pid {pid} exited while being read"))
            except (ProcPermissionError, PermissionError) as exc:
                s.missed.append(Missed(pid, "permission", f"pid {pid}: permission denied ({exc})"))
            except _KernelThread:
                s.missed.append(Missed(pid, "kernel-thread", f"pid {pid} is a kernel thread: no user memory"))
        self._figures(s, raws)
        s.duration_s = time.perf_counter() - t0
        return s

    # -- reading -----------------------------------------------------------------------------

    def _read_or_error(self, pid: int) -> _Raw | BaseException:
        try:
            return self._read(pid)
        except (ProcessGone, PermissionError, _KernelThread, _NotFound) as exc:
            return exc

    def _read(self, pid: int) -> _Raw:
        try:
            st = procfs.read_stat(pid)
        except ProcessGone:
            raise _NotFound(pid) from None
        if st.kernel_thread:
            raise _KernelThread(pid)
        if st.state in ("Z", "X", "x"):
            raise ProcessGone(pid, "exited (zombie)")
        raw = _Raw(pid, st.ppid, st.name, None)
        if self.mode != "exact":  # exact mode derives the same figures from the pages it reads anyway
            raw.rollup = procfs.read_smaps_rollup(pid).fields
        if self.mode == "summary":
            return raw
        maps = [v for v in procfs.read_maps(pid)
                if v.start < USER_SPACE_END and v.path not in SPECIAL_MAPPINGS]
        raw.too_big = [v for v in maps if v.npages > MAX_MAPPING_PAGES]
        if raw.too_big:  # huge sparse reservations: kernel totals, no page-level reading
            maps = [v for v in maps if v.npages <= MAX_MAPPING_PAGES]
            if raw.rollup is None:
                raw.rollup = procfs.read_smaps_rollup(pid).fields
        if self.hook:
            self.hook(pid, "maps")
        pm = np.empty(sum(v.npages for v in maps), dtype=np.uint64)
        with PagemapReader(pid) as reader:
            at = 0
            for vma in maps:  # straight into one array for the whole process
                reader.read(vma.start, vma.npages, pm[at:at + vma.npages])
                at += vma.npages
        raw.pages = cl.ProcPages.decode(maps, pm, self.zero_pfn, keep_raw=self.states)
        if self.hook:
            self.hook(pid, "pagemap")
        if self.mode == "estimate":
            raw.smaps = {e.vma.start: e for e in procfs.read_smaps(pid)}
        return raw

    # -- figures -----------------------------------------------------------------------------

    def _figures(self, s: Sample, raws: list[_Raw]) -> None:
        by_pid = {r.pid: r for r in raws}
        exact = self.mode == "exact"
        table: cl.PfnTable | None = None
        if exact:
            pages = [r.pages for r in raws if r.pages is not None]
            table = cl.PfnTable([pp.pfn[pp.real] for pp in pages],
                                [pp.pfn[pp.real & ~pp.excl] for pp in pages])
            table.set_mapcounts(procfs.read_kpagecount(table.need))
        tot = s.totals
        for r in raws:
            parent = by_pid.get(r.ppid) if r.ppid != r.pid else None
            pf = ProcessFigures(r.pid, r.ppid, r.name, parent_in_tree=parent is not None, exact=exact)
            if r.rollup is not None:
                f = r.rollup
                pf.rss_kb, pf.pss_kb, pf.swap_kb = f.get("Rss", 0), f.get("Pss", 0), f.get("Swap", 0)
                pf.uss_kb = f.get("Private_Clean", 0) + f.get("Private_Dirty", 0)
            if r.pages is not None:
                self._classify(pf, r, parent, table)
            for v in r.too_big:
                s.notes.append(f"pid {r.pid}: mapping {v.start:x}-{v.end:x} {v.path or '[anon]'} "
                               f"({v.size_kb >> 20} GiB) is too large to read page by page: it has no "
                               "page classes and the process totals come from smaps_rollup")
            s.processes.append(pf)
            tot.processes += 1
            tot.rss_sum_kb += pf.rss_kb
            tot.pss_sum_kb += pf.pss_kb
            tot.uss_sum_kb += pf.uss_kb
            tot.swap_sum_kb += pf.swap_kb
            if parent is None:
                tot.parent_rss_kb += pf.rss_kb
            elif pf.copied_kb is not None:
                for k in CLASS_FIELDS:
                    setattr(tot, k, (getattr(tot, k) or 0) + getattr(pf, k))
        if table is not None:
            tot.unique_kb = len(table.unique) * KB

    def _classify(self, pf: ProcessFigures, r: _Raw, parent: _Raw | None, table: cl.PfnTable | None) -> None:
        pp = r.pages
        assert pp is not None
        exact = table is not None
        pv = cl.align_parent(parent.pages, pp) if parent is not None and parent.pages is not None else None
        tc = table.tree_count(pp.pfn) if table is not None else None
        codes = cl.classify_pages(pp, pv, tc, exact)
        nmap = len(pp.vmas)
        idx = pp.mapping_index()
        by_class = np.bincount(idx * 8 + codes, minlength=nmap * 8).reshape(nmap, 8) * KB
        if pv is not None:
            cols = {"shared_with_parent_kb": cl.SHARED_PARENT, "sibling_shared_kb": cl.SIBLING,
                    "copied_kb": cl.COPIED, "new_kb": cl.NEW}
            for k, c in cols.items():
                setattr(pf, k, int(by_class[:, c].sum()))
            in_tree = by_class[:, cl.SHARED_PARENT] + by_class[:, cl.SIBLING]
        else:
            cols = {}
            in_tree = by_class[:, cl.SHARED_PARENT]
        pf.shared_in_tree_kb = int(in_tree.sum())
        if exact:
            assert table is not None
            mc = table.mapcount(pp.pfn[pp.real])
            rss = pp.per_mapping(pp.real) * KB
            uss = np.bincount(idx[pp.real][mc <= 1], minlength=nmap) * KB
            weights = cl.pss_weights(mc)
            pss = np.bincount(idx[pp.real], weights=weights, minlength=nmap)
            swap = pp.per_mapping(pp.swap) * KB
            pf.zero_kb = int(by_class[:, cl.ZERO].sum())
            if r.rollup is None:
                pf.rss_kb, pf.uss_kb, pf.swap_kb = int(rss.sum()), int(uss.sum()), int(swap.sum())
                pf.pss_kb = cl.pss_kb(int(weights.sum()))
        if not self.mappings:
            return
        st = None
        if pp.raw is not None:  # the model's page states, for strips in its legend
            kc = np.zeros(len(pp.raw), dtype=np.int64)
            if exact:
                assert table is not None
                kc[pp.real] = table.mapcount(pp.pfn[pp.real])
            st = classify_states(pp.raw, kc if exact else None, {self.zero_pfn} if self.zero_pfn else set())
        smaps = r.smaps or {}
        for k, vma in enumerate(pp.vmas):
            mf = _mapping(vma)
            if exact:
                mf.rss_kb, mf.uss_kb, mf.swap_kb = int(rss[k]), int(uss[k]), int(swap[k])
                mf.pss_kb = cl.pss_kb(int(pss[k]))
                mf.zero_kb = int(by_class[k, cl.ZERO])
            elif (e := smaps.get(vma.start)) is not None:
                mf.rss_kb, mf.pss_kb, mf.swap_kb = e["Rss"], e["Pss"], e["Swap"]
                mf.uss_kb = e["Private_Clean"] + e["Private_Dirty"]
            for name, c in cols.items():
                setattr(mf, name, int(by_class[k, c]))
            mf.shared_in_tree_kb = int(in_tree[k])
            a, b = pp.offsets[k], pp.offsets[k + 1]
            mf.codes = codes[a:b]
            if st is not None:
                mf.states = PageStates(st.state[a:b], st.mapcount[a:b], st.pfn[a:b])
            pf.mappings.append(mf)


class _KernelThread(Exception):
    """The pid is a kernel thread."""


class _NotFound(Exception):
    """No process has this pid (it was never there, or exited before the first read)."""


def _mapping(vma: MapsEntry) -> MappingFigures:
    return MappingFigures(vma.start, vma.end, vma.perms, vma.path)


def find_mapping(p: ProcessFigures, spec: str) -> MappingFigures | None:
    """The mapping of `p` named by spec: a hex address inside it, or a path (substring) such as [heap]."""
    addr: int | None
    try:
        addr = int(spec, 16)
    except ValueError:
        addr = None
    if addr is not None:
        starts = [m.start for m in p.mappings]
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and p.mappings[i].start <= addr < p.mappings[i].end:
            return p.mappings[i]
        return None
    hits = [m for m in p.mappings if spec == m.label] or [m for m in p.mappings if spec in m.label]
    return max(hits, key=lambda m: m.rss_kb) if hits else None


class DutyCycle:
    """Keeps the inspector's own /proc reading under a fraction of wall-clock time."""

    def __init__(self, limit: float) -> None:
        if not 0 < limit <= 1:
            raise ValueError(f"duty cycle must be in (0, 1], got {limit}")
        self.limit = limit
        self.next_ok = 0.0
        self.skipped = 0

    def allow(self, now: float) -> bool:
        """True if a sample may start at `now` (monotonic seconds)."""
        return now >= self.next_ok

    def record(self, start: float, duration: float) -> None:
        """A sample started at `start` took `duration`: the next may start after duration/limit."""
        self.next_ok = start + duration / self.limit

    def skip_reason(self, now: float) -> str:
        """Text for a skipped tick."""
        self.skipped += 1
        return (f"sample skipped: the last read took long enough that sampling now would exceed the "
                f"{self.limit:.0%} duty-cycle limit (next in {max(self.next_ok - now, 0):.2f}s)")
