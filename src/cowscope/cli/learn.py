"""`cowscope learn`: practise predicting what fork() does to memory; the model answers, the kernel
confirms."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from .checks import output_file, whole

DESCRIPTION = """\
Seeded problems about fork, copy-on-write, the zero page, malloc, files,
vfork/exec and madvise, in the spirit of OSTEP's homework simulators. A
problem is a short program shown as C lines; at chosen points it asks what
happens. The model computes every answer from what /proc shows; with
--on linux the same problem runs in real processes and the kernel's answer
is shown beside the model's (a disagreement is a bug, reported as such).

Without an output option, practise interactively: answer, then see the
right answer, the kernel path, the page strips before and after, and why;
a score per topic; missed topics come back.
"""

EPILOG = """\
examples:
  cowscope learn                   practise (q or Ctrl-C: your score)
  cowscope learn --seed 7 -c       a homework sheet with its answer key
  cowscope learn --seed 7 --sheet  the same sheet, '?' for the answers
  cowscope learn --seed 7 -n 5 --html w.html    a printable worksheet
  cowscope learn --topic malloc --level 3 --count 5 -c
  cowscope learn -A 'P mmap a 2; P write a all; P fork C;
                     ? outcome C write a 1'     your own problem
  cowscope learn --seed 7 --on linux -c   confirmed by this kernel
  cowscope learn --seed 7 --emit-c p7.c   C that prints the answers
  cowscope learn --seed 7 --inverse -c    which line ran?

the action language (--show-language for all of it):
  P mmap a 4 [shared] [file=f]  P write a 0-3 [=B]  P read a 2
  P fork C  C exit  P wait C  P malloc x 100  P free x
  P madvise a 1 dontneed  file f 2  pwrite f 1
  ? outcome C write a 1 [why]  ? value C read a 1  ? faults C write a all
  ? copies C free x  ? strip P a  ? rss|pss|uss P a
  ? addr P malloc y 100  ? own P code  ? file f 1

