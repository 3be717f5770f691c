"""`cowscope run SCENARIO.py --on both`: one scenario on the model and the kernel, side by side."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

from ..linux.tracefs import tracing_problem
from ..report.both import BothView, print_both
from ..verify.compare import compare, counted, run_traced
from ..verify.events import EventScore, compare_events
from ..verify.exclusions import EVENT_EXCLUSIONS, EXCLUSIONS
from ..verify.verdict import build as build_verdict


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
    event_line, event_diffs = _events(model, linux)
    console = Console(highlight=False, markup=False)
    reasons = {why: what for what, why in EXCLUSIONS.items()}
    print_both(console, model, linux, diffs, reasons, event_line, event_diffs,
               BothView(getattr(args, "width", 48), bool(getattr(args, "all_mappings", False))))
    if any(d.excluded for d in event_diffs):
        console.print(Text("(~ excluded events: " + "; ".join(sorted({f"{d.excluded}: {EVENT_EXCLUSIONS[d.excluded]}"
                                                                      for d in event_diffs if d.excluded})) + ")",
                           style="dim"))
    if html:
        _write_html(html, args.scenario, model, linux, list(model_machine.events),
                    build_verdict(model, linux, diffs, event_diffs, event_line))
    if not linux.kpage:
        console.print("note: no root: PFNs and /proc/kpagecount are unavailable; page identity and map counts "
                      "are not compared")
    console.print("never compared (by design): " + "; ".join(EXCLUSIONS) + " (cowscope verify lists the reasons)")
    if model.outcome and model.outcome == linux.outcome:
        return 2  # the scenario failed the same way on both
    return 1 if counted(diffs) or any(d.excluded is None for d in event_diffs) else 0


def _write_html(path: str, scenario: str, model: Any, linux: Any, events: list[Any], verdict: Any) -> None:
    """The HTML report: the model's checkpoints, the kernel's beside them (none where the kernel's run
    ended earlier), the comparison's verdict."""
    from ..report.html import write_report

    snaps = model.snapshots
    if not snaps:
        print("no HTML report: the scenario ended on the model before its first checkpoint")
        return
    kernel = [*linux.snapshots[: len(snaps)], *[None] * (len(snaps) - len(linux.snapshots))]
    amap = {a: linux.addresses[k] for k, a in model.addresses.items() if k in linux.addresses}
    out = write_report(path, snaps, events=events, compare=kernel, title=f"cowscope run {scenario} --on both",
                       address_map=amap, verdict=verdict)
    print(f"report written to {out} (model, with the kernel as the comparison series and its verdict)")


def _events(model: Any, linux: Any) -> tuple[str, list[Any]]:
    """The event comparison's figure and its differing sequences (excluded ones with their reason)."""
    if not linux.events_on:
        return "events: not compared (the kernel's events need root and tracefs)", []
    score = EventScore()
    diffs = compare_events(model, linux, score)
    return (f"events: {score.agreed}/{score.compared} (checkpoint, process, region) sequences agree "
            f"({score.percent:.1f}%; {score.excluded} excluded)"), diffs
