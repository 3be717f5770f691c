"""`cowscope demo`: the story of how fork() treats malloc'd memory, told and checked on the model."""

from __future__ import annotations

import argparse

from .checks import output_file, whole


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="tell, step by step, what fork() does to memory malloc() handed out (on the model)",
        description="Run the fork/copy-on-write story on the model: a parent mallocs and fills a buffer, "
        "forks; the child writes part of it and frees an object; code pages stay shared; after the child "
        "exits the parent's writes copy nothing. Every claim is printed as a check with the figures that "
        "prove it, and a strip per mapping shows each page (see the legend). Exit status 1 if any check fails.")
    p.add_argument("story", nargs="?", choices=("fork", "thp", "threads"), default="fork",
                   help="fork: the malloc story (default); thp: a 2 MiB transparent huge page across "
                   "fork, where one write copies 4 KiB (2 MiB before Linux 5.8); threads: a server with "
                   "four threads forks, the child holds four malloc arenas it never uses, shared until written")
    p.add_argument("--html", type=output_file, metavar="FILE",
                   help="also write a self-contained HTML report of every step")
    p.add_argument("--allocator", choices=("ptmalloc", "firstfit"), default=None,
                   help="malloc implementation in the model (default: ptmalloc, glibc 2.36's)")
    p.add_argument("--width", type=whole(1), default=40, help="cells per page strip (default 40)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Play the story, print it; with --html also write the report. 1 if any check fails."""
    from rich.console import Console

    from ..report.demo import SHOWN, run_demo, step_notes
    from ..report.terminal import print_demo

    console = Console(highlight=False, markup=False)
    if args.story == "thp":
        from ..report import demo_thp

        m, steps = demo_thp.run_demo_thp()
        title = "What does fork() copy of a 2 MiB transparent huge page?"
        failed = print_demo(console, m.allocator_name, steps, args.width, demo_thp.SHOWN, title)
    elif args.story == "threads":
        from ..report import demo_threads

        m, steps = demo_threads.run_demo_threads()
        title = "What does fork() do with the malloc arenas of a threaded server?"
        failed = print_demo(console, m.allocator_name, steps, args.width, demo_threads.SHOWN, title)
    else:
        m, steps = run_demo(args.allocator)
        title = "cowscope demo: fork() and malloc'd memory"
        failed = print_demo(console, m.allocator_name, steps, args.width, SHOWN)
    if args.html:
        from ..report.html import write_report

        out = write_report(args.html, [s.snapshot for s in steps if s.snapshot is not None],
                           events=list(m.events), title=title, notes=step_notes(steps))
        console.print(f"report written to {out}")
    return 1 if failed else 0
