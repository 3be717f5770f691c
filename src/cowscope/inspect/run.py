"""The sampling loop: ticks at an interval, under the duty-cycle limit, until stopped."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from .figures import Sample
from .sample import Sampler
from .tree import has_children


class DutyCycle:
    """Keeps the inspector's own /proc reading under a fraction of wall-clock time."""

    def __init__(self, limit: float) -> None:
        if not 0 < limit <= 1:
            raise ValueError(f"duty cycle must be in (0, 1], got {limit}")
        self.limit = limit
        self.next_ok = 0.0
        self.skipped = 0

    def allow(self, now: float) -> bool:
        """True if a sample may start at `now` (monotonic seconds)."""
        return now >= self.next_ok

    def record(self, start: float, duration: float) -> None:
        """A sample started at `start` took `duration`: the next may start after duration/limit."""
        self.next_ok = start + duration / self.limit

    def skip_reason(self, now: float) -> str:
        """Text for a skipped tick."""
        self.skipped += 1
        return (f"sample skipped: the last read took long enough that sampling now would exceed the "
                f"{self.limit:.0%} duty-cycle limit (next in {max(self.next_ok - now, 0):.2f}s)")


class ForkWatch:
    """Until a root first forks: its pages read again and again (as often as the duty cycle allows),
    so the first child's reference is the parent just before the fork ("fork" history) and the
    parent's resident memory at the fork is known, not only at the first sample.

    `poll()` is called between samples (every IDLE seconds) until `forked`.
    """

    IDLE = 0.02

    def __init__(self, sampler: Sampler, duty: DutyCycle) -> None:
        self.sampler = sampler
        self.duty = duty
        self.forked = False
        self.rss_kb: int | None = None     # the roots' resident memory at their last read before the fork
        self.age_s: float | None = None    # how long before the fork was seen that read was
        self._read_at = 0.0

    def poll(self) -> None:
        """Look for a child; without one, read the roots again if the duty cycle allows."""
        if self.forked:
            return
        now = time.monotonic()
        if any(has_children(pid) for pid in self.sampler.roots):
            self.forked = True
            if self.rss_kb is not None:
                self.age_s = now - self._read_at
            return
        if self.duty.allow(now):
            t0 = time.perf_counter()
            rss = self.sampler.observe_roots()
            self.duty.record(now, time.perf_counter() - t0)
            if rss is not None:
                self.rss_kb, self._read_at = rss, time.monotonic()


def follow(sampler: Sampler, interval: float, duty: DutyCycle, count: int | None = None,
           stop: Callable[[], bool] = lambda: False, idle: Callable[[], None] | None = None) -> Iterator[Sample]:
    """Yield a Sample every `interval` seconds (a skipped one when the duty cycle forbids reading);
    `idle` is called between them, every 20 ms."""
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval}")
    next_tick = time.monotonic()
    n = 0
    while not stop():
        now = time.monotonic()
        if duty.allow(now):
            s = sampler.sample()
            duty.record(now, s.duration_s)
        else:
            s = Sample(sampler.seq, time.time(), sampler.mode, skipped=duty.skip_reason(now))
            sampler.seq += 1
        yield s
        n += 1
        if count is not None and n >= count:
            return
        next_tick += interval
        while not stop():
            left = next_tick - time.monotonic()
            if left <= 0:
                break
            if idle is not None:
                idle()
            time.sleep(min(left, ForkWatch.IDLE if idle is not None else 0.05))
        if time.monotonic() - next_tick > interval:
            next_tick = time.monotonic()  # fell behind: do not burst to catch up
