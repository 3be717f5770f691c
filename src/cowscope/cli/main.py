"""`cowscope` entry point: builds the parser from the subcommand modules and dispatches."""

from __future__ import annotations

import argparse
import sys
from typing import Protocol

from .. import __version__
from ..native import NativeBuildError
from . import bench, demo, export, inspect, learn, malloc, run, trace, verify


class Subcommand(Protocol):
    """What a subcommand module provides (one module per subcommand under cowscope.cli)."""

    def register(self, sub: argparse._SubParsersAction) -> None:
        """Add the subcommand's parser to `sub`, with `func=run` as its default."""

    def run(self, args: argparse.Namespace) -> int:
        """Do the subcommand's work; the exit code."""


#: The subcommands, in the order --help lists them. Imported statically: a missing or broken
#: subcommand module is an ImportError at once. Heavy imports (the model, numpy, plotly) belong
#: inside each module's run(), so that --help stays fast.
COMMANDS: tuple[Subcommand, ...] = (demo, run, bench, malloc, verify, inspect, export, trace, learn)


def version_text() -> str:
    return f"cowscope {__version__} (model of Linux 6.x x86-64 memory; malloc: ptmalloc2 as in glibc 2.36)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cowscope",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps --version on one line
        description="Understand and measure what fork() does to a process's memory on Linux:\n"
        "an executable model of the kernel's memory system, the real kernel side by side,\n"
        "and an inspector for live process trees.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except NativeBuildError as e:  # no compiler, a failed build, an unsafe build cache
        print(f"cowscope {args.command}: error: {e}", file=sys.stderr)
        return 2


def entry() -> None:
    sys.exit(main())
