"""The demo story: how fork() treats memory that malloc() handed out, checked step by step.

Builds the data only (steps, claims, the figures proving them, snapshots); cli/demo.py renders.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .model import Machine
from .model.arch import PAGE_SIZE
from .model.kernel.exec import LIBC_PATH
from .observe.records import PM_MMAP_EXCLUSIVE, PM_PRESENT, pagemap_pfns
from .observe.snapshot import Snapshot, take

BUF_BYTES = 96 * 1024      # below the mmap threshold: malloc carves it from the [heap]
CHILD_WRITES = 5           # pages of the buffer the child overwrites


@dataclass
class Check:
    """One claim of the story, whether the model bears it out, and the figures that prove it."""

    claim: str
    ok: bool
    evidence: str


@dataclass
class Step:
    """One step: what happened, the checks, and a snapshot of every process."""

    title: str
    text: str
    checks: list[Check] = field(default_factory=list)
    snapshot: Snapshot | None = None
    pids: tuple[int, ...] = ()


def _pages(p, addr: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(pfns, raw pagemap) of the whole pages inside [addr, addr+length)."""
    first = (addr + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    n = (addr + length - first) // PAGE_SIZE
    raw = p.pagemap_raw(first, n)
    return pagemap_pfns(raw), raw


def _text_vma(p, path: str):
    return next(e for e in p.maps() if e.path == path and e.perms == "r-xp")


def _region_events(m: Machine, since: int, pid: int, kind: str, lo: int, hi: int) -> int:
    return sum(1 for e in m.events.since(since) if e.pid == pid and e.kind == kind and lo <= e.address < hi)


def run_demo(allocator: str | None = None) -> tuple[Machine, list[Step]]:
    """Play the story on a fresh model machine; every claim is computed, none is assumed."""
    m = Machine(allocator=allocator)
    steps: list[Step] = []

    def snap(step: Step, *pids: int) -> None:
        step.snapshot = take(m, step.title, events=list(m.events.since(mark[0])))
        step.pids = pids
        mark[0] = len(m.events)
        steps.append(step)

    mark = [0]
    parent = m.spawn("server")
    buf = parent.malloc(BUF_BYTES)
    obj = parent.malloc(40)
    parent.fill(buf, BUF_BYTES, ord("A"))
    pfns0, raw0 = _pages(parent, buf, BUF_BYTES)
    npages = len(pfns0)
    excl = int(np.count_nonzero(raw0 & np.uint64(PM_MMAP_EXCLUSIVE)))
    heap = next(e for e in parent.maps() if e.start <= buf < e.end)
    s1 = Step("1. The parent mallocs and fills a buffer",
              f"server (pid {parent.pid}) calls malloc({BUF_BYTES}) = {buf:#x} in {heap.path or 'an anon mapping'} "
              f"and memset()s it to 'A': {npages} whole pages become resident.")
    s1.checks.append(Check(f"all {npages} buffer pages are resident and private to the parent",
                           excl == npages and all(pfns0),
                           f"pagemap: {excl}/{npages} pages present with the exclusive bit (56)"))
    snap(s1, parent.pid)

    # 2. fork
    used_before = m.phys.nr_used
    child = parent.fork()
    pfns_p, _ = _pages(parent, buf, BUF_BYTES)
    pfns_c, raw_c = _pages(child, buf, BUF_BYTES)
    kc = m.kpagecount_array(pfns_c)
    s2 = Step("2. fork(): the child gets an exact copy — in theory",
              f"child (pid {child.pid}) reads the same bytes, but no page was copied: parent and child map "
              "the same frames, now write-protected in both.")
    same = child.read(buf, BUF_BYTES) == parent.read(buf, BUF_BYTES) == b"A" * BUF_BYTES
    s2.checks.append(Check("the child sees exactly the parent's bytes", same,
                           f"{BUF_BYTES} bytes compared, all 'A'"))
    s2.checks.append(Check("nothing of the buffer was copied: same physical frame for every page",
                           bool(np.array_equal(pfns_p, pfns_c) and np.array_equal(pfns_p, pfns0)),
                           f"{npages}/{npages} PFNs identical in parent and child; kpagecount=2 on "
                           f"{int(np.count_nonzero(kc == 2))} of them"))
    buf_copies = _region_events(m, mark[0], child.pid, "cow-copy", buf, buf + BUF_BYTES)
    other = [_mapping_name(parent, e.address) for e in m.events.since(mark[0]) if e.kind == "cow-copy"]
    s2.checks.append(Check("fork() copied no page of the buffer", buf_copies == 0,
                           f"frames in use {used_before} -> {m.phys.nr_used}; the only copies: "
                           f"{', '.join(other) or 'none'} (returning from fork() writes the stack)"))
    s2.checks.append(Check("the exclusive bit is gone on both sides (pages are CoW-shared)",
                           not np.any(raw_c & np.uint64(PM_MMAP_EXCLUSIVE)),
                           "pagemap bit 56 clear on every buffer page"))
    snap(s2, parent.pid, child.pid)

    # 3. the child writes part of the buffer
    start = (buf + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    child.fill(start, CHILD_WRITES * PAGE_SIZE, ord("B"))
    copies = _region_events(m, mark[0], child.pid, "cow-copy", buf, buf + BUF_BYTES)
    pfns_c2, _ = _pages(child, buf, BUF_BYTES)
    changed = int(np.count_nonzero(pfns_c2 != pfns_p))
    s3 = Step("3. The child writes part of the buffer: only those pages are copied",
              f"child memset()s {CHILD_WRITES} pages to 'B'; each first write takes a write-protect fault "
              "and copies just that page (do_wp_page -> wp_page_copy).")
    s3.checks.append(Check(f"exactly {CHILD_WRITES} pages were copied", copies == CHILD_WRITES == changed,
                           f"{copies} cow-copy events in the buffer; {changed} of {npages} child PFNs changed"))
    s3.checks.append(Check("the parent still sees its own bytes",
                           parent.read(start, CHILD_WRITES * PAGE_SIZE) == b"A" * CHILD_WRITES * PAGE_SIZE
                           and child.read(start, 1) == b"B", "parent reads 'A', child reads 'B'"))
    s3.checks.append(Check(f"the other {npages - CHILD_WRITES} pages are still shared",
                           npages - changed == npages - CHILD_WRITES,
                           f"{npages - changed} PFNs still identical"))
    snap(s3, parent.pid, child.pid)

    # 4. free() in the child writes allocator metadata: those pages are copied too
    mark_free = len(m.events)
    obj_page = obj & ~(PAGE_SIZE - 1)
    parent_before = parent.read(obj_page, PAGE_SIZE), _pages(parent, obj_page, PAGE_SIZE)[0].tolist()
    child.free(obj)
    freed = [e for e in m.events.since(mark_free) if e.pid == child.pid and e.kind == "cow-copy"]
    parent_faults = [e for e in m.events.since(mark_free) if e.pid == parent.pid]
    parent_after = parent.read(obj_page, PAGE_SIZE), _pages(parent, obj_page, PAGE_SIZE)[0].tolist()
    where = sorted({_mapping_name(child, e.address) for e in freed})
    s4 = Step("4. free() in the child copies the pages it writes",
              f"child calls free({obj:#x}): the allocator writes a tcache entry into the chunk and a count into "
              "its bookkeeping, all in simulated memory, so those pages are copied like any other write.")
    s4.checks.append(Check("free() in the child copied the pages it wrote", len(freed) >= 1,
                           f"{len(freed)} page(s) copied: " + ", ".join(where)))
    s4.checks.append(Check("the parent's heap is untouched: same bytes, same frame, no fault",
                           parent_before == parent_after and not parent_faults,
                           f"parent's page {obj_page:#x} still frame {parent_after[1][0]:#x}"))
    snap(s4, parent.pid, child.pid)

    # 5. code pages: shared through the page cache, never copied
    checks = []
    for path in ("/usr/bin/app", LIBC_PATH):
        tp = _text_vma(parent, path)
        tc = _text_vma(child, path)
        rp, rc = parent.pagemap_raw(tp.start, tp.npages), child.pagemap_raw(tc.start, tc.npages)
        present = ((rp & np.uint64(PM_PRESENT)) != 0) & ((rc & np.uint64(PM_PRESENT)) != 0)
        both = int(np.count_nonzero(present & (rp == rc)))
        copied = sum(1 for e in m.events if e.kind in ("cow-copy", "file-copy") and tp.start <= e.address < tp.end)
        checks.append(Check(f"code of {path.rsplit('/', 1)[-1]} is shared by both and never copied",
                            both > 0 and copied == 0,
                            f"{both} text pages mapped by both at the same frame (page cache); {copied} copies"))
    s5 = Step("5. Code pages are shared by every process and never copied",
              "text is mapped read-only from the page cache; no process can write it, so no fault ever copies it.")
    s5.checks = checks
    snap(s5, parent.pid, child.pid)

    # 6. the child exits; the parent's writes copy nothing
    child.exit(0)
    parent.wait(child)
    mark6 = len(m.events)
    parent.fill(buf, BUF_BYTES, ord("C"))
    ev = m.events.counts(since=mark6, pid=parent.pid)
    pfns_p3, _ = _pages(parent, buf, BUF_BYTES)
    s6 = Step("6. After the child exits, the parent's writes copy nothing",
              "the exiting child dropped its mappings; each page is referenced once again, so the parent's "
              "write fault reuses it in place (wp_page_reuse) instead of copying.")
    s6.checks.append(Check("no copies: every write fault reused the page", ev.get("cow-copy", 0) == 0,
                           f"events: {ev.get('cow-reuse', 0)} cow-reuse, {ev.get('cow-copy', 0)} cow-copy"))
    s6.checks.append(Check("the parent keeps its original frames",
                           bool(np.array_equal(pfns_p3, pfns0)), f"{npages}/{npages} PFNs unchanged since step 1"))
    snap(s6, parent.pid)
    m.check()
    return m, steps


def _mapping_name(p, addr: int) -> str:
    for e in p.maps():
        if e.start <= addr < e.end:
            name = e.path.rsplit("/", 1)[-1] if e.path else "anon"
            return f"{addr:#x} ({name} {e.perms})"
    return f"{addr:#x}"
