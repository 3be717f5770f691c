"""A private tracefs session: one instance of our own, its events, its pid filter, its buffers.

`TraceSession` creates `instances/cowscope-trace-PID-N` (never the global buffer), enables the
events asked for, filters by pid and follows children (`options/event-fork`), sets the clock to
CLOCK_MONOTONIC (`mono`: comparable across CPUs and with `time.monotonic_ns()`), turns overwrite
off (a full buffer drops new events and counts them instead of silently overwriting old ones),
and reads every CPU's `trace_pipe_raw` continuously on a thread. `losses()` sums the per-CPU
`stats`; nothing is dropped silently.

Cleanup: `close()` (also on `with`, at interpreter exit, and on SIGTERM while a session is open)
disables the instance and removes it, and unmounts tracefs when this session mounted it, so
tracefs is left as found. Instances left by a killed session (their owner pid gone) are removed
when the next session starts.
"""

from __future__ import annotations

import atexit
import errno
import os
import re
import select
import signal
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from .ringbuf import EventFormat, decode_page, parse_format

INSTANCE_PREFIX = "cowscope-trace-"
MOUNT_PREFIX = "cowscope-tracefs-"
_SEARCH = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")


class TraceUnavailable(RuntimeError):
    """Kernel tracing cannot be used here (not root, no tracefs, locked down, missing events)."""


def _mounted_tracefs() -> str | None:
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "tracefs" and MOUNT_PREFIX not in parts[1]:
                    return parts[1].replace("\\040", " ")  # another session's private mount is its own
    except OSError:
        pass
    for path in _SEARCH:
        if os.path.isdir(os.path.join(path, "instances")):
            return path
    return None


def _libc_mount(source: str, target: str, fstype: str) -> None:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.mount(source.encode(), target.encode(), fstype.encode(), 0, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), target)


def _libc_umount(target: str) -> None:
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.umount2(target.encode(), 2)  # MNT_DETACH


def locate_tracefs() -> tuple[str, str | None]:
    """(tracefs root, our private mount point or None): mounts tracefs privately when it is not."""
    root = _mounted_tracefs()
    if root:
        return root, None
    if os.geteuid() != 0:
        raise TraceUnavailable("kernel tracing needs root (tracefs is not mounted; mounting it needs root)")
    remove_stale_mounts()
    point = tempfile.mkdtemp(prefix=f"{MOUNT_PREFIX}{os.getpid()}-")
    try:
        _libc_mount("nodev", point, "tracefs")
    except OSError as exc:
        os.rmdir(point)
        raise TraceUnavailable(f"cannot mount tracefs ({exc.strerror}): this kernel may lack "
                               "CONFIG_TRACING or be locked down") from None
    return point, point


