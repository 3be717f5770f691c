"""Random differential scenarios: seeded op sequences run on the model and the kernel, then compared.

A generated scenario only uses addresses it mapped (guarded regions), so every op is legal on both
backends or fails the same way; a difference is a model/kernel disagreement to look at.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ..errors import CowscopeError
from .process import TracedProcess
from .trace import TracedMachine

PAGE = 4096
ADVICE = ("dontneed", "dontfork", "dofork", "wipeonfork", "keeponfork", "free", "populate_read",
          "populate_write")


#: The operations a random scenario draws from, with their weights.
OPS = ("mmap", "write", "read", "fork", "exit", "madvise", "mprotect", "munmap", "checkpoint", "malloc", "free",
       "mremap", "exec")
WEIGHTS = (3, 8, 4, 2, 1, 2, 1, 1, 2, 3, 2, 1, 1)
MAX_PROCS = 6


def random_scenario(seed: int, steps: int = 40) -> Callable[[TracedMachine], None]:
    """A scenario of `steps` random operations over a few processes, regions, files and mallocs.

    Each process uses only addresses it has (regions are inherited at fork, dropped at exec and
    when unmapped whole; a partial munmap leaves at most a 2-page hole, too small for a new
    guarded region), so placement differences between backends never decide what an op hits.
    """

    def scenario(m: TracedMachine) -> None:
        run = _Run(m, seed)
        for step in range(steps):
            if not run.step(step):
                break

    scenario.__name__ = f"random_{seed}"
    return scenario


class _Run:
    """One random scenario's state: its generator, files, processes, their regions and blocks."""

    def __init__(self, m: TracedMachine, seed: int) -> None:
        self.m = m
        self.rng = random.Random(seed)
        self.files = [m.create_file(f"/data/r{seed}-{i}", data=b"".join(bytes([0x41 + i + j]) * PAGE
                                                                       for j in range(6))) for i in range(2)]
        self.procs = [m.spawn("P")]
        self.regions: dict[str, list[list[int]]] = {"P": []}  # process key -> [addr, npages]
        self.blocks: dict[str, list[int]] = {"P": []}  # live malloc blocks per process key

    def step(self, step: int) -> bool:
        """One random operation by a random live process (False when none is left)."""
        live = [p for p in self.procs if p.alive]
        if not live:
            return False
        p = self.rng.choice(live)
        mine = self.blocks.setdefault(p.key, [])
        have = self.regions.setdefault(p.key, [])
        op = self.rng.choices(OPS, weights=WEIGHTS)[0]
        try:
            if op == "mmap" or not have:
                have.append(self._map(p))
            else:
                self._on_region(op, p, step, have, mine)
        except CowscopeError:
            pass  # logged by the tracer on both backends; the scenario goes on
        return True

    def _map(self, p: TracedProcess) -> list[int]:
        """A new region of 1-6 pages: shared anon, a file (private or shared), or private anon."""
        rng = self.rng
        n = rng.randint(1, 6)
        kind = rng.random()
        if kind < 0.15:
            return [p.mmap(n * PAGE, shared=True), n]
        if kind < 0.3:
            return [p.mmap(n * PAGE, file=rng.choice(self.files), shared=rng.random() < 0.5), n]
        return [p.mmap(n * PAGE), n]

    def _on_region(self, op: str, p: TracedProcess, step: int, have: list[list[int]], mine: list[int]) -> None:
        """`op` on a random page range of one of p's regions (or on p itself)."""
        rng = self.rng
        reg = rng.choice(have)
        a, n = reg
        i = rng.randrange(n)
        k = rng.randint(1, n - i)
        if op in ("write", "read", "madvise", "mprotect", "munmap", "mremap"):
            self._memory_op(op, p, reg, a + i * PAGE, k, have)
        elif op == "fork" and len(self.procs) < MAX_PROCS:
            child = p.fork()
            self.blocks[child.key] = list(mine)
            self.regions[child.key] = [list(r) for r in have]
            self.procs.append(child)
        elif op == "exit" and p is not self.procs[0]:
            p.exit(step)
        elif op == "exec" and p is not self.procs[0]:
            p.exec()
            mine.clear()
            have.clear()
        elif op == "malloc":
            size = rng.choice((24, 100, 1000, 5000, 70000, 200000))
            ptr = p.malloc(size)
            p.fill(ptr, min(size, 3 * PAGE), rng.randrange(256))
            mine.append(ptr)
        elif op == "free" and mine:
            p.free(mine.pop(rng.randrange(len(mine))))
        elif op == "checkpoint":
            self.m.checkpoint(f"step {step}")

    def _memory_op(self, op: str, p: TracedProcess, reg: list[int], at: int, k: int, have: list[list[int]]) -> None:
        """`op` on k pages from `at` inside region `reg` ([addr, npages])."""
        rng = self.rng
        a, n = reg
        if op == "write":
            p.fill(at, k * PAGE, rng.randrange(256))
        elif op == "read":
            p.read(at, k * PAGE)
        elif op == "madvise":
            p.madvise(at, k * PAGE, rng.choice(ADVICE))
        elif op == "mprotect":
            p.mprotect(at, k * PAGE, rng.choice(("r", "rw", "")))
        elif op == "munmap":
            if rng.random() < 0.3:
                p.munmap(a, n * PAGE)
                have.remove(reg)
            else:
                p.munmap(at, min(k, 2) * PAGE)
        elif op == "mremap":
            new_n = rng.randint(1, 8)
            reg[0] = p.mremap(a, n * PAGE, new_n * PAGE)
            reg[1] = new_n
