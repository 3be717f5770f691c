"""Random differential scenarios: seeded op sequences run on the model and the kernel, then compared.

A generated scenario draws from every call the two backends share: mmap of private and shared
anonymous memory and of files (private, shared, with offsets, any protection, some regions big
enough for more than 702 distinct frames), reads and writes, fork, vfork then exec or exit, exec,
exit, wait, munmap (whole or leaving holes), mprotect, madvise (also over holes and the guard
pages around a region), mremap (also of locked regions), mlock/munlock (also over holes),
brk growth by sbrk, glibc's malloc family, and read(2)/write(2) of files, cached or cold, mixed
with their mappings. Each process only uses addresses it has, so every op is legal on both
backends or fails the same way: a difference is a model/kernel disagreement to look at.

What the generator avoids, because the two backends cannot agree on it by construction (each is
listed in `AVOIDED`): read(2) of a cold file (it leaves readahead markers whose asynchronous
readahead the kernel does with large folios and real I/O timing), swap (a global device), and
MADV_COLD/PAGEOUT (reclaim order). Placement is not left to the kernels: the tracer puts every
region, also one mremap moves, on a 2 MiB boundary between guard pages on both backends.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import CowscopeError
from .process import TracedProcess
from .trace import TracedMachine

PAGE = 4096
ADVICE = ("dontneed", "dontfork", "dofork", "wipeonfork", "keeponfork", "free", "populate_read",
          "populate_write", "hugepage", "nohugepage", "normal", "random", "sequential", "willneed")
PROTS = ("r", "rw", "", "x", "rx")

#: The operations a random scenario draws from, with their weights.
OPS = {"mmap": 4, "write": 8, "read": 4, "touch": 2, "fork": 2, "vfork": 1, "exit": 1, "exec": 1,
       "wait": 1, "madvise": 3, "mprotect": 2, "munmap": 1, "mremap": 2, "mlock": 2, "munlock": 1,
       "checkpoint": 2, "malloc": 4, "free": 2, "malloc_misc": 1, "sbrk": 1, "file": 3}
MAX_PROCS = 10

AVOIDED = {
    "read(2) of a cold file": "it marks a page PG_readahead; the asynchronous readahead a fault on "
    "it starts uses large folios and real I/O, whose timing decides what fault-around maps",
    "swap, MADV_COLD, MADV_PAGEOUT": "swap is a global device (the conformance cases W01-W12 "
    "cover it); reclaim order is not reproducible across runs",
}


@dataclass
class Region:
    """A range a generated process mapped: address and pages (always between the tracer's guard
    pages: it places new regions and regions mremap moves alike on both backends)."""

    addr: int
    npages: int
    locked: bool = False


def random_scenario(seed: int, steps: int = 48) -> Callable[[TracedMachine], None]:
    """A scenario of `steps` random operations over up to MAX_PROCS processes, their regions,
    files and malloc'd blocks; deterministic for a seed."""

    def scenario(m: TracedMachine) -> None:
        run = _Run(m, seed)
        for step in range(steps):
            if not run.step(step):
                break

    scenario.__name__ = f"random_{seed}"
    return scenario


