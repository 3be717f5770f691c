"""Overcommit (mm/acct.py): vm.overcommit_memory 0/1/2, Committed_AS and CommitLimit in meminfo.

Mode 0 is checked against Linux 6.18 by conformance case D19; modes 1 and 2 follow the kernel's
documented semantics (Documentation/mm/overcommit-accounting.rst) and are tested here only: they
cannot be switched on the shared machine the kernel tests run on.
"""

from __future__ import annotations

import errno

import pytest

from cowscope.errors import SyscallError
from cowscope.model import Machine

GiB = 1 << 30
MiB = 1 << 20


def _committed(m: Machine) -> int:
    return m.meminfo()["Committed_AS"] * 1024


def test_heuristic_refuses_single_requests_beyond_ram_and_swap() -> None:
    m = Machine(ram="1GiB", swap="512MiB")
    limit = (m.meminfo()["MemTotal"] + m.meminfo()["SwapTotal"]) * 1024  # the swap header page is not swap
    assert limit == GiB + 512 * MiB - 4096
    p = m.spawn()
    base = _committed(m)
    with pytest.raises(SyscallError) as ei:
        p.mmap(limit + 4096)
    assert ei.value.errno == errno.ENOMEM and _committed(m) == base
    a = p.mmap(limit)                               # RAM + swap: granted, and again: a heuristic
    b = p.mmap(limit)
    assert _committed(m) - base == 2 * limit
    ro = p.mmap(4 * GiB, prot="r")                  # not accounted
    assert _committed(m) - base == 2 * limit
    with pytest.raises(SyscallError):
        p.mprotect(ro, 4 * GiB, "rw")
    p.munmap(a, limit)
    p.munmap(b, limit)
    assert _committed(m) == base
    with pytest.raises(SyscallError):
        p.mmap(2 * GiB, shared=True, prot="r")      # shmem commits whatever the protection
    assert p.malloc(2 * GiB) == 0
    m.check()


def test_charges_follow_the_mappings_through_fork_mremap_brk_and_exit() -> None:
    m = Machine(ram="1GiB")
    base = _committed(m)
    p = m.spawn()
    after_spawn = _committed(m)
    assert after_spawn > base                       # stack, .data, .bss, libc data, TLS
    a = p.mmap(8 * MiB)
    s = p.mmap(4 * MiB, shared=True)
    assert _committed(m) - after_spawn == 12 * MiB
    a = p.mremap(a, 8 * MiB, 16 * MiB)
    assert _committed(m) - after_spawn == 20 * MiB
    c = p.fork()
    assert _committed(m) - after_spawn == 20 * MiB + (after_spawn - base) + 16 * MiB  # shmem once
    old = p.brk()
    p.brk(old + 5 * 4096)
    assert _committed(m) - after_spawn == 20 * MiB + (after_spawn - base) + 16 * MiB + 5 * 4096
    m.check()
    c.exit(0)
    p.munmap(s, 4 * MiB)                            # the last mapping of the shmem object
    p.exit(0)
    assert _committed(m) == base
    m.check()


def test_fork_fails_when_one_accounted_vma_exceeds_the_heuristic() -> None:
    m = Machine(ram="1GiB")
    p = m.spawn()
    a = p.mmap(1536 * MiB, prot="r")
    p.mprotect(a, 768 * MiB, "rw")
    p.mprotect(a + 768 * MiB, 768 * MiB, "rw")      # merges: one 1.5 GiB VM_ACCOUNT VMA
    before = _committed(m)
    with pytest.raises(SyscallError) as ei:
        p.fork()
    assert ei.value.errno == errno.ENOMEM and _committed(m) == before
    assert len(m.live_processes()) == 1
    m.check()


def test_always_overcommit_grants_everything() -> None:
    m = Machine(ram="1GiB", overcommit_memory=1)
    p = m.spawn()
    p.mmap(64 * GiB)
    assert p.malloc(32 * GiB) != 0
    assert _committed(m) >= 96 * GiB


def test_never_overcommit_stops_at_the_commit_limit() -> None:
    m = Machine(ram="1GiB", swap="256MiB", overcommit_memory=2, overcommit_ratio=50)
    assert m.meminfo()["CommitLimit"] == (512 + 256) * 1024 - 4  # RAM * 50% + swap (less its header)
    p = m.spawn()
    room = m.meminfo()["CommitLimit"] * 1024 - _committed(m)
    # the admin reserve (these processes are not CAP_SYS_ADMIN) and a user reserve of
    # total_vm / 32 stay out of reach: a request just below the room fails, a smaller one fits
    with pytest.raises(SyscallError):
        p.mmap(room - 4096)
    a = p.mmap(room - 64 * MiB)
    with pytest.raises(SyscallError):
        p.mmap(64 * MiB)                            # the sum counts in this mode
    assert p.mmap(256 * MiB, prot="r")              # read-only private: never accounted
    p.munmap(a, room - 64 * MiB)
    assert p.mmap(64 * MiB)
    m.check()
    k = Machine(ram="1GiB", overcommit_memory=2, overcommit_kbytes=2 << 20)
    assert k.meminfo()["CommitLimit"] == 2 << 20


def test_bad_overcommit_mode_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="overcommit_memory"):
        Machine(overcommit_memory=3)
