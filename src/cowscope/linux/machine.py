"""The real-kernel backend: the model's Machine API, each process a real agent process.

The controller (this module) talks to every agent over its own AF_UNIX socket. Every call waits
for the agent's reply, so all agents are blocked on their sockets whenever a view is read: the
/proc figures are those of quiescent processes. Views come from `cowscope.observe.procfs`.

Cleanup: agents live in their own process group and are SIGKILLed by `Machine.close()` (also at
interpreter exit); the first agent has PR_SET_PDEATHSIG; every agent exits on EOF of its socket,
so a SIGKILLed controller leaves nothing behind either.
"""

from __future__ import annotations

import array
import atexit
import errno
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Aborted, ProcessGone, ProcessKilled, Segfault, SyscallError
from ..observe import procfs
from ..observe.records import (
    PAGE_SIZE,
    MapsEntry,
    PagemapEntry,
    SmapsEntry,
    SmapsRollup,
    Status,
    pagemap_entries,
)
from .build import agent_path

# Command and reply layouts (agent.c: struct cmd, struct reply).
_CMD = struct.Struct("<II6Q")
_REPLY = struct.Struct("<IiqQ")
(OP_PING, OP_MMAP, OP_MUNMAP, OP_MPROTECT, OP_MADVISE, OP_MREMAP, OP_BRK, OP_SBRK, OP_READ, OP_WRITE,
 OP_FILL, OP_TOUCH, OP_MALLOC, OP_FREE, OP_CALLOC, OP_REALLOC, OP_MEMALIGN, OP_USABLE, OP_FORK,
 OP_VFORK, OP_EXEC, OP_EXIT, OP_WAIT, OP_SETNAME, OP_MLOCK, OP_MUNLOCK, OP_INFO) = range(1, 28)
T_RESULT, T_DATA, T_SEGV, T_ABRT, T_HELLO, T_FD = range(1, 7)
MMAP_SHARED, MMAP_FIXED, MMAP_GUARD, MMAP_NOHUGE = 1, 2, 4, 8

#: madvise advice names (the model's spelling) -> Linux values (include/uapi/asm-generic/mman-common.h).
MADVICE = {
    "normal": 0, "random": 1, "sequential": 2, "willneed": 3, "dontneed": 4, "free": 8,
    "remove": 9, "dontfork": 10, "dofork": 11, "mergeable": 12, "unmergeable": 13, "hugepage": 14,
    "nohugepage": 15, "dontdump": 16, "dodump": 17, "wipeonfork": 18, "keeponfork": 19,
    "cold": 20, "pageout": 21, "populate_read": 22, "populate_write": 23, "collapse": 25,
    "guard_install": 102, "guard_remove": 103,
}
SEGV_REASONS = {1: "no vma", 2: "protection"}  # si_code SEGV_MAPERR, SEGV_ACCERR


def prot_bits(prot: str | int) -> int:
    """"rw"/"r"/"rx"/"" (or an int) -> PROT_* bits."""
    if isinstance(prot, int):
        return prot
    bits = 0
    for ch in prot:
        bits |= {"r": 1, "w": 2, "x": 4, "-": 0}[ch]
    return bits


@dataclass
class File:
    """A file of the machine: `path` as the scenario spells it, `real_path` where it really lives."""

    path: str
    real_path: str

    @property
    def size(self) -> int:
        """Size of the file in bytes."""
        return os.path.getsize(self.real_path)

    def read(self, offset: int = 0, n: int | None = None) -> bytes:
        """pread(2) of the file: what the page cache holds (MAP_SHARED writes included)."""
        with open(self.real_path, "rb") as f:
            f.seek(offset)
            return f.read(-1 if n is None else n)

    def pread(self, n: int, offset: int) -> bytes:
        """pread(2) of n bytes at offset."""
        return self.read(offset, n)