class _Run:
    """One random scenario's state: its generator, files, processes, their regions and blocks."""

    def __init__(self, m: TracedMachine, seed: int) -> None:
        self.m = m
        self.seed = seed
        self.rng = random.Random(seed)
        self.files: list[object] = []
        for _ in range(2):
            self.files.append(self._new_file(cached=True))
        self.cold: set[str] = set()  # files that started cold and were never read whole
        self.procs = [m.spawn("P")]
        self.regions: dict[str, list[Region]] = {"P": []}
        self.blocks: dict[str, list[int]] = {"P": []}  # live malloc blocks per process key

    def _new_file(self, cached: bool) -> object:
        rng = self.rng
        n = rng.choice((1, 3, 6, 17, 40))
        k = len(self.files)
        data = b"".join(bytes([(0x41 + k * 7 + j) & 0xFF]) * PAGE for j in range(n))
        name = f"/data/r{self.seed}-{k}"
        return self.m.create_file(name, data=data, cached=cached)

    def step(self, step: int) -> bool:
        """One random operation by a random live process (False when none is left)."""
        live = [p for p in self.procs if p.alive and p.state != "D"]
        if not live:
            return False
        p = self.rng.choice(live)
        have = self.regions.setdefault(p.key, [])
        op = self.rng.choices(list(OPS), weights=list(OPS.values()))[0]
        try:
            if op == "mmap" or (not have and op not in ("file", "malloc", "fork", "checkpoint")):
                have.append(self._map(p))
            elif op in ("fork", "vfork", "exit", "exec", "wait", "checkpoint"):
                self._process_op(op, p, step)
            elif op in ("malloc", "free", "malloc_misc", "sbrk"):
                self._malloc_op(op, p)
            elif op == "file":
                self._file_op(p)
            else:
                self._memory_op(op, p, self.rng.choice(have), have)
        except CowscopeError:
            pass  # logged by the tracer on both backends; the scenario goes on
        return True

    # --- mappings ----------------------------------------------------------------------------

    def _map(self, p: TracedProcess) -> Region:
        """A new region: private anon (now and then 700-1100 pages), shared anon, or a file."""
        rng = self.rng
        n = rng.randint(1, 8) if rng.random() < 0.9 else rng.randint(700, 1100)
        prot = "rw" if rng.random() < 0.75 else rng.choice(PROTS)
        kind = rng.random()
        if kind < 0.15:
            return Region(p.mmap(n * PAGE, prot=prot, shared=True), n)
        if kind < 0.35:
            f = rng.choice(self.files)
            npages = max(1, f.size // PAGE)
            off = rng.randrange(npages)
            n = min(n, npages - off + rng.randint(0, 2))  # sometimes a page or two past EOF
            return Region(p.mmap(n * PAGE, prot=prot, file=f, offset=off * PAGE, shared=rng.random() < 0.5), n)
        return Region(p.mmap(n * PAGE, prot=prot, populate=rng.random() < 0.1), n)

    def _range(self, reg: Region) -> tuple[int, int]:
        """A page range of the region; sometimes reaching into its guard pages."""
        rng = self.rng
        i = rng.randrange(reg.npages)
        k = rng.randint(1, min(reg.npages - i, 64))
        if rng.random() < 0.15:  # over the PROT_NONE guards around it
            return reg.addr - PAGE, reg.npages + 2
        return reg.addr + i * PAGE, k

    def _memory_op(self, op: str, p: TracedProcess, reg: Region, have: list[Region]) -> None:
        """`op` on a page range of region `reg`."""
        rng = self.rng
        at, k = self._range(reg)
        if op == "write":
            p.fill(at, min(k, 48) * PAGE, rng.randrange(256))
        elif op == "read":
            p.read(at, min(k, 16) * PAGE)
        elif op == "touch":
            p.touch(at, k * PAGE, write=rng.random() < 0.5)
        elif op == "madvise":
            p.madvise(at, k * PAGE, rng.choice(ADVICE))
        elif op == "mprotect":
            p.mprotect(at, k * PAGE, rng.choice(PROTS))
        elif op == "munmap":
            self._munmap(p, reg, have)
        elif op == "mremap":
            self._mremap(p, reg)
        elif op == "mlock":
            p.mlock(at, k * PAGE)
            reg.locked = True
        elif op == "munlock":
            p.munlock(at, k * PAGE)

    def _munmap(self, p: TracedProcess, reg: Region, have: list[Region]) -> None:
        """The whole region, or one or two pages of it (a hole: nothing new is placed in a hole
        that small, as every new region or moved one reserves 2 MiB more than it maps)."""
        if self.rng.random() < 0.3:
            p.munmap(reg.addr, reg.npages * PAGE)
            have.remove(reg)
        else:
            i = self.rng.randrange(reg.npages)
            p.munmap(reg.addr + i * PAGE, min(2, reg.npages - i) * PAGE)

    def _mremap(self, p: TracedProcess, reg: Region) -> None:
        """Grow or shrink the region (growing moves it: the tracer puts it between new guards)."""
        new_n = self.rng.randint(1, min(reg.npages * 2 + 2, 2048))
        new = p.mremap(reg.addr, reg.npages * PAGE, new_n * PAGE)
        reg.addr, reg.npages = new, new_n

    # --- processes ---------------------------------------------------------------------------

    def _process_op(self, op: str, p: TracedProcess, step: int) -> None:
        """fork, vfork (the child execs or exits at once), exit, exec, wait, checkpoint."""
        rng = self.rng
        if op in ("fork", "vfork") and len(self.procs) < MAX_PROCS:
            child = p.fork() if op == "fork" else p.vfork()
            self.blocks[child.key] = list(self.blocks.get(p.key, []))
            self.regions[child.key] = [Region(r.addr, r.npages) for r in self.regions.get(p.key, [])]
            self.procs.append(child)
            if op == "vfork":
                self._leave(child, step, exec_=rng.random() < 0.6)
        elif op == "exit" and p is not self.procs[0]:
            p.exit(step)
        elif op == "exec" and p is not self.procs[0]:
            self._leave(p, step, exec_=True)
        elif op == "wait":
            dead = [c for c in self.procs if c.ppid == p.pid and c.state == "Z"]
            if dead:
                p.wait(rng.choice(dead))
        elif op == "checkpoint":
            self.m.checkpoint(f"step {step}")

    def _leave(self, p: TracedProcess, step: int, exec_: bool) -> None:
        """exec (a fresh image: no regions, no blocks) or exit."""
        if exec_:
            p.exec()
            self.blocks[p.key] = []
            self.regions[p.key] = []
        else:
            p.exit(step)

    # --- malloc ------------------------------------------------------------------------------

    def _malloc_op(self, op: str, p: TracedProcess) -> None:
        """glibc's allocator: blocks are filled (up to 3 pages) so their pages are real."""
        rng = self.rng
        mine = self.blocks.setdefault(p.key, [])
        size = rng.choice((24, 100, 1000, 5000, 70000, 200000, 600000))
        if op == "malloc":
            how = rng.random()
            if how < 0.6:
                ptr = p.malloc(size)
            elif how < 0.75:
                n = rng.randint(1, 8)
                size = n * (size // 8 + 1)  # what calloc allocates: fill no more
                ptr = p.calloc(n, size // n)
            elif how < 0.85:
                ptr = p.memalign(rng.choice((16, 64, 4096)), size)
            elif how < 0.93:
                ptr = p.posix_memalign(rng.choice((32, 256, 4096)), size)[1]
            else:
                ptr = p.aligned_alloc(rng.choice((64, 4096)), size // 64 * 64 + 64)
            if ptr:
                p.fill(ptr, min(size, 3 * PAGE), rng.randrange(256))
                mine.append(ptr)
        elif op == "free" and mine:
            p.free(mine.pop(rng.randrange(len(mine))))
        elif op == "malloc_misc":
            if mine and rng.random() < 0.5:
                j = rng.randrange(len(mine))
                new = p.realloc(mine[j], size)
                if new:
                    mine[j] = new
                    p.fill(new, min(size, 3 * PAGE), rng.randrange(256))
            else:
                p.malloc_trim(rng.choice((0, 4096, 1 << 20)))
        elif op == "sbrk":
            p.sbrk(rng.choice((1, 2, 5)) * PAGE)  # foreign brk growth: malloc must cope

    # --- files -------------------------------------------------------------------------------

    def _file_op(self, p: TracedProcess) -> None:
        """read(2)/write(2) of a file the processes may have mapped, or a new file (cached or
        cold) to map later."""
        rng = self.rng
        x = rng.random()
        if x < 0.15 and len(self.files) < 6:
            cached = rng.random() < 0.5
            f = self._new_file(cached)
            self.files.append(f)
            if not cached:
                self.cold.add(f.path)
            return
        f = rng.choice(self.files)
        size = f.size
        off = rng.randrange(max(size, 1) + PAGE)
        if x < 0.6 and f.path not in self.cold:
            self.m.pread(f, off, rng.choice((1, 100, PAGE, 3 * PAGE + 5)))
        else:
            self.m.pwrite(f, off, bytes([rng.randrange(256)]) * rng.choice((1, 7, PAGE, 2 * PAGE)))


@dataclass
class RandomResult:
    """What a batch of random differential scenarios found."""

    first: int
    count: int
    disagreeing: dict[int, list[str]]  # seed -> its counted differences (or its error), as lines
    seconds: float = 0.0

    @property
    def agree(self) -> int:
        """Seeds whose two runs agree."""
        return self.count - len(self.disagreeing)

    @property
    def seeds(self) -> str:
        """The seed range, as printed ("5..9")."""
        return f"{self.first}..{self.first + self.count - 1}"


def run_random(first: int, count: int, make_model: Callable[[], object], make_linux: Callable[[], object],
               steps: int = 48, on_seed: Callable[[int, list[str]], None] | None = None) -> RandomResult:
    """Seeds first..first+count-1 on both backends, compared; `on_seed(seed, lines)` is told about
    every seed that disagrees as it is found."""
    import time

    from .compare import compare, counted, run_traced

    t0 = time.monotonic()
    bad: dict[int, list[str]] = {}
    for seed in range(first, first + count):
        fn = random_scenario(seed, steps)
        tm = run_traced(fn, make_model(), "model")
        tl = run_traced(fn, make_linux(), "linux")
        diffs = counted(compare(tm, tl))
        if diffs or tm.error or tl.error:
            lines = [d.line() for d in diffs] or [f"error: model {tm.error} | linux {tl.error}"]
            bad[seed] = lines
            if on_seed is not None:
                on_seed(seed, lines)
    return RandomResult(first, count, bad, time.monotonic() - t0)
