"""User-visible outcomes of the model and the Linux backend, as exceptions with values.

A model bug raises AssertionError/RuntimeError loudly; what a real program would see
(SIGSEGV, SIGABRT, OOM kill, a failing syscall) is one of these.
"""

from __future__ import annotations

import errno as _errno
import signal as _signal


class CowscopeError(Exception):
    """Base of every user-visible cowscope outcome."""


class SyscallError(CowscopeError, OSError):
    """A system call failed as the kernel's would: errno set, nothing changed."""

    def __init__(self, err: int, call: str, detail: str = "") -> None:
        msg = f"{call}: {_errno.errorcode.get(err, err)} ({detail or _errno_text(err)})"
        OSError.__init__(self, err, msg)
        self.call = call

    def __str__(self) -> str:
        return self.args[1]


def _errno_text(err: int) -> str:
    import os

    return os.strerror(err)


class ProcessKilled(CowscopeError):
    """The process died of a signal during the call (it is a zombie now; the machine goes on)."""

    def __init__(self, pid: int, signo: int, detail: str = "") -> None:
        self.pid = pid
        self.signo = signo
        self.detail = detail
        name = _signal.Signals(signo).name if signo in _signal.Signals._value2member_map_ else str(signo)
        super().__init__(f"pid {pid} killed by {name}" + (f": {detail}" if detail else ""))


class Segfault(ProcessKilled):
    """SIGSEGV: an access outside any VMA or against its protection."""

    def __init__(self, pid: int, address: int, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(pid, _signal.SIGSEGV, f"{reason} at {address:#x}")


class Aborted(ProcessKilled):
    """SIGABRT: the process called abort(), e.g. glibc malloc detected heap corruption."""

    def __init__(self, pid: int, message: str) -> None:
        self.message = message
        super().__init__(pid, _signal.SIGABRT, message)


class OOMKilled(ProcessKilled):
    """SIGKILL from the OOM killer: no free frame, this process had the largest RSS."""

    def __init__(self, pid: int, rss_kb: int) -> None:
        self.rss_kb = rss_kb
        super().__init__(pid, _signal.SIGKILL, f"out of memory (rss {rss_kb} kB)")


class ProcessGone(CowscopeError):
    """The call named a process that has exited (or never existed)."""

    def __init__(self, pid: int, state: str = "exited") -> None:
        self.pid = pid
        super().__init__(f"pid {pid} has {state}" if state else f"no process {pid}")

    @classmethod
    def of_state(cls, pid: int, state: str) -> ProcessGone:
        """The error for a call on a dead process in state "Z" (exited) or "X" (been reaped)."""
        return cls(pid, "exited" if state == "Z" else "been reaped")

    @classmethod
    def of_thread(cls, tid: int, state: str) -> ProcessGone:
        """The error for a call on a thread that has ended ("exited": pthread_exit or its process
        died; "been joined"): `pid` is the thread's tid."""
        err = cls(tid, state)
        err.args = (f"thread {tid} has {state}",)
        return err


class ProcessBlocked(CowscopeError):
    """The call cannot return: the process is suspended in vfork() until its child execs or exits,
    or wait() would block on a child that is still running."""

    @classmethod
    def in_vfork(cls, pid: int) -> ProcessBlocked:
        """The error for a call on a parent suspended in vfork()."""
        return cls(f"pid {pid} is suspended in vfork() until its child execs or exits")

    @classmethod
    def on_wait(cls, child_pid: int) -> ProcessBlocked:
        """The error for a wait() on children that are all still running."""
        return cls(f"wait would block: child {child_pid} is still running")

    @classmethod
    def on_join(cls, tid: int) -> ProcessBlocked:
        """The error for a pthread_join of a thread that is still running."""
        return cls(f"pthread_join would block: thread {tid} is still running")


class Unsupported(CowscopeError):
    """This backend cannot do that here (e.g. swap or KSM without root): the reason says why.
    The conformance suite reports a scenario that needs it as skipped, not failed."""


EINVAL = _errno.EINVAL
ENOMEM = _errno.ENOMEM
EFAULT = _errno.EFAULT
ECHILD = _errno.ECHILD
EACCES = _errno.EACCES
EOVERFLOW = _errno.EOVERFLOW
