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
    """A scenario of `steps` random operations over a few processes, regions, files and mallocs.

    Each process uses only addresses it has (regions are inherited at fork, dropped at exec and
    when unmapped whole; a partial munmap leaves at most a 2-page hole, too small for a new
    guarded region), so placement differences between backends never decide what an op hits.
    """

    def scenario(m: Any) -> None:
        rng = random.Random(seed)
        files = [m.create_file(f"/data/r{seed}-{i}", data=b"".join(bytes([0x41 + i + j]) * PAGE
                                                                  for j in range(6))) for i in range(2)]
        procs = [m.spawn("P")]
        regions: dict[str, list[list[int]]] = {"P": []}  # process key -> [addr, npages]
        blocks: dict[str, list[int]] = {"P": []}  # live malloc blocks per process key
        for step in range(steps):
            live = [p for p in procs if p.alive]
            if not live:
                break
            p = rng.choice(live)
            mine = blocks.setdefault(p.key, [])
            have = regions.setdefault(p.key, [])
            op = rng.choices(("mmap", "write", "read", "fork", "exit", "madvise", "mprotect", "munmap",
                              "checkpoint", "malloc", "free", "mremap", "exec"),
                             weights=(3, 8, 4, 2, 1, 2, 1, 1, 2, 3, 2, 1, 1))[0]
            try:
                if op == "mmap" or not have:
                    n = rng.randint(1, 6)
                    kind = rng.random()
                    if kind < 0.15:
                        a = p.mmap(n * PAGE, shared=True)
                    elif kind < 0.3:
                        a = p.mmap(n * PAGE, file=rng.choice(files), shared=rng.random() < 0.5)
                    else:
                        a = p.mmap(n * PAGE)
                    have.append([a, n])
                    continue
                reg = rng.choice(have)
                a, n = reg
                i = rng.randrange(n)
                k = rng.randint(1, n - i)
                if op == "write":
                    p.fill(a + i * PAGE, k * PAGE, rng.randrange(256))
                elif op == "read":
                    p.read(a + i * PAGE, k * PAGE)
                elif op == "fork" and len(procs) < 6:
                    child = p.fork()
                    blocks[child.key] = list(mine)
                    regions[child.key] = [list(r) for r in have]
                    procs.append(child)
                elif op == "exit" and p is not procs[0]:
                    p.exit(step)
                elif op == "exec" and p is not procs[0]:
                    p.exec()
                    mine.clear()
                    have.clear()
                elif op == "madvise":
                    p.madvise(a + i * PAGE, k * PAGE, rng.choice(ADVICE))
                elif op == "mprotect":
                    p.mprotect(a + i * PAGE, k * PAGE, rng.choice(("r", "rw", "")))
                elif op == "munmap":
                    if rng.random() < 0.3:
                        p.munmap(a, n * PAGE)
                        have.remove(reg)
                    else:
                        p.munmap(a + i * PAGE, min(k, 2) * PAGE)
                elif op == "mremap":
                    new_n = rng.randint(1, 8)
                    reg[0] = p.mremap(a, n * PAGE, new_n * PAGE)
                    reg[1] = new_n
                elif op == "malloc":
                    size = rng.choice((24, 100, 1000, 5000, 70000, 200000))
                    ptr = p.malloc(size)
                    p.fill(ptr, min(size, 3 * PAGE), rng.randrange(256))
                    mine.append(ptr)
                elif op == "free" and mine:
                    p.free(mine.pop(rng.randrange(len(mine))))
                elif op == "checkpoint":
                    m.checkpoint(f"step {step}")
            except CowscopeError:
                pass  # logged by the tracer on both backends; the scenario goes on

    scenario.__name__ = f"random_{seed}"
    return scenario
