"""The tracer's processes (verify/process.py): its own bookkeeping leaves no trace in the process."""

from __future__ import annotations

import pytest

from cowscope.errors import SyscallError
from cowscope.model import Machine as ModelMachine
from cowscope.verify.trace import TracedMachine

PAGE = 4096


def _linux():
    from cowscope.linux.machine import Machine

    return Machine()


@pytest.mark.parametrize("backend", ["model", pytest.param("linux", marks=pytest.mark.kernel)])
def test_failed_mmap_leaves_no_guard_reservation(backend: str) -> None:
    """A failed mmap changes nothing (docs/api.md): the PROT_NONE guard reservation the tracer made
    around it goes too: after an EINVAL file offset and (the kernel's overcommit heuristic; the
    model does not refuse by size) after an ENOMEM of 1 TiB."""
    with (ModelMachine(ram="64MiB") if backend == "model" else _linux()) as machine:
        tm = TracedMachine(machine, backend)
        p = tm.spawn("P")
        f = tm.create_file("/d/f", data=b"a" * PAGE)
        before = [(v.start, v.end, v.perms) for v in p.maps()]
        with pytest.raises(SyscallError) as inval:
            p.mmap(PAGE, file=f, offset=1)
        assert inval.value.errno == 22
        if backend == "linux":
            with pytest.raises(SyscallError) as nomem:
                p.mmap(1 << 40)
            assert nomem.value.errno == 12
        assert [(v.start, v.end, v.perms) for v in p.maps()] == before
