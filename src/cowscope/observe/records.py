"""The project's vocabulary: /proc records that the model produces and the /proc parsers produce.

Every record renders itself exactly as the kernel prints it (`to_text`) and can be parsed back
from kernel text (`parse_*`), so model output and real /proc output compare field by field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

PAGE_SIZE = 4096


_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([kmgtp]?)(?:i?b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}


def parse_size(value: int | str) -> int:
    """Bytes from 4096, '4KiB', '2GiB', '512M', '1.5 GiB' (binary units up to PiB); ValueError
    naming the value for anything else (a negative number, 'abc', None)."""
    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    elif isinstance(value, str) and (m := _SIZE.fullmatch(value)):
        n = int(float(m.group(1)) * _UNITS[m.group(2).upper()])
    else:
        raise ValueError(f"not a size: {value!r} (a number of bytes, or e.g. '64MiB', '2GiB', '1TiB')")
    if n < 0:
        raise ValueError(f"not a size: {value!r} is negative")
    return n

# ---------------------------------------------------------------------------------------------
# /proc/PID/maps


@dataclass(frozen=True)
class MapsEntry:
    """One line of /proc/PID/maps (fs/proc/task_mmu.c show_map_vma)."""

    start: int
    end: int
    perms: str  # "rw-p", "r-xs", ...
    offset: int = 0
    dev: str = "00:00"
    inode: int = 0
    path: str = ""

    @property
    def npages(self) -> int:
        return (self.end - self.start) // PAGE_SIZE

    @property
    def size_kb(self) -> int:
        return (self.end - self.start) >> 10

    @property
    def shared(self) -> bool:
        return self.perms[3] == "s"

    def to_text(self) -> str:
        head = f"{self.start:08x}-{self.end:08x} {self.perms} {self.offset:08x} {self.dev} {self.inode} "
        if not self.path:
            return head
        return head.ljust(73) + self.path


def parse_maps_line(line: str) -> MapsEntry:
    """Parse one maps line; raises ValueError naming the problem."""
    parts = line.rstrip("\n").split(None, 5)
    if len(parts) < 5:
        raise ValueError(f"maps line has {len(parts)} fields, need at least 5: {line!r}")
    rng, perms, off, dev, inode = parts[:5]
    path = parts[5].strip() if len(parts) > 5 else ""
    lo, sep, hi = rng.partition("-")
    if not sep or len(perms) != 4:
        raise ValueError(f"malformed maps line: {line!r}")
    try:
        start, end, offset, ino = int(lo, 16), int(hi, 16), int(off, 16), int(inode)
    except ValueError:
        raise ValueError(f"malformed number in maps line: {line!r}") from None
    if end < start:
        raise ValueError(f"maps line ends before it starts: {line!r}")
    return MapsEntry(start, end, perms, offset, dev, ino, path)


def _complete_lines(text: str) -> list[str]:
    """Non-blank lines of `text` (callers drop a malformed last line when `text` lacks its newline)."""
    return [ln for ln in text.splitlines() if ln.strip()]


def parse_maps(text: str) -> list[MapsEntry]:
    """Parse /proc/PID/maps text; a truncated last line (no newline, malformed) is dropped."""
    lines = _complete_lines(text)
    out = []
    for i, ln in enumerate(lines):
        try:
            out.append(parse_maps_line(ln))
        except ValueError:
            if i == len(lines) - 1 and not text.endswith("\n"):
                break
            raise
    return out


# ---------------------------------------------------------------------------------------------
# /proc/PID/smaps and smaps_rollup

#: Fields of one smaps block, in the kernel's order (6.x, no hugetlb/THP specials).
SMAPS_FIELDS = (
    "Size", "KernelPageSize", "MMUPageSize", "Rss", "Pss", "Pss_Dirty", "Shared_Clean",
    "Shared_Dirty", "Private_Clean", "Private_Dirty", "Referenced", "Anonymous", "KSM",
    "LazyFree", "AnonHugePages", "ShmemPmdMapped", "FilePmdMapped", "Shared_Hugetlb",
    "Private_Hugetlb", "Swap", "SwapPss", "Locked",
)
#: Fields of smaps_rollup, in the kernel's order.
ROLLUP_FIELDS = (
    "Rss", "Pss", "Pss_Dirty", "Pss_Anon", "Pss_File", "Pss_Shmem", "Shared_Clean",
    "Shared_Dirty", "Private_Clean", "Private_Dirty", "Referenced", "Anonymous", "KSM",
    "LazyFree", "AnonHugePages", "ShmemPmdMapped", "FilePmdMapped", "Shared_Hugetlb",
    "Private_Hugetlb", "Swap", "SwapPss", "Locked",
)


def _kb_line(name: str, value: int) -> str:
    return f"{name + ':':<16}{value:8d} kB"


@dataclass
class SmapsEntry:
    """One VMA's block of /proc/PID/smaps: its maps line, kB fields, THPeligible and VmFlags."""

    vma: MapsEntry
    fields: dict[str, int] = field(default_factory=dict)  # kB, kernel names
    thp_eligible: int = 0
    vm_flags: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> int:
        return self.fields.get(name, 0)

    def to_text(self) -> str:
        lines = [self.vma.to_text()]
        for name in SMAPS_FIELDS:
            lines.append(_kb_line(name, self.fields.get(name, 0)))
        extra = [k for k in self.fields if k not in SMAPS_FIELDS]
        lines += [_kb_line(k, self.fields[k]) for k in extra]
        lines.append(f"{'THPeligible:':<16}{self.thp_eligible:8d}")
        lines.append("VmFlags: " + "".join(f + " " for f in self.vm_flags))
        return "\n".join(lines) + "\n"


