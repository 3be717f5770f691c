"""Run a problem on a backend and read every answer from what the backend shows.

The same code drives the model (`cowscope.model.Machine`) and the real kernel
(`cowscope.linux.Machine`) through their shared API: answers are facts of /proc (pagemap,
kpagecount, kpageflags, smaps), bytes read, and malloc's return values, never the model's
internals. The model's event log only adds the kernel path to the reveal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CowscopeError, Segfault
from ..observe.records import PAGE_SIZE
from . import explain, look
from .lang import CODE, Action, Problem, ProblemError, Question, pages_of

if TYPE_CHECKING:
    from ..observe.backend import File, Machine, Process


@dataclass
class Region:
    """An mmap'd region of the problem: where it is and what backs it."""

    addr: int
    npages: int
    file: str = ""
    shared: bool = False


@dataclass
class Answer:
    """One question's answer on one backend."""

    question: Question
    value: str | int | None          # None: this backend cannot show it (see note)
    accepted: tuple[str, ...] = ()   # other values that are right too (e.g. blocks at one address)
    reason: str = ""                 # one line: why
    why: str | None = None           # key of explain.REASONS (outcome questions)
    path: list[str] = field(default_factory=list)   # kernel path the model took
    before: str = ""                 # the region's page strip before and after the access
    after: str = ""
    note: str = ""


@dataclass
class Solution:
    """Every answer of a problem on one backend."""

    backend: str
    answers: list[Answer]
    kpage: bool = True     # PFNs, map counts and page flags were readable
    snapshots: list[Any] = field(default_factory=list)


def solve(problem: Problem, machine: Machine, backend: str = "model", snapshots: bool = False) -> Solution:
    """Run `problem` on a fresh `machine`; ProblemError when a step cannot run as written."""
    return _Run(machine, backend, snapshots).run(problem)


def state_of(problem: Problem, machine: Machine) -> dict[str, str]:
    """Run the problem's actions (questions are not asked) on a fresh machine, then the page strip
    of every private anonymous region in every live process: {"a in P": "#2.0", ...} in order of
    creation. (File and shared regions are left out: how many page-cache pages a read maps
    around the one it needs is the kernel's choice, see docs/linux.md.)"""
    run = _Run(machine, "state", False)
    for n, step in enumerate(problem.steps, 1):
        action = step.action if isinstance(step, Question) else step
        if action is None:
            continue
        try:
            run.act(action)
        except Segfault:
            pass  # the process died of it, as the problem says
        except (CowscopeError, ValueError) as e:
            raise ProblemError(f"statement {n} ({step.text()}): {e}") from None
    state = {}
    for pname, p in run.procs.items():
        if not p.alive:
            continue
        for rname, r in run.regions.items():
            if not (r.file or r.shared):
                state[f"{rname} in {pname}"] = run._strip(p, r)
    return state


