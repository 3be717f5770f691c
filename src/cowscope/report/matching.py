"""Pairing two series of the same run (the model's and the kernel's): processes, then mappings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..observe.records import PAGE_SIZE
from ..observe.snapshot import MappingView, ProcessView


def match_processes(a: Sequence[ProcessView], b: Sequence[ProcessView]) -> list[tuple[int, int]]:
    """Pair processes of two backends: same pid first, then by name in pid order."""
    pairs: list[tuple[int, int]] = []
    bpids = {p.pid: j for j, p in enumerate(b)}
    used: set[int] = set()
    if all(p.pid in bpids for p in a):
        return [(i, bpids[p.pid]) for i, p in enumerate(a)]
    by_name: dict[str, list[int]] = {}
    for j in sorted(range(len(b)), key=lambda j: b[j].pid):
        by_name.setdefault(b[j].name, []).append(j)
    for i in sorted(range(len(a)), key=lambda i: a[i].pid):
        cands = [j for j in by_name.get(a[i].name, []) if j not in used]
        if cands:
            used.add(cands[0])
            pairs.append((i, cands[0]))
    return pairs


def _containing(ms: Sequence[MappingView], addr: int, used: set[int] | dict[int, Any]) -> int | None:
    return next((j for j, m in enumerate(ms) if j not in used and m.vma.start <= addr < m.vma.end), None)


class _Pairs:
    """Mapping pairs made so far: {index in a: (index in b, shift)}, and the indices of b taken."""

    def __init__(self) -> None:
        self.out: dict[int, tuple[int, int]] = {}
        self.used: set[int] = set()

    def pair(self, i: int, j: int, shift: int) -> None:
        self.out[i] = (j, shift)
        self.used.add(j)

    def open(self, i: int, j: int) -> bool:
        """Neither a's mapping i nor b's mapping j is paired yet."""
        return i not in self.out and j not in self.used


def _by_known_address(pairs: _Pairs, a: Sequence[MappingView], b: Sequence[MappingView],
                      address_map: dict[int, int]) -> None:
    """Mappings holding the same object on both sides, aligned on its address."""
    for am, km in sorted(address_map.items()):
        i = _containing(a, am, pairs.out)
        j = _containing(b, km, pairs.used)
        if i is not None and j is not None and a[i].vma.perms == b[j].vma.perms:
            pairs.pair(i, j, (km - b[j].vma.start) // PAGE_SIZE - (am - a[i].vma.start) // PAGE_SIZE)


def _by_key(pairs: _Pairs, a: Sequence[MappingView], b: Sequence[MappingView],
            key: Callable[[MappingView], tuple[Any, ...]], only: Callable[[MappingView], bool]) -> None:
    """Mappings equal in `key` (among those `only` admits), aligned at the start."""
    index = {key(m): j for j, m in enumerate(b) if only(m)}
    for i, m in enumerate(a):
        j = index.get(key(m))
        if only(m) and j is not None and pairs.open(i, j):
            pairs.pair(i, j, 0)


def _by_order(pairs: _Pairs, a: Sequence[MappingView], b: Sequence[MappingView]) -> None:
    """The n-th mapping with the same path (or anon) and perms, aligned at the start ([stack]: at the end)."""
    for i, m in enumerate(a):
        if i in pairs.out:
            continue
        key = (m.vma.path, m.vma.perms)
        nth = sum(1 for k, n in enumerate(a) if k < i and (n.vma.path, n.vma.perms) == key)
        same = [j for j, n in enumerate(b) if (n.vma.path, n.vma.perms) == key]
        if nth < len(same) and same[nth] not in pairs.used:
            j = same[nth]
            pairs.pair(i, j, b[j].vma.npages - m.vma.npages if m.vma.path == "[stack]" else 0)


def match_mappings(a: Sequence[MappingView], b: Sequence[MappingView],
                   address_map: dict[int, int] | None = None) -> dict[int, tuple[int, int]]:
    """Pair mappings of two backends: {index in a: (index in b, shift)}, b's page = a's page + shift.

    In order: mappings holding addresses the caller knows on both sides (`address_map`, e.g. a
    scenario's mmap results), aligned on those addresses; the same start, path and perms; file
    mappings with the same path, perms and file offset; then the n-th mapping with the same path
    (or anon) and perms in address order, aligned at the start ([stack]: at the end).
    """
    pairs = _Pairs()
    _by_known_address(pairs, a, b, address_map or {})
    _by_key(pairs, a, b, lambda m: (m.vma.start, m.vma.path, m.vma.perms), lambda m: True)
    _by_key(pairs, a, b, lambda m: (m.vma.path, m.vma.perms, m.vma.offset), lambda m: m.vma.path.startswith("/"))
    _by_order(pairs, a, b)
    return pairs.out
