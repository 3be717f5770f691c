"""The conformance suite on the real kernel (every stated fact must hold) and against the model."""

from __future__ import annotations

import os

import pytest

from cowscope.verify.compare import compare, counted, run_traced
from cowscope.verify.conformance import all_scenarios

pytestmark = pytest.mark.kernel
SCENARIOS = all_scenarios()
IDS = [s.id for s in SCENARIOS]


def _linux():
    from cowscope.linux.machine import Machine

    return Machine()


def test_suite_size_and_coverage() -> None:
    assert len(SCENARIOS) >= 40
    assert {s.module for s in SCENARIOS} >= {"anon", "shared", "files", "vma", "madv", "lifecycle", "malloc",
                                            "thp", "threads"}
    assert sum(s.module == "threads" for s in SCENARIOS) >= 10


@pytest.mark.parametrize("sc", SCENARIOS, ids=IDS)
def test_kernel_shows_the_facts(sc) -> None:
    if os.geteuid() != 0:
        pytest.skip("PFN identity and map counts need root (CI runs as root)")
    trace = run_traced(sc.fn, _linux(), "linux")
    if trace.skipped:
        pytest.skip(trace.skipped)
    assert trace.error is None, trace.error
    assert trace.failures == []
    assert trace.checkpoints, "every scenario observes at least the end"


#: Disagreements found by this suite and reported to the model's owner (strict: a fix turns them green).
KNOWN_MODEL_DISAGREEMENTS: dict[str, str] = {}  # D06-D11 fixed in the model; none known now


def _agreement_param(sc):
    why = KNOWN_MODEL_DISAGREEMENTS.get(sc.id)
    marks = [pytest.mark.xfail(reason=why, strict=True)] if why else []
    return pytest.param(sc, id=sc.id, marks=marks)


@pytest.mark.parametrize("sc", [_agreement_param(s) for s in SCENARIOS])
def test_model_agrees_with_kernel(sc) -> None:
    """Every scenario agrees; and its HTML report (`run --on both --html`) says what the comparison
    says: the same counts, a mark on exactly the pages a difference names (checked on the
    report's payload, for the whole suite at the cost of its snapshots: a few seconds)."""
    from cowscope.linux.machine import host_model_config
    from cowscope.model import Machine as ModelMachine

    if os.geteuid() != 0:
        pytest.skip("needs root for a full comparison")
    linux = run_traced(sc.fn, _linux(), "linux", snapshots=True)
    if linux.skipped:
        pytest.skip(linux.skipped)
    model = run_traced(sc.fn, ModelMachine(**host_model_config()), "model", snapshots=True)
    diffs = compare(model, linux)
    _report_says_what_compare_says(model, linux, diffs)
    bad = counted(diffs)
    assert bad == [], "\n".join(d.line() for d in bad)


def _report_says_what_compare_says(model, linux, diffs) -> None:
    """The report's payload: counted and excluded as the comparator's; every per-page difference
    marked on its page where the model maps it (else listed with its process), nothing else marked."""
    from cowscope.report.payload import build_payload
    from cowscope.verify.verdict import build

    meta, _ = build_payload(model.snapshots, compare=linux.snapshots, verdict=build(model, linux, diffs))
    v = meta["verdict"]
    assert (v["counted"], v["excluded"]) == (len(counted(diffs)), len(diffs) - len(counted(diffs)))
    mapped = {(k, p["pid"]): [(m["start"], m["end"]) for m in p["mappings"]] for k, s in enumerate(meta["steps"])
              for p in s["processes"]}
    want, elsewhere = set(), []
    for n, d in enumerate(diffs):
        pid, regions = model.places[d.step][d.process] if d.pages else (None, {})
        at = [regions[d.region][0] + i * 4096 for i in d.pages] if d.region in regions else []
        drawn = {a for a in at if any(lo <= a < hi for lo, hi in mapped.get((d.step, pid), []))}
        want |= {(d.step, pid, a, d.excluded is None) for a in drawn}
        if d.pages and not drawn:
            elsewhere.append(v["differences"][n]["shown"])
    got = {(k, p["pid"], m["start"] + j * 4096, v["differences"][i]["why"] < 0) for k, s in enumerate(meta["steps"])
           for p in s["processes"] for m in p["mappings"] for j, i in m["verdict"]["marks"]}
    assert got == want
    assert all(where == "process" for where in elsewhere)
