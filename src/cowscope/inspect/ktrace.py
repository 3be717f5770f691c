"""Tracing a live process tree's copy-on-write events: start on PIDs, a tree or a new command,
poll into attributed rows, stop. Used by `cowscope trace` and `cowscope inspect --trace`."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable

import psutil

from ..errors import ProcessGone
from ..linux.ksource import KernelEvents
from ..observe import procfs
from .attribute import Attributed, Attributor, TraceSummary
from .group import stop_group


class TargetError(ValueError):
    """A PID that does not exist, a command that cannot start: said to the user, exit status 2."""


def threads_of(pid: int) -> list[int]:
    """The thread ids of a process (the pid alone if /proc lists none)."""
    try:
        return procfs.task_ids(pid) or [pid]
    except (ProcessGone, OSError):
        return [pid]


def tree_of(pid: int) -> list[int]:
    """pid and every descendant."""
    try:
        return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        raise TargetError(f"no process {pid}") from None


def check_pids(pids: Iterable[int]) -> list[int]:
    """The pids, each checked to be a live process."""
    out = []
    for pid in pids:
        if pid <= 0 or not procfs.is_alive(pid):
            raise TargetError(f"no process {pid}")
        out.append(pid)
    return out


def _comm(pid: int) -> str:
    try:
        return procfs.read_stat(pid).name
    except (ProcessGone, OSError, IndexError):
        return "?"


def _start_time_ns(pid: int) -> int:
    """When a process started, on CLOCK_MONOTONIC (field 22 of /proc/PID/stat is in clock ticks
    since boot, on CLOCK_BOOTTIME)."""
    ticks = procfs.read_stat(pid).starttime
    boot_to_mono = time.clock_gettime_ns(time.CLOCK_BOOTTIME) - time.monotonic_ns()
    return ticks * 1_000_000_000 // os.sysconf("SC_CLK_TCK") - boot_to_mono


class Command:
    """A command forked and held before exec (so tracing covers it from its first instruction)."""

    def __init__(self, argv: list[str]) -> None:
        go_r, go_w = os.pipe()
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # the child: wait for the go, then exec; report a failed exec on err_w
            try:
                os.setpgrp()  # a process group of its own, stopped as one (inspect.group)
                os.close(go_w)
                os.close(err_r)
                os.read(go_r, 1)
                os.execvp(argv[0], argv)
            except OSError as exc:
                os.write(err_w, (exc.strerror or str(exc)).encode())
            finally:
                os._exit(127)
        try:
            os.setpgid(pid, pid)  # also here: the group exists before anything signals it
        except OSError:
            pass  # the child did it already (or is gone)
        os.close(go_r)
        os.close(err_w)
        self.pid, self.argv, self._go, self._err = pid, argv, go_w, err_r
        self.returncode: int | None = None

    def release(self) -> None:
        """Let the command exec; TargetError if it cannot start."""
        os.write(self._go, b"x")
        os.close(self._go)
        message = os.read(self._err, 4096).decode(errors="replace")
        os.close(self._err)
        if message:
            self.wait()
            raise TargetError(f"cannot run {self.argv[0]}: {message}")

    def poll(self) -> int | None:
        """The exit status (128+signal when killed) once it has ended, else None."""
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
                if self.returncode < 0:
                    self.returncode = 128 - self.returncode
        return self.returncode

    def wait(self) -> int:
        if self.returncode is None:
            _pid, status = os.waitpid(self.pid, 0)
            code = os.waitstatus_to_exitcode(status)
            self.returncode = code if code >= 0 else 128 - code
        return self.returncode

    def terminate(self, grace: float = 5.0) -> None:
        """SIGTERM to the command's process group, then SIGKILL after `grace` seconds; reaped."""
        stop_group(self.pid, self.poll, grace)
        self.wait()

    def kill(self) -> None:
        """SIGKILL to the command's process group; reaped."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.wait()


class TreeTracer:
    """Kernel events of a process tree, attributed as they arrive."""

    def __init__(self, buffer_kb: int = 16384) -> None:
        self.buffer_kb = buffer_kb
        self.events: KernelEvents | None = None
        self.attributor: Attributor | None = None
        self.child: Command | None = None
        self.summary = TraceSummary(time.monotonic_ns())
        self.roots: list[int] = []
        self.rows: list[Attributed] = []
        self.keep_rows = False
        self.stopped = False

    def start(self, pids: Iterable[int]) -> None:
        """Trace these processes (every thread of each) and their future children."""
        self.roots = list(pids)
        tids = [t for pid in self.roots for t in threads_of(pid)]
        self.events = KernelEvents(tids, buffer_kb=self.buffer_kb)
        self.attributor = Attributor(self.events.maps.lookup, _comm)
        self._known_forks(self.roots)
        self.summary = TraceSummary(time.monotonic_ns())

    def _known_forks(self, pids: list[int]) -> None:
        """Forks that happened before the trace: a traced process whose parent is traced is a child,
        forked when it started (/proc/PID/stat starttime, on the trace's CLOCK_MONOTONIC)."""
        assert self.attributor is not None
        traced = set(pids)
        for pid in pids:
            try:
                ppid = procfs.read_ppid(pid)
                started = _start_time_ns(pid)
            except (ProcessGone, OSError, ValueError, IndexError):
                continue
            if ppid in traced:
                self.attributor.forked_at[pid] = started
                self.attributor.last_fork[ppid] = max(self.attributor.last_fork.get(ppid, 0), started)

    def start_command(self, argv: list[str]) -> Command:
        """Start a command, held before exec until tracing covers it."""
        self.child = Command(argv)
        try:
            self.start([self.child.pid])
        except BaseException:
            self.child.kill()
            raise
        self.child.release()
        return self.child

    def poll(self) -> list[Attributed]:
        """Read and attribute what has arrived; maps of live processes are re-read first."""
        assert self.events is not None and self.attributor is not None
        new = self.events.sync()
        return self._attribute(new)

    def _attribute(self, new: list) -> list[Attributed]:
        assert self.events is not None and self.attributor is not None
        rows = self.attributor.feed(new)
        self.summary.add(rows)
        if self.keep_rows:
            self.rows.extend(rows)
        return rows

    def alive(self) -> bool:
        """Whether anything traced is still running."""
        if self.child is not None:
            return self.child.poll() is None
        pids = set(self.roots) | set(self.attributor.forked_at if self.attributor else ())
        return any(procfs.is_alive(p) for p in pids)

    def stop(self) -> list[Attributed]:
        """Stop tracing; attribute the rest; fill in losses. Idempotent."""
        if self.events is None or self.stopped:
            return []
        self.stopped = True
        rows = self._attribute(self.events.close())
        losses = self.events.losses()
        self.summary.lost = losses.total
        self.summary.unattributed_allocs = self.events.classifier.unattributed_allocs
        if losses.missed_pages:
            self.summary.notes.append(f"{losses.missed_pages} buffer pages followed a gap (events lost)")
        assert self.attributor is not None
        self.summary.finish(self.attributor.symbolizer)
        return rows

    def close(self) -> None:
        """Stop tracing, and end a command this tracer started if it still runs."""
        try:
            if self.events is not None:
                self.events.session.close()
        finally:
            if self.child is not None and self.child.poll() is None:
                self.child.terminate()


class BackgroundTracer:
    """A TreeTracer polled on its own thread, for loops that sleep between their own work (the
    inspector's samples). `finish()` stops it and returns the summary."""

    def __init__(self, pids: Iterable[int], buffer_kb: int = 16384) -> None:
        import threading

        self.tracer = TreeTracer(buffer_kb)
        self.tracer.start(pids)
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="cowscope-trace-poll", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.tracer.poll()
                self._stop.wait(0.05)
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self) -> TraceSummary:
        """Stop polling and tracing; the attributed summary (every event read to the end)."""
        self._stop.set()
        self._thread.join()
        try:
            if self.error is None:
                self.tracer.stop()
        finally:
            self.tracer.close()
        if self.error is not None:
            self.tracer.summary.notes.append(f"tracing stopped early: {self.error}")
        return self.tracer.summary
