"""Compile the native agent (agent.h, agent_mem.c, agent_thread.c, agent.c, shipped in the package)
on first use.

The three files are compiled as one translation unit (each also compiles on its own): the header
first, then the sources with their `#include "agent.h"` dropped and `#line` markers so the
compiler's messages name the right file and line. The binary goes into a per-user cache.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..native import NativeBuildError, build, cache_dir, find_compiler

__all__ = ["AgentBuildError", "agent_path", "agent_source", "cache_dir", "find_compiler"]


class AgentBuildError(NativeBuildError):
    """The agent could not be compiled (no C compiler, or the compiler failed)."""


#: The agent's sources in compilation order.
AGENT_FILES = ("agent.h", "agent_mem.c", "agent_thread.c", "agent.c")


def agent_source() -> bytes:
    """The agent's C source as shipped in the package, as one translation unit."""
    pkg = resources.files("cowscope.linux")
    parts = []
    for name in AGENT_FILES:
        text = pkg.joinpath(name).read_text(encoding="utf-8").replace('#include "agent.h"\n', "\n")
        parts.append(f'#line 1 "{name}"\n{text}')
    return "".join(parts).encode()


def agent_path() -> Path:
    """Path of the compiled agent for the current source, building it if missing or stale."""
    return build("cowscope-agent", agent_source(), "cowscope's Linux backend compiles a small C agent on first use",
                 ("-O1", "-Wall", "-pthread"), AgentBuildError)


def backend_problem() -> str | None:
    """Why the kernel backend cannot run here (no /proc, the agent does not build), or None."""
    from ..observe.procfs import linux_problem

    if linux_problem() is not None:
        return "needs Linux with /proc"
    try:
        agent_path()
    except AgentBuildError as exc:
        return str(exc)
    return None
