"""`cowscope` entry point: builds the parser from the subcommand modules and dispatches."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Protocol

from .. import __version__
from ..native import NativeBuildError
from . import bench, demo, export, inspect, learn, malloc, run, trace, verify
from .checks import UsageError


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
    except (NativeBuildError, UsageError) as e:  # no compiler, an unsafe build cache, bad input
        return _error(args.command, str(e), 2)
    except OSError as e:  # a file that cannot be read or written (a full disk, a folder, ...)
        where = f"{e.filename}: " if e.filename else ""
        return _error(args.command, f"{where}{e.strerror or e}", 2)
    except Exception as e:  # noqa: BLE001 - cowscope's own bug: one line, exit 1
        if os.environ.get("COWSCOPE_TRACEBACK"):
            raise
        return _error(args.command, f"internal error: {type(e).__name__}: {e} "
                      "(COWSCOPE_TRACEBACK=1 shows where)", 1)


def _error(command: str, message: str, status: int) -> int:
    """`cowscope COMMAND: error: MESSAGE` on stderr (as plain text); the exit status."""
    from ..report.plain import visible

    print(f"cowscope {command}: error: {visible(message)}", file=sys.stderr)
    return status


def entry() -> None:
    sys.exit(main())
