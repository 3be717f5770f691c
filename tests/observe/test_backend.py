"""Both backends satisfy the declared backend interface (observe.backend), member by member.

Method names and signatures (parameter names, order, kinds, defaults) of the model's and the Linux
backend's Machine, Process and File must be those of the Protocols; so must every Protocol method
the tracer (verify.trace) defines itself. Data members and properties are checked on instances.
"""

from __future__ import annotations

import inspect
from typing import Any, Generic, Protocol

import pytest

from cowscope.linux.file import File as LinuxFile
from cowscope.linux.machine import Machine as LinuxMachine
from cowscope.linux.process import Process as LinuxProcess
from cowscope.linux.thread import Thread as LinuxThread
from cowscope.model import File as ModelFile
from cowscope.model import Machine as ModelMachine
from cowscope.model import Process as ModelProcess
from cowscope.model.kernel.thread import Thread as ModelThread
from cowscope.observe import backend
from cowscope.verify.process import TracedProcess
from cowscope.verify.trace import TracedMachine

DUNDERS = {"__enter__", "__exit__", "__len__", "__iter__"}
PAIRS = [(backend.Machine, ModelMachine), (backend.Machine, LinuxMachine),
         (backend.Process, ModelProcess), (backend.Process, LinuxProcess),
         (backend.File, ModelFile), (backend.File, LinuxFile),
         (backend.Thread, ModelThread), (backend.Thread, LinuxThread)]


def members(proto: type) -> dict[str, Any]:
    """name -> the Protocol's function, property, or None for a plain data member."""
    out: dict[str, Any] = {}
    for klass in reversed(proto.__mro__):
        if klass in (Protocol, Generic) or not getattr(klass, "_is_protocol", False):
            continue
        for name in getattr(klass, "__annotations__", {}):
            out.setdefault(name, None)
        for name, value in vars(klass).items():
            if (name.startswith("_") and name not in DUNDERS) or not (
                    inspect.isfunction(value) or isinstance(value, property)):
                continue
            out[name] = value
    return out


def shape(fn: Any) -> list[tuple[str, Any, Any]]:
    """(name, kind, default) of every parameter."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


def drift(proto: type, cls: type, only_defined: bool = False) -> list[str]:
    """Every way `cls` departs from `proto`'s methods: missing, not callable, other signature."""
    out = []
    for name, want in members(proto).items():
        if not inspect.isfunction(want):
            continue
        have = inspect.getattr_static(cls, name, None)
        if have is None:
            if not only_defined:
                out.append(f"{cls.__name__}.{name}: missing")
            continue
        if not inspect.isfunction(have):
            out.append(f"{cls.__name__}.{name}: not a method")
        elif shape(have) != shape(want):
            out.append(f"{cls.__name__}.{name}{inspect.signature(have)} != {inspect.signature(want)}")
    return out


def missing_members(proto: type, obj: object) -> list[str]:
    return [name for name in members(proto) if not hasattr(obj, name)]


@pytest.mark.parametrize(("proto", "cls"), PAIRS, ids=[f"{c.__module__}.{c.__name__}" for _p, c in PAIRS])
def test_methods_match_the_protocol(proto: type, cls: type) -> None:
    assert drift(proto, cls) == []


@pytest.mark.parametrize(("proto", "cls"), [(backend.Machine, TracedMachine), (backend.Process, TracedProcess)])
def test_tracer_methods_match_the_protocol(proto: type, cls: type) -> None:
    """The tracer passes everything else through (__getattr__); what it wraps keeps the signature."""
    assert drift(proto, cls, only_defined=True) == []


def test_the_check_finds_drift() -> None:
    """The drift this interface removed (File.pread with its arguments reversed, mmap(guard=))."""

    class Drifting(LinuxProcess):
        def mmap(self, length: int, prot: str = "rw", shared: bool = False, file: Any = None,  # type: ignore[override]
                 offset: int = 0, addr: int | None = None, fixed: bool = False, guard: bool = True) -> int:
            return 0

        def pagemap(self, addr: int, npages: int) -> list[Any]:  # type: ignore[override]
            return []

    found = drift(backend.Process, Drifting)
    assert len(found) == 2 and any("mmap" in f for f in found) and any("pagemap" in f for f in found)

    class NoTrim:
        pass

    assert "NoTrim.malloc_trim: missing" in drift(backend.Process, NoTrim)


def test_model_instances_have_every_member() -> None:
    with ModelMachine(ram="64MiB") as m:
        p = m.spawn("P")
        f = m.create_file("/f", data=b"x" * 10)
        assert missing_members(backend.Machine, m) == []
        assert missing_members(backend.Process, p) == []
        assert missing_members(backend.File, f) == []
        assert isinstance(m, backend.Machine) and isinstance(p, backend.Process) and isinstance(f, backend.File)
        assert isinstance(m.events, backend.Events)
        assert p.state in backend.STATES


@pytest.mark.kernel
def test_linux_instances_have_every_member() -> None:
    with LinuxMachine() as m:
        p = m.spawn("P")
        f = m.create_file("/f", data=b"x" * 10)
        assert missing_members(backend.Machine, m) == []
        assert missing_members(backend.Process, p) == []
        assert missing_members(backend.File, f) == []
        assert isinstance(m, backend.Machine) and isinstance(p, backend.Process) and isinstance(f, backend.File)
        assert isinstance(m.events, backend.Events)
        assert p.state in backend.STATES
