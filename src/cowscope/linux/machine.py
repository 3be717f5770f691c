"""The real-kernel backend: the model's Machine API, each process a real agent process.

The controller talks to every agent over its own AF_UNIX socket (`linux.wire`; one
`linux.process.Process` per agent). Every call waits for the agent's reply, so all agents are
blocked on their sockets whenever a view is read: the /proc figures are those of quiescent
processes. Views come from `cowscope.observe.procfs`. This module starts agents, owns the files
and the machine-wide views, and cleans up.

Cleanup: agents live in their own process group and are SIGKILLed by `Machine.close()` (also at
interpreter exit); the first agent has PR_SET_PDEATHSIG; every agent exits on EOF of its socket,
so a SIGKILLed controller leaves no process behind; its folder and swapfile are removed by the
next machine (`linux.lifecycle`).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from ..errors import Unsupported
from ..observe import kpage, procfs
from ..observe.arguments import checked
from ..observe.events import Event
from ..observe.records import PAGE_SIZE, parse_size
from . import ksm, lifecycle
from .build import agent_path
from .file import File
from .ksource import KernelEvents
from .process import Process
from .swap import SwapFile, host_swap_kb
from .wire import OP_PING, OP_SETNAME, T_HELLO, Conn

__all__ = ["File", "KernelLog", "Machine", "NoEvents", "Process"]


class NoEvents(list):  # type: ignore[type-arg]
    """The event log of a machine that reports no events (the real kernel)."""

    def since(self, seq: int) -> list[Any]:
        """No events since any index."""
        return []


def _pick_cpu() -> int:
    """The CPU every scenario process runs on: the lowest this controller may use."""
    return min(os.sched_getaffinity(0))


_MACHINES: weakref.WeakSet[Machine] = weakref.WeakSet()
_KPAGE_NOTE_SHOWN = False


@atexit.register
def _close_all() -> None:
    for m in list(_MACHINES):
        m.close()


class KernelLog:
    """`m.events` of a Machine(events=True): the kernel's events of its agents (and their children),
    read and classified whenever the log is read (the agents are then waiting for a command, so
    every fault they took is complete). Same interface as the model's log; fields the kernel
    cannot give are None (a copy's old frame, docs/trace.md)."""

    def __init__(self) -> None:
        self.source: KernelEvents | None = None

    def follow(self, pid: int) -> None:
        """Trace this agent (the first one starts the tracefs session) and every child it forks."""
        if self.source is None:
            self.source = KernelEvents([pid], buffer_kb=4096)
        else:
            self.source.add_pids([pid])

    def thread(self, tid: int, pid: int) -> None:
        """A thread of process pid: its events are the process's, even once the thread is gone
        (its /proc entry is what names its process otherwise)."""
        if self.source is not None:
            self.source.maps.tgids[tid] = pid

    def _read(self) -> list[Event]:
        if self.source is None:
            return []
        self.source.sync(quiescent=True)
        return self.source._events

    def checkpoint(self, label: str) -> None:
        """A checkpoint event (pid 0), as the model's log has."""
        if self.source is not None:
            events = self._read()
            events.append(Event(len(events), 0, "checkpoint", 0, 0, 0, label, time.monotonic_ns()))

    def __len__(self) -> int:
        return len(self._read())

    def __getitem__(self, i: int) -> Event:
        return self._read()[i]

    def __iter__(self) -> Iterator[Event]:
        return iter(list(self._read()))

    def since(self, seq: int) -> list[Event]:
        """The events from index `seq` on."""
        return self._read()[seq:]

    def filter(self, kind: str | None = None, pid: int | None = None, since: int = 0) -> list[Event]:
        """Events matching a kind and/or pid."""
        return [e for e in self._read()[since:] if (kind is None or e.kind == kind) and (pid is None or e.pid == pid)]

    def counts(self, since: int = 0, pid: int | None = None) -> Counter[str]:
        """How many events of each kind (optionally of one pid)."""
        return Counter(e.kind for e in self._read()[since:] if pid is None or e.pid == pid)

    def losses(self) -> int:
        """Events the kernel could not keep (0 when none: every figure above is complete)."""
        return 0 if self.source is None else self.source.losses().total

    def close(self) -> None:
        if self.source is not None:
            self.source.session.close()


@checked
class Machine:
    """The real kernel behind the model's Machine API (processes are real agents)."""

    backend = "linux"

    def __init__(self, ram: str | int | None = None, allocator: str = "ptmalloc", cpu: int | None = None,
                 events: bool = False, drain_lru: bool = True, **_ignored: Any) -> None:
        """`events=True`: `m.events` holds the kernel's own fault decisions as `Event`s, from
        tracepoints (root; docs/trace.md); otherwise the log stays empty. `drain_lru=False`: leave
        the kernel's per-CPU LRU batches as they are between commands (`linux.lru`: a write may
        then copy a page mapped once, at random); by default every command starts drained."""
        self.allocator = allocator
        self.drain_lru = drain_lru
        if allocator not in ("ptmalloc", "glibc"):
            raise ValueError(f"the Linux backend runs glibc's malloc (ptmalloc), not {allocator!r}")
        self.cpu = _pick_cpu() if cpu is None else cpu
        self.processes: dict[int, Process] = {}
        self.events: NoEvents | KernelLog = KernelLog() if events else NoEvents()
        if ram is not None:
            parse_size(ram)  # a malformed size is the same ValueError as on the model (the kernel's RAM is what it is)
        self._agent = str(agent_path())
        self._dir = lifecycle.machine_dir(_files_root())
        self._pgids: list[int] = []
        self._release = weakref.finalize(self, lifecycle.release, self._pgids, self._dir)
        lifecycle.hold_sigterm(id(self))
        self._errdir = os.path.join(self._dir, "stderr")
        os.mkdir(self._errdir)
        self._kpage_ok: bool | None = None
        self._zero_pfns: frozenset[int] | None = None
        self._swap: SwapFile | None = None
        self._closed = False
        self.checkpoints: list[tuple[str, int]] = []  # (label, len(events) then)
        self.on_checkpoint: Callable[[str], None] | None = None
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
        try:
            self._stop_agents()
        finally:
            if self._swap is not None:  # after the agents are gone: swapoff reads their pages back in
                self._swap.remove()

    def _stop_agents(self) -> None:
        if isinstance(self.events, KernelLog):
            self.events.close()
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
        self._release()
        lifecycle.release_sigterm(id(self))

    def ksm_scan(self) -> None:
        """Let ksmd merge identical pages of MADV_MERGEABLE areas now: ksm/run is set to 1 until
        three full scans have passed, then restored (root only: Unsupported otherwise)."""
        ksm.ksm_scan()

    def ksm_counters(self) -> dict[str, int]:
        """/sys/kernel/mm/ksm counters (machine-wide: other KSM users count too)."""
        return ksm.ksm_counters()

    def swapon(self, size: int | str) -> None:
        """Add swap for this machine's scenario: a swapfile of `size` bytes under /var/tmp, active
        until close() (root only: Unsupported otherwise). The model's Machine.swapon does the same."""
        if self._swap is not None:
            raise Unsupported("this machine has a swapfile already")
        self._swap = SwapFile(parse_size(size))

    def spawn(self, name: str = "app", image: Any = None) -> Process:
        """Start a fresh agent process (its own program image), pinned to the machine's CPU."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = {"COWSCOPE_AGENT_ROOT": "1", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        try:
            popen = subprocess.Popen([self._agent, str(theirs.fileno()), str(self.cpu), self._errdir],
                                     pass_fds=[theirs.fileno()], env=env, preexec_fn=lifecycle.agent_setup,
                                     stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            ours.close()
            theirs.close()
            raise
        theirs.close()
        self._pgids.append(popen.pid)  # each spawned agent leads its own process group
        conn = Conn(ours)
        rep = conn.recv()
        if rep is None or rep[0] != T_HELLO:
            raise RuntimeError(f"agent {popen.pid} did not start")
        proc = Process(self, rep[2], os.getpid(), name, conn, popen)
        self.processes[proc.pid] = proc
        if isinstance(self.events, KernelLog):
            self.events.follow(proc.pid)
        proc._call(OP_SETNAME, payload=name.encode()[:15], what="prctl")
        return proc

    def _adopt(self, fd: int, pid: int, ppid: int, name: str) -> Process:
        """A process created by an agent's fork/vfork: read its hello on the passed socket."""
        conn = Conn(socket.socket(fileno=fd))
        rep = conn.recv()
        if rep is None or rep[0] != T_HELLO:
            raise RuntimeError("forked agent did not say hello")
        proc = Process(self, rep[2], ppid, name, conn)
        self.processes[proc.pid] = proc
        return proc

    def create_file(self, path: str, data: bytes | None = None, size: int | None = None,
                    cached: bool = True) -> File:
        """A real file (on a disk filesystem, not tmpfs) standing for the scenario's `path`.
        Written and fsync'ed: its pages are in the page cache, clean; with cached=False they are
        then dropped (POSIX_FADV_DONTNEED), so the first access reads the disk."""
        real = os.path.join(self._dir, "files", path.lstrip("/"))  # normalised: never outside
        os.makedirs(os.path.dirname(real), exist_ok=True)
        with open(real, "xb") as f:  # an existing path is FileExistsError, as on the model
            # One write(2) per page: a single large write lets ext4 build large page-cache folios,
            # and a folio's dirty bit then covers all its pages (a 1-byte store through a shared
            # mapping would show every page of the folio as dirty in smaps).
            for off in range(0, len(data or b""), PAGE_SIZE):
                f.write(data[off:off + PAGE_SIZE])  # type: ignore[index]
            if size is not None and (data is None or size > len(data)):
                f.truncate(size)
            f.flush()
            os.fsync(f.fileno())  # written back: its page-cache pages are clean, as a file on disk
            if not cached:
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        return File(path, real)

    def pread(self, f: File, offset: int, n: int) -> bytes:
        """pread(2) of a machine file (one call on a fresh descriptor, as the model's read(2)):
        what the page cache holds (MAP_SHARED writes included)."""
        fd = os.open(f.real_path, os.O_RDONLY)
        try:
            return os.pread(fd, max(n, 0), offset)
        finally:
            os.close(fd)

    def pwrite(self, f: File, offset: int, data: bytes) -> None:
        """pwrite(2) to a machine file through the page cache, one call per page touched (as
        create_file writes: order-0 page-cache folios, one dirty bit per page)."""
        fd = os.open(f.real_path, os.O_RDWR)
        try:
            pos = 0
            while pos < len(data):
                k = min(len(data) - pos, PAGE_SIZE - (offset + pos) % PAGE_SIZE)
                os.pwrite(fd, data[pos:pos + k], offset + pos)
                pos += k
        finally:
            os.close(fd)

    @property
    def pkeys(self) -> bool:
        """Whether this host's CPU has memory protection keys (PROT_EXEC-only memory unreadable)."""
        return _cpu_has_pkeys()

    @property
    def files_dir(self) -> str:
        """The host folder holding this machine's files (create_file's paths are inside it)."""
        return os.path.join(self._dir, "files")

    def model_config(self) -> dict[str, Any]:
        """What the model needs to behave as this host: `model.Machine(**linux.model_config())`.
        RAM and swap (the overcommit heuristic's limit), the overcommit sysctls, the THP mode, protection
        keys of the CPU, and read_ahead_kb of the disk this machine's files live on."""
        return host_model_config(self.files_dir)

    def live_processes(self) -> list[Process]:
        """Processes that have not exited (one killed from outside since the last call is noticed)."""
        for p in self.processes.values():
            p.refresh()
        return [p for p in self.processes.values() if p.alive]

    def checkpoint(self, label: str) -> None:
        """Mark a step; `on_checkpoint` (set by the scenario runner) observes the views here."""
        if isinstance(self.events, KernelLog):
            self.events.checkpoint(label)
        self.checkpoints.append((label, len(self.events)))
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
            self._kpage_ok = kpage.kpage_available() and bool(kpage.zero_pfns())
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
        return kpage.read_kpagecount(pfns)

    def kpagecount(self, pfn: int) -> int:
        """/proc/kpagecount of one PFN."""
        arr = self.kpagecount_array([pfn])
        if arr is None:
            raise Unsupported("needs root: /proc/kpagecount (and PFNs in pagemap) need CAP_SYS_ADMIN")
        return int(arr[0])

    def kpageflags(self, pfn: int) -> int:
        """/proc/kpageflags of one PFN."""
        if not self.kpage_available:
            raise Unsupported("needs root: /proc/kpageflags (and PFNs in pagemap) need CAP_SYS_ADMIN")
        return int(kpage.read_kpageflags([pfn])[0])

    @property
    def zero_pfns(self) -> set[int]:
        """PFNs of the shared zero page and of the huge zero page's subpages (empty without root)."""
        if self._zero_pfns is None:
            self._zero_pfns = kpage.zero_page_pfns()
        return set(self._zero_pfns)

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


def host_model_config(files_dir: str | None = None) -> dict[str, Any]:
    """model.Machine keyword arguments describing this host (see Machine.model_config); files_dir:
    where the backend's files live (default: where a new Machine puts them)."""
    files_dir = files_dir or _files_root() or tempfile.gettempdir()
    meminfo = procfs.read_meminfo()
    # a scenario's swapfile (this run's or a concurrent one's) is not the host's swap
    cfg: dict[str, Any] = {"ram": meminfo.get("MemTotal", 0) * 1024, "swap": host_swap_kb() * 1024}
    for key in ("overcommit_memory", "overcommit_ratio", "overcommit_kbytes"):
        try:
            with open(f"/proc/sys/vm/{key}") as fh:
                cfg[key] = int(fh.read())
        except (OSError, ValueError):
            pass
    cfg["pkeys"] = _cpu_has_pkeys()
    cfg.update(_thp_settings())
    cfg["cpus"] = online_cpus()
    ra = _read_ahead_kb(files_dir)
    if ra is not None:
        cfg["read_ahead_kb"] = ra
    return cfg


def _thp_settings() -> dict[str, Any]:
    """The host's transparent huge page mode ([madvise] in .../enabled) and use_zero_page."""
    out: dict[str, Any] = {}
    base = "/sys/kernel/mm/transparent_hugepage"
    try:
        with open(f"{base}/enabled") as fh:
            text = fh.read()
        out["thp"] = text[text.index("[") + 1:text.index("]")]
        with open(f"{base}/use_zero_page") as fh:
            out["thp_zero_page"] = fh.read().strip() == "1"
    except (OSError, ValueError):
        pass
    return out


def online_cpus() -> int:
    """The CPUs glibc's __get_nprocs() counts (/sys/devices/system/cpu/online), not the affinity:
    malloc's arena limit is 8 per online CPU."""
    try:
        with open("/sys/devices/system/cpu/online") as fh:
            text = fh.read().strip()
    except OSError:
        return os.cpu_count() or 1
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n or 1


def _cpu_has_pkeys() -> bool:
    """Memory protection keys in use: the CPU has pku and the kernel enabled it (ospke)."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "ospke" in line.split()
    except OSError:
        pass
    return False


def _read_ahead_kb(path: str) -> int | None:
    """read_ahead_kb of the block device (bdi) holding path."""
    try:
        os.makedirs(path, exist_ok=True)
        dev = os.stat(path).st_dev
        with open(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return None
