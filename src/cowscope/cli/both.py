"""`cowscope run SCENARIO.py --on both`: one scenario on the model and the kernel, side by side."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..linux.tracefs import tracing_problem
from ..verify.compare import compare, counted, render, run_traced
from ..verify.events import EventScore, compare_events
from ..verify.exclusions import EVENT_EXCLUSIONS, EXCLUSIONS


def run_both(args: argparse.Namespace) -> int:
    """0 agree, 1 they disagree, 2 the scenario failed on both (or could not be loaded)."""
    from ..linux.machine import Machine as LinuxMachine
    from ..linux.machine import host_model_config
    from ..model import Machine as ModelMachine
    from ..scenario import ScenarioError, load_scenario

    try:
        fn = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"cowscope run: {exc}", file=sys.stderr)
        return 2
    html = getattr(args, "html", None)
    model_machine = ModelMachine(allocator=getattr(args, "allocator", None), **host_model_config())
    model = run_traced(fn, model_machine, "model", snapshots=bool(html))
    linux = run_traced(fn, LinuxMachine(events=tracing_problem() is None), "linux", snapshots=bool(html))
    diffs = compare(model, linux)
    print(render(model, linux, diffs))
    event_line, event_diffs = _print_events(model, linux)
    if html:
        from ..report.html import write_report
        from ..verify.verdict import build

        amap = {a: linux.addresses[k] for k, a in model.addresses.items() if k in linux.addresses}
        out = write_report(html, model.snapshots, events=list(model_machine.events), compare=linux.snapshots,
                           title=f"cowscope run {args.scenario} --on both", address_map=amap,
                           verdict=build(model, linux, diffs, event_diffs, event_line))
        print(f"report written to {out} (model, with the kernel as the comparison series and its verdict)")
    if not linux.kpage:
        print("note: no root: PFNs and /proc/kpagecount are unavailable; page identity and map counts "
              "are not compared")
    print("never compared (by design): " + "; ".join(EXCLUSIONS) + " (cowscope verify lists the reasons)")
    if model.outcome and model.outcome == linux.outcome:
        return 2  # the scenario failed the same way on both
    return 1 if counted(diffs) or any(d.excluded is None for d in event_diffs) else 0


def _print_events(model: Any, linux: Any) -> tuple[str, list[Any]]:
    """The event comparison: its figure and every differing sequence (excluded ones with their reason).
    Returns the figure's line and the differences."""
    if not linux.events_on:
        line = "events: not compared (the kernel's events need root and tracefs)"
        print(line)
        return line, []
    score = EventScore()
    diffs = compare_events(model, linux, score)
    line = (f"events: {score.agreed}/{score.compared} (checkpoint, process, region) sequences agree "
            f"({score.percent:.1f}%; {score.excluded} excluded)")
    print(line)
    for d in diffs:
        print(f"  {'≠' if d.excluded is None else '~'} {d.line()}")
    if any(d.excluded for d in diffs):
        print("  (~ excluded: " + "; ".join(sorted({f"{d.excluded}: {EVENT_EXCLUSIONS[d.excluded]}"
                                                      for d in diffs if d.excluded})) + ")")
    return line, diffs
