"""Which code wrote: a user instruction pointer of a traced process named from the ELF it runs.

An ip is placed in its mapping (`/proc/PID/maps`, kept while the process lived), turned into an
ELF address (file offset through the PT_LOAD segment that holds it), and looked up in `.symtab`,
else `.dynsym`, of the file or of its build-id debug file (`/usr/lib/debug/.build-id/xx/rest.debug`).
A name is printed only when the address lies inside that symbol's extent; otherwise the answer is
`module+0xADDR` (a stripped binary's interior functions have no name of their own, and the
nearest exported symbol would be a wrong one). Where DWARF is present the inlined functions at the
ip and the source line are named too (a refcount write is `Py_INCREF` inlined into the eval loop).
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..observe.records import MapsEntry

DEBUG_ROOT = "/usr/lib/debug/.build-id"
KERNEL_SPACE = 1 << 47


@dataclass(frozen=True)
class Site:
    """One code location: module, symbol (None if no symbol holds it), offset, inlined chain, line."""

    module: str
    symbol: str | None
    offset: int
    inlined: tuple[str, ...] = ()  # innermost first
    line: str | None = None

    @property
    def function(self) -> str:
        """The innermost named function (an inlined one when DWARF says so), or module+offset."""
        if self.inlined:
            return self.inlined[0]
        if self.symbol:
            return self.symbol
        return f"{self.module}+{self.offset:#x}"

    def label(self) -> str:
        """`Py_INCREF (inlined in _PyEval_EvalFrameDefault) at object.h:500 [libpython3.11.so]`."""
        if not self.symbol and not self.inlined:
            return f"{self.module}+{self.offset:#x}"
        text = self.function
        outer = list(self.inlined[1:]) + ([self.symbol] if self.symbol and self.inlined else [])
        if outer:
            text += f" (inlined in {' < '.join(outer)})"
        if self.line:
            text += f" at {self.line}"
        return f"{text} [{self.module}]"


class ElfModule:
    """One ELF file's loadable segments, function symbols and (lazily) DWARF."""

    def __init__(self, path: str) -> None:
        from elftools.elf.elffile import ELFFile

        self.path = path
        self.name = os.path.basename(path)
        self._fh = open(path, "rb")  # noqa: SIM115 - kept open for lazy DWARF reads
        self.elf = ELFFile(self._fh)
        self.loads = [(s["p_offset"], s["p_vaddr"], s["p_filesz"]) for s in self.elf.iter_segments()
                      if s["p_type"] == "PT_LOAD"]
        self.build_id = _build_id(self.elf)
        self.debug = _open_debug(self.build_id)
        self.starts, self.ends, self.names = _function_symbols(self.elf, self.debug)
        self._dwarf_src = self.debug if self.debug is not None and self.debug.has_dwarf_info() else \
            (self.elf if self.elf.has_dwarf_info() else None)
        self._dwarf: Any = None
        self._cu_cache: dict[int, tuple[Any, list[tuple[int, str, int]]]] = {}

    def vaddr(self, file_offset: int) -> int | None:
        """The ELF virtual address of a file offset (through the PT_LOAD that holds it)."""
        for off, vaddr, size in self.loads:
            if off <= file_offset < off + max(size, 1):
                return file_offset - off + vaddr
        return None

    def symbol_at(self, vaddr: int) -> tuple[str, int] | None:
        """(name, offset) of the function whose extent holds vaddr; None outside every extent."""
        i = bisect.bisect_right(self.starts, vaddr) - 1
        for j in range(i, max(i - 8, -1), -1):  # nested or aliased symbols: the innermost first
            if vaddr < self.ends[j]:
                return self.names[j], vaddr - self.starts[j]
        return None

    def site(self, vaddr: int) -> Site:
        """The full Site of an ELF address: symbol, and DWARF inlined chain and line where present."""
        sym = self.symbol_at(vaddr)
        inlined, line = self.inline_chain(vaddr)
        if sym is None:
            return Site(self.name, None, vaddr, inlined, line)
        return Site(self.name, sym[0], sym[1], inlined, line)

    def site_without_dwarf(self, vaddr: int) -> Site:
        """The Site of an ELF address from its symbol alone."""
        sym = self.symbol_at(vaddr)
        return Site(self.name, None, vaddr) if sym is None else Site(self.name, sym[0], sym[1])

    def inline_chain(self, vaddr: int) -> tuple[tuple[str, ...], str | None]:
        """(inlined function names innermost first, "file:line") from DWARF; ((), None) without it."""
        if self._dwarf_src is None:
            return (), None
        try:
            from .dwarf import inline_chain

            if self._dwarf is None:
                self._dwarf = self._dwarf_src.get_dwarf_info()
            return inline_chain(self._dwarf, vaddr, self._cu_cache)
        except Exception:  # noqa: BLE001 - malformed or unsupported DWARF: keep the symbol answer
            return (), None


