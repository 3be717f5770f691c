"""The model against the real kernel: fork and copy-on-write timings, API call cost, metadata size.

One run times the model and a small C program (bench_fork.c, compiled with the system C compiler
into the user cache) doing the same work, and reports ratios model/kernel with their targets:

* fork of a process with N resident anonymous pages (N = 262,144: 1 GiB);
* writing every page after fork (N copy-on-write copies);
* one 8-byte write through the API (µs per call);
* metadata bytes per resident page, and the projection (or, with `huge`, the real run) of a 64 GiB
  process forked 16 times.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from .native import NativeBuildError, build

if TYPE_CHECKING:
    from .model import Machine

PAGE = 4096
GIB = 1 << 30
FULL_PAGES = 262_144            # 1 GiB of 4 KiB pages
HUGE_PAGES = 64 * GIB // PAGE   # 64 GiB
HUGE_FORKS = 16
HUGE_SIZE = 2 << 20             # one PMD-mapped THP
HOST_RAM = 24 * GIB             # the machine the claim is made for

TARGET_FORK = 1.0
TARGET_COW = 0.1
TARGET_WRITE_US = 5.0
TARGET_META = 64.0


class BenchError(RuntimeError):
    """The benchmark cannot run (no C compiler, the C program failed)."""


@dataclass
class Figure:
    """One line of the result table: a measured value and, when it has one, its target."""

    name: str
    model: str
    kernel: str
    value: float
    shown: str
    target: float | None = None
    target_text: str = ""

    @property
    def ok(self) -> bool | None:
        return None if self.target is None else self.value <= self.target


@dataclass
class BenchConfig:
    """Sizes of one run."""

    pages: int = FULL_PAGES
    repeats: int = 3
    write_calls: int = 50_000
    huge: bool = False
    huge_pages: int = HUGE_PAGES
    huge_forks: int = HUGE_FORKS

    @classmethod
    def quick(cls) -> BenchConfig:
        """Tiny sizes: checks that everything runs (figures are not meaningful)."""
        return cls(pages=2048, repeats=1, write_calls=2000, huge_pages=4096, huge_forks=2)


# -- the C side --------------------------------------------------------------------------------

def c_source() -> bytes:
    return resources.files("cowscope").joinpath("bench_fork.c").read_bytes()


def build_c() -> Path:
    """The compiled bench_fork for the shipped source, built into the user cache if missing."""
    try:
        return build("bench_fork", c_source(), "the benchmark compiles a small C program (bench_fork.c) "
                     "to time the real kernel")
    except NativeBuildError as e:
        raise BenchError(str(e)) from e


def run_c(pages: int, repeats: int, thp: bool = False) -> dict[str, float]:
    """Best-of-`repeats` seconds for fork and for the child's write to every page, on this kernel
    (with `thp`: fork of the buffer PMD-mapped, and "thp_kb", its AnonHugePages)."""
    exe = build_c()
    proc = subprocess.run([str(exe), str(pages), str(repeats)] + (["thp"] if thp else []),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise BenchError(f"bench_fork failed (exit {proc.returncode}): {proc.stderr.strip()}")
    best: dict[str, float] = {}
    for line in proc.stdout.split("\n"):
        if line.strip():
            kind, value = line.split()
            if kind == "thp_kb":
                best[kind] = float(value)
            else:
                best[kind] = min(best.get(kind, float("inf")), int(value) / 1e9)
    return best


# -- the model side ----------------------------------------------------------------------------

def _filled(pages: int, record_events: bool = True) -> tuple[Machine, object, int]:
    """A machine whose process has `pages` resident anonymous pages, all holding one byte value."""
    from .model import Machine

    m = Machine(record_events=record_events)
    p = m.spawn("bench")
    a = p.mmap(pages * PAGE)
    p.fill(a, pages * PAGE, 0x5A)
    return m, p, a


def model_fork_cow(pages: int, repeats: int) -> dict[str, float]:
    """Best-of-`repeats` seconds for the model's fork and the child's write to every page."""
    _m, p, a = _filled(pages)
    best = {"fork": float("inf"), "cow": float("inf")}
    for _ in range(repeats):
        t0 = time.perf_counter()
        c = p.fork()  # type: ignore[attr-defined]
        best["fork"] = min(best["fork"], time.perf_counter() - t0)
        c.exit(0)
        p.wait(c)  # type: ignore[attr-defined]
        c = p.fork()  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        c.touch(a, pages * PAGE, write=True)
        best["cow"] = min(best["cow"], time.perf_counter() - t0)
        c.exit(0)
        p.wait(c)  # type: ignore[attr-defined]
    return best


def model_thp_fork(pages: int, repeats: int) -> float:
    """Best-of-`repeats` seconds for the model's fork of `pages` pages mapped by 2 MiB PMDs."""
    from .model import Machine

    m = Machine()
    p = m.spawn("bench")
    base = p.mmap(pages * PAGE + HUGE_SIZE)
    a = (base + HUGE_SIZE - 1) & ~(HUGE_SIZE - 1)
    p.madvise(a, pages * PAGE, "hugepage")
    p.fill(a, pages * PAGE, 0x5A)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        c = p.fork()
        best = min(best, time.perf_counter() - t0)
        c.exit(0)
        p.wait(c)
    return best


