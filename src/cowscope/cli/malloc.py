"""`cowscope malloc`: replay malloc operation files on the ptmalloc model, diff against real glibc."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

from .checks import input_file, output_file, read_text, whole


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `malloc` command and its replay/diff/native/gen subcommands."""
    p = sub.add_parser(
        "malloc", help="replay malloc operation files on the ptmalloc model (glibc 2.36) or diff with glibc",
        description="Operation files use the malloc-cases format (m/c/r/f/a/t/o/x/F/w/s lines; see "
        "tests/fixtures/malloc-cases/README.md). Output is the harness's .expected format, so "
        "`diff` against real glibc's output is the test.")
    msub = p.add_subparsers(dest="malloc_command", metavar="SUBCOMMAND")
    r = msub.add_parser("replay", help="run OPS_FILE on the model; print results in the .expected format")
    r.add_argument("ops_file", type=input_file)
    r.add_argument("--state", type=output_file, metavar="FILE",
                   help="also write the bins after every operation (.state format)")
    r.add_argument("--machine", action="store_true",
                   help="run on a full model process (page tables, faults) instead of the flat host; "
                   "prints the pages each operation faulted in or copied as comments")
    d = msub.add_parser("diff", help="run OPS_FILE on the model and on real glibc; show the first divergence "
                        "with both sides' bins")
    d.add_argument("ops_file", type=input_file)
    n = msub.add_parser("native", help="run OPS_FILE on the real glibc (native harness) and print its results")
    n.add_argument("ops_file", type=input_file)
    n.add_argument("--state", type=output_file, metavar="FILE",
                   help="also write glibc's bins after every operation")
    g = msub.add_parser("gen", help="print a seeded random workload (every call mixed)")
    g.add_argument("--seed", type=whole(0), default=0)
    g.add_argument("--ops", type=whole(0), default=10000)
    g.add_argument("--threads", type=whole(0), default=0, metavar="N",
                   help="calls from up to N threads besides the initial one (created, ended and joined "
                   "along the way; lines start with the thread number)")
    p.set_defaults(func=run, malloc_parser=p)


def _read(path: str) -> str:
    """The ops file's text ('-' is stdin)."""
    return read_text(path, "ops file")


def _states_by_op(lines: list[str]) -> dict[int, list[str]]:
    """Split a .state dump into op number -> its lines."""
    out: dict[int, list[str]] = {}
    cur: list[str] | None = None
    for line in lines:
        if line.startswith("== "):
            cur = out.setdefault(int(line[3:]), [])
        elif cur is not None:
            cur.append(line)
    return out


def diff_report(ops_text: str) -> tuple[bool, list[str]]:
    """Run both sides; (identical?, report lines)."""
    from ..model.libc.flat import FlatHost
    from ..model.libc.ptmalloc import replay_text
    from ..model.libc.ptmalloc.native import run_native

    real, rstate = run_native(ops_text, with_state=True)
    # the model's heap starts where this run's did, so alignments above a page agree too
    base = next((int(x[4:], 16) for x in rstate[:1] if x.startswith("# H=")), None)
    host = FlatHost(heap_base=base or 0x1000000, commit_pages=host_commit_pages())
    model, mstate = replay_text(ops_text, host=host, with_state=True)
    if model == real:
        return True, [f"identical: {len(model)} lines (model = glibc {len(real) - 3} operations)"]
    i = next(k for k, (a, b) in enumerate(zip(model + ["<eof>"], real + ["<eof>"])) if a != b)
    out = [f"first divergence at output line {i + 1}:", f"  model: {model[i] if i < len(model) else '<eof>'}",
           f"  glibc: {real[i] if i < len(real) else '<eof>'}"]
    m = re.match(r"(\d+) ", real[i] if i < len(real) else "") or re.match(r"(\d+) ", model[i] if i < len(model)
                                                                            else "")
    op = int(m.group(1)) if m else max(0, i - 1)
    ms, rs = _states_by_op(mstate), _states_by_op(rstate)
    if op - 1 in rs or op - 1 in ms:
        before_m, before_r = ms.get(op - 1, []), rs.get(op - 1, [])
        if before_m == before_r:
            out.append(f"bins before operation {op} (identical on both sides):")
            out += [f"  {x}" for x in before_r]
        else:
            out.append(f"bins before operation {op} differ already:")
            out += ["  " + x for x in difflib.unified_diff(before_r, before_m, "glibc", "model", lineterm="")]
    if op in ms or op in rs:
        out.append(f"bins after operation {op} (--- glibc, +++ model):")
        diff = list(difflib.unified_diff(rs.get(op, []), ms.get(op, []), "glibc", "model", lineterm=""))
        out += ["  " + x for x in diff] or ["  (same bins)"]
    return False, out


