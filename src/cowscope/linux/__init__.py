"""The real kernel as a second backend: the model's Machine API driving real agent processes."""

from __future__ import annotations

from typing import Any

__all__ = ["File", "Machine", "Process"]


def __getattr__(name: str) -> Any:
    """Import the backend on first use (it compiles its agent only when a Machine is made)."""
    if name in __all__:
        from . import machine

        return getattr(machine, name)
    raise AttributeError(name)
