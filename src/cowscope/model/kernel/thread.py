"""Threads of a model process: pthread_create, pthread_exit, pthread_join, fork from a thread.

The kernel's part is small: a thread is a task sharing the process's mm, with a tid from the pid
space, listed in /proc/PID/task and counted in status `Threads:`; exec and exit end every thread
(de_thread, exit_group). glibc's part (`model/libc/nptl.py`) is the memory: stacks, TLS, the stack
cache, and malloc's per-thread state. A call made on a `Thread` runs as that thread: the same
address space, its own errno, tcache and arena.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import ProcessBlocked, ProcessGone
from ...observe.arguments import checked
from ...observe.backend import Mallinfo2
from ..libc.nptl import Nptl, PThread
from .uaccess import access_range

if TYPE_CHECKING:
    from ..libc.base import Allocator
    from .process import Process


@checked
class Thread:
    """A thread made by `Process.pthread_create`: its tid, its stack mapping, and the calls a
    program makes on it (malloc family, memory access, fork, pthread_create/join/exit)."""

    def __init__(self, process: Process, pthread: PThread) -> None:
        self._process = process
        self.pthread = pthread

    def __repr__(self) -> str:
        return f"<Thread {self.tid} of {self._process.pid} {self.state}>"

    # -- identity -------------------------------------------------------------------------------
    @property
    def tid(self) -> int:
        return self.pthread.tid

    @property
    def process(self) -> Process:
        return self._process

    @property
    def state(self) -> str:
        """"running", "exited" (ended, not joined yet; also every thread of a dead process) or
        "joined"."""
        if self.pthread.state == "running" and not self._process.alive:
            return "exited"
        return self.pthread.state

    @property
    def alive(self) -> bool:
        return self.state == "running"

    @property
    def tls(self) -> int:
        """libc's TLS block of the thread (errno at +0x10, tcache +0x48, thread_arena +0x58)."""
        return self.pthread.tls

    def stack_range(self) -> tuple[int, int]:
        """[start, end) of the thread's stack mapping, its guard page included."""
        s = self.pthread.stack
        assert s is not None
        return s.base, s.top

    def _running(self) -> Process:
        """The process, once the thread has woken up to run a call: its frames are written (the
        page under the TCB, then the one below it), as a real thread's code writes them."""
        p = self._process
        p._mm()                                   # ProcessGone / ProcessBlocked for the process
        if self.pthread.state != "running":
            raise ProcessGone.of_thread(self.tid, "exited" if self.pthread.state == "exited" else "been joined")
        run_frames(p, self.pthread)
        return p

    def _alloc(self) -> Allocator:
        return self._running()._alloc_for(self.tls)

    # -- glibc malloc as this thread calls it --------------------------------------------------------
    def malloc(self, size: int) -> int:
        return self._alloc().malloc(size)

    def free(self, ptr: int) -> None:
        self._alloc().free(ptr)

    def calloc(self, n: int, size: int) -> int:
        return self._alloc().calloc(n, size)

    def realloc(self, ptr: int, size: int) -> int:
        return self._alloc().realloc(ptr, size)

    def memalign(self, alignment: int, size: int) -> int:
        return self._alloc().memalign(alignment, size)

    def posix_memalign(self, alignment: int, size: int) -> tuple[int, int]:
        return self._libc_call("posix_memalign", alignment, size)

    def aligned_alloc(self, alignment: int, size: int) -> int:
        return self._libc_call("aligned_alloc", alignment, size)

    def malloc_usable_size(self, ptr: int) -> int:
        return self._alloc().malloc_usable_size(ptr)

    def mallopt(self, param: int, value: int) -> int:
        return self._libc_call("mallopt", param, value)

    def malloc_trim(self, pad: int = 0) -> int:
        return self._libc_call("malloc_trim", pad)

    def mallinfo2(self) -> Mallinfo2:
        return self._libc_call("mallinfo2")

    def malloc_stats(self) -> str:
        return self._libc_call("malloc_stats")

    def _libc_call(self, name: str, *args: Any) -> Any:
        self._alloc()
        return self._process._libc_call(name, *args, tls=self.tls)

    # -- memory access (one mm: the same as the process's) ----------------------------------------
    def read(self, addr: int, n: int) -> bytes:
        return self._running().read(addr, n)

    def write(self, addr: int, data: bytes) -> None:
        self._running().write(addr, data)

    def fill(self, addr: int, length: int, byte: int) -> None:
        self._running().fill(addr, length, byte)

    def touch(self, addr: int, length: int, write: bool = False) -> None:
        self._running().touch(addr, length, write)

    def read_u64(self, addr: int) -> int:
        return self._running().read_u64(addr)

    def write_u64(self, addr: int, value: int) -> None:
        self._running().write_u64(addr, value)

    # -- threads and fork ---------------------------------------------------------------------------
    def fork(self) -> Process:
        """fork(2) from this thread: the child's only thread is a copy of this one."""
        return self._running()._fork_from(self.pthread)

    def pthread_create(self) -> Thread:
        """A new thread created by this one (its DTV calloc'ed in this thread's arena)."""
        return self._running()._pthread_create(self.pthread)

    def pthread_join(self, thread: Thread) -> None:
        """pthread_join from this thread."""
        self._running()._pthread_join(self.pthread, thread)

    def pthread_exit(self) -> None:
        """The thread ends (as returning from its start routine): malloc's thread freeres, its
        stack released to the kernel but for its top, the task gone."""
        p = self._running()
        p.machine.events.add(p.pid, "thread-exit", 0, detail=f"tid {self.tid}")
        p._call(lambda m, pid, mm: p._nptl().exit(self.pthread))


