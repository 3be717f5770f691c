"""The inspector's specialised /proc readers: pagemap in large blocks, kpagecount in coalesced runs."""

from __future__ import annotations

import errno
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ProcessGone
from ..observe import procfs
from ..observe.records import parse_smaps_rollup

PROC = Path("/proc")
#: pagemap entries read per system call (8 MiB of entries = 4 GiB of address space).
PAGEMAP_BLOCK = 1 << 20
PF_KTHREAD = 0x00200000
#: Mappings whose PTEs are not "normal pages" (smaps does not count them).
SPECIAL_MAPPINGS = ("[vvar]", "[vvar_vclock]", "[vsyscall]")
USER_SPACE_END = 1 << 47


class ProcPermissionError(PermissionError):
    """Reading a process's /proc file was refused (another user's process without privilege)."""

    def __init__(self, pid: int, what: str) -> None:
        self.pid = pid
        super().__init__(errno.EACCES, f"pid {pid}: permission denied reading /proc/{pid}/{what}")


def linux_problem() -> str | None:
    """Why this system cannot be inspected (None when /proc looks like Linux's)."""
    if not sys.platform.startswith("linux"):
        return f"cowscope inspect needs Linux's /proc; this is {sys.platform}"
    if not (PROC / "self" / "pagemap").exists():
        return ("/proc/self/pagemap is missing: /proc is not mounted or the kernel lacks "
                "CONFIG_PROC_PAGE_MONITOR")
    return None


def _gone_or_raise(pid: int, what: str, exc: OSError) -> None:
    """Re-raise an OSError from /proc/PID as ProcessGone or ProcPermissionError when it is one."""
    if isinstance(exc, (FileNotFoundError, ProcessLookupError)) or exc.errno in (errno.ESRCH, errno.ENOENT):
        raise ProcessGone(pid) from exc
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        raise ProcPermissionError(pid, what) from exc
    raise exc


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/PID/stat the inspector needs."""

    name: str
    state: str
    ppid: int
    flags: int


def read_stat(pid: int) -> Stat:
    """Name (comm), state, parent and task flags from /proc/PID/stat in one read."""
    try:
        text = procfs.read_text(pid, "stat")
    except PermissionError as exc:
        raise ProcPermissionError(pid, "stat") from exc
    head, sep, tail = text.rpartition(")")
    rest = tail.split()
    if not sep or len(rest) < 7:
        raise ProcessGone(pid)
    return Stat(head.partition("(")[2], rest[0], int(rest[1]), int(rest[6]))


def stat_flags(pid: int) -> tuple[str, int]:
    """(state letter, task flags) from /proc/PID/stat."""
    st = read_stat(pid)
    return st.state, st.flags


def read_rollup(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup fields in kB; ProcessGone when the process has no mm any more."""
    try:
        text = procfs.read_text(pid, "smaps_rollup")
    except PermissionError as exc:
        raise ProcPermissionError(pid, "smaps_rollup") from exc
    if not text.strip():
        raise ProcessGone(pid)
    return parse_smaps_rollup(text).fields


def is_kernel_thread(pid: int) -> bool:
    """True for a kernel thread (PF_KTHREAD): it has no user memory to inspect."""
    return bool(stat_flags(pid)[1] & PF_KTHREAD)


class PagemapReader:
    """An open /proc/PID/pagemap read in large blocks straight into numpy arrays."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        try:
            self.fd = os.open(PROC / str(pid) / "pagemap", os.O_RDONLY)
        except OSError as exc:
            _gone_or_raise(pid, "pagemap", exc)

    def read(self, addr: int, npages: int, out: np.ndarray | None = None) -> np.ndarray:
        """Entries for npages pages from addr (uint64, into `out` if given); ProcessGone if it exited."""
        if out is None:
            out = np.empty(npages, dtype=np.uint64)
        if len(out) != npages or out.dtype != np.uint64 or not out.flags.c_contiguous:
            raise ValueError("pagemap output must be a contiguous uint64 array of npages entries")
        view = memoryview(out).cast("B")
        base = (addr >> 12) * 8
        done = 0
        total = npages * 8
        while done < total:
            n = min(total - done, PAGEMAP_BLOCK * 8)
            try:
                got = os.preadv(self.fd, [view[done:done + n]], base + done)
            except OSError as exc:
                _gone_or_raise(self.pid, "pagemap", exc)
            if got <= 0:  # the mm is gone: the process exited (zombie) while we read
                raise ProcessGone(self.pid)
            done += got
        return out

    def close(self) -> None:
        """Close the file."""
        os.close(self.fd)

    def __enter__(self) -> PagemapReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_pagemap(pid: int, addr: int, npages: int) -> np.ndarray:
    """pagemap entries of npages pages from addr."""
    with PagemapReader(pid) as r:
        return r.read(addr, npages)


def read_kpagecount(pfns: np.ndarray) -> np.ndarray:
    """Map counts of PFNs from /proc/kpagecount (root only): the shared coalescing reader."""
    return procfs.read_kpagecount(pfns)


def kpagecount_readable() -> bool:
    """True when /proc/kpagecount can be read (root / CAP_SYS_ADMIN)."""
    try:
        fd = os.open("/proc/kpagecount", os.O_RDONLY)
    except OSError:
        return False
    try:
        return len(os.pread(fd, 8, 0)) == 8
    except OSError:
        return False
    finally:
        os.close(fd)


def zero_pfn() -> int:
    """The shared zero page's PFN (0 when PFNs are hidden)."""
    z = procfs.zero_pfns()
    return min(z) if z else 0