def host_commit_pages() -> int:
    """RAM + swap of this machine in pages: the overcommit heuristic's limit glibc meets here."""
    from ..model.libc.flat import REFERENCE_COMMIT_PAGES
    from ..observe.procfs import read_meminfo

    try:
        kb = read_meminfo()
    except OSError:
        return REFERENCE_COMMIT_PAGES
    return (kb.get("MemTotal", 0) + kb.get("SwapTotal", 0)) // 4 or REFERENCE_COMMIT_PAGES


def replay_on_machine(ops_text: str, with_state: bool = False) -> tuple[list[str], list[str]]:
    """Replay on a model process; after each result line, a `#` line with that op's page faults."""
    from ..model import Machine
    from ..model.libc.ptmalloc import PtMalloc, dump_state
    from ..model.libc.ptmalloc.replay import ModelRunner, parse_ops

    m = Machine(allocator="ptmalloc")
    p = m.spawn("replay")
    runner = ModelRunner(PtMalloc(p))
    states: list[str] = []
    lines: list[str] = []
    mark = [len(m.events)]

    def hook(n: int) -> None:
        """After operation n: its faults as a comment line (and its bins)."""
        kinds: dict[str, list[str]] = {}
        for e in m.events.since(mark[0]):
            if e.pid == p.pid:
                kinds.setdefault(e.kind, []).append(f"{e.address:#x}")
        mark[0] = len(m.events)
        if kinds:
            lines.append("#   " + "; ".join(f"{k} {' '.join(v)}" for k, v in kinds.items()))
        if with_state:
            states.append(f"== {n}")
            states.extend(dump_state(runner.alloc, runner.H))

    runner.state_hook = hook
    for line in runner.run(parse_ops(ops_text)):
        lines.append(line)      # the hook of an op runs when the next line is asked for
    return lines, states


def run(args: argparse.Namespace) -> int:
    """Dispatch `cowscope malloc SUBCOMMAND`."""
    cmd = getattr(args, "malloc_command", None)
    if cmd is None:
        args.malloc_parser.print_help()
        return 2
    if cmd == "gen":
        from ..model.libc.ptmalloc.workload import generate, generate_threaded

        if args.threads < 0 or args.ops < 0:
            print("error: --threads and --ops must not be negative", file=sys.stderr)
            return 2
        sys.stdout.write(generate_threaded(args.seed, args.ops, args.threads) if args.threads
                         else generate(args.seed, args.ops))
        return 0
    try:
        text = _read(args.ops_file)
    except OSError as exc:
        print(f"cowscope malloc: {exc}", file=sys.stderr)
        return 2
    try:
        if cmd == "replay" and args.machine:
            lines, states = replay_on_machine(text, with_state=bool(args.state))
        elif cmd == "replay":
            from ..model.libc.ptmalloc import replay_text

            lines, states = replay_text(text, with_state=bool(args.state))
        elif cmd == "native":
            from ..model.libc.ptmalloc.native import run_native

            lines, states = run_native(text, with_state=bool(args.state))
        else:
            same, report = diff_report(text)
            print("\n".join(report))
            return 0 if same else 1
    except ValueError as exc:
        print(f"cowscope malloc: {args.ops_file}: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"cowscope malloc: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    if args.state:
        Path(args.state).write_text("".join(f"{x}\n" for x in states))
    return 0
