"""`cowscope run SCENARIO.py`: run a scenario and show every process's views at each checkpoint."""

from __future__ import annotations

import argparse
import sys

from ..scenario import ScenarioError, ScenarioRun, run_scenario
from .checks import output_file


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run a scenario file (def scenario(m): ...) and show the views at each checkpoint",
        description="Run SCENARIO.py, a Python file defining `def scenario(m):` that drives a machine "
        "through cowscope's API (m.spawn, p.fork, p.mmap, p.write, p.malloc, ..., m.checkpoint(label)). "
        "At every checkpoint (or once at the end if there is none): the events since the previous one, "
        "a tree line (RSS sum, really used counting each frame once, copies since the previous "
        "checkpoint), and per process its pages against its parent's and the mappings that matter "
        "with their smaps figures (kB) and page strips: those the scenario made, the heap, the stack, "
        "and any whose pages moved since the previous checkpoint; the rest fold into one line. "
        "Errors in the scenario are reported with its file and line. A scenario file is Python: it runs "
        "with your rights (root's when you are root), on either backend, like any script you run; run "
        "only scenarios you trust. Exit status: 0 ok, 1 the scenario stopped on a cowscope error it did "
        "not catch (a SIGSEGV of a process, a SyscallError, ...), 2 scenario error (an unreadable file, "
        "a bug in the scenario).")
    p.add_argument("scenario", metavar="SCENARIO.py", help="the scenario file")
    p.add_argument("--html", type=output_file, metavar="FILE", help="also write a self-contained HTML report")
    p.add_argument("--width", type=cells, default=48,
                   help="most cells per page strip (default 48; fewer when the terminal is narrower)")
    p.add_argument("--all-mappings", action="store_true",
                   help="show every mapping of every process (the program's and libraries' too)")
    p.add_argument("--changes", action="store_true",
                   help="list every page that changed since the previous checkpoint (process, mapping, "
                   "page offset, before -> after, the event that did it)")
    p.add_argument("--allocator", choices=("ptmalloc", "firstfit"), default=None,
                   help="malloc implementation in the model (default: ptmalloc)")
    p.add_argument("--only", metavar="TEXT", default=None,
                   help="show only mappings whose path contains TEXT ([anon] for anonymous ones)")
    p.add_argument("--on", choices=("model", "linux", "both"), default="model",
                   help="backend: the model (default), the real kernel, or both side by side "
                   "(exit status 1 when they disagree)")
    p.set_defaults(func=run)


def cells(text: str) -> int:
    """A strip width: a whole number of cells, at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"a strip needs at least 1 cell, got {n}")
    return n


def run_model(args: argparse.Namespace) -> ScenarioRun:
    """Run the scenario on a fresh model machine."""
    from ..model import Machine

    return run_scenario(args.scenario, Machine(allocator=args.allocator), source="model")


def run_linux(args: argparse.Namespace) -> ScenarioRun:
    """Run the scenario on real processes (cowscope.linux)."""
    from ..linux.machine import Machine
    from ..linux.tracefs import tracing_problem

    events = bool(getattr(args, "changes", False)) and tracing_problem() is None  # the kernel's own events
    return run_scenario(args.scenario, Machine(events=events), source="linux")


def run(args: argparse.Namespace) -> int:
    """Run the scenario on the chosen backend and print its checkpoints; 1 when it stopped on an
    uncaught cowscope error, 2 on a scenario error."""
    if args.on == "both":
        from .both import run_both

        return run_both(args)
    from rich.console import Console

    from ..report.plain import visible
    from ..report.runview import RunView, print_run

    console = Console(highlight=False, markup=False)
    try:
        result = run_linux(args) if args.on == "linux" else run_model(args)
    except ScenarioError as e:
        print(f"cowscope run: {e}", file=sys.stderr)
        return 2
    view = RunView(args.width, args.only, args.all_mappings, args.changes, result.images)
    print_run(console, result.snapshots, result.outcome, view)
    if args.html and result.snapshots:
        from ..report.html import write_report

        out = write_report(args.html, result.snapshots, events=list(result.machine.events),
                           title=f"cowscope run {args.scenario}")
        console.print(f"report written to {out}")
    if result.error:
        print(f"cowscope run: {result.error}", file=sys.stderr)
        return 2
    if result.outcome:
        print(f"cowscope run: scenario stopped: {visible(result.outcome)}", file=sys.stderr)
        return 1
    return 0
