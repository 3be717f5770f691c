"""`cowscope trace` in the terminal: rich tables of what was copied, where, by which code, when."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from ..observe.events import COPY_KINDS
from ..report.plain import escaped
from .attribute import TraceSummary

_MIB = 1 << 20


def _mib(pages: int) -> str:
    return f"{pages * 4096 / _MIB:.1f}"


def _plain(text: str) -> str:
    """Process names and paths as plain text: markup escaped, control characters as escapes."""
    return escaped(text)


def render_summary(s: TraceSummary, console: Console, top: int = 10) -> None:
    """Totals, then top mappings, top code sites with causes, causes, and copies over time."""
    k = s.kinds
    console.print(f"[bold]{s.copies}[/] pages copied ({_mib(s.copies)} MiB): "
                  f"{k['cow-copy']} cow-copy, {k['zero-cow']} zero-cow, {k['file-copy']} file-copy; "
                  f"{k['cow-reuse']} reused without a copy, {k['zero-fill']} zero-filled")
    if s.by_side:
        console.print("paid by: " + ", ".join(f"{side} {n}" for side, n in s.by_side.most_common()))
    _processes(s, console)
    if s.copies:
        _counter_table(console, "Top mappings (copies)", "mapping", s.by_mapping, s.copies, top)
        _sites(s, console, top)
        _counter_table(console, "Causes (copies)", "cause", s.by_cause, s.copies, top)
        _timeline(s, console)
    lost = f"[bold red]{s.lost} events lost[/]" if s.lost else "no events lost"
    console.print(f"{lost}; {s.unattributed_allocs} user-page allocations outside any fault "
                  "(get_user_pages writes, e.g. /proc/PID/mem, are not faults)")
    for note in s.notes:
        console.print(f"note: {_plain(note)}")


def _processes(s: TraceSummary, console: Console) -> None:
    t = Table(title="Per process", title_justify="left")
    for col in ("pid", "comm", "side", "copies", "MiB", "reused", "zero-filled"):
        t.add_column(col, justify="right" if col not in ("comm", "side") else "left")
    rows = sorted(s.processes.values(), key=lambda p: -sum(p.kinds[k] for k in COPY_KINDS))
    for p in rows:
        copies = sum(p.kinds[k] for k in COPY_KINDS)
        t.add_row(str(p.pid), _plain(p.comm), p.side, str(copies), _mib(copies), str(p.kinds["cow-reuse"]),
                  str(p.kinds["zero-fill"]))
    console.print(t)


def _counter_table(console: Console, title: str, name: str, counter, total: int, top: int) -> None:
    t = Table(title=title, title_justify="left")
    t.add_column(name)
    t.add_column("copies", justify="right")
    t.add_column("%", justify="right")
    for key, n in counter.most_common(top):
        t.add_row(_plain(key), str(n), f"{100 * n / max(total, 1):.1f}")
    console.print(t)


def _sites(s: TraceSummary, console: Console, top: int) -> None:
    t = Table(title="Top code sites (the instruction that wrote)", title_justify="left")
    t.add_column("site")
    t.add_column("cause")
    t.add_column("copies", justify="right")
    for site, n in s.by_site.most_common(top):
        t.add_row(_plain(site), _plain(s.site_cause.get(site) or "-"), str(n))
    console.print(t)


def _timeline(s: TraceSummary, console: Console) -> None:
    seconds = sorted({sec for p in s.processes.values() for sec in p.timeline})
    if not seconds:
        return
    shown = seconds[:12]
    t = Table(title="Copies per second of the trace, per process", title_justify="left")
    t.add_column("pid")
    for sec in shown:
        t.add_column(f"{sec}s", justify="right")
    for p in s.processes.values():
        if p.timeline:
            t.add_row(str(p.pid), *(str(p.timeline.get(sec, "")) for sec in shown))
    console.print(t)
