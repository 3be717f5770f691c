"""`cowscope run`: the example scenarios and the README's read well at 60, 80 and 120 columns and
piped (every smaps figure of the scenario's regions whole in its row); scenario errors name file
and line."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from cowscope.model import Machine
from cowscope.report.runview import RunView, print_run
from cowscope.scenario import ScenarioRun, run_scenario

from .helpers import ROOT, colours, cowscope, in_terminal, without_escapes

#: A checkpoint of scenarios/prefork_server.py fits in two screens of 24 lines at 80 columns.
PREFORK_LINES = 48


def readme_scenario(tmp_path: Path) -> Path:
    """The scenario of README.md, as a file."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    path = tmp_path / "readme_scenario.py"
    path.write_text(next(b for b in blocks if "def scenario(m):" in b), encoding="utf-8")
    return path


def scenarios(tmp_path: Path) -> list[Path]:
    return sorted((ROOT / "scenarios").glob("*.py")) + [readme_scenario(tmp_path)]


def regions(run: ScenarioRun) -> list[list[tuple[int, object]]]:
    """Per checkpoint, (pid, mapping) of the scenario's own mappings: the heap, the stack, and
    every mapping that was not in the image its process (or the ancestor it was forked from) had
    when spawned."""
    out = []
    for snap in run.snapshots:
        ppid = {p.pid: p.ppid for p in snap.processes}
        found = []
        for p in snap.processes:
            pid = p.pid
            while pid not in run.images and pid in ppid:
                pid = ppid[pid]
            image = run.images.get(pid, frozenset())
            found += [(p.pid, m) for m in p.mappings if m.vma.path in ("[heap]", "[stack]")
                      or (m.vma.start, m.vma.end, m.vma.perms, m.vma.path) not in image]
        out.append(found)
    return out


def checkpoint_sections(out: str) -> list[list[str]]:
    """The lines of each checkpoint, its rule line first."""
    sections: list[list[str]] = []
    for line in out.splitlines():
        if re.search(r"─ checkpoint \d+/\d+: ", line):
            sections.append([])
        if sections:
            sections[-1].append(line)
    return sections


def row_figures(lines: list[str], pid: int, start: int, perms: str) -> list[str]:
    """The five figures of a mapping's row in the lines of process `pid`."""
    first = next(i for i, ln in enumerate(lines) if ln.startswith(f"{pid} "))
    i = next(i for i in range(first + 1, len(lines)) if lines[i].startswith(f"  {start:x} {perms} "))
    figs = lines[i].split()[3:8]
    return figs if len(figs) == 5 and all(f.isdigit() for f in figs) else lines[i + 1].split()[:5]


def smaps_figures(m: object) -> list[str]:
    s = m.smaps  # type: ignore[attr-defined]
    return [str(s["Size"]), str(s["Rss"]), str(s["Pss"]), str(s["Private_Clean"] + s["Private_Dirty"]),
            str(s["Shared_Clean"] + s["Shared_Dirty"])]


def check_output(out: str, run: ScenarioRun, width: int) -> None:
    """Every line fits (the scenario's own prints before the legend aside); every region of every
    checkpoint has its smaps figures in its row."""
    ours = out[out.index(". not present"):]
    assert [ln for ln in ours.splitlines() if cell_len(ln) > width] == []
    sections = checkpoint_sections(out)
    assert len(sections) == len(run.snapshots)
    for lines, found in zip(sections, regions(run), strict=True):
        assert found
        for pid, m in found:
            assert row_figures(lines, pid, m.vma.start, m.vma.perms) == smaps_figures(m), (pid, m.vma)


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_examples_show_every_figure_of_their_regions(tmp_path, width: int) -> None:
    for path in scenarios(tmp_path):
        run = run_scenario(path, Machine(), source="model")
        buf = io.StringIO()
        console = Console(file=buf, width=width, force_terminal=True, color_system=None, highlight=False)
        print_run(console, run.snapshots, run.outcome, RunView(images=run.images))
        check_output(buf.getvalue(), run, width)


