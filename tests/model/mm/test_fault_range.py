"""The vectorised range fault path makes the page-by-page path's decisions.

`fault_range` (numpy over a Span: what touch, fill and populate use for more than a few pages)
and `fault_pages` (one access per page: the MMU, else handle_mm_fault) run on two identical
machines brought to a random state: pages never touched, read (zero page), written, shared with
fork children, copied by a child, left alone by an exited child (reusable), MADV_DONTNEED'd,
MADV_FREE'd, write-protected and unprotected again, in ranges that cross page-table boundaries.
Afterwards both machines must hold the same PTEs, the same frames (old ones by identity, new ones
by the PTE that maps them: the two paths allocate in a different order) with the same counts,
flags and bytes, the same events (one per faulted page; the bulk path records them grouped by
kind, so they are compared by address) and the same counters. Event details are not compared:
the bulk path does not write wp_page_reuse's note "no other process maps it any more".
"""

from __future__ import annotations

import hashlib
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cowscope.errors import ProcessGone
from cowscope.model import Machine, Process
from cowscope.model.arch import PAGE_SHIFT, PMD_SHIFT
from cowscope.model.mm.fault_range import fault_pages, fault_range
from cowscope.model.mm.page_alloc import PG_INUSE, ZERO_PFN

PS = 4096
BASE = 0x7E0000000000          # 2 MiB aligned, far below everything exec and mmap place
BEFORE_FORK = ("write", "read", "dontneed", "free", "mprotect")
AFTER_FORK = ("write", "read", "child-write", "child-write", "child-exit", "child-exit", "dontneed", "free",
              "mprotect", "fork")


@st.composite
def scenarios(draw: Any) -> dict:
    """A mapping, the steps that bring its pages to a mixed state, and the range fault to compare."""
    npages = draw(st.integers(5, 1100))
    first = draw(st.integers(0, 511))                # where the mapping starts in its PTE table
    page = st.integers(0, npages - 1)

    def some(ops: tuple[str, ...], n: int) -> list[tuple[str, int, int, int]]:
        return draw(st.lists(st.tuples(st.sampled_from(ops), page, page, st.integers(0, 255)), max_size=n))
    first_write = ("write", draw(page), draw(page), draw(st.integers(0, 255)))
    forks = [("fork", 0, 0, 0)] * draw(st.integers(0, 2))
    steps = [first_write] + some(BEFORE_FORK, 3) + forks + some(AFTER_FORK, 6)
    lo, hi = draw(st.sampled_from([(0, npages - 1), sorted(draw(st.tuples(page, page)))]))
    return {"npages": npages, "first": first, "steps": steps, "range": (lo, hi + 1),
            "write": draw(st.sampled_from([True, True, False])), "who": draw(st.sampled_from([0, 0, 1, 2]))}


def build(sc: dict) -> tuple[Machine, Process, int]:
    """The machine after the scenario's steps; returns it, the process to fault in and the mapping."""
    m = Machine(allocator="firstfit")
    p = m.spawn()
    a = p.mmap(sc["npages"] * PS, addr=BASE + sc["first"] * PS, fixed=True)
    children: list[Process] = []
    for op, i, j, value in sc["steps"]:
        lo, n = a + min(i, j) * PS, (abs(j - i) + 1) * PS
        live = [c for c in children if c.alive]
        if op == "write":
            p.fill(lo, n, value)
        elif op == "read":
            p.touch(lo, n)
        elif op == "fork" and len(children) < 3:
            children.append(p.fork())
        elif op == "child-write" and live:
            live[value % len(live)].fill(lo, n, value)
        elif op == "child-exit" and live:
            live[value % len(live)].exit(0)
        elif op in ("dontneed", "free"):
            p.madvise(lo, n, op)
        elif op == "mprotect":
            p.mprotect(lo, n, "r")
            p.mprotect(lo, n, "rw")
    live = [c for c in children if c.alive]
    who = ([p] + live)[sc["who"] % (len(live) + 1)]
    return m, who, a


def frames_in_use(m: Machine) -> set[int]:
    return set(int(x) for x in (m.phys.flags & PG_INUSE).nonzero()[0]) - {ZERO_PFN}


