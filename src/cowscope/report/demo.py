"""The demo story: how fork() treats memory that malloc() handed out, checked step by step.

Builds the data only (steps, claims, the figures proving them, snapshots); report/terminal.py and
report/html.py render it. The story is `STORY`, six acts played in order on one model machine; each
act does something to the processes, computes its claims from what the model then shows (pagemap,
kpagecount, events) and returns a Step, which `Story.tell` closes with a snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..model import Machine
from ..model.arch import PAGE_SIZE
from ..model.kernel.exec import LIBC_PATH
from ..model.kernel.process import Process
from ..observe.records import PM_MMAP_EXCLUSIVE, PM_PRESENT, MapsEntry, pagemap_pfns
from ..observe.snapshot import Snapshot, take

BUF_BYTES = 96 * 1024      # below the mmap threshold: malloc carves it from the [heap]
CHILD_WRITES = 5           # pages of the buffer the child overwrites

#: (path, perms) of the mappings the demo draws, and the short name it gives them
SHOWN = {("[heap]", "rw-p"): "[heap]", ("/usr/bin/app", "r-xp"): "app code",
         (LIBC_PATH, "r-xp"): "libc code", (LIBC_PATH, "rw-p"): "libc data", ("[stack]", "rw-p"): "[stack]"}


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


@dataclass
class Story:
    """The machine the story plays on, its two processes and the figures later acts compare with."""

    m: Machine
    steps: list[Step] = field(default_factory=list)
    mark: int = 0                          # events before this index belong to earlier steps
    parent: Process = field(init=False)
    child: Process = field(init=False)
    buf: int = 0                           # the malloc'd buffer the story follows
    obj: int = 0                           # a small object the child frees
    pfns_filled: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # after act 1
    pfns_forked: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # parent's, after fork

    @property
    def npages(self) -> int:
        """Whole pages inside the buffer."""
        return len(self.pfns_filled)

    def tell(self, step: Step) -> None:
        """Close `step` with a snapshot of every process and the events since the previous step."""
        step.snapshot = take(self.m, step.title, events=list(self.m.events.since(self.mark)))
        self.mark = len(self.m.events)
        self.steps.append(step)


def _pages(p: Process, addr: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """(pfns, raw pagemap) of the whole pages inside [addr, addr+length)."""
    first = (addr + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    n = (addr + length - first) // PAGE_SIZE
    raw = p.pagemap_raw(first, n)
    return pagemap_pfns(raw), raw


def _text_vma(p: Process, path: str) -> MapsEntry:
    return next(e for e in p.maps() if e.path == path and e.perms == "r-xp")


def _region_events(m: Machine, since: int, pid: int, kind: str, lo: int, hi: int) -> int:
    return sum(1 for e in m.events.since(since) if e.pid == pid and e.kind == kind and lo <= e.address < hi)


def _mapping_name(p: Process, addr: int) -> str:
    for e in p.maps():
        if e.start <= addr < e.end:
            name = e.path.rsplit("/", 1)[-1] if e.path else "anon"
            return f"{addr:#x} ({name} {e.perms})"
    return f"{addr:#x}"


def malloc_and_fill(s: Story) -> Step:
    """1. The parent mallocs a buffer and fills it: every page resident and private."""
    s.parent = parent = s.m.spawn("server")
    s.buf = buf = parent.malloc(BUF_BYTES)
    s.obj = parent.malloc(40)
    parent.fill(buf, BUF_BYTES, ord("A"))
    s.pfns_filled, raw = _pages(parent, buf, BUF_BYTES)
    npages = s.npages
    excl = int(np.count_nonzero(raw & np.uint64(PM_MMAP_EXCLUSIVE)))
    heap = next(e for e in parent.maps() if e.start <= buf < e.end)
    return Step(
        "1. The parent mallocs and fills a buffer",
        f"server (pid {parent.pid}) calls malloc({BUF_BYTES}) = {buf:#x} in {heap.path or 'an anon mapping'} "
        f"and memset()s it to 'A': {npages} whole pages become resident.",
        [Check(f"all {npages} buffer pages are resident and private to the parent",
               excl == npages and all(s.pfns_filled),
               f"pagemap: {excl}/{npages} pages present with the exclusive bit (56)")],
        pids=(parent.pid,))


def fork_shares_everything(s: Story) -> Step:
    """2. fork(): the child maps the parent's frames, write-protected on both sides; nothing copied."""
    m, parent, buf, npages = s.m, s.parent, s.buf, s.npages
    used_before = m.phys.nr_used
    s.child = child = parent.fork()
    s.pfns_forked, _ = _pages(parent, buf, BUF_BYTES)
    pfns_c, raw_c = _pages(child, buf, BUF_BYTES)
    kc = m.kpagecount_array(pfns_c)
    same = child.read(buf, BUF_BYTES) == parent.read(buf, BUF_BYTES) == b"A" * BUF_BYTES
    buf_copies = _region_events(m, s.mark, child.pid, "cow-copy", buf, buf + BUF_BYTES)
    other = [_mapping_name(parent, e.address) for e in m.events.since(s.mark) if e.kind == "cow-copy"]
    return Step(
        "2. fork(): the child gets an exact copy — in theory",
        f"child (pid {child.pid}) reads the same bytes, but no page was copied: parent and child map "
        "the same frames, now write-protected in both.",
        [Check("the child sees exactly the parent's bytes", same, f"{BUF_BYTES} bytes compared, all 'A'"),
         Check("nothing of the buffer was copied: same physical frame for every page",
               bool(np.array_equal(s.pfns_forked, pfns_c) and np.array_equal(s.pfns_forked, s.pfns_filled)),
               f"{npages}/{npages} PFNs identical in parent and child; kpagecount=2 on "
               f"{int(np.count_nonzero(kc == 2))} of them"),
         Check("fork() copied no page of the buffer", buf_copies == 0,
               f"frames in use {used_before} -> {m.phys.nr_used}; the only copies: "
               f"{', '.join(other) or 'none'} (returning from fork() writes the stack)"),
         Check("the exclusive bit is gone on both sides (pages are CoW-shared)",
               not np.any(raw_c & np.uint64(PM_MMAP_EXCLUSIVE)), "pagemap bit 56 clear on every buffer page")],
        pids=(parent.pid, child.pid))


