"""The sampler: read a set of processes (or trees) from /proc once and turn them into figures.

A sample reads every process (in a small thread pool), then classes each one's pages against its
parent's and sums them per mapping, per process and for the tree (records in `figures`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import ProcessGone
from ..observe import kpage, pagescan, procfs
from ..observe.pages import PageStates
from ..observe.pages import classify as classify_states
from ..observe.procfs import SPECIAL_MAPPINGS, USER_SPACE_END, PagemapReader
from ..observe.records import MapsEntry, SmapsEntry
from . import classify as cl
from . import kinds
from .content import COMPARE_PAGES, Identical, compare_copied
from .figures import KB, Exited, MappingFigures, ProcessFigures, Sample, TreeTotals, mapping_figures
from .history import History, attribute
from .options import MODES
from .tree import Missed, discover, has_children, process_title

#: Mappings larger than this (16 GiB) are not read page by page (sparse reservations of huge VMAs).
MAX_MAPPING_PAGES = 1 << 22
#: Figure name -> page class, for a process whose parent is inspected too.
_PARENT_CLASSES = {"shared_with_parent_kb": cl.SHARED_PARENT, "sibling_shared_kb": cl.SIBLING,
                   "copied_kb": cl.COPIED, "new_kb": cl.NEW}

Hook = Callable[[int, str], None]


@dataclass
class _Raw:
    """What was read of one process."""

    pid: int
    ppid: int
    name: str
    rollup: dict[str, int] | None
    title: str | None = None
    starttime: int = 0
    image: tuple[int, int] = (0, 0)
    kinds: np.ndarray | None = None  # per page, kinds.KINDS index (with kinds=True)
    kind_notes: list[str] = field(default_factory=list)
    pages: cl.ProcPages | None = None
    smaps: dict[int, SmapsEntry] | None = None
    too_big: list[MapsEntry] = field(default_factory=list)


@dataclass
class _Classes:
    """One process's page classes and their totals per mapping (kB)."""

    codes: np.ndarray      # per page, cl.* class code
    by_class: np.ndarray   # (mappings, cl.NCODES): kB per mapping and class
    cols: dict[str, int]   # the class figures this process has (none without its parent)
    in_tree: np.ndarray    # per mapping: kB shared in the tree
    who: dict[str, np.ndarray] = field(default_factory=dict)  # per mapping kB: copied_by_child_kb, ...
    released_kb: int | None = None  # all released pages (those the worker unmapped too)
    history: str | None = None      # the reference's kind
    identical: Identical | None = None  # copied pages compared with the parent's bytes


@dataclass
class _Exact:
    """Per-mapping figures from frame identities and map counts (exact mode)."""

    rss: np.ndarray        # kB
    uss: np.ndarray        # kB
    pss: np.ndarray        # raw PSS (cl.pss_kb turns it into kB)
    swap: np.ndarray       # kB
    pss_raw_total: int


class _KernelThread(Exception):
    """The pid is a kernel thread."""


class _NotFound(Exception):
    """No process has this pid (it was never there, or exited before the first read)."""


