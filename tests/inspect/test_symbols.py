"""Naming write sites: symbols only inside their extent, module+offset elsewhere, DWARF inlining,
and causes only where certain."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from cowscope.inspect.causes import GC, GLIBC_MALLOC, MEMSET, REFCOUNT, cause_of
from cowscope.inspect.symbols import Site, load_module

SRC = Path(__file__).with_name("cowprog.c")


@pytest.fixture(scope="module")
def progs(tmp_path_factory) -> dict[str, Path]:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("cowprog")
    built = {}
    for name, flags in (("debug", ["-O1", "-g"]), ("stripped", ["-O1", "-s"])):
        built[name] = out / name
        subprocess.run([cc, *flags, "-o", str(built[name]), str(SRC)], check=True)
    return built


def _symbol_address(path: Path, name: str) -> tuple[int, int]:
    mod = load_module(str(path))
    i = mod.names.index(name)
    return mod.starts[i], mod.ends[i]


def test_symbol_inside_its_extent_and_module_offset_outside(progs) -> None:
    mod = load_module(str(progs["debug"]))
    start, end = _symbol_address(progs["debug"], "child_writes")
    assert mod.symbol_at(start + 1) == ("child_writes", 1)
    assert mod.symbol_at(end - 1)[0] == "child_writes"
    gap = max(mod.ends)  # past the last function: no symbol holds it
    assert mod.symbol_at(gap + 0x10) is None
    site = mod.site_without_dwarf(gap + 0x10)
    assert site.symbol is None and site.label() == f"debug+{gap + 0x10:#x}"


def test_stripped_binary_has_no_interior_names(progs) -> None:
    """Same code, stripped: child_writes has no name of its own, and no other name is given."""
    start, end = _symbol_address(progs["debug"], "child_writes")
    mod = load_module(str(progs["stripped"]))
    assert "child_writes" not in mod.names
    site = mod.site(start + 4)
    assert site.symbol is None and site.label() == f"stripped+{start + 4:#x}"


def test_dwarf_names_the_inlined_function_and_line(progs) -> None:
    mod = load_module(str(progs["debug"]))
    start, end = _symbol_address(progs["debug"], "child_writes")
    sites = [mod.site(v) for v in range(start, end)]
    inlined = [s for s in sites if s.inlined]
    assert inlined and inlined[0].inlined[0] == "touch_page"
    assert inlined[0].line and inlined[0].line.startswith("cowprog.c:")
    assert inlined[0].label().startswith("touch_page (inlined in child_writes) at cowprog.c:")


def test_elf_address_goes_through_the_load_segment(progs) -> None:
    mod = load_module(str(progs["debug"]))
    for off, vaddr, size in mod.loads:
        if size:
            assert mod.vaddr(off + 1) == vaddr + 1


@pytest.mark.parametrize("site,cause", [
    (Site("libpython3.11.so.1.0", "_PyEval_EvalFrameDefault", 9, ("Py_INCREF",), "object.h:502"), REFCOUNT),
    (Site("libpython3.11.so.1.0", "gc_collect_main", 9, ("gc_reset_refs", "update_refs"), "gcmodule.c:107"), GC),
    (Site("python3.11", "gc_collect_main", 9), GC),
    (Site("libc.so.6", "_int_free", 9), GLIBC_MALLOC),
    (Site("libc.so.6", "__memset_avx2_unaligned_erms", 9), MEMSET),
    (Site("libc.so.6", None, 0x9A3B0), None),
    (Site("myapp", "collect", 9), None),  # a `collect` outside CPython is not the GC
    (Site("libpython3.11.so.1.0", "_PyEval_EvalFrameDefault", 9), None),
])
def test_causes_only_when_certain(site: Site, cause: str | None) -> None:
    assert cause_of(site) == cause