@dataclass
class SmapsRollup:
    """/proc/PID/smaps_rollup: the same accounting over all VMAs, truncated once."""

    start: int
    end: int
    fields: dict[str, int] = field(default_factory=dict)

    def __getitem__(self, name: str) -> int:
        return self.fields.get(name, 0)

    def to_text(self) -> str:
        head = MapsEntry(self.start, self.end, "---p", path="[rollup]").to_text()
        lines = [head] + [_kb_line(n, self.fields.get(n, 0)) for n in ROLLUP_FIELDS]
        return "\n".join(lines) + "\n"


def _parse_kb_field(line: str) -> tuple[str, int] | None:
    name, sep, rest = line.partition(":")
    if not sep or " " in name:
        return None
    toks = rest.split()
    if not toks:
        return None
    try:
        return name, int(toks[0])
    except ValueError:
        return None


def _is_header(line: str) -> bool:
    head = line.split(None, 1)[0] if line.strip() else ""
    return "-" in head and ":" not in head


def parse_smaps(text: str) -> list[SmapsEntry]:
    """Parse /proc/PID/smaps text; unknown fields are kept, a truncated last block is kept as read."""
    out: list[SmapsEntry] = []
    cur: SmapsEntry | None = None
    lines = _complete_lines(text)
    for i, line in enumerate(lines):
        if _is_header(line):
            try:
                cur = SmapsEntry(parse_maps_line(line))
            except ValueError:
                if i == len(lines) - 1 and not text.endswith("\n"):
                    break  # the read was cut inside a mapping line
                raise
            out.append(cur)
            continue
        if cur is None:
            raise ValueError(f"smaps field before any mapping line: {line!r}")
        if line.startswith("VmFlags:"):
            cur.vm_flags = tuple(line[len("VmFlags:"):].split())
        elif line.startswith("THPeligible:"):
            toks = line.split()
            if len(toks) > 1 and toks[1].isdigit():
                cur.thp_eligible = int(toks[1])
        else:
            kv = _parse_kb_field(line)
            if kv is not None:
                cur.fields[kv[0]] = kv[1]
    return out


