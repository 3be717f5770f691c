"""The kernel confirms the model: every answer of seeds 1..300 (all topics and levels) is what
this kernel shows, problem by problem in real processes (one agent machine for all of them)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from cowscope.learn.confirm import Confirmation, KernelBackend
from cowscope.learn.generate import generate
from cowscope.learn.lang import parse
from cowscope.learn.sheet import sheet_text
from cowscope.learn.solve import solve
from cowscope.model import Machine

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]


def _root() -> None:
    if os.geteuid() != 0:
        pytest.skip("PFNs, map counts and kpageflags need root (CI runs as root)")


def test_seeds_1_to_300_every_model_answer_is_confirmed_on_this_kernel():
    _root()
    topics: Counter[str] = Counter()
    failures = []
    with KernelBackend() as kb:
        assert kb.kpage
        for seed in range(1, 301):
            problem = generate(seed)
            topics[(problem.topic, problem.level)] += 1
            c = Confirmation(solve(problem, Machine()), kb.solve(problem))
            if c.disagreements() or c.unconfirmed():
                failures.append(f"seed {seed}: {c.disagreements()}\n" + sheet_text(problem, c.model, c.kernel))
    assert not failures, "\n".join(failures[:3])
    assert len({t for t, _ in topics}) == 7 and len(topics) == 21  # every topic at every level


def test_a_kernel_answer_that_differs_is_reported_as_a_disagreement():
    """The check can fail: a model answer edited to a wrong value is caught."""
    _root()
    problem = parse("P mmap a 2; P write a all; P fork C; ? outcome C write a 1; ? pss C a")
    model = solve(problem, Machine())
    model.answers[0].value = "reuse"
    model.answers[1].value = 5
    with KernelBackend() as kb:
        c = Confirmation(model, kb.solve(problem))
    assert c.disagreements() == [(1, "model reuse, kernel copy"), (2, "model 5, kernel 6")]


def test_cli_on_linux_shows_the_kernel_beside_the_model():
    _root()
    r = subprocess.run([sys.executable, "-m", "cowscope", "learn", "--seed", "42", "--topic", "fork", "--level", "3",
                        "--on", "linux", "-c"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("on this kernel:") == 8 and r.stdout.count("(agrees)") == 8


def test_inverse_problems_show_the_kernel_s_states():
    """The two states of every inverse question (seeds 1..60) are what this kernel shows, and for
    seeds 1..15 every other choice leaves other pages on the kernel too."""
    _root()
    from cowscope.learn.inverse import confirm_on, invert

    failures = []
    with KernelBackend() as kb:
        for seed in range(1, 61):
            inv = invert(generate(seed, inverse=True))
            for (ok, text), q in zip(confirm_on(inv, kb.state, choices=seed <= 15), inv.questions):
                if not ok:
                    failures.append(f"seed {seed} line {q.index + 1}: model {q.before} -> {q.after}; kernel {text}")
    assert not failures, "\n".join(failures[:5])


def test_practice_on_linux_shows_the_kernel_beside_the_model():
    _root()
    import io

    from rich.console import Console

    from cowscope.learn.interactive import Quit, Session

    out = io.StringIO()
    feed = iter(["c", "3", "A", "r", "4"])

    def ask(prompt):
        try:
            return next(feed)
        except StopIteration:
            raise EOFError from None

    with KernelBackend() as kb:
        s = Session(Console(file=out, width=100, color_system=None), ask, seed=3, topic="fork", level=2, kernel=kb)
        try:
            s.run()
        except Quit:
            pass
    text = " ".join(out.getvalue().split())
    assert "kernel: copy (agrees with the model)" in text and "kernel: A (agrees with the model)" in text
    assert "kernel: reuse (agrees with the model)" in text
