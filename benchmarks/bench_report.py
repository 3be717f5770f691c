"""Benchmark the HTML report for one large mapping: file size, write time, open time in headless Chromium.

Scenario (synthetic Snapshots, the same shapes every backend produces): a parent fills an anonymous
mapping of N pages (one zero-fill event per page), forks, and the child writes to a random fraction
of the pages (one cow-copy event each), three checkpoints. Open time is measured in a fresh
Chromium profile each run, from navigation to the report's ready flag (page maps, tree, event log
and the plotly timeline all drawn).

    .venv/bin/python benchmarks/bench_report.py [--pages 262144] [--write-fraction 0.5] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from cowscope.observe.pages import PRIVATE, SHARED, PageStates
from cowscope.observe.records import PAGE_SIZE, MapsEntry, SmapsEntry, SmapsRollup
from cowscope.observe.snapshot import MappingView, ProcessView, Snapshot
from cowscope.report.browser import Browser, find_chromium
from cowscope.report.html import write_report

BASE = 0x7F0000000000


def _view(pid: int, ppid: int, name: str, state: np.ndarray, mc: np.ndarray, pfn: np.ndarray) -> ProcessView:
    n = len(state)
    vma = MapsEntry(BASE, BASE + n * PAGE_SIZE, "rw-p")
    priv = int(np.sum(state == PRIVATE)) * 4
    shared = int(np.sum(state == SHARED)) * 4
    pss = priv + int(np.sum(np.where(state == SHARED, 4 / np.maximum(mc, 1), 0)))
    fields = {"Size": n * 4, "Rss": priv + shared, "Pss": pss, "Private_Dirty": priv, "Shared_Dirty": shared,
              "Anonymous": priv + shared}
    m = MappingView(vma, SmapsEntry(vma, dict(fields)), PageStates(state, mc, pfn))
    return ProcessView(pid, ppid, name, None, SmapsRollup(vma.start, vma.end, dict(fields)), [m])


def scenario(npages: int, write_fraction: float, seed: int = 1) -> list[Snapshot]:
    """Fill, fork, child writes a random fraction: three snapshots with their events."""
    rng = np.random.default_rng(seed)
    pfn = np.arange(0x10000, 0x10000 + npages, dtype=np.int64)
    ev = SimpleNamespace
    fill = [ev(seq=i, pid=100, kind="zero-fill", address=BASE + i * PAGE_SIZE, old_pfn=None,
               new_pfn=int(pfn[i]), detail="") for i in range(npages)]
    priv = np.full(npages, PRIVATE, dtype=np.uint8)
    one = np.ones(npages, dtype=np.int64)
    s1 = Snapshot("filled", "model", time.time(), [_view(100, 1, "parent", priv, one, pfn)], fill)
    shared = np.full(npages, SHARED, dtype=np.uint8)
    two = np.full(npages, 2, dtype=np.int64)
    s2 = Snapshot("forked", "model", time.time(),
                  [_view(100, 1, "parent", shared, two, pfn), _view(101, 100, "child", shared, two, pfn)],
                  [ev(seq=npages, pid=100, kind="fork", address=None, old_pfn=None, new_pfn=None,
                      detail="101")])
    written = np.sort(rng.choice(npages, int(npages * write_fraction), replace=False))
    st = shared.copy()
    st[written] = PRIVATE
    mc = two.copy()
    mc[written] = 1
    cpfn = pfn.copy()
    cpfn[written] = 0x100000 + np.arange(len(written))
    copies = [ev(seq=npages + 1 + k, pid=101, kind="cow-copy", address=BASE + int(i) * PAGE_SIZE + 8,
                 old_pfn=int(pfn[i]), new_pfn=int(cpfn[i]), detail="write 8 bytes")
              for k, i in enumerate(written)]
    s3 = Snapshot("child wrote", "model", time.time(),
                  [_view(100, 1, "parent", st, mc, pfn), _view(101, 100, "child", st, mc, cpfn)], copies)
    return [s1, s2, s3]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=262144)
    ap.add_argument("--write-fraction", type=float, default=0.5)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=None, help="keep the report here (default: a temp file)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    snaps = scenario(args.pages, args.write_fraction)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="cowscope-bench-")) / "report.html"
    t0 = time.perf_counter()
    write_report(out, snaps, title=f"bench: {args.pages} pages")
    write_s = time.perf_counter() - t0
    size = out.stat().st_size
    res: dict[str, object] = {"pages": args.pages, "events": sum(len(s.events) for s in snaps),
                              "size_bytes": size, "size_mb": round(size / 1e6, 3),
                              "write_s": round(write_s, 3)}
    if find_chromium() is None:
        res["open_s"] = None
        res["note"] = "chromium not installed: open time not measured"
    else:
        wall, page, maps = [], [], []
        for _ in range(args.runs):
            with Browser() as b:  # fresh profile each run: no code cache carried over
                wall.append(b.open(out.resolve().as_uri(), "window.cowscopeReport && cowscopeReport.ready"))
                page.append(b.evaluate("cowscopeReport.openMs") / 1000)
                maps.append(b.evaluate("performance.timeOrigin ? cowscopeReport.timings.drawn : null"))
                errors = b.console_errors + b.evaluate("cowscopeReport.errors")
                if errors:
                    res["errors"] = errors
        res.update({"open_s_wall_median": round(statistics.median(wall), 3),
                    "open_s_wall_max": round(max(wall), 3),
                    "open_s_in_page_median": round(statistics.median(page), 3),
                    "page_maps_drawn_ms_after_script_start_median": statistics.median(maps)})
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:>45}: {v}")
    ok = size < 5_000_000 and (res.get("open_s_wall_max") is None or float(res["open_s_wall_max"]) < 3.0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
