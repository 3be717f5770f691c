"""Command-line arguments checked before any work starts: numbers, input files, output paths.

Every check fails as `cowscope COMMAND: error: ...` with exit status 2 (argparse's own usage
error for an argument, `UsageError` for what is checked later), never with a traceback. An output
path is checked up front (its folder exists and is writable, it is not a folder), so a long
`--watch` does not lose its report at the end; a missing folder is an error, never created.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path


class UsageError(Exception):
    """A bad argument or input found after parsing: `cowscope COMMAND: error: ...`, exit 2."""


def whole(least: int = 0, most: int | None = None, what: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number in [least, most]."""
    def check(text: str) -> int:
        try:
            n = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if n < least or (most is not None and n > most):
            span = f"from {least} to {most}" if most is not None else f"at least {least}"
            raise argparse.ArgumentTypeError(f"{what or 'a number'} {span}, got {n}")
        return n
    return check


def seconds(text: str) -> float:
    """An argparse type: a finite positive number of seconds."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(x) or x <= 0:
        raise argparse.ArgumentTypeError(f"a finite positive number of seconds, got {text!r}")
    return x


port = whole(1, 65535, "a TCP port")


def output_file(text: str) -> str:
    """An argparse type: a file cowscope may create or replace (checked now, written later)."""
    problem = output_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def output_problem(text: str) -> str | None:
    """Why `text` cannot be written as a file (None when it can)."""
    if not text:
        return "an empty file name"
    path = Path(text)
    folder = path.parent
    if path.is_dir():
        return f"{text} is a folder, not a file"
    if not folder.is_dir():
        return f"no folder {str(folder)!r} to write {path.name!r} into (it is not created)"
    if path.exists():
        if not os.access(path, os.W_OK):
            return f"{text} is not writable"
    elif not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot create files in {str(folder)!r} (permission denied)"
    return None


def input_file(text: str) -> str:
    """An argparse type: a readable regular file ('-' is standard input)."""
    if text == "-":
        return text
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text} is not readable (permission denied)")
    return text


def read_text(path: str | Path, what: str = "file") -> str:
    """A text file's contents ('-': standard input); UsageError naming the file when it cannot be
    read or is not UTF-8."""
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else Path(path).read_bytes()
    except OSError as e:
        raise UsageError(f"cannot read {what} {path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x})") from None


class OutputFile:
    """A text file written as it goes (a recording, event lines): every line reaches the file at
    once, and a failed write (a full disk) names the file: `FILE: No space left on device`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._f = open(path, "w", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write(self, text: str) -> int:
        try:
            n = self._f.write(text)
            self._f.flush()
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, self.path) from None
        return n

    def flush(self) -> None:
        self.write("")

    def close(self) -> None:
        try:
            self._f.close()
        except OSError:
            pass  # the write that failed has said so
