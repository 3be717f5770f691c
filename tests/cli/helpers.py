"""Running the real CLI in a subprocess, as a user does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def cowscope(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`python -m cowscope ARGS` with its output captured."""
    return subprocess.run([sys.executable, "-m", "cowscope", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)
