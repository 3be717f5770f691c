"""`cowscope inspect`: how much of a live process tree is still shared, and what was copied."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

from ..inspect.options import DEFAULT_DUTY, MODES, SORT_KEYS
from .checks import OutputFile, input_file, output_file, seconds, whole

if TYPE_CHECKING:  # the inspector (numpy, rich) is imported where it is used, not by --help
    from rich.console import Console
    from rich.live import Live

    from ..inspect.figures import Exited, ProcessFigures, Sample
    from ..inspect.run import DutyCycle, ForkWatch
    from ..inspect.sample import Sampler
    from ..observe.snapshot import Snapshot

EXIT_OK, EXIT_MISSED, EXIT_FAILED = 0, 1, 2

EPILOG = """\
examples:
  cowscope inspect 1234 1240              two processes, one sample
  cowscope inspect --tree 1234            1234 and all its descendants (e.g. a gunicorn master)
  cowscope inspect --tree 1234 --watch 2  live view every 2 s with change since start and trends
  cowscope inspect --tree 1234 --json --watch 5 --count 12 > run.jsonl
  cowscope inspect --tree 1234 --pages '[heap]'   page picture of the heap, one row per process
  cowscope inspect --save a.jsonl -- python server.py   start a command, follow its tree
  cowscope inspect --compare a.jsonl b.jsonl

page classes of a process whose parent is inspected too (at the same virtual address):
  shared w/ parent   the same physical frame as the parent
  shared in tree     a frame shared with other inspected processes (siblings, children), not the parent
  copied             the parent has a page there, this process its own frame
  new                the parent has no page there (or only the zero page)

