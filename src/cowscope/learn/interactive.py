"""Practice in the terminal: predict, then the reveal; a score per topic; missed topics come back.

Reads answers line by line from the console (a terminal or a pipe); Ctrl-C, `q` or the end of
the input ends the session with the score so far.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.text import Text

from . import grade, show
from .confirm import agree
from .explain import REASON_SHORT, REASONS
from .generate import LEVELS, generate, invertible, topic_names
from .lang import Problem, parse
from .sheet import Item, walk
from .solve import Answer, solve

INTRO = ("Each problem is a little program: its lines run top to bottom, and \"C:\" means the line "
         "runs in process C. PAGE is 4096 bytes; a write stores one letter. At each question, predict "
         "what the kernel does, then see what it did. Type ? for help, s to skip a question, q to stop.")

HELP = (
    "Answers: outcomes by name, first letter or number (copy, c, 1); zf = zero-fill, zp = zero-page, "
    "pc = page-cache. Values: a letter (case matters) or 0. Sizes in kB.",
    "Strips, one character per page: . not present, 0 zero page, # private (mapped once), 2-9 shared "
    "by N, f page cache.",
    "Why: 1 never touched, 2 zero page, 3 shared, 4 mapped once but write-protected, 5 own, 6 file, "
    "7 unmapped.",
    "Commands: ? help, s skip, q quit (Ctrl-C also quits and shows your score).",
)


class Quit(Exception):
    """The student asked to stop."""


@dataclass
class Score:
    """Right and asked, per topic; topics missed and waiting to come back."""

    right: Counter[str] = field(default_factory=Counter)
    asked: Counter[str] = field(default_factory=Counter)
    missed: list[str] = field(default_factory=list)

    def add(self, topic: str, ok: bool) -> None:
        self.asked[topic] += 1
        self.right[topic] += ok

    def lines(self) -> list[str]:
        total, n = sum(self.right.values()), sum(self.asked.values())
        if not n:
            return ["no questions answered yet"]
        out = [f"score: {total}/{n} ({100 * total // n}%)"]
        for topic in self.asked:
            hint = "" if self.right[topic] == self.asked[topic] else \
                f"   practise: cowscope learn --topic {topic}"
            out.append(f"  {topic:<8} {self.right[topic]}/{self.asked[topic]}{hint}")
        return out


class Session:
    """One practice session: problems from consecutive seeds, topics rotating, levels rising."""

    def __init__(self, console: Console, ask: Callable[[str], str], seed: int, topic: str | None = None,
                 level: int | None = None, kernel: Any = None, explicit: str | None = None,
                 inverse: bool = False) -> None:
        self.console = console
        self.ask_line = ask
        self.seed = seed
        self.topic = topic
        self.levels = dict.fromkeys(topic_names(), level or 1)
        self.kernel = kernel
        self.explicit = explicit
        self.score = Score()
        self.inverse = inverse
        self.rotation = [t for t in topic_names() if invertible(t) or not inverse]
        self.count = 0
        self.turn = 0
        self.retried = False
        self.why_shown = False

    # -- the session ---------------------------------------------------------------------
    def run(self) -> None:
        self.console.print(Text(INTRO, style="dim"))
        while True:
            problem = self.next_problem()
            if self.inverse:
                self.play_inverse(problem)
            else:
                self.play(problem)
            if self.explicit is not None:
                return

    def next_problem(self) -> Problem:
        """The next problem: a missed topic comes back at once (then a new topic comes, even if it
        was missed again), otherwise the next topic in turn; seeds count up from the session's."""
        if self.explicit is not None:
            return parse(self.explicit)
        if self.topic:
            topic = self.topic
        elif self.score.missed and not self.retried:
            topic, self.retried = self.score.missed.pop(0), True
        else:
            topic, self.retried = self.rotation[self.turn % len(self.rotation)], False
            self.turn += 1
        seed = self.seed + self.count
        self.count += 1
        return generate(seed, topic, self.levels[topic], self.inverse)

    def play(self, problem: Problem) -> None:
        model = solve(problem, _model_machine())
        kernel = self.kernel.solve(problem) if self.kernel is not None else None
        self.header(problem)
        wrong = 0
        for item in walk(problem):
            if item.line:
                self.console.print(Text(f"{item.number:4d}  {item.line}", style="bold"))
            if item.question is not None:
                k = item.qnumber - 1
                ok = self.question(item, model.answers[k], kernel.answers[k] if kernel else None)
                self.score.add(problem.topic, ok)
                wrong += not ok
        self.after(problem, wrong)

    def header(self, problem: Problem) -> None:
        self.console.print()
        self.console.rule(Text(show.problem_header(problem)), style="cyan")
        if problem.title:
            self.console.print(Text(problem.title, style="italic"))
        if problem.seed is not None:
            flag = " --inverse" if self.inverse else ""
            self.console.print(Text(f"(again: cowscope learn --seed {problem.seed} --topic {problem.topic} "
                                    f"--level {problem.level}{flag} -c)", style="dim"))

    def after(self, problem: Problem, wrong: int) -> None:
        if problem.seed is None:
            return
        if wrong:
            if problem.topic not in self.score.missed:
                self.score.missed.append(problem.topic)
            self.console.print(Text(f"{problem.topic} comes back with a new problem.", style="yellow"))
        elif self.levels[problem.topic] < LEVELS[-1]:
            self.levels[problem.topic] += 1
            self.console.print(Text(f"All right: {problem.topic} goes up to level "
                                    f"{self.levels[problem.topic]}.", style="green"))

    def play_inverse(self, problem: Problem) -> None:
        """Which line ran? The states before and after, the choices, the reveal."""
        from .inverse import choice_lines, confirm_on, invert, pages_changed
        from .sheet import inverse_items, state_table

        inv = invert(problem)
        kernel = confirm_on(inv, self.kernel.state) if self.kernel is not None and inv.questions else None
        self.header(problem)
        wrong = qn = 0
        for number, line, asked in inverse_items(inv):
            if asked is None:
                self.console.print(Text(f"{number:4d}  {line}", style="bold"))
                continue
            q, sizes = asked
            qn += 1
            self.console.print(Text(f"  Q{qn}. The pages before and after line {number}:", style="cyan"))
            for row in state_table(q.before, q.after, indent="      "):
                self.console.print(Text(row))
            self.console.print(Text("  Which line ran?", style="cyan"))
            choices = choice_lines(q, sizes)
            for c in choices:
                self.console.print(Text("      " + c))
            count = len(choices)
            given = self.read(lambda t: grade.read_number(t, count))  # noqa: B023 - read now
            ok = given == q.answer
            self.score.add(problem.topic, ok)
            wrong += not ok
            mark, style = ("right", "bold green") if ok else ("wrong", "bold red")
            self.console.print(Text(f"  {mark}: {q.answer}", style=style))
            self.say(f"{pages_changed(q)} page strip cell(s) changed.")
            if kernel is not None:
                same, text = kernel[qn - 1]
                self.say("kernel: the same two states (agrees with the model)" if same else
                         f"kernel: other states: the model is WRONG here ({text}); please report it",
                         "green" if same else "bold red")
            self.console.print(Text(f"{number:4d}  {line}", style="bold"))
        if not inv.questions:
            self.console.print(Text("(no line of this problem changes what the strips show; next)", style="dim"))
        self.after(problem, wrong)

    # -- one question --------------------------------------------------------------------
    def question(self, item: Item, ans: Answer, kans: Answer | None) -> bool:
        q = item.question
        assert q is not None
        truth = ans if kans is None or kans.value is None else kans
        self.console.print(Text(f"  Q{item.qnumber}. {show.prompt(q)}", style="cyan"))
        if item.choices:
            self.console.print(Text("      " + " / ".join(item.choices), style="dim"))
        if q.kind == "strip":
            self.say(show.LEGEND, "dim")
        given = self.read(lambda t: grade.read_answer(t, truth, list(item.choices)))
        ok = given is not None and grade.is_right(given, truth)
        why_ok = True
        if q.why and truth.why:
            self.console.print(Text("  " + show.WHY_PROMPT, style="cyan"))
            if not self.why_shown:
                for i, key in enumerate(REASONS, 1):
                    self.console.print(Text(f"      {i} {key}: {REASON_SHORT[key]}", style="dim"))
                self.why_shown = True
            else:
                self.say("  ".join(f"{i} {key}" for i, key in enumerate(REASONS, 1)), "dim")
            why = self.read(grade.read_why)
            why_ok = why == truth.why
        self.reveal(ans, kans, given, ok, why_ok if q.why else None)
        return ok and why_ok

    def read(self, parse_fn: Callable[[str], Any]) -> Any:
        """Ask until the text parses; None when skipped. Quit on q or end of input."""
        while True:
            try:
                text = self.ask_line("  > ")
            except EOFError:
                raise Quit() from None
            cmd = text.strip().lower()
            if cmd in ("q", "quit", "exit"):
                raise Quit()
            if cmd in ("?", "h", "help"):
                for line in HELP:
                    self.say(line, "dim", indent=2)
                continue
            if cmd in ("s", "skip"):
                return None
            try:
                return parse_fn(text)
            except grade.Unreadable as e:
                self.say(f"Please answer with {e}", "yellow", indent=2)

    def reveal(self, ans: Answer, kans: Answer | None, given: Any, ok: bool, why_ok: bool | None) -> None:
        mark, style = ("right", "bold green") if ok else ("wrong", "bold red")
        if given is None:
            mark, style = "skipped, the answer", "bold yellow"
        line = Text(f"  {mark}: ", style=style)
        line.append(f"{ans.value}", style="bold")
        if not ok and given is not None:
            line.append(f"  (you said {given})", style="dim")
        if why_ok is not None and ans.why:
            line.append(f"  why: {ans.why}" + ("" if why_ok else " (not your reason)"), style="dim")
        self.console.print(line)
        details = [ans.reason] + [f"kernel path: {p}" for p in ans.path]
        if ans.before or ans.after:
            details.append(f"strip: {ans.before} -> {ans.after}")
        for d in details:
            if d:
                self.say(d)
        if kans is not None:
            self.kernel_line(ans, kans)

    def kernel_line(self, ans: Answer, kans: Answer) -> None:
        same, text = agree(ans, kans, getattr(self.kernel, "kpage", True))
        if kans.value is None:
            self.say(f"kernel: {kans.note}", "dim")
        elif same:
            self.say(f"kernel: {kans.value} (agrees with the model)", "green")
        else:
            self.say(f"kernel: {kans.value}: the model is WRONG here ({text}); please report it", "bold red")

    def say(self, text: str, style: str = "", indent: int = 6) -> None:
        """A line of the reveal, wrapped lines indented under it."""
        for line in textwrap.wrap(text, width=max(self.console.width - indent, 30)) or [""]:
            self.console.print(Text(" " * indent + line, style=style))

    def print_score(self) -> None:
        self.console.print()
        for line in self.score.lines():
            self.console.print(Text(line, style="bold" if line.startswith("score") else ""))


def _model_machine() -> Any:
    from ..model import Machine

    return Machine()


def _reader(console: Console) -> Callable[[str], str]:
    """console.input; when the answers come from a pipe, they are echoed (a readable transcript)."""
    echo = not sys.stdin.isatty()

    def ask(prompt: str) -> str:
        text = console.input(prompt)
        if echo:
            console.print(Text(text), highlight=False)
        return text

    return ask


def practise(args: argparse.Namespace) -> int:
    """The `cowscope learn` practice loop; returns the exit status."""
    console = Console(highlight=False)
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little") % 100000
    kernel = None
    if args.on == "linux":
        from .confirm import KernelBackend

        kernel = KernelBackend()
    session = Session(console, _reader(console), seed, args.topic, args.level, kernel, args.explicit,
                      args.inverse)
    if args.explicit is None:
        console.print(Text(f"session seed {seed}; each problem says how to get it again", style="dim"))
    try:
        session.run()
    except (Quit, KeyboardInterrupt):
        pass
    finally:
        if kernel is not None:
            kernel.close()
    session.print_score()
    return 0

