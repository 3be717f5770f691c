"""How a scenario ended, in words both backends share, and where in the scenario it happened.

An exception that ends a traced scenario is compared by its kind and its message as a program
would see them: which process (by its history name, not its pid), which signal and si_code, which
errno of which call, at which region-relative address, glibc's abort message. Not compared: the
backend's own wording of the reason ("write to a mapping without PROT_WRITE" against the kernel's
bare SEGV_ACCERR) and cowscope's own frames; the scenario's line is kept for display.
"""

from __future__ import annotations

import errno
import re
import signal
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import Aborted, ProcessKilled, Segfault, SyscallError

if TYPE_CHECKING:
    from .trace import TracedMachine

_PID = re.compile(r"\b(pid|child|process|thread) (\d+)")
_ADDRESS = re.compile(r"\bat (0x[0-9a-f]+)")
_SI_CODE = re.compile(r"SEGV_[A-Z]+")


def outcome(exc: BaseException, tm: TracedMachine) -> str:
    """The exception as compared between backends: kind and backend-neutral message."""
    kind = type(exc).__name__
    if isinstance(exc, SyscallError):
        return f"{kind}: {exc.call} {errno.errorcode.get(exc.errno or 0, exc.errno)}"
    if isinstance(exc, Segfault):
        code = _SI_CODE.search(exc.reason)
        si_code = code.group(0) if code else "(no si_code)"
        return f"{kind}: {_who(exc.pid, tm)} SIGSEGV {si_code} at {_where(exc.pid, exc.address, tm)}"
    if isinstance(exc, Aborted):
        return f"{kind}: {_who(exc.pid, tm)} SIGABRT: {exc.message}"
    if isinstance(exc, ProcessKilled):
        at = _ADDRESS.search(exc.detail)
        where = f" at {_where(exc.pid, int(at.group(1), 16), tm)}" if at else ""
        return f"{kind}: {_who(exc.pid, tm)} {_signame(exc.signo)}{where}"
    return f"{kind}: {_PID.sub(lambda m: f'{m.group(1)} {tm.key_of(int(m.group(2)))}', str(exc))}"


def located(exc: BaseException, scenario: Callable[..., Any]) -> str:
    """The exception for display: kind, message, and the scenario's own line that raised it."""
    code = getattr(scenario, "__code__", None)
    frames = traceback.extract_tb(exc.__traceback__)
    mine = [f for f in frames if code is not None and f.filename == code.co_filename]
    frame = mine[-1] if mine else None
    at = f" at {frame.name}:{frame.lineno}" if frame else ""
    return f"{type(exc).__name__}: {exc}{at}"


def _who(pid: int, tm: TracedMachine) -> str:
    return tm.key_of(pid)


def _where(pid: int, address: int, tm: TracedMachine) -> str:
    """The address relative to the region (or heap) of that process it falls in."""
    for tp in tm.procs:
        if tp._p.pid == pid:
            return tp.where(address)
    return f"page offset {address % 4096:#x}"


def _signame(signo: int) -> str:
    try:
        return signal.Signals(signo).name
    except ValueError:
        return f"signal {signo}"
