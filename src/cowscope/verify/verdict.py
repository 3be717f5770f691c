"""The comparison's verdict for a report: every difference `compare` and `compare_events` found,
placed on the model's processes, regions and pages, with what was compared and what was not.

`build` turns the comparator's own results into `observe.verdict.Verdict` (plain data the report
layer draws without importing verify): a per-page difference becomes the page addresses in the
model's process at that checkpoint, a region's difference its address range; the regions observed
at each checkpoint are the compared ranges; exclusion reasons are the texts `cowscope verify` prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..observe.records import PAGE_SIZE
from ..observe.verdict import Compared, Difference, RegionFigures, Verdict
from .compare import CHUNK_VMA, HEAP_VMA, MERGED_VMA, Diff
from .events import EventDiff
from .exclusions import EVENT_EXCLUSIONS, EXCLUSIONS
from .trace import Trace

OUTSIDE = "mappings outside the scenario's regions"
WHOLE_PROCESS = "status / smaps_rollup / fault counts"
#: What one process's whole-process figures cover, on each side.
SIDES = ("model process: the model's program image, libc, loader and stack, and the scenario's mappings",
         "agent process: includes the agent's own code and buffers")

_Places = dict[str, tuple[int, dict[str, tuple[int, int]]]]


def build(model: Trace, linux: Trace, diffs: Sequence[Diff], event_diffs: Sequence[EventDiff] = (),
          events: str = "") -> Verdict:
    """The verdict of one comparison, placed on the model's side (the report's main series)."""
    v = Verdict(outside=_reason(EXCLUSIONS[OUTSIDE]), whole_process=_reason(EXCLUSIONS[WHOLE_PROCESS]),
                sides=SIDES, events=events)
    v.differences = [_placed(model, linux, d) for d in diffs] + [_event_placed(model, d) for d in event_diffs]
    for k, places in enumerate(model.places):
        for key, (pid, regions) in places.items():
            for rk, (addr, npages) in regions.items():
                v.compared.append(Compared(k, pid, addr, addr + npages * PAGE_SIZE, rk, _around(rk)))
                v.regions.append(_figures(model, linux, k, key, pid, rk, npages))
    for tr in (model, linux):
        if tr.error:
            v.notes.append(f"scenario error on {tr.backend}: {tr.error}")
        v.notes += [f"expectation failed on {tr.backend}: {f}" for f in tr.failures]
        if tr.skipped:
            v.notes.append(f"skipped on {tr.backend}: {tr.skipped}")
    return v


def _reason(why: str | None) -> str | None:
    """An exclusion as `cowscope verify` prints it: "what: why"."""
    if why is None:
        return None
    what = next((w for w, r in EXCLUSIONS.items() if r == why), None)
    return f"{what}: {why}" if what else why


def _around(region: str) -> str:
    """Why the rest of a VMA holding a region is not compared."""
    if region == "heap":
        return f"{HEAP_VMA}: {EXCLUSIONS[HEAP_VMA]}"
    what = CHUNK_VMA if "@" in region else MERGED_VMA
    return f"{what}: {EXCLUSIONS[what]}"


def _step_of_op(model: Trace, linux: Trace, op: int) -> int | None:
    """The checkpoint that closes the interval an op ran in on either side (None: after the last)."""
    marks = [max(a, b) for a, b in zip(model.marks, linux.marks, strict=False)]
    return next((k for k, mark in enumerate(marks) if mark > op), None)


def _where(tr: Trace, step: int | None, process: str | None, region: str | None
           ) -> tuple[int | None, tuple[int, int] | None]:
    """The model's pid of a process and the address range of its region at a checkpoint."""
    if step is None or process is None or step >= len(tr.places) or process not in tr.places[step]:
        return None, None
    pid, regions = tr.places[step][process]
    if region is None or region not in regions:
        return pid, None
    addr, npages = regions[region]
    return pid, (addr, addr + npages * PAGE_SIZE)


def _placed(model: Trace, linux: Trace, d: Diff) -> Difference:
    """A state difference with the model's pid, region range and page addresses."""
    step = _step_of_op(model, linux, d.op) if d.op is not None else d.step
    pid, span = _where(model, step, d.process, d.region)
    scope = "page" if d.pages else "region" if d.region else "process" if d.process else "run"
    pages: tuple[int, ...] = ()
    if d.pages and span is not None:
        pages = tuple(span[0] + i * PAGE_SIZE for i in d.pages if span[0] + i * PAGE_SIZE < span[1])
    name = f"{d.process} {d.region}" if d.region else ""
    text = f"{d.where}: model {_short(d.model)} | linux {_short(d.linux)}"
    return Difference(text, _reason(d.excluded), scope, step, pid, name, span, pages)


def _short(value: Any, limit: int = 240) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _event_placed(model: Trace, d: EventDiff) -> Difference:
    """A differing event sequence of one process's region in one checkpoint interval."""
    process, _, region = d.where.partition("/")
    pid, span = _where(model, d.step, process, region)
    why = f"{d.excluded}: {EVENT_EXCLUSIONS[d.excluded]}" if d.excluded in EVENT_EXCLUSIONS else d.excluded
    return Difference(d.line(), why, "region", d.step, pid, f"{process} {region}", span, event=True)


def _figures(model: Trace, linux: Trace, k: int, key: str, pid: int, rk: str, npages: int) -> RegionFigures:
    """Resident pages and smaps sums of one region at checkpoint k, on both sides."""
    sides = [_region_obs(tr, k, key, rk) for tr in (model, linux)]
    why = None
    if rk == "heap" or "@" in rk:
        why = _around(rk)
    elif any(v["pages"][0] < 0 or v["pages"][1] > npages for r in sides if r for v in r["vmas"]):
        why = f"{MERGED_VMA}: {EXCLUSIONS[MERGED_VMA]}"
    return RegionFigures(k, pid, rk, npages, _sums(sides[0]), _sums(sides[1]), why)


def _region_obs(tr: Trace, k: int, key: str, rk: str) -> dict[str, Any] | None:
    if k >= len(tr.checkpoints):
        return None
    return tr.checkpoints[k][1].get(key, {}).get("regions", {}).get(rk)


def _sums(region: dict[str, Any] | None) -> dict[str, int]:
    """Resident pages, and Rss, Pss, Private, Shared (kB) over the region's VMAs."""
    if region is None:
        return {}
    out = {"resident": sum(t[:1] not in ("-", "W", "G") for t in region["pages"])}
    for name, fields in (("Rss", ("Rss",)), ("Pss", ("Pss",)), ("Private", ("Private_Clean", "Private_Dirty")),
                         ("Shared", ("Shared_Clean", "Shared_Dirty"))):
        out[name] = sum(v["smaps"].get(f, 0) for v in region["vmas"] for f in fields)
    return out
