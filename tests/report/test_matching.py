"""Pairing the model's and the kernel's processes and mappings (report/matching.py)."""

from __future__ import annotations

from cowscope.observe.pages import PRIVATE
from cowscope.report.matching import match_mappings, match_processes

from .helpers import mapping, process, states

A = 0x7F0000000000


def _m(start: int, n: int, path: str = "", perms: str = "rw-p"):
    return mapping(start, states([PRIVATE] * n), perms=perms, path=path)


def test_processes_pair_by_pid_else_by_name_in_pid_order():
    model = [process(1000, 1, "server", []), process(1001, 1000, "worker", []), process(1002, 1000, "worker", [])]
    same = [process(1001, 1000, "worker", []), process(1000, 1, "server", [])]
    assert match_processes(model[:2], same) == [(0, 1), (1, 0)]
    kernel = [process(77, 70, "worker", []), process(70, 1, "server", []), process(75, 70, "worker", [])]
    assert sorted(match_processes(model, kernel)) == [(0, 1), (1, 2), (2, 0)]


def test_mappings_pair_by_known_address_then_start_then_file_then_nth():
    a = [_m(A, 4), _m(A + 0x10000, 2, "/lib/x.so", "r--p"), _m(A + 0x20000, 3), _m(0x7FFF0000, 4, "[stack]")]
    b = [_m(0x5000000, 10), _m(0x6000000, 2, "/lib/x.so", "r--p"), _m(0x7000000, 3), _m(0x7FFE0000, 6, "[stack]")]
    pairs = match_mappings(a, b, {A + 4096: 0x5000000 + 5 * 4096})
    assert pairs[0] == (0, 4)      # aligned on the known address: page 1 of a is page 5 of b
    assert pairs[1] == (1, 0)      # the same file, perms and offset
    assert pairs[2] == (2, 0)      # the only other anon rw-p mapping left: nth anon mapping, at the start
    assert pairs[3] == (3, 2)      # [stack] aligned at its end
    assert match_mappings(a, b)[0] == (0, 0)  # without the address: the first anon mapping, at the start
