"""Read a live process's memory views from /proc into cowscope's record types.

The one reader for every consumer (the Linux backend, the inspector, live snapshots), one function
per file kind: each opens the file, reads it whole (pagemap: the range asked for, in large blocks
straight into numpy), and parses it with `cowscope.observe.records`. A process that vanished before
or during the read raises `ProcessGone`; a zombie (no mm any more) counts as gone for the mm views;
a refused read (another user's process) raises `ProcPermissionError`. The PFN bits of pagemap
need CAP_SYS_ADMIN: without it they read as 0 (the flags stay valid). The files indexed by PFN
(/proc/kpagecount, /proc/kpageflags) and the zero-page probes are in `cowscope.observe.kpage`.
"""

from __future__ import annotations

import errno
import os
import sys
from dataclasses import dataclass
from typing import NoReturn

import numpy as np

from ..errors import ProcessGone
from .records import (
    PAGE_SIZE,
    MapsEntry,
    SmapsEntry,
    SmapsRollup,
    Status,
    parse_maps,
    parse_meminfo,
    parse_smaps,
    parse_smaps_rollup,
    parse_status,
    parse_vmstat,
)

PROC = "/proc"
#: The end of user space on x86_64 (4-level page tables): pagemap has no entries at or beyond
#: TASK_SIZE (one page below it), where [vsyscall] lives.
USER_SPACE_END = 1 << 47
TASK_SIZE = USER_SPACE_END - PAGE_SIZE
#: Kernel mappings whose PTEs are not normal pages (smaps does not count them): no process memory.
SPECIAL_MAPPINGS = ("[vvar]", "[vvar_vclock]", "[vsyscall]")
#: Task flag of a kernel thread (include/linux/sched.h): it has no user memory.
PF_KTHREAD = 0x00200000
#: pagemap entries read per system call (8 MiB of entries = 4 GiB of address space).
PAGEMAP_BLOCK = 1 << 20

#: errnos that mean "the process is gone" when reading /proc/PID/*.
_GONE_ERRNOS = (errno.ESRCH, errno.ENOENT)
_DENIED_ERRNOS = (errno.EACCES, errno.EPERM)


class ProcPermissionError(PermissionError):
    """Reading a process's /proc file was refused (another user's process without privilege)."""

    def __init__(self, pid: int, what: str) -> None:
        self.pid = pid
        super().__init__(errno.EACCES, f"pid {pid}: permission denied reading /proc/{pid}/{what}")


def linux_problem(root: str = PROC) -> str | None:
    """Why this system cannot be inspected (None when /proc looks like Linux's)."""
    if not sys.platform.startswith("linux"):
        return f"cowscope inspect needs Linux's /proc; this is {sys.platform}"
    if not os.path.exists(f"{root}/self/pagemap"):
        return ("/proc/self/pagemap is missing: /proc is not mounted or the kernel lacks "
                "CONFIG_PROC_PAGE_MONITOR")
    return None


def _path(pid: int | str, name: str, root: str) -> str:
    return f"{root}/{pid}/{name}"


def _raise_for(pid: int | str, name: str, exc: OSError) -> NoReturn:
    """Raise an OSError from /proc/PID/NAME as ProcessGone or ProcPermissionError when it is one."""
    ipid = int(pid) if str(pid).isdigit() else -1
    if exc.errno in _GONE_ERRNOS:
        raise ProcessGone(ipid) from None
    if exc.errno in _DENIED_ERRNOS:
        raise ProcPermissionError(ipid, name) from exc
    raise exc


