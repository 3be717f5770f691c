"""Model malloc+free throughput on the flat host vs the real glibc's, same workload, same run.

    .venv/bin/python benchmarks/bench_malloc.py [--ops N] [--seed S] [--profile] [--machine-ops N]

The workload is a seeded mix of malloc and free (sizes: mostly tcache/fastbin classes, some
small/large-bin sizes, a few mmap-sized), with the live set bounded; it ends by freeing
everything. The model runs the calls directly (no replay formatting); glibc runs the same ops
in the native harness's --bench mode (timed in C, output suppressed). Both sides are timed in
process CPU time, so other load on the machine distorts the figures less.

Then `cowscope malloc replay --machine` (ptmalloc in a full model process: page tables, faults,
one comment line of events per operation) on a generated workload of N and 4N operations: the
time per operation must stay flat (it was quadratic: the event log was re-read after every op).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import tempfile
import time
from pathlib import Path


def workload(seed: int, nops: int) -> list[tuple[str, int, int]]:
    """(kind, id, size) tuples: 'm' malloc, 'f' free; every allocation freed by the end."""
    rng = random.Random(seed)
    ops: list[tuple[str, int, int]] = []
    live: list[int] = []
    nid = 0
    while len(ops) + len(live) < nops:
        if live and (rng.random() < 0.5 or len(live) > 1000):
            j = rng.randrange(len(live))
            ops.append(("f", live[j], 0))
            live[j] = live[-1]
            live.pop()
        else:
            x = rng.random()
            if x < 0.60:
                size = rng.randint(1, 128)
            elif x < 0.85:
                size = rng.randint(129, 1024)
            elif x < 0.98:
                size = rng.randint(1025, 16384)
            else:
                size = rng.randint(16385, 262144)
            ops.append(("m", nid, size))
            live.append(nid)
            nid += 1
    ops += [("f", i, 0) for i in live]
    return ops


def run_model(ops: list[tuple[str, int, int]]) -> float:
    """Seconds the model takes for ops on a fresh flat host."""
    from cowscope.model.libc.flat import FlatHost
    from cowscope.model.libc.ptmalloc import PtMalloc

    a = PtMalloc(FlatHost())
    malloc, free = a.malloc, a.free
    ptrs: dict[int, int] = {}
    t = time.process_time()
    for kind, i, size in ops:
        if kind == "m":
            ptrs[i] = malloc(size)
        else:
            free(ptrs.pop(i))
    return time.process_time() - t


def run_glibc(ops: list[tuple[str, int, int]], repeat: int) -> float:
    """Seconds real glibc takes for ops (best of `repeat` timed loops inside the harness)."""
    from cowscope.model.libc.ptmalloc.native import harness_path

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "bench.ops"
        f.write_text("".join(f"m {i} {s}\n" if k == "m" else f"f {i}\n" for k, i, s in ops))
        out = subprocess.run([str(harness_path()), "--bench", str(f), str(repeat)], capture_output=True,
                             text=True, env={}, check=True).stdout
    return int(out.split()[0]) / 1e9


def run_machine_replay(nops: int, seed: int) -> float:
    """CPU seconds of `malloc replay --machine` on a generated workload of nops operations."""
    from cowscope.cli.malloc import replay_on_machine
    from cowscope.model.libc.ptmalloc.workload import generate

    text = generate(seed, nops)
    t = time.process_time()
    replay_on_machine(text)
    return time.process_time() - t


def call_overhead_ns() -> float:
    """CPU ns of an empty Python function call right now (a yardstick for the model's speed)."""
    def f(x: int) -> int:
        """Do nothing."""
        return x

    t = time.process_time()
    for i in range(300_000):
        f(i)
    return (time.process_time() - t) / 300_000 * 1e9


def main() -> None:
    """Run the benchmark and print both sides and their ratio."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5, help="model runs (best is reported)")
    ap.add_argument("--profile", action="store_true", help="print a cProfile of one model run")
    ap.add_argument("--machine-ops", type=int, default=5_000,
                    help="operations of the smaller `replay --machine` run (the larger is 4x; 0: skip)")
    args = ap.parse_args()
    ops = workload(args.seed, args.ops)
    if args.profile:
        import cProfile
        import pstats

        prof = cProfile.Profile()
        prof.runcall(run_model, ops)
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
    model = min(run_model(ops) for _ in range(args.repeat))
    glibc = run_glibc(ops, 5)
    m_rate, g_rate = len(ops) / model, len(ops) / glibc
    print(f"workload: {len(ops)} malloc+free calls (seed {args.seed})")
    print(f"model (ptmalloc on FlatHost): {m_rate:12,.0f} ops/s   ({model * 1e6 / len(ops):.2f} us/op)")
    print(f"real glibc 2.36:              {g_rate:12,.0f} ops/s   ({glibc * 1e9 / len(ops):.1f} ns/op)")
    print(f"ratio glibc/model: {g_rate / m_rate:,.0f}x")
    if args.machine_ops:
        small, large = args.machine_ops, 4 * args.machine_ops
        ts, tl = run_machine_replay(small, args.seed), run_machine_replay(large, args.seed)
        print(f"malloc replay --machine: {small} ops {ts:.2f} s ({ts * 1e6 / small:.0f} us/op), "
              f"{large} ops {tl:.2f} s ({tl * 1e6 / large:.0f} us/op); "
              f"per-op cost ratio {tl / large / (ts / small):.2f} (linear: about 1)")
    print(f"(empty Python call: {call_overhead_ns():.0f} ns; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
