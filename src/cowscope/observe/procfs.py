"""Read a live process's memory views from /proc into cowscope's record types.

One reader for every consumer (the Linux backend, the inspector): each function opens the file,
reads it whole, and parses it with `cowscope.observe.records`. A process that vanished before or
during the read raises `ProcessGone`; a zombie (no mm any more) counts as gone for the mm views.
`/proc/kpagecount`, `/proc/kpageflags` and the PFN bits of pagemap need CAP_SYS_ADMIN: without it
the kpage readers raise `KpageUnavailable` and pagemap PFNs read as 0 (the flags stay valid).
"""

from __future__ import annotations

import errno
import mmap
import os
from functools import lru_cache

import numpy as np

from ..errors import ProcessGone
from .records import (
    PAGE_SIZE,
    MapsEntry,
    SmapsEntry,
    SmapsRollup,
    Status,
    pagemap_pfns,
    parse_maps,
    parse_meminfo,
    parse_pagemap,
    parse_smaps,
    parse_smaps_rollup,
    parse_status,
    parse_vmstat,
)

PROC = "/proc"

#: errnos that mean "the process is gone" when reading /proc/PID/*.
_GONE_ERRNOS = (errno.ESRCH, errno.ENOENT)


class KpageUnavailable(PermissionError):
    """/proc/kpagecount or /proc/kpageflags cannot be read (needs root)."""


def _path(pid: int | str, name: str, root: str) -> str:
    return f"{root}/{pid}/{name}"


def process_state(pid: int, root: str = PROC) -> str | None:
    """The one-letter state from /proc/PID/stat ("R", "S", "Z", ...), or None if there is no such pid."""
    try:
        with open(_path(pid, "stat", root), "rb") as f:
            data = f.read()
    except OSError:
        return None
    # comm may contain spaces and parentheses: the state follows the *last* ')'.
    tail = data[data.rfind(b")") + 1:].split()
    return tail[0].decode() if tail else None


def is_alive(pid: int, root: str = PROC) -> bool:
    """True if PID exists and is neither a zombie nor dead (so it still has an mm)."""
    return process_state(pid, root) not in (None, "Z", "X", "x")