def parse_smaps_rollup(text: str) -> SmapsRollup:
    """Parse /proc/PID/smaps_rollup; unknown fields are kept, a cut-off field line is ignored."""
    lines = _complete_lines(text)
    if not lines:
        raise ValueError("empty smaps_rollup")
    head = parse_maps_line(lines[0])
    rollup = SmapsRollup(head.start, head.end)
    for line in lines[1:]:
        kv = _parse_kb_field(line)
        if kv is not None:
            rollup.fields[kv[0]] = kv[1]
    return rollup


# ---------------------------------------------------------------------------------------------
# /proc/PID/pagemap

# The bits of one entry (Documentation/admin-guide/mm/pagemap.rst); every decoder uses these names.
PM_PFN_MASK = (1 << 55) - 1      # bits 0-54: the PFN of a present page (0 without CAP_SYS_ADMIN)
PM_SWAP_TYPE_MASK = 0x1f         # bits 0-4 of a swap entry: the swap type (which swap device)
PM_SWAP_OFFSET_SHIFT = 5         # bits 5-54 of a swap entry: the offset in that swap device
PM_SOFT_DIRTY = 1 << 55
PM_MMAP_EXCLUSIVE = 1 << 56      # the page is mapped exactly once
PM_UFFD_WP = 1 << 57
PM_GUARD_REGION = 1 << 58        # a guard PTE marker (a swap-type entry: bit 62 is set too)
PM_FILE = 1 << 61                # file page or shared anon (shmem)
PM_SWAP = 1 << 62                # a non-present swap-type entry
PM_PRESENT = 1 << 63


# /proc/kpageflags bits the project reads (include/uapi/linux/kernel-page-flags.h; 32 and up are
# kernel-internal flags shown to root).
KPF_REFERENCED = 1 << 2
KPF_UPTODATE = 1 << 3
KPF_DIRTY = 1 << 4
KPF_LRU = 1 << 5
KPF_MMAP = 1 << 11
KPF_ANON = 1 << 12
KPF_SWAPCACHE = 1 << 13
KPF_SWAPBACKED = 1 << 14
KPF_COMPOUND_HEAD = 1 << 15
KPF_COMPOUND_TAIL = 1 << 16
KPF_KSM = 1 << 21
KPF_THP = 1 << 22
KPF_ZERO_PAGE = 1 << 24
KPF_RESERVED = 1 << 32
KPF_ANON_EXCLUSIVE = 1 << 34     # KPF_MAPPEDTODISK: on an anon page it is PG_anon_exclusive
KPF_OWNER_PRIVATE = 1 << 37      # PG_owner_priv_1: on an anon page in the swap cache it is PG_swapcache


@dataclass(frozen=True)
class PagemapEntry:
    """One 64-bit /proc/PID/pagemap entry (Documentation/admin-guide/mm/pagemap.rst)."""

    raw: int

    @property
    def present(self) -> bool:
        return bool(self.raw & PM_PRESENT)

    @property
    def swapped(self) -> bool:
        return bool(self.raw & PM_SWAP)

    @property
    def file_or_shared_anon(self) -> bool:
        return bool(self.raw & PM_FILE)

    @property
    def exclusive(self) -> bool:
        return bool(self.raw & PM_MMAP_EXCLUSIVE)

    @property
    def soft_dirty(self) -> bool:
        return bool(self.raw & PM_SOFT_DIRTY)

    @property
    def uffd_wp(self) -> bool:
        return bool(self.raw & PM_UFFD_WP)

    @property
    def guard(self) -> bool:
        return bool(self.raw & PM_GUARD_REGION)

    @property
    def pfn(self) -> int:
        return self.raw & PM_PFN_MASK if self.present else 0

    @property
    def swap_type(self) -> int:
        return self.raw & PM_SWAP_TYPE_MASK if self.swapped else 0

    @property
    def swap_offset(self) -> int:
        return (self.raw & PM_PFN_MASK) >> PM_SWAP_OFFSET_SHIFT if self.swapped else 0

    def flags(self) -> str:
        """The reference sheets' notation: P S F X G D, '-' when the entry is 0."""
        s = "".join(c for c, b in (("P", PM_PRESENT), ("S", PM_SWAP), ("F", PM_FILE),
                                   ("X", PM_MMAP_EXCLUSIVE), ("G", PM_GUARD_REGION),
                                   ("D", PM_SOFT_DIRTY)) if self.raw & b)
        return s or "-"


