"""Read another process's memory at scattered addresses, through /proc/PID/mem.

Reading /proc/PID/mem takes a plain reference on each page (get_user_pages_remote, FOLL_FORCE) and
leaves the target's page tables as they were. process_vm_readv(2) would be one system call for
1024 pieces, but it *pins* the pages, and since Linux 5.19 a read-only pin of an anonymous page
shared after fork makes the kernel unshare it first: reading a page the parent shares with its
workers would copy it in the target (measured on 6.18: the target's PFN changes). An inspector
must not cause the copies it counts, so every read here is a pread of /proc/PID/mem (adjacent
pieces in one read). The permission is ptrace's (PTRACE_MODE_ATTACH: root, or the same user where
the Yama policy allows). Read only resident addresses: a read faults in what is not there.
"""

from __future__ import annotations

import errno
import os

import numpy as np

from ..errors import ProcessGone


def read_pieces(pid: int, addrs: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """`size` bytes at each address of `addrs` (ascending) in process `pid`: a (len(addrs), size)
    uint8 array and a bool mask of the rows read whole (unmapped ones stay zero). ProcessGone if
    the process is gone, PermissionError if its memory may not be read."""
    addrs = np.asarray(addrs, dtype=np.uint64)
    out = np.zeros((len(addrs), size), dtype=np.uint8)
    ok = np.zeros(len(addrs), dtype=bool)
    if len(addrs) == 0:
        return out, ok
    try:
        fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ProcessGone(pid) from None
    flat = memoryview(out).cast("B")
    try:
        for first, last in _runs(addrs, size):
            _read_run(fd, pid, addrs, size, first, last, flat, ok)
    finally:
        os.close(fd)
    return out, ok


def _runs(addrs: np.ndarray, size: int) -> list[tuple[int, int]]:
    """Half-open index ranges of pieces that follow each other in memory."""
    breaks = np.flatnonzero(np.diff(addrs.astype(np.int64)) != size) + 1
    edges = [0, *breaks.tolist(), len(addrs)]
    return list(zip(edges[:-1], edges[1:]))


def _read_run(fd: int, pid: int, addrs: np.ndarray, size: int, first: int, last: int, flat: memoryview,
              ok: np.ndarray) -> None:
    """One pread for pieces [first, last); piece by piece if the run crosses something unreadable."""
    try:
        got = os.preadv(fd, [flat[first * size:last * size]], int(addrs[first]))
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise PermissionError(exc.errno, f"pid {pid}: may not read its memory ({exc.strerror})") from None
        if exc.errno == errno.ESRCH:
            raise ProcessGone(pid) from None
        if exc.errno != errno.EIO:
            raise
        got = 0
    whole = got // size
    ok[first:first + whole] = True
    if whole < last - first and last - first > 1:  # a hole inside the run: the rest one at a time
        for i in range(first + whole, last):
            _read_run(fd, pid, addrs, size, i, i + 1, flat, ok)
    elif got == 0 and last - first == 1 and not _alive(pid):
        raise ProcessGone(pid)


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}/stat")
