"""Benchmark: cowscope inspect vs psutil (and smem if installed) on a real 16-process tree.

The tree: a master maps 1 GiB of private anonymous memory (no THP), writes all of it, forks 15
workers, and each worker writes the first half of it again (copy-on-write copies 0.5 GiB each):
16 processes mapping 1 GiB each, ~8.5 GiB resident. Run as root for the exact (PFN) inspection:

    .venv/bin/python benchmarks/bench_inspect.py [--procs 16] [--gib 1] [--repeat 3]

Prints the time of each method (best of --repeat) and the ratios; not a pass/fail test.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable

import psutil

from cowscope.inspect.sample import Sampler

PAGE = mmap.PAGESIZE


def build_tree(procs: int, size: int) -> tuple[int, list[int], int]:
    """Fork the tree; returns (master pid, worker pids, write end of the pipe that keeps it alive)."""
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    master = os.fork()
    if master == 0:
        try:
            os.close(ready_r)
            os.close(hold_w)
            m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            m.madvise(mmap.MADV_NOHUGEPAGE)
            addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
            ctypes.memset(addr, 1, size)
            kids = []
            for _ in range(procs - 1):
                pid = os.fork()
                if pid == 0:
                    ctypes.memset(addr, 2, size // 2)  # copy half of it
                    os.write(ready_w, b"w")
                    os.read(hold_r, 1)
                    os._exit(0)
                kids.append(pid)
            os.write(ready_w, b"m" + b",".join(str(k).encode() for k in kids) + b"\n")
            os.read(hold_r, 1)
            for k in kids:
                os.waitpid(k, 0)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    workers: list[int] = []
    seen = 0
    buf = b""
    with os.fdopen(ready_r, "rb") as f:
        while seen < procs - 1 or not workers:
            c = f.read(1)
            if not c:
                raise RuntimeError("tree builder died")
            if c == b"w":
                seen += 1
            elif c == b"m":
                while not buf.endswith(b"\n"):
                    buf += f.read(1)
                workers = [int(x) for x in buf.strip().split(b",")]
    return master, workers, hold_w


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads) and its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def best(fn: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """Best wall time and best CPU time of `repeat` runs, and the last result."""
    walls, cpus = [], []
    out: object = None
    for _ in range(repeat):
        c0, t0 = cpu_seconds(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_seconds() - c0)
    return min(walls), min(cpus), out


def psutil_loop(pids: list[int]) -> dict[int, tuple[int, int]]:
    """USS and PSS (kB) of each pid with psutil's memory_full_info()."""
    out = {}
    for pid in pids:
        mi = psutil.Process(pid).memory_full_info()
        out[pid] = (mi.uss // 1024, mi.pss // 1024)
    return out


def cowscope_summary(pids: list[int], threads: int) -> dict[int, tuple[int, int]]:
    """USS and PSS (kB) of each pid with cowscope's summary mode (smaps_rollup)."""
    s = Sampler(pids, mode="summary", mappings=False, threads=threads).sample()
    return {p.pid: (p.uss_kb, p.pss_kb) for p in s.processes}


def smem_run(pids: list[int]) -> str:
    """smem's USS/PSS table for the pids."""
    out = subprocess.run(["smem", "-P", "bench_inspect", "-c", "pid uss pss", "-H"], capture_output=True,
                         text=True, check=False).stdout
    got = {int(ln.split()[0]) for ln in out.splitlines() if ln.strip()}
    missing = set(pids) - got
    if missing:
        raise RuntimeError(f"smem did not report {sorted(missing)}")
    return out


def main() -> None:
    """Build the tree, time the methods, print the ratios, tear the tree down."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, default=16)
    ap.add_argument("--gib", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    size = int(args.gib * (1 << 30)) // PAGE * PAGE
    t0 = time.perf_counter()
    master, workers, hold = build_tree(args.procs, size)
    pids = [master, *workers]
    print(f"tree: {len(pids)} processes x {size >> 20} MiB mapped, half copied in each worker "
          f"(built in {time.perf_counter() - t0:.1f}s)")
    try:
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
              "(wall times suffer from other load; CPU times much less)")
        print(f"{'method':40} {'wall ms':>9} {'CPU ms':>9}  ratios (psutil / method)")
        t_ps, c_ps, ps = best(lambda: psutil_loop(pids), args.repeat)
        print(f"{'psutil memory_full_info() loop':40} {t_ps * 1000:9.1f} {c_ps * 1000:9.1f}")
        for threads in (1, os.cpu_count() or 1):
            t_cs, c_cs, cs = best(lambda th=threads: cowscope_summary(pids, th), args.repeat)
            assert isinstance(ps, dict) and isinstance(cs, dict)
            diff = max(abs(ps[p][0] - cs[p][0]) for p in pids)
            print(f"{f'cowscope summary, {threads} thread(s)':40} {t_cs * 1000:9.1f} {c_cs * 1000:9.1f}  "
                  f"wall {t_ps / t_cs:.2f}x  CPU {c_ps / c_cs:.2f}x  (largest USS difference {diff} kB)")
        if shutil.which("smem"):
            t_sm, c_sm, _ = best(lambda: smem_run(pids), args.repeat)
            print(f"{'smem':40} {t_sm * 1000:9.1f} {c_sm * 1000:9.1f}  wall {t_ps / t_sm:.2f}x")
        else:
            print("smem: not installed, skipped")
        if os.geteuid() == 0:
            t_ex, c_ex, s = best(lambda: Sampler([master], tree=True, mode="exact").sample(), args.repeat)
            tt = s.totals  # type: ignore[attr-defined]
            print(f"{'cowscope exact tree inspection (PFNs)':40} {t_ex * 1000:9.1f} {c_ex * 1000:9.1f}  "
                  f"wall {t_ps / t_ex:.2f}x  CPU {c_ps / c_ex:.2f}x  (goal: < 2000 ms)")
            print(f"  RSS sum {tt.rss_sum_kb >> 10} MiB, really used {tt.unique_kb >> 10} MiB, "
                  f"workers copied {tt.copied_kb >> 10} MiB, shared with parent {tt.shared_with_parent_kb >> 10} MiB")
        else:
            print("exact tree inspection: needs root, skipped")
    finally:
        os.close(hold)
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.waitpid(master, 0)


if __name__ == "__main__":
    main()