def model_write_us(calls: int, repeats: int = 7) -> float:
    """µs per `p.write(addr, 8 bytes)` to an already-writable page (best of `repeats` loops)."""
    from .model import Machine

    m = Machine()
    p = m.spawn("bench")
    a = p.mmap(PAGE)
    p.write(a, b"\1" * 8)
    data = b"12345678"
    write = p.write
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            write(a, data)
        best = min(best, (time.perf_counter() - t0) / calls)
    return best * 1e6


def metadata_bytes(pages: int, record_events: bool = True) -> tuple[float, float]:
    """Traced bytes per resident page of a filled process, and added per page by one fork."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        m, p, _a = _filled(pages, record_events)
        filled = tracemalloc.get_traced_memory()[0]
        kids = [p.fork() for _ in range(2)]  # type: ignore[attr-defined]
        forked = tracemalloc.get_traced_memory()[0]
        del kids, m, p
    finally:
        tracemalloc.stop()
    return (filled - base) / pages, (forked - filled) / (2 * pages)


def huge_run(pages: int, forks: int, log: Callable[[str], None]) -> tuple[int, float]:
    """Really build a `pages`-page process and fork it `forks` times; peak RSS (bytes) and seconds."""
    t0 = time.perf_counter()
    m, p, a = _filled(pages)
    log(f"filled {pages * PAGE / GIB:g} GiB in {time.perf_counter() - t0:.1f} s")
    kids = []
    for i in range(forks):
        kids.append(p.fork())  # type: ignore[attr-defined]
        if (i + 1) % 4 == 0:
            log(f"{i + 1} forks, peak RSS {_peak_rss() / GIB:.2f} GiB")
    m.check()
    for k in kids:
        k.exit(0)
    return _peak_rss(), time.perf_counter() - t0


def _peak_rss() -> int:
    """This Python process's peak RSS in bytes (getrusage, kB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- the whole run -----------------------------------------------------------------------------

