"""A random seed as a program: recorded faithfully, shrunk while the backends disagree, runnable."""

from __future__ import annotations

import os

import pytest

from cowscope.model import Machine
from cowscope.scenario import load_scenario
from cowscope.verify import replay
from cowscope.verify.compare import run_traced
from cowscope.verify.fuzz import random_scenario


@pytest.mark.parametrize("seed", [1, 7, 42, 268, 520, 1234])
def test_recorded_statements_replay_the_seed_call_for_call(seed: int) -> None:
    """The statements make the very calls, with the same outcomes, as the generated scenario."""
    stmts = replay.record(seed, Machine)
    assert len(stmts) > 5
    defined: set[str] = set()
    for st in stmts:  # every name is defined before it is used
        assert st.uses <= defined, st
        defined |= st.defines
    generated = run_traced(random_scenario(seed), Machine(), "model")
    replayed = run_traced(replay.as_scenario(stmts), Machine(), "model")
    assert replayed.ops == generated.ops
    assert replayed.checkpoints == generated.checkpoints


def test_closure_drops_what_uses_a_dropped_name() -> None:
    s = [replay.Stmt("P = m.spawn('P')", {"P"}), replay.Stmt("r1 = P.mmap(4096)", {"r1"}, {"P"}),
         replay.Stmt("P.fill(r1, 4096, 1)", set(), {"P", "r1"}), replay.Stmt("m.checkpoint('x')")]
    assert replay._closed(s, [0, 2, 3]) == [0, 3]
    assert replay._closed(s, [1, 2, 3]) == [3]


@pytest.mark.kernel
def test_a_wrong_model_rule_shrinks_to_a_small_program_that_still_disagrees(
        monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for PFNs")
    from cowscope.linux.machine import Machine as LinuxMachine
    from cowscope.model.mm import memory

    orig = memory.do_anonymous_page
    monkeypatch.setattr(memory, "do_anonymous_page",  # wrong: a read fault allocates a page
                        lambda m, pid, mm, vma, va, write: orig(m, pid, mm, vma, va, True))
    prog = None
    for seed in range(1, 20):
        prog = replay.minimal_program(seed, Machine, LinuxMachine, budget_s=30)
        if prog:
            break
    assert prog is not None, "the wrong rule shows in none of seeds 1..19"
    body = [ln for ln in prog.splitlines() if ln.startswith("    ")]
    total = int(prog.split(" of its ")[1].split()[0])
    assert 0 < len(body) < total and len(body) <= 10, prog
    path = tmp_path / "seed.py"
    path.write_text(prog)
    fn = load_scenario(path)  # the file as `cowscope run` loads it still disagrees
    from cowscope.verify.compare import compare, counted

    assert counted(compare(run_traced(fn, Machine(), "model"), run_traced(fn, LinuxMachine(), "linux")))


def test_every_recorded_statement_is_python_even_a_wait_on_a_picked_child() -> None:
    """A wait the scenario guards by the child's state names the child (P_1), not its repr."""
    waits = []
    for seed in range(0, 80):
        for st in replay.record(seed, Machine):
            compile(st.src, f"seed {seed}", "exec")
            if ".wait(" in st.src:
                waits.append(st.src)
    assert waits and all("<" not in w for w in waits), waits[:3]


@pytest.mark.kernel
def test_the_same_error_on_both_backends_is_not_a_disagreement() -> None:
    """A program that fails the same way on both (its own bug) is not a model-vs-kernel difference,
    so the shrinker cannot shrink a seed down to a broken program."""
    if os.geteuid() != 0:
        pytest.skip("needs root for PFNs")
    from cowscope.linux.machine import Machine as LinuxMachine

    broken = [replay.Stmt("P = m.spawn('P')", {"P"}), replay.Stmt("P.wait(P_9)", set(), {"P"})]
    assert not replay.disagrees(broken, Machine, LinuxMachine)