def test_piped_output_is_80_columns_of_plain_text(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    for path in scenarios(tmp_path):
        r = subprocess.run([sys.executable, "-m", "cowscope", "run", str(path)], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{path}: {r.stderr}"
        assert "\x1b[" not in r.stdout
        run = run_scenario(path, Machine(), source="model")
        check_output(r.stdout, run, 80)
        if path.name == "prefork_server.py":
            sizes = [len(s) for s in checkpoint_sections(r.stdout)]
            assert max(sizes) <= PREFORK_LINES, sizes


@pytest.mark.parametrize("columns", [40, 60, 80, 120])
def test_in_a_terminal_in_colour_and_with_no_color(columns: int) -> None:
    """On a terminal of that width: every line fits and every figure is in its row, coloured strips;
    with NO_COLOR the same text without a colour (bold and dim stay)."""
    path = ROOT / "scenarios" / "prefork_server.py"
    run = run_scenario(path, Machine(), source="model")
    coloured = in_terminal("run", str(path), columns=columns)
    assert colours(coloured), "strips are coloured on a terminal"
    check_output(without_escapes(coloured), run, columns)
    bare = in_terminal("run", str(path), columns=columns, env={"NO_COLOR": "1"})
    assert colours(bare) == [] and "\x1b[" in bare
    assert without_escapes(bare) == without_escapes(coloured)


def test_the_readme_shows_a_real_run(tmp_path) -> None:
    """The README's example output is what `cowscope run` prints for its scenario, piped (80 columns)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    shown = next(b for b in re.findall(r"```text\n(.*?)```", text, re.S) if "checkpoint 2/2" in b)
    r = cowscope("run", str(readme_scenario(tmp_path)), "--changes")
    assert r.returncode == 0, r.stderr
    printed = "\n".join(ln.rstrip() for ln in r.stdout.splitlines())
    assert "\n".join(ln.rstrip() for ln in shown.strip("\n").splitlines()) in printed


def test_all_mappings_and_changes(tmp_path) -> None:
    path = ROOT / "scenarios" / "fork_basics.py"
    folded = cowscope("run", str(path)).stdout
    r = cowscope("run", str(path), "--all-mappings", "--changes")
    assert r.returncode == 0, r.stderr
    assert "libc.so.6" in r.stdout and "no page moved" not in r.stdout and "no page moved" in folded
    assert "changes since the previous checkpoint" in r.stdout
    assert re.search(r"\n +1001 \w+ \[heap\] +p\d+ +2 → # +cow-copy\n", r.stdout)  # the child's write


def test_run_reports_scenario_errors_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def scenario(m):\n    p = m.spawn()\n    p.write(0, b'x')\n    x = 1\n    return x.nope\n")
    r = cowscope("run", str(bad))
    # the segfault is an outcome of the simulated process, not a scenario bug: shown with the
    # views, and exit status 1 with the line on stderr (the scenario did not catch it)
    assert r.returncode == 1
    assert "SIGSEGV" in r.stdout and "Traceback" not in r.stdout + r.stderr
    assert f"scenario stopped: {bad}:3: Segfault" in r.stderr
    bad.write_text("def scenario(m):\n    p = m.spawn()\n    p.nope()\n")
    r = cowscope("run", str(bad))
    assert r.returncode == 2 and f"{bad}:3:" in r.stderr and "AttributeError" in r.stderr
    assert "Traceback" not in r.stderr
    bad.write_text("def scenario(m):\n    p = (\n")
    r = cowscope("run", str(bad))
    assert r.returncode == 2 and f"{bad}:2: syntax error" in r.stderr
    bad.write_text("x = 1\n")
    r = cowscope("run", str(bad))
    assert r.returncode == 2 and "no function `def scenario(m):`" in r.stderr
    r = cowscope("run", str(ROOT / "scenarios" / "fork_basics.py"), "--width", "0")
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr
