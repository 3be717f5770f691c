"""The event trace: every fault and process event as a record, stored column-wise.

Single events append to Python lists; bulk paths (a fill over 262,144 pages) append numpy
columns, so the trace stays cheap. Reading it yields immutable `Event` records
(`cowscope.observe.events`: the vocabulary shared with the real-kernel backend).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import numpy as np

from ..observe.events import KIND_CODE, KINDS, Event

__all__ = ["DTYPES", "KINDS", "KIND_CODE", "Event", "EventLog"]

#: column types: pid, kind, address, old pfn, new pfn (pfns < 2**32: RAM up to 16 TiB)
DTYPES = (np.int32, np.int8, np.uint64, np.uint32, np.uint32)  # an address is an unsigned long
#: a flushed segment shorter than this absorbs the next flush (polling readers flush often)
SMALL_SEGMENT = 4096


class EventLog:
    """Append-only columnar event log; a read-only sequence of Event."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._cols: list[tuple[np.ndarray, ...]] = []  # flushed segments: pid, kind, addr, old, new
        self._pending: list[tuple[int, int, int, int, int]] = []
        self._details: dict[int, str] = {}
        self._n = 0
        self._cache: tuple[np.ndarray, ...] | None = None

    def add(self, pid: int, kind: str, address: int, old_pfn: int = 0, new_pfn: int = 0,
            detail: str = "") -> None:
        """Record one event."""
        if not self.enabled:
            return
        if detail:
            self._details[self._n] = detail
        self._pending.append((pid, KIND_CODE[kind], address & 0xFFFFFFFFFFFFFFFF, old_pfn, new_pfn))
        self._n += 1
        self._cache = None

    def add_bulk(self, pid: int, kind: str, addresses: np.ndarray, old_pfns: np.ndarray,
                 new_pfns: np.ndarray) -> None:
        """Record one event per page of a vectorised fault path."""
        n = len(addresses)
        if not self.enabled or not n:
            return
        self._flush()
        self._cols.append(tuple(np.asarray(col).astype(dt, copy=False) for col, dt in zip(
            (np.full(n, pid), np.full(n, KIND_CODE[kind]), addresses, old_pfns, new_pfns), DTYPES)))
        self._n += n
        self._cache = None

    def _flush(self) -> None:
        if self._pending:
            seg = tuple(np.array(col, dtype=dt) for col, dt in zip(zip(*self._pending), DTYPES))
            if self._cols and len(self._cols[-1][0]) < SMALL_SEGMENT:  # frequent small flushes
                seg = tuple(np.concatenate((a, b)) for a, b in zip(self._cols.pop(), seg))
            self._cols.append(seg)
            self._pending = []

    def _columns(self) -> tuple[np.ndarray, ...]:
        if self._cache is None:
            self._flush()
            if not self._cols:
                self._cache = tuple(np.zeros(0, dt) for dt in DTYPES)
            else:
                self._cache = tuple(np.concatenate([c[i] for c in self._cols]) for i in range(5))
                self._cols = [self._cache]
        return self._cache

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int) -> Event:
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        pid, kind, addr, old, new = (int(c[i]) for c in self._columns())
        return Event(i, pid, KINDS[kind], addr, old, new, self._details.get(i, ""))

    def __iter__(self) -> Iterator[Event]:
        return self.since(0)

    def since(self, seq: int) -> Iterator[Event]:
        """Events with seq >= `seq`, in order. Only the segments at or after `seq` are read (none
        is concatenated), so polling for new events after every operation stays linear."""
        self._flush()
        seq = max(seq, 0)
        tail: list[tuple[int, tuple[np.ndarray, ...]]] = []  # (first seq, columns), newest first
        start = self._n
        for cols in reversed(self._cols):
            if start <= seq:
                break
            start -= len(cols[0])
            tail.append((start, cols))
        for first, cols in reversed(tail):
            lo = max(seq - first, 0)
            lists = [c[lo:].tolist() for c in cols]
            for k, (pid, kind, addr, old, new) in enumerate(zip(*lists)):
                i = first + lo + k
                yield Event(i, pid, KINDS[kind], addr, old, new, self._details.get(i, ""))

    def counts(self, since: int = 0, pid: int | None = None) -> Counter[str]:
        """How many events of each kind (optionally of one pid) from seq `since` on."""
        pids, kinds = self._columns()[0][since:], self._columns()[1][since:]
        if pid is not None:
            kinds = kinds[pids == pid]
        values, n = np.unique(kinds, return_counts=True)
        return Counter({KINDS[int(v)]: int(c) for v, c in zip(values, n)})

    def filter(self, kind: str | None = None, pid: int | None = None, since: int = 0) -> list[Event]:
        """Events matching a kind and/or pid."""
        return [e for e in self.since(since)
                if (kind is None or e.kind == kind) and (pid is None or e.pid == pid)]