def child_writes_part(s: Story) -> Step:
    """3. The child writes a few pages: each first write copies just that page."""
    parent, child, buf, npages = s.parent, s.child, s.buf, s.npages
    start = (buf + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    child.fill(start, CHILD_WRITES * PAGE_SIZE, ord("B"))
    copies = _region_events(s.m, s.mark, child.pid, "cow-copy", buf, buf + BUF_BYTES)
    pfns_c, _ = _pages(child, buf, BUF_BYTES)
    changed = int(np.count_nonzero(pfns_c != s.pfns_forked))
    return Step(
        "3. The child writes part of the buffer: only those pages are copied",
        f"child memset()s {CHILD_WRITES} pages to 'B'; each first write takes a write-protect fault "
        "and copies just that page (do_wp_page -> wp_page_copy).",
        [Check(f"exactly {CHILD_WRITES} pages were copied", copies == CHILD_WRITES == changed,
               f"{copies} cow-copy events in the buffer; {changed} of {npages} child PFNs changed"),
         Check("the parent still sees its own bytes",
               parent.read(start, CHILD_WRITES * PAGE_SIZE) == b"A" * CHILD_WRITES * PAGE_SIZE
               and child.read(start, 1) == b"B", "parent reads 'A', child reads 'B'"),
         Check(f"the other {npages - CHILD_WRITES} pages are still shared",
               npages - changed == npages - CHILD_WRITES, f"{npages - changed} PFNs still identical")],
        pids=(parent.pid, child.pid))


def child_frees(s: Story) -> Step:
    """4. free() in the child writes allocator metadata in simulated memory: those pages are copied."""
    m, parent, child, obj = s.m, s.parent, s.child, s.obj
    mark_free = len(m.events)
    obj_page = obj & ~(PAGE_SIZE - 1)
    parent_before = parent.read(obj_page, PAGE_SIZE), _pages(parent, obj_page, PAGE_SIZE)[0].tolist()
    child.free(obj)
    freed = [e for e in m.events.since(mark_free) if e.pid == child.pid and e.kind == "cow-copy"]
    parent_faults = [e for e in m.events.since(mark_free) if e.pid == parent.pid]
    parent_after = parent.read(obj_page, PAGE_SIZE), _pages(parent, obj_page, PAGE_SIZE)[0].tolist()
    where = sorted({_mapping_name(child, e.address) for e in freed})
    return Step(
        "4. free() in the child copies the pages it writes",
        f"child calls free({obj:#x}): the allocator writes a tcache entry into the chunk and a count into "
        "its bookkeeping, all in simulated memory, so those pages are copied like any other write.",
        [Check("free() in the child copied the pages it wrote", len(freed) >= 1,
               f"{len(freed)} page(s) copied: " + ", ".join(where)),
         Check("the parent's heap is untouched: same bytes, same frame, no fault",
               parent_before == parent_after and not parent_faults,
               f"parent's page {obj_page:#x} still frame {parent_after[1][0]:#x}")],
        pids=(parent.pid, child.pid))


def _code_shared(s: Story, path: str) -> Check:
    """Both processes map `path`'s text at the same frames, and no event ever copied a page of it."""
    tp, tc = _text_vma(s.parent, path), _text_vma(s.child, path)
    rp, rc = s.parent.pagemap_raw(tp.start, tp.npages), s.child.pagemap_raw(tc.start, tc.npages)
    present = ((rp & np.uint64(PM_PRESENT)) != 0) & ((rc & np.uint64(PM_PRESENT)) != 0)
    both = int(np.count_nonzero(present & (rp == rc)))
    copied = sum(1 for e in s.m.events if e.kind in ("cow-copy", "file-copy") and tp.start <= e.address < tp.end)
    return Check(f"code of {path.rsplit('/', 1)[-1]} is shared by both and never copied", both > 0 and copied == 0,
                 f"{both} text pages mapped by both at the same frame (page cache); {copied} copies")


def code_is_shared(s: Story) -> Step:
    """5. Code pages: shared through the page cache by every process, never copied."""
    return Step(
        "5. Code pages are shared by every process and never copied",
        "text is mapped read-only from the page cache; no process can write it, so no fault ever copies it.",
        [_code_shared(s, path) for path in ("/usr/bin/app", LIBC_PATH)],
        pids=(s.parent.pid, s.child.pid))


def child_exits(s: Story) -> Step:
    """6. The child exits; the parent's writes then reuse every page in place."""
    m, parent, npages = s.m, s.parent, s.npages
    s.child.exit(0)
    parent.wait(s.child)
    mark = len(m.events)
    parent.fill(s.buf, BUF_BYTES, ord("C"))
    ev = m.events.counts(since=mark, pid=parent.pid)
    pfns, _ = _pages(parent, s.buf, BUF_BYTES)
    return Step(
        "6. After the child exits, the parent's writes copy nothing",
        "the exiting child dropped its mappings; each page is referenced once again, so the parent's "
        "write fault reuses it in place (wp_page_reuse) instead of copying.",
        [Check("no copies: every write fault reused the page", ev.get("cow-copy", 0) == 0,
               f"events: {ev.get('cow-reuse', 0)} cow-reuse, {ev.get('cow-copy', 0)} cow-copy"),
         Check("the parent keeps its original frames", bool(np.array_equal(pfns, s.pfns_filled)),
               f"{npages}/{npages} PFNs unchanged since step 1")],
        pids=(parent.pid,))


def step_notes(steps: list[Step]) -> list[str]:
    """One note per step with a snapshot, for the HTML report: what happened, then each check's claim."""
    return [s.text + " " + " ".join(("✓ " if c.ok else "✗ ") + c.claim for c in s.checks)
            for s in steps if s.snapshot is not None]


#: The acts, in the order they are played.
STORY: tuple[Callable[[Story], Step], ...] = (
    malloc_and_fill, fork_shares_everything, child_writes_part, child_frees, code_is_shared, child_exits)


def run_demo(allocator: str | None = None) -> tuple[Machine, list[Step]]:
    """Play the story on a fresh model machine; every claim is computed, none is assumed."""
    story = Story(Machine(allocator=allocator))
    for act in STORY:
        story.tell(act(story))
    story.m.check()
    return story.m, story.steps
