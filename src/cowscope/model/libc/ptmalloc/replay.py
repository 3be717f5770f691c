"""Replay `malloc-cases` operation files on the model and print the harness's `.expected` format.

Format (see tests/fixtures/malloc-cases/README.md):
    N OPTEXT => ret=R [usz=U] [mlen=L] brk=B top=T:S mm=K:BYTES thr=X trim=Y
with `R` as `H+0x..` (offset from the initial break), `M<k>+0x..` (offset inside the k-th
mmapped chunk's mapping, k in creation order), `0` or `-`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ....errors import Aborted, ProcessKilled, Segfault
from .layout import IS_MMAPPED, MASK64

OP_ARITY = {"m": 2, "c": 3, "r": 2, "f": 1, "a": 3, "t": 1, "o": 2, "x": 1, "F": 2, "w": 3, "s": 1}


@dataclass
class Op:
    """One line of an ops file."""

    kind: str
    args: list[int]
    text: str


def parse_ops(text: str) -> list[Op]:
    """Parse an ops file (`#` starts a comment)."""
    ops = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        toks = line.split()
        kind = toks[0]
        if kind not in OP_ARITY or len(toks) != OP_ARITY[kind] + 1:
            raise ValueError(f"line {lineno}: bad operation {raw!r}")
        ops.append(Op(kind, [int(t, 0) for t in toks[1:]], " ".join(toks)))
    return ops


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
        a, k, args, ptrs = self.alloc, op.kind, op.args, self.ptrs
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
        return self.result(mem)

    def run(self, ops: list[Op]) -> Iterable[str]:
        """Yield the `.expected` lines for ops (stopping at an abort or a crash)."""
        yield header_line(len(ops))
        for n, op in enumerate(ops):
            try:
                ret = self.apply(op)
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
            yield f"{n} {op.text} => {ret} {self.status()}"
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
            states.extend(dump_state(runner.alloc, runner.H))
        runner.state_hook = hook
    return list(runner.run(parse_ops(ops_text))), states
