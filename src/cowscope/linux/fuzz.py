"""Random differential scenarios: seeded op sequences run on the model and the kernel, then compared.

A generated scenario only uses addresses it mapped (guarded regions), so every op is legal on both
backends or fails the same way; a difference is a model/kernel disagreement to look at.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from ..errors import CowscopeError

PAGE = 4096
ADVICE = ("dontneed", "dontfork", "dofork", "wipeonfork", "keeponfork", "free", "populate_read",
          "populate_write")


def random_scenario(seed: int, steps: int = 40) -> Callable[[Any], None]:
    """A scenario of `steps` random operations over a few processes and regions."""

    def scenario(m: Any) -> None:
        rng = random.Random(seed)
        procs = [m.spawn("P")]
        regions: list[tuple[int, int, bool]] = []  # (addr, npages, shared)
        for step in range(steps):
            live = [p for p in procs if p.alive]
            if not live:
                break
            p = rng.choice(live)
            op = rng.choices(("mmap", "write", "read", "fork", "exit", "madvise", "mprotect", "munmap",
                              "checkpoint"), weights=(3, 8, 4, 2, 1, 2, 1, 1, 2))[0]
            try:
                if op == "mmap" or not regions:
                    n = rng.randint(1, 6)
                    shared = rng.random() < 0.2
                    regions.append((procs[0].mmap(n * PAGE, shared=shared) if procs[0].alive
                                    else p.mmap(n * PAGE, shared=shared), n, shared))
                    continue
                a, n, _shared = rng.choice(regions)
                i = rng.randrange(n)
                k = rng.randint(1, n - i)
                if op == "write":
                    p.fill(a + i * PAGE, k * PAGE, rng.randrange(256))
                elif op == "read":
                    p.read(a + i * PAGE, k * PAGE)
                elif op == "fork" and len(procs) < 6:
                    procs.append(p.fork())
                elif op == "exit" and p is not procs[0]:
                    p.exit(step)
                elif op == "madvise":
                    p.madvise(a + i * PAGE, k * PAGE, rng.choice(ADVICE))
                elif op == "mprotect":
                    p.mprotect(a + i * PAGE, k * PAGE, rng.choice(("r", "rw", "")))
                elif op == "munmap":
                    p.munmap(a + i * PAGE, k * PAGE)
                elif op == "checkpoint":
                    m.checkpoint(f"step {step}")
            except CowscopeError:
                pass  # logged by the tracer on both backends; the scenario goes on

    scenario.__name__ = f"random_{seed}"
    return scenario