exit status: 0 ok; 1 the kernel disagreed with the model (--on linux);
2 bad input.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("learn", help="practise predicting what fork() does to memory (seeded problems)",
                       description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-s", "--seed", type=int, default=None, help="the problem's seed (default: a random one, shown)")
    p.add_argument("--topic", default=None, help="only this topic (--list-topics)")
    p.add_argument("--level", type=int, default=None, help="difficulty 1-3 (default: picked by the seed)")
    p.add_argument("-n", "--count", type=whole(1), default=1, help="problems on a sheet: seeds SEED, SEED+1, ...")
    p.add_argument("--list-topics", action="store_true", help="list the topics and exit")
    p.add_argument("-A", "--explicit", metavar="TEXT", default=None,
                   help="a hand-written problem in the action language (statements separated by ';')")
    p.add_argument("--show-language", action="store_true", help="print the action language and exit")
    p.add_argument("-t", "--inverse", action="store_true",
                   help="turn the problems around: two states of the pages, which line ran in between?")
    out = p.add_argument_group("output (default: interactive practice)")
    out.add_argument("-c", "--answers", action="store_true", help="print the problem with its answer key")
    out.add_argument("--sheet", action="store_true", help="print the problem with '?' for every answer")
    out.add_argument("--json", action="store_true", help="the problem as JSON (with answers when -c)")
    out.add_argument("--html", type=output_file, metavar="FILE",
                     help="write an HTML worksheet (with the answer key when -c)")
    out.add_argument("--report", type=output_file, metavar="FILE",
                     help="write the model's run as the HTML page-map report, a step per question (one problem)")
    out.add_argument("--emit-c", type=output_file, metavar="FILE",
                     help="write the problem as a standalone C program that prints its answers from /proc "
                     "(with --count N: FILE's name gets each problem's seed)")
    p.add_argument("--on", choices=("model", "linux"), default="model",
                   help="linux: also run the problem in real processes and show the kernel's answers")
    p.add_argument("--width", type=whole(20), default=72, help="text width of sheets (default 72)")
    p.set_defaults(func=run)


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def problems(args: argparse.Namespace) -> list[Any]:
    """The problems the arguments ask for (ProblemError on bad input)."""
    from ..learn.generate import generate
    from ..learn.lang import ProblemError, parse

    if args.explicit is not None:
        return [parse(args.explicit)]
    if args.count < 1 or args.count > 100:
        raise ProblemError("--count: 1 to 100 problems")
    seed = args.seed if args.seed is not None else _random_seed()
    return [generate(seed + i, args.topic, args.level, args.inverse) for i in range(args.count)]


def _random_seed() -> int:
    return int.from_bytes(os.urandom(4), "little") % 100000


def run(args: argparse.Namespace) -> int:
    from ..learn.lang import ProblemError

    if args.list_topics:
        return _list_topics()
    if args.show_language:
        from ..learn import lang

        print(lang.__doc__.strip())
        return 0
    if args.level is not None and args.level not in (1, 2, 3):
        return _fail(f"--level {args.level}: levels are 1, 2, 3")
    from ..learn.generate import invertible, topic_names

    if args.topic is not None and args.topic not in topic_names():
        return _fail(f"unknown topic {args.topic!r}; topics: {', '.join(topic_names())}")
    if args.inverse and args.topic is not None and not invertible(args.topic):
        return _fail(f"--inverse: {args.topic} problems have no private anonymous region whose page strips "
                     "could show which line ran; topics for --inverse: "
                     + ", ".join(t for t in topic_names() if invertible(t)))
    from ..linux.build import backend_problem

    if args.on == "linux" and (why := backend_problem()):
        return _fail(f"--on linux: {why}")
    try:
        if not (args.answers or args.sheet or args.json or args.html or args.emit_c or args.report):
            from ..learn.interactive import practise

            return practise(args)
        if args.inverse:
            return _inverse_outputs(args, problems(args))
        return _outputs(args, problems(args))
    except ProblemError as e:
        return _fail(str(e))


def _inverse_outputs(args: argparse.Namespace, probs: list[Any]) -> int:
    """Inverse sheets (-c, --sheet) and JSON; 1 when the kernel shows other states."""
    from ..learn import sheet
    from ..learn.inverse import confirm_on, invert
    from ..learn.lang import ProblemError

    if args.html or args.emit_c or args.report:
        raise ProblemError("--inverse problems are printed (-c, --sheet) or --json; not --html, --report "
                           "or --emit-c")
    invs = [invert(p) for p in probs]
    empty = [inv.problem for inv in invs if not inv.questions]
    if empty:
        which = "the problem" if empty[0].seed is None else f"seed {empty[0].seed} ({empty[0].topic})"
        raise ProblemError(f"{which} has no line whose effect the page strips of its private anonymous "
                           "regions show; try another seed or topic")
    kernel = None
    if args.on == "linux":
        from ..learn.confirm import KernelBackend

        with KernelBackend() as kb:
            kernel = [confirm_on(inv, kb.state) for inv in invs]
    bad = sum(not ok for checks in kernel or [] for ok, _ in checks)
    if args.json:
        data = [sheet.inverse_json(inv, args.answers, k) for inv, k in zip(invs, kernel or [None] * len(invs))]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=1))
    else:
        texts = [sheet.inverse_text(inv, args.answers, k, args.width)
                 for inv, k in zip(invs, kernel or [None] * len(invs))]
        print(("\n" + "=" * min(args.width, 72) + "\n\n").join(texts), end="")
    if bad:
        print(f"the kernel showed other states than the model for {bad} question(s): a bug in the model "
              "(or in cowscope learn); please report it", file=sys.stderr)
    return 1 if bad else 0


