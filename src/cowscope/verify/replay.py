"""A random differential seed as a program: record its calls, shrink them, print a scenario file.

`record(seed)` runs the generated scenario of `fuzz.random_scenario` through recording stand-ins
for the machine and its processes: every call becomes one Python statement over names (`P_1` for
process P.1, `r3` for a mapping's address, `b5` for a block, `f0` for a file), addresses written as
a name plus an offset, so the statements replay on any backend. `shrink` drops statements (and
those using what they define) while the two backends still disagree; `program` prints what is left
as a file for `cowscope run --on both FILE.py` (a statement that failed with a CowscopeError on
either backend is wrapped in `suppress`, as the generator ignores such failures).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import CowscopeError

PAGE = 4096
#: Calls whose first argument is an address.
_ADDR_FIRST = {"fill", "read", "touch", "madvise", "mprotect", "munmap", "mremap", "mlock", "munlock",
               "free", "realloc"}
#: Calls returning an address worth a name: its prefix, and which argument is the span.
_NAMED = {"mmap": ("r", 0), "mremap": ("r", 2), "malloc": ("b", 0), "calloc": ("b", None),
          "memalign": ("b", 1), "aligned_alloc": ("b", 1), "realloc": ("b", 1), "posix_memalign": ("b", 1)}
_STRING = re.compile(r"'[^']*'|\"[^\"]*\"")
_NAME = re.compile(r"\b([A-Z][A-Za-z0-9_]*|[rbf]\d+)\b")


@dataclass
class Stmt:
    """One recorded call: its source, the names it defines and the names it uses."""

    src: str
    defines: set[str] = field(default_factory=set)
    uses: set[str] = field(default_factory=set)


class _Recorder:
    """The statements, the next free numbers, and each process's named addresses."""

    def __init__(self) -> None:
        self.stmts: list[Stmt] = []
        self.n = 0
        self.symbols: dict[str, list[tuple[str, int, int]]] = {}  # process var -> (expr, value, span)

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}{self.n}"

    def add(self, src: str, defines: set[str]) -> None:
        code = _STRING.sub("", src.split(" = ", 1)[-1])
        uses = set(_NAME.findall(code)) - defines - {"None", "True", "False", "PAGE"}
        self.stmts.append(Stmt(src, defines, uses))

    def addr(self, pvar: str, a: Any) -> str:
        """An address as a name plus offset (the newest name whose range, with its guard pages, holds it)."""
        if isinstance(a, int) and a:
            for expr, value, span in reversed(self.symbols.get(pvar, [])):
                if value - PAGE <= a < value + max(span, 1) + PAGE:
                    off = a - value
                    return expr if off == 0 else f"{expr} {'+' if off > 0 else '-'} {abs(off):#x}"
        return repr(a)


def _lit(v: Any) -> str:
    """A literal argument: bytes as runs (rle(...)), anything else as repr."""
    if isinstance(v, bytes | bytearray):
        runs: list[tuple[int, int]] = []
        for byte in v:
            if runs and runs[-1][0] == byte:
                runs[-1] = (byte, runs[-1][1] + 1)
            else:
                runs.append((byte, 1))
        return f"rle({', '.join(f'({b:#04x}, {n})' for b, n in runs)})"
    key = getattr(v, "key", None)  # a process the scenario picked from its own list: its name
    return getattr(v, "_var", None) or (key.replace(".", "_") if isinstance(key, str) else repr(v))


def _real(v: Any) -> Any:
    """What a recording stand-in stands for."""
    if isinstance(v, _File):
        return v._f
    if isinstance(v, _RecProcess):
        return v._p
    return v


