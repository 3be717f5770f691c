"""The kernel confirms the model: the same problem on both backends, answer by answer."""

from __future__ import annotations

import os
from dataclasses import dataclass

from .lang import Problem
from .solve import Answer, Solution, solve

#: Without root a strip shows exclusivity but no map count and no zero page: '2' = "shared".
_NO_KPAGE = str.maketrans({c: "2" for c in "03456789+"})


def project(model: Answer, kpage: bool) -> object:
    """The model's answer as a backend without root can show it."""
    if kpage or not isinstance(model.value, str) or model.question.kind != "strip":
        return model.value
    return model.value.translate(_NO_KPAGE)


def agree(model: Answer, kernel: Answer, kpage: bool = True) -> tuple[bool, str]:
    """(same?, what differs); a kernel answer it cannot show counts as agreeing (with a note)."""
    if kernel.value is None:
        return True, kernel.note
    want = project(model, kpage)
    if want == kernel.value:
        return True, ""
    return False, f"model {want}, kernel {kernel.value}"


@dataclass
class Confirmation:
    """A problem on both backends."""

    model: Solution
    kernel: Solution

    def disagreements(self) -> list[tuple[int, str]]:
        """(question number, what differs) for every answer the kernel does not confirm."""
        out = []
        for n, (a, b) in enumerate(zip(self.model.answers, self.kernel.answers), 1):
            ok, text = agree(a, b, self.kernel.kpage)
            if not ok:
                out.append((n, text))
        return out

    def unconfirmed(self) -> int:
        """Answers the kernel could not show (no root)."""
        return sum(1 for b in self.kernel.answers if b.value is None)


def confirm(problem: Problem, model_machine: object, kernel_machine: object) -> Confirmation:
    """Solve on both (fresh) machines."""
    return Confirmation(solve(problem, model_machine, "model"), solve(problem, kernel_machine, "linux"))


class KernelBackend:
    """One `cowscope.linux.Machine` for many problems: each problem's processes end after it."""

    def __init__(self) -> None:
        from ..linux import Machine

        self.machine = Machine()

    @property
    def kpage(self) -> bool:
        """PFNs, map counts and page flags are readable (root)."""
        return bool(self.machine.kpage_available)

    def solve(self, problem: Problem) -> Solution:
        try:
            return solve(problem, self.machine, "linux")
        finally:
            self.end_processes()

    def state(self, problem: Problem) -> dict[str, str]:
        """The page strips after the problem's actions, on the kernel."""
        from .solve import state_of

        try:
            return state_of(problem, self.machine)
        finally:
            self.end_processes()

    def end_processes(self) -> None:
        """Exit every process still alive, the newest first (a vfork child before its parent), and
        remove the problem's files (the next problem makes its own of the same names)."""
        import shutil

        from ..errors import CowscopeError

        for p in reversed(self.machine.live_processes()):
            try:
                p.exit(0)
            except CowscopeError:
                pass
        shutil.rmtree(os.path.join(self.machine.files_dir, "learn"), ignore_errors=True)

    def close(self) -> None:
        self.machine.close()

    def __enter__(self) -> KernelBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
