"""The arguments of the backend interface, checked once for both backends (`observe.backend`).

Both backends' Process classes are decorated with `checked`, so a call gets the same outcome on the
model and on the kernel before either sees it:

- Not an integer where C takes one (a str, a float): TypeError, as Python's own os calls do.
- Sizes, lengths, addresses and pointers of syscalls and malloc calls are C's `size_t` /
  `unsigned long`: a negative number is what C would pass for it (2**64 + n), and what Linux or
  glibc then does with that raw value decides (mmap(-1) is ENOMEM, mprotect(a, -1) ENOMEM,
  madvise(a, -1) EINVAL, malloc(-1) NULL, a read at -1 SIGSEGV). A number that fits in no 64-bit
  word is a ValueError. `sbrk`'s increment is signed (intptr_t).
- cowscope's own spellings: prot letters r, w, x (and -), advice names ("dontneed", ...): an
  unknown letter or name is a ValueError. A number is the raw PROT_*/MADV_* value: known advice
  numbers become their names; mmap ignores prot bits beyond PROT_READ|WRITE|EXEC|SEM as Linux
  does, mprotect passes them on (EINVAL).
- The CPU's loads and stores (read, fill, touch) take Python lengths: a negative one is a
  ValueError, as is a fill byte outside 0..255.
"""

from __future__ import annotations

import functools
import inspect
import operator
import posixpath
from collections.abc import Callable
from typing import Any, TypeVar

MASK64 = (1 << 64) - 1
PROT_BITS = {"r": 1, "w": 2, "x": 4}
PROT_SEM = 8
#: madvise advice names (the model's spelling) -> Linux values (include/uapi/asm-generic/mman-common.h).
MADV = {
    "normal": 0, "random": 1, "sequential": 2, "willneed": 3, "dontneed": 4, "free": 8,
    "remove": 9, "dontfork": 10, "dofork": 11, "mergeable": 12, "unmergeable": 13, "hugepage": 14,
    "nohugepage": 15, "dontdump": 16, "dodump": 17, "wipeonfork": 18, "keeponfork": 19,
    "cold": 20, "pageout": 21, "populate_read": 22, "populate_write": 23, "collapse": 25,
    "guard_install": 102, "guard_remove": 103,
}
_MADV_NAME = {v: k for k, v in MADV.items()}

Check = Callable[[Any, str, str], Any]
C = TypeVar("C", bound=type)


