"""The layers of docs/architecture.md, enforced: who may import whom, module and function sizes.

Every module under src/cowscope is parsed (ast); each import (top level, in functions, under
TYPE_CHECKING alike) is resolved to the cowscope layer it names and checked against RANK: a layer
imports only layers below it, its own package, and the few sideways edges listed in SIDEWAYS.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "cowscope"

#: Layer of each top-level package or module of cowscope; imports go to strictly lower ranks.
RANK = {
    "errors": 0,    # the outcomes every layer raises
    "native": 0,    # builds shipped C sources (agent, malloc harness, benchmark); imports nothing
    "observe": 1,   # the shared vocabulary: records, /proc parsers, events, the backend Protocols
    "model": 2,     # the executable model
    "linux": 2,     # the real-kernel backend
    "report": 3,    # terminal and HTML rendering (the demo drives the model)
    "inspect": 3,   # the live-process inspector
    "verify": 3,    # model vs kernel, through the declared interface
    "learn": 3,     # learning mode
    "scenario": 3,  # loads and runs scenario files on any backend
    "bench": 3,     # times the model against the kernel
    "cli": 4,       # wires backends into verify, report, inspect
    "__main__": 5,
}
#: Allowed imports between packages of one rank: (importer, imported).
SIDEWAYS = {("inspect", "report"), ("learn", "report")}
#: Lower layers a package still must not import: verify and the scenario runner take whatever
#: backend the CLI hands them, typed by cowscope.observe.backend.
NEVER = {"verify": {"model", "linux"}, "scenario": {"model", "linux"}}
#: The package root only re-exports: it imports errors now and the rest lazily by name.
ROOT_IMPORTS = {"errors"}

#: Module and function size limits (docs/architecture.md), and what exceeds them today, with why.
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
KNOWN_LONG: set[str] = set()  # nothing exceeds the limits today; add an entry only with its reason


def modules() -> Iterator[tuple[str, Path]]:
    """(dotted module name, path) of every Python module of the package."""
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def imported(module: str, path: Path, tree: ast.AST | None = None) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every cowscope import in the module."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(tree or ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "cowscope")
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            name = ".".join(base + ([node.module] if node.module else []))
            if name.split(".")[0] == "cowscope":
                targets = [name] if node.module else [f"{name}.{a.name}" for a in node.names]
                yield from ((node.lineno, t) for t in targets)


TOP = {p.stem for p in SRC.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()} - {"__init__"}


def layer(module: str) -> str:
    """The layer a dotted module belongs to ("" for the package root and the names it exports)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in TOP else ""


def violations(module: str, path: Path, tree: ast.AST | None = None) -> list[str]:
    """Every import of `module` that breaks the layering."""
    src = layer(module)
    out = []
    for line, target in imported(module, path, tree):
        dst = layer(target)
        where = f"{path.relative_to(SRC.parent)}:{line} imports {target}"
        if dst == src or dst == "":
            continue  # its own package; the root (cowscope.__version__) is importable from anywhere
        if src == "":
            if dst not in ROOT_IMPORTS:
                out.append(f"{where}: the package root imports only {sorted(ROOT_IMPORTS)}")
        elif src not in RANK or dst not in RANK:
            out.append(f"{where}: {src if src not in RANK else dst} has no layer (RANK)")
        elif dst in NEVER.get(src, ()):
            out.append(f"{where}: {src} must not import {dst}")
        elif RANK[dst] > RANK[src] or RANK[dst] == RANK[src] and (src, dst) not in SIDEWAYS:
            out.append(f"{where}: {src} (layer {RANK[src]}) must not import {dst} (layer {RANK[dst]})")
    return out


def test_imports_follow_the_layers() -> None:
    found = [v for module, path in modules() for v in violations(module, path)]
    assert found == []


def test_every_package_is_placed() -> None:
    assert TOP <= set(RANK)


def test_the_check_catches_a_backend_importing_upward_and_verify_importing_a_backend() -> None:
    linux_path = SRC / "linux" / "process.py"
    bad = ast.parse("from ..model import Machine\nfrom ..report import strips\nfrom ..errors import Segfault\n")
    found = violations("cowscope.linux.process", linux_path, bad)
    assert len(found) == 2 and "imports cowscope.model: linux" in found[0] and "cowscope.report" in found[1]
    verify_path = SRC / "verify" / "trace.py"
    bad = ast.parse("def f():\n    from ..linux.machine import Machine\n    from ..observe import backend\n")
    assert [v.split(": ", 1)[1] for v in violations("cowscope.verify.trace", verify_path, bad)] == [
        "verify must not import linux"]


def long_functions(path: Path) -> Iterator[tuple[str, int]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            n = (node.end_lineno or node.lineno) - node.lineno + 1
            if n > MAX_FUNCTION_LINES:
                yield node.name, n


def test_modules_and_functions_stay_small() -> None:
    """Under 500 lines per module (Python and the agent's C), under 80 per Python function; only
    what KNOWN_LONG lists, with its reason, may exceed (a list that only shrinks)."""
    too_long = []
    for path in sorted([*SRC.rglob("*.py"), *SRC.rglob("*.c"), *SRC.rglob("*.h")]):
        rel = str(path.relative_to(SRC))
        nlines = len(path.read_text(encoding="utf-8").splitlines())
        if nlines > MAX_MODULE_LINES and rel not in KNOWN_LONG:
            too_long.append(f"{rel}: {nlines} lines")
        if path.suffix == ".py":
            too_long += [f"{rel}:{name}: {n} lines" for name, n in long_functions(path)
                         if f"{rel}:{name}" not in KNOWN_LONG]
    assert too_long == []


def test_known_long_only_lists_what_is_long() -> None:
    """An exception that no longer exceeds the limits leaves KNOWN_LONG (the list only shrinks)."""
    stale = []
    for entry in KNOWN_LONG:
        rel, _, name = entry.partition(":")
        path = SRC / rel
        if not path.exists():
            stale.append(entry)
        elif name:
            if name not in dict(long_functions(path)):
                stale.append(entry)
        elif len(path.read_text(encoding="utf-8").splitlines()) <= MAX_MODULE_LINES:
            stale.append(entry)
    assert stale == []
