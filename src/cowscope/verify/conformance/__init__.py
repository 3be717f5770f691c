"""The conformance suite: scenarios that run on any backend and assert the kernel's measured facts.

Each scenario is a function taking a machine (a `cowscope.verify.trace.TracedMachine` wrapping the
model's or the kernel's Machine). It drives processes through the shared API, calls
`m.checkpoint(label)` where both backends are compared, and states the facts of
`shared/reference/kernel-conformance.md` with `m.expect*` (a failed fact is recorded, not raised).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...observe.backend import File
    from ..process import TracedProcess
    from ..trace import TracedMachine

PAGE = 4096
#: A conformance case: drives a traced machine, states facts with m.expect*.
ScenarioFn = Callable[["TracedMachine"], None]


@dataclass(frozen=True)
class Scenario:
    """One conformance case: id (the reference's C-number where there is one), title, function."""

    id: str
    title: str
    fn: ScenarioFn
    module: str


SCENARIOS: list[Scenario] = []


def scenario(sid: str, title: str) -> Callable[[ScenarioFn], ScenarioFn]:
    """Register a conformance scenario."""

    def deco(fn: ScenarioFn) -> ScenarioFn:
        if any(s.id == sid for s in SCENARIOS):
            raise ValueError(f"duplicate scenario id {sid}")
        SCENARIOS.append(Scenario(sid, title, fn, fn.__module__.rsplit(".", 1)[-1]))
        return fn

    return deco


def all_scenarios() -> list[Scenario]:
    """Every registered scenario, in file order."""
    from . import (  # noqa: F401  (registration)
        anon,
        files,
        kpage,
        ksm,
        lifecycle,
        limits,
        lock,
        madv,
        malloc,
        pagecache,
        shared,
        swap,
        thp,
        threads,
        vma,
    )

    return list(SCENARIOS)


def region(m: TracedMachine, p: TracedProcess, npages: int, fill: int | None = None, **kw: Any) -> int:
    """mmap npages of private anon RW (guarded by the tracer); optionally write `fill` to every byte."""
    a = p.mmap(npages * PAGE, **kw)
    if fill is not None:
        p.fill(a, npages * PAGE, fill)
    return a


def pattern_file(m: TracedMachine, name: str, npages: int) -> File:
    """A file whose page i is filled with byte 0x61+i ("a", "b", ...)."""
    return m.create_file(name, data=b"".join(bytes([0x61 + i]) * PAGE for i in range(npages)))


def touch_pages(p: TracedProcess, a: int, npages: int) -> None:
    """Read the first byte of every page (each page faulted on its own, no reliance on fault-around)."""
    for i in range(npages):
        p.read(a + i * PAGE, 1)
