"""A swapfile for the Linux backend: created, activated and always removed again.

Swap is global: while a scenario's swapfile is active every process on the machine may use it.
The file lives under /var/tmp with this controller's pid and start time in its name, gets the
highest swap priority (so the scenario's pages go to it, not to another active area), and is
swapped off and deleted by `SwapFile.remove()` (Machine.close(), also at interpreter exit); one left by a
SIGKILLed controller goes with the next swapfile or machine (`linux.lifecycle`). Needs root.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import shutil
import subprocess
import threading
import time

from ..errors import Unsupported
from . import lifecycle

SWAP_DIR = "/var/tmp"
#: Held (flock) by the process whose cowscope swapfile is active: one at a time on the machine.
LOCK_PATH = os.path.join(SWAP_DIR, "cowscope-swap.lock")
LOCK_WAIT_S = 300.0
_seq = itertools.count(1)


class _AreaLock:
    """One cowscope swap area active at a time on this machine (an flock on LOCK_PATH, taken once
    per process and counted). Two areas of priority 32767 share out-going pages round robin, so
    one scenario's pages landed in another's area and its swapoff swapped them back in (a swap
    entry that became a present, dirty page between two checkpoints: W04, W03, W08 under
    concurrent runs)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._fd: int | None = None
        self._holders: set[int] = set()

    def acquire(self, holder: object) -> None:
        with self._mutex:
            if self._fd is None:
                self._fd = _wait_for_lock()
            self._holders.add(id(holder))

    def release(self, holder: object) -> None:
        with self._mutex:
            self._holders.discard(id(holder))
            if not self._holders and self._fd is not None:
                os.close(self._fd)  # drops the flock
                self._fd = None


def _wait_for_lock() -> int:
    fd = os.open(LOCK_PATH, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise Unsupported(f"another cowscope swap area stayed active for {LOCK_WAIT_S:.0f} s "
                                  f"({LOCK_PATH} is locked)") from None
            time.sleep(0.02)


_AREAS = _AreaLock()


def host_swap_kb() -> int:
    """kB of the host's own swap: the active areas (/proc/swaps, read once) that are not a
    scenario's swapfile, this process's or another cowscope's."""
    return sum(int(r[2]) for r in lifecycle.swap_areas()
               if len(r) >= 3 and r[2].isdigit() and not os.path.basename(r[0]).startswith(lifecycle.SWAP_PREFIX))


def swap_problem() -> str | None:
    """Why this process cannot add swap (None when it can)."""
    if os.geteuid() != 0:
        return "swap needs root (swapon(2) needs CAP_SYS_ADMIN)"
    for tool in ("mkswap", "swapon", "swapoff"):
        if shutil.which(tool) is None and not os.path.exists(f"/sbin/{tool}"):
            return f"swap needs {tool} (util-linux)"
    return None


def _tool(name: str) -> str:
    return shutil.which(name) or f"/sbin/{name}"


class SwapFile:
    """One active swapfile of `nbytes` bytes."""

    def __init__(self, nbytes: int) -> None:
        why = swap_problem()
        if why:
            raise Unsupported(why)
        lifecycle.remove_stale(SWAP_DIR)  # the swapfiles of SIGKILLed controllers
        self.path = os.path.join(SWAP_DIR, f"{lifecycle.SWAP_PREFIX}{lifecycle.owner_tag()}-{next(_seq)}.swap")
        self.active = False
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            try:
                os.posix_fallocate(fd, 0, nbytes)
            finally:
                os.close(fd)
            _run(_tool("mkswap"), "-q", self.path)
            _AREAS.acquire(self)
            _run(_tool("swapon"), "-p", "32767", self.path)
            self.active = True
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """swapoff (the kernel reads every page back in) and delete the file; idempotent."""
        if self.active:
            self.active = False
            subprocess.run([_tool("swapoff"), self.path], capture_output=True, timeout=600)
        _AREAS.release(self)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _run(*argv: str) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise Unsupported(f"{os.path.basename(argv[0])} failed: {proc.stderr.strip() or proc.returncode}")
