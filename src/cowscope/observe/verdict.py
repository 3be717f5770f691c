"""A model-vs-kernel comparison's verdict, as data a report can draw.

`cowscope.verify.verdict.build` makes one from the comparator's differences (`verify.compare`,
`verify.events`) and the two traces; `cowscope.report` places it on the main series' processes,
mappings and pages. Neither layer imports the other: this record is what `cli/both.py` hands over,
so the picture says exactly what the comparison says.

Addresses and pids are the main series' (the model's): a report's snapshots of the same run have
the same ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Where a difference lies: on pages, on a region (its VMAs, smaps, or its being mapped at all),
#: on a process (state, exit, whole-process figures) or on the run (op log, outcome).
SCOPES = ("page", "region", "process", "run")


@dataclass(frozen=True)
class Difference:
    """One difference the comparator reported: counted, or excluded with the exclusion's reason."""

    text: str  # the comparator's own line (where: model ... | linux ...)
    excluded: str | None = None
    scope: str = "run"
    step: int | None = None  # the checkpoint (snapshot index)
    pid: int | None = None  # the main series' process
    region: str = ""  # the comparator's name of the region ("P.1 P#1", "P heap")
    span: tuple[int, int] | None = None  # the region's [start, end) addresses, main series
    pages: tuple[int, ...] = ()  # page addresses, main series (scope "page")
    event: bool = False  # from the event comparison (a differing event sequence)

    @property
    def counted(self) -> bool:
        """A difference that is not excluded."""
        return self.excluded is None


@dataclass(frozen=True)
class Compared:
    """A range whose pages the comparison looked at, one per region and checkpoint (main series).

    Pages of a mapping holding it but outside it are not compared, for the reason `around` (e.g.
    the heap VMA's range under ASLR); pages of mappings holding no compared range, for
    `Verdict.outside`."""

    step: int
    pid: int
    start: int
    end: int
    name: str
    around: str


@dataclass(frozen=True)
class RegionFigures:
    """The compared figures of one region at one checkpoint, on both sides: resident pages and,
    where the comparison looks at them, the smaps figures of the region's VMAs (kB, summed)."""

    step: int
    pid: int
    name: str
    npages: int
    model: dict[str, int]
    linux: dict[str, int]
    smaps_not_compared: str | None = None  # the reason, when the region's smaps are not compared


@dataclass
class Verdict:
    """Everything a report needs to say what the comparison said."""

    differences: list[Difference] = field(default_factory=list)
    compared: list[Compared] = field(default_factory=list)
    regions: list[RegionFigures] = field(default_factory=list)
    outside: str = ""  # why pages outside every compared range are not compared
    whole_process: str = ""  # why whole-process figures (status, rollup, faults) are not compared
    sides: tuple[str, str] = ("", "")  # what one process's whole-process figures cover, per side
    events: str = ""  # the event comparison's figure, or why events were not compared
    notes: list[str] = field(default_factory=list)  # scenario errors, failed expectations

    @property
    def counted(self) -> int:
        """State differences counted (the terminal's "N difference(s)")."""
        return sum(d.counted and not d.event for d in self.differences)

    @property
    def excluded(self) -> int:
        """State differences excluded (the terminal's "M excluded")."""
        return sum(not d.counted and not d.event for d in self.differences)

    @property
    def event_counted(self) -> int:
        """Event sequences that differ and are not excluded."""
        return sum(d.counted and d.event for d in self.differences)
