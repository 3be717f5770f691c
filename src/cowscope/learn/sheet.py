"""Homework sheets: a problem in plain text with `?` where the student answers, or with the answer
key (`-c`); and the same as JSON for course tooling."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import show
from .explain import REASON_SHORT
from .lang import Problem, Question
from .solve import Answer, Solution

WIDTH = 72
INDENT = "      "


@dataclass
class Item:
    """One displayed step: its line number and C line (none for state questions), its question."""

    number: int
    line: str
    question: Question | None
    qnumber: int = 0
    choices: tuple[str, ...] = ()


def walk(problem: Problem) -> Iterator[Item]:
    """The problem's steps as displayed: numbered C lines, questions numbered Q1, Q2, ..."""
    sizes: dict[str, int] = {}
    line = q = 0
    for i, step in enumerate(problem.steps):
        action = step.action if isinstance(step, Question) else step
        text = ""
        if action is not None:
            line += 1
            text = show.action_line(action, sizes)
        if isinstance(step, Question):
            q += 1
            yield Item(line, text, step, q, tuple(show.choices(step, show.blocks_before(problem, i))))
        else:
            yield Item(line, text, None)


def format_value(value: Any) -> str:
    return "?" if value is None else str(value)


def _wrap(text: str, indent: str = INDENT, width: int = WIDTH) -> list[str]:
    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent + "  ") or [indent]


def answer_lines(ans: Answer, kernel: Answer | None = None, width: int = WIDTH) -> list[str]:
    """The answer key for one question: answer, why, kernel path, strips, the kernel's answer."""
    why = f" (why: {ans.why})" if ans.why and ans.question.why else ""
    out = _wrap(f"answer: {format_value(ans.value)}{why}", width=width)
    if ans.reason:
        out += _wrap(ans.reason, indent=INDENT + "  ", width=width)
    for step in ans.path:
        out += _wrap(f"kernel path: {step}", width=width)
    if ans.before or ans.after:
        a = ans.question.action
        where = f" of {a.args[0]} in {a.proc}" if a is not None else ""
        out += _wrap(f"strip{where}: {ans.before} -> {ans.after}", width=width)
    if ans.note:
        out += _wrap(ans.note, width=width)
    if kernel is not None:
        out += _wrap(f"on this kernel: {verdict(ans, kernel)}", width=width)
    return out


def verdict(model: Answer, kernel: Answer) -> str:
    """'copy (agrees)' / 'DISAGREES: ...' / 'not shown: ...'."""
    from .confirm import agree

    if kernel.value is None:
        return kernel.note or "not shown"
    ok, text = agree(model, kernel)
    return f"{format_value(kernel.value)} (agrees)" if ok else f"DISAGREES with the model: {text}"


def sheet_text(problem: Problem, solution: Solution | None = None, kernel: Solution | None = None,
               width: int = WIDTH) -> str:
    """The problem as a homework sheet; with a solution, its answer key inline."""
    out = _wrap(f"cowscope learn: {show.problem_header(problem)}", indent="", width=width) + [""]
    if problem.title:
        out += textwrap.wrap(problem.title, width=width) + [""]
    out += _wrap("PAGE is 4096 bytes; every write stores one letter; files hold 'a', 'b', ... per page.",
                 indent="", width=width)
    if any(q.kind == "strip" for q in problem.questions) or solution is not None:
        out += _wrap("Strips: " + show.LEGEND, indent="", width=width)
    if any(q.kind == "outcome" for q in problem.questions):
        out += _wrap("Outcomes: " + ", ".join(show.OUTCOMES), indent="", width=width)
    if any(q.why for q in problem.questions):
        out += _wrap("Why: " + "; ".join(show.why_menu()), indent="", width=width)
    out.append("")
    answers = solution.answers if solution else []
    kanswers = kernel.answers if kernel else []
    for item in walk(problem):
        if item.line:
            out.append(f"{item.number:4d}  {item.line}")
        if item.question is None:
            continue
        q = item.question
        ask = show.prompt(q) + (" And why?" if q.why else "")
        out += _wrap(f"Q{item.qnumber}. {ask}", width=width)
        if item.choices and q.kind != "outcome":
            out += _wrap("   " + " / ".join(item.choices), width=width)
        k = item.qnumber - 1
        if k < len(answers):
            out += answer_lines(answers[k], kanswers[k] if k < len(kanswers) else None, width)
        else:
            out += _wrap("answer: ?" + ("   why: ?" if q.why else ""), width=width)
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def sheet_json(problem: Problem, solution: Solution | None = None, kernel: Solution | None = None,
               ) -> dict[str, Any]:
    """The problem (and answers) as plain data: action-language text, C lines, questions."""
    items = list(walk(problem))
    questions = []
    for item in items:
        if item.question is None:
            continue
        q = item.question
        entry: dict[str, Any] = {"n": item.qnumber, "line": item.number if q.action else None,
                                 "kind": q.kind, "statement": q.text(), "prompt": show.prompt(q),
                                 "choices": list(item.choices), "why": q.why}
        k = item.qnumber - 1
        if solution is not None:
            entry["answer"] = _answer_json(solution.answers[k])
        if kernel is not None:
            entry["kernel"] = _answer_json(kernel.answers[k])
        questions.append(entry)
    why = [[key, text] for key, text in REASON_SHORT.items()] if any(q.why for q in problem.questions) else []
    return {"generator": problem.version, "seed": problem.seed, "topic": problem.topic,
            "level": problem.level, "title": problem.title, "problem": problem.text(), "why_choices": why,
            "lines": [{"n": i.number, "text": i.line} for i in items if i.line],
            "questions": questions}


