"""Random sequences of process and memory operations, checked against a naive eager-copy reference.

The reference model (`RPage`, `RProc`) is deliberately simple: every process owns a full copy of
every page it has written (dict page -> bytearray), copied entirely at fork ("the child gets an
exact copy"); shared mappings share one bytearray; files are bytearrays. The model under test
shares frames copy-on-write. Every read must return the same bytes, every SIGSEGV must happen in
both, and after every step the model's invariants and /proc views must agree with each other.

Tracked mappings live in an arena far from everything the kernel or malloc places, one slot per
mmap with unmapped gaps in between, so the reference knows what every arena address holds. Some
are 2 MiB-aligned MADV_HUGEPAGE regions (transparent huge pages, split by later partial changes);
the machine has swap, so MADV_PAGEOUT moves pages out and every later access brings them back, and
KSM scans merge identical pages: contents are what the reference checks, whatever the page is.

Processes make threads (each with its own stack mapping; with ptmalloc, its own arena), which
malloc, free (blocks of any thread), read and write, fork (the child's only thread is the caller's
copy) and exit; status Threads: and /proc/PID/task follow.

Each example draws one of the registered allocators (firstfit, ptmalloc). Profiles: "ci" (500
examples of up to 25 steps, the `slow` test, about 2 minutes of CPU), "quick" (30 examples, the default
of test_stateful_quick) and "deep" (300 examples of up to 50 steps: HYPOTHESIS_PROFILE=deep pytest
-k stateful_quick). Steps are short because every step re-checks everything: m.check() and the
/proc views cost ~4 ms per live process.
"""

from __future__ import annotations

import errno
import os
import random
import signal
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from cowscope.errors import Segfault, SyscallError
from cowscope.model import Machine, ProcessBlocked
from cowscope.model.machine import _allocators
from cowscope.observe.records import PM_FILE, PM_GUARD_REGION, PM_PFN_MASK, PM_PRESENT, PM_SWAP

PS = 4096
ARENA = 0x2000_0000_0000
SLOT = 32 * PS          # one tracked mapping per slot: at most 8 pages, the rest stays unmapped
HUGE = 2 << 20
HUGE_ARENA = ARENA + (1 << 39)  # 2 MiB-aligned slots of 4 MiB for the huge-page regions
MAX_LIVE = 3
MAX_THREADS = 3         # threads made by pthread_create per process
PROTS = ("", "r", "w", "rw", "rx", "rwx")
ALLOCATORS = [a for a in ("firstfit", "ptmalloc") if a in _allocators()]

