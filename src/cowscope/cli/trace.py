"""`cowscope trace`: which code's write copied which page, from the kernel's own events."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import IO, Any

from .checks import output_file, seconds, whole

EPILOG = """\
examples:
  cowscope trace -- python3 -c 'import os; b = bytearray(1 << 24); os.fork() or b.__init__(1 << 24)'
  cowscope trace --tree $(pgrep -o gunicorn) --duration 30      a master and its workers, 30 s
  cowscope trace 1234 5678 --json events.jsonl                     two processes until Ctrl-C

Every copy-on-write copy, reuse and zero-fill of the traced processes (and of the children they
fork while traced), attributed to the process and mapping, to the side of the fork that paid, to
the instruction that wrote (symbolized from the ELF it runs; module+offset where no symbol holds
it) and to a named cause where the symbol makes it certain. Needs root (tracefs). The events come
from kernel tracepoints (docs/trace.md: which kinds can and cannot be told apart)."""


def _error(exc: Exception) -> None:
    from ..report.plain import visible  # rich: not for `cowscope --help`

    print(f"error: {visible(str(exc))}", file=sys.stderr)


def register(subparsers: Any) -> None:
    """Add the `trace` subcommand."""
    p = subparsers.add_parser(
        "trace", help="the kernel's copy-on-write events of a process tree, attributed to the code that wrote",
        description="Trace the real kernel's copy-on-write decisions (copies, reuses, zero-fills) of running "
        "processes or of a command, and say which code's write copied each page.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("targets", nargs="*", metavar="PID | -- COMMAND",
                   help="process ids to trace, or (after --) a command to run and trace")
    p.add_argument("--tree", type=whole(1), metavar="PID", help="trace PID and all its descendants")
    p.add_argument("--duration", type=seconds, metavar="S", help="stop after S seconds (default: until the "
                   "command or every traced process ends, or Ctrl-C)")
    p.add_argument("--json", type=output_file, metavar="FILE",
                   help="write one JSON object per event, then a summary line "
                   "('-' for standard output; schema in docs/trace.md)")
    p.add_argument("--html", type=output_file, metavar="FILE",
                   help="also write the HTML report: the traced processes' page maps "
                   "at the start and at the end of the trace, each page's last event and the events timeline")
    p.add_argument("--top", type=whole(1), default=10, help="rows in each table (default 10)")
    p.add_argument("--buffer-kb", type=whole(4), default=16384, help="trace buffer per CPU in KiB (default 16384)")
    p.set_defaults(func=run)


def _targets(args: argparse.Namespace) -> tuple[list[int], list[str]]:
    """(pids, command): exactly one of them is non-empty."""
    from ..inspect.ktrace import TargetError, check_pids, tree_of

    if args.tree is not None:
        if args.targets:
            raise TargetError("give either --tree PID or targets, not both")
        return tree_of(check_pids([args.tree])[0]), []
    if not args.targets:
        raise TargetError("nothing to trace: give PIDs, --tree PID, or -- COMMAND")
    if all(t.isdigit() for t in args.targets):
        return check_pids(int(t) for t in args.targets), []
    return [], list(args.targets)


def _open_json(path: str | None) -> IO[str] | None:
    from ..inspect.ktrace import TargetError

    if path is None:
        return None
    if path == "-":
        return sys.stdout
    try:
        return open(path, "w")  # noqa: SIM115 - closed in run()
    except OSError as exc:
        raise TargetError(f"cannot write {path}: {exc.strerror}") from None


def _write_rows(out: IO[str] | None, tracer: Any) -> None:
    """Every event as a JSON line (after the trace: sites are named once, DWARF for the frequent)."""
    if out is None or tracer.attributor is None:
        return
    sym = tracer.attributor.symbolizer
    for a in tracer.rows:
        out.write(json.dumps({"type": "event", **a.to_json(sym)}) + "\n")


def run(args: argparse.Namespace) -> int:
    """Trace until the end; 2 on bad input or when tracing is unavailable."""
    from rich.console import Console

    from ..inspect.ktrace import TargetError, TreeTracer
    from ..inspect.trace_render import render_summary
    from ..linux.tracefs import TraceUnavailable

    try:
        pids, command = _targets(args)
        out = _open_json(args.json)
    except TargetError as exc:
        _error(exc)
        return 2
    tracer = TreeTracer(buffer_kb=args.buffer_kb)
    tracer.keep_rows = out is not None
    snaps: list[Any] = []
    stream = sys.stderr if args.json == "-" else sys.stdout
    console = Console(stderr=args.json == "-", width=None if stream.isatty() else 160)
    status = 0
    try:
        if command:
            tracer.start_command(command)
        else:
            tracer.start(pids)
        if args.html and not command:
            _snapshot(tracer, "trace start", snaps)
        status = _loop(tracer, args, console)
        if args.html:
            _snapshot(tracer, "trace end", snaps)
        tracer.stop()
    except (TargetError, TraceUnavailable) as exc:
        _error(exc)
        return 2
    except KeyboardInterrupt:
        tracer.stop()
    finally:
        tracer.close()
    if out is not None:
        _write_rows(out, tracer)
        out.write(json.dumps(tracer.summary.to_json()) + "\n")
        if out is not sys.stdout:
            out.close()
    render_summary(tracer.summary, console, args.top)
    if args.html:
        _write_html(args.html, tracer, snaps, console)
    return status


def _snapshot(tracer: Any, label: str, snaps: list[Any]) -> None:
    """The live traced processes' views now (for --html); nothing when none is alive."""
    from ..inspect.snapshots import snapshot_of
    from ..observe import procfs

    procs = []
    for pid in sorted(set(tracer.roots) | set(tracer.attributor.forked_at if tracer.attributor else ())):
        try:
            st = procfs.read_stat(pid)
        except Exception:  # noqa: BLE001 - gone
            continue
        if st.state not in ("Z", "X"):
            procs.append((pid, st.ppid, st.name))
    snap = snapshot_of(procs, label) if procs else None
    if snap is not None:
        snaps.append(snap)


def _write_html(path: str, tracer: Any, snaps: list[Any], console: Any) -> None:
    """The report: the snapshots, the kernel's events in the last step (a frame the kernel does not
    name, such as a copy's old one, is None: the page says "unknown")."""
    from ..report.html import write_report

    if not snaps or tracer.events is None:
        console.print("--html: no traced process was alive to take its page maps; no report written")
        return
    events = [e for e in tracer.events if e.kind != "checkpoint"]
    snaps[-1].events = events
    write_report(path, snaps, title="cowscope trace")
    console.print(f"report written to {path} (page maps at {len(snaps)} point(s), {len(events)} kernel events)")


def _loop(tracer: Any, args: argparse.Namespace, console: Any) -> int:
    """Poll until the command ends, every traced process is gone, the duration passes, or Ctrl-C."""
    deadline = None if args.duration is None else time.monotonic() + args.duration
    try:
        while deadline is None or time.monotonic() < deadline:
            tracer.poll()
            if not tracer.alive():
                break
            time.sleep(0.05)  # mappings are read while processes live: poll often
    except KeyboardInterrupt:
        console.print("interrupted: summary of what was traced so far")
    if tracer.child is not None:
        code = tracer.child.poll()
        return 0 if code is None else code
    return 0
