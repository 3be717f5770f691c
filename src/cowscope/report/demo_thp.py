"""The huge-page story (`cowscope demo thp`): one write after fork copies 4 KiB of a 2 MiB page.

Builds the data only, as report/demo.py does for the malloc story (same Step, Check and Story):
a server maps 4 MiB with MADV_HUGEPAGE and fills it (two 2 MiB THPs, one PMD each); fork shares
both PMDs; one byte written by the child splits the child's PMD and copies one 4 KiB page, where
kernels before 5.8 copied all 2 MiB (shown by replaying the same steps with Machine(kernel="5.4"));
after the child exits the parent's write reuses the whole 2 MiB in place.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..model import Machine
from ..model.kernel.process import Process
from .demo import Check, Step, Story, _pages

HUGE = 2 << 20
BUF = 2 * HUGE

#: (path, perms) of the mappings the demo draws, and the short name it gives them
SHOWN = {("", "rw-p", "hg"): "buffer", ("[stack]", "rw-p"): "[stack]"}


def _thp_buffer(p: Process) -> int:
    """4 MiB of private anonymous memory on a 2 MiB boundary, with MADV_HUGEPAGE."""
    base = p.mmap(BUF + HUGE)
    buf = (base + HUGE - 1) & ~(HUGE - 1)
    p.madvise(buf, BUF, "hugepage")
    return buf


def _ahp(p: Process, addr: int) -> int:
    return next(s for s in p.smaps() if s.vma.start <= addr < s.vma.end).fields["AnonHugePages"]


def map_and_fill(s: Story) -> Step:
    """1. The parent fills a MADV_HUGEPAGE buffer: each 2 MiB is one folio mapped by one PMD."""
    s.parent = parent = s.m.spawn("server")
    s.buf = buf = _thp_buffer(parent)
    parent.fill(buf, BUF, ord("A"))
    s.pfns_filled, _ = _pages(parent, buf, BUF)
    allocs = s.m.events.counts(since=s.mark, pid=parent.pid).get("thp-alloc", 0)
    contiguous = bool(np.all(np.diff(s.pfns_filled[:512]) == 1)) and s.pfns_filled[0] % 512 == 0
    return Step(
        "1. The parent fills a 4 MiB buffer with MADV_HUGEPAGE",
        f"server (pid {parent.pid}) maps 4 MiB at {buf:#x} (2 MiB-aligned), asks for huge pages and "
        "memset()s it: the first write into each 2 MiB block maps a whole 2 MiB folio with one PMD "
        "(do_huge_pmd_anonymous_page).",
        [Check("two write faults mapped two 2 MiB THPs", allocs == 2 and _ahp(parent, buf) == 4096,
               f"{allocs} thp-alloc events; smaps AnonHugePages {_ahp(parent, buf)} kB"),
         Check("each THP is 512 physically contiguous pages", contiguous,
               f"PFNs {int(s.pfns_filled[0]):#x}..{int(s.pfns_filled[511]):#x} of the first one")],
        pids=(parent.pid,))


def fork_shares_pmds(s: Story) -> Step:
    """2. fork(): both huge PMDs are shared, write-protected; no page copied."""
    m, parent, buf = s.m, s.parent, s.buf
    used = m.phys.nr_used
    s.child = child = parent.fork()
    pfns_c, _ = _pages(child, buf, BUF)
    kc = m.kpagecount_array(pfns_c)
    return Step(
        "2. fork(): the child shares both 2 MiB pages",
        f"child (pid {child.pid}) gets the same two PMDs, write-protected in both processes "
        "(copy_huge_pmd): 1,024 pages shared by two PMD entries each.",
        [Check("the child maps the same frames, each counted twice",
               bool(np.array_equal(pfns_c, s.pfns_filled)) and bool(np.all(kc == 2)),
               f"{int(np.count_nonzero(kc == 2))}/1024 pages with kpagecount 2"),
         Check("both still map the buffer with huge pages", _ahp(child, buf) == _ahp(parent, buf) == 4096,
               "smaps AnonHugePages 4096 kB in each"),
         Check("fork copied no page of the buffer", m.phys.nr_used - used < 512,
               f"frames in use {used} -> {m.phys.nr_used} (page tables and the stack, not the buffer)")],
        pids=(parent.pid, child.pid))


def child_writes_one_byte(s: Story) -> Step:
    """3. One byte written by the child: its PMD splits, 4 KiB are copied (2 MiB before Linux 5.8)."""
    m, parent, child, buf = s.m, s.parent, s.child, s.buf
    used, mark = m.phys.nr_used, len(m.events)
    child.write(buf, b"B")
    ev = m.events.counts(since=mark, pid=child.pid)
    splits = sum(1 for e in m.events.since(mark) if e.kind == "thp-split")
    old_rule = _copied_by_old_kernel()
    return Step(
        "3. The child writes one byte: 4 KiB copied, not 2 MiB",
        "the write hits a write-protected PMD that the parent still maps (do_huge_pmd_wp_page): the "
        "child's PMD is split into 512 PTEs and only the written 4 KiB page is copied; the parent keeps "
        "its PMD. Linux before 5.8 copied the whole 2 MiB here (commit 3917c80280c9 names Redis).",
        [Check("one 4 KiB copy after one PMD split", ev.get("cow-copy", 0) == 1 and splits == 1,
               f"{ev.get('cow-copy', 0)} cow-copy, {splits} thp-split; frames in use +{m.phys.nr_used - used}"),
         Check("the child's first 2 MiB is now 4 KiB pages; the parent keeps both huge pages",
               _ahp(child, buf) == 2048 and _ahp(parent, buf) == 4096,
               f"AnonHugePages: child {_ahp(child, buf)} kB, parent {_ahp(parent, buf)} kB"),
         Check("the same write on Linux 5.4 copies 512 pages", old_rule == 512,
               f"Machine(kernel='5.4') replaying steps 1-3: {old_rule} pages copied")],
        pids=(parent.pid, child.pid))


def _copied_by_old_kernel() -> int:
    """Pages copied by the child's one-byte write when the pre-5.8 rule applies."""
    m = Machine(kernel="5.4")
    p = m.spawn("server")
    buf = _thp_buffer(p)
    p.fill(buf, BUF, ord("A"))
    c = p.fork()
    mark = len(m.events)
    c.write(buf, b"B")
    return sum(512 if e.kind == "thp-copy" else 1 for e in m.events.since(mark)
               if e.pid == c.pid and e.kind in ("thp-copy", "cow-copy") and buf <= e.address < buf + BUF)


