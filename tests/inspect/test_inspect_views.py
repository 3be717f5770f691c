"""What the views say about real processes: titles, exits, the one trend scale, which mapping is drawn."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys

import pytest
from forktree import TreePlan, WorkerPlan
from rich.console import Console

from cowscope.cli.main import main
from cowscope.inspect.recording import write_sample
from cowscope.inspect.render import page_picture, sample_view, sparkline
from cowscope.inspect.sample import Sampler
from cowscope.inspect.tree import process_title

pytestmark = pytest.mark.kernel

PLAN = TreePlan(touched=16, tail=0, master_rewrites=0, workers=[WorkerPlan(copies=2), WorkerPlan(copies=1)])

#: A process that rewrites its command line as setproctitle does (argv area overwritten through
#: /proc/self/mem, needs root), then waits.
RETITLE = r"""
import os, sys, time
f = open("/proc/self/stat", "rb").read()
fields = f.rpartition(b")")[2].split()
arg_start, arg_end = int(fields[45]), int(fields[46])
title = sys.argv[1].encode()
with open("/proc/self/mem", "r+b", buffering=0) as mem:
    mem.seek(arg_start)
    mem.write(title.ljust(arg_end - arg_start, b"\0")[:arg_end - arg_start - 1] + b"\0")
print("ready", flush=True)
time.sleep(60)
"""


def render(renderable: object) -> str:
    """A renderable as plain text, 200 columns wide."""
    out = io.StringIO()
    Console(file=out, width=200, no_color=True).print(renderable)
    return out.getvalue()


def test_process_title_is_a_rewritten_command_line() -> None:
    assert process_title(["redis-rdb-bgsave 127.0.0.1:6379"]) == "redis-rdb-bgsave 127.0.0.1:6379"
    assert process_title(["gunicorn: worker [app:app]"]) == "gunicorn: worker [app:app]"
    assert process_title(["/usr/bin/python3", "-m", "http.server", "8000"]) is None
    assert process_title([]) is None


def test_a_title_set_on_the_command_line_names_the_process(capsys) -> None:
    title = "[red]cowscope-test: worker [app:app]"
    proc = subprocess.Popen([sys.executable, "-c", RETITLE, title, "x" * 60], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        s = Sampler([proc.pid], mode="summary").sample()
        assert s.processes[0].title == title and s.processes[0].name.startswith("python")
        assert main(["inspect", str(proc.pid), "--json"]) == 0
        obj = json.loads(capsys.readouterr().out)
        assert (obj["title"], obj["name"]) == (title, s.processes[0].name)
        assert main(["inspect", str(proc.pid)]) == 0
        assert title in capsys.readouterr().out  # brackets and all: printed as plain text
    finally:
        proc.kill()
        proc.wait()


def test_a_worker_that_exits_is_reported_with_when(make_tree) -> None:
    t = make_tree(PLAN)
    sampler = Sampler([t.master], tree=True, mode="exact")
    first = sampler.sample()
    gone = t.workers[1]
    os.kill(gone, signal.SIGKILL)
    # The master does not reap it: a zombie has no memory any more, and counts as exited.
    second = sampler.sample()
    assert [e.pid for e in second.exited] == [gone]
    e = second.exited[0]
    assert e.ppid == t.master and e.last_seen_ts == first.ts and e.gone_by_ts == second.ts
    text = render(sample_view(second, first))
    assert f"pid {gone} (" in text and "exited between" in text
    out = io.StringIO()
    write_sample(out, second, tree=False)
    exits = [json.loads(ln) for ln in out.getvalue().splitlines() if '"exit"' in ln]
    assert exits == [e.to_dict(second.seq)] and exits[0]["pid"] == gone
    assert sampler.sample().exited == []  # said once


def test_trend_lines_share_one_scale() -> None:
    top = 100 * 1024  # 100 MiB
    # A 4 kB change on a 100 MiB scale is no change at all; a halving is half the height.
    assert sparkline([top, top - 4], top) == "██"
    assert sparkline([top, top // 2, 0], top) == "█▅▁"
    assert sparkline([2 * top], top) == "█"


def test_watch_trend_is_drawn_against_the_parents_resident(make_tree, capsys) -> None:
    t = make_tree(PLAN)
    assert main(["inspect", "--tree", str(t.master), "--watch", "0.05", "--count", "2", "--max-duty", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"sharing trend *\n.*\(0-\d", out)  # the scale under the header


def test_pages_lists_every_matching_mapping_and_picks_by_perms(make_tree) -> None:
    t = make_tree(PLAN)
    s = Sampler([t.master], tree=True, mode="exact", states=True).sample()
    libc = [m for m in s.process(t.master).mappings if m.path.endswith("/libc.so.6")]
    assert len(libc) > 1
    text = render(page_picture(s, "libc.so.6")[0])
    assert f"{len(libc)} mappings match 'libc.so.6'" in text and "NAME:PERMS" in text
    for m in libc:
        assert f"{m.start:x}-{m.end:x} {m.perms}" in text
    rw = [m for m in libc if m.perms.startswith("rw")]
    assert len(rw) == 1
    text = render(page_picture(s, "libc.so.6:rw")[0])
    assert "mappings match" not in text
    assert f"mapping {rw[0].start:x}-{rw[0].end:x} rw-p {rw[0].path}" in text
    heads = [ln for ln in text.splitlines() if ln.startswith("mapping ")]
    assert len(heads) == 1