class _Conn:
    """One agent's socket: send a command, receive framed replies."""

    #: Seconds to wait for an agent's reply before giving up (an agent never takes this long).
    TIMEOUT = 300.0

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(self.TIMEOUT)

    def send(self, op: int, *args: int, payload: bytes = b"") -> None:
        """Send one command with its payload."""
        vals = [int(a) & 0xFFFFFFFFFFFFFFFF for a in args] + [0] * (6 - len(args))
        self.sock.sendall(_CMD.pack(op, len(payload), *vals) + payload)

    def recv_exact(self, n: int) -> bytes | None:
        """Exactly n bytes, or None at EOF."""
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def recv(self) -> tuple[int, int, int, int] | None:
        """(tag, err, ret, aux) or None at EOF."""
        data = self.recv_exact(_REPLY.size)
        return None if data is None else _REPLY.unpack(data)

    def recv_fd(self) -> tuple[tuple[int, int, int, int], int]:
        """A T_FD reply with its SCM_RIGHTS descriptor."""
        fds = array.array("i")
        msg, anc, _flags, _addr = self.sock.recvmsg(_REPLY.size, socket.CMSG_LEN(fds.itemsize))
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
        if len(msg) < _REPLY.size:
            rest = self.recv_exact(_REPLY.size - len(msg))
            msg += rest or b""
        if len(msg) < _REPLY.size or not fds:
            raise RuntimeError("agent did not pass a socket")
        return _REPLY.unpack(msg), fds[0]

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


