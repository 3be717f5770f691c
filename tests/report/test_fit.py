"""Tables whose figures are never cut (report/fit.py), and the inspector's tables drawn with it: at
40, 60, 80 and 120 columns every line fits and every figure is whole; paths shortened from the left."""

from __future__ import annotations

import io
import re

import pytest
from rich.cells import cell_len
from rich.console import Console

from cowscope.inspect.figures import MappingFigures, ProcessFigures, Sample
from cowscope.inspect.render import COLUMNS, cell, sample_view
from cowscope.report.fit import FitTable, Key

LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"


def draw(renderable: object, width: int) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, highlight=False).print(renderable)
    return out.getvalue()


def sample() -> Sample:
    """A master and two workers with figures of every width, long names and long paths."""
    procs = []
    for i in range(3):
        maps = [MappingFigures(0x7F0000000000 + j * 0x100000, 0x7F0000080000 + j * 0x100000, "rw-p", path,
                               rss_kb=123456 + j, pss_kb=65432 + i, uss_kb=4321, swap_kb=0,
                               shared_with_parent_kb=98765 if i else None, sibling_shared_kb=1234,
                               copied_kb=5678 if i else None, new_kb=12, released_kb=4 if i else None,
                               copied_by_child_kb=5000 if i else None, copied_by_parent_kb=600 if i else None)
                for j, path in enumerate([LIBC, "", "/srv/app/venv/lib/python3.11/site-packages/numpy/core.so"])]
        procs.append(ProcessFigures(100 + i, 99 + i if i else 1, "gunicorn: worker [application:app]" if i else
                                    "gunicorn: master [application:app]", parent_in_tree=bool(i), exact=True,
                                    rss_kb=987654 + i, pss_kb=456789, uss_kb=34567, swap_kb=0,
                                    shared_with_parent_kb=876543 if i else None, sibling_shared_kb=4567,
                                    copied_kb=7654 if i else None, new_kb=321 if i else None,
                                    released_kb=8 if i else None, copied_by_child_kb=7000 if i else None,
                                    copied_by_parent_kb=654 if i else None, mappings=maps))
    return Sample(seq=0, ts=0.0, mode="exact", processes=procs)


@pytest.mark.parametrize("width", [40, 60, 80, 120])
def test_inspector_tables_fit_with_every_figure_whole(width: int) -> None:
    s = sample()
    out = draw(sample_view(s, mappings=3), width)
    assert [ln for ln in out.splitlines() if cell_len(ln) > width] == []
    assert not re.search(r"[\d%?]…|\d[kM]…", out), "a figure was cut"
    for p in s.processes:
        for c in COLUMNS:
            for part in cell(p, c).split():
                assert part in out, (p.pid, c, part)
            for m in p.mappings:
                for part in cell(m, c).split():
                    assert part in out, (m.path, c, part)
    assert "…/libc.so.6" in out or LIBC in out
    assert out.count("gunicorn: ") >= 3


def test_figures_split_into_parts_under_the_same_names() -> None:
    t = FitTable([Key("PID", justify="right"), Key("name", "end")], ["first figure", "second", "third"], "title",
                 "caption")
    t.add_row("12345", "a rather long process name", "1111111k", "2222222k", "3333333k")
    wide, narrow = draw(t, 120), draw(t, 40)
    assert wide.count("12345") == 1 and "a rather long process name" in wide
    assert narrow.count("12345") >= 2 and "title" in narrow.splitlines()[0]
    assert narrow.rstrip().endswith("caption")  # once, under the last part
    names = {ln.split("│")[1].strip() for ln in narrow.splitlines() if "12345" in ln}
    assert len(names) == 1 and next(iter(names)).endswith("…")  # cut at the end, the same in every part
    assert all(f in narrow for f in ("1111111k", "2222222k", "3333333k"))


def test_a_path_is_cut_from_the_left_and_a_row_needs_every_cell() -> None:
    t = FitTable([Key("mapping", "path")], ["RSS"])
    t.add_row(("7f0000000000 r-xp", LIBC), "660k")
    assert "7f0000000000 r-xp …/libc.so.6" in draw(t, 40) and LIBC in draw(t, 80)
    with pytest.raises(ValueError):
        t.add_row("only one cell")
