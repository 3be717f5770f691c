"""Small fork/copy-on-write stories as Snapshots, shared by the HTML and browser tests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from cowscope.observe.pages import NOT_PRESENT, PAGECACHE, PRIVATE, SHARED, ZERO
from cowscope.observe.snapshot import Snapshot
from cowscope.observe.verdict import Compared, Difference, RegionFigures, Verdict

from .helpers import mapping, process, snapshot, states

A = 0x7F0000000000
F = 0x7F2000000000
N = 64
WRITTEN = 8


def ev(seq: int, pid: int, kind: str, address: int | None = None, old: int | None = None,
       new: int | None = None, detail: str = "") -> SimpleNamespace:
    """An Event-shaped record."""
    return SimpleNamespace(seq=seq, pid=pid, kind=kind, address=address, old_pfn=old, new_pfn=new,
                           detail=detail)


def fork_story() -> list[Snapshot]:
    """Parent fills N pages and maps a 4-page file; forks; the child writes WRITTEN pages (copies)."""
    pfn = np.arange(100, 100 + N)
    fpfn = np.arange(900, 904)
    fill = [ev(i, 10, "zero-fill", A + i * 4096, None, 100 + i) for i in range(N)]
    fill += [ev(N + i, 10, "pagecache-map", F + i * 4096, None, 900 + i, "major") for i in range(4)]
    file1 = states([PAGECACHE] * 4, mapcount=[1] * 4, pfn=fpfn)
    tail = [NOT_PRESENT] * 4 + [ZERO] * 4
    s1 = snapshot("filled", [process(10, 1, "server", [
        mapping(A, states([PRIVATE] * N + tail, pfn=np.r_[pfn, [0] * 4, [1] * 4],
                          mapcount=[1] * N + [0] * 8)),
        mapping(F, file1, perms="r--p", path="/data/f")])], events=fill)
    s1.zero_pfns = frozenset({1})
    sh = states([SHARED] * N + tail, pfn=np.r_[pfn, [0] * 4, [1] * 4], mapcount=[2] * N + [0] * 8)
    file2 = states([PAGECACHE] * 4, mapcount=[2] * 4, pfn=fpfn)
    s2 = snapshot("forked", [
        process(10, 1, "server", [mapping(A, sh), mapping(F, file2, perms="r--p", path="/data/f")]),
        process(11, 10, "worker", [mapping(A, sh), mapping(F, file2, perms="r--p", path="/data/f")])],
        events=[ev(N + 4, 10, "fork", detail="child 11")])
    st = np.array([PRIVATE] * WRITTEN + [SHARED] * (N - WRITTEN) + tail)
    mc = np.r_[[1] * WRITTEN, [2] * (N - WRITTEN), [0] * 8]
    cpfn = np.r_[pfn, [0] * 4, [1] * 4]
    cpfn[:WRITTEN] = np.arange(500, 500 + WRITTEN)
    copies = [ev(N + 5 + i, 11, "cow-copy", A + i * 4096 + 8, 100 + i, 500 + i, "write")
              for i in range(WRITTEN)]
    s3 = snapshot("child wrote", [
        process(10, 1, "server", [mapping(A, states(st, mapcount=mc, pfn=np.r_[pfn, [0] * 4, [1] * 4])),
                                  mapping(F, file2, perms="r--p", path="/data/f")]),
        process(11, 10, "worker", [mapping(A, states(st, mapcount=mc, pfn=cpfn)),
                                   mapping(F, file2, perms="r--p", path="/data/f")])], events=copies)
    return [s1, s2, s3]


def kernel_story(differ: int = 3) -> list[Snapshot]:
    """The same story as the kernel saw it, with other pids and `differ` child pages not yet copied."""
    out = []
    for s in fork_story():
        procs = []
        for p in s.processes:
            maps = []
            for m in p.mappings:
                st = m.pages.state.copy()
                mc = m.pages.mapcount.copy()
                if s.label == "child wrote" and m.vma.path == "" and differ:
                    st[:differ] = SHARED
                    mc[:differ] = 2
                kpfn = np.where(m.pages.pfn > 1, m.pages.pfn + 5000, m.pages.pfn)
                maps.append(mapping(m.vma.start, states(st, mapcount=mc, pfn=kpfn),
                                    perms=m.vma.perms, path=m.vma.path))
            procs.append(process(p.pid + 1000, p.ppid + 1000 if p.ppid > 1 else 1, p.name, maps))
        out.append(snapshot(s.label, procs, source="linux"))
    return out


AROUND = "heap VMA and its smaps: (the reason)"
OUTSIDE = "mappings outside the scenario's regions: (the reason)"


def story_verdict(pages: tuple[int, ...] = (), excluded: tuple[int, ...] = (), extra=()) -> Verdict:
    """The anon buffer (first N pages at A) compared in both processes at every step; a page
    difference of the child (pid 11) at the last step for each of `pages` (counted) and `excluded`."""
    span = (A, A + N * 4096)
    diffs = [Difference(f"[child wrote] P.1 P#1 p{i}: model 'X' | linux 'S2'", None, "page", 2, 11, "P.1 P#1",
                        span, (A + i * 4096,)) for i in pages]
    diffs += [Difference(f"[child wrote] P.1 P#1 p{i}: ...", "untouched file/shmem pages: (why)", "page", 2, 11,
                         "P.1 P#1", span, (A + i * 4096,)) for i in excluded]
    compared = [Compared(k, pid, A, A + N * 4096, "P#1", AROUND) for k, pids in enumerate([[10], [10, 11], [10, 11]])
                for pid in pids]
    figures = [RegionFigures(2, 11, "P#1", N, {"resident": N, "Rss": 4 * N}, {"resident": N, "Rss": 4 * N})]
    return Verdict([*diffs, *extra], compared, figures, outside=OUTSIDE, whole_process="status: (why)",
                   sides=("model process: ...", "agent process: includes the agent's own code and buffers"),
                   events="events: 4/4")
