"""Decoding the kernel's trace ring buffer: the binary pages of `per_cpu/cpuN/trace_pipe_raw`.

A page (sub-buffer) is a 16-byte header (u64 timestamp, u64 commit: data size in the low bits,
RB_MISSED_EVENTS / RB_MISSED_STORED in bits 31 / 30) and then events, each behind a 32-bit
header `type_len:5 time_delta:27` (Documentation/trace/ring-buffer-design.rst; the layout is also
printed by tracefs `events/header_page` and `events/header_event`). Event payloads are laid out
as their `events/GROUP/NAME/format` file says: field offsets and sizes are read, never assumed.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

_PAGE_HEADER = struct.Struct("<Qq")
_U32 = struct.Struct("<I")
_COMMON = struct.Struct("<Hxxi")  # common_type, common_flags, common_preempt_count, common_pid
COMMIT_MASK = (1 << 27) - 1
RB_MISSED_EVENTS = 1 << 31
RB_MISSED_STORED = 1 << 30
TYPE_PADDING, TYPE_TIME_EXTEND, TYPE_TIME_STAMP = 29, 30, 31
TS_MSB = 0xF << 59

_FIELD = re.compile(r"field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<sgn>\d+);")
_CODES = {(1, 0): "B", (1, 1): "b", (2, 0): "H", (2, 1): "h", (4, 0): "I", (4, 1): "i", (8, 0): "Q", (8, 1): "q"}


@dataclass
class EventFormat:
    """One tracepoint's binary layout: its id, name and the fields after the common header."""

    id: int
    name: str
    names: tuple[str, ...]
    struct: struct.Struct
    data_locs: tuple[str, ...]  # __data_loc fields: u32 (len << 16 | offset) -> bytes in the record

    def decode(self, data: bytes | memoryview, base: int) -> dict[str, int | str]:
        """The fields of one record starting at `base` in data."""
        values = dict(zip(self.names, self.struct.unpack_from(data, base)))
        for name in self.data_locs:
            loc = int(values[name])
            start, length = base + (loc & 0xFFFF), loc >> 16
            values[name] = bytes(data[start:start + length]).split(b"\0", 1)[0].decode("utf-8", "replace")
        return values


def parse_format(text: str, name: str) -> EventFormat:
    """Parse an `events/GROUP/NAME/format` file."""
    m = re.search(r"^ID:\s*(\d+)", text, re.M)
    if not m:
        raise ValueError(f"no ID in the format of {name}")
    fields: list[tuple[int, str, str]] = []
    locs = []
    for f in _FIELD.finditer(text):
        decl, off, size, sgn = f.group("decl").strip(), int(f.group("off")), int(f.group("size")), int(f.group("sgn"))
        fname = re.sub(r"\[.*\]$", "", decl.split()[-1])
        if fname.startswith("common_"):
            continue
        if decl.startswith("__data_loc"):
            fields.append((off, fname, "I"))
            locs.append(fname)
        elif (size, sgn) in _CODES and "[" not in decl.split()[-1]:
            fields.append((off, fname, _CODES[(size, sgn)]))
    fields.sort()
    fmt, pos = "<", 0
    for off, _fname, code in fields:
        fmt += "x" * (off - pos) + code
        pos = off + struct.calcsize("<" + code)
    return EventFormat(int(m.group(1)), name, tuple(f[1] for f in fields), struct.Struct(fmt), tuple(locs))


def decode_page(data: bytes, cpu: int, formats: dict[int, EventFormat]) -> tuple[list[tuple], int]:
    """One raw page -> ([(time_ns, cpu, pid, event name, fields)], 1 if events were lost before it)."""
    if len(data) < _PAGE_HEADER.size:
        return [], 0
    ts, commit = _PAGE_HEADER.unpack_from(data, 0)
    missed = 1 if commit & (RB_MISSED_EVENTS | RB_MISSED_STORED) else 0
    end = min(len(data), _PAGE_HEADER.size + (commit & COMMIT_MASK))
    out: list[tuple] = []
    off = _PAGE_HEADER.size
    while off + 4 <= end:
        (head,) = _U32.unpack_from(data, off)
        type_len, delta = head & 0x1F, head >> 5
        if type_len == TYPE_PADDING:
            if delta == 0:
                break  # the rest of the page is empty
            off += 4 + _U32.unpack_from(data, off + 4)[0]
            continue
        if type_len == TYPE_TIME_EXTEND:
            ts += (_U32.unpack_from(data, off + 4)[0] << 27) + delta
            off += 8
            continue
        if type_len == TYPE_TIME_STAMP:
            abs_ts = (_U32.unpack_from(data, off + 4)[0] << 27) | delta
            ts = _fix_abs_ts(abs_ts, ts)
            off += 8
            continue
        if type_len == 0:
            length = _U32.unpack_from(data, off + 4)[0] - 4
            body = off + 8
        else:
            length = type_len * 4
            body = off + 4
        ts += delta
        off = body + length
        etype, pid = _COMMON.unpack_from(data, body)
        fmt = formats.get(etype)
        if fmt is not None:
            out.append((ts, cpu, pid, fmt.name, fmt.decode(data, body)))
    return out, missed


def _fix_abs_ts(abs_ts: int, prev: int) -> int:
    """An absolute timestamp keeps only 59 bits: take the top bits from the running clock."""
    if prev & TS_MSB:
        abs_ts |= prev & TS_MSB
        if abs_ts < prev:
            abs_ts += 1 << 59
    return abs_ts
