"""`cowscope verify`: run the conformance suite on the model and the real kernel, score agreement."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .checks import whole

if TYPE_CHECKING:
    from ..observe.backend import Machine
    from ..verify.compare import Diff
    from ..verify.conformance import Scenario
    from ..verify.trace import Trace

#: Makes a fresh machine of one backend.
MakeMachine = Callable[[], "Machine"]

EPILOG = """\
Each scenario runs on both backends through the same API; a scenario agrees when the op log
(bytes read, outcomes) and every checkpoint (per-region page states, PFN identity, VMAs, smaps
figures) are equal, apart from the listed exclusions ("~N": N excluded differences occurred,
shown with -v). "facts" says whether the kernel (and the
model) showed the measured facts of shared/reference/kernel-conformance.md the scenario states.

--random N runs N generated scenarios (cowscope.verify.fuzz: every call both backends share) from
--seed on; each seed is reproducible, and one that disagrees fails the run (--random-informational:
reported only).

exit status: 0 all scenarios (and random seeds) agree and the kernel shows every fact; 1 otherwise;
2 cannot run.
"""


def register(subparsers: Any) -> None:
    """Add the `verify` subcommand."""
    p = subparsers.add_parser("verify", help="conformance suite: model vs the real kernel, agreement score",
                              description=__doc__, epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ids", nargs="*", metavar="ID", help="only these scenarios (e.g. C05 A02) or modules")
    p.add_argument("--on", choices=("both", "linux", "model"), default="both",
                   help="backends to run (default both; one backend checks the facts only)")
    p.add_argument("-v", "--verbose", action="store_true", help="show each disagreement and failed fact")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    p.add_argument("--random", type=whole(0), default=0, metavar="N",
                   help="also run N seeded random differential scenarios on both backends; a seed "
                   "that disagrees fails the run")
    p.add_argument("--seed", type=whole(0), default=0, help="first seed for --random (default 0)")
    p.add_argument("--random-only", action="store_true", help="run only the --random scenarios, not the suite")
    p.add_argument("--random-informational", action="store_true",
                   help="report disagreeing random seeds without failing the run (as before random seeds counted)")
    p.set_defaults(func=run)


def _select(ids: list[str]) -> list[Scenario]:
    from ..verify.conformance import all_scenarios

    scenarios = all_scenarios()
    if not ids:
        return scenarios
    wanted = {i.lower() for i in ids}
    return [s for s in scenarios if s.id.lower() in wanted or s.module.lower() in wanted]


@dataclass
class _Score:
    """What the suite found so far."""

    agree: int = 0
    facts_ok: int = 0
    events: Any = None  # verify.events.EventScore when both backends record events
    event_agree: int = 0
    event_note: str | None = None
    failing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    kpage_note: bool = False
    random_line: str = ""


def run(args: argparse.Namespace) -> int:
    """Run the suite; print one line per scenario, the exclusions and the score."""
    scenarios = _select(args.ids)
    if args.list:
        for s in scenarios:
            print(f"{s.id:<5} {s.module:<10} {s.title}")
        return 0
    if not scenarios:
        print("no such scenario", file=sys.stderr)
        return 2
    from ..linux.build import backend_problem

    problem = backend_problem() if args.on in ("both", "linux") else None
    if problem:
        print(f"cowscope verify: cannot run the kernel side: {problem}", file=sys.stderr)
        return 2
    make_model, make_linux = _backends(args.on)
    t0 = time.time()
    score = _Score()
    for s in [] if args.random_only else scenarios:
        _run_scenario(s, make_model, make_linux, args.verbose, score)
    if args.random and make_model and make_linux:
        failing, score.random_line = _random_runs(args, make_model)
        score.failing += failing
    _print_exclusions()
    if not args.random_only:
        _print_score(score, len(scenarios), make_model is not None, make_linux is not None)
    if score.random_line:
        print(score.random_line + (" (informational: not in the exit status)" if args.random_informational
                                   else ""))
    print(f"({time.time() - t0:.1f} s)")
    return 0 if not score.failing else 1


def _backends(on: str) -> tuple[MakeMachine | None, MakeMachine | None]:
    """(model, kernel) machine factories for --on; None for a backend not run."""
    make_model = make_linux = None
    if on in ("both", "linux"):
        from functools import partial

        from ..linux.machine import Machine as LinuxMachine
        from ..linux.tracefs import tracing_problem

        # the kernel's own events too (tracepoints), when this machine can trace
        make_linux = partial(LinuxMachine, events=tracing_problem() is None)
    if on in ("both", "model"):
        from ..model import Machine as ModelMachine

        host = _host_config() if make_linux else {}

        def make_model() -> Any:
            """The model set up as this host (RAM, overcommit, protection keys, readahead)."""
            return ModelMachine(**host)
    return make_model, make_linux


def _host_config() -> dict[str, Any]:
    """The model Machine's settings for comparing with this host."""
    from ..linux.machine import host_model_config

    return host_model_config()


