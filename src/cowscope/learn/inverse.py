"""Inverse problems (OSTEP's -t): two states of the pages, and which line ran in between.

A problem's steps are replayed up to a chosen line; the page strips of every region in every
live process are shown before and after it, with the line hidden among other lines that could
have run there (each checked on the model to leave different pages). The answer is the line's
number among the choices; the kernel confirms it by showing the same two states.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from ..errors import CowscopeError
from .generate import GENERATOR_VERSION
from .lang import Action, Problem, ProblemError, Question, parse
from .show import action_line
from .solve import state_of

#: Verbs whose line can be asked for: they change what the strips show.
ASKED = ("write", "read", "exit", "exec", "madvise")
CHOICES = 4
MAX_QUESTIONS = 2


@dataclass
class InverseQuestion:
    """Before and after one line, and the lines offered for it."""

    index: int                   # the line's position among the problem's actions
    before: dict[str, str]       # "a in P" -> strip
    after: dict[str, str]
    choices: list[Action]
    answer: int                  # 1-based number of the right choice


@dataclass
class Inverse:
    """A problem turned around: its actions, and the questions asked about some of them."""

    problem: Problem
    actions: list[Action]
    questions: list[InverseQuestion] = field(default_factory=list)


def actions_of(problem: Problem) -> list[Action]:
    """The problem as plain actions (a question's action is performed; state questions go)."""
    out = []
    for step in problem.steps:
        a = step.action if isinstance(step, Question) else step
        if a is not None:
            out.append(a)
    return out


def _text(actions: list[Action]) -> str:
    return "\n".join(a.text() for a in actions)


def model_state(actions: list[Action]) -> dict[str, str] | None:
    """The strips after the actions on a fresh model machine; None if they cannot run."""
    from ..model import Machine

    try:
        return state_of(parse(_text(actions), need_question=False), Machine())
    except (ProblemError, CowscopeError, KeyError):
        return None


def invert(problem: Problem) -> Inverse:
    """Choose up to two lines of `problem` and build their questions (seeded like the problem)."""
    key = problem.seed if problem.seed is not None else problem.text()
    rng = random.Random(f"cowscope-learn:{GENERATOR_VERSION}:{key}:{problem.topic}:{problem.level}:inverse")
    actions = actions_of(problem)
    inv = Inverse(problem, actions)
    candidates = [i for i, a in enumerate(actions) if a.verb in ASKED]
    rng.shuffle(candidates)
    for i in candidates:
        if len(inv.questions) == MAX_QUESTIONS:
            break
        q = _question(actions, i, rng)
        if q is not None:
            inv.questions.append(q)
    inv.questions.sort(key=lambda q: q.index)
    return inv


def _question(actions: list[Action], i: int, rng: random.Random) -> InverseQuestion | None:
    before, after = model_state(actions[:i]), model_state(actions[: i + 1])
    if before is None or after is None or before == after:
        return None
    others = []
    for option in _alternatives(actions, i):
        state = model_state(actions[:i] + [option])
        if state is not None and state != after and option not in others:
            others.append(option)
    if len(others) < 2:
        return None
    rng.shuffle(others)
    choices = others[: CHOICES - 1] + [actions[i]]
    rng.shuffle(choices)
    return InverseQuestion(i, before, after, choices, choices.index(actions[i]) + 1)


def _alternatives(actions: list[Action], i: int) -> list[Action]:
    """Lines that could have run instead of actions[i] (checked later on the model)."""
    a = actions[i]
    procs = list(dict.fromkeys([x.proc for x in actions[:i] if x.proc]
                               + [x.args[0] for x in actions[:i] if x.verb in ("fork", "vfork")]))
    regions = {x.args[0]: int(x.args[1]) for x in actions[:i] if x.verb == "mmap"}
    letter = a.args[-1] if a.verb == "write" else "=Z"
    out: list[Action] = []
    for r, npages in regions.items():
        for page in range(min(npages, 4)):
            for p in procs:
                out.append(Action(p, "write", (r, str(page), letter)))
                out.append(Action(p, "read", (r, str(page))))
                out.append(Action(p, "madvise", (r, str(page), "dontneed")))
    out += [Action(p, "exit") for p in procs if p != procs[0]]
    return [o for o in out if o != a]


def confirm_on(inv: Inverse, state: Any, choices: bool = False) -> list[tuple[bool, str]]:
    """Per question: whether another backend (`state(problem) -> strips`, e.g. the kernel's) shows
    the same before and after, and what it shows otherwise; with `choices`, also that every other
    choice leaves other pages there."""
    out: list[tuple[bool, str]] = []
    for q in inv.questions:
        prefix = inv.actions[: q.index]
        shown = [state(parse(_text(inv.actions[:n]), need_question=False)) for n in (q.index, q.index + 1)]
        problems = [] if shown == [q.before, q.after] else [f"before {shown[0]}, after {shown[1]}"]
        for c in q.choices if choices else []:
            if c != inv.actions[q.index] and state(parse(_text(prefix + [c]), need_question=False)) == q.after:
                problems.append(f"{c.text()} leaves the same pages")
        out.append((not problems, "; ".join(problems)))
    return out


def choice_lines(q: InverseQuestion, sizes: dict[str, int]) -> list[str]:
    """'1) C: a[1*PAGE] = 'B';' for each choice."""
    return [f"{n}) {action_line(a, dict(sizes))}" for n, a in enumerate(q.choices, 1)]


def pages_changed(q: InverseQuestion) -> int:
    """How many pages look different after the line (for the reveal)."""
    changed = 0
    for key, strip in q.after.items():
        old = q.before.get(key, "")
        changed += sum(1 for i, c in enumerate(strip) if i >= len(old) or old[i] != c)
    return changed

