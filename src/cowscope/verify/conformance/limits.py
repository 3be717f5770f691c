"""Limits and protections: the overcommit heuristic, PROT_EXEC-only memory, page-table reclaim.

Facts measured on Linux 6.18 (vm.overcommit_memory=0, a CPU without protection keys). Sizes are
taken from the machine's own meminfo, so the cases hold on any RAM size; big mappings are
unmapped before any checkpoint (the tracer observes regions page by page).
"""

from __future__ import annotations

import errno
from typing import Any

from ...errors import Segfault, SyscallError
from . import PAGE, region, scenario
from .pagecache import PTE_TABLE, table_aligned


def _enomem(m: Any, fn: Any, what: str) -> None:
    exc = m.expect_raises(SyscallError, fn, what)
    m.expect(exc is None or exc.errno == errno.ENOMEM, f"{what}: errno {getattr(exc, 'errno', None)}")


@scenario("D19", "overcommit heuristic: one request larger than RAM + swap is ENOMEM, smaller ones pass")
def overcommit_heuristic(m: Any) -> None:
    mi = m.meminfo()
    limit = (mi["MemTotal"] + mi.get("SwapTotal", 0)) * 1024  # bytes the heuristic allows at once
    p = m.spawn("P")
    _enomem(m, lambda: p.mmap(limit + PAGE), "private writable mmap of RAM + swap + 1 page")
    _enomem(m, lambda: p.mmap(limit + PAGE, shared=True), "shared anonymous mmap, any protection")
    big = p.mmap(limit, prot="rw")                  # exactly the limit: granted
    p.munmap(big, limit)
    ro = p.mmap(2 * limit, prot="r")                # read-only private: not accounted at all
    _enomem(m, lambda: p.mprotect(ro, 2 * limit, "rw"), "mprotect of it to writable")
    half = (limit // 2 + limit // 4) // PAGE * PAGE
    p.mprotect(ro, half, "rw")                      # each part is a request of its own
    p.mprotect(ro + half, half, "rw")               # ... and merges with the first: one VMA
    _enomem(m, lambda: p.fork(), "fork with one accounted VMA larger than RAM + swap")
    p.munmap(ro, 2 * limit)
    m.expect_eq(p.malloc(limit + PAGE), 0, "malloc of more than RAM + swap returns NULL")
    small = region(m, p, 4, fill=1)
    _enomem(m, lambda: p.mremap(small, 4 * PAGE, limit + 8 * PAGE), "mremap growing by more than that")
    old = p.brk()
    m.expect_eq(p.brk(old + limit + 2 * PAGE), old, "brk refuses the same increase")
    c = p.fork()
    m.checkpoint("after the refusals")
    m.expect_eq(m.tokens(c, small, 4), ["S2"] * 4, "a normal fork still works")


@scenario("D20", "PROT_EXEC-only memory is readable on a CPU without protection keys (not writable)")
def exec_only_readable(m: Any) -> None:
    p = m.spawn("P")
    a = region(m, p, 2, prot="x")
    c = p.fork()
    if m.pkeys:  # the execute-only protection key: a data read faults
        m.expect_raises(Segfault, lambda: c.read(a, 1), "read of PROT_EXEC memory (pkeys)")
        return
    m.expect_eq(c.read(a, 2), b"\x00\x00", "read of PROT_EXEC anonymous memory")
    m.checkpoint("read")
    m.expect_eq(m.tokens(c, a, 2), ["Z", "-"], "maps the zero page")
    m.expect_raises(Segfault, lambda: c.write(a, b"x"), "write to PROT_EXEC memory")
    f = m.create_file("/data/d20", data=b"\x90" * PAGE)
    x = p.mmap(PAGE, prot="x", file=f)
    m.expect_eq(p.read(x, 1), b"\x90", "read of a PROT_EXEC file mapping")
    b = region(m, p, 1, fill=0x42)
    p.mprotect(b, PAGE, "x")
    m.expect_eq(p.read(b, 1), b"\x42", "read after mprotect(PROT_EXEC)")


@scenario("D21", "MADV_DONTNEED frees the PTE tables it empties whole (6.14+): VmPTE drops")
def dontneed_frees_page_tables(m: Any) -> None:
    p = m.spawn("P")
    base = table_aligned(m, p, 4 * PTE_TABLE)
    a = p.mmap(4 * PTE_TABLE * PAGE, addr=base, fixed=True)
    p.write(a, b"x")                              # the PMD table and one PTE table
    v0 = p.status().fields["VmPTE"]
    p.fill(a, 4 * PTE_TABLE * PAGE, 1)
    m.expect_eq(p.status().fields["VmPTE"] - v0, 12, "3 more PTE tables")
    p.madvise(a, 4 * PTE_TABLE * PAGE, "dontneed")
    m.expect_eq(p.status().fields["VmPTE"] - v0, -4, "all 4 PTE tables freed (the PMD table stays)")
    p.fill(a, 4 * PTE_TABLE * PAGE, 2)
    p.madvise(a + PAGE, (4 * PTE_TABLE - 2) * PAGE, "dontneed")
    m.expect_eq(p.status().fields["VmPTE"] - v0, 4, "only the 2 tables the range covers whole")
    p.madvise(a, PAGE, "dontneed")                # table 0 held only p0 now
    m.expect_eq(p.status().fields["VmPTE"] - v0, 4, "a table emptied by a partial range stays")
    p.fill(a, PTE_TABLE * PAGE, 3)
    p.madvise(a, PTE_TABLE * PAGE, "free")
    m.expect_eq(p.status().fields["VmPTE"] - v0, 4, "MADV_FREE frees no table")
    p.munmap(a, 4 * PTE_TABLE * PAGE)
