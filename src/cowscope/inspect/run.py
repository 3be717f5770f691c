"""The sampling loop: ticks at an interval, under the duty-cycle limit, until stopped."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from .figures import Sample
from .sample import Sampler

DEFAULT_DUTY = 0.2


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


def follow(sampler: Sampler, interval: float, duty: DutyCycle, count: int | None = None,
           stop: Callable[[], bool] = lambda: False) -> Iterator[Sample]:
    """Yield a Sample every `interval` seconds (a skipped one when the duty cycle forbids reading)."""
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
            time.sleep(min(left, 0.05))
        if time.monotonic() - next_tick > interval:
            next_tick = time.monotonic()  # fell behind: do not burst to catch up