def _int(value: Any, call: str, what: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{call}: {what} must be an int, not {type(value).__name__}") from None


def ulong(value: Any, call: str, what: str) -> int:
    """size_t, unsigned long, a pointer: 0..2**64-1, a negative number taken as C takes it."""
    v = _int(value, call, what)
    if not -(1 << 63) <= v <= MASK64:
        raise ValueError(f"{call}: {what} {v:#x} does not fit in 64 bits")
    return v & MASK64


def maybe_ulong(value: Any, call: str, what: str) -> int | None:
    """An optional address (None: let the kernel choose)."""
    return None if value is None else ulong(value, call, what)


def slong(value: Any, call: str, what: str) -> int:
    """intptr_t (sbrk's increment): signed 64-bit."""
    v = _int(value, call, what)
    if not -(1 << 63) <= v < 1 << 63:
        raise ValueError(f"{call}: {what} {v} does not fit in 64 bits")
    return v


def count(value: Any, call: str, what: str) -> int:
    """A Python length (bytes or pages to load or store): not negative."""
    v = _int(value, call, what)
    if v < 0:
        raise ValueError(f"{call}: negative {what} {v}")
    if v > MASK64:
        raise ValueError(f"{call}: {what} {v:#x} does not fit in 64 bits")
    return v


def fill_byte(value: Any, call: str, what: str) -> int:
    v = _int(value, call, what)
    if not 0 <= v <= 255:
        raise ValueError(f"{call}: fill byte must be 0..255, not {v}")
    return v


def prot(value: Any, call: str, what: str) -> str | int:
    """Letters in canonical order ("rw", "" for PROT_NONE); a number as Linux takes it."""
    if isinstance(value, str):
        if set(value) - set("rwx-"):
            raise ValueError(f"{call}: prot is letters r, w, x (or -), not {value!r}")
        return "".join(ch for ch in "rwx" if ch in value)
    bits = _int(value, call, what) & 0xFFFFFFFF
    if bits & ~(7 | PROT_SEM):
        if call != "mprotect":
            bits &= 7  # mmap ignores the bits it does not know
        else:
            return bits  # arch_validate_prot: EINVAL from the backend (after its length checks)
    return "".join(ch for ch, b in PROT_BITS.items() if bits & b)


def advice(value: Any, call: str, what: str) -> str | int:
    """An advice name; a number becomes its name when there is one (else EINVAL, from the backend)."""
    if isinstance(value, str):
        name = value.lower().removeprefix("madv_")
        if name not in MADV:
            raise ValueError(f"{call}: unknown advice {value!r} (one of {', '.join(MADV)})")
        return name
    v = _int(value, call, what)
    return _MADV_NAME.get(v, v)


def file_path(value: Any, call: str, what: str) -> str:
    """A machine file's path, normalised ("/d/../f" is "/f"; never outside the machine's files);
    ValueError when it names no file ("", "/", "/..")."""
    if not isinstance(value, str):
        raise TypeError(f"{call}: {what} must be a str, not {type(value).__name__}")
    norm = posixpath.normpath("/" + value)
    if norm in ("/", "//") or value.endswith("/"):
        raise ValueError(f"{call}: {value!r} names no file")
    return "/" + norm.lstrip("/")


def maybe_size(value: Any, call: str, what: str) -> int | None:
    """An optional file size: not negative."""
    return None if value is None else count(value, call, what)


#: Per interface call: how each argument is checked and converted (observe.backend.Process).
ARGS: dict[str, dict[str, Check]] = {
    "read": {"addr": ulong, "n": count},
    "write": {"addr": ulong},
    "fill": {"addr": ulong, "length": count, "byte": fill_byte},
    "touch": {"addr": ulong, "length": count},
    "read_u64": {"addr": ulong},
    "write_u64": {"addr": ulong, "value": ulong},
    "mmap": {"length": ulong, "prot": prot, "offset": ulong, "addr": maybe_ulong},
    "munmap": {"addr": ulong, "length": ulong},
    "mprotect": {"addr": ulong, "length": ulong, "prot": prot},
    "madvise": {"addr": ulong, "length": ulong, "advice": advice},
    "mlock": {"addr": ulong, "length": ulong},
    "munlock": {"addr": ulong, "length": ulong},
    "mremap": {"addr": ulong, "old_len": ulong, "new_len": ulong, "new_addr": maybe_ulong},
    "brk": {"new_end": maybe_ulong},
    "sbrk": {"delta": slong},
    "malloc": {"size": ulong},
    "free": {"ptr": ulong},
    "calloc": {"n": ulong, "size": ulong},
    "realloc": {"ptr": ulong, "size": ulong},
    "memalign": {"alignment": ulong, "size": ulong},
    "posix_memalign": {"alignment": ulong, "size": ulong},
    "aligned_alloc": {"alignment": ulong, "size": ulong},
    "malloc_usable_size": {"ptr": ulong},
    "malloc_trim": {"pad": ulong},
    "pagemap": {"addr": ulong, "npages": count},
    # Machine
    "create_file": {"path": file_path, "size": maybe_size},
}


def checked(cls: C) -> C:
    """Check and convert the arguments of every call in ARGS that `cls` offers (a backend's Process)."""
    for name, rules in ARGS.items():
        fn = getattr(cls, name, None)
        if fn is not None and not getattr(fn, "__checked__", False):
            setattr(cls, name, _checking(fn, name, rules))
    return cls


#: Checks under which an int already in 0..2**64-1 passes unchanged (the common case, tested inline).
_PLAIN_ULONG = {ulong, maybe_ulong, count}


def _checking(fn: Callable[..., Any], call: str, rules: dict[str, Check]) -> Callable[..., Any]:
    """`fn` behind a wrapper generated for its own signature, so a call with plain in-range ints
    costs one type and range test per checked argument (an 8-byte write is on this path)."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())[1:]  # after self
    env: dict[str, Any] = {"fn": fn, "MASK64": MASK64}
    decl, call_args = ["self"], ["self"]
    for p in params:
        decl.append(_declare(p, env, decl))
        call_args.append(_pass_on(p))
    body = [f"    {_convert(p.name, rules[p.name], call, env)}" for p in params if p.name in rules]
    src = (f"def with_checked_args({', '.join(decl)}):\n" + "\n".join(body)
           + f"\n    return fn({', '.join(call_args)})\n")
    exec(compile(src, f"<checked {call}>", "exec"), env)  # noqa: S102 (source built from a signature)
    wrapper = functools.wraps(fn)(env["with_checked_args"])
    wrapper.__checked__ = True  # type: ignore[attr-defined]
    return wrapper


def _declare(p: inspect.Parameter, env: dict[str, Any], decl: list[str]) -> str:
    """One parameter of the generated wrapper, as the wrapped function declares it."""
    if p.kind is p.VAR_POSITIONAL:
        return f"*{p.name}"
    if p.kind is p.VAR_KEYWORD:
        return f"**{p.name}"
    star = "*, " if p.kind is p.KEYWORD_ONLY and not any(d.startswith("*") for d in decl) else ""
    if p.default is p.empty:
        return f"{star}{p.name}"
    env[f"_default_{p.name}"] = p.default
    return f"{star}{p.name}=_default_{p.name}"


def _pass_on(p: inspect.Parameter) -> str:
    if p.kind is p.VAR_POSITIONAL:
        return f"*{p.name}"
    if p.kind is p.VAR_KEYWORD:
        return f"**{p.name}"
    return f"{p.name}={p.name}" if p.kind is p.KEYWORD_ONLY else p.name


def _convert(name: str, check: Check, call: str, env: dict[str, Any]) -> str:
    """The line that checks and converts one argument (plain ints skip the call)."""
    env[f"_check_{name}"] = check
    full = f"{name} = _check_{name}({name}, {call!r}, {name!r})"
    if check in _PLAIN_ULONG:
        none_ok = " and {name} is not None" if check is maybe_ulong else ""
        guard = f"({name}.__class__ is not int or not 0 <= {name} <= MASK64){none_ok}".format(name=name)
        return f"if {guard}: {full}"
    return full