exit status: 0 everything was read; 1 some process was missed (gone, permission denied, kernel
thread, no such pid) but the rest is reported; 2 nothing could be inspected or bad usage.
Exact classes need root (pagemap PFNs, /proc/kpagecount); otherwise they are estimated and the
output says what cannot be known. See docs/inspect.md."""


def register(subparsers: Any) -> None:
    """Add the `inspect` subcommand."""
    p = subparsers.add_parser(
        "inspect", help="inspect live processes: RSS/PSS/USS and pages shared, copied, new vs the parent",
        description="Inspect live processes: RSS, PSS, USS, swap, and each worker's pages sorted into "
        "classes against its parent (shared, shared in tree, copied, new), per mapping and per process, "
        "with totals for the tree.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="*", metavar="PID",
                   help="process ids; after `--`, a command to start and follow instead")
    p.add_argument("--tree", action="store_true", help="also inspect every descendant of each PID")
    p.add_argument("--watch", type=seconds, metavar="SECONDS",
                   help="sample every SECONDS until Ctrl-C (live table, change since start, trends)")
    p.add_argument("--count", type=whole(1), metavar="N", help="stop after N samples (with --watch or a command)")
    p.add_argument("--json", action="store_true",
                   help="write JSON lines: one object per process per sample (schema in docs/inspect.md)")
    p.add_argument("--save", type=output_file, metavar="FILE",
                   help="record the run (JSON lines with tree totals) to FILE")
    p.add_argument("--compare", nargs=2, type=input_file, metavar=("A", "B"),
                   help="show two --save recordings side by side")
    p.add_argument("--mode", choices=MODES, default="auto",
                   help="exact: PFNs + kpagecount (root); estimate: smaps + pagemap exclusive bit; summary: "
                   "smaps_rollup only, fastest; auto: exact when possible (default)")
    p.add_argument("--max-duty", type=float, default=DEFAULT_DUTY, metavar="FRACTION",
                   help="most of the wall-clock time the inspector may spend reading /proc; a tick that "
                   f"would exceed it is skipped and reported (default {DEFAULT_DUTY})")
    p.add_argument("--mappings", type=whole(0), default=0, metavar="N",
                   help="also list N mappings of each process with their figures: a worker's by copied memory, "
                   "a root's by RSS (see --sort)")
    p.add_argument("--sort", choices=sorted(SORT_KEYS), metavar="COLUMN",
                   help=f"order of --mappings: {', '.join(sorted(SORT_KEYS))} (largest first; address: in order)")
    p.add_argument("--kinds", action="store_true",
                   help="also roll memory up by kind: heap (brk and glibc arena heaps), python-arenas, binary-data, "
                   "library-data, code, stack, file, anon (also in --json and --save)")
    p.add_argument("--pages", metavar="MAPPING",
                   help="page picture of one mapping (a path such as [heap] or libc, or a hex address) "
                   "for the processes side by side")
    p.add_argument("--width", type=whole(1), default=64, help="cells of the page picture (default 64)")
    p.add_argument("--trace", action="store_true",
                   help="also trace the kernel's copy-on-write events meanwhile and show the copies by cause, "
                   "mapping and code site at the end (root; with --watch or a command; see cowscope trace)")
    p.add_argument("--html", type=output_file, metavar="FILE",
                   help="also write a self-contained HTML report: page maps, tree and timeline of every sample")
    p.set_defaults(func=run)


def _console() -> Console:
    """A console; output that is not a terminal gets a wide fixed width instead of 80 columns."""
    from rich.console import Console

    c = Console()
    if not c.is_terminal:
        c = Console(width=int(os.environ.get("COLUMNS", "160")))
    return c


def _err(msg: str) -> None:
    from ..report.plain import visible

    print(f"cowscope inspect: {visible(msg)}", file=sys.stderr)


def _parse_targets(targets: list[str]) -> tuple[list[int], list[str]]:
    """PIDs, or a command when the first word is not a number (`inspect -- CMD ARGS`)."""
    if targets and not targets[0].isdigit():
        return [], targets
    pids = []
    for t in targets:
        if not t.isdigit():
            raise ValueError(f"not a process id: {t!r} (to run a command, put it first after `--`)")
        pids.append(int(t))
    return pids, []


class _Usage(Exception):
    """A bad command line or setup: reported as `cowscope inspect: ...`, exit status 2."""


def run(args: argparse.Namespace) -> int:
    """Run `cowscope inspect`; returns the exit status."""
    if args.compare:
        return _compare(args.compare)
    proc: subprocess.Popen[bytes] | None = None
    save: IO[str] | None = None
    try:
        pids, command, duty = _check_usage(args)
        if command:
            proc = _start_command(command)
            pids = [proc.pid]
        sampler = _sampler(args, pids, proc)
        save = _open_save(args.save, sampler)
        tracer = _start_trace(args, pids, proc)
        try:
            return _loop(args, sampler, duty, proc, save)
        finally:
            if tracer is not None:
                _show_trace(args, tracer.finish())
    except _Usage as exc:
        _err(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        if save is not None:
            save.close()
        if proc is not None:
            _stop_command(proc)


def _start_trace(args: argparse.Namespace, pids: list[int], proc: Any) -> Any:
    """--trace: the kernel event source on the inspected tree, polled in the background."""
    if not args.trace:
        return None
    if args.watch is None and proc is None:
        raise _Usage("--trace needs --watch or a command: a trace covers a span of time")
    from ..inspect.ktrace import BackgroundTracer, TargetError, tree_of
    from ..linux.tracefs import TraceUnavailable

    try:
        targets = sorted({q for pid in pids for q in tree_of(pid)}) if args.tree or proc is not None else pids
        return BackgroundTracer(targets)
    except (TargetError, TraceUnavailable) as exc:
        raise _Usage(f"--trace: {exc}") from None


def _show_trace(args: argparse.Namespace, summary: Any) -> None:
    """The trace's summary after the inspector's own view (a JSON line with --json)."""
    if args.json:
        print(json.dumps(summary.to_json()))
        return
    from ..inspect.trace_render import render_summary

    console = _console()
    console.rule("copy-on-write events while inspecting (kernel tracepoints): what copied, and which code")
    render_summary(summary, console)


def _compare(paths: list[str]) -> int:
    """`--compare A B`: two recordings side by side."""
    from ..inspect.recording import compare_table, load_recording

    try:
        a, b = (load_recording(x) for x in paths)
        _console().print(compare_table(a, b))
    except (OSError, ValueError) as exc:
        _err(str(exc))
        return EXIT_FAILED
    return EXIT_OK


def _check_usage(args: argparse.Namespace) -> tuple[list[int], list[str], DutyCycle]:
    """The PIDs or the command to follow, and the duty cycle; _Usage when they make no sense here."""
    from ..inspect.run import DutyCycle
    from ..observe.procfs import linux_problem

    problem = linux_problem()
    if problem:
        raise _Usage(problem)
    try:
        pids, command = _parse_targets(args.targets)
    except ValueError as exc:
        raise _Usage(str(exc)) from None
    if not pids and not command:
        raise _Usage("name at least one PID, or a command after `--`")
    if args.watch is not None and args.watch <= 0:
        raise _Usage("--watch needs a positive number of seconds")
    try:
        return pids, command, DutyCycle(args.max_duty)
    except ValueError as exc:
        raise _Usage(str(exc)) from None


def _start_command(command: list[str]) -> subprocess.Popen[bytes]:
    """The command, in a process group of its own (inspect.group)."""
    try:
        return subprocess.Popen(command, preexec_fn=os.setpgrp)
    except OSError as exc:
        raise _Usage(f"cannot start {command[0]!r}: {exc}") from None


def _stop_command(proc: subprocess.Popen[bytes]) -> None:
    """Stop the command we started and everything in its process group: SIGTERM, then SIGKILL
    after 5 s."""
    from ..inspect.group import stop_group

    stop_group(proc.pid, proc.poll)
    proc.wait()


def _sampler(args: argparse.Namespace, pids: list[int], proc: subprocess.Popen[bytes] | None) -> Sampler:
    from ..inspect.sample import Sampler

    try:
        return Sampler(pids, tree=args.tree or proc is not None, mode=args.mode, states=bool(args.pages),
                       kinds=bool(args.kinds or args.save or args.json))
    except PermissionError as exc:
        raise _Usage(str(exc)) from None


def _open_save(path: str | None, sampler: Sampler) -> IO[str] | None:
    """The --save recording, opened and headed (each sample reaches the file at once; a full disk
    names it); None without --save."""
    from ..inspect.recording import header_object

    if not path:
        return None
    try:
        save: Any = OutputFile(path)
    except OSError as exc:
        raise _Usage(f"cannot write {path}: {exc}") from None
    save.write(json.dumps(header_object(sys.argv, sampler.mode)) + "\n")
    return save


def _root_exiting(proc: subprocess.Popen[bytes], s: Sample) -> bool:
    """True if the command was missed in this sample because it is exiting (its mm goes first)."""
    if not any(m.pid == proc.pid for m in s.missed):
        return False
    try:
        proc.wait(0.5)
    except subprocess.TimeoutExpired:
        return False
    return True


@dataclass
class _Run:
    """What the loop has seen so far."""

    first: Sample | None = None
    last: Sample | None = None
    history: dict[int, list[int]] = field(default_factory=dict)
    baseline: dict[int, ProcessFigures] = field(default_factory=dict)  # each process as first seen
    missed: bool = False
    reported: bool = False
    warned: set[str] = field(default_factory=set)
    snapshots: list[Snapshot] = field(default_factory=list)
    exits: list[Exited] = field(default_factory=list)  # every process seen to exit, in order

    fork: ForkWatch | None = None  # `-- COMMAND`: watching for the first fork

    @property
    def trend_top(self) -> int:
        """The one scale of every sharing trend: the parents' resident memory at the first fork when
        it is known, else at the first sample."""
        if self.fork is not None and self.fork.forked and self.fork.rss_kb is not None:
            return self.fork.rss_kb
        return self.first.totals.parent_rss_kb if self.first is not None else 0

    def at_fork(self, s: Sample) -> None:
        """Put the roots' resident memory at the first fork, once known, into the sample's totals."""
        if self.fork is not None and self.fork.forked and self.fork.rss_kb is not None:
            s.totals.parent_rss_at_fork_kb = self.fork.rss_kb
            s.totals.at_fork_read_age_s = round(self.fork.age_s or 0.0, 3)

    def add(self, s: Sample, html: bool) -> None:
        """Take in one sample: trends, "change since start", and (for --html) a snapshot."""
        self.missed = self.missed or bool(s.missed)
        self.reported = self.reported or bool(s.processes)
        self.first = self.first or s
        self.last = s
        self.exits += s.exited
        for p in s.processes:
            v = p.shared_with_parent_kb if p.parent_in_tree else p.shared_in_tree_kb
            self.history.setdefault(p.pid, []).append(v or 0)
            self.baseline.setdefault(p.pid, p)
        if html:
            from ..inspect.snapshots import snapshot_of, with_classes

            snap = snapshot_of([(p.pid, p.ppid, p.label) for p in s.processes], f"sample {s.seq}")
            if snap is not None:
                self.snapshots.append(with_classes(snap, s.processes))

    def warn(self, s: Sample) -> None:
        """Notes (each once) and missed processes on stderr, when the view does not carry them."""
        from ..inspect.render import exit_line

        for note in s.notes:
            if note not in self.warned:
                self.warned.add(note)
                _err(f"note: {note}")
        for m in s.missed:
            _err(f"missed: {m.reason}")
        for e in s.exited:
            _err(exit_line(e))


def _live(args: argparse.Namespace, console: Console, watching: bool) -> Live | None:
    """A live-updating view when watching on a terminal (not with --json)."""
    if not watching or args.json or not console.is_terminal:
        return None
    from rich.live import Live

    live = Live(console=console, refresh_per_second=4, transient=False)
    live.start()
    return live


def _loop(args: argparse.Namespace, sampler: Sampler, duty: DutyCycle, proc: subprocess.Popen[bytes] | None,
          save: IO[str] | None) -> int:
    """Sample until done (one sample, --count, Ctrl-C or the command's end), showing each one."""
    from ..inspect.recording import write_sample
    from ..inspect.run import ForkWatch, follow

    console = _console()
    watching = args.watch is not None or proc is not None
    interval = args.watch if args.watch is not None else 1.0
    live = _live(args, console, watching)
    state = _Run(fork=ForkWatch(sampler, duty) if proc is not None else None)

    def stopped() -> bool:
        return proc is not None and proc.poll() is not None

    try:
        idle = state.fork.poll if state.fork is not None else None
        for s in follow(sampler, interval, duty, count=args.count if watching else 1, stop=stopped, idle=idle):
            if proc is not None and s.skipped is None and (stopped() or _root_exiting(proc, s)):
                break  # the command ended while we read: its tree is gone, not missed
            state.at_fork(s)
            if save is not None:
                write_sample(save, s, tree=True)
            if s.skipped is not None:
                _err(s.skipped)
                continue
            if args.json or live is not None:  # otherwise the printed view carries them
                state.warn(s)
            state.add(s, html=bool(args.html))
            _show(args, s, state, console, live, watching)
    except KeyboardInterrupt:
        _err("interrupted")
    finally:
        if live is not None:
            live.stop()
    return _finish(args, state, console, watching, proc)


def _show(args: argparse.Namespace, s: Sample, state: _Run, console: Console, live: Live | None,
          watching: bool) -> None:
    """One sample as a JSON line, in the live view, or printed (when watching without a terminal)."""
    from ..inspect.recording import write_sample
    from ..inspect.render import sample_view

    if args.json:
        write_sample(sys.stdout, s, tree=False)
        return
    if live is None and not watching:
        return  # a single sample is shown by _finish
    exits = state.exits[-10:] if live is not None else None  # a live view keeps them; printed, each once
    view = sample_view(s, state.first, state.history, args.mappings, args.pages, args.width, state.baseline,
                       state.trend_top, exits, args.sort, args.kinds)
    if live is not None:
        live.update(view)
    else:
        console.print(view)


def _finish(args: argparse.Namespace, state: _Run, console: Console, watching: bool,
            proc: subprocess.Popen[bytes] | None) -> int:
    """The single sample's view, the HTML report, the command's fate; the exit status."""
    from ..inspect.render import sample_view

    last = state.last
    if not watching and not args.json and last is not None:
        if last.processes:
            console.print(sample_view(last, None, None, args.mappings, args.pages, args.width, sort=args.sort,
                                      kinds=args.kinds))
        else:
            for m in last.missed:
                _err(f"missed: {m.reason}")
    if args.html and state.snapshots:
        from ..report.html import write_report

        write_report(args.html, state.snapshots, title="cowscope inspect")
        _err(f"report written to {args.html}")
    if proc is not None:
        status = proc.poll()
        _err(f"command exited with status {status}" if status is not None
             else f"stopped the command (pid {proc.pid}) after the last sample")
    if not state.reported:
        return EXIT_FAILED
    return EXIT_MISSED if state.missed else EXIT_OK
