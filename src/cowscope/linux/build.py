"""Compile the native agent (agent.c, shipped in the package) into a per-user cache on first use."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path


class AgentBuildError(RuntimeError):
    """The agent could not be compiled (no C compiler, or the compiler failed)."""


def agent_source() -> bytes:
    """The agent's C source as shipped in the package."""
    return resources.files("cowscope.linux").joinpath("agent.c").read_bytes()


def cache_dir() -> Path:
    """Per-user cache directory: $COWSCOPE_CACHE, else $XDG_CACHE_HOME/cowscope, else ~/.cache/cowscope."""
    if os.environ.get("COWSCOPE_CACHE"):
        return Path(os.environ["COWSCOPE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cowscope"


def find_compiler() -> str:
    """$CC, else cc, gcc or clang on PATH; AgentBuildError with a clear message when none exists."""
    for name in filter(None, (os.environ.get("CC"), "cc", "gcc", "clang")):
        path = shutil.which(name.split()[0])
        if path:
            return path
    raise AgentBuildError(
        "cowscope's Linux backend compiles a small C agent on first use, but no C compiler was found "
        "(looked for $CC, cc, gcc, clang). Install one (e.g. `apt-get install gcc`) or set CC.")


def agent_path() -> Path:
    """Path of the compiled agent for the current source, building it if missing or stale."""
    src = agent_source()
    digest = hashlib.sha256(src).hexdigest()[:16]
    out = cache_dir() / f"cowscope-agent-{digest}"
    if out.exists() and os.access(out, os.X_OK):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    cc = find_compiler()
    src_file = out.parent / f"agent-{digest}.c"
    src_file.write_bytes(src)
    tmp = out.parent / f".cowscope-agent-{digest}.{os.getpid()}"
    cmd = [cc, "-O1", "-Wall", "-o", str(tmp), str(src_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AgentBuildError(f"building the agent failed ({' '.join(cmd)}):\n{proc.stderr}")
    os.replace(tmp, out)  # atomic: concurrent builders never see a half-written binary
    for old in out.parent.glob("cowscope-agent-*"):
        if old != out:
            old.unlink(missing_ok=True)
    return out