def tracing_problem() -> str | None:
    """Why kernel events cannot be traced here (None when they likely can: root, tracefs known)."""
    if os.geteuid() != 0:
        return "kernel tracing needs root"
    try:
        with open("/proc/filesystems") as f:
            if "tracefs" not in f.read():
                return "this kernel has no tracefs"
    except OSError:
        return "cannot read /proc/filesystems"
    return None


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def parse_stats(text: str) -> dict[str, int]:
    """per_cpu/cpuN/stats -> {"entries": .., "overrun": .., "dropped events": .., ...} (integers only)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        if value.isdigit():
            out[key.strip()] = int(value)
    return out


def remove_stale_instances(root: str) -> list[str]:
    """Remove our instances whose owning process is gone (a SIGKILLed session); their names."""
    removed = []
    base = os.path.join(root, "instances")
    for name in os.listdir(base) if os.path.isdir(base) else ():
        m = re.fullmatch(re.escape(INSTANCE_PREFIX) + r"(\d+)-\d+", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            try:
                os.rmdir(os.path.join(base, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def remove_stale_mounts() -> list[str]:
    """Unmount and remove our private tracefs mounts whose owning process is gone; their paths."""
    removed = []
    base = tempfile.gettempdir()
    for name in os.listdir(base):
        m = re.fullmatch(re.escape(MOUNT_PREFIX) + r"(\d+)-\w+", name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            path = os.path.join(base, name)
            if os.path.ismount(path):
                remove_stale_instances(path)
                _libc_umount(path)
            try:
                os.rmdir(path)
                removed.append(path)
            except OSError:
                pass
    return removed


@dataclass
class Losses:
    """Events the kernel could not keep: per CPU `dropped events` + `overrun`, and pages the
    reader saw flagged as following a gap."""

    dropped: int = 0
    overrun: int = 0
    missed_pages: int = 0

    @property
    def total(self) -> int:
        return self.dropped + self.overrun

    def __bool__(self) -> bool:
        return bool(self.total or self.missed_pages)


@dataclass
class _Reader:
    """The reading thread's state: one non-blocking fd per CPU, raw pages waiting to be decoded."""

    fds: dict[int, int] = field(default_factory=dict)
    pages: list[tuple[int, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    error: BaseException | None = None


_OPEN: set[TraceSession] = set()


class TraceSession:
    """One private tracefs instance: configure, start, read, close (see the module docstring)."""

    def __init__(self, events: Iterable[str], pids: Iterable[int] = (), follow_children: bool = True,
                 buffer_kb: int = 16384, filters: dict[str, str] | None = None,
                 name: str | None = None) -> None:
        if os.geteuid() != 0:
            raise TraceUnavailable("kernel tracing needs root (tracefs instances and pid filters)")
        self.events = tuple(events)
        self.root, self._mounted = locate_tracefs()
        self.instance = ""
        self.formats: dict[int, EventFormat] = {}
        self._reader = _Reader()
        self._closed = False
        self._old_sigterm: object = None
        self.missed_pages = 0
        self.final_losses = Losses()
        try:
            remove_stale_instances(self.root)
            self._create(name)
            self._configure(pids, follow_children, buffer_kb, filters or {})
        except BaseException:
            self.close()
            raise

    # --- setting up -------------------------------------------------------------------------

    def _create(self, name: str | None) -> None:
        base = os.path.join(self.root, "instances")
        for n in range(100):
            inst = name or f"{INSTANCE_PREFIX}{os.getpid()}-{n}"
            try:
                os.mkdir(os.path.join(base, inst))
            except FileExistsError:
                if name:
                    raise TraceUnavailable(f"tracefs instance {name} already exists") from None
                continue
            except OSError as exc:
                raise TraceUnavailable(self._why(exc, "create a tracefs instance")) from None
            self.instance = os.path.join(base, inst)
            _OPEN.add(self)
            return
        raise TraceUnavailable("no free tracefs instance name")

    @staticmethod
    def _why(exc: OSError, doing: str) -> str:
        if exc.errno == errno.EPERM:
            return f"cannot {doing}: permission denied (kernel lockdown, or not root)"
        if exc.errno == errno.EACCES:
            return f"cannot {doing}: needs root"
        return f"cannot {doing}: {exc.strerror}"

    def _configure(self, pids: Iterable[int], follow: bool, buffer_kb: int, filters: dict[str, str]) -> None:
        p = self.instance
        _write(f"{p}/tracing_on", "0")
        _write(f"{p}/trace_clock", "mono")
        _write(f"{p}/options/overwrite", "0")
        _write(f"{p}/options/event-fork", "1" if follow else "0")
        _write(f"{p}/buffer_size_kb", str(buffer_kb))
        self.set_pids(pids)
        for ev in self.events:
            group, _, name = ev.partition(":")
            d = f"{p}/events/{group}/{name}"
            if not os.path.isdir(d):
                raise TraceUnavailable(f"this kernel has no tracepoint {ev}")
            fmt = parse_format(_read(f"{d}/format"), ev)
            self.formats[fmt.id] = fmt
            if ev in filters:
                _write(f"{d}/filter", filters[ev])
            try:
                _write(f"{d}/enable", "1")
            except OSError as exc:
                raise TraceUnavailable(self._why(exc, f"enable {ev}")) from None

    def set_pids(self, pids: Iterable[int]) -> None:
        """Trace only these pids (thread ids), plus their future children if following."""
        text = " ".join(str(int(x)) for x in pids)
        if text:
            _write(f"{self.instance}/set_event_pid", text)

    def add_pids(self, pids: Iterable[int]) -> None:
        """Add pids to the filter (appending, as `>>` does)."""
        fd = os.open(f"{self.instance}/set_event_pid", os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            os.write(fd, " ".join(str(int(x)) for x in pids).encode())
        finally:
            os.close(fd)

    @property
    def cpus(self) -> list[int]:
        base = f"{self.instance}/per_cpu"
        return sorted(int(d[3:]) for d in os.listdir(base) if d.startswith("cpu"))

    # --- running ----------------------------------------------------------------------------

    def start(self) -> None:
        """Open every CPU's trace_pipe_raw, start the reading thread, then turn tracing on."""
        r = self._reader
        for cpu in self.cpus:
            path = f"{self.instance}/per_cpu/cpu{cpu}/trace_pipe_raw"
            r.fds[cpu] = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self.page_size = int(_read(f"{self.instance}/buffer_subbuf_size_kb").split()[0]) * 1024 \
            if os.path.exists(f"{self.instance}/buffer_subbuf_size_kb") else 4096
        r.thread = threading.Thread(target=self._read_loop, name="cowscope-tracefs", daemon=True)
        r.thread.start()
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_exit)
        _write(f"{self.instance}/tracing_on", "1")

    def _read_loop(self) -> None:
        r = self._reader
        try:
            while not r.stop.is_set():
                ready, _, _ = select.select(list(r.fds.values()), [], [], 0.05)
                self._read_available([c for c, fd in r.fds.items() if fd in ready] or list(r.fds))
        except BaseException as exc:  # reported by drain()
            r.error = exc

    def _read_available(self, cpus: Iterable[int]) -> int:
        """Read every full or partial page now available on these CPUs; how many."""
        r, n = self._reader, 0
        for cpu in cpus:
            fd = r.fds.get(cpu)
            while fd is not None:
                try:
                    data = os.read(fd, self.page_size)
                except BlockingIOError:
                    break
                except OSError as exc:
                    if exc.errno in (errno.EAGAIN, errno.EINTR):
                        break
                    raise
                if not data:
                    break
                with r.lock:
                    r.pages.append((cpu, data))
                n += 1
        return n

    def poll(self) -> None:
        """Read, from this thread, everything the kernel has committed so far (partial pages too)."""
        while self._read_available(list(self._reader.fds)):
            pass

    def stop(self) -> None:
        """Turn tracing off and read what is left in the buffers."""
        if self._closed or not self.instance:
            return
        _write(f"{self.instance}/tracing_on", "0")
        r = self._reader
        r.stop.set()
        if r.thread is not None:
            r.thread.join()
            r.thread = None
        while self._read_available(list(r.fds)):
            pass

    def drain(self) -> list[tuple]:
        """Decode the pages read so far: records (time_ns, cpu, pid, event name, fields dict), by time."""
        r = self._reader
        if r.error is not None:
            raise TraceUnavailable(f"reading the trace failed: {r.error}")
        with r.lock:
            pages, r.pages = r.pages, []
        out: list[tuple] = []
        for cpu, data in pages:
            recs, missed = decode_page(data, cpu, self.formats)
            self.missed_pages += missed
            out.extend(recs)
        out.sort(key=lambda rec: rec[0])
        return out

    def losses(self) -> Losses:
        """Events lost so far, from every CPU's stats (after close(): the figures read at close)."""
        if self._closed:
            return self.final_losses
        total = Losses(missed_pages=self.missed_pages)
        for cpu in self.cpus:
            st = parse_stats(_read(f"{self.instance}/per_cpu/cpu{cpu}/stats"))
            total.dropped += st.get("dropped events", 0)
            total.overrun += st.get("overrun", 0)
        return total

    # --- cleaning up ------------------------------------------------------------------------

    def close(self) -> None:
        """Disable everything, remove the instance, unmount our private tracefs. Idempotent."""
        if self._closed:
            return
        r = self._reader
        if self.instance and os.path.isdir(f"{self.instance}/per_cpu"):
            try:
                self.final_losses = self.losses()
            except OSError:
                pass
        self._closed = True
        r.stop.set()
        if r.thread is not None and r.thread is not threading.current_thread():
            r.thread.join(timeout=5)
        if self.instance:
            for path, value in (("tracing_on", "0"), ("events/enable", "0")):
                try:
                    _write(f"{self.instance}/{path}", value)
                except OSError:
                    pass
        for fd in r.fds.values():
            os.close(fd)
        r.fds.clear()
        if self.instance:
            self._remove_instance()
        if self._mounted:
            _libc_umount(self._mounted)
            try:
                os.rmdir(self._mounted)
            except OSError:
                pass
            self._mounted = None
        _OPEN.discard(self)
        if self._old_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._old_sigterm)  # type: ignore[arg-type]
            self._old_sigterm = None

    def _remove_instance(self) -> None:
        for attempt in range(50):  # EBUSY while the kernel still holds a reader's reference
            try:
                os.rmdir(self.instance)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or attempt == 49:
                    raise
                time.sleep(0.02)

    def __enter__(self) -> TraceSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _sigterm_to_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@atexit.register
def _close_all() -> None:
    for session in list(_OPEN):
        session.close()
