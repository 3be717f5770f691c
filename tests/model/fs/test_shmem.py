"""Shared anonymous memory (a shmem file per mapping): its frames are freed with its last mapping."""

from __future__ import annotations

import pytest

from cowscope.model import Machine

PS = 4096


@pytest.mark.parametrize("how", ["munmap", "exit"])
def test_shared_anon_frames_freed_with_last_mapping(how: str) -> None:
    m = Machine(allocator="firstfit")
    p = m.spawn()
    a = p.mmap(2 * PS, shared=True)
    p.write(a, b"x")
    c = p.fork()
    assert c.read(a, 1) == b"x"
    c.exit(0)
    before = m.phys.nr_used
    if how == "munmap":
        p.munmap(a, 2 * PS)
    else:
        p.exit(0)
    m.check()
    assert m.meminfo()["Shmem"] == 0
    assert m.phys.nr_used < before
