"""Run one scenario on two backends and show them side by side, marking every difference.

A scenario is a callable taking a machine (a `TracedMachine` wrapping the backend's Machine).
`run_traced` runs it on one backend; `compare` lines up two traces — the op log (bytes read,
outcomes) and each checkpoint's per-region page states, PFN-identity letters, VMAs and smaps
figures — and returns the differences, each either counted or excluded with its reason.
`cowscope.report.both` renders them for the terminal.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..errors import Unsupported
from ..observe.backend import Machine
from .exclusions import EXCLUSIONS, SMAPS_COMPARED
from .outcome import located, outcome
from .trace import Trace, TracedMachine

FAULT_AROUND = "untouched file/shmem pages"
HEAP_VMA = "heap VMA and its smaps"
MERGED_VMA = "smaps of a VMA reaching beyond its region"
RECYCLED = "page replaced after a drop"
CHUNK_VMA = "VMAs around malloc's mmap'd chunks"
FORK_RACE = "who writes first after a threaded fork"


@dataclass(frozen=True)
class Diff:
    """One disagreement: where, what each backend said, and the exclusion reason if excluded.

    Where it lies also as data (for a report to place it): the checkpoint's index, the process's
    history name, the region's key and, for a per-page difference, the page offsets in the region;
    an op-log difference has its op index (0-based) instead. `aspect` says what differs: "outcome",
    "op", "checkpoints", "process" (alive on one side only), "state", "exit", "status/faults",
    "mapped" (a region on one side only), "page" (a page's state), "identity" (which pages are one
    frame), "moved" (a new frame since the previous checkpoint), "VMAs", or a field of the VMA
    `vma` (its page range in the region): "perms", "vmflags", "thp_eligible" or an smaps figure.
    """

    where: str
    model: Any
    linux: Any
    excluded: str | None = None
    step: int | None = None
    process: str | None = None
    region: str | None = None
    pages: tuple[int, ...] = ()
    op: int | None = None
    aspect: str = ""
    vma: tuple[int, int] | None = None

    def line(self) -> str:
        """One line: where, both values, excluded or not."""
        mark = f"(excluded: {self.excluded})" if self.excluded else "DIFFERS"
        return f"{self.where}: model {self.model!r} | linux {self.linux!r}  {mark}"


def run_traced(scenario: Callable[[TracedMachine], Any], machine: Machine, backend: str,
               snapshots: bool = False) -> Trace:
    """Run `scenario` on `machine` wrapped in a tracer; a final checkpoint "end" is always taken
    (with `snapshots`, each checkpoint also keeps the backend's full views for the HTML report)."""
    tm = TracedMachine(machine, backend, snapshots=snapshots)
    try:
        scenario(tm)
        tm.checkpoint("end")
    except Unsupported as exc:  # e.g. swap without root: skipped, with the reason
        tm.trace.skipped = str(exc)
    except Exception as exc:  # the scenario's own failure is part of the trace, not a crash
        tm.trace.error = located(exc, scenario)
        tm.trace.outcome = outcome(exc, tm)
    finally:
        machine.close()
    return tm.trace


_LETTER = re.compile(r"\.[A-Z]+$")
_COUNT = re.compile(r"^([SF])\d+")


def _norm_token(tok: str, letters: bool, counts: bool) -> str:
    """Without PFNs (no root) pagemap still tells present / exclusive / file, nothing more:
    the zero page and a shared anon page are both "P" (present, not exclusive)."""
    if not letters:
        tok = _LETTER.sub("", tok)
    if not counts:
        tok = _COUNT.sub(r"\1", tok)
        if tok in ("Z", "S"):
            tok = "P"
    return tok


def compare(model: Trace, linux: Trace) -> list[Diff]:
    """Every difference between two traces of one scenario (excluded ones carry their reason)."""
    diffs: list[Diff] = []
    if model.outcome != linux.outcome:  # kind and message; cowscope's own frames play no part
        diffs.append(Diff("how the scenario ended", model.outcome or "(ran to the end)",
                          linux.outcome or "(ran to the end)", aspect="outcome"))
    n = max(len(model.ops), len(linux.ops))
    for i in range(n):
        a = model.ops[i] if i < len(model.ops) else None
        b = linux.ops[i] if i < len(linux.ops) else None
        if a != b:
            diffs.append(Diff(f"op {i + 1}", _op_text(a), _op_text(b), op=i, aspect="op"))
    pfns = model.kpage and linux.kpage
    labels = [lbl for lbl, _ in model.checkpoints]
    if labels != [lbl for lbl, _ in linux.checkpoints]:
        diffs.append(Diff("checkpoints", labels, [lbl for lbl, _ in linux.checkpoints], aspect="checkpoints"))
    for k, ((label, mo), (_l, lo)) in enumerate(zip(model.checkpoints, linux.checkpoints, strict=False)):
        diffs += [replace(d, step=k) for d in _compare_obs(label, mo, lo, pfns)]
    return diffs


def _op_text(op: Any) -> str:
    if op is None:
        return "(none)"
    key, name, args, res = op
    return f"{key} {name}({', '.join(map(str, args))}) -> {res}"


#: A page whose identity letters are checked: (process, region, where, model letter, kernel letter, page).
_Pair = tuple[str, str, str, str, str, int]


def _identity_diffs(pairs: list[_Pair]) -> list[Diff]:
    """Page identity must be the same relation on both sides: letters pair up one to one."""
    a_to_b: dict[str, set[str]] = {}
    b_to_a: dict[str, set[str]] = {}
    for *_, la, lb, _i in pairs:
        a_to_b.setdefault(la, set()).add(lb)
        b_to_a.setdefault(lb, set()).add(la)
    out = []
    for key, rk, where, la, lb, i in pairs:
        if len(a_to_b[la]) > 1 or len(b_to_a[lb]) > 1:
            same_a = sorted(p[2] for p in pairs if p[3] == la and p[2] != where)
            same_b = sorted(p[2] for p in pairs if p[4] == lb and p[2] != where)
            out.append(Diff(f"{where} same physical page as", same_a, same_b, process=key, region=rk, pages=(i,),
                            aspect="identity"))
    return out


def _compare_obs(label: str, mo: dict[str, Any], lo: dict[str, Any], pfns: bool) -> list[Diff]:
    out: list[Diff] = []
    pairs: list[_Pair] = []
    around = _fault_around_slots(mo, lo)
    for key in sorted(set(mo) | set(lo)):
        a, b = mo.get(key), lo.get(key)
        at = f"[{label}] {key}"
        if a is None or b is None:
            out.append(Diff(at, a and a["state"], b and b["state"], process=key, aspect="process"))
            continue
        for f in ("state", "exit"):
            if a.get(f) != b.get(f):
                out.append(Diff(f"{at} {f}", a.get(f), b.get(f), process=key, aspect=f))
        ra, rb = a.get("regions", {}), b.get("regions", {})
        for rk in sorted(set(ra) | set(rb)):
            if rk not in ra or rk not in rb:
                out.append(Diff(f"{at} {rk}", "mapped" if rk in ra else None, "mapped" if rk in rb else None,
                                process=key, region=rk, aspect="mapped"))
                continue
            region_pairs: list[tuple[str, str, str, int]] = []
            out += [replace(d, process=key, region=rk)
                    for d in _compare_region(f"{at} {rk}", ra[rk], rb[rk], pfns, region_pairs, around)]
            pairs += [(key, rk, *p) for p in region_pairs]
        ia, ib = a.get("info", {}), b.get("info", {})
        if ia != ib:
            why = EXCLUSIONS["status / smaps_rollup / fault counts"]
            out.append(Diff(f"{at} status/faults", ia, ib, why, process=key, aspect="status/faults"))
    return out + _identity_diffs(pairs)


def _letter(tok: str) -> str | None:
    m = _LETTER.search(tok)
    return m.group(0)[1:] if m else None


def _unplaced(ra: dict[str, Any], rb: dict[str, Any]) -> bool:
    """A file or shmem region a kernel placed (one without guard pages that mremap moved): where
    it lies within its page table (which decides the fault-around window) is each kernel's
    choice. The tracer's regions start on a 2 MiB boundary, the scenario places the others."""
    if "unplaced" in ra and "unplaced" in rb:
        return bool(ra["filebacked"]) and bool(ra["unplaced"] or rb["unplaced"])
    return bool(ra["filebacked"]) and not (ra.get("guarded", True) and rb.get("guarded", True))


def _fault_around_slots(mo: dict[str, Any], lo: dict[str, Any]) -> set[tuple[str, int]]:
    """(region, page) slots some process has mapped on one side only without accessing them, in
    regions that moved; ("*", region) too, for the other regions: a file page's map count there
    may include a mapping fault-around made in this one (the same file mapped twice)."""
    slots = set()
    for key in set(mo) & set(lo):
        ra_all, rb_all = mo[key].get("regions", {}), lo[key].get("regions", {})
        for rk in set(ra_all) & set(rb_all):
            ra, rb = ra_all[rk], rb_all[rk]
            if not _unplaced(ra, rb):
                continue
            accessed = set(ra["accessed"]) | set(rb["accessed"])
            for i, (x, y) in enumerate(zip(ra["pages"], rb["pages"], strict=False)):
                if i not in accessed and (x == "-") != (y == "-"):
                    slots.update({(rk, i), ("*", rk)})
    return slots


def _compare_region(at: str, ra: dict[str, Any], rb: dict[str, Any], pfns: bool,
                    pairs: list[tuple[str, str, str, int]] | None = None,
                    around: frozenset[tuple[str, int]] | set[tuple[str, int]] = frozenset()) -> list[Diff]:
    """Differences of one region; page-identity letters go to `pairs` (checked per checkpoint)."""
    out: list[Diff] = []
    rk = at.rsplit(" ", 1)[-1]
    accessed = set(ra["accessed"]) | set(rb["accessed"])
    fault_around_pages: set[int] = set()
    if not pfns and "bits" in ra and "bits" in rb:  # no root on one side: what pagemap tells anyone
        ta, tb = list(ra["bits"]), list(rb["bits"])
    else:
        ta = [_norm_token(t, False, pfns) for t in ra["pages"]]
        tb = [_norm_token(t, False, pfns) for t in rb["pages"]]
    for i in range(max(len(ta), len(tb))):
        x = ta[i] if i < len(ta) else None
        y = tb[i] if i < len(tb) else None
        if x != y:
            excl = None
            if _unplaced(ra, rb) and i not in accessed and (x == "-" or y == "-"):
                excl = EXCLUSIONS[FAULT_AROUND]
                fault_around_pages.add(i)
            elif x and y and x[0] == y[0] == "F" and ((rk, i) in around or any(
                    k == "*" and other != rk for k, other in around)):
                excl = EXCLUSIONS[FAULT_AROUND]  # another process's fault-around mapped it too
                fault_around_pages.add(i)
            out.append(Diff(f"{at} p{i}", x, y, excl, pages=(i,), aspect="page"))
        elif pfns and pairs is not None and x not in (None, "-", "Z", "G"):
            la, lb = _letter(ra["pages"][i]), _letter(rb["pages"][i])
            if la and lb:
                pairs.append((f"{at} p{i}", la, lb, i))
    if pfns and ra["moved"] != rb["moved"]:
        idx = [i for i, (x, y) in enumerate(zip(ra["moved"], rb["moved"], strict=False)) if x != y]
        why = EXCLUSIONS[RECYCLED] if ra.get("recycled") or rb.get("recycled") else None
        if set(idx) <= set(ra.get("raced", ())) | set(rb.get("raced", ())):
            why = EXCLUSIONS[FORK_RACE]
        out.append(Diff(f"{at} new page since last checkpoint at p{idx}", [ra["moved"][i] for i in idx],
                        [rb["moved"][i] for i in idx], why, pages=tuple(idx), aspect="moved"))
    va, vb = ra["vmas"], rb["vmas"]
    if at.endswith(" heap") or "@" in at.rsplit(" ", 1)[-1]:
        why = EXCLUSIONS[HEAP_VMA if at.endswith(" heap") else CHUNK_VMA]
        if va != vb:
            out.append(Diff(f"{at} VMAs", [v["pages"] for v in va], [v["pages"] for v in vb], why, aspect="VMAs"))
        return out
    n = len(ra["pages"])
    # A VMA reaching past the region's own guard pages (or past the region, once it has none)
    # merged with a neighbour: where that lies is placement, so ranges are compared clipped.
    g = 1 if ra.get("guarded", True) and rb.get("guarded", True) else 0
    ca = [(max(v["pages"][0], -g), min(v["pages"][1], n + g)) for v in va]
    cb = [(max(v["pages"][0], -g), min(v["pages"][1], n + g)) for v in vb]
    if ca != cb:  # a moved region's VMAs follow the anon_vma it shares with what it merged into
        why = None if g else EXCLUSIONS[MERGED_VMA]
        out.append(Diff(f"{at} VMAs", [v["pages"] for v in va], [v["pages"] for v in vb], why, aspect="VMAs"))
        return out
    if [v["pages"] for v in va] != [v["pages"] for v in vb]:
        out.append(Diff(f"{at} VMAs", [v["pages"] for v in va], [v["pages"] for v in vb],
                        EXCLUSIONS[MERGED_VMA], aspect="VMAs"))
    for v, w in zip(va, vb, strict=True):
        vat = f"{at} vma{list(v['pages'])}"
        for f in ("perms", "vmflags", "thp_eligible"):
            if v.get(f) != w.get(f):
                out.append(Diff(f"{vat} {f}", v[f], w[f], _merged_flag(f, v, w, g), aspect=f,
                                vma=tuple(v["pages"])))
        lo, hi = v["pages"]
        excl = EXCLUSIONS[FAULT_AROUND] if any(lo <= i < hi for i in fault_around_pages) else None
        n = len(ra["pages"])
        if lo < 0 or hi > n or w["pages"][0] < 0 or w["pages"][1] > n:  # merged on either side
            excl = EXCLUSIONS[MERGED_VMA]
        for f in SMAPS_COMPARED:
            if v["smaps"].get(f, 0) != w["smaps"].get(f, 0):
                out.append(Diff(f"{vat} {f}", v["smaps"].get(f, 0), w["smaps"].get(f, 0), excl, aspect=f,
                                vma=tuple(v["pages"])))
    return out


def _merged_flag(field: str, v: dict[str, Any], w: dict[str, Any], guarded: int) -> str | None:
    """An unguarded (moved) region may have merged with a neighbour, whose anon_vma it then shares:
    that decides whether a later mprotect to read-only drops VM_ACCOUNT. A difference in "ac" alone
    is placement there, not behaviour."""
    if field != "vmflags" or guarded:
        return None
    a, b = set(str(v.get(field, "")).split()), set(str(w.get(field, "")).split())
    return EXCLUSIONS[MERGED_VMA] if a ^ b == {"ac"} else None


def counted(diffs: list[Diff]) -> list[Diff]:
    """The differences that are not excluded."""
    return [d for d in diffs if d.excluded is None]
