"""Replay `malloc-cases` operation files on the model and print the harness's `.expected` format.

Format (see tests/fixtures/malloc-cases/README.md):
    N OPTEXT => ret=R [usz=U] [mlen=L] brk=B top=T:S mm=K:BYTES thr=X trim=Y [ar=.. atop=.. asys=..]
with `R` as `H+0x..` (offset from the initial break), `M<k>+0x..` (offset inside the k-th
mmapped chunk's mapping, k in creation order), `A<k>+0x..` (offset in the first heap of the k-th
arena created), `A<k>.<j>+0x..` (its j-th later heap), `0` or `-`.

An operation may start with a thread number (`3 m 1 100`: thread 3 calls malloc; no number: the
initial thread, 0). `p T` creates thread T, `e` ends the line's thread (pthread_exit), `j T` joins
T. Files that use threads get the calling thread's arena after each operation as `ar=`
(`main`, `A<k>` or `-`), and for a non-main arena its top (`atop=`) and system_mem (`asys=`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ....errors import Aborted, ProcessKilled, Segfault
from ..nptl import Nptl, PThread
from .labels import HeapLabels
from .layout import AV_SYSTEM_MEM, IS_MMAPPED, MASK64

OP_ARITY = {"m": 2, "c": 3, "r": 2, "f": 1, "a": 3, "t": 1, "o": 2, "x": 1, "F": 2, "w": 3, "s": 1,
            "p": 1, "e": 0, "j": 1}
THREAD_OPS = "pej"
MAX_THREAD = 4095


@dataclass
class Op:
    """One line of an ops file: the calling thread (0: the initial one), the call, its text."""

    kind: str
    args: list[int]
    text: str
    thread: int = 0


def parse_ops(text: str) -> list[Op]:
    """Parse an ops file (`#` starts a comment; an optional leading number is the thread)."""
    ops = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        toks = line.split()
        thread = 0
        if toks[0].isdigit():
            thread = int(toks[0])
            toks = toks[1:]
        kind = toks[0] if toks else ""
        if kind not in OP_ARITY or len(toks) != OP_ARITY[kind] + 1 or thread > MAX_THREAD:
            raise ValueError(f"line {lineno}: bad operation {raw!r}")
        args = [int(t, 0) for t in toks[1:]]
        if kind in "pj" and not 0 < args[0] <= MAX_THREAD:
            raise ValueError(f"line {lineno}: thread numbers are 1..{MAX_THREAD}: {raw!r}")
        ops.append(Op(kind, args, " ".join(line.split()), thread))
    return ops


def uses_threads(ops: list[Op]) -> bool:
    """Whether a file names threads (its results then show each call's arena)."""
    return any(op.thread or op.kind in THREAD_OPS for op in ops)


def header_line(nops: int) -> str:
    """The harness's first line."""
    return f"# harness glibc-2.36 ops={nops} heap_untouched_at_main=yes heap_base_page_aligned=yes"


@dataclass
class MmapIndex:
    """Numbers mmapped chunks' mappings in creation order (a mapping kept by realloc keeps its k)."""

    live: dict[int, int] = field(default_factory=dict)
    next_k: int = 0

    def index(self, base: int) -> int:
        """k of the live mapping at base, or a new k."""
        k = self.live.get(base)
        if k is None:
            k = self.live[base] = self.next_k
            self.next_k += 1
        return k

    def drop(self, base: int | None) -> None:
        """Forget a mapping that was unmapped (or moved)."""
        if base is not None:
            self.live.pop(base, None)


class ModelRunner:
    """Runs ops on a PtMalloc bound to a host; formats results like the native harness."""

    def __init__(self, alloc, heap_base: int | None = None) -> None:
        """Runner for alloc; H defaults to the current break (the heap start)."""
        self.alloc = alloc
        self.host = alloc.host
        self.H = heap_base if heap_base is not None else self.host.sbrk(0)
        self.ptrs: dict[int, int] = {}
        self.mmaps = MmapIndex()
        self.state_hook: Callable[[int], None] | None = None
        self.threaded = False
        self.labels = HeapLabels()
        self.nptl: Nptl | None = None
        self.threads: dict[int, PThread] = {}
        self._allocs: dict[int, object] = {alloc.tls: alloc}

    # -- threads -----------------------------------------------------------------------------------
    def alloc_for(self, tls: int):
        """The allocator as the thread with this TLS block calls it."""
        a = self._allocs.get(tls)
        if a is None:
            a = self._allocs[tls] = self.alloc.for_thread(tls)
        return a

    def _thread(self, n: int) -> PThread:
        """Thread n of the file (0: the initial thread), which must be running."""
        if self.nptl is None:
            self.nptl = Nptl(self.host, self.alloc_for, PThread(0, self.alloc.tls))
        t = self.nptl.main if n == 0 else self.threads.get(n)
        if t is None or t.state != "running":
            raise ValueError(f"thread {n} is not running")
        return t

    def _thread_op(self, op: Op, caller: PThread) -> str:
        """p T, e, j T."""
        nptl = self.nptl
        assert nptl is not None
        if op.kind == "p":
            if op.args[0] in self.threads:
                raise ValueError(f"thread {op.args[0]} was created before")
            self.threads[op.args[0]] = nptl.create(caller, op.args[0])
        elif op.kind == "e":
            if caller is nptl.main:
                raise ValueError("the initial thread cannot pthread_exit here")
            nptl.exit(caller)
        else:
            t = self.threads.get(op.args[0])
            if t is None or t.state != "exited":
                raise ValueError(f"thread {op.args[0]} has not exited: pthread_join would wait")
            nptl.join(caller, t)
        return "ret=-"

    def _mmap_base(self, mem: int) -> int | None:
        """The mapping base of mem's chunk if it is mmapped, else None."""
        a = self.alloc
        p = mem - 16
        if a.chunksize_nomask(p) & IS_MMAPPED:
            return (p - a.prev_size(p)) & MASK64
        return None

    def fmt_ptr(self, mem: int) -> str:
        """`H+0x..`, `M<k>+0x..` or `0`."""
        if mem == 0:
            return "0"
        base = self._mmap_base(mem)
        if base is not None:
            return f"M{self.mmaps.index(base)}+{mem - base:#x}"
        heap = self.labels.find(mem)
        if heap is not None:
            return f"{heap[0]}+{mem - heap[1]:#x}"
        off = mem - self.H
        return f"H+{off:#x}" if off >= 0 else f"H-{-off:#x}"

    def status(self) -> str:
        """brk/top/mm/thr/trim fields after an operation."""
        a = self.alloc
        brk = self.host.sbrk(0) - self.H
        top = a.top_chunk()
        if top == 0 or top == a.UNSORTED:
            tops = "none"
        else:
            tops = f"H+{top - self.H:#x}:{a.chunksize(top):#x}"
        p = a.params()
        return (f"brk={brk:#x} top={tops} mm={p['n_mmaps']}:{p['mmapped_mem']:#x} "
                f"thr={p['mmap_threshold']:#x} trim={p['trim_threshold']:#x}")

    def arena_status(self, t: PThread | None) -> str:
        """` ar=..`: the arena of the thread that ran the operation (and a non-main one's top)."""
        if t is None or t.state != "running":
            return " ar=-"
        a = self.alloc_for(t.tls)
        av = a.thread_arena()
        name = self.labels.arena(av)
        if av == 0 or av == a.MAIN:
            return f" ar={name}"
        top = a.top_chunk(av)
        return f" ar={name} atop={self.fmt_addr(top)}:{a.chunksize(top):#x} asys={a._r(av + AV_SYSTEM_MEM):#x}"

    def fmt_addr(self, addr: int) -> str:
        """An address inside a heap as `A<k>+0x..`, else `H+0x..`."""
        heap = self.labels.find(addr)
        return f"{heap[0]}+{addr - heap[1]:#x}" if heap else f"H+{addr - self.H:#x}"

    def result(self, mem: int) -> str:
        """ret/usz/mlen fields for a returned pointer."""
        s = f"ret={self.fmt_ptr(mem)}"
        if mem:
            s += f" usz={self.alloc.malloc_usable_size(mem):#x}"
            base = self._mmap_base(mem)
            if base is not None:
                p = mem - 16
                s += f" mlen={self.alloc.prev_size(p) + self.alloc.chunksize(p):#x}"
        return s

    def apply(self, op: Op) -> str:
        """Run one operation; return its `ret=...` part."""
        k, args, ptrs = op.kind, op.args, self.ptrs
        if self.threaded:
            caller = self._thread(op.thread)
            if k in THREAD_OPS:
                return self._thread_op(op, caller)
            a = self.alloc_for(caller.tls)
        else:
            a = self.alloc
        if k == "m":
            mem = a.malloc(args[1])
        elif k == "c":
            mem = a.calloc(args[1], args[2])
        elif k == "a":
            mem = a.memalign(args[1], args[2])
        elif k == "r":
            old = ptrs.get(args[0], 0)
            old_base = self._mmap_base(old) if old else None
            mem = a.realloc(old, args[1])
            if old_base is not None and (mem != 0 or args[1] == 0):
                if mem == 0 or self._mmap_base(mem) != old_base:
                    self.mmaps.drop(old_base)
        elif k in "fx":
            old = ptrs.get(args[0], 0)
            base = self._mmap_base(old) if old else None
            a.free(old)
            self.mmaps.drop(base)
            if k == "f":
                ptrs[args[0]] = 0
            return "ret=-"
        elif k == "F":
            a.free((ptrs.get(args[0], 0) + args[1]) & MASK64)
            return "ret=-"
        elif k == "t":
            a.malloc_trim(args[0])
            return "ret=-"
        elif k == "o":
            a.mallopt(args[0], args[1])
            return "ret=-"
        elif k == "w":
            self.host.write_u64((ptrs.get(args[0], 0) + args[1]) & MASK64, args[2] & MASK64)
            return "ret=-"
        elif k == "s":
            a.libc_sbrk(args[0])
            return "ret=-"
        else:  # pragma: no cover - parse_ops rejects it
            raise ValueError(k)
        ptrs[args[0]] = mem
        if self.threaded:
            self.labels.refresh(self.alloc)
        return self.result(mem)

    def _caller_after(self, op: Op) -> PThread | None:
        """The thread that ran op, if it still runs."""
        t = self.nptl.main if op.thread == 0 and self.nptl else self.threads.get(op.thread)
        return t if t is not None and t.state == "running" else None

    def run(self, ops: list[Op]) -> Iterable[str]:
        """Yield the `.expected` lines for ops (stopping at an abort or a crash)."""
        yield header_line(len(ops))
        self.threaded = uses_threads(ops)
        for n, op in enumerate(ops):
            try:
                ret = self.apply(op)
                if self.threaded:
                    self.labels.refresh(self.alloc)
            except Aborted as exc:
                yield f"# stderr: {exc.message}"
                yield "# exit: signal 6"
                return
            except Segfault:
                yield "# exit: signal 11"
                return
            except ProcessKilled as exc:
                yield f"# exit: signal {exc.signo}"
                return
            line = f"{n} {op.text} => {ret} {self.status()}"
            if self.threaded:
                line += self.arena_status(self._caller_after(op))
            yield line
            if self.state_hook is not None:
                self.state_hook(n)
        yield "# end"
        yield "# exit: status 0"


def replay_text(ops_text: str, host=None, with_state: bool = False) -> tuple[list[str], list[str]]:
    """Replay ops on a fresh flat host; return (expected lines, state-dump lines)."""
    from ..flat import FlatHost
    from .allocator import PtMalloc
    from .state import dump_state

    host = host or FlatHost()
    runner = ModelRunner(PtMalloc(host))
    states: list[str] = []
    if with_state:
        def hook(n: int) -> None:
            """Dump the bins after operation n."""
            states.append(f"== {n}")
            states.extend(dump_state(runner.alloc, runner.H, runner.labels if runner.threaded else None))
        runner.state_hook = hook
    return list(runner.run(parse_ops(ops_text))), states
