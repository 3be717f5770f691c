"""cowscope: what fork() does to a process's memory on Linux — model, kernel, inspector.

The everyday names are here: `cowscope.Machine` (the model's machine), `cowscope.Process`,
`cowscope.File`, `cowscope.Image`, and the outcomes (`cowscope.Segfault`, `cowscope.SyscallError`,
...). The real-kernel backend is `cowscope.linux.Machine`; both satisfy the interface declared in
`cowscope.observe.backend`. Names are imported on first use, so `import cowscope` stays cheap (the
command line's --help does not load the model).
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import (
    Aborted,
    CowscopeError,
    OOMKilled,
    ProcessBlocked,
    ProcessGone,
    ProcessKilled,
    Segfault,
    SyscallError,
)

__version__ = "0.1.0"

#: name -> the module it comes from, imported on first use.
_LAZY = {
    "Machine": "cowscope.model",
    "Process": "cowscope.model",
    "File": "cowscope.model",
    "Image": "cowscope.model",
    "Event": "cowscope.observe.events",
    "Mallinfo2": "cowscope.observe.backend",
}
#: subpackages reachable as attributes after a bare `import cowscope`.
_SUBPACKAGES = ("linux", "model", "observe", "verify", "inspect", "report")

__all__ = ["Aborted", "CowscopeError", "OOMKilled", "ProcessBlocked", "ProcessGone", "ProcessKilled",
           "Segfault", "SyscallError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'cowscope' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBPACKAGES})