def _run_scenario(s: Scenario, make_model: MakeMachine | None, make_linux: MakeMachine | None, verbose: bool,
                  score: _Score) -> None:
    """One scenario on the backends asked for: its line (and with -v its differences), counted."""
    from ..verify.compare import compare, counted, run_traced

    tl = run_traced(s.fn, make_linux(), "linux") if make_linux else None
    tm = run_traced(s.fn, make_model(), "model") if make_model else None
    if tl is not None and not tl.kpage and not score.kpage_note:
        print("note: no root: PFNs and /proc/kpagecount are unavailable; page identity and map "
              "counts are not compared")
        score.kpage_note = True
    diffs = compare(tm, tl) if tm and tl else []
    bad = counted(diffs)
    skipped = next((tr.skipped for tr in (tl, tm) if tr is not None and tr.skipped), None)
    skipped = skipped or (None if bad else _needs_root(tl))  # a difference is reported all the same
    if skipped:
        score.skipped.append(s.id)
        print(f"{s.id:<5} {'skipped':<12} {skipped}  ({s.title})")
        if verbose:
            _print_details([tl, tm], [])
        return
    event_verdict, event_diffs = _events(tm, tl, score)
    kernel_facts = _facts(tl)
    model_facts = _facts(tm)
    ok_facts = kernel_facts in ("ok", "-")
    score.facts_ok += ok_facts
    if tm and tl:
        score.agree += not bad
        nex = len(diffs) - len(bad)
        verdict = ("agree" if not bad else f"DIFFER ({len(bad)})") + (f" ~{nex}" if nex else "")
    else:
        verdict = "-"
    if bad or not ok_facts or (tm and model_facts != "ok") or event_verdict.startswith("DIFFER"):
        score.failing.append(s.id)
    print(f"{s.id:<5} {verdict:<12} events {event_verdict:<10} kernel {kernel_facts:<10} model {model_facts:<10} "
          f"{s.title}")
    if verbose:
        _print_details([tl, tm], diffs + event_diffs)


def _events(tm: Trace | None, tl: Trace | None, score: _Score) -> tuple[str, list[Any]]:
    """Compare the two event logs (when both recorded them): the scenario's event verdict and its
    event differences (excluded ones tagged with their reason)."""
    from ..verify.events import EventScore, compare_events

    if not (tm and tl and tm.events_on and tl.events_on):
        if tm and tl and not tl.events_on:
            score.event_note = "the kernel's events were not traced (root and tracefs are needed)"
        return "-", []
    if score.events is None:
        score.events = EventScore()
    before = (score.events.compared, score.events.agreed)
    ev_diffs = compare_events(tm, tl, score.events)
    bad = [d for d in ev_diffs if d.excluded is None]
    score.event_agree += not bad
    compared = score.events.compared - before[0]
    nex = len(ev_diffs) - len(bad)
    verdict = ("agree" if not bad else f"DIFFER ({len(bad)})") + (f" ~{nex}" if nex else "")
    return verdict + ("" if compared or bad else " (none)"), ev_diffs


def _needs_root(tl: Trace | None) -> str | None:
    """Why a kernel run without root cannot check the scenario's facts: some read what only root
    sees (PFNs, map counts, the zero page) and some failed."""
    if tl is None or not tl.needs_root or not tl.failures:
        return None
    return f"needs root: {len(tl.failures)} fact(s) read {'; '.join(sorted(tl.needs_root))}"