class _RecProcess:
    """A TracedProcess whose calls are recorded as statements."""

    def __init__(self, rec: _Recorder, p: Any) -> None:
        self._rec, self._p = rec, p
        self._var = p.key.replace(".", "_")
        rec.symbols.setdefault(self._var, [])

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._p, name)
        if not callable(target) or name.startswith("_") or name in ("where", "pfns"):
            return target
        return lambda *a, **kw: self._call(name, target, a, kw)

    def _call(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        rec = self._rec
        shown = [rec.addr(self._var, a) if i == 0 and name in _ADDR_FIRST else _lit(a) for i, a in enumerate(args)]
        shown += [f"{k}={_lit(v)}" for k, v in kw.items()]
        args = tuple(_real(a) for a in args)
        kw = {k: _real(v) for k, v in kw.items()}
        call = f"{self._var}.{name}({', '.join(shown)})"
        if name == "wait" and args:
            call = f"{call} if {_lit(args[0])}.state == 'Z' else None"
        try:
            result = fn(*args, **kw)
        except CowscopeError:
            rec.add(call, set())
            raise
        if name in ("fork", "vfork"):
            child = _RecProcess(rec, result)
            rec.symbols[child._var] = list(rec.symbols[self._var])
            rec.add(f"{child._var} = {call}", {child._var})
            return child
        if name == "exec":
            rec.symbols[self._var] = []
        if name in _NAMED and result:
            prefix, span_at = _NAMED[name]
            var = rec.name(prefix)
            value = result[1] if name == "posix_memalign" else result
            span = args[span_at] if span_at is not None and span_at < len(args) else PAGE
            expr = f"{var}[1]" if name == "posix_memalign" else var
            rec.symbols[self._var].append((expr, int(value), int(span)))
            rec.add(f"{var} = {call}", {var})
            return result
        rec.add(call, set())
        return result


class _RecMachine:
    """A TracedMachine whose spawn, files, file I/O and checkpoints are recorded."""

    def __init__(self, rec: _Recorder, m: Any) -> None:
        self._rec, self._m = rec, m

    def __getattr__(self, name: str) -> Any:
        return getattr(self._m, name)

    def spawn(self, name: str = "app", image: Any = None) -> _RecProcess:
        p = _RecProcess(self._rec, self._m.spawn(name, image))
        self._rec.add(f"{p._var} = m.spawn({name!r})", {p._var})
        return p

    def create_file(self, path: str, data: bytes | None = None, size: int | None = None,
                    cached: bool = True) -> Any:
        f = self._m.create_file(path, data=data, size=size, cached=cached)
        var = self._rec.name("f")
        f_proxy = _File(f, var)
        self._rec.add(f"{var} = m.create_file({path!r}, data={_lit(data)}, size={size!r}, cached={cached!r})",
                      {var})
        return f_proxy

    def checkpoint(self, label: str) -> None:
        self._rec.add(f"m.checkpoint({label!r})", set())
        self._m.checkpoint(label)

    def pread(self, f: Any, offset: int, n: int) -> bytes:
        self._rec.add(f"m.pread({f._var}, {offset}, {n})", set())
        return self._m.pread(f._f, offset, n)

    def pwrite(self, f: Any, offset: int, data: bytes) -> None:
        self._rec.add(f"m.pwrite({f._var}, {offset}, {_lit(data)})", set())
        self._m.pwrite(f._f, offset, data)


class _File:
    """A file with its statement name (passed on to mmap as the file itself)."""

    def __init__(self, f: Any, var: str) -> None:
        self._f, self._var = f, var

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def record(seed: int, make_machine: Callable[[], Any], steps: int = 48) -> list[Stmt]:
    """The statements seed's scenario makes, recorded on a run on `make_machine()` (the model)."""
    from .compare import run_traced
    from .fuzz import random_scenario

    rec = _Recorder()
    fn = random_scenario(seed, steps)
    run_traced(lambda tm: fn(_RecMachine(rec, tm)), make_machine(), "model")
    return rec.stmts


def rle(*runs: tuple[int, int]) -> bytes:
    """Bytes from (byte, count) runs (how a program writes its files' and writes' data)."""
    return b"".join(bytes([b]) * n for b, n in runs)


def _closed(stmts: list[Stmt], keep: list[int]) -> list[int]:
    """`keep` without the statements that use a name no kept statement before them defines."""
    have: set[str] = set()
    out = []
    for i in keep:
        if stmts[i].uses <= have:
            out.append(i)
            have |= stmts[i].defines
    return out


def as_scenario(stmts: list[Stmt], failed: set[int] | None = None) -> Callable[[Any], None]:
    """A scenario running the statements in order; a CowscopeError of one is noted in `failed`
    (its index) and the next runs, as in the generated scenario."""
    def scenario(m: Any) -> None:
        ns: dict[str, Any] = {"m": m, "rle": rle, "PAGE": PAGE}
        for i, st in enumerate(stmts):
            try:
                exec(st.src, ns)
            except CowscopeError:
                if failed is not None:
                    failed.add(i)
    return scenario


def disagrees(stmts: list[Stmt], make_model: Callable[[], Any], make_linux: Callable[[], Any],
              failed: set[int] | None = None) -> bool:
    """Whether the two backends disagree (a counted difference, or an error on one side only or a
    different one on each) on these statements; the same error on both is the program's own."""
    from .compare import compare, counted, run_traced

    tm = run_traced(as_scenario(stmts, failed), make_model(), "model")
    tl = run_traced(as_scenario(stmts, failed), make_linux(), "linux")
    return bool(counted(compare(tm, tl))) or tm.error != tl.error


def shrink(stmts: list[Stmt], make_model: Callable[[], Any], make_linux: Callable[[], Any],
           budget_s: float = 60.0) -> list[Stmt]:
    """Fewer statements on which the backends still disagree: chunks, then single statements,
    are dropped while the disagreement stays (with what depends on them), within `budget_s`."""
    keep = list(range(len(stmts)))
    t0 = time.monotonic()
    chunk = max(1, len(keep) // 2)
    while True:
        i = 0
        while i < len(keep) and time.monotonic() - t0 < budget_s:
            cand = _closed(stmts, keep[:i] + keep[i + chunk:])
            if len(cand) < len(keep) and disagrees([stmts[j] for j in cand], make_model, make_linux):
                keep = cand
            else:
                i += chunk
        if chunk == 1 or time.monotonic() - t0 >= budget_s:
            return [stmts[j] for j in keep]
        chunk //= 2


def program(seed: int, stmts: list[Stmt], failed: set[int], total: int) -> str:
    """The statements as a scenario file for `cowscope run --on both`."""
    lines = [f"# cowscope verify --random 1 --seed {seed}: {len(stmts)} of its {total} calls, on which the model",
             "# and the kernel still disagree. Replay: cowscope run --on both THIS_FILE.py",
             "from contextlib import suppress", "", "from cowscope.errors import CowscopeError",
             "from cowscope.verify.replay import rle", "", "", "def scenario(m):"]
    for i, st in enumerate(stmts):
        lines.append(f"    with suppress(CowscopeError): {st.src}" if i in failed else f"    {st.src}")
    return "\n".join(lines) + "\n"


def minimal_program(seed: int, make_model: Callable[[], Any], make_linux: Callable[[], Any],
                    steps: int = 48, budget_s: float = 60.0) -> str | None:
    """The shrunk program of a disagreeing seed (None when the recorded calls no longer disagree)."""
    stmts = record(seed, make_model, steps)
    if not disagrees(stmts, make_model, make_linux):
        return None
    small = shrink(stmts, make_model, make_linux, budget_s)
    failed: set[int] = set()
    disagrees(small, make_model, make_linux, failed)
    return program(seed, small, failed, len(stmts))
