"""Traced threads: a thread's calls logged as its process's are, its stack and arena observed.

A thread is named by its process and creation order ("P/t1" = the first thread P made, "P/t1/t1"
one that thread made). Its stack mapping (guard page included) becomes a region of its process,
"P/t1:stack", and every glibc arena heap a block is first seen in becomes a region "A1", "A2"
(in order of discovery), the heap's whole 64 MiB reservation: checkpoints observe them page by
page like any region, and a fork's child inherits them (they stay mapped in it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..observe.backend import Mallinfo2, Thread
from .process import Region, _bytes_text

if TYPE_CHECKING:
    from .process import TracedProcess


class TracedThread:
    """A thread of a traced process: every call logged under the thread's name."""

    def __init__(self, tp: TracedProcess, thread: Thread, key: str) -> None:
        self._tp = tp
        self._t = thread
        self.key = key
        self._nthreads = 0
        lo, hi = thread.stack_range()
        tp.regions.append(Region(f"{key}:stack", lo, hi - lo, guarded=False))
        tp._tm.thread_keys[thread.tid] = key

    def __repr__(self) -> str:
        return f"<{self.key} tid {self._t.tid}>"

    @property
    def process(self) -> TracedProcess:
        return self._tp

    @property
    def tid(self) -> int:
        return self._t.tid

    @property
    def state(self) -> str:
        return self._t.state

    @property
    def alive(self) -> bool:
        return self._t.alive

    def stack_range(self) -> tuple[int, int]:
        return self._t.stack_range()

    def _do(self, op: str, args: tuple[Any, ...], fn: Any, shown: Any = None) -> Any:
        """Log the call under the thread's name (the process's log, the process's naming). The thread
        runs it on its own stack: a stack page that write gave a new frame (a copy after a fork)
        counts as replaced even if a later checkpoint finds the old frame again."""
        lo, hi = self._t.stack_range()
        return self._tp._replacing(lo, hi - lo, lambda: self._tp._do(op, args, fn, shown, key=self.key))

    # --- threads and fork -----------------------------------------------------------------------

    def pthread_create(self) -> TracedThread:
        """pthread_create from this thread."""
        self._nthreads += 1
        key = f"{self.key}/t{self._nthreads}"
        t = self._do("pthread_create", (), self._t.pthread_create, lambda _t: key)
        return TracedThread(self._tp, t, key)

    def pthread_join(self, thread: TracedThread) -> None:
        """pthread_join from this thread."""
        self._do("pthread_join", (thread.key,), lambda: self._t.pthread_join(thread._t))

    def pthread_exit(self) -> None:
        """The thread ends; glibc gives its stack back below the last frames (MADV_DONTNEED)."""
        lo, hi = self._t.stack_range()
        self._tp._drop(lo, hi - lo)
        self._tp.dropped.update(r.key for r in self._tp.regions if r.key[0] == "A")  # tcache flushed
        self._tp._do("pthread_exit", (), self._t.pthread_exit, key=self.key)  # its stack is given back

    def fork(self) -> TracedProcess:
        """fork from this thread: the child (named as the process's next child) has one thread."""
        tp = self._tp
        tp._nchildren += 1
        key = f"{tp.key}.{tp._nchildren}"
        child = tp._do("fork", (), self._t.fork, lambda _c: key, key=self.key)  # stack pages: fork_race
        tp._tm.fork_race(tp, next((r for r in tp.regions if r.key == f"{self.key}:stack"), None))
        return tp._tm._add(child, key, tp)

    # --- memory access --------------------------------------------------------------------------

    def read(self, addr: int, n: int) -> bytes:
        self._tp._mark(addr, n)
        return self._do("read", (self._tp.where(addr), n), lambda: self._t.read(addr, n), _bytes_text)

    def write(self, addr: int, data: bytes) -> None:
        self._tp._mark(addr, len(data))
        self._tp._replacing(addr, len(data), lambda: self._do(
            "write", (self._tp.where(addr), _bytes_text(bytes(data))), lambda: self._t.write(addr, data)))

    def fill(self, addr: int, length: int, byte: int) -> None:
        self._tp._mark(addr, length)
        self._tp._replacing(addr, length, lambda: self._do(
            "fill", (self._tp.where(addr), length, byte), lambda: self._t.fill(addr, length, byte)))

    def touch(self, addr: int, length: int, write: bool = False) -> None:
        self._tp._mark(addr, length)
        self._tp._replacing(addr, length if write else 0, lambda: self._do(
            "touch", (self._tp.where(addr), length, write), lambda: self._t.touch(addr, length, write)))

    # --- malloc ---------------------------------------------------------------------------------

    def _block(self, ptr: int) -> int:
        """A block in an arena heap not seen before makes the heap a region; an mmap'd one its own."""
        return self._tp._chunk_region(ptr)

    def malloc(self, size: int) -> int:
        return self._block(self._do("malloc", (size,), lambda: self._t.malloc(size), self._tp._block_where))

    def calloc(self, n: int, size: int) -> int:
        return self._block(self._do("calloc", (n, size), lambda: self._t.calloc(n, size), self._tp._block_where))

    def realloc(self, ptr: int, size: int) -> int:
        tp = self._tp
        tp._drop(ptr, 1)
        tp.dropped.add("heap")
        new = self._do("realloc", (tp.where(ptr), size), lambda: self._t.realloc(ptr, size), tp._block_where)
        return tp._realloced(ptr, new)

    def free(self, ptr: int) -> None:
        tp = self._tp
        tp._drop(ptr, 1)
        tp.dropped.add("heap")
        tp._forget_chunk(ptr)
        self._do("free", (tp.where(ptr),), lambda: self._t.free(ptr))

    def malloc_usable_size(self, ptr: int) -> int:
        return self._do("malloc_usable_size", (self._tp.where(ptr),), lambda: self._t.malloc_usable_size(ptr))

    def malloc_trim(self, pad: int = 0) -> int:
        self._tp.dropped.add("heap")
        self._tp.dropped.update(r.key for r in self._tp.regions if r.key[0] == "A")
        return self._do("malloc_trim", (pad,), lambda: self._t.malloc_trim(pad))

    def mallinfo2(self) -> Mallinfo2:
        return self._do("mallinfo2", (), self._t.mallinfo2)

