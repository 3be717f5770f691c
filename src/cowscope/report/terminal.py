"""Terminal output of `cowscope demo`: the demo's story, with page strips (`cowscope run`'s
checkpoints are `runview.py`).

Reads the demo's Steps only; the CLI decides what to run and hands the results here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..observe.snapshot import MappingView
from .strips import legend, strip

if TYPE_CHECKING:  # the demo's story drives the model; rendering it needs only its records
    from .demo import Step

#: (path, perms) of a mapping -> the short name a demo table gives it
Shown = Mapping[tuple[str, ...], str]


def demo_pages_table(step: Step, width: int, shown: Shown) -> Table:
    """One row per process of the step and mapping in `shown`: its short name, smaps figures (kB), strip."""
    t = Table(show_edge=False, pad_edge=False, box=None)
    for col in ("pid", "mapping", "Rss", "Pss", "Priv", "Shrd"):
        t.add_column(col, justify="left" if col in ("pid", "mapping") else "right", no_wrap=True)
    t.add_column("pages", no_wrap=True)
    for pv in step.snapshot.processes if step.snapshot is not None else ():
        if pv.pid not in step.pids:
            continue
        for mv in pv.mappings:
            name = _shown_name(shown, mv)
            if name is None or mv.pages is None:
                continue
            s = mv.smaps
            figs = [str(s["Rss"]), str(s["Pss"]), str(s["Private_Clean"] + s["Private_Dirty"]),
                    str(s["Shared_Clean"] + s["Shared_Dirty"])] if s is not None else ["-"] * 4
            t.add_row(str(pv.pid), name, *figs, strip(mv.pages, width))
    return t


def _shown_name(shown: Shown, mv: MappingView) -> str | None:
    """The short name `shown` gives this mapping: keyed by (path, perms), or by (path, perms, flag)
    for a mapping whose VmFlags have that flag (e.g. "hg": the MADV_HUGEPAGE buffer)."""
    flags = set(mv.smaps.vm_flags) if mv.smaps is not None else set()
    for key, name in shown.items():
        if key[:2] == (mv.vma.path, mv.vma.perms) and set(key[2:]) <= flags:
            return name
    return None


def print_demo_step(console: Console, step: Step, width: int, shown: Shown) -> None:
    """A step of the demo: its title, what happened, each check with its figures, the page table."""
    console.rule(Text(step.title, style="bold"))
    console.print(step.text)
    for c in step.checks:
        mark = Text("✓ ", style="bold green") if c.ok else Text("✗ ", style="bold red")
        console.print(mark + Text(c.claim) + Text(f"  — {c.evidence}", style="dim"))
    if step.snapshot is not None:
        console.print(demo_pages_table(step, width, shown))


def print_demo(console: Console, allocator_name: str, steps: Sequence[Step], width: int, shown: Shown,
               title: str = "How does fork() treat memory that malloc() handed out?") -> int:
    """The whole demo: heading, legend, every step (tables of the `shown` mappings), the tally.

    Returns the number of failed checks.
    """
    console.print(Text(title, style="bold"))
    console.print(Text(f"model of Linux 6.x x86-64, malloc: {allocator_name}", style="dim"))
    console.print(legend())
    for step in steps:
        print_demo_step(console, step, width, shown)
    total = sum(len(s.checks) for s in steps)
    failed = sum(not c.ok for s in steps for c in s.checks)
    console.rule()
    style = "bold green" if not failed else "bold red"
    console.print(Text(f"{total - failed}/{total} checks hold", style=style))
    return failed