def read_bytes(pid: int | str, name: str, root: str = PROC) -> bytes:
    """Read /proc/PID/NAME whole; ProcessGone if the process vanished before or during the read."""
    try:
        fd = os.open(_path(pid, name, root), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in _GONE_ERRNOS:
            raise ProcessGone(int(pid) if str(pid).isdigit() else -1) from None
        raise
    chunks: list[bytes] = []
    try:
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError as exc:
        if exc.errno in _GONE_ERRNOS:
            raise ProcessGone(int(pid) if str(pid).isdigit() else -1) from None
        raise
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_text(pid: int | str, name: str, root: str = PROC) -> str:
    """The kernel text of /proc/PID/NAME (maps, smaps, smaps_rollup, status, ...)."""
    return read_bytes(pid, name, root).decode("utf-8", "replace")


def _read_mm_text(pid: int, name: str, root: str) -> str:
    """Read an mm-backed view; a zombie, or a process that exited while we read, is ProcessGone."""
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
    """/proc/PID/smaps_rollup as a SmapsRollup."""
    text = _read_mm_text(pid, "smaps_rollup", root)
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


def read_fault_counts(pid: int, root: str = PROC) -> dict[str, int]:
    """minflt and majflt of PID from /proc/PID/stat: {"minor": n, "major": n}."""
    data = read_bytes(pid, "stat", root)
    tail = data[data.rfind(b")") + 1:].split()
    # tail[0] is field 3 (state); minflt is field 10, majflt field 12.
    if len(tail) < 10:
        raise ProcessGone(pid) if process_state(pid, root) is None else ValueError(
            f"/proc/{pid}/stat too short: {data!r}")
    return {"minor": int(tail[7]), "major": int(tail[9])}


def read_pagemap(pid: int, addr: int, npages: int, root: str = PROC) -> np.ndarray:
    """The raw 64-bit pagemap entries of `npages` pages from `addr` (uint64 array)."""
    if addr % PAGE_SIZE:
        raise ValueError(f"pagemap address {addr:#x} is not page aligned")
    if npages <= 0:
        return np.zeros(0, dtype=np.uint64)
    try:
        fd = os.open(_path(pid, "pagemap", root), os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in _GONE_ERRNOS:
            raise ProcessGone(pid) from None
        raise
    try:
        want = npages * 8
        off = (addr // PAGE_SIZE) * 8
        buf = bytearray()
        while len(buf) < want:
            try:
                chunk = os.pread(fd, want - len(buf), off + len(buf))
            except OSError as exc:
                if exc.errno in _GONE_ERRNOS:
                    raise ProcessGone(pid) from None
                raise
            if not chunk:
                break
            buf += chunk
    finally:
        os.close(fd)
    if not is_alive(pid, root):
        raise ProcessGone(pid)
    # The kernel stops at the end of user space (TASK_SIZE): [vsyscall] and beyond read as
    # "no entries", which is what an all-zero entry means.
    buf += bytes(want - len(buf) - (want - len(buf)) % 8)
    return parse_pagemap(bytes(buf[: len(buf) - len(buf) % 8]))


#: PFN gaps up to this many entries are read through rather than split into another pread
KPAGE_GAP = 64


def _read_kpage_file(name: str, pfns: np.ndarray | list[int], root: str) -> np.ndarray:
    """Read one uint64 per PFN from /proc/kpagecount or /proc/kpageflags: the distinct PFNs are
    sorted and read in coalesced runs (one pread per run, nearby runs merged), then mapped back."""
    pfns = np.asarray(pfns, dtype=np.int64)
    if len(pfns) == 0:
        return np.zeros(0, dtype=np.uint64)
    uniq, inverse = np.unique(pfns, return_inverse=True)
    gaps = np.flatnonzero(np.diff(uniq) > KPAGE_GAP)
    starts = np.concatenate(([0], gaps + 1))
    ends = np.concatenate((gaps + 1, [len(uniq)]))
    lo = uniq[starts]
    n = uniq[ends - 1] - lo + 1
    at = np.concatenate(([0], np.cumsum(n)))  # where each run lands in one buffer
    buf = np.zeros(int(at[-1]), dtype=np.uint64)
    view = memoryview(buf).cast("B")
    try:
        fd = os.open(f"{root}/{name}", os.O_RDONLY | os.O_CLOEXEC)
    except PermissionError as exc:
        raise KpageUnavailable(exc.errno, f"{root}/{name}: {exc.strerror} (needs root)") from None
    try:
        for a, b, first in zip(at[:-1].tolist(), at[1:].tolist(), lo.tolist(), strict=True):
            try:
                os.preadv(fd, [view[a * 8:b * 8]], first * 8)  # a short read (end of memory) leaves zeros
            except PermissionError as exc:
                raise KpageUnavailable(exc.errno, f"{root}/{name}: {exc.strerror} (needs root)") from None
    finally:
        os.close(fd)
    run = np.repeat(np.arange(len(starts)), ends - starts)
    return buf[at[run] + (uniq - lo[run])][inverse]


def read_kpagecount(pfns: np.ndarray | list[int], root: str = PROC) -> np.ndarray:
    """/proc/kpagecount for each PFN (int64); KpageUnavailable without root."""
    return _read_kpage_file("kpagecount", pfns, root).astype(np.int64)


def read_kpageflags(pfns: np.ndarray | list[int], root: str = PROC) -> np.ndarray:
    """/proc/kpageflags for each PFN (uint64); KpageUnavailable without root."""
    return _read_kpage_file("kpageflags", pfns, root)


def kpage_available(root: str = PROC) -> bool:
    """True if /proc/kpagecount can be read (root / CAP_SYS_ADMIN)."""
    try:
        with open(f"{root}/kpagecount", "rb") as f:
            f.read(8)
        return True
    except OSError:
        return False


@lru_cache(maxsize=1)
def zero_pfns() -> frozenset[int]:
    """PFNs of the shared 4 KiB zero page, found by read-faulting a private anon page here.

    Empty when PFNs are hidden (no CAP_SYS_ADMIN).
    """
    m = mmap.mmap(-1, PAGE_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        if hasattr(m, "madvise") and hasattr(mmap, "MADV_NOHUGEPAGE"):
            m.madvise(mmap.MADV_NOHUGEPAGE)
        _ = m[0]  # read fault: maps the zero page
        import ctypes

        buf = (ctypes.c_char * 1).from_buffer(m)
        addr = ctypes.addressof(buf)
        del buf
        raw = read_pagemap(os.getpid(), addr, 1)
    finally:
        m.close()
    pfn = int(pagemap_pfns(raw)[0])
    return frozenset({pfn} if pfn else set())


def read_meminfo(root: str = PROC) -> dict[str, int]:
    """/proc/meminfo in kB (HugePages_* counts are kept as plain numbers)."""
    return parse_meminfo(_read_plain("meminfo", root))


def read_vmstat(root: str = PROC) -> dict[str, int]:
    """/proc/vmstat counters."""
    return parse_vmstat(_read_plain("vmstat", root))


def _read_plain(name: str, root: str) -> str:
    with open(f"{root}/{name}", encoding="utf-8", errors="replace") as f:
        return f.read()


def list_pids(root: str = PROC) -> list[int]:
    """All numeric entries of /proc (processes), sorted."""
    return sorted(int(d) for d in os.listdir(root) if d.isdigit())


def read_ppid(pid: int, root: str = PROC) -> int:
    """Parent pid from /proc/PID/stat."""
    data = read_bytes(pid, "stat", root)
    tail = data[data.rfind(b")") + 1:].split()
    return int(tail[1])


def read_comm(pid: int, root: str = PROC) -> str:
    """The task's comm (name) from /proc/PID/comm."""
    return read_text(pid, "comm", root).rstrip("\n")