def _answer_json(a: Answer) -> dict[str, Any]:
    return {"value": a.value, "accepted": list(a.accepted), "why": a.why, "reason": a.reason,
            "kernel_path": a.path, "before": a.before, "after": a.after, "note": a.note}


def inverse_items(inv: Any) -> Iterator[tuple[int, str, Any]]:
    """(line number, C line, the InverseQuestion asked about this line or None), in order."""
    sizes: dict[str, int] = {}
    asked = {q.index: q for q in inv.questions}
    for i, a in enumerate(inv.actions):
        q = asked.get(i)
        choice_sizes = dict(sizes)
        line = show.action_line(a, sizes)
        yield i + 1, line, (q, choice_sizes) if q is not None else None


def state_table(before: dict[str, str], after: dict[str, str], indent: str = INDENT + "  ") -> list[str]:
    """The two states side by side, one row per region and process."""
    keys = list(dict.fromkeys([*before, *after]))
    w = max([len(k) for k in keys] + [6])
    sw = max([len(v) for v in before.values()] + [6])
    rows = [f"{indent}{'':<{w}}  {'before':<{sw}}  after"]
    for k in keys:
        rows.append(f"{indent}{k:<{w}}  {before.get(k, '(gone)'):<{sw}}  {after.get(k, '(gone)')}")
    return rows


def inverse_text(inv: Any, key: bool = False, kernel: list[tuple[bool, str]] | None = None,
                 width: int = WIDTH) -> str:
    """An inverse problem as a sheet: the lines, and at each question the states and the choices
    (the line that ran is hidden without the key)."""
    from .inverse import choice_lines

    p = inv.problem
    out = _wrap(f"cowscope learn --inverse: {show.problem_header(p)}", indent="", width=width) + [""]
    out += _wrap("Which line ran? Each question shows the pages of every region in every process "
                 "before and after one line; the line is hidden among others.", indent="", width=width)
    out += _wrap("Strips: " + show.LEGEND, indent="", width=width) + [""]
    qn = 0
    for number, line, asked in inverse_items(inv):
        if asked is None:
            out.append(f"{number:4d}  {line}")
            continue
        q, sizes = asked
        qn += 1
        out += _wrap(f"Q{qn}. The pages before and after line {number}:", width=width)
        out += state_table(q.before, q.after)
        out += _wrap("Which line ran?", width=width)
        out += [INDENT + "  " + c for c in choice_lines(q, sizes)]
        out += _wrap(f"answer: {q.answer if key else '?'}", width=width)
        if kernel is not None and key:
            ok, text = kernel[qn - 1]
            out += _wrap("on this kernel: the same two states (agrees)" if ok else
                         f"on this kernel: DISAGREES with the model: {text}", width=width)
        out.append(f"{number:4d}  {line if key else '?'}")
    return "\n".join(out).rstrip() + "\n"


def inverse_json(inv: Any, key: bool = False, kernel: list[tuple[bool, str]] | None = None) -> dict[str, Any]:
    """An inverse problem as plain data."""
    from .inverse import choice_lines

    p = inv.problem
    lines, questions = [], []
    for number, line, asked in inverse_items(inv):
        if asked is None or key:
            lines.append({"n": number, "text": line})
        if asked is None:
            continue
        q, sizes = asked
        entry: dict[str, Any] = {"n": len(questions) + 1, "line": number, "before": q.before, "after": q.after,
                                 "choices": [c.split(") ", 1)[1] for c in choice_lines(q, sizes)]}
        if key:
            entry["answer"] = q.answer
            if kernel is not None:
                entry["kernel_agrees"] = kernel[len(questions)][0]
        questions.append(entry)
    return {"inverse": True, "generator": p.version, "seed": p.seed, "topic": p.topic, "level": p.level,
            "title": p.title, "lines": lines, "questions": questions}
