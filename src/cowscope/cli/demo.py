"""`cowscope demo`: the story of how fork() treats malloc'd memory, told and checked on the model."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..demo import run_demo
from ..model.kernel.exec import LIBC_PATH

#: (path, perms) of the mappings the demo draws, and the short name it gives them
SHOWN = {("[heap]", "rw-p"): "[heap]", ("/usr/bin/app", "r-xp"): "app code",
         (LIBC_PATH, "r-xp"): "libc code", (LIBC_PATH, "rw-p"): "libc data", ("[stack]", "rw-p"): "[stack]"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="tell, step by step, what fork() does to memory malloc() handed out (on the model)",
        description="Run the fork/copy-on-write story on the model: a parent mallocs and fills a buffer, "
        "forks; the child writes part of it and frees an object; code pages stay shared; after the child "
        "exits the parent's writes copy nothing. Every claim is printed as a check with the figures that "
        "prove it, and a strip per mapping shows each page (see the legend). Exit status 1 if any check fails.")
    p.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report of every step")
    p.add_argument("--allocator", choices=("ptmalloc", "firstfit"), default=None,
                   help="malloc implementation in the model (default: ptmalloc, glibc 2.36's)")
    p.add_argument("--width", type=int, default=40, help="cells per page strip (default 40)")
    p.set_defaults(func=run)


def pages_table(step, width: int) -> Table:
    """One row per process and shown mapping: its strip and smaps figures (kB)."""
    from ..report.strips import strip

    t = Table(show_edge=False, pad_edge=False, box=None)
    for col in ("pid", "mapping", "Rss", "Pss", "Priv", "Shrd"):
        t.add_column(col, justify="left" if col in ("pid", "mapping") else "right", no_wrap=True)
    t.add_column("pages", no_wrap=True)
    for pv in step.snapshot.processes:
        if pv.pid not in step.pids:
            continue
        for mv in pv.mappings:
            name = SHOWN.get((mv.vma.path, mv.vma.perms))
            if name is None or mv.pages is None:
                continue
            s = mv.smaps
            figs = [str(s["Rss"]), str(s["Pss"]), str(s["Private_Clean"] + s["Private_Dirty"]),
                    str(s["Shared_Clean"] + s["Shared_Dirty"])] if s is not None else ["-"] * 4
            t.add_row(str(pv.pid), name, *figs, strip(mv.pages, width))
    return t


def run(args: argparse.Namespace) -> int:
    from ..report.strips import legend

    console = Console(highlight=False, markup=False)
    m, steps = run_demo(args.allocator)
    console.print(Text("How does fork() treat memory that malloc() handed out?", style="bold"))
    console.print(Text(f"model of Linux 6.x x86-64, malloc: {m.allocator_name}", style="dim"))
    console.print(legend())
    failed = 0
    for step in steps:
        console.rule(Text(step.title, style="bold"))
        console.print(step.text)
        for c in step.checks:
            mark = Text("✓ ", style="bold green") if c.ok else Text("✗ ", style="bold red")
            console.print(mark + Text(c.claim) + Text(f"  — {c.evidence}", style="dim"))
            failed += not c.ok
        if step.snapshot is not None:
            console.print(pages_table(step, args.width))
    total = sum(len(s.checks) for s in steps)
    console.rule()
    style = "bold green" if not failed else "bold red"
    console.print(Text(f"{total - failed}/{total} checks hold", style=style))
    if args.html:
        from ..report.html import write_report

        shown = [s for s in steps if s.snapshot is not None]
        notes = [s.text + " " + " ".join(("✓ " if c.ok else "✗ ") + c.claim for c in s.checks) for s in shown]
        out = write_report(args.html, [s.snapshot for s in shown], events=list(m.events),
                           title="cowscope demo: fork() and malloc'd memory", notes=notes)
        console.print(f"report written to {out}")
    return 1 if failed else 0
