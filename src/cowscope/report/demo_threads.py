"""The threads story (`cowscope demo threads`): a server with four threads forks; the child holds
four malloc arenas it never uses, and their pages stay shared until someone writes them.

Builds the data only, as report/demo.py does for the malloc story (same Step, Check and Story): a
server starts four threads; each one's first malloc gives it an arena of its own (a 64 MiB heap
reservation, `arena_get2`), which it fills with 200 KiB of data. The server forks: the child has one
thread, yet maps all four stacks and all four arenas, copy-on-write shared; only each arena's first
page (its lock, written by glibc's fork handlers on both sides) and each stack's TCB page (marked
free by the child's reclaim_stacks) are copied. The child works on the main arena and the thread
arenas stay shared; when a server thread writes its data, only the pages it writes are copied.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..model import Machine
from ..model.kernel.process import Process
from ..model.kernel.thread import Thread
from ..observe.records import MapsEntry
from .demo import Check, Step, Story, _pages

HEAP = 64 << 20          # glibc's HEAP_MAX_SIZE: an arena's heap reservation, aligned to it
THREADS = 4
BLOCK = 50_000           # below the mmap threshold: carved from the thread's arena
BLOCKS = 4               # per thread: 200 KiB of data in each arena
M_ARENA_MAX = -8         # mallopt parameter (malloc.h)

#: (path, perms, VmFlag) of the mappings the demo draws, and the short name it gives them
SHOWN = {("", "rw-p", "nr"): "arena heap", ("", "rw-p", "nh"): "thread stack", ("[heap]", "rw-p"): "[heap]"}


class ThreadStory(Story):
    """The story's machine and processes, and what later acts compare with."""

    threads: list[Thread]
    blocks: list[list[int]]      # per thread: its malloc'd blocks
    arena_max: int = 0           # mallopt(M_ARENA_MAX) before the threads start (0: glibc's default)


def _arena_heaps(p: Process) -> list[MapsEntry]:
    """The read-write part of every non-main arena heap: 64 MiB-aligned, MAP_NORESERVE, rw."""
    out = []
    for s in p.smaps():
        if s.vma.start % HEAP == 0 and s.vma.perms == "rw-p" and "nr" in s.vm_flags:
            out.append(s.vma)
    return out


def _in(addr: int, maps: list[MapsEntry]) -> bool:
    return any(e.start <= addr < e.end for e in maps)


def _shared_pages(a: Process, b: Process, start: int, end: int) -> tuple[int, int]:
    """(pages both map at the same frame, pages present in a) in [start, end)."""
    pa, _ = _pages(a, start, end - start)
    pb, _ = _pages(b, start, end - start)
    present = pa != 0
    return int(np.count_nonzero(present & (pa == pb))), int(np.count_nonzero(present))


def threads_fill_arenas(s: ThreadStory) -> Step:
    """1. Four threads, four arenas: each thread's first malloc creates its own 64 MiB heap."""
    s.parent = parent = s.m.spawn("server")
    if s.arena_max:
        parent.mallopt(M_ARENA_MAX, s.arena_max)
    parent.malloc(100)
    s.threads = [parent.pthread_create() for _ in range(THREADS)]
    s.blocks = []
    for i, t in enumerate(s.threads):
        blocks = [t.malloc(BLOCK) for _ in range(BLOCKS)]
        for b in blocks:
            t.fill(b, BLOCK, ord("a") + i)
        s.blocks.append(blocks)
    heaps = {b & ~(HEAP - 1) for blocks in s.blocks for b in blocks}
    arenas = _arena_heaps(parent)
    return Step(
        "1. A server starts four threads; each fills 200 KiB from its own arena",
        f"server (pid {parent.pid}) runs pthread_create four times: each thread gets an 8 MiB stack. "
        "A thread's first malloc has no arena yet: with nothing on the free list and fewer arenas "
        "than 8 per CPU, arena_get2 makes a new one, a 64 MiB reservation (PROT_NONE, 64 MiB-aligned) "
        "grown read-write with mprotect as it fills.",
        [Check("four threads, each with its own arena heap", len(heaps) == THREADS == len(arenas),
               f"{len(heaps)} distinct 64 MiB-aligned heaps among the blocks; status Threads: "
               f"{parent.status().threads}"),
         Check("every block lies in its thread's heap, none in [heap]",
               all(b & ~(HEAP - 1) == blocks[0] & ~(HEAP - 1) for blocks in s.blocks for b in blocks),
               f"heaps at {', '.join(hex(h) for h in sorted(heaps))}")],
        pids=(parent.pid,))


