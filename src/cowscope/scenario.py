"""Scenario files: a Python file with `def scenario(m):` driving a machine through the public API.

Loading and running report the scenario's own file and line on any error — a syntax error, a
missing `scenario` function, an exception it raised, or a process it let die — never a
traceback of cowscope's internals.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CowscopeError
from .observe.backend import Machine

if TYPE_CHECKING:
    from .observe.snapshot import Snapshot


class ScenarioError(Exception):
    """A scenario could not be loaded or failed; the message names its file and line."""


def load_scenario(path: str | Path) -> Callable[[Machine], Any]:
    """Compile and execute the file, return its `scenario` function."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ScenarioError(f"{path}: cannot read scenario: {e.strerror or e}") from None
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ScenarioError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x})") from None
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as e:
        raise ScenarioError(f"{path}:{e.lineno}: syntax error: {e.msg}") from None
    namespace: dict[str, Any] = {"__name__": "cowscope_scenario", "__file__": str(path)}
    try:
        exec(code, namespace)
    except Exception as e:  # noqa: BLE001 - any error in the user's module is reported
        raise ScenarioError(_located(e, path, "while loading")) from None
    fn = namespace.get("scenario")
    if not callable(fn):
        raise ScenarioError(f"{path}:1: no function `def scenario(m):` in the file")
    return fn


def _located(exc: BaseException, path: Path, when: str = "") -> str:
    """'file:line: <error>' using the innermost frame that belongs to the scenario file."""
    line = 0
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename) == path:
            line = frame.lineno or 0
    kind = type(exc).__name__
    where = f" {when}" if when else ""
    return f"{path}:{line}:{where} {kind}: {exc}"


@dataclass
class ScenarioRun:
    """What a scenario run produced: a snapshot per checkpoint, the machine, and how it ended."""

    machine: Machine
    snapshots: list[Snapshot] = field(default_factory=list)
    error: str | None = None
    outcome: str | None = None  # a process death the scenario did not catch (e.g. SIGSEGV)
    #: (start, end, perms, path) of each spawned process's mappings right after spawn: its program
    #: image, which reports fold unless the scenario changed it
    images: dict[int, frozenset[tuple[int, int, str, str]]] = field(default_factory=dict)


class _Spawning:
    """The machine as the scenario sees it: every call goes to the machine; `spawn` also notes
    the new process's mappings (its image) in the run."""

    def __init__(self, machine: Machine, run: ScenarioRun) -> None:
        self._machine = machine
        self._run = run

    def spawn(self, *args: Any, **kwargs: Any) -> Any:
        p = self._machine.spawn(*args, **kwargs)
        self._run.images[p.pid] = frozenset((v.start, v.end, v.perms, v.path) for v in p.maps())
        return p

    def __getattr__(self, name: str) -> Any:
        return getattr(self._machine, name)


def run_scenario(path: str | Path, machine: Machine, source: str = "model", pages: bool = True) -> ScenarioRun:
    """Run the file's scenario on `machine`, taking a snapshot at every m.checkpoint(label)."""
    from .observe.snapshot import take  # numpy: not for `cowscope --help`

    path = Path(path)
    fn = load_scenario(path)
    run = ScenarioRun(machine)
    mark = [0]

    def on_checkpoint(label: str) -> None:
        events = machine.events
        since = list(events.since(mark[0]))
        mark[0] = len(events)
        run.snapshots.append(take(machine, label, source=source, pages=pages, events=since))

    machine.on_checkpoint = on_checkpoint
    try:
        fn(_Spawning(machine, run))
    except CowscopeError as e:
        run.outcome = _located(e, path)
    except Exception as e:  # noqa: BLE001 - the scenario's own bug, reported with its line
        run.error = _located(e, path)
    finally:
        machine.on_checkpoint = None
    if not run.snapshots and run.error is None:
        on_checkpoint("end")
    return run
