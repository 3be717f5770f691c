"""The kernel event source: a private tracefs session plus the classifier, as a growing event log.

`KernelEvents(pids)` traces those processes and every child they create from now on, and keeps
what it has classified as `Event` records (`cowscope.observe.events`): the same read-only sequence
interface as the model's log (`len`, indexing, `since`, `filter`, `counts`). `sync()` reads what
the kernel has buffered so far; call it when the traced processes are quiescent to see all their
events. Each process's `/proc/PID/maps` is kept (refreshed on fork, exec and whenever an address
falls outside what is known) to tell MAP_SHARED writes from reuses and to attribute events later.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import replace

from ..errors import ProcessGone
from ..observe import procfs
from ..observe.events import Event
from ..observe.records import MapsEntry
from .kevents import FILTERS, TRACEPOINTS, WINDOW_NS, Classifier
from .tracefs import Losses, TraceSession


class MapsCache:
    """The last known /proc/PID/maps of every traced process (kept after the process exits)."""

    def __init__(self) -> None:
        self.maps: dict[int, list[MapsEntry]] = {}
        self._starts: dict[int, list[int]] = {}
        self.tgids: dict[int, int] = {}
        self.gone: set[int] = set()  # processes found gone: their last maps stay, no re-reading

    def refresh(self, pid: int) -> bool:
        """Re-read a live process's maps; False when it is gone (the old snapshot stays)."""
        if pid in self.gone:
            return False
        try:
            entries = procfs.read_maps(pid)
        except (ProcessGone, OSError):
            self.gone.add(pid)
            return False
        self.maps[pid] = entries
        self._starts[pid] = [e.start for e in entries]
        return True

    def lookup(self, pid: int, va: int, refresh: bool = True) -> MapsEntry | None:
        """The mapping holding va in pid (re-reading maps once when it is not known)."""
        for attempt in (0, 1):
            starts = self._starts.get(pid)
            if starts:
                i = bisect.bisect_right(starts, va) - 1
                if i >= 0 and va < self.maps[pid][i].end:
                    return self.maps[pid][i]
            if attempt == 0 and not (refresh and self.refresh(pid)):
                return None
        return None

    def inherit(self, child: int, parent: int) -> None:
        """A forked child's maps: re-read, or its parent's as they were at the fork if it is gone."""
        if not self.refresh(child) and parent in self.maps:
            self.maps[child] = self.maps[parent]
            self._starts[child] = self._starts[parent]

    def is_shared(self, pid: int, va: int) -> bool | None:
        """Whether va lies in a MAP_SHARED mapping of pid; None when the mapping is unknown."""
        e = self.lookup(pid, va)
        return None if e is None else e.shared

    def tgid_of(self, tid: int) -> int:
        """The process a thread belongs to (from /proc while it lives; else the tid)."""
        if tid not in self.tgids:
            try:
                status = procfs.read_bytes(tid, "status")
                line = next(x for x in status.split(b"\n") if x.startswith(b"Tgid:"))
                self.tgids[tid] = int(line.split()[1])
            except (ProcessGone, OSError, StopIteration, ValueError):
                self.tgids[tid] = tid
        return self.tgids[tid]


class KernelEvents:
    """The traced processes' copy-on-write decisions, classified as they are read."""

    def __init__(self, pids: Iterable[int] = (), buffer_kb: int = 16384, follow_children: bool = True) -> None:
        self.maps = MapsCache()
        pids = list(pids)
        for pid in pids:
            self.maps.refresh(pid)
        self.classifier = Classifier(self.maps.tgid_of, self.maps.is_shared)
        self._events: list[Event] = []
        self.session = TraceSession(TRACEPOINTS, pids, follow_children, buffer_kb, dict(FILTERS))
        self.session.start()

    def add_pids(self, pids: Iterable[int]) -> None:
        """Trace these processes too (and their children)."""
        pids = list(pids)
        for pid in pids:
            self.maps.refresh(pid)
        self.session.add_pids(pids)

    def sync(self, final: bool = False, quiescent: bool = False) -> list[Event]:
        """Read and classify everything the kernel has buffered; the new events. `quiescent`: the
        traced processes are stopped or waiting, so every fault seen so far is complete."""
        if final:
            self.session.stop()
        else:
            self.session.poll()
        records = self.session.drain()
        self.classifier.seq = len(self._events)
        for rec in records:
            name, fields = rec[3], rec[4]
            if name == "sched:sched_process_fork":
                self.maps.inherit(fields["child_pid"], self.maps.tgid_of(rec[2]))
            elif name == "sched:sched_process_exec":
                self.maps.refresh(rec[2])
        new = self.classifier.feed(records)
        if final or quiescent:
            new += self.classifier.flush()
        else:
            new += self.classifier.flush(before_ns=time.monotonic_ns() - WINDOW_NS)
        new.sort(key=lambda e: e.time_ns or 0)  # windows close out of order; seq follows time
        base = len(self._events)
        new = [e if e.seq == base + i else replace(e, seq=base + i) for i, e in enumerate(new)]
        self._events.extend(new)
        return new

    def close(self) -> list[Event]:
        """Stop tracing, classify the rest, remove the tracefs instance; the last events."""
        try:
            return self.sync(final=True)
        finally:
            self.session.close()

    def losses(self) -> Losses:
        """Events the kernel could not keep (see `TraceSession.losses`)."""
        return self.session.losses()

    # --- the log interface the model's EventLog has ---------------------------------------------

    def __len__(self) -> int:
        return len(self._events)

    def __getitem__(self, i: int) -> Event:
        return self._events[i]

    def __iter__(self) -> Iterator[Event]:
        return iter(list(self._events))

    def since(self, seq: int) -> Iterator[Event]:
        """Events with seq >= `seq`, in order."""
        return iter(self._events[seq:])

    def filter(self, kind: str | None = None, pid: int | None = None, since: int = 0) -> list[Event]:
        """Events matching a kind and/or pid."""
        return [e for e in self._events[since:]
                if (kind is None or e.kind == kind) and (pid is None or e.pid == pid)]

    def counts(self, since: int = 0, pid: int | None = None) -> Counter[str]:
        """How many events of each kind (optionally of one pid) from seq `since` on."""
        return Counter(e.kind for e in self._events[since:] if pid is None or e.pid == pid)

    def __enter__(self) -> KernelEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()
