"""Benchmark: the cost of `cowscope trace` on copy-on-write faults, and whether it loses events.

One run, untraced and traced alternately: a process writes N pages (default 262,144 = 1 GiB),
forks, and the child writes one byte per page (N copy-on-write copies, timed inside the child).
Traced = the kernel event source (private tracefs instance, pid filter following the child, the
tracepoints `cowscope trace` enables) reading continuously on its thread. Needs root.

    .venv/bin/python benchmarks/bench_trace.py [--pages 262144] [--repeat 3]

Prints the child's copy loop time untraced and traced (best of --repeat), their ratio, the events
lost (per-CPU dropped + overrun) and how many copies were classified. Goal (issue 11): traced at
most 2x untraced, zero lost events. Not a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from cowscope.linux.ksource import KernelEvents
from cowscope.native import build

SRC = Path(__file__).with_name("cowbench.c")


def _held(binary: str, pages: int) -> tuple[int, int, int]:
    """Fork the workload held before exec: (pid, go fd, stdout read fd)."""
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        os.close(out_r)
        os.dup2(out_w, 1)
        os.read(go_r, 1)
        os.execv(binary, [binary, str(pages)])
    os.close(go_r)
    os.close(out_w)
    return pid, go_w, out_r


def run_once(binary: str, pages: int, traced: bool) -> tuple[float, int, int, float]:
    """(child's copy loop seconds, lost events, cow-copy events of the child, seconds to read them)."""
    pid, go, out = _held(binary, pages)
    events = KernelEvents([pid], buffer_kb=32768) if traced else None
    os.write(go, b"x")
    os.close(go)
    text = b""
    while chunk := os.read(out, 4096):
        text += chunk
    os.close(out)
    os.waitpid(pid, 0)
    lost = copies = 0
    t0 = time.perf_counter()
    if events is not None:
        events.close()
        lost = events.losses().total
        copies = sum(1 for e in events if e.kind == "cow-copy" and e.pid != pid)
    return int(text.strip()) / 1e9, lost, copies, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=262144)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_trace: needs root (tracefs)", file=sys.stderr)
        return 2
    binary = str(build("cowbench", SRC.read_bytes(), "the trace benchmark needs a C compiler"))
    plain, traced = [], []
    for _ in range(args.repeat):
        plain.append(run_once(binary, args.pages, False))
        traced.append(run_once(binary, args.pages, True))
    p = min(r[0] for r in plain)
    best = min(traced, key=lambda r: r[0])
    lost = sum(r[1] for r in traced)
    print(f"{args.pages} copy-on-write copies in a child (best of {args.repeat}):")
    print(f"  untraced  {p:8.3f} s  ({p / args.pages * 1e6:.2f} us per copy)")
    print(f"  traced    {best[0]:8.3f} s  ({best[0] / args.pages * 1e6:.2f} us per copy)")
    print(f"  ratio     {best[0] / p:8.2f}x   (goal: at most 2x)")
    print(f"  lost events over {args.repeat} traced runs: {lost}   (goal: 0)")
    print(f"  copies classified per traced run: {[r[2] for r in traced]}   (expected {args.pages} each)")
    print(f"  reading and classifying after the run: {best[3]:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