class Process:
    """A process of the Linux backend: a real agent process driven over its socket."""

    def __init__(self, machine: Machine, pid: int, ppid: int, name: str, conn: _Conn,
                 popen: subprocess.Popen[bytes] | None = None) -> None:
        self.machine = machine
        self.pid = pid
        self._ppid = ppid
        self.name = name
        self._conn: _Conn | None = conn
        self._popen = popen
        self.exit_status: tuple[str, int] | None = None
        self._reaped = False
        self._vfork_child: Process | None = None  # set while this process is suspended in vfork
        self._vfork_parent: Process | None = None
        self._exec_done = False  # a vfork child that exec'd has released its parent

    # --- plumbing --------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"<linux.Process {self.pid} {self.name} {self.state}>"

    @property
    def alive(self) -> bool:
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
    def state(self) -> str:
        """ "S" (alive, waiting for a command), "Z" (dead, its parent has not waited), "X" (reaped).

        An orphan (its parent agent is gone) counts as reaped: init reaps it, as the model says,
        whenever this system's init gets to it."""
        if self.exit_status is None:
            return "S"
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

    def _resume_from_vfork(self) -> None:
        """Collect the pid the vfork parent reports once its child exec'd or exited."""
        child = self._vfork_child
        if child is None:
            return
        if child.alive and not child._exec_done:
            raise RuntimeError(f"pid {self.pid} is suspended in vfork until pid {child.pid} execs or exits")
        self._resume_after_child()

    def _call(self, op: int, *args: int, payload: bytes = b"", what: str = "") -> tuple[int, int]:
        """Send one command and return (ret, aux); raise the user-visible outcome on failure."""
        if not self.alive or self._conn is None:
            raise ProcessGone(self.pid, "exited" if self.state == "Z" else "been reaped")
        self._resume_from_vfork()
        self._conn.send(op, *args, payload=payload)
        return self._result(what or f"op{op}")

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
        rep = self._conn.recv()
        if rep is None:
            self._died()
            raise ProcessGone(self.pid)
        tag, err, ret, aux = rep
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

    def _died(self, status: tuple[str, int] | None = None) -> None:
        """The agent is gone: wait for its socket to close (its mm is gone by then), record status."""
        if self._conn is not None:
            while self._conn.recv() is not None:
                pass
            self._conn.close()
            self._conn = None
        if status is None and self._popen is not None:
            rc = self._popen.wait()
            status = ("exit", rc) if rc >= 0 else ("signal", -rc)
        self.exit_status = status or ("signal", signal.SIGKILL)
        if self._popen is not None:
            self._popen.wait()
            self._reaped = True
        if self._vfork_parent is not None:
            self._vfork_parent._resume_after_child()
            self._vfork_parent = None

    # --- process lifecycle -----------------------------------------------------------------

    def fork(self) -> Process:
        """fork(2): a new agent with a copy-on-write copy of this address space."""
        if not self.alive or self._conn is None:
            raise ProcessGone(self.pid)
        self._resume_from_vfork()
        self._conn.send(OP_FORK)
        rep, fd = self._conn.recv_fd()
        return self.machine._adopt(fd, rep[2], self.pid, self.name)

    def vfork(self) -> Process:
        """vfork(2): the child shares this address space; this process waits until it execs or exits."""
        if not self.alive or self._conn is None:
            raise ProcessGone(self.pid)
        self._resume_from_vfork()
        self._conn.send(OP_VFORK)
        _rep, fd = self._conn.recv_fd()
        child = self.machine._adopt(fd, 0, self.pid, self.name)
        self._vfork_child = child
        child._vfork_parent = self
        return child

    def exec(self, image: Any = None) -> None:
        """execve(2) of a fresh agent image: the old address space is released."""
        if not self.alive or self._conn is None:
            raise ProcessGone(self.pid)
        self._conn.send(OP_EXEC)
        rep = self._recv_or_die()
        if rep[0] != T_HELLO:
            raise SyscallError(rep[1] or errno.ENOEXEC, "execve")
        self._exec_done = True
        if self._vfork_parent is not None:
            self._vfork_parent._resume_after_child()
            self._vfork_parent = None
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
        if not self.alive or self._conn is None:
            raise ProcessGone(self.pid)
        self._resume_from_vfork()
        self._conn.send(OP_EXIT, code)
        self._died(("exit", code & 0xFF))

    def wait(self, child: Process | None = None) -> tuple[int, tuple[str, int]]:
        """waitpid(2) for `child` (any child if None): (pid, exit status), the child is reaped."""
        pid, status = self._call(OP_WAIT, child.pid if child else -1, 0, what="waitpid")
        proc = self.machine.processes.get(pid)
        decoded = _decode_status(status)
        if proc is not None:
            proc._reaped = True
            proc.exit_status = proc.exit_status or decoded
        return pid, decoded

    # --- memory operations -----------------------------------------------------------------

    def mmap(self, length: int, prot: str | int = "rw", shared: bool = False, file: File | None = None,
             offset: int = 0, addr: int | None = None, fixed: bool = False, guard: bool = True) -> int:
        """mmap(2); without addr the region gets PROT_NONE guard pages so it never merges."""
        flags = (MMAP_SHARED if shared else 0) | (MMAP_FIXED if fixed else 0) | MMAP_NOHUGE
        if guard and addr is None and not fixed and prot_bits(prot):
            flags |= MMAP_GUARD  # (a PROT_NONE reservation is itself a guard)
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
        value = MADVICE[advice] if isinstance(advice, str) else advice
        self._call(OP_MADVISE, addr, length, value, what="madvise")

    def mlock(self, addr: int, length: int) -> None:
        """mlock(2)."""
        self._call(OP_MLOCK, addr, length, what="mlock")

    def munlock(self, addr: int, length: int) -> None:
        """munlock(2)."""
        self._call(OP_MUNLOCK, addr, length, what="munlock")

    def mremap(self, addr: int, old_len: int, new_len: int, may_move: bool = True) -> int:
        """mremap(2); returns the (possibly new) address."""
        return self._call(OP_MREMAP, addr, old_len, new_len, int(may_move), what="mremap")[0]

    def brk(self, new_end: int | None = None) -> int:
        """brk(2) through glibc: returns the (possibly unchanged) program break."""
        ret, _ = self._call(OP_BRK, new_end or 0, what="brk")
        return ret

    def sbrk(self, delta: int) -> int:
        """sbrk(3): the old break; SyscallError(ENOMEM) when the kernel refuses."""
        return self._call(OP_SBRK, delta, what="sbrk")[0]

    def read(self, addr: int, n: int) -> bytes:
        """Load n bytes with the CPU's own loads (read faults as a program would take them)."""
        if not self.alive or self._conn is None:
            raise ProcessGone(self.pid)
        self._resume_from_vfork()
        self._conn.send(OP_READ, addr, n)
        out = bytearray()
        while True:
            tag, _err, ret, _aux = self._recv_or_die()
            if tag == T_DATA:
                data = self._conn.recv_exact(ret) if self._conn else None
                if data is None:
                    self._died()
                    raise ProcessGone(self.pid)
                out += data
            elif tag == T_RESULT:
                return bytes(out)

    def write(self, addr: int, data: bytes) -> None:
        """Store bytes with the CPU's own stores."""
        self._call(OP_WRITE, addr, len(data), payload=bytes(data), what="write")

    def fill(self, addr: int, n: int, byte: int) -> None:
        """memset through the CPU's own stores."""
        self._call(OP_FILL, addr, n, byte & 0xFF, what="fill")

    def touch(self, addr: int, n: int, write: bool = False) -> None:
        """One access per page of [addr, addr+n): a load, or a write that keeps the byte."""
        self._call(OP_TOUCH, addr, n, int(write), what="touch")

    def read_u64(self, addr: int) -> int:
        """Load a little-endian u64."""
        return int.from_bytes(self.read(addr, 8), "little")

    def write_u64(self, addr: int, value: int) -> None:
        """Store a little-endian u64."""
        self.write(addr, (value & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))

    # --- glibc malloc ----------------------------------------------------------------------

    def malloc(self, n: int) -> int:
        """glibc malloc(3) in the process."""
        return self._call(OP_MALLOC, n, what="malloc")[0]

    def free(self, ptr: int) -> None:
        """glibc free(3) (a corrupt heap aborts: Aborted)."""
        self._call(OP_FREE, ptr, what="free")

    def calloc(self, n: int, size: int) -> int:
        """glibc calloc(3)."""
        return self._call(OP_CALLOC, n, size, what="calloc")[0]

    def realloc(self, ptr: int, n: int) -> int:
        """glibc realloc(3)."""
        return self._call(OP_REALLOC, ptr, n, what="realloc")[0]

    def memalign(self, alignment: int, n: int) -> int:
        """glibc memalign(3)."""
        return self._call(OP_MEMALIGN, alignment, n, what="memalign")[0]

    def malloc_usable_size(self, ptr: int) -> int:
        """glibc malloc_usable_size(3)."""
        return self._call(OP_USABLE, ptr, what="malloc_usable_size")[0]

    # --- views -----------------------------------------------------------------------------

    def _check_observable(self) -> None:
        if not self.alive:
            raise ProcessGone(self.pid, "exited")

    def maps(self) -> list[MapsEntry]:
        """/proc/PID/maps."""
        self._check_observable()
        return procfs.read_maps(self.pid)

    def smaps(self) -> list[SmapsEntry]:
        """/proc/PID/smaps."""
        self._check_observable()
        return procfs.read_smaps(self.pid)

    def smaps_rollup(self) -> SmapsRollup:
        """/proc/PID/smaps_rollup."""
        self._check_observable()
        return procfs.read_smaps_rollup(self.pid)

    def status(self) -> Status:
        """/proc/PID/status (zombies too)."""
        if self.state == "X":
            raise ProcessGone(self.pid, "been reaped")
        return procfs.read_status(self.pid)

    def pagemap_raw(self, addr: int, npages: int) -> np.ndarray:
        """Raw /proc/PID/pagemap entries (uint64)."""
        self._check_observable()
        return procfs.read_pagemap(self.pid, addr, npages)

    def pagemap(self, addr: int, npages: int) -> list[PagemapEntry]:
        """/proc/PID/pagemap entries as records."""
        return pagemap_entries(self.pagemap_raw(addr, npages))

    def proc(self, name: str) -> str:
        """The kernel's text of /proc/PID/NAME."""
        if name != "status":
            self._check_observable()
        return procfs.read_text(self.pid, name)

    def fault_counts(self) -> dict[str, int]:
        """minflt/majflt from /proc/PID/stat."""
        return procfs.read_fault_counts(self.pid)

    @property
    def libc_data(self) -> int:
        """Start of libc's rw data mapping (main_arena, mp_)."""
        return self._libc_rw()[0]

    @property
    def libc_data_size(self) -> int:
        """Size of libc's rw data mapping."""
        start, end = self._libc_rw()
        return end - start

    def _libc_rw(self) -> tuple[int, int]:
        for vma in self.maps():
            if "libc.so" in vma.path and vma.perms.startswith("rw"):
                return vma.start, vma.end
        raise LookupError(f"pid {self.pid}: no libc rw mapping")

    def heap_start(self) -> int:
        """The initial program break (start of [heap])."""
        return self._call(OP_INFO, what="sbrk")[0]