def outcome(sc: dict, path: Any) -> dict:
    """Run the scenario's range fault with `path` and describe everything it changed."""
    m, p, a = build(sc)
    old = frames_in_use(m)
    mark = len(m.events)
    lo, hi = sc["range"]
    mm = p.mm
    assert mm is not None
    vma = mm.find_vma(a + lo * PS)
    assert vma is not None and vma.vm_end >= a + hi * PS
    path(m, p.pid, mm, vma, a + lo * PS, a + hi * PS, sc["write"])
    m.check()
    label = _labels(m, old)
    return {"old frames": old, "ptes": _ptes(m, label), "frames": _frames(m, label),
            "events": sorted((e.pid, e.kind, e.address, label(e.old_pfn), label(e.new_pfn))
                             for e in m.events.since(mark)),
            "counters": _counters(m), "anon_vma": vma.anon_vma is not None}


def _all_ptes(m: Machine) -> dict[tuple[int, int], int]:
    """(pid, va) -> PTE for every non-empty PTE of every live process."""
    out = {}
    for p in m.live_processes():
        for key, table in sorted(p.mm.pgd.tables.items()):  # type: ignore[union-attr]
            for k in table.nonzero()[0].tolist():
                out[(p.pid, (key << PMD_SHIFT) + k * PS)] = int(table[k])
    return out


def _labels(m: Machine, old: set[int]) -> Any:
    """pfn -> itself for frames that existed before; a new frame -> (pid, va) of the PTE mapping it."""
    where: dict[int, tuple[int, int]] = {}
    for at, pte in _all_ptes(m).items():
        where.setdefault(pte >> PAGE_SHIFT, at)
    return lambda pfn: pfn if pfn in old or pfn in (0, ZERO_PFN) else ("new", where[pfn])


def _ptes(m: Machine, label: Any) -> dict:
    return {at: (label(pte >> PAGE_SHIFT), pte & (PS - 1)) for at, pte in _all_ptes(m).items()}


def _frames(m: Machine, label: Any) -> dict:
    ph = m.phys
    return {label(pfn): (int(ph.refcount[pfn]), int(ph.mapcount[pfn]), int(ph.flags[pfn]),
                         hashlib.sha1(ph.page_bytes(pfn)).hexdigest()) for pfn in frames_in_use(m)}


def _counters(m: Machine) -> dict:
    out: dict[str, Any] = {"stat": {k: v for k, v in m.stat.items() if v},
                           "phys": (m.phys.nr_used, m.phys.pgalloc, m.phys.pgfree)}
    for p in m.processes.values():
        try:
            out[p.pid] = (p.fault_counts(), p.status().fields, p.smaps_rollup().fields)
        except ProcessGone:
            out[p.pid] = p.state
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_fault_range_decides_as_page_by_page(sc: dict) -> None:
    vectorised = outcome(sc, fault_range)
    for kind in {kind for _pid, kind, *_ in vectorised["events"]}:
        event(kind)
    per_page = outcome(sc, fault_pages)
    assert vectorised["old frames"] == per_page["old frames"], "the two machines did not start equal"
    for what in ("ptes", "frames", "events", "counters", "anon_vma"):
        assert vectorised[what] == per_page[what], what


def test_one_write_range_with_every_decision() -> None:
    """A hand-made state (across a page-table boundary) where one write range meets every decision:
    already writable (dirty, or clean and old after MADV_FREE), zero-fill, zero-cow, cow-copy, cow-reuse."""
    sc = {"npages": 700, "first": 500, "range": (0, 700), "write": True, "who": 0,
          "steps": [("write", 0, 199, 1), ("read", 200, 299, 0), ("fork", 0, 0, 0), ("fork", 0, 0, 0),
                    ("child-exit", 0, 0, 0), ("child-write", 100, 149, 0), ("write", 600, 649, 3),
                    ("free", 600, 619, 0)]}
    vectorised, per_page = outcome(sc, fault_range), outcome(sc, fault_pages)
    kinds = [kind for _pid, kind, *_ in vectorised["events"]]
    assert {k: kinds.count(k) for k in set(kinds)} == {"cow-copy": 150, "cow-reuse": 50, "zero-cow": 100,
                                                       "zero-fill": 350}
    for what in ("ptes", "frames", "events", "counters", "anon_vma"):
        assert vectorised[what] == per_page[what], what