def run_bench(cfg: BenchConfig, log: Callable[[str], None] = lambda s: None) -> tuple[list[Figure], str]:
    """Measure everything; returns the figures and a note ('' or why the kernel side is missing)."""
    figures: list[Figure] = []
    note = ""
    n = cfg.pages
    size = f"{n * PAGE / GIB:g} GiB" if n * PAGE >= GIB else f"{n * PAGE >> 20} MiB"
    log(f"kernel: fork and CoW of {n} pages ({size}), best of {cfg.repeats}")
    try:
        kern: dict[str, float] | None = run_c(n, cfg.repeats)
    except BenchError as e:
        kern, note = None, str(e)
    log("model: the same")
    model = model_fork_cow(n, cfg.repeats)
    for key, name, target in (("fork", f"fork ({n:,} resident pages)", TARGET_FORK),
                              ("cow", f"CoW all: write every page after fork ({n:,} copies)", TARGET_COW)):
        mt = model[key]
        if kern is None:
            figures.append(Figure(name, _ms(mt), "n/a", float("nan"), "n/a", target, f"≤ {target:g}"))
        else:
            kt = kern[key]
            figures.append(Figure(name, _ms(mt), _ms(kt), mt / kt, f"{mt / kt:.3f}", target,
                                  f"ratio ≤ {target:g}"))
    figures.append(thp_fork_figure(n, cfg.repeats, kern is not None, log))
    log("model: 8-byte writes through the API")
    us = model_write_us(cfg.write_calls)
    figures.append(Figure("one 8-byte write (p.write)", f"{us:.2f} µs", "", us, f"{us:.2f} µs",
                          TARGET_WRITE_US, f"≤ {TARGET_WRITE_US:g} µs"))
    log("model: metadata per resident page (tracemalloc)")
    per_page, per_fork = metadata_bytes(n)
    figures.append(Figure("metadata per resident page", f"{per_page:.1f} B", "", per_page,
                          f"{per_page:.1f} B", TARGET_META, f"≤ {TARGET_META:g} B"))
    quiet, _ = metadata_bytes(n, record_events=False)
    figures.append(Figure("metadata per resident page, record_events=False", f"{quiet:.1f} B", "",
                          quiet, f"{quiet:.1f} B"))
    figures.append(Figure("metadata per page per extra fork", f"{per_fork:.1f} B", "", per_fork,
                          f"{per_fork:.1f} B"))
    proj = HUGE_PAGES * (per_page + HUGE_FORKS * per_fork)
    figures.append(Figure(f"projected: 64 GiB process + {HUGE_FORKS} forks", f"{proj / GIB:.2f} GiB",
                          "", proj, f"{proj / GIB:.2f} GiB", float(HOST_RAM), "< 24 GiB"))
    if cfg.huge:
        log(f"huge: {cfg.huge_pages * PAGE / GIB:g} GiB process forked {cfg.huge_forks} times, for real")
        peak, secs = huge_run(cfg.huge_pages, cfg.huge_forks, log)
        figures.append(Figure(f"real: {cfg.huge_pages * PAGE / GIB:g} GiB process + {cfg.huge_forks} "
                              f"forks, peak RSS ({secs:.0f} s)", f"{peak / GIB:.2f} GiB", "", peak,
                              f"{peak / GIB:.2f} GiB", float(HOST_RAM), "< 24 GiB"))
    return figures, note


def thp_fork_figure(pages: int, repeats: int, kernel_ok: bool, log: Callable[[str], None]) -> Figure:
    """fork of `pages` pages of PMD-mapped THPs: model against kernel, target ratio <= 1."""
    name = f"THP fork ({pages * PAGE >> 20} MiB PMD-mapped, {pages // 512:,} PMDs)"
    log("kernel and model: fork of PMD-mapped memory")
    mt = model_thp_fork(pages, repeats)
    kern = run_c(pages, repeats, thp=True) if kernel_ok else None
    if kern is None or kern.get("thp_kb", 0) < pages * PAGE >> 10:
        why = "n/a" if kern is None else f"kernel mapped {kern.get('thp_kb', 0):.0f} kB as THP"
        return Figure(name, _ms(mt), why, float("nan"), "n/a")
    kt = kern["fork"]
    return Figure(name, _ms(mt), _ms(kt), mt / kt, f"{mt / kt:.3f}", TARGET_FORK, f"ratio ≤ {TARGET_FORK:g}")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms" if seconds < 10 else f"{seconds:.1f} s"


def host_line() -> str:
    """Where the figures were measured."""
    return f"{platform.node()} · Linux {platform.release()} · {os.cpu_count()} CPUs · Python " \
        f"{platform.python_version()}"
