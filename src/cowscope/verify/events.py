"""Comparing events: per checkpoint interval, per process and region, the sequence of
(kind, page offset) each backend's event log holds — the model's fault decisions against the
kernel's own (tracepoints, `cowscope.linux.kevents`).

Only events at addresses inside a scenario's regions (and the brk heap) are compared: the agent's
own code, stack and buffers are excluded by the same region rules as the state comparison. Every
difference that an exclusion covers is kept, tagged with its reason (`EVENT_EXCLUSIONS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..observe.records import PAGE_SIZE

#: The exclusion of copy-or-reuse on pages both sides of a threaded fork write (EVENT_EXCLUSIONS).
FORK_RACE = "who writes first after a threaded fork"
#: Address-bearing kinds the kernel side cannot produce (see EVENT_EXCLUSIONS).
MODEL_ONLY_KINDS = ("stack-grow", "thp-split", "swap-out", "ksm-merge")


def record_interval(tm: Any, mark: int) -> tuple[dict[str, list[tuple[str, int]]], int]:
    """The events of `tm`'s backend from seq `mark` on, per "process/region": [(kind, page)].
    Returns them and the new mark."""
    events = tm._m.events
    new = list(events.since(mark))
    out: dict[str, list[tuple[str, int]]] = {}
    spans = _spans(tm)
    for e in new:
        if not e.address or e.kind in ("checkpoint",):
            continue
        key = tm.key_of(e.pid)
        for proc, region, lo, hi in spans.get(key, ()):
            if lo <= e.address < hi:
                out.setdefault(f"{proc}/{region}", []).append((e.kind, (e.address - lo) // PAGE_SIZE))
                break
    return out, mark + len(new)


def _spans(tm: Any) -> dict[str, list[tuple[str, str, int, int]]]:
    """Per process key: (process, region key, start, end) of its regions and its heap."""
    out: dict[str, list[tuple[str, str, int, int]]] = {}
    for tp in tm.procs:
        rows = [(tp.key, r.key, r.addr, r.addr + r.length) for r in tp.regions]
        if tp.heap_base:
            try:
                end = int(tp._p.brk()) if tp._p.alive else tp.heap_base + (1 << 30)
            except Exception:  # noqa: BLE001 - a dead process: keep a generous heap span
                end = tp.heap_base + (1 << 30)
            rows.append((tp.key, "heap", tp.heap_base, max(end, tp.heap_base)))
        out[tp.key] = rows
    return out


@dataclass
class EventDiff:
    """One (checkpoint, process/region) whose event sequences differ; `excluded` names the reason."""

    checkpoint: str
    where: str
    model: list[tuple[str, int]]
    linux: list[tuple[str, int]]
    excluded: str | None = None
    step: int | None = None  # the checkpoint interval's index (it ends at that checkpoint)

    def line(self) -> str:
        tag = f" [excluded: {self.excluded}]" if self.excluded else ""
        return f"events {self.checkpoint} {self.where}: model {_seq(self.model)} | kernel {_seq(self.linux)}{tag}"


def _seq(items: list[tuple[str, int]], limit: int = 8) -> str:
    text = " ".join(f"{k}@{p}" for k, p in items[:limit])
    return (text + f" ... ({len(items)})") if len(items) > limit else (text or "-")


@dataclass
class EventScore:
    """How many (checkpoint, process/region) sequences were compared, agreed, or were excluded."""

    compared: int = 0
    agreed: int = 0
    events: int = 0
    excluded: int = 0

    @property
    def percent(self) -> float:
        return 100.0 * self.agreed / self.compared if self.compared else 100.0


def compare_events(model: Any, linux: Any, score: EventScore | None = None) -> list[EventDiff]:
    """Every differing sequence (excluded ones tagged); `score` counts what was compared."""
    score = score if score is not None else EventScore()
    diffs: list[EventDiff] = []
    if not (model.events_on and linux.events_on):
        return diffs
    labels = [c[0] for c in model.checkpoints]
    for i, (mi, li) in enumerate(zip(model.events, linux.events)):
        label = labels[i] if i < len(labels) else str(i)
        gup = (model.gup[i] if i < len(model.gup) else set()) | (linux.gup[i] if i < len(linux.gup) else set())
        for where in sorted(set(mi) | set(li)):
            filebacked = where.split("/", 1)[1] in model.filebacked | linux.filebacked
            m, k = _normal(mi.get(where, []), filebacked), _normal(li.get(where, []), filebacked)
            reason = _excluded(where, model, linux, gup)
            if reason is None and m != k and _race_only(m, k, where, _at(model.raced, i) | _at(linux.raced, i)):
                reason = FORK_RACE
            score.excluded += reason is not None
            if reason is None:
                score.compared += 1
                score.events += len(m)
                score.agreed += m == k
            if m != k:
                diffs.append(EventDiff(label, where, m, k, reason, step=i))
    return diffs


def _at(per_checkpoint: list[set[tuple[str, int]]], i: int) -> set[tuple[str, int]]:
    return per_checkpoint[i] if i < len(per_checkpoint) else set()


def _race_only(m: list[tuple[str, int]], k: list[tuple[str, int]], where: str,
               raced: set[tuple[str, int]]) -> bool:
    """The sequences differ only in who copied and who reused pages both sides of a fork wrote
    (and so in which order each side wrote them)."""
    region = where.split("/", 1)[1]
    pages = {i for r, i in raced if r == region}

    def write(seq: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], list[int]]:
        wp = [p for kind, p in seq if p in pages and kind in ("cow-copy", "cow-reuse")]
        return [e for e in seq if not (e[1] in pages and e[0] in ("cow-copy", "cow-reuse"))], sorted(wp)
    return bool(pages) and write(m) == write(k)


def _normal(seq: list[tuple[str, int]], filebacked: bool) -> list[tuple[str, int]]:
    """A sequence as compared: model-only kinds dropped, the two zero-page maps one kind, and in
    file and shared regions no page-cache maps (fault-around decides which reads fault)."""
    out = []
    for kind, page in seq:
        if kind in MODEL_ONLY_KINDS or (filebacked and kind == "pagecache-map"):
            continue
        out.append(("zero-page-map" if kind == "thp-zero-map" else kind, page))
    return out


def _excluded(where: str, model: Any, linux: Any, gup: set[str]) -> str | None:
    """The reason a sequence is not compared, or None."""
    region = where.split("/", 1)[1]
    if region in gup:
        return "populated through get_user_pages"
    return None
