"""`cowscope export`: serve the inspector's figures as Prometheus metrics."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from ..inspect.options import DEFAULT_DUTY, MODES
from .checks import port

if TYPE_CHECKING:  # the inspector (numpy, prometheus_client) is imported by run(), not by --help
    from ..inspect.metrics import Roots

EPILOG = """\
examples:
  cowscope export --port 9750 --tree 1234       a gunicorn master and its workers
  cowscope export --port 9750 --tree --pidfile web=/run/gunicorn.pid --pidfile cache=/run/redis.pid
  curl -s 127.0.0.1:9750/metrics | grep cowscope_process_copied_bytes

Every scrape reads /proc afresh unless that would exceed --max-duty; then the previous sample is
served and cowscope_samples_skipped_total goes up. Every metric has a `root` label (the NAME of
--pidfile NAME=FILE, else the root's pid); a tree whose root is gone has cowscope_tree_up 0 and no
other tree metric. Metric names and alert rules: docs/inspect.md."""


def register(subparsers: Any) -> None:
    """Add the `export` subcommand."""
    p = subparsers.add_parser(
        "export", help="serve inspector figures (RSS/PSS/USS, shared/copied/new pages) as Prometheus metrics",
        description="Serve the inspector's per-process and per-tree figures as Prometheus metrics over HTTP "
        "(/metrics), so the memory sharing of a process tree is watched by the monitoring already in place.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pids", nargs="*", type=int, metavar="PID", help="process ids to export")
    p.add_argument("--pidfile", action="append", default=[], metavar="[NAME=]FILE",
                   help="export the process whose pid FILE holds (gunicorn --pid, uWSGI --pidfile, Redis "
                   "pidfile), read again at every scrape so a restarted server is followed; NAME is its `root` "
                   "label (default: the pid). Repeat for several trees")
    p.add_argument("--port", type=port, required=True, help="TCP port to listen on")
    p.add_argument("--addr", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0 to serve other hosts)")
    p.add_argument("--tree", action="store_true", help="also export every descendant of each PID")
    p.add_argument("--mode", choices=MODES, default="auto",
                   help="exact (root), estimate, summary (smaps_rollup only) or auto (default)")
    p.add_argument("--max-duty", type=float, default=DEFAULT_DUTY, metavar="FRACTION",
                   help=f"most of the wall-clock time spent reading /proc (default {DEFAULT_DUTY})")
    p.set_defaults(func=run)


def roots_of(pids: list[int], pidfiles: list[str]) -> Roots:
    """The exporter's roots: fixed PIDs, and the pids the pid files hold at each call."""
    from ..inspect.tree import read_pidfile

    specs = [(f.split("=", 1) if "=" in f else [None, f]) for f in pidfiles]

    def roots() -> tuple[list[int], dict[int, str], list[str]]:
        out, labels, down = list(pids), {p: str(p) for p in pids}, []
        for name, path in specs:
            try:
                pid = read_pidfile(path)
            except ValueError:
                down.append(name or path)
                continue
            out.append(pid)
            labels[pid] = name or str(pid)
        return out, labels, down
    return roots


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; 2 if the exporter cannot start."""
    from ..inspect.metrics import serve
    from ..inspect.run import DutyCycle
    from ..inspect.sample import Sampler
    from ..inspect.tree import read_pidfile
    from ..observe.procfs import linux_problem
    from ..report.plain import visible

    problem = linux_problem()
    if problem:
        print(f"cowscope export: {problem}", file=sys.stderr)
        return 2
    if not args.pids and not args.pidfile:
        print("cowscope export: name at least one PID or --pidfile", file=sys.stderr)
        return 2
    roots = roots_of(args.pids, args.pidfile)
    try:
        for f in args.pidfile:
            read_pidfile(f.split("=", 1)[-1])
        pids, _labels, _down = roots()
        sampler = Sampler(pids, tree=args.tree, mode=args.mode)
        first = sampler.sample()
        if not first.processes:
            for m in first.missed:
                print(f"cowscope export: {visible(m.reason)}", file=sys.stderr)
            return 2
        server, _thread, _collector = serve(sampler, args.port, args.addr, DutyCycle(args.max_duty), roots)
    except (OSError, ValueError) as exc:
        print(f"cowscope export: {visible(str(exc))}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"cowscope export: serving {len(first.processes)} processes on http://{host}:{port}/metrics "
          f"(mode {sampler.mode}); Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()
        return 0