class ProcessThreads:
    """Process's pthread calls (a mixin of model.kernel.process.Process)."""

    nptl: Nptl | None
    pid: int

    def _nptl(self) -> Nptl:
        if self.nptl is None:
            self.nptl = new_nptl(self)
        return self.nptl

    def pthread_create(self) -> Thread:
        """pthread_create(3) from the initial thread: a new thread with its own stack and TLS."""
        self._mm()
        return self._pthread_create(self._nptl().main)

    def _pthread_create(self, creator: PThread) -> Thread:
        m = self.machine
        tid = m.new_tid()
        t = self._call(lambda m_, pid, mm: self._nptl().create(creator, tid))
        m.events.add(self.pid, "thread-create", 0, detail=f"tid {tid}")
        return Thread(self, t)

    def pthread_join(self, thread: Thread) -> None:
        """pthread_join(3) from the initial thread; ProcessBlocked if the thread still runs."""
        self._mm()
        self._pthread_join(self._nptl().main, thread)

    def _pthread_join(self, joiner: PThread, thread: Thread) -> None:
        if thread.process is not self or thread.pthread.state == "joined":
            raise ProcessGone.of_thread(thread.tid, "been joined")
        if thread.pthread.state == "running":
            raise ProcessBlocked.on_join(thread.tid)
        self._call(lambda m, pid, mm: self._nptl().join(joiner, thread.pthread))

    def threads(self) -> list[Thread]:
        """The threads made by pthread_create that still run (the initial one not included)."""
        if self.nptl is None or not self.alive:
            return []
        return [Thread(self, t) for t in self.nptl.threads if t is not self.nptl.main]

    def tasks(self) -> list[int]:
        """/proc/PID/task: the tids of the process's live tasks, the initial one (= pid) first."""
        self._view_mm()
        return [self.pid] + [t.tid for t in self.threads()]


def run_frames(p: Process, t: PThread, returning: bool = False) -> None:
    """A thread runs: it writes its stack's top page (the frames just under its TLS) and the page
    below (measured: a thread of the agent runs each call in those two pages). Woken up, it
    writes the top page first; `returning` from a deeper call (fork in the parent) the lower."""
    if t.stack is not None:
        pages = (t.stack.tls - 8, t.stack.frames)
        for addr in (pages[::-1] if returning else pages):
            p._call(access_range, addr, 8, True)


def new_nptl(p: Process) -> Nptl:
    """A process's thread bookkeeping, made at its first pthread_create: the initial thread is the
    process's own (tid = pid, TLS from exec, or the forking thread's in a fork child)."""
    return Nptl(p, p._alloc_for, PThread(p.pid, p.tls))


def end_threads(p: Process) -> None:
    """exec or exit: every thread but the caller is gone (de_thread / exit_group)."""
    if p.nptl is not None:
        for t in p.nptl.threads:
            if t is not p.nptl.main:
                t.state = "exited"
    p.nptl = None
    p.thread_allocs = {}
