"""A process of the Linux backend: a real agent process driven over its socket.

Every call sends one command (`linux.wire`) and waits for the agent's reply, so the agent is
blocked on its socket whenever a view is read: /proc figures are those of a quiescent process. A
fatal signal the agent reports (SIGSEGV, SIGBUS, SIGABRT) or the end of its socket becomes the
same user-visible outcome the model raises (Segfault, ProcessKilled, Aborted, ProcessGone); a call
that could not return (a parent suspended in vfork, a wait on a running child) is ProcessBlocked,
checked before anything is sent. The malloc family is in `linux.libc`, the views in `linux.views`.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Aborted, ProcessBlocked, ProcessGone, ProcessKilled, Segfault, SyscallError
from ..observe import procfs
from ..observe.arguments import MADV, checked
from ..observe.backend import ExitStatus
from . import lru
from .file import File
from .libc import GlibcCalls
from .thread import AgentThreads, Thread
from .views import ProcessViews
from .wire import (
    MMAP_FIXED,
    MMAP_POPULATE,
    MMAP_SHARED,
    OP_BRK,
    OP_EXEC,
    OP_EXIT,
    OP_FILL,
    OP_FORK,
    OP_INFO,
    OP_MADVISE,
    OP_MLOCK,
    OP_MMAP,
    OP_MPROTECT,
    OP_MREMAP,
    OP_MUNLOCK,
    OP_MUNMAP,
    OP_READ,
    OP_SBRK,
    OP_SETNAME,
    OP_TOUCH,
    OP_VFORK,
    OP_WAIT,
    OP_WRITE,
    SEGV_REASONS,
    T_ABRT,
    T_DATA,
    T_HELLO,
    T_RESULT,
    T_SEGV,
    Conn,
    prot_bits,
)

if TYPE_CHECKING:
    from .machine import Machine


@checked
class Process(ProcessViews, GlibcCalls, AgentThreads):
    """A process of the Linux backend: a real agent process driven over its socket."""

    def __init__(self, machine: Machine, pid: int, ppid: int, name: str, conn: Conn,
                 popen: subprocess.Popen[bytes] | None = None) -> None:
        self.machine = machine
        self.pid = pid
        self._ppid = ppid
        self.name = name
        self._conn: Conn | None = conn
        self._popen = popen
        self.exit_status: ExitStatus | None = None
        self._reaped = False
        self._vfork_child: Process | None = None  # set while this process is suspended in vfork
        self._vfork_parent: Process | None = None
        self._exec_done = False  # a vfork child that exec'd has released its parent
        self._threads: list[Thread] = []  # made by pthread_create, not joined yet
        self._next_slot = 1

    # --- plumbing --------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"<linux.Process {self.pid} {self.name} {self.state}>"

    @property
    def alive(self) -> bool:  # type: ignore[override]
        """True until the process exits or is killed."""
        return self.exit_status is None

    @property
    def ppid(self) -> int:
        """The parent pid (from /proc while alive; init's adoption shows there)."""
        if self.alive:
            try:
                return procfs.read_ppid(self.pid)
            except (ProcessGone, OSError, IndexError):
                pass
        return self._ppid

    @property
    def state(self) -> str:  # type: ignore[override]
        """"R" alive, "D" suspended in vfork, "Z" dead and not waited for, "X" reaped.

        (The agent itself sleeps on its socket between commands; as a scenario sees it, it runs.)
        An orphan (its parent agent is gone) counts as reaped: init reaps it, as the model says,
        whenever this system's init gets to it."""
        if self.exit_status is None:
            return "D" if self._suspended() else "R"
        if not self._reaped:
            if procfs.process_state(self.pid) is None:
                self._reaped = True
            else:
                try:
                    parent = procfs.read_ppid(self.pid)
                except (ProcessGone, OSError, IndexError, ValueError):
                    parent = -1
                live = {p.pid for p in self.machine.processes.values() if p.alive}
                if parent not in live:
                    return "X"
        return "X" if self._reaped else "Z"

    @property
    def stderr(self) -> str:
        """What the process wrote to stderr (glibc's abort messages)."""
        path = Path(self.machine._errdir) / f"{self.pid}.err"
        return path.read_text(errors="replace") if path.exists() else ""

    def _suspended(self) -> bool:
        """Suspended in vfork: the child has neither exec'd nor exited yet."""
        child = self._vfork_child
        return child is not None and child.alive and not child._exec_done

    def _ready(self) -> Conn:
        """The socket of a process that can take a command: ProcessGone when dead, ProcessBlocked
        when suspended in vfork; a vfork parent whose child has let go is resumed first."""
        if not self.alive or self._conn is None:
            raise ProcessGone.of_state(self.pid, self.state)
        if self._suspended():
            raise ProcessBlocked.in_vfork(self.pid)
        if self._vfork_child is not None:
            self._resume_after_child()
            if self._conn is None:
                raise ProcessGone.of_state(self.pid, self.state)
        return self._conn

    def _drain(self) -> None:
        """Drain every CPU's LRU batches (`linux.lru`): before each command, and once it is done,
        so that what the views show between commands is the drained state too."""
        if self.machine.drain_lru:
            lru.drain_all()

    def _send(self, op: int, *args: int, payload: bytes = b"") -> Conn:
        """Send one command to a process that can take it, every CPU's LRU batches drained first;
        its socket."""
        conn = self._ready()
        self._drain()
        try:
            conn.send(op, *args, payload=payload)
        except OSError:  # EPIPE, ECONNRESET: killed from outside (kill -9, the OOM killer)
            raise self._gone() from None
        return conn

    def _gone(self) -> ProcessKilled | ProcessGone:
        """The agent died under us: its status recorded, the outcome to raise (ProcessKilled with
        the signal that killed it, as the kernel reports it)."""
        self._died()
        kind, value = self.exit_status or ("signal", signal.SIGKILL)
        if kind == "signal":
            return ProcessKilled(self.pid, value, "killed from outside cowscope")
        return ProcessGone(self.pid, f"exited with status {value} on its own")

    def _call(self, op: int, *args: int, payload: bytes = b"", what: str = "") -> tuple[int, int]:
        """Send one command and return (ret, aux); raise the user-visible outcome on failure."""
        self._send(op, *args, payload=payload)
        return self._result(what or f"op{op}")

    def _call_data(self, op: int, *args: int, what: str = "") -> bytes:
        """Send one command and collect the T_DATA pieces of its reply up to its T_RESULT."""
        self._send(op, *args)
        out = bytearray()
        while True:
            tag, _err, ret, _aux = self._recv_or_die()
            if tag == T_RESULT:
                return bytes(out)
            if tag != T_DATA:
                raise RuntimeError(f"agent {self.pid}: unexpected reply tag {tag} to {what}")
            try:
                data = self._conn.recv_exact(ret) if self._conn else None
            except OSError:
                data = None
            if data is None:
                raise self._gone()
            out += data

    def _result(self, what: str) -> tuple[int, int]:
        rep = self._recv_or_die()
        tag, err, ret, aux = rep
        if tag != T_RESULT:
            raise RuntimeError(f"agent {self.pid}: unexpected reply tag {tag} to {what}")
        if ret == -1 and err:
            raise SyscallError(err, what)
        return ret, aux

    def _recv_or_die(self) -> tuple[int, int, int, int]:
        """Next reply; a fatal-signal report or EOF turns into the matching exception."""
        assert self._conn is not None
        try:
            rep = self._conn.recv()
        except OSError:  # ECONNRESET
            rep = None
        if rep is None:
            raise self._gone()
        tag, err, ret, aux = rep
        if tag != T_DATA:  # the command is done (a piece of its data is not)
            self._drain()
        if tag == T_SEGV and err == signal.SIGBUS:
            self._died(("signal", err))
            raise ProcessKilled(self.pid, err, f"bus error at {aux:#x} (beyond the end of the object)")
        if tag == T_SEGV:
            self._died(("signal", err))
            raise Segfault(self.pid, aux, SEGV_REASONS.get(ret, f"si_code {ret}"))
        if tag == T_ABRT:
            self._died(("signal", signal.SIGABRT))
            raise Aborted(self.pid, self.stderr.strip().splitlines()[-1] if self.stderr.strip() else "")
        return rep

    def _died(self, status: ExitStatus | None = None) -> None:
        """The agent is gone: wait for its socket to close (its mm is gone by then), record status."""
        if self._conn is not None:
            try:
                while self._conn.recv() is not None:
                    pass
            except OSError:
                pass
            self._conn.close()
            self._conn = None
        if status is None and self._popen is not None:
            rc = self._popen.wait()
            status = ("exit", rc) if rc >= 0 else ("signal", -rc)
        if status is None:  # a forked agent: its parent agent has not reaped it, /proc says how it died
            status = _zombie_status(self.pid)
        self.exit_status = status or ("signal", signal.SIGKILL)
        self._end_threads()
        if self._popen is not None:
            self._popen.wait()
            self._reaped = True
        if self._vfork_parent is not None:
            self._vfork_parent._resume_after_child()
            self._vfork_parent = None

    # --- process lifecycle -----------------------------------------------------------------

    def _recv_fd(self, conn: Conn, call: str) -> tuple[tuple[int, int, int, int], int]:
        """The reply to fork/vfork with the new process's socket; the agent's failure (socketpair,
        fork: ENOMEM, EAGAIN) as SyscallError, this controller out of descriptors as EMFILE."""
        try:
            rep, fd, truncated = conn.recv_fd()
        except OSError:
            rep, fd, truncated = None, None, False
        if rep is None:
            raise self._gone()
        if truncated:
            if fd is not None:
                os.close(fd)
            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            raise SyscallError(errno.EMFILE, call, "cowscope holds one socket per process and is out of file "
                               f"descriptors (RLIMIT_NOFILE {soft}): raise it, e.g. `ulimit -n 4096`")
        if rep[0] == T_RESULT and rep[2] == -1:
            raise SyscallError(rep[1], call)
        if fd is None:
            raise RuntimeError(f"agent {self.pid}: no socket with the reply to {call}")
        return rep, fd

    def refresh(self) -> None:
        """Notice a death from outside cowscope (kill -9, the OOM killer) between calls."""
        if self.exit_status is None and procfs.process_state(self.pid) in (None, "Z", "X", "x"):
            self._died()

    def fork(self) -> Process:
        """fork(2): a new agent with a copy-on-write copy of this address space."""
        conn = self._send(OP_FORK)
        rep, fd = self._recv_fd(conn, "fork")
        child = self.machine._adopt(fd, rep[2], self.pid, self.name)
        self._drain()
        return child

    def vfork(self) -> Process:
        """vfork(2): the child shares this address space; this process waits until it execs or exits."""
        conn = self._send(OP_VFORK)
        _rep, fd = self._recv_fd(conn, "vfork")
        child = self.machine._adopt(fd, 0, self.pid, self.name)
        self._vfork_child = child
        child._vfork_parent = self
        self._drain()
        return child

    def exec(self, image: Any = None, name: str | None = None) -> None:
        """execve(2) of a fresh agent image (`image` is the model's; the agent runs itself): the old
        address space is released; `name` renames the process."""
        self._send(OP_EXEC)
        rep = self._recv_or_die()
        if rep[0] != T_HELLO:
            raise SyscallError(rep[1] or errno.ENOEXEC, "execve")
        self._exec_done = True
        self._end_threads()
        if self._vfork_parent is not None:
            self._vfork_parent._resume_after_child()
            self._vfork_parent = None
        self.name = name or self.name
        self._call(OP_SETNAME, payload=self.name.encode()[:15], what="prctl")

    def _resume_after_child(self) -> None:
        """Our vfork child exec'd or exited: read the pid we report on resuming."""
        if self._vfork_child is None or self._conn is None:
            return
        self._vfork_child = None
        rep = self._conn.recv()
        if rep is None:
            self._died()

    def exit(self, code: int = 0) -> None:
        """_exit(code): the process becomes a zombie (its memory is released)."""
        self._send(OP_EXIT, code)
        self._died(("exit", code & 0xFF))
        self._drain()

    def wait(self, child: Process | None = None) -> tuple[int, ExitStatus]:
        """waitpid(2) for `child` (any child if None): (pid, exit status), the child is reaped.
        ProcessBlocked, without asking the kernel, when every such child is still running."""
        self._ready()
        children = [p for p in self.machine.processes.values()
                    if p._ppid == self.pid and not p._reaped and (child is None or p is child)]
        if children and all(p.alive for p in children):
            raise ProcessBlocked.on_wait(children[0].pid)
        pid, status = self._call(OP_WAIT, child.pid if child else -1, 0, what="wait")
        proc = self.machine.processes.get(pid)
        decoded = _decode_status(status)
        if proc is not None:
            proc._reaped = True
            proc.exit_status = proc.exit_status or decoded
        return pid, decoded

    # --- memory syscalls -------------------------------------------------------------------

    def mmap(self, length: int, prot: str | int = "rw", shared: bool = False, file: File | None = None,
             offset: int = 0, addr: int | None = None, fixed: bool = False, populate: bool = False) -> int:
        """mmap(2); `populate` is MAP_POPULATE. The VMA gets the flags mmap gives it and no more
        (THP follows the host's mode, which the model is given: `Machine.model_config`)."""
        flags = (MMAP_SHARED if shared else 0) | (MMAP_FIXED if fixed else 0)
        flags |= MMAP_POPULATE if populate else 0
        path = file.real_path.encode() if file is not None else b""
        ret, _ = self._call(OP_MMAP, length, prot_bits(prot), flags, addr or 0, offset, payload=path,
                            what="mmap")
        return ret

    def munmap(self, addr: int, length: int) -> None:
        """munmap(2)."""
        self._call(OP_MUNMAP, addr, length, what="munmap")

    def mprotect(self, addr: int, length: int, prot: str | int) -> None:
        """mprotect(2); prot letters r, w, x ("" = PROT_NONE)."""
        self._call(OP_MPROTECT, addr, length, prot_bits(prot), what="mprotect")

    def madvise(self, addr: int, length: int, advice: str | int) -> None:
        """madvise(2) with the model's advice names (or a number)."""
        value = MADV[advice] if isinstance(advice, str) else advice
        self._call(OP_MADVISE, addr, length, value, what="madvise")

    def mlock(self, addr: int, length: int) -> None:
        """mlock(2)."""
        self._call(OP_MLOCK, addr, length, what="mlock")

    def munlock(self, addr: int, length: int) -> None:
        """munlock(2)."""
        self._call(OP_MUNLOCK, addr, length, what="munlock")

    def mremap(self, addr: int, old_len: int, new_len: int, may_move: bool = True,
               new_addr: int | None = None) -> int:
        """mremap(2); returns the (possibly new) address (MREMAP_FIXED at `new_addr` if given)."""
        return self._call(OP_MREMAP, addr, old_len, new_len, int(may_move), new_addr or 0, what="mremap")[0]

    def brk(self, new_end: int | None = None) -> int:
        """brk(2) through glibc: returns the (possibly unchanged) program break."""
        ret, _ = self._call(OP_BRK, new_end or 0, what="brk")
        return ret

    def sbrk(self, delta: int) -> int:
        """sbrk(3): the old break; SyscallError(ENOMEM) when the kernel refuses."""
        return self._call(OP_SBRK, delta, what="sbrk")[0]

    def heap_start(self) -> int:
        """The initial program break (start of [heap]); not part of the shared interface."""
        return self._call(OP_INFO, what="sbrk")[0]

    # --- memory access: the CPU's own loads and stores -------------------------------------

    def read(self, addr: int, n: int) -> bytes:
        """Load n bytes (read faults as a program would take them)."""
        return self._call_data(OP_READ, addr, n, what="read")

    def write(self, addr: int, data: bytes) -> None:
        """Store bytes."""
        self._call(OP_WRITE, addr, len(data), payload=bytes(data), what="write")

    def fill(self, addr: int, length: int, byte: int) -> None:
        """memset."""
        self._call(OP_FILL, addr, length, byte, what="fill")

    def touch(self, addr: int, length: int, write: bool = False) -> None:
        """One access per page of [addr, addr+length): a load, or a write that keeps the byte."""
        self._call(OP_TOUCH, addr, length, int(write), what="touch")

    def read_u64(self, addr: int) -> int:
        """Load a little-endian u64."""
        return int.from_bytes(self.read(addr, 8), "little")

    def write_u64(self, addr: int, value: int) -> None:
        """Store a little-endian u64."""
        self.write(addr, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))


def _zombie_status(pid: int) -> ExitStatus | None:
    """How a process that is still a zombie died (/proc/PID/stat exit_code), None if it is gone."""
    try:
        st = procfs.read_stat(pid)
    except (ProcessGone, OSError):
        return None
    return _decode_status(st.exit_code) if st.state == "Z" else None


def _decode_status(status: int) -> ExitStatus:
    if os.WIFSIGNALED(status):
        return ("signal", os.WTERMSIG(status))
    return ("exit", os.WEXITSTATUS(status))