def _build_id(elf: Any) -> str | None:
    for sec in elf.iter_sections():
        if sec["sh_type"] == "SHT_NOTE":
            for note in sec.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID":
                    return str(note["n_desc"])
    return None


def _open_debug(build_id: str | None) -> Any:
    if not build_id or len(build_id) < 3:
        return None
    path = os.path.join(DEBUG_ROOT, build_id[:2], build_id[2:] + ".debug")
    if not os.path.exists(path):
        return None
    from elftools.elf.elffile import ELFFile

    return ELFFile(open(path, "rb"))  # noqa: SIM115


_SYM = np.dtype([("name", "<u4"), ("info", "u1"), ("other", "u1"), ("shndx", "<u2"), ("value", "<u8"),
                 ("size", "<u8")])
_STT_FUNC, _STT_GNU_IFUNC = 2, 10


def _function_symbols(elf: Any, debug: Any) -> tuple[list[int], list[int], list[str]]:
    """Sorted (start, end, name) of every sized function: .symtab of the debug file or the ELF,
    else .dynsym (read as one numpy array: pyelftools' per-symbol parsing is slow)."""
    source, table = elf, None
    for candidate in (debug, elf):
        if candidate is not None and candidate.get_section_by_name(".symtab") is not None:
            source, table = candidate, candidate.get_section_by_name(".symtab")
            break
    if table is None:
        table = elf.get_section_by_name(".dynsym")
    if table is None or table["sh_entsize"] != _SYM.itemsize:
        return [], [], []
    syms = np.frombuffer(table.data(), dtype=_SYM)
    kind = syms["info"] & 0xF
    keep = syms[((kind == _STT_FUNC) | (kind == _STT_GNU_IFUNC)) & (syms["size"] > 0) & (syms["value"] > 0)]
    keep = keep[np.argsort(keep["value"], kind="stable")]
    strtab = source.get_section(table["sh_link"]).data()
    names = [strtab[i:strtab.index(b"\0", i)].decode("utf-8", "replace") for i in keep["name"].tolist()]
    starts = keep["value"].tolist()
    return starts, (keep["value"] + keep["size"]).tolist(), names


@lru_cache(maxsize=256)
def load_module(path: str) -> ElfModule | None:
    """The ElfModule of a file (cached), None when it is not a readable ELF file."""
    try:
        return ElfModule(path)
    except Exception:  # noqa: BLE001 - not ELF, unreadable, vanished
        return None


#: A code location before naming: (module path or pseudo-module, ELF address or offset, pid for /proc/PID/root).
SiteKey = tuple[str, int, int]


class Symbolizer:
    """Names instruction pointers of traced processes. `key()` is cheap (a maps lookup) and is
    taken for every event; `site()` names a key, with DWARF only while `dwarf` is on."""

    def __init__(self, lookup: Any) -> None:
        """`lookup(pid, va) -> MapsEntry | None` (e.g. `MapsCache.lookup`)."""
        self.lookup = lookup
        self._keys: dict[tuple[str, int, int], SiteKey] = {}
        self._sites: dict[tuple[SiteKey, bool], Site] = {}

    def key(self, pid: int, ip: int | None) -> SiteKey:
        """Where an ip is: (path, file offset) inside a file mapping, else a pseudo-module."""
        if ip is None:
            return ("[unknown]", 0, pid)
        if ip >= KERNEL_SPACE:
            return ("[kernel]", 0, pid)
        mapping: MapsEntry | None = self.lookup(pid, ip)
        if mapping is None:
            return ("[unknown mapping]", ip, pid)
        if not mapping.path.startswith("/"):
            return (mapping.path or "[anon]", ip - mapping.start, pid)
        return (mapping.path, ip - mapping.start + mapping.offset, pid)

    def site(self, key: SiteKey, dwarf: bool = True) -> Site:
        """The Site of a key (cached); `dwarf=False` skips the inlined chain and line."""
        cache_key = (key[0], key[1], 0), dwarf
        if cache_key not in self._sites:
            self._sites[cache_key] = self._resolve(key, dwarf)
        return self._sites[cache_key]

    def best(self, key: SiteKey) -> Site:
        """The Site of a key as named so far: with DWARF if that was done, else by symbol."""
        return self._sites.get(((key[0], key[1], 0), True)) or self.site(key, dwarf=False)

    def _resolve(self, key: SiteKey, dwarf: bool) -> Site:
        path, offset, pid = key
        if path == "[kernel]":
            return Site("[kernel]", "a system call", 0)
        if not path.startswith("/"):
            return Site(path, None, offset)
        path = path.removesuffix(" (deleted)")
        module = load_module(path) or load_module(f"/proc/{pid}/root{path}")
        name = os.path.basename(path)
        if module is None:
            return Site(name, None, offset)
        vaddr = module.vaddr(offset)
        if vaddr is None:
            return Site(name, None, offset)
        return module.site(vaddr) if dwarf else module.site_without_dwarf(vaddr)
