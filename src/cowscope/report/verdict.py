"""The comparison's verdict placed on the report's data: which pages, mappings, processes and
checkpoints carry which of the comparator's differences, and what was not compared and why.

The report has no judgement of its own on model vs kernel: a page is marked different exactly
when a counted difference of the verdict (`observe.verdict.Verdict`, built by the comparator)
names it. `place_verdict` adds to the payload's steps (built by payload.py):

- per mapping `verdict`: `marks` [[page index, difference id], ...], `compared` [[first, end,
  region], ...] (page indexes; the rest of the mapping is not compared), `around` (the reason id
  for the rest when something is compared, else the reason for the whole mapping), `notes` (ids of
  the differences of a region the mapping holds: VMAs, smaps, events);
- per process `verdict`: ids of its process-wide differences;
- per step `verdict`: counted and excluded state differences, counted event differences, all ids,
  and the compared figures of each region;

and returns the metadata's `verdict`: the totals, every difference (text, reason id, scope, step,
pid, where the page shows it: "page", "mapping", "process" or "" for the header's list), the
reasons' texts and the side labels.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from ..observe.records import PAGE_SIZE
from ..observe.verdict import Difference, Verdict


class _Reasons:
    """A string table of exclusion reasons (ids in the payload, texts once in the metadata)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._ids: dict[str, int] = {}

    def id(self, text: str | None) -> int:
        if text is None:
            return -1
        if text not in self._ids:
            self._ids[text] = len(self.texts)
            self.texts.append(text)
        return self._ids[text]


def _overlaps(lo: int, hi: int, m: dict[str, Any]) -> bool:
    return lo < m["end"] and m["start"] < hi


def _place_mapping(m: dict[str, Any], diffs: list[tuple[int, Difference]], compared: list[Any],
                   reasons: _Reasons, outside: str, shown: dict[int, str]) -> None:
    """The verdict of one mapping: its marked pages, compared ranges, region notes."""
    marks: list[list[int]] = []
    notes: list[int] = []
    for i, d in diffs:
        if d.scope == "page":
            idx = [(a - m["start"]) // PAGE_SIZE for a in d.pages if m["start"] <= a < m["end"]]
            marks += [[j, i] for j in idx]
            if idx:
                shown[i] = "page"
        elif d.span is not None and _overlaps(*d.span, m):
            notes.append(i)
            shown.setdefault(i, "mapping")
    ranges = [c for c in compared if _overlaps(c.start, c.end, m)]
    m["verdict"] = {
        "marks": marks, "notes": notes,
        "compared": [[max(0, (c.start - m["start"]) // PAGE_SIZE), min(m["npages"], (c.end - m["start"]) // PAGE_SIZE),
                      c.name] for c in ranges],
        "around": reasons.id(ranges[0].around if ranges else outside),
    }


def _step_figures(verdict: Verdict, k: int) -> list[dict[str, Any]]:
    return [{"pid": r.pid, "name": r.name, "npages": r.npages, "model": r.model, "linux": r.linux,
             "smaps_not_compared": r.smaps_not_compared} for r in verdict.regions if r.step == k]


def place_verdict(verdict: Verdict, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Put the verdict on the payload's steps (in place); the metadata's `verdict` entry."""
    reasons = _Reasons()
    by_place: dict[tuple[int | None, int | None], list[tuple[int, Difference]]] = defaultdict(list)
    for i, d in enumerate(verdict.differences):
        by_place[(d.step, d.pid)].append((i, d))
    shown: dict[int, str] = {}  # difference id -> where the page shows it: page, mapping, process
    for k, step in enumerate(steps):
        ids = [i for (s, _pid), ds in by_place.items() if s == k for i, _ in ds]
        step["verdict"] = {
            "counted": sum(verdict.differences[i].counted and not verdict.differences[i].event for i in ids),
            "excluded": sum(not verdict.differences[i].counted and not verdict.differences[i].event for i in ids),
            "events": sum(verdict.differences[i].counted and verdict.differences[i].event for i in ids),
            "ids": sorted(ids), "regions": _step_figures(verdict, k)}
        for p in step["processes"]:
            diffs = by_place.get((k, p["pid"]), [])
            compared = [c for c in verdict.compared if c.step == k and c.pid == p["pid"]]
            for m in p["mappings"]:
                _place_mapping(m, diffs, compared, reasons, verdict.outside, shown)
            p["verdict"] = [i for i, _ in diffs if i not in shown]  # process-wide, or on no mapping of it
            shown.update((i, "process") for i in p["verdict"])
    return {
        "counted": verdict.counted, "excluded": verdict.excluded, "events_counted": verdict.event_counted,
        "events": verdict.events, "notes": verdict.notes, "sides": list(verdict.sides),
        "whole_process": reasons.id(verdict.whole_process), "outside": reasons.id(verdict.outside),
        "differences": [{"text": d.text, "why": reasons.id(d.excluded), "scope": d.scope, "step": d.step,
                         "pid": d.pid, "region": d.region, "event": d.event, "shown": shown.get(i, "")}
                        for i, d in enumerate(verdict.differences)],
        "reasons": reasons.texts,
    }
