"""Problems from a seed: a versioned generator with topics and levels.

A seed gives the same problem for as long as GENERATOR_VERSION stays the same: every random
choice comes from `random.Random(f"cowscope-learn:{version}:{seed}:...")`, whose string seeding
and `randrange`/`choice`/`shuffle`/`sample` are stable across Python versions. Changing what a
topic generates means a new GENERATOR_VERSION (the tests pin a few seeds' problem texts).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .lang import Problem, ProblemError, parse

GENERATOR_VERSION = 2
LEVELS = (1, 2, 3)


@dataclass(frozen=True)
class Topic:
    """A topic: its name, a one-line summary, and the function that writes a problem."""

    name: str
    summary: str
    build: Callable[[Builder], None]
    invertible: bool = True   # its lines change what page strips show (--inverse)


class Builder:
    """Collects a problem's statements while a topic's generator makes its random choices."""

    def __init__(self, rng: random.Random, level: int) -> None:
        self.rng = rng
        self.level = level
        self.lines: list[str] = []
        self.title = ""
        self._letter = 0

    # random choices (only these, so the sequence of draws is easy to keep stable)
    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def between(self, lo: int, hi: int) -> int:
        """lo..hi inclusive."""
        return self.rng.randint(lo, hi)

    def pick(self, seq: Sequence[str]) -> str:
        return self.rng.choice(list(seq))

    def page(self, npages: int, avoid: Sequence[int] = ()) -> int:
        return self.rng.choice([i for i in range(npages) if i not in avoid] or [0])

    def order(self, items: Sequence[str]) -> list[str]:
        out = list(items)
        self.rng.shuffle(out)
        return out

    # statements
    def say(self, text: str) -> None:
        self.lines.append(text)

    def letter(self) -> str:
        self._letter += 1
        return "=" + chr(ord("A") + (self._letter - 1) % 26)

    def write(self, proc: str, name: str, pages: str | int = "all") -> None:
        """PROC write NAME PAGES =LETTER (pages "" for a malloc'd block, written whole)."""
        self.say(" ".join(w for w in (proc, "write", name, str(pages), self.letter()) if w))

    def ask_write(self, proc: str, name: str, page: int, why: bool | None = None) -> None:
        """? outcome PROC write NAME PAGE, with `why` from level 2 on unless told."""
        why = self.level >= 2 if why is None else why
        self.say(f"? outcome {proc} write {name} {page} {self.letter()}" + (" why" if why else ""))

    def ask(self, text: str) -> None:
        self.say(f"? {text}")


def _topics() -> dict[str, Topic]:
    from . import topics

    return {t.name: t for t in topics.TOPICS}


def topic_names() -> list[str]:
    return list(_topics())


def topic_summaries() -> list[tuple[str, str]]:
    return [(t.name, t.summary) for t in _topics().values()]


def invertible(topic: str) -> bool:
    return _topics()[topic].invertible


def choose(seed: int, topic: str | None = None, level: int | None = None,
           inverse: bool = False) -> tuple[str, int]:
    """The topic and level a seed gives when they are not fixed by the caller (for --inverse,
    among the topics whose lines change what page strips show)."""
    rng = random.Random(f"cowscope-learn:{GENERATOR_VERSION}:{seed}:pick" + (":inverse" if inverse else ""))
    names = [t.name for t in _topics().values() if t.invertible or not inverse]
    picked_topic = rng.choice(names)
    picked_level = rng.choice(LEVELS)
    return topic or picked_topic, level or picked_level


def generate(seed: int, topic: str | None = None, level: int | None = None, inverse: bool = False) -> Problem:
    """The problem of `seed` (in `topic`, at `level`; both picked by the seed when None)."""
    table = _topics()
    if topic is not None and topic not in table:
        raise ProblemError(f"unknown topic {topic!r}; topics: {', '.join(table)}")
    if level is not None and level not in LEVELS:
        raise ProblemError(f"level {level}: levels are {', '.join(map(str, LEVELS))}")
    topic, level = choose(seed, topic, level, inverse)
    rng = random.Random(f"cowscope-learn:{GENERATOR_VERSION}:{seed}:{topic}:{level}")
    b = Builder(rng, level)
    table[topic].build(b)
    problem = parse("\n".join(b.lines))
    problem.topic, problem.level, problem.seed = topic, level, seed
    problem.version, problem.title = GENERATOR_VERSION, b.title
    return problem
