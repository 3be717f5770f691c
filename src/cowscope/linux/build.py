"""Compile the native agent (agent.c, shipped in the package) into a per-user cache on first use."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..native import NativeBuildError, build, cache_dir, find_compiler

__all__ = ["AgentBuildError", "agent_path", "agent_source", "cache_dir", "find_compiler"]


class AgentBuildError(NativeBuildError):
    """The agent could not be compiled (no C compiler, or the compiler failed)."""


def agent_source() -> bytes:
    """The agent's C source as shipped in the package."""
    return resources.files("cowscope.linux").joinpath("agent.c").read_bytes()


def agent_path() -> Path:
    """Path of the compiled agent for the current source, building it if missing or stale."""
    return build("cowscope-agent", agent_source(), "cowscope's Linux backend compiles a small C agent on first use",
                 ("-O1", "-Wall"), AgentBuildError)
