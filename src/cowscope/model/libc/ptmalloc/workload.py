"""Seeded random malloc workloads in the ops-file format, mixing every call the model covers."""

from __future__ import annotations

import random


def _size(rng: random.Random) -> int:
    """A request size: mostly tcache/fastbin sizes, some small/large-bin, some mmap-sized."""
    x = rng.random()
    if x < 0.45:
        return rng.randint(0, 128)
    if x < 0.68:
        return rng.randint(129, 1032)
    if x < 0.82:
        return rng.randint(1033, 16384)
    if x < 0.92:
        return rng.randint(16385, 131072)
    if x < 0.965:
        return rng.randint(131073, 1 << 21)
    return rng.choice([0, 1, 24, 25, 120, 121, 1032, 1033, 0x3f8, 0x400, 0x1fff8, 0x20000, 4096, 65536])


_MALLOPT = {
    1: [0, 8, 24, 64, 80, 128, 160, 200],          # M_MXFAST (200 is rejected)
    -1: [0, 4096, 65536, 131072, 1 << 20],          # M_TRIM_THRESHOLD
    -2: [0, 4096, 65536, 131072, 1 << 20],          # M_TOP_PAD
    -3: [4096, 65536, 131072, 524288, 1 << 20],     # M_MMAP_THRESHOLD
    -4: [0, 1, 4, 65536],                           # M_MMAP_MAX
    -6: [0, 0x41],                                  # M_PERTURB
}


def generate(seed: int, nops: int = 10000, tail_error: bool | None = None, rare: float = 0.002) -> str:
    """An ops file of nops operations (m c r f a t o s, and a corrupting tail for some seeds).

    `rare` is the share of malloc_trim / mallopt / foreign sbrk operations.
    """
    rng = random.Random(seed)
    lines = [f"# cowscope random workload seed={seed} ops={nops}" + (f" rare={rare}" if rare != 0.002 else "")]
    live: list[int] = []
    next_id = 1
    if tail_error is None:
        tail_error = seed % 3 == 2
    body = nops - (3 if tail_error else 0)
    i = 0
    while i < body:
        x = rng.random()
        if live and (x < 0.33 or len(live) > 400):
            j = rng.randrange(len(live))
            lines.append(f"f {live[j]}")
            live[j] = live[-1]
            live.pop()
        elif x < 0.66:
            lines.append(f"m {next_id} {_size(rng)}")
            live.append(next_id)
            next_id += 1
        elif x < 0.74:
            n = rng.choice([1, 1, 1, 2, 3, 4, 8, 16, 100, 0])
            lines.append(f"c {next_id} {n} {max(0, _size(rng) // max(n, 1))}")
            live.append(next_id)
            next_id += 1
        elif x < 0.88:
            if live and rng.random() < 0.9:
                j = rng.randrange(len(live))
                size = 0 if rng.random() < 0.05 else _size(rng)
                lines.append(f"r {live[j]} {size}")
                if size == 0:
                    live[j] = live[-1]
                    live.pop()
            else:
                lines.append(f"r {next_id} {_size(rng)}")
                live.append(next_id)
                next_id += 1
        elif x < 0.94:
            align = rng.choice([8, 16, 32, 64, 128, 256, 1024, 4096, 48, 100, 3000])
            lines.append(f"a {next_id} {align} {_size(rng)}")
            live.append(next_id)
            next_id += 1
        elif x < 1 - rare:
            # a burst of frees: lets chunks coalesce, reach top and trigger trimming
            for _ in range(min(len(live), rng.randint(1, 40))):
                if i >= body - 1:
                    break
                j = rng.randrange(len(live))
                lines.append(f"f {live[j]}")
                live[j] = live[-1]
                live.pop()
                i += 1
            continue
        else:
            y = rng.random()
            if y < 0.4:
                lines.append(f"t {rng.choice([0, 0, 4096, 65536, 1 << 20])}")
            elif y < 0.75:
                param = rng.choice(list(_MALLOPT))
                lines.append(f"o {param} {rng.choice(_MALLOPT[param])}")
            else:
                lines.append(f"s {rng.choice([24, 100, 4096, 4096, 65536])}")
        i += 1
    if tail_error:
        lines += _corrupting_tail(rng, live, next_id)
    return "\n".join(lines) + "\n"