def resolve_mode(mode: str) -> tuple[str, list[str]]:
    """The mode actually used for `mode` on this machine, and notes saying what cannot be known."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    notes: list[str] = []
    pfns_ok = kpage.kpage_available() and bool(kpage.zero_pfns())
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


def _missed(pid: int, exc: BaseException) -> Missed:
    """Why a process could not be read, as the sample reports it."""
    if isinstance(exc, _NotFound):
        return Missed(pid, "not-found", f"no process with pid {pid}")
    if isinstance(exc, ProcessGone):
        return Missed(pid, "gone", f"pid {pid} exited while being read")
    if isinstance(exc, PermissionError):
        return Missed(pid, "permission", f"pid {pid}: permission denied ({exc})")
    if isinstance(exc, _KernelThread):
        return Missed(pid, "kernel-thread", f"pid {pid} is a kernel thread: no user memory")
    raise exc


class Sampler:
    """Reads a fixed set of PIDs, or trees under root PIDs, into Samples."""

    def __init__(self, pids: list[int], tree: bool = False, mode: str = "auto", mappings: bool = True,
                 hook: Hook | None = None, threads: int | None = None, states: bool = False,
                 compare_pages: int = COMPARE_PAGES, kinds: bool = False) -> None:
        self.roots = list(pids)
        self.kinds = kinds
        self.compare_pages = compare_pages
        self._content_problem: str | None = None
        self.tree = tree
        self.mode, self.notes = resolve_mode(mode)
        self.mappings = mappings
        self.states = states
        self.hook = hook
        self.threads = threads if threads is not None else min(4, os.cpu_count() or 1)
        self.seq = 0
        self.zero_pfns = kpage.zero_page_pfns() if self.mode == "exact" else frozenset()
        self._seen: dict[int, ProcessFigures] = {}  # the processes of the last sample
        self._seen_ts = 0.0
        self.history = History()

    def sample(self) -> Sample:
        """Discover the processes and read them all once."""
        t0 = time.perf_counter()
        s = Sample(self.seq, time.time(), self.mode, notes=list(self.notes))
        self.seq += 1
        pids, s.missed = discover(self.roots, self.tree)
        if self.threads > 1 and len(pids) > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                results = list(pool.map(self._read_or_error, pids))
        else:
            results = [self._read_or_error(pid) for pid in pids]
        raws = [res for res in results if isinstance(res, _Raw)]
        s.missed += [_missed(pid, res) for pid, res in zip(pids, results, strict=True) if not isinstance(res, _Raw)]
        self._figures(s, raws)
        self._exits(s)
        s.duration_s = time.perf_counter() - t0
        return s

    def _exits(self, s: Sample) -> None:
        """The processes of the last sample that are gone now (exited, or their pid was recycled)."""
        now = {p.pid: p for p in s.processes}
        alive = {m.pid for m in s.missed if m.kind == "permission"}  # unreadable, not gone
        for pid, old in self._seen.items():
            new = now.get(pid)
            if pid in alive or (new is not None and new.starttime == old.starttime):
                continue
            s.exited.append(Exited(pid, old.ppid, old.name, old.title, self._seen_ts, s.ts))
        carried = {pid: old for pid, old in self._seen.items() if pid in alive and pid not in now}
        self._seen, self._seen_ts = {**carried, **now}, s.ts

    def observe_roots(self) -> int | None:
        """Read the roots' pages for the history only (run.ForkWatch); their resident memory in kB
        (None when none could be read or the mode reads no pages). A root that has no child once its
        pages are read is known to have been read before any child's fork (a start time in clock
        ticks could not tell within the same tick)."""
        if self.mode == "summary":
            return None
        total = None
        for pid in self.roots:
            try:
                r = self._read(pid, light=True)
            except (ProcessGone, PermissionError, _KernelThread, _NotFound):
                continue
            assert r.pages is not None
            if has_children(pid):
                continue  # it forked while we read: what we read may be after the fork
            self.history.note(pid, r.starttime, r.image, r.pages, read_by=0.0)  # older than every child
            total = (total or 0) + int(np.count_nonzero(r.pages.real)) * KB
        return total

    # -- reading -----------------------------------------------------------------------------

    def _read_or_error(self, pid: int) -> _Raw | BaseException:
        try:
            return self._read(pid)
        except (ProcessGone, PermissionError, _KernelThread, _NotFound) as exc:
            return exc

    def _read(self, pid: int, light: bool = False) -> _Raw:
        """Read one process: stat, then what the mode needs (rollup, maps + pagemap, smaps); `light`:
        stat, maps and pagemap only."""
        try:
            st = procfs.read_stat(pid)
        except ProcessGone:
            raise _NotFound(pid) from None
        if st.kernel_thread:
            raise _KernelThread(pid)
        if st.state in ("Z", "X", "x"):
            raise ProcessGone(pid, "exited (zombie)")
        raw = _Raw(pid, st.ppid, st.name, None, starttime=st.starttime, image=st.image)
        if light:
            maps = self._readable_maps(raw)
            raw.pages = cl.ProcPages.decode(maps, _read_pagemap(pid, maps), self.zero_pfns)
            return raw
        raw.title = process_title(procfs.read_cmdline(pid))
        if self.mode != "exact":  # exact mode derives the same figures from the pages it reads anyway
            raw.rollup = procfs.read_smaps_rollup(pid).fields
        if self.mode == "summary":
            return raw
        maps = self._readable_maps(raw)
        if self.hook:
            self.hook(pid, "maps")
        raw.pages = cl.ProcPages.decode(maps, _read_pagemap(pid, maps), self.zero_pfns, keep_raw=self.states)
        if self.hook:
            self.hook(pid, "pagemap")
        if self.mode == "estimate":
            raw.smaps = {e.vma.start: e for e in procfs.read_smaps(pid)}
        if self.kinds:
            exe = kinds.read_exe(pid)
            raw.kinds = kinds.page_kinds(pid, raw.pages, exe, kinds.stack_pointers(pid),
                                         kinds.runs_python(exe, raw.pages.vmas), raw.kind_notes)
        return raw

    def _readable_maps(self, raw: _Raw) -> list[MapsEntry]:
        """The mappings to read page by page: user space, no special mappings, none too large
        (those go to raw.too_big, and the process's totals then come from smaps_rollup)."""
        maps = [v for v in procfs.read_maps(raw.pid)
                if v.start < USER_SPACE_END and v.path not in SPECIAL_MAPPINGS]
        raw.too_big = [v for v in maps if v.npages > MAX_MAPPING_PAGES]
        if raw.too_big:  # huge sparse reservations: kernel totals, no page-level reading
            maps = [v for v in maps if v.npages <= MAX_MAPPING_PAGES]
            if raw.rollup is None:
                raw.rollup = procfs.read_smaps_rollup(raw.pid).fields
        return maps

    # -- figures -----------------------------------------------------------------------------

    def _figures(self, s: Sample, raws: list[_Raw]) -> None:
        """Figures of every process read, and the tree's totals."""
        by_pid = {r.pid: r for r in raws}
        table = _pfn_table(raws) if self.mode == "exact" else None
        for r in raws:
            parent = by_pid.get(r.ppid) if r.ppid != r.pid else None
            pf = ProcessFigures(r.pid, r.ppid, r.name, r.title, parent_in_tree=parent is not None,
                                exact=table is not None, starttime=r.starttime)
            if r.rollup is not None:
                f = r.rollup
                pf.rss_kb, pf.pss_kb, pf.swap_kb = f.get("Rss", 0), f.get("Pss", 0), f.get("Swap", 0)
                pf.uss_kb = f.get("Private_Clean", 0) + f.get("Private_Dirty", 0)
            if r.pages is not None:
                self._classify(pf, r, parent, table)
            s.notes += r.kind_notes
            for v in r.too_big:
                s.notes.append(f"pid {r.pid}: mapping {v.start:x}-{v.end:x} {v.path or '[anon]'} "
                               f"({v.size_kb >> 20} GiB) is too large to read page by page: it has no "
                               "page classes and the process totals come from smaps_rollup")
            s.processes.append(pf)
            s.totals.add(pf)
        if table is not None:
            s.totals.unique_kb = len(table.unique) * KB
        self._per_root(s, raws, table)
        if self._content_problem is not None:
            s.notes.append(self._content_problem)
            self._content_problem = None
        self.history.remember([(r.pid, r.starttime, r.image, r.pages) for r in raws if r.pages is not None],
                              time.clock_gettime(time.CLOCK_BOOTTIME))
        parents = {r.ppid for r in raws}
        for r in raws:  # a process still childless after the sample was read before any child's fork
            if r.pages is not None and r.pid not in parents and self.tree and not has_children(r.pid):
                self.history.note(r.pid, r.starttime, r.image, r.pages, read_by=0.0)

    def _per_root(self, s: Sample, raws: list[_Raw], table: cl.PfnTable | None) -> None:
        """Each process's root (its oldest ancestor in the sample) and each root's own totals."""
        ppid = {p.pid: p.ppid for p in s.processes}
        for p in s.processes:
            root, seen = p.pid, {p.pid}
            while ppid.get(root, root) in ppid and ppid[root] not in seen:
                root = ppid[root]
                seen.add(root)
            s.root_of[p.pid] = root
            s.trees.setdefault(root, TreeTotals()).add(p)
        if table is not None and len(s.trees) == 1:
            next(iter(s.trees.values())).unique_kb = s.totals.unique_kb
        elif table is not None:  # frames each tree maps, once each
            for root, tt in s.trees.items():
                frames = [r.pages.pfn[r.pages.real] for r in raws
                          if r.pages is not None and s.root_of.get(r.pid) == root]
                tt.unique_kb = len(np.unique(np.concatenate(frames))) * KB if frames else 0

    def _classify(self, pf: ProcessFigures, r: _Raw, parent: _Raw | None, table: cl.PfnTable | None) -> None:
        """Page classes of one process and the figures they give, per process and per mapping."""
        pp = r.pages
        assert pp is not None
        classes = self._page_classes(r, parent, table)
        for k, c in classes.cols.items():
            setattr(pf, k, int(classes.by_class[:, c].sum()))
        for k, per_mapping in classes.who.items():
            setattr(pf, k, int(per_mapping.sum()))
        pf.released_kb, pf.history = classes.released_kb, classes.history
        if classes.identical is not None:
            pf.copied_identical_kb = classes.identical.scaled_kb(classes.identical.identical)
            pf.copied_compared_kb = classes.identical.compared * KB
        pf.shared_in_tree_kb = int(classes.in_tree.sum())
        exact = _exact_figures(pp, table) if table is not None else None
        if exact is not None:
            pf.zero_kb = int(classes.by_class[:, cl.ZERO].sum())
            if r.rollup is None:
                pf.rss_kb, pf.uss_kb, pf.swap_kb = int(exact.rss.sum()), int(exact.uss.sum()), int(exact.swap.sum())
                pf.pss_kb = cl.pss_kb(exact.pss_raw_total)
        if r.kinds is not None:
            ident = classes.identical
            scale = ident.copied / ident.compared if ident is not None and ident.compared else 0.0
            pf.kinds = kinds.kind_figures(r.kinds, classes.codes, pp.real, parent is not None,
                                          (ident.same_pages, scale) if ident is not None else None)
        if self.mappings:
            states = self._page_states(pp, table)
            pf.mappings += [_mapping(pp, k, classes, exact, r.smaps or {}, states, r.pid)
                            for k in range(len(pp.vmas))]

    def _page_classes(self, r: _Raw, parent: _Raw | None, table: cl.PfnTable | None) -> _Classes:
        """Per-page classes against the parent at the same address, who copied and what was
        released (against the worker's reference, history.py), and their per-mapping totals."""
        pp = r.pages
        assert pp is not None
        pv = cl.align_parent(parent.pages, pp) if parent is not None and parent.pages is not None else None
        tc = table.tree_count(pp.pfn) if table is not None else None
        codes = cl.classify_pages(pp, pv, tc, table is not None)
        if pv is None:
            by_class = _per_mapping_classes(pp, codes)
            return _Classes(codes, by_class, {}, by_class[:, cl.SHARED_PARENT])
        assert parent is not None and parent.pages is not None
        ref = self.history.reference(r.pid, r.starttime, r.ppid, pp, pv.pfn, codes, 1 / procfs.CLK_TCK)
        who: dict[str, np.ndarray] = {}
        released_kb = None
        if r.image == parent.image:  # forked without exec: the reference is about the same memory
            att = attribute(ref, pp, parent.pages, pv, codes)
            codes[att.released] = cl.RELEASED
            released_kb = att.released_pages * KB
            if table is not None:  # frame identities: who copied
                who = {"copied_by_child_kb": pp.per_mapping(att.by_child) * KB,
                       "copied_by_parent_kb": pp.per_mapping(att.by_parent) * KB}
        by_class = _per_mapping_classes(pp, codes)
        return _Classes(codes, by_class, _PARENT_CLASSES, by_class[:, cl.SHARED_PARENT] + by_class[:, cl.SIBLING],
                        who, released_kb, ref.kind, self._identical(r, pp, codes, pv.real))

    def _identical(self, r: _Raw, pp: cl.ProcPages, codes: np.ndarray, parent_real: np.ndarray) -> Identical | None:
        """The worker's copied pages compared with its parent's bytes (content.py), None if it may not be read."""
        if self.compare_pages <= 0:
            return None
        try:
            return compare_copied(r.pid, r.ppid, pp, codes, parent_real, self.compare_pages,
                                  seed=r.pid * 1_000_003 + self.seq)
        except (ProcessGone, PermissionError) as exc:
            self._content_problem = (f"copied pages not compared with the parent's bytes for pid {r.pid}: "
                                     f"{exc}")
            return None

    def _page_states(self, pp: cl.ProcPages, table: cl.PfnTable | None) -> PageStates | None:
        """The shared page states (observe.pages legend) of a process whose raw pagemap was kept."""
        if pp.raw is None:
            return None
        kc = np.zeros(len(pp.raw), dtype=np.int64)
        if table is not None:
            kc[pp.real] = table.mapcount(pp.pfn[pp.real])
        return classify_states(pp.raw, kc if table is not None else None, set(self.zero_pfns))


def _read_pagemap(pid: int, maps: list[MapsEntry]) -> np.ndarray:
    """The pagemap entries of all `maps`, concatenated in one array (one open, block reads)."""
    pm = np.empty(sum(v.npages for v in maps), dtype=np.uint64)
    with PagemapReader(pid) as reader:
        at = 0
        for vma in maps:
            reader.read(vma.start, vma.npages, pm[at:at + vma.npages])
            at += vma.npages
    return pm


def _pfn_table(raws: list[_Raw]) -> cl.PfnTable:
    """Every frame of the tree with its count, map counts read only where pagemap does not show
    the page exclusive."""
    pages = [r.pages for r in raws if r.pages is not None]
    table = cl.PfnTable([pp.pfn[pp.real] for pp in pages], [pp.pfn[pp.real & ~pp.excl] for pp in pages])
    table.set_mapcounts(kpage.read_kpagecount(table.need))
    return table


def _per_mapping_classes(pp: cl.ProcPages, codes: np.ndarray) -> np.ndarray:
    """kB per mapping and class code: shape (mappings, cl.NCODES)."""
    nmap = len(pp.vmas)
    n = cl.NCODES
    return np.bincount(pp.mapping_index() * n + codes, minlength=nmap * n).reshape(nmap, n) * KB


def _exact_figures(pp: cl.ProcPages, table: cl.PfnTable) -> _Exact:
    """RSS, USS, PSS and swap per mapping from frames and their map counts, as smaps counts them."""
    idx = pp.mapping_index()
    nmap = len(pp.vmas)
    mc = table.mapcount(pp.pfn[pp.real])
    weights = cl.pss_weights(mc)
    return _Exact(rss=pp.per_mapping(pp.real) * KB,
                  uss=np.bincount(idx[pp.real][mc <= 1], minlength=nmap) * KB,
                  pss=np.bincount(idx[pp.real], weights=weights, minlength=nmap),
                  swap=pp.per_mapping(pp.swap) * KB,
                  pss_raw_total=int(weights.sum()))


def _mapping(pp: cl.ProcPages, k: int, classes: _Classes, exact: _Exact | None, smaps: dict[int, SmapsEntry],
             states: PageStates | None, pid: int = 0) -> MappingFigures:
    """The figures of mapping k: exact ones, or the kernel's smaps block, plus its page classes."""
    vma = pp.vmas[k]
    mf = mapping_figures(vma)
    if exact is not None:
        mf.rss_kb, mf.uss_kb, mf.swap_kb = int(exact.rss[k]), int(exact.uss[k]), int(exact.swap[k])
        mf.pss_kb = cl.pss_kb(int(exact.pss[k]))
        mf.zero_kb = int(classes.by_class[k, cl.ZERO])
    elif (e := smaps.get(vma.start)) is not None:
        mf.rss_kb, mf.pss_kb, mf.swap_kb = e["Rss"], e["Pss"], e["Swap"]
        mf.uss_kb = e["Private_Clean"] + e["Private_Dirty"]
    for name, c in classes.cols.items():
        setattr(mf, name, int(classes.by_class[k, c]))
    if classes.cols:
        mf.released_kb = int(classes.by_class[k, cl.RELEASED]) if classes.released_kb is not None else None
    for name, per_mapping in classes.who.items():
        setattr(mf, name, int(per_mapping[k]))
    if classes.identical is not None:
        mf.copied_identical_kb = classes.identical.scaled_kb(int(classes.identical.per_mapping[k]))
    mf.shared_in_tree_kb = int(classes.in_tree[k])
    a, b = pp.offsets[k], pp.offsets[k + 1]
    mf.codes = classes.codes[a:b]
    if states is not None:
        mf.states = _with_huge(pid, vma, PageStates(states.state[a:b], states.mapcount[a:b], states.pfn[a:b]))
    return mf


def _with_huge(pid: int, vma: MapsEntry, states: PageStates) -> PageStates:
    """Mark the pages huge PMDs map (THPs) in an anonymous mapping (PAGEMAP_SCAN PAGE_IS_HUGE)."""
    if not pid or (vma.path and not vma.path.startswith("[")) or vma.npages < 512:
        return states
    try:
        return states.with_huge(pagescan.huge_runs(pid, vma.start, vma.npages))
    except (ProcessGone, PermissionError, OSError):
        return states