def _print_details(traces: list[Trace | None], diffs: list[Diff]) -> None:
    """Each backend's error and failed facts, then every difference (≠ counted, ~ excluded)."""
    for tr in traces:
        if tr is None:
            continue
        if tr.error:
            print(f"      {tr.backend} error: {tr.error}")
        for f in tr.failures:
            print(f"      {tr.backend} fact failed: {f}")
    for d in diffs:
        print(f"      {'≠' if d.excluded is None else '~'} {d.line()}")


def _print_exclusions() -> None:
    from ..verify.exclusions import EVENT_EXCLUSIONS, EXCLUSIONS, NOT_COVERED

    print()
    print("excluded from comparison (not compared, by design):")
    for what, why in EXCLUSIONS.items():
        print(f"  - {what}: {why}")
    print("events: what the event comparison leaves out, and why:")
    for what, why in EVENT_EXCLUSIONS.items():
        print(f"  - {what}: {why}")
    print("not run (measured on the kernel, but outside what this suite can drive):")
    for what, why in NOT_COVERED.items():
        print(f"  - {what}: {why}")
    print()


def _print_score(score: _Score, n: int, model: bool, linux: bool) -> None:
    if score.skipped:
        print(f"skipped: {len(score.skipped)} scenario(s) that cannot run here (as root they would): "
              f"{' '.join(score.skipped)}")
        n -= len(score.skipped)
    n = max(n, 1)
    if model and linux:
        print(f"agreement: {score.agree}/{n} scenarios ({100.0 * score.agree / n:.1f}%)")
        ev = score.events
        if ev is not None:
            print(f"event agreement: {score.event_agree}/{n} scenarios ({100.0 * score.event_agree / n:.1f}%); "
                  f"{ev.agreed}/{ev.compared} (checkpoint, process, region) event sequences agree "
                  f"({ev.percent:.1f}%, {ev.events} model events compared; {ev.excluded} sequences excluded, "
                  "each with its reason: -v)")
        elif score.event_note:
            print(f"event agreement: not measured: {score.event_note}")
    if linux:
        print(f"kernel facts: {score.facts_ok}/{n} scenarios show every stated fact")
    if score.failing:
        print("not passing: " + " ".join(score.failing))


def _random_runs(args: argparse.Namespace, make_model: MakeMachine) -> tuple[list[str], str]:
    """Seeded random op sequences on both backends (the kernel's without tracing: not compared
    for random scenarios); one line per seed that disagrees. (failing ids, score line)."""
    from ..linux.machine import Machine as LinuxMachine
    from ..verify.fuzz import run_random

    print()
    print(f"random differential runs: seeds {args.seed}..{args.seed + args.random - 1}", flush=True)

    shown: list[int] = []

    def report(seed: int, lines: list[str]) -> None:
        """One disagreeing seed: its first difference (all of them with -v), the command that
        replays it and, for the first three, a shrunk program that still disagrees."""
        print(f"  seed {seed:<5} DIFFER ({len(lines)}) first: {lines[0][:200]}", flush=True)
        if args.verbose:
            for line in lines[1:]:
                print(f"      ≠ {line}")
        print(f"      replay: cowscope verify --random 1 --seed {seed} --random-only -v", flush=True)
        if len(shown) < 3:
            shown.append(seed)
            _print_program(seed, make_model, LinuxMachine)

    res = run_random(args.seed, args.random, make_model, LinuxMachine, on_seed=report)
    line = (f"random differential: {res.agree}/{res.count} seeds agree (seeds {res.seeds}, "
            f"{res.seconds:.0f} s)")
    print(f"  {line}")
    failing = [f"random:{seed}" for seed in res.disagreeing]
    return ([] if args.random_informational else failing), line


def _print_program(seed: int, make_model: MakeMachine, make_linux: MakeMachine) -> None:
    """The seed's calls shrunk to a program on which the backends still disagree (verify.replay)."""
    from ..verify.replay import minimal_program

    prog = minimal_program(seed, make_model, make_linux, budget_s=60.0)
    if prog is None:
        print("      (its calls replayed as a program agree: no program to show)")
        return
    print("      a smaller program that still disagrees (save it, run it with cowscope run --on both):")
    print("\n".join("        " + ln if ln else "" for ln in prog.splitlines()), flush=True)


def _facts(tr: Trace | None) -> str:
    if tr is None:
        return "-"
    if tr.error:
        return "ERROR"
    return "ok" if not tr.failures else f"FAIL({len(tr.failures)})"
