"""Threads and glibc's arenas around fork: stacks, arena heaps, fork from a thread, exit and exec.

Facts of shared/reference/hugepage-swap-thread-facts.md (threads and arenas, glibc 2.36): a thread's
stack is 8 MiB above a guard page; its first malloc reserves a 64 MiB-aligned heap, 132 KiB of it
read-write, the block at heap + 0xb70; fork() from any thread leaves the child one thread (the
caller's copy) and every other thread's stack and arena mapped, copy-on-write shared; glibc's fork
handlers keep the caller's arena attached in the child and put the others on the free list.
Threads are named "P/t1" (verify.thread), their stacks are regions "P/t1:stack" and arena heaps
regions "A1", "A2" (whole 64 MiB reservations), observed at every checkpoint on both backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import ProcessGone
from . import PAGE, scenario

if TYPE_CHECKING:
    from ..process import TracedProcess
    from ..thread import TracedThread
    from ..trace import TracedMachine

HEAP = 64 << 20                  # HEAP_MAX_SIZE: a non-main arena's heap reservation
STACK_PAGES = (8 << 20) // PAGE  # the default stack (RLIMIT_STACK 8 MiB), above one guard page
M_ARENA_MAX = -8                 # mallopt parameter (malloc.h)


def _stack(m: TracedMachine, p: TracedProcess, t: TracedThread) -> list[str]:
    """Page tokens of t's stack mapping (guard page first) in p."""
    lo, hi = t.stack_range()
    return m.tokens(p, lo, (hi - lo) // PAGE)


def _heap_of(ptr: int) -> int:
    return ptr & ~(HEAP - 1)


def _vmas(m: TracedMachine, p: TracedProcess, lo: int, hi: int) -> list[tuple[int, int, str]]:
    """(first page, pages, perms) of the VMAs inside [lo, hi), relative to lo."""
    return [((s.vma.start - lo) // PAGE, (s.vma.end - s.vma.start) // PAGE, s.vma.perms)
            for s in p.smaps() if lo <= s.vma.start < hi]


def _threaded(m: TracedMachine, npages: int = 4, fill: int = 0x5A) -> tuple[TracedProcess, TracedThread, int]:
    """A process whose thread malloc'd a block of npages pages (in its arena) and filled it."""
    p = m.spawn("P")
    t = p.pthread_create()
    x = t.malloc(npages * PAGE - 16)
    t.fill(x, npages * PAGE - 16, fill)
    return p, t, x


@scenario("P01", "pthread_create maps an 8 MiB stack over a guard page; the first malloc a 64 MiB arena heap")
def thread_stack_and_arena(m: TracedMachine) -> None:
    p = m.spawn("P")
    p.malloc(24)
    t = p.pthread_create()
    lo, hi = t.stack_range()
    m.expect_eq(_vmas(m, p, lo, hi), [(0, 1, "---p"), (1, STACK_PAGES, "rw-p")],
                "the stack mapping: a PROT_NONE guard page under 8 MiB read-write")
    x = t.malloc(24)
    m.checkpoint("thread malloc'd")
    heap = _heap_of(x)
    m.expect_eq(x - heap, 0xB70, "the thread's first block at heap + 0xb70")
    m.expect_eq(_vmas(m, p, heap, heap + HEAP), [(0, 33, "rw-p"), (33, HEAP // PAGE - 33, "---p")],
                "132 KiB read-write, the rest of the 64 MiB reserved PROT_NONE")
    m.expect_eq((p.status().threads, len(p.tasks())), (2, 2), "status Threads: and /proc/PID/task")
    stack = _stack(m, p, t)
    m.expect(stack[0] == "-" and "X" in stack[-2:], f"guard page empty, top of the stack resident: {stack[-4:]}")


@scenario("P02", "fork keeps the other thread's stack and arena mapped in the child, shared")
def fork_keeps_thread_memory(m: TracedMachine) -> None:
    p, t, x = _threaded(m)
    c = p.fork()
    m.checkpoint("forked")
    m.expect_eq((c.status().threads, len(c.tasks()), p.status().threads), (1, 1, 2),
                "the child has one thread, the parent still two")
    heap = _heap_of(x)
    m.expect_eq(_vmas(m, c, heap, heap + HEAP), _vmas(m, p, heap, heap + HEAP), "the arena heap in the child")
    block = m.tokens(c, x & ~(PAGE - 1), 4)
    m.expect_eq(block, ["X", "S2", "S2", "S2"], "the thread's block shared by parent and child but for the "
                "arena's first page, whose lock glibc's fork handlers wrote on both sides")
    m.expect_eq(c.read(x, 8), b"\x5a" * 8, "the child reads the thread's block")
    stack = _stack(m, c, t)
    m.expect_eq(stack[-2:], ["S2", "X"], "the thread's frames shared; its TCB page copied by the child, "
                "whose reclaim_stacks marked the stack free")


@scenario("P03", "CoW on another thread's arena: the child's write copies one page, the rest stays shared")
def child_writes_thread_arena(m: TracedMachine) -> None:
    p, t, x = _threaded(m, 6)
    c = p.fork()
    page = (x & ~(PAGE - 1)) + 2 * PAGE
    c.write(page + 100, b"child")
    m.checkpoint("child wrote")
    got = m.tokens(c, x & ~(PAGE - 1), 6)
    m.expect_eq(got[2], "X", "the written page is the child's own copy")
    m.expect_eq(got[1:2] + got[3:], ["S2"] * 4, "the other pages of the block still shared")
    m.expect_eq((t.read(page + 100, 5), c.read(page + 100, 5)), (b"\x5a" * 5, b"child"),
                "the thread still sees its bytes")


@scenario("P04", "after fork the thread writes its own arena: the parent copies, the child keeps the old page")
def thread_writes_after_fork(m: TracedMachine) -> None:
    p, t, x = _threaded(m, 4)
    c = p.fork()
    page = (x & ~(PAGE - 1)) + 2 * PAGE
    t.fill(page, PAGE, 0x77)
    y = t.malloc(100)
    m.checkpoint("thread wrote")
    m.expect_eq(m.tokens(p, x & ~(PAGE - 1), 4), ["X", "S2", "X", "S2"],
                "the written page copied (and the arena's first page, by the fork handlers)")
    m.expect_eq(c.read(page, 4), b"\x5a" * 4, "the child keeps the bytes of the fork")
    m.expect_eq(_heap_of(y), _heap_of(x), "the thread keeps using its arena")


@scenario("P05", "fork from a thread: the child's only thread is the caller's copy, on the caller's arena")
def fork_from_thread(m: TracedMachine) -> None:
    p, t, x = _threaded(m, 2)
    y = t.malloc(100)
    t.free(y)                               # into t's tcache
    c = t.fork()
    m.checkpoint("forked from the thread")
    m.expect_eq((c.status().threads, len(c.tasks())), (1, 1), "one thread in the child")
    m.expect_eq(c.malloc(100), y, "the child's thread has the caller's tcache")
    z = c.malloc(3000)
    m.expect_eq(_heap_of(z), _heap_of(x), "and the caller's arena (thread_arena)")
    m.expect(c.read(x, 4) == b"\x5a" * 4, "the child reads the thread's block")
    c.fill(z, 3000, 0x33)
    m.checkpoint("child allocated")


@scenario("P06", "a block of another thread's arena freed in the child comes back from the child's tcache")
def child_frees_other_arena(m: TracedMachine) -> None:
    p, t, x = _threaded(m, 1)
    b = t.malloc(200)
    t.fill(b, 200, 0x42)
    c = p.fork()
    c.free(b)                               # the main thread's tcache in the child
    again = c.malloc(200)
    m.checkpoint("child freed and allocated")
    m.expect_eq(again, b, "the child's next malloc of that size returns the other arena's block")
    m.expect_eq(t.read(b, 4), b"\x42" * 4, "the parent's thread keeps its block")
    got = m.tokens(c, b & ~(PAGE - 1), 1)
    m.expect_eq(got, ["X"], "freeing it wrote (copied) its page in the child")


@scenario("P07", "exit of a threaded parent: the threads end; what the child shared becomes exclusive")
def threaded_parent_exits(m: TracedMachine) -> None:
    p, t, x = _threaded(m, 3)
    c = p.fork()
    p.exit(0)
    m.checkpoint("parent exited")
    m.expect_eq(t.state, "exited", "the thread ended with its process")
    m.expect_raises(ProcessGone, lambda: t.malloc(8), "a call on the ended thread")
    m.expect_eq(m.tokens(c, x & ~(PAGE - 1), 3), ["X"] * 3, "the orphan's copy of the arena is exclusive")
    c.write(x, b"\x01")
    m.expect_eq(c.read(x, 2), b"\x01\x5a", "and writable in place")


@scenario("P08", "pthread_exit: glibc gives the stack back below the last frames; the arena stays")
def thread_exit_stack(m: TracedMachine) -> None:
    p, t, x = _threaded(m, 2)
    lo, hi = t.stack_range()
    p.fill(lo + PAGE, 64 * PAGE, 0x11)     # the bottom of the thread's stack, used
    p.fill(hi - 16 * PAGE, 8 * PAGE, 0x22)  # and some below its frames
    m.checkpoint("stack used")
    t.pthread_exit()
    m.checkpoint("thread exited")
    stack = _stack(m, p, t)
    m.expect(all(tok == "-" for tok in stack[1:65]), "the bottom of the stack was given back")
    m.expect(stack[-1] == "X", "the TCB page stays")
    m.expect_eq((p.status().threads, len(p.tasks()), t.state), (1, 1, "exited"), "one task left")
    m.expect_eq(p.read(x, 4), b"\x5a" * 4, "the thread's block stays in its arena")


@scenario("P09", "pthread_join caches the stack: the next thread gets the same mapping and the same arena")
def join_reuses_stack(m: TracedMachine) -> None:
    p, t, x = _threaded(m, 1)
    t.pthread_exit()
    p.pthread_join(t)
    m.checkpoint("joined")
    u = p.pthread_create()
    m.expect_eq(u.stack_range(), t.stack_range(), "the cached stack is reused")
    y = u.malloc(24)
    m.expect_eq(_heap_of(y), _heap_of(x), "the free list hands the arena to the new thread")
    m.checkpoint("second thread")


@scenario("P10", "fork from a thread, then pthread_create in the child: the other threads' stacks are cached")
def child_reuses_reclaimed_stack(m: TracedMachine) -> None:
    p = m.spawn("P")
    t1 = p.pthread_create()
    t2 = p.pthread_create()
    t1.malloc(24)
    t2.malloc(24)
    c = t1.fork()
    u = c.pthread_create()
    m.checkpoint("child made a thread")
    m.expect_eq(u.stack_range(), t2.stack_range(), "the child's new thread runs on t2's old stack")
    y = u.malloc(40)
    m.expect(p.read(y, 1) is not None, "the block lies in memory both processes map")
    m.checkpoint("child's thread malloc'd")


@scenario("P11", "M_ARENA_MAX 2: the second thread shares an existing arena (reused_arena)")
def arena_max(m: TracedMachine) -> None:
    p = m.spawn("P")
    p.mallopt(M_ARENA_MAX, 2)
    p.malloc(24)
    t1, t2 = p.pthread_create(), p.pthread_create()
    a = t1.malloc(24)
    b = t2.malloc(24)
    m.checkpoint("two threads")
    in_main = p.heap_base <= b < p.brk()
    m.expect(_heap_of(a) != _heap_of(b) and in_main, "t1 got a new arena, t2 the main arena back")


@scenario("P12", "exec of a threaded process ends every thread; stacks and arenas are gone")
def threaded_exec(m: TracedMachine) -> None:
    p, t, x = _threaded(m, 2)
    c = p.fork()
    p.exec()
    m.checkpoint("exec'd")
    m.expect_eq((t.state, p.status().threads, len(p.tasks())), ("exited", 1, 1), "one thread after exec")
    m.expect_eq(m.tokens(c, x & ~(PAGE - 1), 2), ["X", "X"], "the child's copy of the arena is exclusive")


@scenario("P13", "the child trims another thread's arena: its pages are dropped there, the parent's kept")
def child_trims_arena(m: TracedMachine) -> None:
    p = m.spawn("P")
    t = p.pthread_create()
    small = t.malloc(24)
    big = [t.malloc(60000) for _ in range(3)]
    for b in big:
        t.fill(b, 60000, 0x66)
    c = p.fork()
    for b in big:
        c.free(b)
    c.malloc_trim(0)
    m.checkpoint("child trimmed")
    heap = _heap_of(small)
    m.expect_eq(m.tokens(c, heap + 33 * PAGE, 12), ["-"] * 12,
                "heap_trim gave back everything above the first 132 KiB in the child")
    m.expect_eq(m.tokens(p, heap + 33 * PAGE, 12), ["X"] * 12, "the parent's pages there are its own again")
    m.expect_eq(_vmas(m, c, heap, heap + HEAP)[0], (0, 45, "rw-p"), "the heap stays read-write (MADV_DONTNEED)")
    m.expect_eq(t.read(big[1], 4), b"\x66" * 4, "the thread's blocks are intact")
