"""Reading a student's answer: accepted spellings per question kind, and whether it is right."""

from __future__ import annotations

from dataclasses import dataclass

from . import show
from .explain import OUTCOMES, REASONS
from .look import STRIP_CHARS
from .solve import Answer

#: Short forms accepted for outcomes (besides unique prefixes and the choice's number).
ALIASES = {"zf": "zero-fill", "zp": "zero-page", "pc": "page-cache", "cache": "page-cache",
           "zero": None, "nothing": "none", "sigsegv": "segv", "crash": "segv"}


class Unreadable(ValueError):
    """The text is not an answer of the expected form; the message shows one that is."""


@dataclass
class Parsed:
    """A readable answer, normalised to the form of Answer.value."""

    value: str | int


def _norm(text: str) -> str:
    return text.strip().strip("'\"").lower().replace("_", "-").replace(" ", "-")


def pick_choice(text: str, choices: list[str], aliases: dict[str, str | None] | None = None) -> str:
    """A choice by name, unique prefix, alias or number (1-based)."""
    t = _norm(text)
    if t.isdigit() and 1 <= int(t) <= len(choices):
        return choices[int(t) - 1]
    if t in choices:
        return t
    if aliases and t in aliases and aliases[t]:
        return str(aliases[t])
    matches = [c for c in choices if c.startswith(t) or c.replace("-", "").startswith(t.replace("-", ""))]
    if t and len(matches) == 1:
        return matches[0]
    raise Unreadable("one of: " + ", ".join(f"{c} ({i})" for i, c in enumerate(choices, 1)))


def read_answer(text: str, ans: Answer, choices: list[str] | None = None) -> str | int:
    """The student's text as a value comparable with ans.value; Unreadable with an example."""
    kind = ans.question.kind
    raw = text.strip()
    example = f"e.g. {show.EXAMPLES[kind]}"
    if kind == "outcome":
        try:
            return pick_choice(raw, list(OUTCOMES), ALIASES)
        except Unreadable as e:
            raise Unreadable(f"{e}; {example}") from None
    if kind == "addr":
        return pick_choice(raw, choices or ["new"])
    if kind in ("value", "file"):
        t = raw.strip("'\"")
        if t == "0" or (len(t) == 1 and t.isalpha() and t.isascii()):
            return t
        raise Unreadable(f"a single letter, or 0; {example} (letters are case-sensitive)")
    if kind == "strip":
        t = raw.replace(" ", "")
        n = len(str(ans.value)) if ans.value is not None else len(t)
        if len(t) == n and all(c in STRIP_CHARS for c in t):
            return t
        raise Unreadable(f"{n} characters from '{STRIP_CHARS}', one per page; e.g. {'#2.0'[:n].ljust(n, '.')}")
    t = raw.lower().removesuffix("kb").removesuffix("pages").strip()
    if t.isdigit():
        return int(t)
    raise Unreadable(f"a whole number; {example}")


def read_why(text: str) -> str:
    """A reason key by name, prefix or number."""
    return pick_choice(text, list(REASONS))


def is_right(given: str | int, ans: Answer) -> bool:
    return given == ans.value or given in ans.accepted


def read_number(text: str, n: int) -> int:
    """A choice's number, 1..n."""
    t = text.strip().rstrip(")")
    if t.isdigit() and 1 <= int(t) <= n:
        return int(t)
    raise Unreadable(f"the number of a choice, 1 to {n}; e.g. 2")