settings.register_profile("ci", max_examples=500, stateful_step_count=25, deadline=None,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("deep", max_examples=300, stateful_step_count=50, deadline=None,
                          suppress_health_check=list(HealthCheck))
settings.register_profile("quick", max_examples=30, stateful_step_count=15, deadline=None,
                          suppress_health_check=list(HealthCheck))


def _readable(prot: str) -> bool:
    """x86: a read needs PROT_READ or PROT_WRITE (write implies read)."""
    return "r" in prot or "w" in prot


@dataclass(eq=False)
class RFile:
    """A file (or the shmem object behind a shared anonymous mapping) as a bytearray."""

    data: bytearray
    handle: object | None = None   # the model's File (None for shmem)

    @property
    def npages(self) -> int:
        return len(self.data) // PS


@dataclass(eq=False)
class RPage:
    """One page of a process in the reference: attributes plus its private copy, if any."""

    prot: str
    shared: bool
    file: RFile | None      # backing file (shmem object for shared anon)
    pgoff: int = 0
    data: bytearray | None = None   # private copy; None = zeros (anon) or the file's bytes
    dontfork: bool = False
    wipeonfork: bool = False

    def content(self) -> bytes:
        if self.data is not None:
            return bytes(self.data)
        if self.file is not None:
            return bytes(self.file.data[self.pgoff * PS:(self.pgoff + 1) * PS])
        return bytes(PS)

    def store(self, off: int, chunk: bytes) -> None:
        if self.shared:
            assert self.file is not None
            base = self.pgoff * PS + off
            self.file.data[base:base + len(chunk)] = chunk
            return
        if self.data is None:
            self.data = bytearray(self.content())
        self.data[off:off + len(chunk)] = chunk

    def make_private(self) -> None:
        """A write fault without a store (touch, populate_write): a private page gets its copy."""
        if not self.shared and self.data is None:
            self.data = bytearray(self.content())

    def forked(self) -> RPage | None:
        """The child's page: an eager copy; shared stays shared; DONTFORK absent; WIPEONFORK empty."""
        if self.dontfork:
            return None
        data = None
        if self.data is not None and not self.wipeonfork:
            data = bytearray(self.data)
        return RPage(self.prot, self.shared, self.file, self.pgoff, data, False, self.wipeonfork)


@dataclass(eq=False)
class RProc:
    """A process in the reference: its pages, its malloc'd buffers, its expected fate."""

    proc: object
    pages: dict[int, RPage] = field(default_factory=dict)
    allocs: dict[int, bytearray] = field(default_factory=dict)
    regions: list[tuple[int, int]] = field(default_factory=list)  # every slot ever mapped
    status: tuple[str, int] | None = None
    threads: list[object] = field(default_factory=list)  # running threads made by pthread_create

    @property
    def pid(self) -> int:
        return self.proc.pid  # type: ignore[attr-defined]

    def forked(self, child: object) -> RProc:
        pages = {}
        for va, pg in self.pages.items():
            c = pg.forked()
            if c is not None:
                pages[va] = c
        return RProc(child, pages, {p: bytearray(b) for p, b in self.allocs.items()}, list(self.regions))

    def access(self, addr: int, n: int, write: bool, data: bytes | None = None,
               make_private: bool = False) -> tuple[bytes, int | None]:
        """Read/write n bytes chunk by chunk; stops at the first inaccessible page (its address)."""
        out = bytearray()
        pos = 0
        while pos < n:
            va = addr + pos
            off = va % PS
            k = min(n - pos, PS - off)
            pg = self.pages.get(va - off)
            ok = pg is not None and ("w" in pg.prot if write else _readable(pg.prot))
            if not ok:
                return bytes(out), va
            assert pg is not None
            if write and data is not None:
                pg.store(off, data[pos:pos + k])
            elif write and make_private:
                pg.make_private()
            else:
                out += pg.content()[off:off + k]
            pos += k
        return bytes(out), None


def _payload(seed: int, n: int) -> bytes:
    """Test bytes: uniform for even seeds (exercises one-value pages), random for odd."""
    if seed % 2 == 0:
        return bytes(((seed // 2) % 256,)) * n
    return random.Random(seed).randbytes(n)


class MemoryMachine(RuleBasedStateMachine):
    """The model and the eager reference, driven in lockstep."""

    def __init__(self) -> None:
        super().__init__()
        self.m: Machine
        self.procs: dict[int, RProc] = {}     # not yet reaped (live or zombie)
        self.files: list[RFile] = []
        self.next_slot = 0
        self.next_huge = 0
        self.touched: set[int] = set()         # pids whose own views changed in this step

    # -- helpers -------------------------------------------------------------------------------
    def live(self) -> list[RProc]:
        return [r for r in self.procs.values() if r.status is None]

    def pick(self, i: int) -> RProc:
        live = self.live()
        r = live[i % len(live)]
        self.touched.add(r.pid)
        return r

    def died(self, r: RProc, status: tuple[str, int]) -> None:
        """Mark r dead: orphan its children (they are reaped by init)."""
        r.status = status
        r.pages, r.allocs = {}, {}
        assert all(t.state == "exited" for t in r.threads)  # type: ignore[attr-defined]
        r.threads = []
        p = r.proc
        assert not p.alive and p.exit_status == status  # type: ignore[attr-defined]
        parent = self.procs.get(p.ppid)  # type: ignore[attr-defined]
        if parent is None or parent.status is not None:
            assert p.state == "X"  # type: ignore[attr-defined]
            self.procs.pop(r.pid)
        else:
            assert p.state == "Z"  # type: ignore[attr-defined]
        for c in list(self.procs.values()):
            if c.proc.ppid == r.pid and c is not r:  # type: ignore[attr-defined]
                raise AssertionError("child still names a dead parent")
        for c in list(self.procs.values()):
            if c.status is not None and c.proc.state == "X":  # type: ignore[attr-defined]
                self.procs.pop(c.pid)

    def segv(self, r: RProc, exc: Segfault, expect_addr: int | None) -> None:
        assert expect_addr is not None, f"model segfaulted at {exc.address:#x}, reference did not"
        assert exc.address == expect_addr, f"segv at {exc.address:#x}, reference at {expect_addr:#x}"
        assert exc.pid == r.pid
        self.died(r, ("signal", signal.SIGSEGV))

    def region_range(self, r: RProc, ri: int, off: int, n: int) -> tuple[int, int]:
        """(first page, page count): inside a still-mapped slot for off < 16, else across a slot's edges."""
        start, npages = r.regions[ri % len(r.regions)]
        if off < 16:
            live = [g for g in r.regions if any(g[0] + k * PS in r.pages for k in range(g[1]))]
            start, npages = (live or r.regions)[ri % len(live or r.regions)]
            o = off % npages
            return start + o * PS, 1 + (n - 1) % (npages - o)
        return start + (off % (npages + 2) - 1) * PS, n

    def byte_range(self, r: RProc, ri: int, off: int, n: int) -> int:
        start, npages = r.regions[ri % len(r.regions)]
        return start - 64 + off % ((npages * PS) + 128)

    # -- processes -----------------------------------------------------------------------------
    @initialize(allocator=st.sampled_from(ALLOCATORS),
                seeds=st.lists(st.integers(0, 2**16), min_size=2, max_size=2),
                sizes=st.lists(st.integers(1, 6), min_size=2, max_size=2))
    def setup(self, allocator: str, seeds: list[int], sizes: list[int]) -> None:
        """A machine with one of the registered allocators, two files and one process."""
        self.m = Machine(allocator=allocator, swap="64MiB")
        for i, (seed, npages) in enumerate(zip(seeds, sizes)):
            data = b"".join(_payload(seed + k, PS) for k in range(npages))
            handle = self.m.create_file(f"/data/f{i}", data=data)
            self.files.append(RFile(bytearray(data), handle))
        self.spawn()
        self.mmap(0, "anon", 4, "rw", 0, 0, seeds[0] | 1)       # some memory with bytes in it

    @precondition(lambda self: len(self.live()) < MAX_LIVE)
    @rule()
    def spawn(self) -> None:
        p = self.m.spawn(f"p{len(self.procs)}")
        self.procs[p.pid] = RProc(p)
        self.touched.add(p.pid)

    @precondition(lambda self: 0 < len(self.live()) < MAX_LIVE)
    @rule(i=st.integers(0, 7))
    def fork(self, i: int) -> None:
        r = self.pick(i)
        child = r.proc.fork()  # type: ignore[attr-defined]
        assert child.ppid == r.pid and child.alive
        self.procs[child.pid] = r.forked(child)
        self.touched.add(child.pid)

    @precondition(lambda self: self.live())
    @rule(i=st.integers(0, 7), ri=st.integers(0, 15), off=st.integers(0, 1 << 16),
          n=st.integers(1, 2 * PS), seed=st.integers(0, 1000), then=st.sampled_from(["exec", "exit"]))
    def vfork(self, i: int, ri: int, off: int, n: int, seed: int, then: str) -> None:
        """vfork; the child writes into the parent's memory, then execs or exits."""
        r = self.pick(i)
        p = r.proc
        v = p.vfork()  # type: ignore[attr-defined]
        assert p.state == "D"  # type: ignore[attr-defined]
        with pytest.raises(ProcessBlocked):
            p.read(p.addrs["text"], 1)  # type: ignore[attr-defined]
        vref = RProc(v)
        self.procs[v.pid] = vref
        self.touched.add(v.pid)
        if r.regions:
            addr = self.byte_range(r, ri, off, n)
            data = _payload(seed, n)
            _, bad = r.access(addr, n, True, data)  # the child's stores land in the parent's memory
            try:
                v.write(addr, data)
            except Segfault as e:
                self.segv(vref, e, bad)
                assert p.state == "R"  # type: ignore[attr-defined]
                return
            assert bad is None, f"reference expected SIGSEGV at {bad:#x}"
        if then == "exec":
            v.exec()
        else:
            v.exit(seed)
            self.died(vref, ("exit", seed & 0xFF))
        assert p.state == "R"  # type: ignore[attr-defined]

    @precondition(lambda self: self.live())
    @rule(i=st.integers(0, 7), code=st.integers(0, 300), how=st.sampled_from(["exit", "exec"]))
    def exit(self, i: int, code: int, how: str = "exit") -> None:
        """exit(code), or execve of the default image (a fresh address space)."""
        r = self.pick(i)
        if how == "exec":
            r.proc.exec()  # type: ignore[attr-defined]
            assert all(t.state == "exited" for t in r.threads)  # type: ignore[attr-defined]
            r.pages, r.allocs, r.regions, r.threads = {}, {}, [], []
            return
        r.proc.exit(code)  # type: ignore[attr-defined]
        self.died(r, ("exit", code & 0xFF))

    @precondition(lambda self: self.live())
    @rule(i=st.integers(0, 7))
    def wait(self, i: int) -> None:
        """Reap a zombie child; a running child blocks; no child is ECHILD."""
        r = self.pick(i)
        kids = [c for c in self.procs.values() if c.proc.ppid == r.pid and c is not r]  # type: ignore
        zombies = [c for c in kids if c.status is not None]
        if zombies:
            c = zombies[0]
            assert r.proc.wait(c.proc) == (c.pid, c.status)  # type: ignore[attr-defined]
            assert c.proc.state == "X"  # type: ignore[attr-defined]
            del self.procs[c.pid]
        elif kids:
            with pytest.raises(ProcessBlocked):
                r.proc.wait(kids[0].proc)  # type: ignore[attr-defined]
        else:
            with pytest.raises(SyscallError):
                r.proc.wait()  # type: ignore[attr-defined]

    # -- mappings ------------------------------------------------------------------------------
    @precondition(lambda self: self.live())
    @rule(i=st.integers(0, 7), kind=st.sampled_from(["anon", "shanon", "file", "shfile"]),
          npages=st.integers(1, 8), prot=st.sampled_from(PROTS), fi=st.integers(0, 1),
          foff=st.integers(0, 5), seed=st.one_of(st.none(), st.integers(0, 1000)))
    def mmap(self, i: int, kind: str, npages: int, prot: str, fi: int, foff: int,
             seed: int | None = None) -> None:
        """mmap in a fresh arena slot; with a seed, write bytes all over it (if writable)."""
        r = self.pick(i)
        hint = ARENA + self.next_slot * SLOT
        self.next_slot += 1
        shared = kind.startswith("sh")
        rf: RFile | None = None
        pgoff = 0
        if kind.endswith("file"):
            rf = self.files[fi]
            pgoff = foff % rf.npages
            npages = min(npages, rf.npages - pgoff)  # stay inside the file (no SIGBUS past EOF)
        elif kind == "shanon":
            rf = RFile(bytearray(npages * PS))
        a = r.proc.mmap(npages * PS, prot=prot, shared=shared,  # type: ignore[attr-defined]
                        file=rf.handle if rf is not None else None, offset=pgoff * PS, addr=hint)
        assert a == hint, f"mmap ignored a free hint {hint:#x}: got {a:#x}"
        for k in range(npages):
            r.pages[a + k * PS] = RPage(prot, shared, rf, pgoff + k if rf is not None else 0)
        r.regions.append((a, npages))
        if seed is not None and "w" in prot:
            self._access(r, a, npages * PS, "write", seed | 1)

    @precondition(lambda self: self.live())
    @rule(i=st.integers(0, 7), touch=st.sampled_from(["none", "read", "write"]), seed=st.integers(0, 1000))
    def mmap_huge(self, i: int, touch: str, seed: int) -> None:
        """A 2 MiB-aligned MADV_HUGEPAGE region: its first read maps the huge zero page, its first
        write a 2 MiB folio; later partial munmap/mprotect/madvise split it."""
        r = self.pick(i)
        hint = HUGE_ARENA + self.next_huge * 2 * HUGE
        self.next_huge += 1
        a = r.proc.mmap(HUGE, prot="rw", addr=hint)  # type: ignore[attr-defined]
        assert a == hint, f"mmap ignored a free hint {hint:#x}: got {a:#x}"
        r.proc.madvise(a, HUGE, "hugepage")  # type: ignore[attr-defined]
        for k in range(HUGE // PS):
            r.pages[a + k * PS] = RPage("rw", False, None, 0)
        r.regions.append((a, HUGE // PS))
        if touch != "none":
            self._access(r, a + (seed % 512) * PS, 8, "write" if touch == "write" else "read", seed | 1)

    @precondition(lambda self: self.live())
    @rule()
    def ksm_scan(self) -> None:
        """ksmd merges identical pages of MADV_MERGEABLE areas: no byte may change."""
        self.m.ksm_scan()
        self.touched.update(self.procs)

    @precondition(lambda self: any(r.regions for r in self.live()))
    @rule(i=st.integers(0, 7), ri=st.integers(0, 15), off=st.integers(0, 31), n=st.integers(1, 10))
    def munmap(self, i: int, ri: int, off: int, n: int) -> None:
        r = self.pick(i)
        if not r.regions:
            return
        start, n = self.region_range(r, ri, off, n)
        r.proc.munmap(start, n * PS)  # type: ignore[attr-defined]
        for k in range(n):
            r.pages.pop(start + k * PS, None)

    @precondition(lambda self: any(r.regions for r in self.live()))
    @rule(i=st.integers(0, 7), ri=st.integers(0, 15), off=st.integers(0, 31), n=st.integers(1, 10),
          prot=st.sampled_from(PROTS))
    def mprotect(self, i: int, ri: int, off: int, n: int, prot: str) -> None:
        r = self.pick(i)
        if not r.regions:
            return
        start, n = self.region_range(r, ri, off, n)
        vas = [start + k * PS for k in range(n)]
        # Linux (do_mprotect_pkey): ENOMEM if the start is unmapped; else the VMAs up to the first
        # hole change, then ENOMEM
        changed = 0
        while changed < n and vas[changed] in r.pages:
            changed += 1
        if changed < n:
            with pytest.raises(SyscallError) as ei:
                r.proc.mprotect(start, n * PS, prot)  # type: ignore[attr-defined]
            assert ei.value.errno == errno.ENOMEM
        else:
            r.proc.mprotect(start, n * PS, prot)  # type: ignore[attr-defined]
        for va in vas[:changed]:
            r.pages[va].prot = prot

    @precondition(lambda self: any(r.regions for r in self.live()))
    @rule(i=st.integers(0, 7), ri=st.integers(0, 15), off=st.integers(0, 31), n=st.integers(1, 10),
          advice=st.sampled_from(["dontneed", "dontfork", "dofork", "wipeonfork", "keeponfork", "free",
                                  "populate_read", "populate_write", "pageout", "cold", "hugepage",
                                  "nohugepage", "mergeable", "unmergeable"]),
          then_fork=st.booleans())
    def madvise(self, i: int, ri: int, off: int, n: int, advice: str, then_fork: bool = False) -> None:
        """madvise a range; then_fork forks the process right after (DONTFORK/WIPEONFORK at work)."""
        r = self.pick(i)
        if not r.regions:
            return
        self._madvise(r, ri, off, n, advice)
        if then_fork and r.status is None and len(self.live()) < MAX_LIVE:
            self.fork(self.live().index(r))

    def _madvise(self, r: RProc, ri: int, off: int, n: int, advice: str) -> None:
        """The reference of madvise_walk_vmas: the mapped parts in address order; EINVAL at the first
        part the advice cannot apply to, POPULATE_* stops at the first hole; ENOMEM after a hole."""
        start, n = self.region_range(r, ri, off, n)
        pages = [r.pages.get(start + k * PS) for k in range(n)]
        raw = r.proc.pagemap_raw(start, n)  # type: ignore[attr-defined]
        swapped = ((raw & PM_SWAP) != 0) & ((raw & PM_GUARD_REGION) == 0)
        err = 0
        for pg, out in zip(pages, swapped.tolist(), strict=True):
            if pg is None:
                err = errno.ENOMEM
                if advice.startswith("populate"):
                    break
                continue
            if advice in ("wipeonfork", "free") and (pg.shared or pg.file is not None):
                err = errno.EINVAL
                break
            if advice == "populate_write" and "w" not in pg.prot or \
                    advice == "populate_read" and not _readable(pg.prot):
                err = errno.EINVAL
                break
            if advice == "dontneed" or advice == "free" and out:  # MADV_FREE drops swap entries
                pg.data = None if not pg.shared else pg.data
            elif advice in ("dontfork", "dofork"):
                pg.dontfork = advice == "dontfork"
            elif advice in ("wipeonfork", "keeponfork"):
                pg.wipeonfork = advice == "wipeonfork"
            elif advice == "populate_write":
                pg.make_private()
        if err:
            with pytest.raises(SyscallError) as ei:
                r.proc.madvise(start, n * PS, advice)  # type: ignore[attr-defined]
            assert ei.value.errno == err, f"madvise {advice}: errno {ei.value.errno}, reference {err}"
        else:
            r.proc.madvise(start, n * PS, advice)  # type: ignore[attr-defined]

    # -- memory access -------------------------------------------------------------------------
    def _access(self, r: RProc, addr: int, n: int, op: str, seed: int = 0) -> None:
        p = r.proc
        data = _payload(seed, n) if op in ("write", "fill") else None
        if op == "fill":
            data = bytes((seed % 256,)) * n
        want, bad = r.access(addr, n, op in ("write", "fill", "wtouch"), data, make_private=op == "wtouch")
        try:
            if op == "read":
                got = p.read(addr, n)  # type: ignore[attr-defined]
                assert got == want, f"read {n} bytes at {addr:#x}: model and reference differ"
            elif op == "write":
                p.write(addr, data)  # type: ignore[attr-defined]
            elif op == "fill":
                p.fill(addr, n, seed % 256)  # type: ignore[attr-defined]
            else:
                p.touch(addr, n, write=op == "wtouch")  # type: ignore[attr-defined]
        except Segfault as e:
            self.segv(r, e, bad)
            return
        assert bad is None, f"{op} at {addr:#x}: reference expected SIGSEGV at {bad:#x}"

    @precondition(lambda self: any(r.regions for r in self.live()))
    @rule(i=st.integers(0, 7), ri=st.integers(0, 15), off=st.integers(0, 1 << 16),
          n=st.integers(1, 3 * PS),
          op=st.sampled_from(["read", "write", "fill", "touch", "wtouch", "read_all"]),
          seed=st.integers(0, 1000))
    def access(self, i: int, ri: int, off: int, n: int, op: str, seed: int) -> None:
        """Read/write/fill/touch bytes in and around a slot; read_all reads a slot's readable start."""
        r = self.pick(i)
        if not r.regions:
            return
        if op != "read_all":
            self._access(r, self.byte_range(r, ri, off, n), n, op, seed)
            return
        start, npages = r.regions[ri % len(r.regions)]
        readable = [r.pages.get(start + k * PS) for k in range(npages)]
        k = 0
        while k < npages and readable[k] is not None and _readable(readable[k].prot):  # type: ignore
            k += 1
        if k:
            self._access(r, start, k * PS, "read")

    @precondition(lambda self: self.live())
    @rule(fi=st.integers(0, 1), off=st.integers(0, 6 * PS), n=st.integers(1, PS), seed=st.integers(0, 99))
    def pwrite(self, fi: int, off: int, n: int, seed: int) -> None:
        """write(2) to a file: shared mappings and unwritten private pages see it."""
        rf = self.files[fi]
        off %= len(rf.data)
        n = min(n, len(rf.data) - off)
        data = _payload(seed, n)
        self.m.pwrite(rf.handle, off, data)
        rf.data[off:off + n] = data
        assert self.m.pread(rf.handle, off, n) == data

    # -- malloc --------------------------------------------------------------------------------
    @precondition(lambda self: self.live())
    @rule(i=st.integers(0, 7), size=st.one_of(st.integers(1, 600), st.integers(1, 40000),
                                               st.integers(130000, 200000)),
          k=st.integers(0, 63), op=st.sampled_from(["malloc", "malloc", "free", "read", "write"]),
          seed=st.integers(0, 1000))
    def heap(self, i: int, size: int, k: int, op: str, seed: int) -> None:
        """malloc (and fill) a buffer, or free, read or write one malloc'd before."""
        r = self.pick(i)
        if op == "malloc" or not r.allocs:
            self.malloc(r, size, seed)
        else:
            self.use_alloc(r, k, op, seed)

    def malloc(self, r: RProc, size: int, seed: int, caller: object | None = None) -> None:
        p = caller or r.proc
        ptr = p.malloc(size)  # type: ignore[attr-defined]
        assert ptr and ptr % 16 == 0, f"malloc({size}) = {ptr:#x}"
        assert p.malloc_usable_size(ptr) >= size  # type: ignore[attr-defined]
        for q, b in r.allocs.items():
            assert ptr + size <= q or q + len(b) <= ptr, f"malloc({size}) = {ptr:#x} overlaps {q:#x}"
        data = _payload(seed, size)
        p.write(ptr, data)  # type: ignore[attr-defined]
        r.allocs[ptr] = bytearray(data)

    def use_alloc(self, r: RProc, k: int, op: str, seed: int, caller: object | None = None) -> None:
        ptr = sorted(r.allocs)[k % len(r.allocs)]
        buf = r.allocs[ptr]
        p = caller or r.proc
        if op == "free":
            p.free(ptr)  # type: ignore[attr-defined]
            del r.allocs[ptr]
        elif op == "read":
            assert p.read(ptr, len(buf)) == bytes(buf), f"malloc'd buffer {ptr:#x} differs"  # type: ignore
        else:
            off = seed % len(buf)
            data = _payload(seed, min(len(buf) - off, 3000))
            p.write(ptr + off, data)  # type: ignore[attr-defined]
            buf[off:off + len(data)] = data

    # -- threads -------------------------------------------------------------------------------
    @precondition(lambda self: any(len(r.threads) < MAX_THREADS for r in self.live()))
    @rule(i=st.integers(0, 7), by_thread=st.booleans())
    def pthread_create(self, i: int, by_thread: bool) -> None:
        """A new thread (made by the initial thread or by another thread): its own stack mapping,
        one more task."""
        r = self.pick(i)
        if len(r.threads) >= MAX_THREADS:
            return
        creator = r.threads[0] if by_thread and r.threads else r.proc
        t = creator.pthread_create()  # type: ignore[attr-defined]
        lo, hi = t.stack_range()
        assert hi - lo == (8 << 20) + PS and t.alive and t.process is r.proc
        r.threads.append(t)

    @precondition(lambda self: any(r.threads for r in self.live()))
    @rule(i=st.integers(0, 7), ti=st.integers(0, 3),
          size=st.one_of(st.integers(1, 600), st.integers(1, 40000), st.integers(130000, 200000)),
          k=st.integers(0, 63), op=st.sampled_from(["malloc", "malloc", "free", "read", "write"]),
          seed=st.integers(0, 1000))
    def thread_heap(self, i: int, ti: int, size: int, k: int, op: str, seed: int) -> None:
        """malloc (in the thread's arena), or free (any block: cross-thread frees too), read or
        write a malloc'd block, as one of the process's threads."""
        r = self.pick(i)
        if not r.threads:
            return
        t = r.threads[ti % len(r.threads)]
        if op == "malloc" or not r.allocs:
            self.malloc(r, size, seed, caller=t)
        else:
            self.use_alloc(r, k, op, seed, caller=t)

    @precondition(lambda self: any(r.threads for r in self.live()) and len(self.live()) < MAX_LIVE)
    @rule(i=st.integers(0, 7), ti=st.integers(0, 3))
    def thread_fork(self, i: int, ti: int) -> None:
        """fork from a thread: the child has one thread (the caller's copy) and a copy of memory,
        the other threads' stacks and arenas included."""
        r = self.pick(i)
        if not r.threads:
            return
        child = r.threads[ti % len(r.threads)].fork()  # type: ignore[attr-defined]
        assert child.ppid == r.pid and child.alive and child.tasks() == [child.pid]
        self.procs[child.pid] = r.forked(child)
        self.touched.add(child.pid)

    @precondition(lambda self: any(r.threads for r in self.live()))
    @rule(i=st.integers(0, 7), ti=st.integers(0, 3), join=st.booleans())
    def thread_exit(self, i: int, ti: int, join: bool) -> None:
        """A thread returns from its start routine (its tcache back to the arenas), maybe joined."""
        r = self.pick(i)
        if not r.threads:
            return
        t = r.threads.pop(ti % len(r.threads))
        t.pthread_exit()  # type: ignore[attr-defined]
        assert t.state == "exited" and t.tid not in r.proc.tasks()  # type: ignore[attr-defined]
        if join:
            r.proc.pthread_join(t)  # type: ignore[attr-defined]
            assert t.state == "joined"  # type: ignore[attr-defined]

    # -- invariants ----------------------------------------------------------------------------
    @invariant()
    def consistent(self) -> None:
        """m.check(), the /proc views against each other, and the eager reference's frame bound."""
        m = self.m
        m.check()
        zero = m.zero_pfns
        ptes_per_pfn: dict[int, int] = {}
        pss_total = 0
        eager = 0
        for r in self.live():
            p = r.proc
            assert p.alive  # type: ignore[attr-defined]
            assert p.status().threads == 1 + len(r.threads) == len(p.tasks())  # type: ignore[attr-defined]
            roll = p.smaps_rollup().fields  # type: ignore[attr-defined]
            vmrss = p.status().fields["VmRSS"]  # type: ignore[attr-defined]
            assert vmrss == roll["Rss"], f"pid {r.pid}: VmRSS {vmrss} != smaps_rollup Rss {roll['Rss']}"
            if r.pid in self.touched:  # smaps is the costly view: for the processes this step used
                rss = sum(e.fields["Rss"] for e in p.smaps())  # type: ignore[attr-defined]
                assert rss == vmrss, f"pid {r.pid}: sum of smaps Rss {rss} != VmRSS {vmrss}"
            pss_total += roll["Pss"]
            got: dict[int, tuple[str, str, int]] = {}
            maps = p.maps()  # type: ignore[attr-defined]
            for lo, hi in _clusters(maps):
                raw = p.pagemap_raw(lo, (hi - lo) // PS)  # type: ignore[attr-defined]
                present = (raw & PM_PRESENT) != 0
                pfns = (raw & PM_PFN_MASK)[present].tolist()
                files = ((raw & PM_FILE) != 0)[present].tolist()
                in_arena = ARENA <= lo < ARENA + (1 << 40)
                for pfn, is_file in zip(pfns, files):
                    if pfn in zero:
                        continue
                    ptes_per_pfn[pfn] = ptes_per_pfn.get(pfn, 0) + 1
                    if not in_arena and not is_file:
                        eager += 1  # untracked private anon page: its own frame in an eager model
            for v in maps:
                if ARENA <= v.start < ARENA + (1 << 40):
                    for k in range((v.end - v.start) // PS):
                        got[v.start + k * PS] = (v.perms, v.path, v.offset + k * PS if v.inode else 0)
            want = {va: (_perms(pg), _path(pg), pg.pgoff * PS if pg.file is not None else 0)
                    for va, pg in r.pages.items()}
            assert got == want, f"pid {r.pid}: arena mappings differ from the reference"
            self.peek_contents(r)
            eager += sum(1 for pg in r.pages.values() if not pg.shared and pg.data is not None)
        resident = len(ptes_per_pfn)
        if ptes_per_pfn:
            counts = m.kpagecount_array(list(ptes_per_pfn))
            assert counts.tolist() == list(ptes_per_pfn.values()), "kpagecount != PTEs mapping the frame"
        nptes = sum(ptes_per_pfn.values())
        nlive = len(self.live())
        assert resident * 4 - nlive - (nptes // 4096 + 1) <= pss_total <= resident * 4, \
            f"sum of Pss {pss_total} kB vs {resident} resident frames"
        mi = m.meminfo()
        regular_cache = (mi["Cached"] - mi["Shmem"]) // 4
        mine_cached = sum(len(rf.handle.page_cache) for rf in self.files)  # type: ignore[union-attr]
        assert all(len(rf.handle.page_cache) <= rf.npages for rf in self.files)  # type: ignore
        shm = {id(pg.file): pg.file.npages for r in self.live() for pg in r.pages.values()
               if pg.shared and pg.file is not None and pg.file.handle is None}
        eager += regular_cache - mine_cached + sum(rf.npages for rf in self.files) + sum(shm.values())
        # a write into an untouched huge region allocates the whole 2 MiB folio at once
        eager += sum(n for r in self.live() for _a, n in r.regions if n == HUGE // PS)
        assert m.phys.nr_used <= eager, f"CoW model uses {m.phys.nr_used} frames, eager copy {eager}"
        self.touched.clear()

    def peek_contents(self, r: RProc) -> None:
        """Without faulting anything in: present pages hold the reference's bytes, and no private
        copy with data was lost (a fault would refill it from zeros or the file)."""
        m = self.m
        p = r.proc
        for start, npages in r.regions:
            raw = p.pagemap_raw(start, npages)  # type: ignore[attr-defined]
            for k in range(npages):
                pg = r.pages.get(start + k * PS)
                if pg is None:
                    assert not raw[k] & PM_PRESENT, f"pid {r.pid}: page {start + k * PS:#x} unmapped yet present"
                    continue
                want = pg.content()
                if raw[k] & PM_PRESENT:
                    got = _frame_bytes(m, int(raw[k] & PM_PFN_MASK))
                elif raw[k] & PM_SWAP and not raw[k] & PM_GUARD_REGION:
                    got = _swapped_bytes(m, int(raw[k] >> 5) & ((1 << 50) - 1))
                elif pg.shared:
                    continue  # lives in the page cache; files are compared whole below
                elif pg.file is not None:
                    got = bytes(pg.file.data[pg.pgoff * PS:(pg.pgoff + 1) * PS])
                else:
                    got = bytes(PS)
                assert got == want, f"pid {r.pid}: page {start + k * PS:#x} holds other bytes than the reference"
        for ptr, buf in r.allocs.items():
            first, last = ptr & ~(PS - 1), (ptr + len(buf) + PS - 1) & ~(PS - 1)
            raw = p.pagemap_raw(first, (last - first) // PS)  # type: ignore[attr-defined]
            assert np.all(raw & PM_PRESENT), f"pid {r.pid}: malloc'd buffer {ptr:#x} not resident"
            mem = b"".join(_frame_bytes(m, int(e & PM_PFN_MASK)) for e in raw)
            assert mem[ptr - first:ptr - first + len(buf)] == buf, f"pid {r.pid}: malloc'd {ptr:#x} differs"
        for rf in self.files:
            assert m.pread(rf.handle, 0, len(rf.data)) == rf.data, "file contents differ from the reference"

    def teardown(self) -> None:
        if not hasattr(self, "m"):
            return
        """Everyone exits: only the page cache of regular files may still hold frames."""
        for r in self.live():
            r.proc.exit(0)  # type: ignore[attr-defined]
        m = self.m
        m.check()
        mi = m.meminfo()
        assert mi["Shmem"] == 0 and mi["AnonPages"] == 0, f"frames leaked after exit: {mi}"
        cached = sum(len(f.page_cache) for f in m.files.values())
        assert m.phys.nr_used == cached == mi["Cached"] // 4, \
            f"{m.phys.nr_used} frames in use after every process exited, page cache holds {cached}"


def _frame_bytes(m: Machine, pfn: int) -> bytes:
    """The 4 KiB a frame holds (test helper: reads physical memory like /dev/mem, no fault)."""
    return bytes(PS) if pfn in m.zero_pfns else m.phys.page_bytes(pfn)


def _swapped_bytes(m: Machine, slot: int) -> bytes:
    """What a swap slot holds: its frame in the swap cache, or what was written to the swap area."""
    assert m.swap is not None
    pfn = m.swap.cache.get(slot)
    if pfn is not None:
        return m.phys.page_bytes(pfn)
    stored = m.swap.store[slot]
    return bytes((stored,)) * PS if isinstance(stored, int) else bytes(stored)


def _clusters(maps: list) -> list[tuple[int, int]]:
    """Address ranges covering the VMAs, neighbours less than 1 MiB apart joined (fewer pagemap reads)."""
    out: list[list[int]] = []
    for v in maps:
        if out and v.start - out[-1][1] < (1 << 20):
            out[-1][1] = v.end
        else:
            out.append([v.start, v.end])
    return [(lo, hi) for lo, hi in out]


def _perms(pg: RPage) -> str:
    return ("r" if "r" in pg.prot else "-") + ("w" if "w" in pg.prot else "-") + \
        ("x" if "x" in pg.prot else "-") + ("s" if pg.shared else "p")


def _path(pg: RPage) -> str:
    """The maps path column the page's mapping shows."""
    if pg.file is None:
        return ""
    if pg.file.handle is None:
        return "/dev/zero (deleted)"
    return pg.file.handle.path  # type: ignore[attr-defined]


@pytest.mark.slow
def test_stateful_ci() -> None:
    """The CI run: 500 examples of up to 25 steps, each on one of the registered allocators."""
    run = MemoryMachine.TestCase
    run.settings = settings.get_profile("ci")
    run().runTest()


def test_stateful_quick() -> None:
    """A short random run for local use (HYPOTHESIS_PROFILE=ci makes it the full one)."""
    run = MemoryMachine.TestCase
    run.settings = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))
    run().runTest()
