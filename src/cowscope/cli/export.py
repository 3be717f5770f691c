"""`cowscope export`: serve the inspector's figures as Prometheus metrics."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ..inspect.metrics import serve
from ..inspect.run import DEFAULT_DUTY, DutyCycle
from ..inspect.sample import MODES, Sampler
from ..observe.procfs import linux_problem

EPILOG = """\
examples:
  cowscope export --port 9750 --tree 1234       a gunicorn master and its workers
  curl -s 127.0.0.1:9750/metrics | grep cowscope_process_copied_bytes

Every scrape reads /proc afresh unless that would exceed --max-duty; then the previous sample is
served and cowscope_samples_skipped_total goes up. Metric names: docs/inspect.md."""


def register(subparsers: Any) -> None:
    """Add the `export` subcommand."""
    p = subparsers.add_parser(
        "export", help="serve inspector figures (RSS/PSS/USS, shared/copied/new pages) as Prometheus metrics",
        description="Serve the inspector's per-process and per-tree figures as Prometheus metrics over HTTP "
        "(/metrics), so the memory sharing of a process tree is watched by the monitoring already in place.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pids", nargs="+", type=int, metavar="PID", help="process ids to export")
    p.add_argument("--port", type=int, required=True, help="TCP port to listen on")
    p.add_argument("--addr", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; 0.0.0.0 to serve other hosts)")
    p.add_argument("--tree", action="store_true", help="also export every descendant of each PID")
    p.add_argument("--mode", choices=MODES, default="auto",
                   help="exact (root), estimate, summary (smaps_rollup only) or auto (default)")
    p.add_argument("--max-duty", type=float, default=DEFAULT_DUTY, metavar="FRACTION",
                   help=f"most of the wall-clock time spent reading /proc (default {DEFAULT_DUTY})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; 2 if the exporter cannot start."""
    problem = linux_problem()
    if problem:
        print(f"cowscope export: {problem}", file=sys.stderr)
        return 2
    try:
        sampler = Sampler(args.pids, tree=args.tree, mode=args.mode)
        first = sampler.sample()
        if not first.processes:
            for m in first.missed:
                print(f"cowscope export: {m.reason}", file=sys.stderr)
            return 2
        server, _thread, _collector = serve(sampler, args.port, args.addr, DutyCycle(args.max_duty))
    except (OSError, ValueError) as exc:
        print(f"cowscope export: {exc}", file=sys.stderr)
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
