"""The action language: a problem as data, parsed from and printed to a short text.

One statement per line (or separated by ";"). Processes have names that start with an upper-case
letter (P, C, G2), memory and files lower-case ones (a, x, f). The first process named is started
with spawn; every other one comes from a fork or vfork. Pages count from 0; PAGES is `3`, `1-3`
(inclusive) or `all`. A write stores one letter in every page it covers (`=B`; without it the
next letter in order). Each page i of a file holds the letter 'a'+i.

    file f 4                    a 4-page file
    pwrite f 1 =N               write(2) the letter N over page 1 of the file
    P mmap a 4                  a = 4 pages, private anonymous (add `shared`, `file=f`)
    P munmap a
    P malloc x 100              x = malloc(100)
    P free x
    P write a 0-3 =A            store 'A' in pages 0..3 (a malloc'd block: the whole block)
    P read a 2                  load a byte from page 2
    P fork C | P vfork C        C is the child
    C exec | C exit | P wait C
    P madvise a 0-1 dontneed    also dontfork, dofork, wipeonfork, keeponfork

Questions start with `?`. Those naming an action perform it, then ask about it:

    ? outcome C write a 1 [why] what the access does to the page (copy, reuse, zero-fill, ...)
    ? value C read a 1          the byte read: a letter, or 0
    ? faults C write a 0-3      page faults the access takes (private anonymous regions)
    ? copies C free x           pages the call copied (its mappings, [heap], libc's data)
    ? addr P malloc y 100       which block's address malloc returns again, or `new`
    ? strip P a                 the page strip of a in P (. 0 # 2-9 f)
    ? rss P a | pss | uss       the figure for a's mapping in P's smaps, in kB
    ? own P code                pages of the region that are P's own private copies
    ? file f 1                  the letter read(2) finds in page 1 of the file

`code` names the C library's code (its r-xp mapping) in every process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import CowscopeError

VERBS = ("mmap", "munmap", "malloc", "free", "write", "read", "fork", "vfork", "exec", "exit", "wait",
         "madvise")
MACHINE_VERBS = ("file", "pwrite")
ADVICE = ("dontneed", "dontfork", "dofork", "wipeonfork", "keeponfork")
#: Question kinds, each with the grammar after its keyword.
KINDS = {
    "outcome": "PROC write|read REGION PAGE [why]",
    "value": "PROC read REGION [PAGE]",
    "faults": "PROC write|read REGION PAGES",
    "copies": "PROC ACTION ...",
    "addr": "PROC malloc NAME NBYTES",
    "strip": "PROC REGION",
    "rss": "PROC REGION",
    "pss": "PROC REGION",
    "uss": "PROC REGION",
    "own": "PROC REGION",
    "file": "FILE PAGE",
}
CODE = "code"  # the pseudo-region: the C library's text
MEMORY_VERBS = ("mmap", "munmap", "malloc", "free", "write", "read", "madvise")
MAX_PAGES = 64
MAX_MALLOC = 1 << 24

_PROC = re.compile(r"[A-Z][A-Za-z0-9]{0,7}$")
_NAME = re.compile(r"[a-z][a-z0-9]{0,7}$")


class ProblemError(CowscopeError):
    """A problem text that does not parse or does not make sense (says where and why)."""


@dataclass(frozen=True)
class Action:
    """One thing a process (or, for files, the machine) does."""

    proc: str   # acting process; "" for machine-level statements (file, pwrite)
    verb: str
    args: tuple[str, ...] = ()

    def text(self) -> str:
        words = ([self.proc] if self.proc else []) + [self.verb, *self.args]
        return " ".join(words)


@dataclass(frozen=True)
class Question:
    """A question; `action` (when set) is performed as part of it, before the answer is read."""

    kind: str
    action: Action | None = None
    target: tuple[str, ...] = ()   # (proc, region) or (file, page) for state questions
    why: bool = False

    def text(self) -> str:
        body = self.action.text() if self.action else " ".join(self.target)
        return f"? {self.kind} {body}" + (" why" if self.why else "")


Step = Action | Question


@dataclass
class Problem:
    """A problem: its steps and where it came from (generator version, seed, topic, level)."""

    steps: list[Step]
    topic: str = "explicit"
    level: int = 0
    seed: int | None = None
    version: int = 0
    title: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def questions(self) -> list[Question]:
        return [s for s in self.steps if isinstance(s, Question)]

    def text(self) -> str:
        """The canonical action-language text (parse(text()) gives the same steps)."""
        return "\n".join(s.text() for s in self.steps)


def pages_of(spec: str, npages: int) -> range:
    """`3`, `1-3` (inclusive) or `all` -> the page indexes, checked against the region's size."""
    if spec == "all":
        return range(npages)
    lo, _, hi = spec.partition("-")
    if not lo.isdigit() or (hi and not hi.isdigit()):
        raise ProblemError(f"pages {spec!r}: write a page (3), a range (1-3) or all")
    first, last = int(lo), int(hi or lo)
    if not first <= last < npages:
        raise ProblemError(f"pages {spec!r}: the region has pages 0-{npages - 1}")
    return range(first, last + 1)


