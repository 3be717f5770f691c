"""A command the inspector or the tracer starts runs in a process group of its own, and all of it
is stopped at the end: the command and whatever it started (workers, a shell's children), not only
the process cowscope forked. Ctrl-C in the terminal then reaches cowscope only, which stops the
group itself."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable


def stop_group(pgid: int, reap: Callable[[], object], grace: float = 5.0) -> None:
    """SIGTERM to the process group `pgid` (the command's pid), SIGKILL to what is left of it after
    `grace` seconds; `reap` waits for the command itself without blocking (Popen.poll)."""
    if not _signal_group(pgid, signal.SIGTERM):
        reap()
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        reap()
        if not _signal_group(pgid, 0):
            return
        time.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, signo: int) -> bool:
    """Send `signo` to the group; False when no process of it is left."""
    try:
        os.killpg(pgid, signo)
    except ProcessLookupError:
        return False
    return True
