"""`import cowscope` gives the everyday names, and stays cheap."""

from __future__ import annotations

import subprocess
import sys

import cowscope
import cowscope.errors
import cowscope.linux
import cowscope.model


def test_everyday_names_are_the_models_and_the_errors() -> None:
    assert cowscope.Machine is cowscope.model.Machine
    assert cowscope.Process is cowscope.model.Process and cowscope.Image is cowscope.model.Image
    for name in ("Segfault", "SyscallError", "Aborted", "OOMKilled", "ProcessGone", "ProcessBlocked",
                 "ProcessKilled", "CowscopeError"):
        assert getattr(cowscope, name) is getattr(cowscope.errors, name)
    assert set(cowscope.__all__) <= set(dir(cowscope))


def test_the_readme_example_through_the_package() -> None:
    m = cowscope.Machine(ram="64MiB")
    parent = m.spawn("server")
    buf = parent.malloc(64 * 1024)
    parent.fill(buf, 64 * 1024, 0x41)
    child = parent.fork()
    mark = len(m.events)
    child.write(buf, b"x")  # one page copied, in the child
    assert [(e.kind, e.pid) for e in m.events.since(mark)] == [("cow-copy", child.pid)]
    try:
        child.read(0, 1)
    except cowscope.Segfault as exc:
        assert exc.address == 0
    else:
        raise AssertionError("no Segfault")


def test_linux_backend_stays_where_it_is() -> None:
    assert cowscope.linux.Machine.__module__ == "cowscope.linux.machine"
    assert cowscope.Machine is not cowscope.linux.Machine


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        cowscope.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def test_import_is_cheap() -> None:
    """A bare import loads neither the model nor numpy; cowscope.linux is reachable as an attribute."""
    code = ("import sys, cowscope; heavy = [m for m in ('numpy', 'cowscope.model') if m in sys.modules]; "
            "print(heavy); print(cowscope.linux.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[:2] == ["[]", "cowscope.linux"]