def parse(text: str, need_question: bool = True) -> Problem:
    """Parse action-language text; ProblemError names the statement that is wrong."""
    steps: list[Step] = []
    parser = _Parser()
    for n, raw in enumerate(re.split(r"[;\n]", text), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            steps.append(parser.statement(line.split()))
        except ProblemError as e:
            raise ProblemError(f"statement {n} ({line!r}): {e}") from None
    if need_question and not any(isinstance(s, Question) for s in steps):
        raise ProblemError("the problem asks nothing: add a question (a statement starting with '?')")
    return Problem(steps)


class _Parser:
    """Checks each statement against what exists so far (processes, regions, blocks, files)."""

    def __init__(self) -> None:
        self.procs: set[str] = set()
        self.gone: set[str] = set()
        self.suspended: dict[str, str] = {}   # vfork child -> its suspended parent
        self.regions: dict[str, tuple[int, str]] = {}   # name -> (npages, file name or "")
        self.shared: dict[str, bool] = {}
        self.blocks: dict[str, int] = {}
        self.files: dict[str, int] = {}
        self.letter = 0

    def statement(self, words: list[str]) -> Step:
        if words[0] == "?":
            return self.question(words[1:])
        if words[0] in MACHINE_VERBS:
            return self.machine_action(words)
        return self.action(words)

    # -- actions ---------------------------------------------------------------------------
    def machine_action(self, words: list[str]) -> Action:
        verb, args = words[0], words[1:]
        if verb == "file":
            _expect(len(args) == 2 and _NAME.match(args[0]) and args[1].isdigit(), "file NAME NPAGES")
            self._fresh(args[0])
            self.files[args[0]] = _npages(args[1])
            return Action("", verb, tuple(args))
        _expect(len(args) in (2, 3), "pwrite FILE PAGE [=LETTER]")
        self._known(args[0], self.files, "file")
        pages_of(args[1], self.files[args[0]])
        return Action("", verb, (args[0], args[1], self._letter(args[2:])))

    def action(self, words: list[str]) -> Action:
        _expect(len(words) >= 2, "PROC VERB ...")
        proc, verb, args = words[0], words[1], words[2:]
        if not _PROC.match(proc):
            raise ProblemError(f"{proc!r}: a process name starts with an upper-case letter (P, C, G2)")
        if verb not in VERBS:
            raise ProblemError(f"unknown verb {verb!r}; verbs: {', '.join(VERBS + MACHINE_VERBS)}")
        self._actor(proc)
        return getattr(self, f"_{verb}")(proc, args)

    def _actor(self, proc: str) -> None:
        if proc in self.suspended.values():
            child = next(c for c, p in self.suspended.items() if p == proc)
            raise ProblemError(f"{proc} is suspended in vfork() until {child} execs or exits")
        if proc in self.gone:
            raise ProblemError(f"{proc} has exited or exec'd (its memory is gone)")
        if not self.procs:
            self.procs.add(proc)  # the first process is spawned
        elif proc not in self.procs:
            raise ProblemError(f"no process {proc}: processes come from fork/vfork ({', '.join(sorted(self.procs))})")

    def _mmap(self, proc: str, args: list[str]) -> Action:
        _expect(len(args) >= 2 and _NAME.match(args[0]) and args[1].isdigit(),
                "PROC mmap NAME NPAGES [shared] [file=F]")
        self._fresh(args[0])
        fname = ""
        for flag in args[2:]:
            if flag.startswith("file="):
                fname = flag[5:]
                self._known(fname, self.files, "file")
            elif flag != "shared":
                raise ProblemError(f"mmap flag {flag!r}: use shared and/or file=F")
        npages = _npages(args[1])
        if fname and npages > self.files[fname]:
            raise ProblemError(f"file {fname} has {self.files[fname]} pages; map at most that many")
        self.regions[args[0]] = (npages, fname)
        self.shared[args[0]] = "shared" in args[2:]
        return Action(proc, "mmap", tuple(args))

    def _munmap(self, proc: str, args: list[str]) -> Action:
        _expect(len(args) == 1, "PROC munmap REGION")
        self._known(args[0], self.regions, "mmap'd region")
        return Action(proc, "munmap", tuple(args))

    def _malloc(self, proc: str, args: list[str]) -> Action:
        _expect(len(args) == 2 and _NAME.match(args[0]) and args[1].isdigit(), "PROC malloc NAME NBYTES")
        if args[0] not in self.blocks:
            self._fresh(args[0])
        nbytes = int(args[1])
        if not 0 < nbytes <= MAX_MALLOC:
            raise ProblemError(f"malloc size {nbytes}: 1 to {MAX_MALLOC} bytes")
        self.blocks[args[0]] = nbytes
        return Action(proc, "malloc", tuple(args))

    def _free(self, proc: str, args: list[str]) -> Action:
        _expect(len(args) == 1, "PROC free NAME")
        self._known(args[0], self.blocks, "malloc'd block")
        return Action(proc, "free", tuple(args))

    def _write(self, proc: str, args: list[str]) -> Action:
        _expect(1 <= len(args) <= 3, "PROC write NAME [PAGES] [=LETTER]")
        letter = [a for a in args[1:] if a.startswith("=")]
        rest = [a for a in args[1:] if not a.startswith("=")]
        name = args[0]
        if name in self.blocks:
            _expect(not rest, "PROC write BLOCK [=LETTER] (a malloc'd block is written whole)")
            return Action(proc, "write", (name, self._letter(letter)))
        spec = rest[0] if rest else "all"
        self._pages(name, spec)
        return Action(proc, "write", (name, spec, self._letter(letter)))

    def _read(self, proc: str, args: list[str]) -> Action:
        _expect(1 <= len(args) <= 2, "PROC read NAME [PAGE]")
        if args[0] in self.blocks:
            _expect(len(args) == 1, "PROC read BLOCK (reads its first byte)")
            return Action(proc, "read", (args[0],))
        spec = args[1] if len(args) > 1 else "0"
        if len(self._pages(args[0], spec)) != 1:
            raise ProblemError("read one page at a time")
        return Action(proc, "read", (args[0], spec))

    def _fork(self, proc: str, args: list[str], verb: str = "fork") -> Action:
        _expect(len(args) == 1 and _PROC.match(args[0]), f"PROC {verb} CHILD (an upper-case name)")
        if args[0] in self.procs or args[0] in self.gone:
            raise ProblemError(f"process {args[0]} exists already")
        self.procs.add(args[0])
        if verb == "vfork":
            self.suspended[args[0]] = proc
        return Action(proc, verb, tuple(args))

    def _vfork(self, proc: str, args: list[str]) -> Action:
        return self._fork(proc, args, "vfork")

    def _exec(self, proc: str, args: list[str]) -> Action:
        _expect(not args, "PROC exec")
        self.gone.add(proc)
        self.suspended.pop(proc, None)
        return Action(proc, "exec")

    def _exit(self, proc: str, args: list[str]) -> Action:
        _expect(not args, "PROC exit")
        self.gone.add(proc)
        self.suspended.pop(proc, None)
        return Action(proc, "exit")

    def _wait(self, proc: str, args: list[str]) -> Action:
        _expect(len(args) == 1, "PROC wait CHILD")
        if args[0] not in self.procs:
            raise ProblemError(f"no process {args[0]}")
        return Action(proc, "wait", tuple(args))

    def _madvise(self, proc: str, args: list[str]) -> Action:
        _expect(len(args) == 3, f"PROC madvise REGION PAGES ADVICE ({', '.join(ADVICE)})")
        self._pages(args[0], args[1])
        if args[2] not in ADVICE:
            raise ProblemError(f"advice {args[2]!r}: one of {', '.join(ADVICE)}")
        return Action(proc, "madvise", tuple(args))

    # -- questions -------------------------------------------------------------------------
    def question(self, words: list[str]) -> Question:
        if not words or words[0] not in KINDS:
            raise ProblemError(f"a question is '? KIND ...' with KIND one of {', '.join(KINDS)}")
        kind, rest = words[0], words[1:]
        usage = f"? {kind} {KINDS[kind]}"
        if kind in ("outcome", "value", "copies", "addr", "faults"):
            why = kind == "outcome" and rest[-1:] == ["why"]
            action = self.action(rest[:-1] if why else rest)
            verbs = {"outcome": ("write", "read"), "value": ("read",), "addr": ("malloc",),
                     "faults": ("write", "read"), "copies": MEMORY_VERBS}[kind]
            _expect(action.verb in verbs, usage)
            if kind == "faults":
                npages, fname = self.regions.get(action.args[0], (0, "x"))
                _expect(npages and not fname and not self.shared.get(action.args[0]),
                        usage + " (a private anonymous region: a shared page's write permission is not shown)")
            if kind == "outcome":
                _expect(action.args[0] in self.regions and len(self._pages(*action.args[:2])) == 1,
                        usage + " (one page of an mmap'd region)")
            return Question(kind, action, why=why)
        if kind == "file":
            _expect(len(rest) == 2, usage)
            self._known(rest[0], self.files, "file")
            pages_of(rest[1], self.files[rest[0]])
            return Question(kind, target=tuple(rest))
        _expect(len(rest) == 2, usage)
        self._actor(rest[0])
        if rest[1] == CODE:
            _expect(kind == "own", "? own PROC code (the code's size differs between systems)")
        else:
            self._known(rest[1], self.regions, "mmap'd region")
        return Question(kind, target=tuple(rest))

    # -- helpers ---------------------------------------------------------------------------
    def _fresh(self, name: str) -> None:
        if name == CODE or name in self.regions or name in self.blocks or name in self.files:
            raise ProblemError(f"the name {name!r} is taken")

    def _known(self, name: str, table: dict[str, int] | dict[str, tuple[int, str]], what: str) -> None:
        if name not in table:
            have = ", ".join(sorted(table)) or "none yet"
            raise ProblemError(f"no {what} {name!r} (have: {have})")

    def _pages(self, name: str, spec: str) -> range:
        self._known(name, self.regions, "mmap'd region or block")
        return pages_of(spec, self.regions[name][0])

    def _letter(self, given: list[str]) -> str:
        """The letter a write stores: the one given, else the one after the last used."""
        if given:
            value = given[0].lstrip("=")
            if not re.fullmatch(r"[A-Z]", value):
                raise ProblemError(f"={value}: a write stores one upper-case letter (=B)")
        else:
            value = chr(ord("A") + self.letter % 26)
        self.letter = ord(value) - ord("A") + 1
        return "=" + value


def _expect(ok: object, usage: str) -> None:
    if not ok:
        raise ProblemError(f"expected: {usage}")


def _npages(text: str) -> int:
    n = int(text)
    if not 1 <= n <= MAX_PAGES:
        raise ProblemError(f"{n} pages: 1 to {MAX_PAGES}")
    return n