def _outputs(args: argparse.Namespace, probs: list[Any]) -> int:
    """Sheets, JSON, HTML and C for the problems; 1 when the kernel disagreed."""
    from ..learn import sheet
    from ..learn.confirm import Confirmation

    solved = _solve_all(probs, args.on == "linux")
    disagree = sum(len(Confirmation(m, k).disagreements()) for m, k in solved if k is not None)
    key = args.answers
    if args.json:
        data = [sheet.sheet_json(p, m if key else None, k if key else None) for p, (m, k) in zip(probs, solved)]
        print(json.dumps(data[0] if len(data) == 1 else data, indent=1))
    elif args.answers or args.sheet:
        texts = [sheet.sheet_text(p, m if key else None, k if key else None, args.width)
                 for p, (m, k) in zip(probs, solved)]
        print(("\n" + "=" * min(args.width, 72) + "\n\n").join(texts), end="")
    if args.html:
        from ..report.worksheet import write_worksheet

        data = [sheet.sheet_json(p, m if key else None, k if key else None) for p, (m, k) in zip(probs, solved)]
        try:
            path = write_worksheet(args.html, data, answers=key)
        except OSError as e:
            return _fail(f"--html {args.html}: {e.strerror or e}")
        print(f"worksheet written to {path}", file=sys.stderr)
    if args.emit_c:
        _emit(args.emit_c, probs, [m for m, _ in solved])
    if args.report:
        _report(args.report, probs)
    if disagree:
        print(f"the kernel disagreed with the model on {disagree} answer(s): a bug in the model "
              "(or in cowscope learn); please report it", file=sys.stderr)
    return 1 if disagree else 0


def _emit(path: str, probs: list[Any], models: list[Any]) -> None:
    """One C program per problem: PATH, or PATH with the seed before its suffix for several."""
    from pathlib import Path

    from ..learn.emit_c import emit_c
    from ..learn.lang import ProblemError

    target = Path(path)
    for p, m in zip(probs, models):
        out = target if len(probs) == 1 else target.with_name(f"{target.stem}-{p.seed}{target.suffix or '.c'}")
        try:
            out.write_text(emit_c(p, m), encoding="utf-8")
        except OSError as e:
            raise ProblemError(f"--emit-c {out}: {e.strerror or e}") from None
        print(f"C program written to {out}: cc -o learn {out} && sudo ./learn", file=sys.stderr)


def _report(path: str, probs: list[Any]) -> None:
    """The model's run of one problem as the page-map report: a snapshot and a note per question."""
    from ..learn import show
    from ..learn.lang import ProblemError
    from ..learn.sheet import format_value
    from ..learn.solve import solve
    from ..model import Machine
    from ..report.html import write_report

    if len(probs) != 1:
        raise ProblemError("--report: one problem at a time (no --count)")
    m = Machine()
    sol = solve(probs[0], m, snapshots=True)
    notes = [f"Q{n}. {show.prompt(a.question)} Answer: {format_value(a.value)}"
             + (f" (why: {a.why})" if a.why else "") + (f". {a.reason}" if a.reason else "")
             for n, a in enumerate(sol.answers, 1)]
    try:
        out = write_report(path, sol.snapshots, events=list(m.events), notes=notes,
                           title=f"cowscope learn: {show.problem_header(probs[0])}")
    except OSError as e:
        raise ProblemError(f"--report {path}: {e.strerror or e}") from None
    print(f"report written to {out}", file=sys.stderr)


def _solve_all(probs: list[Any], on_linux: bool) -> list[tuple[Any, Any]]:
    from ..learn.solve import solve
    from ..model import Machine

    models = [solve(p, Machine()) for p in probs]
    if not on_linux:
        return [(m, None) for m in models]
    from ..learn.confirm import KernelBackend

    with KernelBackend() as kb:
        return [(m, kb.solve(p)) for m, p in zip(models, probs)]


def _list_topics() -> int:
    from ..learn.generate import GENERATOR_VERSION, topic_summaries

    print(f"topics (generator v{GENERATOR_VERSION}; levels 1-3):")
    for name, summary in topic_summaries():
        print(f"  {name:<8} {summary}")
    print("not yet: huge pages, threads (the model has neither)")
    return 0
