"""`cowscope bench`: time the model against the real kernel and print ratios with their targets."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ..bench import TARGET_COW, TARGET_FORK, BenchConfig, Figure, host_line, run_bench
from .checks import whole

if TYPE_CHECKING:
    from rich.table import Table

EXIT_OK, EXIT_MISSED, EXIT_NO_KERNEL = 0, 1, 2

EPILOG = f"""\
what is measured (model = this package, kernel = bench_fork.c on the running Linux kernel):
  fork              fork() of a process with 262,144 resident anonymous pages (1 GiB, one byte
                    value); ratio model/kernel, target <= {TARGET_FORK:g}
  CoW all           the child writes every page after fork (262,144 copy-on-write copies); model:
                    p.touch(addr, 1 GiB, write=True), kernel: one byte per page; target <= {TARGET_COW:g}
  THP fork          fork() of the same 1 GiB mapped by 512 PMDs (MADV_HUGEPAGE, 2 MiB-aligned);
                    ratio model/kernel, target <= {TARGET_FORK:g} (n/a when the kernel gave no THPs)
  8-byte write      one p.write(addr, 8 bytes) to an already-writable page, µs per call; target <= 5
  metadata          bytes the model holds per resident page (tracemalloc), target <= 64, and per page
                    per extra fork; from them the size of a 64 GiB process forked 16 times
  random differential  seeded random scenarios (cowscope verify --random: every call both backends
                    share) on the model and this kernel, compared; target: every seed agrees
  --huge            builds that 64 GiB process and forks it 16 times for real, peak RSS of this
                    Python process (getrusage); needs a few GiB of RAM and about a minute or two

The C program is compiled on first use with $CC/cc/gcc/clang into $COWSCOPE_CACHE (default
~/.cache/cowscope). Timings are best of --repeats runs.

exit status: 0 every target met; 1 some target missed; 2 the kernel side could not run (no C
compiler), model figures still printed."""


def register(subparsers: Any) -> None:
    """Add the `bench` subcommand."""
    p = subparsers.add_parser(
        "bench", help="benchmark the model against the real kernel (fork, CoW, API call, metadata)",
        description="Time the model and a small C program on the running kernel doing the same work "
        "(fork of a 1 GiB process, copy-on-write of every page), the cost of one API call and the "
        "model's metadata per page; print each figure with its target and whether it is met.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes (2,048 pages, one repeat): checks that everything runs; the "
                   "figures are not meaningful")
    p.add_argument("--huge", action="store_true",
                   help="also build a 64 GiB simulated process and fork it 16 times for real, "
                   "reporting this process's peak RSS (with --quick: 16 MiB, 2 forks)")
    p.add_argument("--pages", type=whole(1), metavar="N",
                   help="resident pages of the forked process (default 262144 = 1 GiB)")
    p.add_argument("--repeats", type=whole(1), metavar="N", help="runs per timing, best kept (default 3)")
    p.add_argument("--random", type=whole(0), metavar="N",
                   help="random differential scenarios (verify --random) in the agreement figure "
                   "(default 200, --quick 10; 0 leaves the figure out; needs root)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table; the exit code says whether every target was met."""
    from rich.console import Console

    cfg = BenchConfig.quick() if args.quick else BenchConfig()
    if args.pages:
        cfg.pages = args.pages
    if args.repeats:
        cfg.repeats = args.repeats
    cfg.huge = bool(args.huge)
    err = Console(stderr=True)
    figures, note = run_bench(cfg, log=lambda s: err.print(f"[dim]… {s}[/dim]"))
    nrandom = args.random if args.random is not None else (10 if args.quick else 200)
    if nrandom and not note:
        figures.append(random_figure(nrandom, log=lambda s: err.print(f"[dim]… {s}[/dim]")))
    out = Console()
    if not out.is_terminal:
        out = Console(width=120)
    out.print(render_table(figures, host_line()))
    if note:
        out.print(f"[yellow]kernel side not measured:[/yellow] {note}")
        return EXIT_NO_KERNEL
    if args.quick:
        out.print("[dim]--quick: tiny sizes, the figures are not meaningful[/dim]")
    missed = [f.name for f in figures if f.ok is False]
    if missed:
        out.print(f"[red]targets missed:[/red] {', '.join(missed)}")
        return EXIT_MISSED
    return EXIT_OK


def random_figure(count: int, log: Any) -> Figure:
    """The random differential's agreement: seeds 0..count-1 (reproducible) run on the model and
    on this kernel and compared as `verify --random` does; target: every seed agrees."""
    import os

    name = f"random differential: model = kernel (seeds 0..{count - 1})"
    if os.geteuid() != 0:
        return Figure(name, "", "", float("nan"), "n/a (needs root)")
    from ..linux.machine import Machine as LinuxMachine
    from ..linux.machine import host_model_config
    from ..model import Machine as ModelMachine
    from ..verify.fuzz import run_random

    log(f"random differential: {count} seeded scenarios on the model and the kernel")
    host = host_model_config()
    res = run_random(0, count, lambda: ModelMachine(**host), LinuxMachine)
    bad = len(res.disagreeing)
    return Figure(name, f"{res.seconds:.0f} s", "", float(bad), f"{res.agree}/{res.count} agree", 0.0,
                  "all agree")


def render_table(figures: list[Figure], caption: str) -> Table:
    """The result table: figure, model, kernel, value, target, pass/fail."""
    from rich.table import Table

    t = Table(title="cowscope bench: model vs kernel", caption=caption)
    for col in ("figure", "model", "kernel", "model/kernel or value", "target", "result"):
        t.add_column(col, justify="left" if col == "figure" else "right")
    for f in figures:
        result = {None: "", True: "[green]pass[/green]", False: "[red]FAIL[/red]"}[f.ok]
        t.add_row(f.name, f.model, f.kernel, f.shown, f.target_text, result)
    return t


if __name__ == "__main__":  # pragma: no cover
    from .main import main

    sys.exit(main(["bench", *sys.argv[1:]]))