def generate_threaded(seed: int, nops: int = 10000, max_threads: int = 20, tail_error: bool | None = None,
                      rare: float = 0.002) -> str:
    """An ops file whose calls come from up to `max_threads` threads besides the initial one:
    threads are created (by any running thread), end and are joined along the way (more of them
    than 8 x 2 CPUs at times, so arenas get reused), and any thread frees or reallocs any
    block (another arena's chunk into its own tcache)."""
    rng = random.Random(seed ^ 0x7468726561647300)
    lines = [f"# cowscope random threaded workload seed={seed} ops={nops} threads={max_threads}"]
    running, exited = [0], []
    live: list[int] = []
    next_id, next_thread = 1, 1
    if tail_error is None:
        tail_error = seed % 3 == 2
    body = nops - (3 if tail_error else 0)
    while len(lines) - 1 < body:
        who = rng.choice(running)
        prefix = f"{who} " if who else ""
        x = rng.random()
        if x < 0.02 and len(running) <= max_threads:
            lines.append(f"{prefix}p {next_thread}")
            running.append(next_thread)
            next_thread += 1
        elif x < 0.03 and who:
            lines.append(f"{prefix}e")
            running.remove(who)
            exited.append(who)
        elif x < 0.04 and exited:
            lines.append(f"{prefix}j {exited.pop(rng.randrange(len(exited)))}")
        else:
            step, next_id = _call(rng, live, next_id, rare)
            lines.extend(prefix + op for op in step)
    del lines[body + 1:]
    if tail_error:
        who = rng.choice(running)
        lines += [(f"{who} " if who else "") + op for op in _corrupting_tail(rng, live, next_id)]
    return "\n".join(lines) + "\n"


def _call(rng: random.Random, live: list[int], next_id: int, rare: float) -> tuple[list[str], int]:
    """One malloc-family call (or a short burst of frees) on random ids; (lines, next id)."""
    x = rng.random()
    if live and (x < 0.33 or len(live) > 400):
        j = rng.randrange(len(live))
        op = f"f {live[j]}"
        live[j] = live[-1]
        live.pop()
        return [op], next_id
    if x < 0.66:
        live.append(next_id)
        return [f"m {next_id} {_size(rng)}"], next_id + 1
    if x < 0.74:
        n = rng.choice([1, 1, 1, 2, 3, 4, 8, 16, 100, 0])
        live.append(next_id)
        return [f"c {next_id} {n} {max(0, _size(rng) // max(n, 1))}"], next_id + 1
    if x < 0.88:
        if live and rng.random() < 0.9:
            j = rng.randrange(len(live))
            size = 0 if rng.random() < 0.05 else _size(rng)
            op = f"r {live[j]} {size}"
            if size == 0:
                live[j] = live[-1]
                live.pop()
            return [op], next_id
        live.append(next_id)
        return [f"r {next_id} {_size(rng)}"], next_id + 1
    if x < 0.94:
        align = rng.choice([8, 16, 32, 64, 128, 256, 1024, 4096, 48, 100, 3000])
        live.append(next_id)
        return [f"a {next_id} {align} {_size(rng)}"], next_id + 1
    if x < 1 - rare:
        out = []
        for _ in range(min(len(live), rng.randint(1, 12))):
            j = rng.randrange(len(live))
            out.append(f"f {live[j]}")
            live[j] = live[-1]
            live.pop()
        return out, next_id
    y = rng.random()
    if y < 0.4:
        return [f"t {rng.choice([0, 0, 4096, 65536, 1 << 20])}"], next_id
    if y < 0.75:
        param = rng.choice(list(_MALLOPT))
        return [f"o {param} {rng.choice(_MALLOPT[param])}"], next_id
    return [f"s {rng.choice([24, 100, 4096, 4096, 65536])}"], next_id


def _corrupting_tail(rng: random.Random, live: list[int], next_id: int) -> list[str]:
    """A last malloc, then a corruption glibc detects: a double free, or a forged size or prev_size.

    Only corruptions whose outcome does not depend on absolute addresses (ASLR, safe-linking)."""
    lines = [f"m {next_id} {_size(rng)}"]
    victim = rng.choice(live + [next_id])
    kind = rng.randrange(4)
    if kind == 0:
        return lines + [f"x {victim}", f"x {victim}"]
    if kind == 1:
        return lines + [f"w {victim} 0 0x31", f"F {victim} 8"]
    if kind == 2:
        return lines + [f"w {victim} 0 0x1002", f"F {victim} 8"]
    return lines + [f"w {victim} -8 0x11", f"f {victim}"]
