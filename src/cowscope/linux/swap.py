"""A swapfile for the Linux backend: created, activated and always removed again.

Swap is global: while a scenario's swapfile is active every process on the machine may use it.
The file lives under /var/tmp with this controller's pid and start time in its name, gets the
highest swap priority (so the scenario's pages go to it, not to another active area), and is
swapped off and deleted by `SwapFile.remove()` (Machine.close(), also at interpreter exit); one left by a
SIGKILLed controller goes with the next swapfile or machine (`linux.lifecycle`). Needs root.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess

from ..errors import Unsupported
from . import lifecycle

SWAP_DIR = "/var/tmp"
_seq = itertools.count(1)


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
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _run(*argv: str) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise Unsupported(f"{os.path.basename(argv[0])} failed: {proc.stderr.strip() or proc.returncode}")
