"""A thread of an agent process: commands sent with its slot run on that real thread.

The agent (agent_thread.c) runs one thread at a time: the first thread reads the socket and
hands a command to the thread its slot names, which runs it (its own stack, TLS, errno, tcache,
arena) and replies itself. The stack is found in /proc/PID/maps: the mapping that holds the
thread's descriptor (glibc puts it at the top of the stack), with the guard page below it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import ProcessBlocked, ProcessGone
from ..observe import procfs
from ..observe.arguments import checked
from .libc import GlibcCalls
from .wire import (
    OP_FILL,
    OP_FORK,
    OP_MALLOC_STATS,
    OP_READ,
    OP_THREAD_CREATE,
    OP_THREAD_EXIT,
    OP_THREAD_JOIN,
    OP_TOUCH,
    OP_WRITE,
    SLOT_SHIFT,
)

if TYPE_CHECKING:
    from .machine import Machine
    from .process import Process


@checked
class Thread(GlibcCalls):
    """A thread made by `Process.pthread_create` (a real pthread of the agent)."""

    def __init__(self, process: Process, slot: int, tid: int, descriptor: int) -> None:
        self._process = process
        self.slot = slot
        self._tid = tid
        self._state = "running"
        self._stack = _stack_around(process.pid, descriptor)

    def __repr__(self) -> str:
        return f"<linux.Thread {self.tid} of {self._process.pid} {self.state}>"

    @property
    def tid(self) -> int:
        return self._tid

    @property
    def process(self) -> Process:
        return self._process

    @property
    def state(self) -> str:
        """"running", "exited" (ended, or its process died or exec'd) or "joined"."""
        if self._state == "running" and not self._process.alive:
            return "exited"
        return self._state

    @property
    def alive(self) -> bool:
        return self.state == "running"

    def stack_range(self) -> tuple[int, int]:
        """[start, end) of the thread's stack mapping, its guard page included."""
        return self._stack

    def _check(self) -> None:
        self._process._ready()
        if self._state != "running":
            raise ProcessGone.of_thread(self.tid, "exited" if self._state == "exited" else "been joined")

    def _call(self, op: int, *args: int, payload: bytes = b"", what: str = "") -> tuple[int, int]:
        self._check()
        return self._process._call(op | self.slot << SLOT_SHIFT, *args, payload=payload, what=what)

    def _call_data(self, op: int, *args: int, what: str = "") -> bytes:
        self._check()
        return self._process._call_data(op | self.slot << SLOT_SHIFT, *args, what=what)

    # --- memory access, on this thread ------------------------------------------------------
    def read(self, addr: int, n: int) -> bytes:
        return self._call_data(OP_READ, addr, n, what="read")

    def write(self, addr: int, data: bytes) -> None:
        self._call(OP_WRITE, addr, len(data), payload=bytes(data), what="write")

    def fill(self, addr: int, length: int, byte: int) -> None:
        self._call(OP_FILL, addr, length, byte, what="fill")

    def touch(self, addr: int, length: int, write: bool = False) -> None:
        self._call(OP_TOUCH, addr, length, int(write), what="touch")

    def read_u64(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, 8), "little")

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))

    # --- threads and fork -------------------------------------------------------------------
    def fork(self) -> Process:
        """fork(2) from this thread: the child's only thread is its copy (it serves the child)."""
        self._check()
        p = self._process
        conn = p._send(OP_FORK | self.slot << SLOT_SHIFT)
        rep, fd = p._recv_fd(conn, "fork")
        child = p.machine._adopt(fd, rep[2], p.pid, p.name)
        p._drain()
        return child

    def pthread_create(self) -> Thread:
        self._check()
        return self._process._pthread_create(self.slot)

    def pthread_join(self, thread: Thread) -> None:
        self._check()
        self._process._pthread_join(self.slot, thread)

    def pthread_exit(self) -> None:
        """The thread returns from its start routine; the call returns once its task is gone."""
        self._check()
        self._process._pthread_exit(self)

    def malloc_stats(self) -> str:
        return self._process._malloc_stats(self.slot)


class AgentThreads:
    """Process's pthread calls (a mixin of `linux.process.Process`: its `_call`, `_ready`)."""

    pid: int
    machine: Machine
    _threads: list[Thread]
    _next_slot: int

    def pthread_create(self) -> Thread:
        """pthread_create(3) from the initial thread (default attributes, 8 MiB stack)."""
        return self._pthread_create(0)

    def _pthread_create(self, creator_slot: int) -> Thread:
        slot = self._next_slot
        tid, descriptor = self._call(OP_THREAD_CREATE | creator_slot << SLOT_SHIFT, slot, what="pthread_create")
        self._next_slot += 1
        events = self.machine.events
        if hasattr(events, "thread"):
            events.thread(tid, self.pid)
        t = Thread(self, slot, tid, descriptor)
        self._threads.append(t)
        return t

    def pthread_join(self, thread: Thread) -> None:
        """pthread_join(3) from the initial thread; ProcessBlocked if the thread still runs."""
        self._pthread_join(0, thread)

    def _pthread_join(self, joiner_slot: int, thread: Thread) -> None:
        self._ready()
        if thread.process is not self or thread._state == "joined":
            raise ProcessGone.of_thread(thread.tid, "been joined")
        if thread._state == "running":
            raise ProcessBlocked.on_join(thread.tid)
        self._call(OP_THREAD_JOIN | joiner_slot << SLOT_SHIFT, thread.slot, what="pthread_join")
        thread._state = "joined"
        self._threads.remove(thread)

    def _pthread_exit(self, thread: Thread) -> None:
        self._call(OP_THREAD_EXIT | thread.slot << SLOT_SHIFT, what="pthread_exit")
        thread._state = "exited"

    def threads(self) -> list[Thread]:
        """The threads made by pthread_create that still run (the initial one not included)."""
        return [t for t in self._threads if t.alive]

    def tasks(self) -> list[int]:
        """/proc/PID/task: the live tasks' tids, the initial one first."""
        self._check_observable()
        tids = sorted(int(x) for x in os.listdir(f"/proc/{self.pid}/task") if x.isdigit())
        return sorted(tids, key=lambda t: t != self.pid)

    def malloc_stats(self) -> str:
        """malloc_stats(3): what glibc printed on stderr for it."""
        return self._malloc_stats(0)

    def _malloc_stats(self, slot: int) -> str:
        before = len(self.stderr)
        self._call(OP_MALLOC_STATS | slot << SLOT_SHIFT, what="malloc_stats")
        return self.stderr[before:]

    def _end_threads(self) -> None:
        """exec or death: every thread is gone."""
        for t in self._threads:
            if t._state == "running":
                t._state = "exited"


def _stack_around(pid: int, descriptor: int) -> tuple[int, int]:
    """The stack mapping holding a thread's descriptor, plus the guard page just below it."""
    maps = procfs.read_maps(pid)
    for i, vma in enumerate(maps):
        if vma.start <= descriptor < vma.end:
            below = maps[i - 1] if i else None
            guarded = below is not None and below.end == vma.start and below.perms.startswith("---")
            return (below.start if guarded and below is not None else vma.start), vma.end
    raise LookupError(f"pid {pid}: no mapping holds thread descriptor {descriptor:#x}")
