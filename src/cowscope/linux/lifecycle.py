"""What a Linux-backend machine leaves on the host, and how it is always taken away again.

A machine owns a folder under /var/tmp (`cowscope-linux-OWNER-XXXXXXXX`: its files and its agents'
stderr), its agents' process groups, and perhaps a swapfile (`cowscope-swap-OWNER-N.swap`).
OWNER is the controller's pid and its start time in clock ticks (`/proc/PID/stat` field 22), so
a later process that reuses the pid is not taken for the owner. They go away:
- at `Machine.close()`, when an unclosed Machine is garbage-collected, and at interpreter exit
  (`weakref.finalize`);
- on SIGTERM: while a machine is open, SIGTERM exits through SystemExit (finally blocks and the
  finalizers run) where nobody else handles SIGTERM;
- after a SIGKILL (or a power cut): the next machine started by the same user removes every folder
  and swapfile whose owner is gone (`remove_stale`). Agents die with their socket.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
from typing import Any

DIR_PREFIX = "cowscope-linux-"
SWAP_PREFIX = "cowscope-swap-"


def agent_setup() -> None:
    """In a new agent before exec: its own process group (killed as one), and no core dumps (an
    agent that dies of SIGABRT or SIGSEGV leaves no `core` behind; its children inherit this)."""
    os.setpgrp()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def release(pgids: list[int], directory: str) -> None:
    """Kill a machine's agents (their process groups) and remove its files: at close(), when the
    Machine is garbage-collected unclosed, or at exit (weakref.finalize)."""
    for pgid in pgids:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(directory, ignore_errors=True)


# --- owners --------------------------------------------------------------------------------------


def _start_ticks(pid: int) -> int | None:
    """A process's start time in clock ticks after boot (None: no such process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    return int(text[text.rindex(b")") + 2:].split()[19])


def owner_tag(pid: int | None = None) -> str:
    """`PID.TICKS`: names what this process leaves on the host."""
    pid = os.getpid() if pid is None else pid
    return f"{pid}.{_start_ticks(pid)}"


def owner_alive(tag: str) -> bool:
    """The process named by an owner tag still runs (the same process, not a reused pid)."""
    pid, _, ticks = tag.partition(".")
    return _start_ticks(int(pid)) == int(ticks)


def machine_dir(root: str | None) -> str:
    """A new machine's folder (0700, ours), after removing what dead owners left."""
    remove_stale(root or tempfile.gettempdir())
    return tempfile.mkdtemp(prefix=f"{DIR_PREFIX}{owner_tag()}-", dir=root)


_NAMED = re.compile(r"(\d+\.\d+)-")


def remove_stale(root: str) -> list[str]:
    """Remove this user's machine folders and swapfiles under `root` whose owner is gone (a
    SIGKILLed controller); the paths removed. Folders of live owners, of other users, symlinks
    and names without an owner are left alone."""
    removed = []
    try:
        names = os.listdir(root)
    except OSError:
        return []
    for name in names:
        for prefix in (DIR_PREFIX, SWAP_PREFIX):
            m = _NAMED.match(name, len(prefix)) if name.startswith(prefix) else None
            if m and not owner_alive(m.group(1)) and _ours(os.path.join(root, name)):
                _remove(os.path.join(root, name))
                removed.append(os.path.join(root, name))
    return removed


def _ours(path: str) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_uid == os.geteuid() and (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode))


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
        return
    if path in active_swaps():
        subprocess.run([shutil.which("swapoff") or "/sbin/swapoff", path], capture_output=True, timeout=600)
    try:
        os.unlink(path)
    except OSError:
        pass


def swap_areas() -> list[list[str]]:
    """The active swap areas: /proc/swaps' rows (Filename Type Size Used Priority), split."""
    try:
        with open("/proc/swaps") as f:
            return [line.split() for line in f.read().splitlines()[1:] if line.strip()]
    except OSError:
        return []


def active_swaps() -> set[str]:
    """The paths of the active swap areas (/proc/swaps)."""
    return {row[0] for row in swap_areas()}


# --- SIGTERM -------------------------------------------------------------------------------------

_OPEN: set[int] = set()  # id() of the machines not closed yet
_PREV_SIGTERM: list[Any] = []


def _sigterm_to_exit(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def hold_sigterm(key: int) -> None:
    """While a machine is open, SIGTERM exits through SystemExit (finally blocks, atexit: agents
    killed, files removed) instead of killing the interpreter on the spot; only where nobody else
    handles SIGTERM."""
    if (not _OPEN and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
        _PREV_SIGTERM.append(signal.signal(signal.SIGTERM, _sigterm_to_exit))
    _OPEN.add(key)


def release_sigterm(key: int) -> None:
    """The machine `key` is closed: SIGTERM is back to what it was when none is open."""
    _OPEN.discard(key)
    if (not _OPEN and _PREV_SIGTERM and threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is _sigterm_to_exit):
        signal.signal(signal.SIGTERM, _PREV_SIGTERM.pop())
