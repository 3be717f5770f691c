"""The sampling loop: ticks at an interval, under the duty-cycle limit, until stopped."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from .sample import DutyCycle, Sample, Sampler

DEFAULT_DUTY = 0.2


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