def fork_keeps_arenas(s: ThreadStory) -> Step:
    """2. fork(): one thread in the child, all four arenas and stacks mapped and shared."""
    m, parent = s.m, s.parent
    used = m.phys.nr_used
    mark = len(m.events)
    s.child = child = parent.fork()
    arenas = _arena_heaps(child)
    shared = [_shared_pages(child, parent, a.start, a.end) for a in arenas]
    copied = [e for e in m.events.since(mark) if e.kind == "cow-copy" and _in(e.address, arenas)]
    first_pages = {e.address // 4096 * 4096 for e in copied} <= {a.start for a in arenas}
    stacks = [t.stack_range() for t in s.threads]
    stack_maps = [e for e in child.maps() if any(lo <= e.start < hi for lo, hi in stacks)]
    return Step(
        "2. fork(): the child has one thread but all four arenas",
        f"child (pid {child.pid}) is a copy of the thread that forked: one task. The other threads are "
        "gone from it, yet their stacks and arenas stay mapped, copy-on-write. glibc's fork handlers "
        "took every arena's lock before fork and reset it after, on both sides: each arena's first page "
        "(its malloc_state) is written, so copied; the child's reclaim_stacks marks each stack free.",
        [Check("the child has one thread", child.status().threads == 1 and child.tasks() == [child.pid],
               f"status Threads: {child.status().threads} (the server: {parent.status().threads})"),
         Check("the child maps all four arena heaps and all four thread stacks",
               len(arenas) == THREADS and len(stack_maps) == 2 * THREADS,
               f"{len(arenas)} arena heaps, {len(stack_maps)} stack mappings (guard page + stack each)"),
         Check("their pages are shared but each arena's first page",
               all(n == total - 1 for n, total in shared) and first_pages,
               f"per arena, pages at the same frame: {', '.join(f'{n}/{t}' for n, t in shared)}; "
               f"{len(copied)} copies, each of an arena's first page"),
         Check("fork copied no data", m.phys.nr_used - used < 32,
               f"frames in use {used} -> {m.phys.nr_used}")],
        pids=(parent.pid, child.pid))


def child_never_uses_them(s: ThreadStory) -> Step:
    """3. The child works on its own arena (the main one): the thread arenas stay shared."""
    m, child, parent = s.m, s.child, s.parent
    mark = len(m.events)
    work = [child.malloc(3000) for _ in range(20)]
    for w in work:
        child.fill(w, 3000, ord("z"))
    for w in work[::2]:
        child.free(w)
    arenas = _arena_heaps(child)
    touched = [e for e in m.events.since(mark) if e.pid == child.pid and _in(e.address, arenas)]
    shared = [_shared_pages(child, parent, a.start, a.end) for a in arenas]
    kib = sum(n for n, _t in shared) * 4
    heap = next(e for e in child.maps() if e.path == "[heap]")
    in_main = all(heap.start <= w < heap.end for w in work)
    return Step(
        "3. The child never touches the thread arenas: they stay shared",
        "the child's only thread is the server's main thread, attached to the main arena: its mallocs "
        "and frees use [heap]. The four thread arenas sit in the child unused (glibc put them on its "
        "free list at fork, for threads the child may start later).",
        [Check("the child's blocks come from the main arena", in_main, f"{len(work)} blocks of 3000 bytes"),
         Check("no fault in any thread arena", not touched, f"{len(touched)} events in them"),
         Check("the child holds their pages at the server's frames", all(n == t - 1 for n, t in shared),
               f"{kib} KiB of arena pages shared, unused by the child")],
        pids=(parent.pid, child.pid))


def thread_writes_some(s: ThreadStory) -> Step:
    """4. A server thread rewrites one block: only the pages it writes are copied."""
    m, parent, child = s.m, s.parent, s.child
    t, block = s.threads[1], s.blocks[1][2]
    mark = len(m.events)
    t.fill(block, BLOCK, ord("B"))
    copies = [e for e in m.events.since(mark) if e.kind == "cow-copy" and block - 4096 < e.address < block + BLOCK]
    pages = (block + BLOCK - 1) // 4096 - block // 4096 + 1
    arenas = _arena_heaps(child)
    shared = [_shared_pages(child, parent, a.start, a.end) for a in arenas]
    return Step(
        "4. A server thread rewrites one block: only those pages are copied",
        f"thread {t.tid} memset()s one of its 50,000-byte blocks: each page it writes is still mapped "
        "by the child, so the write fault copies it (wp_page_copy) in the server; the child keeps the "
        "old bytes.",
        [Check(f"the {pages} pages of the block were copied, nothing else", len(copies) == pages,
               f"{len(copies)} cow-copy events"),
         Check("the child still reads the old bytes", child.read(block, 4) == bytes([ord("b")]) * 4
               and t.read(block, 4) == b"BBBB", "child 'b', server 'B'"),
         Check("the other pages of the four arenas are still shared",
               sum(n for n, _ in shared) == sum(t - 1 for _, t in shared) - pages,
               f"pages at the same frame: {', '.join(f'{n}/{t}' for n, t in shared)}")],
        pids=(parent.pid, child.pid))


#: The acts, in the order they are played.
STORY: tuple[Callable[[ThreadStory], Step], ...] = (threads_fill_arenas, fork_keeps_arenas,
                                                    child_never_uses_them, thread_writes_some)


def run_demo_threads(arena_max: int = 0) -> tuple[Machine, list[Step]]:
    """Play the threads story on a fresh model machine (2 CPUs: up to 16 arenas); `arena_max`
    limits the arenas (M_ARENA_MAX) as a server may, and the story's claims then fail."""
    story = ThreadStory(Machine())
    story.arena_max = arena_max
    for act in STORY:
        story.tell(act(story))
    story.m.check()
    return story.m, story.steps


__all__ = ["SHOWN", "STORY", "run_demo_threads"]