class _Run:
    def __init__(self, m: Machine, backend: str, snapshots: bool) -> None:
        self.m = m
        self.backend = backend
        self.procs: dict[str, Process] = {}
        self.regions: dict[str, Region] = {}
        self.blocks: dict[str, tuple[int, int]] = {}
        self.files: dict[str, File] = {}
        self.want_snapshots = snapshots
        self.snaps: list[Any] = []
        self._mark = 0

    def run(self, problem: Problem) -> Solution:
        answers = []
        for n, step in enumerate(problem.steps, 1):
            try:
                if isinstance(step, Question):
                    answers.append(self.question(step))
                    self.snapshot(f"Q{len(answers)}")
                else:
                    self.act(step)
            except (CowscopeError, ValueError) as e:
                if isinstance(e, ProblemError):
                    raise
                raise ProblemError(f"statement {n} ({step.text()}): {e}") from None
        return Solution(self.backend, answers, look.kpage(self.m), self.snaps)

    def snapshot(self, label: str) -> None:
        if not self.want_snapshots:
            return
        from ..observe.snapshot import take

        since = list(self.m.events.since(self._mark))
        self._mark = len(self.m.events)
        self.snaps.append(take(self.m, label, source=self.backend, events=since))

    # -- actions ---------------------------------------------------------------------------
    def act(self, a: Action) -> Any:
        """Perform one action; returns what it returns (read: the byte, malloc: the pointer)."""
        if a.verb == "file":
            data = b"".join(bytes([ord("a") + i]) * PAGE_SIZE for i in range(int(a.args[1])))
            self.files[a.args[0]] = self.m.create_file(f"/learn/{a.args[0]}", data=data)
            return None
        if a.verb == "pwrite":
            letter = a.args[2].lstrip("=").encode()
            for page in pages_of(a.args[1], 64):
                self.m.pwrite(self.files[a.args[0]], page * PAGE_SIZE, letter * PAGE_SIZE)
            return None
        if not self.procs and a.proc:
            self.procs[a.proc] = self.m.spawn(a.proc)
        return getattr(self, f"_{a.verb}")(self.procs[a.proc], *a.args)

    def _mmap(self, p: Process, name: str, npages: str, *flags: str) -> None:
        fname = next((f[5:] for f in flags if f.startswith("file=")), "")
        shared, n = "shared" in flags, int(npages)
        # A PROT_NONE page on each side: the region is one VMA of its own on every backend, so
        # its smaps are its own (the kernel backend places regions this way too).
        reserve = p.mmap((n + 2) * PAGE_SIZE, "")
        addr = p.mmap(n * PAGE_SIZE, "rw", shared=shared, file=self.files.get(fname),
                      addr=reserve + PAGE_SIZE, fixed=True)
        self.regions[name] = Region(addr, n, fname, shared)

    def _munmap(self, p: Process, name: str) -> None:
        r = self.regions[name]
        p.munmap(r.addr, r.npages * PAGE_SIZE)

    def _malloc(self, p: Process, name: str, nbytes: str) -> int:
        ptr = p.malloc(int(nbytes))
        self.blocks[name] = (ptr, int(nbytes))
        return ptr

    def _free(self, p: Process, name: str) -> None:
        p.free(self.blocks[name][0])

    def _write(self, p: Process, name: str, *args: str) -> None:
        letter = ord(args[-1].lstrip("="))
        if name in self.blocks:
            ptr, n = self.blocks[name]
            p.fill(ptr, n, letter)
            return
        r = self.regions[name]
        pages = pages_of(args[0], r.npages)
        if len(pages) == 1:
            p.write(r.addr + pages[0] * PAGE_SIZE, bytes([letter]))
        else:
            p.fill(r.addr + pages[0] * PAGE_SIZE, len(pages) * PAGE_SIZE, letter)

    def _read(self, p: Process, name: str, page: str = "0") -> str:
        addr = self.blocks[name][0] if name in self.blocks else self.regions[name].addr + int(page) * PAGE_SIZE
        byte = p.read(addr, 1)[0]
        return chr(byte) if byte else "0"

    def _fork(self, p: Process, child: str) -> None:
        self.procs[child] = p.fork()

    def _vfork(self, p: Process, child: str) -> None:
        self.procs[child] = p.vfork()

    def _exec(self, p: Process) -> None:
        p.exec()

    def _exit(self, p: Process) -> None:
        p.exit(0)

    def _wait(self, p: Process, child: str) -> None:
        p.wait(self.procs[child])

    def _madvise(self, p: Process, name: str, spec: str, advice: str) -> None:
        r = self.regions[name]
        pages = pages_of(spec, r.npages)
        p.madvise(r.addr + pages[0] * PAGE_SIZE, len(pages) * PAGE_SIZE, advice)

    # -- questions -------------------------------------------------------------------------
    def question(self, q: Question) -> Answer:
        try:
            return getattr(self, f"_q_{q.kind}")(q)
        except look.LookError as e:
            return Answer(q, None, note=f"not shown by {self.backend}: {e}")

    def _events_since(self, mark: int) -> list[Any]:
        return list(self.m.events.since(mark))

    def _q_outcome(self, q: Question) -> Answer:
        a = q.action
        assert a is not None
        p, r = self.procs[a.proc], self.regions[a.args[0]]
        addr = r.addr + int(a.args[1]) * PAGE_SIZE
        before, strip0 = look.look_page(self.m, p, addr), self._strip(p, r)
        mark = len(self.m.events)
        try:
            self.act(a)
            after: look.PageLook | None = look.look_page(self.m, p, addr)
        except Segfault:
            after = None
        path = explain.kernel_path(self._events_since(mark), p.pid)
        write, file_vma = a.verb == "write", bool(r.file) or r.shared
        strip1 = self._strip(p, r) if after is not None else "(killed)"
        try:
            out = explain.outcome(before, after, write, file_vma)
            why = explain.reason(before, file_vma, after is None)
        except look.LookError as e:
            return Answer(q, None, path=path, before=strip0, after=strip1, note=f"not shown: {e}")
        return Answer(q, out, reason=explain.one_line(out, why), why=why, path=path, before=strip0,
                      after=strip1)

    def _strip(self, p: Process, r: Region) -> str:
        try:
            return look.strip(self.m, p, r.addr, r.npages)
        except CowscopeError:
            return ""

    def _q_value(self, q: Question) -> Answer:
        assert q.action is not None
        try:
            value = self.act(q.action)
        except Segfault:
            value = "segv"
        return Answer(q, value, reason=explain.value_reason(value))

    def _q_copies(self, q: Question) -> Answer:
        a = q.action
        assert a is not None
        p = self.procs[a.proc]
        labelled = [(name, r.addr, r.npages) for name, r in self.regions.items()] + look.heap_and_libc(p)
        names = [name for name, _, _ in labelled]
        ranges = [(addr, n) for _, addr, n in labelled]
        before = look.pfn_table(self.m, p, ranges)
        self.act(a)
        after = look.pfn_table(self.m, p, ranges)
        where: dict[str, int] = {}
        for name, b, c in zip(names, before, after):
            n = int(np.count_nonzero((b != 0) & (c != 0) & (b != c)))
            if n:
                where[name] = where.get(name, 0) + n
        return Answer(q, sum(where.values()), reason=explain.copies_reason(a.proc, where))

    def _q_faults(self, q: Question) -> Answer:
        """The access's page faults, from each page's state before it: a load faults on a page
        not present; a store also on the zero page and on an anon page that is not this process's
        own (PG_anon_exclusive clear: shared, or write-protected since a fork)."""
        a = q.action
        assert a is not None
        p, r = self.procs[a.proc], self.regions[a.args[0]]
        pages = pages_of(a.args[1], r.npages)
        faults = 0
        for k in pages:
            before = look.look_page(self.m, p, r.addr + k * PAGE_SIZE)
            if a.verb == "read" or not before.present:
                faults += not before.present
            elif before.zero is None or before.anon_exclusive is None and not before.zero:
                raise look.LookError("whether a present page is writable needs kpageflags (root)")
            else:
                faults += bool(before.zero or not before.anon_exclusive)
        strip0 = self._strip(p, r)
        self.act(a)
        return Answer(q, faults, before=strip0, after=self._strip(p, r),
                      reason=explain.faults_reason(strip0, a.verb == "write", a.proc, faults))

    def _q_addr(self, q: Question) -> Answer:
        a = q.action
        assert a is not None
        earlier = dict(self.blocks)
        ptr = self.act(a)
        same = tuple(name for name, (addr, _) in earlier.items() if addr == ptr)
        value = same[0] if same else "new"
        return Answer(q, value, accepted=same[1:], reason=explain.addr_reason(value, a.args[1]))

    def _region(self, q: Question) -> tuple[Process, int, int]:
        p = self.procs[q.target[0]]
        if q.target[1] == CODE:
            return (p, *look.code_range(p))
        r = self.regions[q.target[1]]
        return p, r.addr, r.npages

    def _q_strip(self, q: Question) -> Answer:
        p, addr, n = self._region(q)
        strip = look.strip(self.m, p, addr, n)
        return Answer(q, strip, reason=explain.strip_reason(strip, q.target[0]))

    def _q_own(self, q: Question) -> Answer:
        p, addr, n = self._region(q)
        own = look.strip(self.m, p, addr, n).count("#")
        why = ("The code is mapped from the page cache and never written: never copied." if q.target[1] == CODE
               else f"Pages only {q.target[0]} maps ('#').")
        return Answer(q, own, reason=why)

    def _smaps_kb(self, q: Question, *fields: str) -> Answer:
        p, addr, n = self._region(q)
        s = look.smaps_of(p, addr)
        kb = sum(s[f] for f in fields)
        strip = look.strip(self.m, p, addr, n)
        return Answer(q, kb, reason=explain.size_reason(q.kind, strip, q.target[0], kb))

    def _q_rss(self, q: Question) -> Answer:
        return self._smaps_kb(q, "Rss")

    def _q_pss(self, q: Question) -> Answer:
        return self._smaps_kb(q, "Pss")

    def _q_uss(self, q: Question) -> Answer:
        return self._smaps_kb(q, "Private_Clean", "Private_Dirty")

    def _q_file(self, q: Question) -> Answer:
        byte = self.m.pread(self.files[q.target[0]], int(q.target[1]) * PAGE_SIZE, 1)[0]
        return Answer(q, chr(byte) if byte else "0", reason=explain.FILE_REASON)
