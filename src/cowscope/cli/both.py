"""`cowscope run SCENARIO.py --on both`: one scenario on the model and the kernel, side by side."""

from __future__ import annotations

import argparse
import sys

from ..verify.compare import compare, counted, render, run_traced
from ..verify.exclusions import EXCLUSIONS


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
    linux = run_traced(fn, LinuxMachine(), "linux", snapshots=bool(html))
    diffs = compare(model, linux)
    print(render(model, linux, diffs))
    if html:
        from ..report.html import write_report

        amap = {a: linux.addresses[k] for k, a in model.addresses.items() if k in linux.addresses}
        out = write_report(html, model.snapshots, events=list(model_machine.events), compare=linux.snapshots,
                           title=f"cowscope run {args.scenario} --on both", address_map=amap)
        print(f"report written to {out} (model, with the kernel as the comparison series)")
    if not linux.kpage:
        print("note: no root: PFNs and /proc/kpagecount are unavailable; page identity and map counts "
              "are not compared")
    print("never compared (by design): " + "; ".join(EXCLUSIONS) + " (cowscope verify lists the reasons)")
    if model.outcome and model.outcome == linux.outcome:
        return 2  # the scenario failed the same way on both
    return 1 if counted(diffs) else 0