def parent_reuses_pmd(s: Story) -> Step:
    """4. After the child exits, the parent's write reuses the whole 2 MiB PMD."""
    m, parent, buf = s.m, s.parent, s.buf
    s.child.exit(0)
    parent.wait(s.child)
    mark = len(m.events)
    parent.write(buf + HUGE, b"C")
    ev = m.events.counts(since=mark, pid=parent.pid)
    pfns, _ = _pages(parent, buf + HUGE, HUGE)
    return Step(
        "4. After the child exits, the parent's write copies nothing",
        "nobody else holds the folio now: the write fault makes the whole PMD writable again "
        "(reuse) instead of splitting it.",
        [Check("one reuse of the whole PMD, no copy", ev.get("cow-reuse", 0) == 1 and not ev.get("cow-copy"),
               f"events: {ev.get('cow-reuse', 0)} cow-reuse, {ev.get('cow-copy', 0)} cow-copy"),
         Check("still a huge page, at the same frames",
               _ahp(parent, buf + HUGE) == 4096 and bool(np.array_equal(pfns, s.pfns_filled[512:])),
               f"AnonHugePages {_ahp(parent, buf + HUGE)} kB; 512/512 PFNs unchanged")],
        pids=(parent.pid,))


#: The acts, in the order they are played.
STORY: tuple[Callable[[Story], Step], ...] = (map_and_fill, fork_shares_pmds, child_writes_one_byte,
                                              parent_reuses_pmd)


def run_demo_thp() -> tuple[Machine, list[Step]]:
    """Play the huge-page story on a fresh model machine (THP madvise, as the reference machine)."""
    story = Story(Machine())
    for act in STORY:
        story.tell(act(story))
    story.m.check()
    return story.m, story.steps


__all__ = ["SHOWN", "STORY", "run_demo_thp"]
