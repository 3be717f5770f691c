"""A problem as people read it: C-like lines, question prompts, choices and answer formats."""

from __future__ import annotations

from .explain import OUTCOMES, REASON_SHORT, REASONS
from .lang import CODE, Action, Problem, Question, pages_of

LEGEND = ". not present  0 zero page  # private  2-9 shared by N  f page cache"


def _at(name: str, page: int) -> str:
    return name if page == 0 else f"{name} + {page}*PAGE"


def _npages(n: int) -> str:
    return "PAGE" if n == 1 else f"{n}*PAGE"


def c_line(a: Action, sizes: dict[str, int]) -> str:
    """One action as a line of C (`sizes`: region and block sizes, updated by mmap/malloc)."""
    args = a.args
    if a.verb == "file":
        sizes[args[0]] = int(args[1])
        last = chr(ord("a") + int(args[1]) - 1)
        pages = "1 page: a" if args[1] == "1" else f"{args[1]} pages: a..{last}"
        return f'int {args[0]} = open("{args[0]}", O_RDWR); // {pages}'
    if a.verb == "pwrite":
        pages = pages_of(args[1], sizes.get(args[0], 64))
        where = "0" if pages[0] == 0 else f"{pages[0]}*PAGE"
        return f"pwrite({args[0]}, \"{args[2][1]}{args[2][1]}...\", {_npages(len(pages))}, {where});"
    return _PROC_LINES[a.verb](args, sizes)


def _mmap(args: tuple[str, ...], sizes: dict[str, int]) -> str:
    sizes[args[0]] = int(args[1])
    fname = next((f[5:] for f in args[2:] if f.startswith("file=")), "")
    kind = ("MAP_SHARED" if "shared" in args[2:] else "MAP_PRIVATE") + ("" if fname else "|MAP_ANON")
    return f"char *{args[0]} = mmap({_npages(int(args[1]))}, {kind}{', ' + fname if fname else ''});"


def _write(args: tuple[str, ...], sizes: dict[str, int]) -> str:
    letter = args[-1][1]
    if len(args) == 2:  # a malloc'd block
        return f"memset({args[0]}, '{letter}', {sizes.get(args[0], 0)});"
    pages = pages_of(args[1], sizes[args[0]])
    if len(pages) == 1:
        index = "0" if pages[0] == 0 else f"{pages[0]}*PAGE"
        return f"{args[0]}[{index}] = '{letter}';"
    return f"memset({_at(args[0], pages[0])}, '{letter}', {_npages(len(pages))});"


def _read(args: tuple[str, ...], sizes: dict[str, int]) -> str:
    if len(args) == 1:
        return f"c = {args[0]}[0];"
    page = int(args[1])
    return f"c = {args[0]}[{'0' if page == 0 else f'{page}*PAGE'}];"


def _malloc(args: tuple[str, ...], sizes: dict[str, int]) -> str:
    sizes[args[0]] = int(args[1])
    return f"char *{args[0]} = malloc({args[1]});"


def _madvise(args: tuple[str, ...], sizes: dict[str, int]) -> str:
    pages = pages_of(args[1], sizes[args[0]])
    return f"madvise({_at(args[0], pages[0])}, {_npages(len(pages))}, MADV_{args[2].upper()});"


_PROC_LINES = {
    "mmap": _mmap,
    "munmap": lambda args, sizes: f"munmap({args[0]}, {_npages(sizes[args[0]])});",
    "malloc": _malloc,
    "free": lambda args, sizes: f"free({args[0]});",
    "write": _write,
    "read": _read,
    "fork": lambda args, sizes: f"{args[0]} = fork();",
    "vfork": lambda args, sizes: f"{args[0]} = vfork();",
    "exec": lambda args, sizes: 'execve("/bin/true", ...);',
    "exit": lambda args, sizes: "_exit(0);",
    "wait": lambda args, sizes: f"waitpid({args[0]}, NULL, 0);",
    "madvise": _madvise,
}


def action_line(a: Action, sizes: dict[str, int]) -> str:
    """'C: a[1*PAGE] = 'B';' — the acting process, then its C."""
    code = c_line(a, sizes)
    return f"{a.proc}: {code}" if a.proc else code


def _what(name: str) -> str:
    return "the C library's code" if name == CODE else name


def prompt(q: Question) -> str:
    """The question as asked (without the action line, which is shown above it)."""
    a = q.action
    if q.kind == "outcome" and a is not None:
        return f"What does this {a.verb} do to page {a.args[1]} of {a.args[0]} in {a.proc}?"
    if q.kind == "value" and a is not None:
        return f"What does {a.proc} read? (a letter, or 0 for a zero byte)"
    if q.kind == "faults" and a is not None:
        return f"How many page faults does this {a.verb} take in {a.proc}?"
    if q.kind == "copies" and a is not None:
        return f"How many pages does this copy in {a.proc}?"
    if q.kind == "addr" and a is not None:
        return f"What does this malloc return in {a.proc}?"
    if q.kind == "file":
        return f"What does read(2) find at page {q.target[1]} of the file {q.target[0]}?"
    proc, name = q.target
    return {
        "strip": f"Draw {name} in {proc}: one character per page.",
        "rss": f"Rss of {name} in {proc}'s smaps, in kB?",
        "pss": f"Pss of {name} in {proc}'s smaps, in kB?",
        "uss": f"USS (Private_Clean + Private_Dirty) of {name} in {proc}, in kB?",
        "own": f"How many pages of {_what(name)} are {proc}'s own private copies?",
    }[q.kind]


def choices(q: Question, blocks: list[str] | None = None) -> list[str]:
    """The words a multiple-choice question accepts (empty for free answers)."""
    if q.kind == "outcome":
        return list(OUTCOMES)
    if q.kind == "addr":
        return [*(blocks or []), "new"]
    return []


WHY_PROMPT = "Why? Before the access the page was:"
WHY_CHOICES = list(REASONS)


def why_menu() -> list[str]:
    """'1 untouched: never touched', ... one per reason."""
    return [f"{i} {key}: {REASON_SHORT[key]}" for i, key in enumerate(REASONS, 1)]

#: An example answer per kind, shown when an answer does not parse.
EXAMPLES = {
    "outcome": "copy (or its first letter: c)",
    "value": "B (a letter), or 0 for a zero byte",
    "copies": "1 (a number of pages)",
    "faults": "2 (a number of faults)",
    "addr": "x (the block whose address it returns), or new",
    "strip": "#2.0 (one character per page: " + LEGEND + ")",
    "rss": "8 (kB)",
    "pss": "8 (kB)",
    "uss": "8 (kB)",
    "own": "0 (a number of pages)",
    "file": "b (a letter), or 0 for a zero byte",
}


def problem_header(problem: Problem) -> str:
    """'seed 7 · topic fork · level 2 · generator v1' (or 'explicit problem')."""
    if problem.seed is None:
        return "explicit problem"
    return f"seed {problem.seed} · topic {problem.topic} · level {problem.level} · generator v{problem.version}"


def blocks_before(problem: Problem, index: int) -> list[str]:
    """Names of the malloc'd blocks that exist before step `index` (for addr choices)."""
    names: list[str] = []
    for step in problem.steps[:index]:
        a = step.action if isinstance(step, Question) else step
        if a is not None and a.verb == "malloc" and a.args[0] not in names:
            names.append(a.args[0])
    return names
