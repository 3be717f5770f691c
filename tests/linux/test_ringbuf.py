"""Decoding trace_pipe_raw pages: formats read from the format file, every header type."""

from __future__ import annotations

import struct

from cowscope.linux.ringbuf import RB_MISSED_EVENTS, decode_page, parse_format

FAULT_FORMAT = """name: page_fault_user
ID: 190
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long address;\toffset:8;\tsize:8;\tsigned:0;
\tfield:unsigned long ip;\toffset:16;\tsize:8;\tsigned:0;
\tfield:unsigned long error_code;\toffset:24;\tsize:8;\tsigned:0;

print fmt: "address=%ps ip=%ps error_code=0x%lx"
"""
FORK_FORMAT = """name: sched_process_fork
ID: 300
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;
\tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;
\tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;
\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;
"""


def _fault(pid: int, addr: int, ip: int, code: int) -> bytes:
    return struct.pack("<HBBiQQQ", 190, 0, 0, pid, addr, ip, code)


def _fork(pid: int, child: int) -> bytes:
    body = struct.pack("<HBBiIiIi", 300, 0, 0, pid, (4 << 16) | 24, pid, (5 << 16) | 28, child)
    return body + b"abc\0" + b"abcd\0" + b"\0\0\0"


def _event(delta: int, data: bytes, big: bool = False) -> bytes:
    if big:  # type_len 0: the length word (including itself) follows the header
        return struct.pack("<II", delta << 5, len(data) + 4) + data
    assert len(data) % 4 == 0
    return struct.pack("<I", (delta << 5) | (len(data) // 4)) + data


def _page(ts: int, body: bytes, flags: int = 0) -> bytes:
    return struct.pack("<Qq", ts, len(body) | flags) + body + b"\0" * (4080 - len(body))


def test_parse_format_reads_offsets() -> None:
    fmt = parse_format(FAULT_FORMAT, "exceptions:page_fault_user")
    assert (fmt.id, fmt.names) == (190, ("address", "ip", "error_code"))
    data = _fault(7, 0x1000, 0x2000, 6)
    assert fmt.decode(data, 0) == {"address": 0x1000, "ip": 0x2000, "error_code": 6}


def test_decode_page_every_header_type() -> None:
    formats = {f.id: f for f in (parse_format(FAULT_FORMAT, "exceptions:page_fault_user"),
                                 parse_format(FORK_FORMAT, "sched:sched_process_fork"))}
    body = _event(10, _fault(5, 0xA000, 0xB000, 7))
    body += struct.pack("<II", (3 << 5) | 30, 2)  # time extend: (2 << 27) + 3
    body += _event(0, _fork(5, 6), big=True)
    body += struct.pack("<II", (1 << 5) | 29, 12) + b"\0" * 8  # a discarded event: length word counts itself
    body += _event(4, _fault(6, 0xC000, 0xD000, 4))
    recs, missed = decode_page(_page(1000, body, RB_MISSED_EVENTS), 1, formats)
    assert missed == 1
    assert [(r[0], r[1], r[2], r[3]) for r in recs] == [
        (1010, 1, 5, "exceptions:page_fault_user"),
        (1010 + (2 << 27) + 3, 1, 5, "sched:sched_process_fork"),
        (1010 + (2 << 27) + 3 + 4, 1, 6, "exceptions:page_fault_user"),
    ]
    assert recs[1][4] == {"parent_comm": "abc", "parent_pid": 5, "child_comm": "abcd", "child_pid": 6}
    assert recs[2][4]["error_code"] == 4


def test_unknown_event_ids_are_skipped_and_empty_page_is_empty() -> None:
    formats = {190: parse_format(FAULT_FORMAT, "exceptions:page_fault_user")}
    body = _event(1, struct.pack("<HBBi", 999, 0, 0, 1) + b"\0" * 8) + _event(1, _fault(1, 1, 2, 4))
    recs, missed = decode_page(_page(0, body), 0, formats)
    assert [r[4]["address"] for r in recs] == [1] and missed == 0
    assert decode_page(_page(0, b""), 0, formats) == ([], 0)