def _open(pid: int | str, name: str, root: str) -> int:
    try:
        return os.open(_path(pid, name, root), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        _raise_for(pid, name, exc)


def read_bytes(pid: int | str, name: str, root: str = PROC) -> bytes:
    """Read /proc/PID/NAME whole; ProcessGone if the process vanished before or during the read."""
    fd = _open(pid, name, root)
    chunks: list[bytes] = []
    try:
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as exc:
        _raise_for(pid, name, exc)
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_text(pid: int | str, name: str, root: str = PROC) -> str:
    """The kernel text of /proc/PID/NAME (maps, smaps, smaps_rollup, status, ...)."""
    return read_bytes(pid, name, root).decode("utf-8", "replace")


# --- /proc/PID/stat ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/PID/stat cowscope uses (fs/proc/array.c do_task_stat)."""

    name: str      # comm, field 2
    state: str     # "R", "S", "Z", ... field 3
    ppid: int      # field 4
    flags: int     # task flags (PF_*), field 9
    minflt: int    # field 10
    majflt: int    # field 12
    starttime: int = 0  # field 22: clock ticks after boot (CLOCK_BOOTTIME) when the process started
    #: (start_brk, arg_start), fields 47 and 48: a child forked without exec has its parent's; an
    #: exec picks new ones (0, 0 when the reader may not see them)
    image: tuple[int, int] = (0, 0)
    #: field 52: the wait status of a zombie (how it died: exit code or signal), 0 while it runs
    exit_code: int = 0

    @property
    def kernel_thread(self) -> bool:
        """True for a kernel thread (PF_KTHREAD): it has no user memory."""
        return bool(self.flags & PF_KTHREAD)


def read_stat(pid: int, root: str = PROC) -> Stat:
    """/proc/PID/stat in one read; ProcessGone if there is no such process."""
    data = read_bytes(pid, "stat", root)
    # comm may contain spaces and parentheses: the state follows the *last* ')'.
    head, sep, tail = data.rpartition(b")")
    rest = tail.split()
    if not sep or len(rest) < 20:
        raise ProcessGone(pid)
    name = head.partition(b"(")[2].decode("utf-8", "replace")
    image = (int(rest[44]), int(rest[45])) if len(rest) > 45 else (0, 0)
    exit_code = int(rest[49]) if len(rest) > 49 else 0
    return Stat(name, rest[0].decode(), int(rest[1]), int(rest[6]), int(rest[7]), int(rest[9]), int(rest[19]), image,
                exit_code)


#: Clock ticks per second of /proc/PID/stat times (USER_HZ).
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def read_cmdline(pid: int, root: str = PROC) -> list[str]:
    """/proc/PID/cmdline as its NUL-separated strings (trailing empty ones dropped; [] for a zombie)."""
    parts = read_bytes(pid, "cmdline", root).split(b"\0")
    while parts and not parts[-1]:
        parts.pop()
    return [x.decode("utf-8", "replace") for x in parts]


def process_state(pid: int, root: str = PROC) -> str | None:
    """The one-letter state from /proc/PID/stat ("R", "S", "Z", ...), or None if there is no such pid."""
    try:
        return read_stat(pid, root).state
    except (ProcessGone, OSError):
        return None


def is_alive(pid: int, root: str = PROC) -> bool:
    """True if PID exists and is neither a zombie nor dead (so it still has an mm)."""
    return process_state(pid, root) not in (None, "Z", "X", "x")


def read_ppid(pid: int, root: str = PROC) -> int:
    """Parent pid from /proc/PID/stat."""
    return read_stat(pid, root).ppid


def task_ids(pid: int, root: str = PROC) -> list[int]:
    """The thread ids of a process (/proc/PID/task), sorted; ProcessGone if there is no such process."""
    try:
        return sorted(int(t) for t in os.listdir(_path(pid, "task", root)) if t.isdigit())
    except OSError as exc:
        _raise_for(pid, "task", exc)


def read_fault_counts(pid: int, root: str = PROC) -> dict[str, int]:
    """minflt and majflt of PID from /proc/PID/stat: {"minor": n, "major": n}."""
    st = read_stat(pid, root)
    return {"minor": st.minflt, "major": st.majflt}


# --- maps, smaps, smaps_rollup, status -----------------------------------------------------------


def _read_mm_text(pid: int, name: str, root: str) -> str:
    """Read an mm-backed view; a zombie (it reads as empty), or a process that exited while we
    read, is ProcessGone."""
    text = read_text(pid, name, root)
    if not is_alive(pid, root):
        raise ProcessGone(pid, "exited" if process_state(pid, root) is None else "exited (zombie)")
    return text


def read_maps(pid: int, root: str = PROC) -> list[MapsEntry]:
    """/proc/PID/maps as MapsEntry records."""
    return parse_maps(_read_mm_text(pid, "maps", root))


def read_smaps(pid: int, root: str = PROC) -> list[SmapsEntry]:
    """/proc/PID/smaps as SmapsEntry records."""
    return parse_smaps(_read_mm_text(pid, "smaps", root))


def read_smaps_rollup(pid: int, root: str = PROC) -> SmapsRollup:
    """/proc/PID/smaps_rollup as a SmapsRollup (a zombie's cannot be opened: ProcessGone)."""
    text = read_text(pid, "smaps_rollup", root)
    if not text.strip():
        raise ProcessGone(pid)
    return parse_smaps_rollup(text)


def read_status(pid: int, root: str = PROC) -> Status:
    """/proc/PID/status as a Status (readable for zombies too: their Vm* fields are absent)."""
    text = read_text(pid, "status", root)
    try:
        return parse_status(text)
    except ValueError:
        if process_state(pid, root) is None:
            raise ProcessGone(pid) from None
        raise


# --- /proc/PID/pagemap ---------------------------------------------------------------------------


class PagemapReader:
    """An open /proc/PID/pagemap, read in large blocks straight into numpy arrays.

    The kernel has no entries at or beyond TASK_SIZE: a read stopping there leaves zeros ("no
    entry"). A read stopping short below it means the mm is gone: ProcessGone.
    """

    def __init__(self, pid: int, root: str = PROC) -> None:
        self.pid = pid
        self.fd = _open(pid, "pagemap", root)

    def read(self, addr: int, npages: int, out: np.ndarray | None = None) -> np.ndarray:
        """Entries of npages pages from addr (uint64, into `out` if given)."""
        if addr % PAGE_SIZE:
            raise ValueError(f"pagemap address {addr:#x} is not page aligned")
        if out is None:
            out = np.empty(max(npages, 0), dtype=np.uint64)
        if len(out) != max(npages, 0) or out.dtype != np.uint64 or not out.flags.c_contiguous:
            raise ValueError("pagemap output must be a contiguous uint64 array of npages entries")
        view = memoryview(out).cast("B")
        base = (addr // PAGE_SIZE) * 8
        done, total = 0, len(out) * 8
        while done < total:
            try:
                got = os.preadv(self.fd, [view[done:done + min(total - done, PAGEMAP_BLOCK * 8)]], base + done)
            except OSError as exc:
                _raise_for(self.pid, "pagemap", exc)
            if got <= 0:
                if addr + done // 8 * PAGE_SIZE < TASK_SIZE:
                    raise ProcessGone(self.pid)  # the mm is gone: the process exited while we read
                out[done // 8:] = 0
                break
            done += got
        return out

    def close(self) -> None:
        """Close the file."""
        os.close(self.fd)

    def __enter__(self) -> PagemapReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_pagemap(pid: int, addr: int, npages: int, root: str = PROC) -> np.ndarray:
    """The raw 64-bit pagemap entries of `npages` pages from `addr` (uint64 array); ProcessGone if
    the process is gone or a zombie once they are read."""
    with PagemapReader(pid, root) as reader:
        raw = reader.read(addr, npages)
    if not is_alive(pid, root):
        raise ProcessGone(pid)
    return raw


# --- machine-wide text files ---------------------------------------------------------------------


def read_meminfo(root: str = PROC) -> dict[str, int]:
    """/proc/meminfo in kB (HugePages_* counts are kept as plain numbers)."""
    return parse_meminfo(_read_plain("meminfo", root))


def read_vmstat(root: str = PROC) -> dict[str, int]:
    """/proc/vmstat counters."""
    return parse_vmstat(_read_plain("vmstat", root))


def _read_plain(name: str, root: str) -> str:
    with open(f"{root}/{name}", encoding="utf-8", errors="replace") as f:
        return f.read()
