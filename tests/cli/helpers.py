"""Running the real CLI in a subprocess, as a user does."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cowscope(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`python -m cowscope ARGS` with its output captured."""
    return subprocess.run([sys.executable, "-m", "cowscope", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


#: An SGR escape sequence (colours, bold, dim): its parameters.
SGR = re.compile(r"\x1b\[([0-9;]*)m")


def in_terminal(*args: str, columns: int, env: dict[str, str] | None = None) -> str:
    """`python -m cowscope ARGS` on a pseudo-terminal `columns` wide (no COLUMNS in the environment:
    the width is the terminal's): everything it drew, escape sequences included, newlines as `\\n`."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    base = {k: v for k, v in os.environ.items()
            if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TERM")}
    proc = subprocess.Popen([sys.executable, "-m", "cowscope", *args], cwd=ROOT, stdin=slave, stdout=slave,
                            stderr=slave, env=base | {"TERM": "xterm-256color"} | (env or {}))
    os.close(slave)
    chunks = []
    try:
        while data := _read(master):
            chunks.append(data)
        proc.wait(timeout=300)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the terminal's other side closed
        return b""


def colours(out: str) -> list[str]:
    """The colour parameters (foreground or background) among the SGR sequences of `out`."""
    found = []
    for params in SGR.findall(out):
        codes = params.split(";")
        found += [c for c in codes if c in ("38", "48") or (len(c) == 2 and c[0] in "3489" and c[1] != "9")
                  or (len(c) == 3 and c.startswith("10"))]
    return found


def without_escapes(out: str) -> str:
    """`out` with its SGR sequences removed: the text a reader sees."""
    return SGR.sub("", out)