class NoEvents(list):  # type: ignore[type-arg]
    """The event log of a machine that reports no events (the real kernel)."""

    def since(self, index: int) -> list[Any]:
        """No events since any index."""
        return []


def _decode_status(status: int) -> tuple[str, int]:
    if os.WIFSIGNALED(status):
        return ("signal", os.WTERMSIG(status))
    return ("exit", os.WEXITSTATUS(status))


def _pick_cpu() -> int:
    """The CPU every scenario process runs on: the lowest this controller may use."""
    return min(os.sched_getaffinity(0))


_MACHINES: weakref.WeakSet[Machine] = weakref.WeakSet()
_KPAGE_NOTE_SHOWN = False


@atexit.register
def _close_all() -> None:
    for m in list(_MACHINES):
        m.close()


class Machine:
    """The real kernel behind the model's Machine API (processes are real agents)."""

    backend = "linux"

    def __init__(self, ram: str | int | None = None, allocator: str = "ptmalloc", cpu: int | None = None,
                 **_ignored: Any) -> None:
        self.allocator = allocator
        if allocator not in ("ptmalloc", "glibc"):
            raise ValueError(f"the Linux backend runs glibc's malloc (ptmalloc), not {allocator!r}")
        self.cpu = _pick_cpu() if cpu is None else cpu
        self.processes: dict[int, Process] = {}
        self.events = NoEvents()  # the kernel does not report events
        self._agent = str(agent_path())
        self._dir = tempfile.mkdtemp(prefix="cowscope-linux-", dir=_files_root())
        self._errdir = os.path.join(self._dir, "stderr")
        os.mkdir(self._errdir)
        self._pgids: list[int] = []
        self._kpage_ok: bool | None = None
        self._closed = False
        self.checkpoints: list[str] = []
        self.on_checkpoint: Any = None
        _MACHINES.add(self)

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill every agent of this machine (its process group) and remove its files."""
        if self._closed:
            return
        self._closed = True
        for pgid in self._pgids:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for p in self.processes.values():
            if p._conn is not None:
                p._conn.close()
                p._conn = None
            if p._popen is not None:
                try:
                    p._popen.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        shutil.rmtree(self._dir, ignore_errors=True)

    def spawn(self, name: str = "init", image: Any = None) -> Process:
        """Start a fresh agent process (its own program image), pinned to the machine's CPU."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {"COWSCOPE_AGENT_ROOT": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        try:
            popen = subprocess.Popen([self._agent, str(theirs.fileno()), str(self.cpu), self._errdir],
                                     pass_fds=[theirs.fileno()], env=env, preexec_fn=os.setpgrp,
                                     stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            ours.close()
            theirs.close()
            raise
        theirs.close()
        self._pgids.append(popen.pid)  # each spawned agent leads its own process group
        conn = _Conn(ours)
        rep = conn.recv()
        if rep is None or rep[0] != T_HELLO:
            raise RuntimeError(f"agent {popen.pid} did not start")
        proc = Process(self, rep[2], os.getpid(), name, conn, popen)
        self.processes[proc.pid] = proc
        proc._call(OP_SETNAME, payload=name.encode()[:15], what="prctl")
        return proc

    def _adopt(self, fd: int, pid: int, ppid: int, name: str) -> Process:
        """A process created by an agent's fork/vfork: read its hello on the passed socket."""
        conn = _Conn(socket.socket(fileno=fd))
        rep = conn.recv()
        if rep is None or rep[0] != T_HELLO:
            raise RuntimeError("forked agent did not say hello")
        proc = Process(self, rep[2], ppid, name, conn)
        self.processes[proc.pid] = proc
        return proc

    def create_file(self, name: str, data: bytes | None = None, size: int | None = None) -> File:
        """A real file (on a disk filesystem, not tmpfs) standing for the scenario's `name`."""
        path = os.path.join(self._dir, "files", name.lstrip("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            # One write(2) per page: a single large write lets ext4 build large page-cache folios,
            # and a folio's dirty bit then covers all its pages (a 1-byte store through a shared
            # mapping would show every page of the folio as dirty in smaps).
            for off in range(0, len(data or b""), PAGE_SIZE):
                f.write(data[off:off + PAGE_SIZE])  # type: ignore[index]
            if size is not None and (data is None or size > len(data)):
                f.truncate(size)
            f.flush()
            os.fsync(f.fileno())  # written back: its page-cache pages are clean, as a file on disk
        return File(name, path)

    def pread(self, f: File, offset: int, n: int) -> bytes:
        """pread(2) of a machine file."""
        return f.read(offset, n)

    def pwrite(self, f: File, offset: int, data: bytes) -> None:
        """pwrite(2) to a machine file (through the page cache)."""
        with open(f.real_path, "r+b") as fh:
            fh.seek(offset)
            fh.write(data)

    def live_processes(self) -> list[Process]:
        """Processes that have not exited."""
        return [p for p in self.processes.values() if p.alive]

    def checkpoint(self, label: str) -> None:
        """Mark a step; `on_checkpoint` (set by the scenario runner) observes the views here."""
        self.checkpoints.append(label)
        if self.on_checkpoint is not None:
            self.on_checkpoint(label)

    def check(self) -> None:
        """Every live agent still answers (the kernel keeps its own invariants)."""
        for p in self.live_processes():
            if p._vfork_child is None:
                p._call(OP_PING, what="ping")

    # --- machine-wide views ----------------------------------------------------------------

    @property
    def kpage_available(self) -> bool:
        """Whether PFNs and /proc/kpagecount can be read (root); says so once per run when not."""
        global _KPAGE_NOTE_SHOWN
        if self._kpage_ok is None:
            self._kpage_ok = procfs.kpage_available() and bool(procfs.zero_pfns())
            if not self._kpage_ok and not _KPAGE_NOTE_SHOWN:
                _KPAGE_NOTE_SHOWN = True
                print("cowscope linux: PFNs and /proc/kpagecount need root: page identity, the zero "
                      "page and map counts are not available; comparing present/exclusive/file only",
                      file=sys.stderr)
        return self._kpage_ok

    def kpagecount_array(self, pfns: np.ndarray | list[int]) -> np.ndarray | None:
        """/proc/kpagecount per PFN, None without root."""
        if not self.kpage_available:
            return None
        return procfs.read_kpagecount(pfns)

    def kpagecount(self, pfn: int) -> int:
        """/proc/kpagecount of one PFN."""
        arr = self.kpagecount_array([pfn])
        if arr is None:
            raise procfs.KpageUnavailable(errno.EPERM, "/proc/kpagecount needs root")
        return int(arr[0])

    def kpageflags(self, pfn: int) -> int:
        """/proc/kpageflags of one PFN."""
        return int(procfs.read_kpageflags([pfn])[0])

    @property
    def zero_pfns(self) -> set[int]:
        """PFN of the shared zero page (empty without root)."""
        return set(procfs.zero_pfns())

    def meminfo(self) -> dict[str, int]:
        """/proc/meminfo in kB."""
        return procfs.read_meminfo()

    def vmstat(self) -> dict[str, int]:
        """/proc/vmstat counters."""
        return procfs.read_vmstat()

    def proc(self, name: str) -> str:
        """The kernel's text of a /proc file."""
        with open(f"/proc/{name}", encoding="utf-8", errors="replace") as f:
            return f.read()


def _files_root() -> str | None:
    """Where machine files live: a disk filesystem (private file mappings must not be shmem)."""
    for cand in (os.environ.get("COWSCOPE_FILES_DIR"), "/var/tmp", tempfile.gettempdir()):
        if cand and os.path.isdir(cand) and os.access(cand, os.W_OK) and not _is_tmpfs(cand):
            return cand
    return None


def _is_tmpfs(path: str) -> bool:
    try:
        with open("/proc/self/mounts") as f:
            best, fstype = "", ""
            real = os.path.realpath(path)
            for line in f:
                parts = line.split()
                if len(parts) > 2 and (real == parts[1] or real.startswith(parts[1].rstrip("/") + "/")):
                    if len(parts[1]) > len(best):
                        best, fstype = parts[1], parts[2]
            return fstype == "tmpfs"
    except OSError:
        return False
