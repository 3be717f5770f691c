"""`cowscope` entry point: builds the parser from the subcommand modules and dispatches."""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__

#: Subcommand modules under cowscope.cli, in the order --help lists them. Each module has
#: `register(subparsers)` that adds its parser and sets `func=run` (run(args) -> exit code).
COMMANDS = ("demo", "run", "bench", "malloc", "verify", "inspect", "export")


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
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.{name}":
                continue  # subcommand not built yet
            raise
        module.register(sub)
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


def entry() -> None:
    sys.exit(main())
