"""`cowscope run SCENARIO.py`: run a scenario and show every process's views at each checkpoint."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.text import Text

from ..observe.snapshot import Snapshot
from ..scenario import ScenarioError, ScenarioRun, run_scenario


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run a scenario file (def scenario(m): ...) and show the views at each checkpoint",
        description="Run SCENARIO.py, a Python file defining `def scenario(m):` that drives a machine "
        "through cowscope's API (m.spawn, p.fork, p.mmap, p.write, p.malloc, ..., m.checkpoint(label)). "
        "At every checkpoint (or once at the end if there is none) each process's mappings are printed "
        "with their smaps figures and page strips, with the events since the previous checkpoint. "
        "Errors in the scenario are reported with its file and line. Exit status: 0 ok, 2 scenario error.")
    p.add_argument("scenario", metavar="SCENARIO.py", help="the scenario file")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    p.add_argument("--width", type=int, default=48, help="cells per page strip (default 48)")
    p.add_argument("--allocator", choices=("ptmalloc", "firstfit"), default=None,
                   help="malloc implementation in the model (default: ptmalloc)")
    p.add_argument("--only", metavar="TEXT", default=None,
                   help="show only mappings whose path contains TEXT ([anon] for anonymous ones)")
    p.add_argument("--on", choices=("model", "linux", "both"), default="model",
                   help="backend: the model (default), the real kernel, or both side by side "
                   "(exit status 1 when they disagree)")
    p.set_defaults(func=run)


def run_model(args: argparse.Namespace) -> ScenarioRun:
    """Run the scenario on a fresh model machine."""
    from ..model import Machine

    return run_scenario(args.scenario, Machine(allocator=args.allocator), source="model")


def run_linux(args: argparse.Namespace) -> ScenarioRun:
    """Run the scenario on real processes (cowscope.linux)."""
    from ..linux.machine import Machine

    return run_scenario(args.scenario, Machine(), source="linux")


def print_snapshot(console: Console, snap: Snapshot, width: int, only: str | None) -> None:
    """Checkpoint label, event counts, then one table per process with strips."""
    from ..report.strips import process_table

    console.rule(Text(f"checkpoint: {snap.label} ({snap.source})", style="bold"))
    kinds: dict[str, int] = {}
    for e in snap.events:
        if e.kind != "checkpoint":
            kinds[e.kind] = kinds.get(e.kind, 0) + 1
    if kinds:
        console.print(Text("events since previous: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())),
                           style="dim"))
    for pv in snap.processes:
        st = pv.status
        if st is not None:
            console.print(Text(f"pid {pv.pid} ({pv.name}) ppid {pv.ppid}: VmRSS {st['VmRSS']} kB, RssAnon "
                               f"{st['RssAnon']} kB, RssFile {st['RssFile']} kB, RssShmem {st['RssShmem']} kB, "
                               f"Pss {pv.rollup['Pss'] if pv.rollup else '-'} kB", style="bold"))
        console.print(process_table(pv, width, only, console.width))


def run(args: argparse.Namespace) -> int:
    from ..report.strips import legend

    if args.on == "both":
        from .both import run_both

        return run_both(args)
    console = Console(highlight=False, markup=False)
    try:
        result = run_linux(args) if args.on == "linux" else run_model(args)
    except ScenarioError as e:
        print(f"cowscope run: {e}", file=sys.stderr)
        return 2
    console.print(legend())
    for snap in result.snapshots:
        print_snapshot(console, snap, args.width, args.only)
    if result.outcome:
        console.print(Text(f"scenario stopped: {result.outcome}", style="bold yellow"))
    if args.html:
        from ..report.html import write_report

        out = write_report(args.html, result.snapshots, events=list(result.machine.events),
                           title=f"cowscope run {args.scenario}")
        console.print(f"report written to {out}")
    if result.error:
        print(f"cowscope run: {result.error}", file=sys.stderr)
        return 2
    return 0
