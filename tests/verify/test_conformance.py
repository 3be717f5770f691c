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
                                            "thp"}


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
    from cowscope.linux.machine import host_model_config
    from cowscope.model import Machine as ModelMachine

    if os.geteuid() != 0:
        pytest.skip("needs root for a full comparison")
    linux = run_traced(sc.fn, _linux(), "linux")
    if linux.skipped:
        pytest.skip(linux.skipped)
    model = run_traced(sc.fn, ModelMachine(**host_model_config()), "model")
    bad = counted(compare(model, linux))
    assert bad == [], "\n".join(d.line() for d in bad)