def pagemap_entries(raw: np.ndarray) -> list[PagemapEntry]:
    return [PagemapEntry(int(v)) for v in raw]


def pagemap_pfns(raw: np.ndarray) -> np.ndarray:
    """PFNs of present entries (0 elsewhere), as int64."""
    raw = np.asarray(raw, dtype=np.uint64)
    present = (raw & np.uint64(PM_PRESENT)) != 0
    return np.where(present, (raw & np.uint64(PM_PFN_MASK)).astype(np.int64), 0)


def parse_pagemap(data: bytes) -> np.ndarray:
    """Decode raw pagemap bytes into a uint64 array (one entry per page)."""
    if len(data) % 8:
        raise ValueError(f"pagemap data of {len(data)} bytes is not a whole number of entries")
    return np.frombuffer(data, dtype="<u8").copy()


# ---------------------------------------------------------------------------------------------
# /proc/PID/status

STATUS_KB_FIELDS = (
    "VmPeak", "VmSize", "VmLck", "VmPin", "VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem",
    "VmData", "VmStk", "VmExe", "VmLib", "VmPTE", "VmSwap",
)


@dataclass
class Status:
    """The memory part of /proc/PID/status (fields in kB with the kernel's names)."""

    name: str
    pid: int
    ppid: int
    state: str = "S (sleeping)"
    fields: dict[str, int] = field(default_factory=dict)
    threads: int = 1

    def __getitem__(self, name: str) -> int:
        return self.fields.get(name, 0)

    def to_text(self) -> str:
        lines = [f"Name:\t{self.name}", f"State:\t{self.state}", f"Tgid:\t{self.pid}",
                 f"Pid:\t{self.pid}", f"PPid:\t{self.ppid}"]
        lines += [f"{n}:\t{self.fields.get(n, 0):8d} kB" for n in STATUS_KB_FIELDS]
        lines.append(f"Threads:\t{self.threads}")
        return "\n".join(lines) + "\n"


def _int_or(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def parse_status(text: str) -> Status:
    """Parse /proc/PID/status; unknown fields are kept when in kB, a cut-off line is ignored."""
    kv: dict[str, str] = {}
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            kv[k.strip()] = v.strip()
    if "Pid" not in kv or not kv["Pid"].isdigit():
        raise ValueError("status text has no (complete) Pid line")
    st = Status(kv.get("Name", ""), int(kv["Pid"]), _int_or(kv.get("PPid", "0"), 0),
                kv.get("State", ""), threads=_int_or(kv.get("Threads", "1"), 1))
    for n, v in kv.items():
        if v.endswith(" kB"):
            try:
                st.fields[n] = int(v[:-3])
            except ValueError:
                continue
    return st


# ---------------------------------------------------------------------------------------------
# /proc/meminfo and /proc/vmstat


def format_meminfo(values: dict[str, int]) -> str:
    return "".join(f"{k + ':':<16}{v:8d} kB\n" for k, v in values.items())


def parse_meminfo(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        kv = _parse_kb_field(line)
        if kv is not None:
            out[kv[0]] = kv[1]
    return out


def format_vmstat(values: dict[str, int]) -> str:
    return "".join(f"{k} {v}\n" for k, v in values.items())


def parse_vmstat(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in text.splitlines():
        toks = line.split()
        if len(toks) == 2:
            try:
                out[toks[0]] = int(toks[1])
            except ValueError:
                continue
    return out
