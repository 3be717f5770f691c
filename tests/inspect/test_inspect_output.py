"""JSON lines, recordings and --compare, --watch with the duty-cycle limit, commands, Prometheus."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from forktree import PAGE, TreePlan, WorkerPlan
from prometheus_client.parser import text_string_to_metric_families

from cowscope.cli.main import main
from cowscope.inspect.metrics import serve
from cowscope.inspect.recording import MAPPING_KEYS, PROCESS_KEYS, copied_by_mapping, load_recording
from cowscope.inspect.run import DutyCycle
from cowscope.inspect.sample import Sampler

pytestmark = pytest.mark.kernel
KB = PAGE // 1024
PLAN = TreePlan(touched=48, tail=16, master_rewrites=2, workers=[
    WorkerPlan(copy_from=10, copies=6, new_in_r=3), WorkerPlan(copy_from=30, copies=4)])

INT_OR_NULL = (int, type(None))


def validate_process(obj: dict) -> None:
    """Check one JSON-lines process object against the documented schema."""
    assert tuple(obj) == PROCESS_KEYS
    assert obj["type"] == "process"
    assert isinstance(obj["ts"], float) and isinstance(obj["seq"], int)
    assert isinstance(obj["pid"], int) and isinstance(obj["ppid"], int) and isinstance(obj["name"], str)
    assert isinstance(obj["parent_in_tree"], bool) and isinstance(obj["exact"], bool)
    for k in ("rss_kb", "pss_kb", "uss_kb", "swap_kb"):
        assert isinstance(obj[k], int) and obj[k] >= 0
    for k in ("zero_kb", "shared_with_parent_kb", "sibling_shared_kb", "copied_kb", "new_kb",
              "shared_in_tree_kb"):
        assert isinstance(obj[k], INT_OR_NULL)
        if obj["parent_in_tree"] and k != "zero_kb":
            assert isinstance(obj[k], int)
            assert obj[k] == sum(m[k] for m in obj["mappings"]), k
        elif k in ("shared_with_parent_kb", "sibling_shared_kb", "copied_kb", "new_kb"):
            assert obj[k] is None
    for m in obj["mappings"]:
        assert tuple(m) == MAPPING_KEYS
        assert int(m["start"], 16) < int(m["end"], 16) and len(m["perms"]) == 4
        for k in MAPPING_KEYS[4:]:
            assert isinstance(m[k], INT_OR_NULL)


def r_mapping(obj: dict, addr: int) -> dict:
    """The JSON mapping object containing addr."""
    return next(m for m in obj["mappings"] if int(m["start"], 16) <= addr < int(m["end"], 16))


def test_json_lines_follow_the_schema_and_carry_the_figures(make_tree, capsys) -> None:
    t = make_tree(PLAN)
    assert main(["inspect", "--tree", str(t.master), "--json"]) == 0
    objs = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [o["pid"] for o in objs] == [t.master, *t.workers]
    for o in objs:
        validate_process(o)
    w0 = r_mapping(objs[1], t.r_addr)
    assert (w0["copied_kb"], w0["new_kb"], w0["sibling_shared_kb"], w0["shared_with_parent_kb"]) == (
        6 * KB, 3 * KB, 2 * KB, (48 - 2 - 6) * KB)
    assert objs[1]["ppid"] == t.master and objs[0]["parent_in_tree"] is False


def test_save_and_compare(make_tree, tmp_path, capsys) -> None:
    t = make_tree(PLAN)
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert main(["inspect", "--tree", str(t.master), "--save", str(a)]) == 0
    assert main(["inspect", str(t.master), str(t.workers[0]), "--save", str(b)]) == 0
    capsys.readouterr()
    ra, rb = load_recording(a), load_recording(b)
    assert ra.header["schema"] == 1 and ra.trees[0]["processes"] == 3 and rb.trees[0]["processes"] == 2
    for objs in ra.processes.values():
        for o in objs:
            validate_process(o)
    assert main(["inspect", "--compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "average worker copied" in out and "really used" in out and "average worker copied in" in out
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"type": "process"}\n')
    assert main(["inspect", "--compare", str(a), str(bad)]) == 2
    assert "not a cowscope recording" in capsys.readouterr().err


def test_watch_reports_samples_skipped_by_the_duty_cycle(make_tree, capsys) -> None:
    t = make_tree(PLAN)
    # A tiny duty cycle: after the first read, the next ticks come too soon and are skipped.
    rc = main(["inspect", "--tree", str(t.master), "--json", "--watch", "0.05", "--count", "3",
               "--max-duty", "0.001"])
    assert rc == 0
    out = capsys.readouterr()
    seqs = {json.loads(ln)["seq"] for ln in out.out.splitlines()}
    assert seqs == {0}
    assert out.err.count("sample skipped") == 2 and "duty-cycle" in out.err
    rc = main(["inspect", "--tree", str(t.master), "--json", "--watch", "0.05", "--count", "3",
               "--max-duty", "1"])
    assert rc == 0
    assert {json.loads(ln)["seq"] for ln in capsys.readouterr().out.splitlines()} == {0, 1, 2}


def test_command_is_started_and_followed(tmp_path, capsys) -> None:
    script = ("import os, time\n"
              "pid = os.fork()\n"
              "time.sleep(30)\n")
    rc = main(["inspect", "--json", "--watch", "0.25", "--count", "8", "--max-duty", "1", "--",
               sys.executable, "-c", script])
    out = capsys.readouterr()
    objs = [json.loads(ln) for ln in out.out.splitlines()]
    assert rc == 0, out.err
    last = [o for o in objs if o["seq"] == max(o["seq"] for o in objs)]
    assert len(last) == 2
    root, child = sorted(last, key=lambda o: o["ppid"] == last[0]["pid"])
    assert child["ppid"] == root["pid"] and child["parent_in_tree"]
    assert "stopped the command" in out.err


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, str], float]:
    """Scrape /metrics over loopback: {(sample name, pid label): value}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, s.labels.get("pid", ""))] = s.value
    return out


def test_prometheus_endpoint_scraped_over_loopback(make_tree) -> None:
    t = make_tree(PLAN)
    sampler = Sampler([t.master], tree=True)
    server, _thread, collector = serve(sampler, free_port(), "127.0.0.1", DutyCycle(1.0))
    try:
        m = scrape(server.server_address[1])
    finally:
        server.shutdown()
    s = collector.last
    assert s is not None
    for p in s.processes:
        assert m[("cowscope_process_rss_bytes", str(p.pid))] == p.rss_kb * 1024
        assert m[("cowscope_process_uss_bytes", str(p.pid))] == p.uss_kb * 1024
    w = s.process(t.workers[1])
    assert m[("cowscope_process_copied_bytes", str(w.pid))] == w.copied_kb * 1024
    assert ("cowscope_process_copied_bytes", str(t.master)) not in m
    assert m[("cowscope_tree_unique_bytes", "")] == s.totals.unique_kb * 1024
    assert m[("cowscope_tree_processes", "")] == 3 and m[("cowscope_exact", "")] == 1


def test_export_command_serves_metrics(make_tree) -> None:
    t = make_tree(PLAN)
    port = free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "cowscope")
    proc = subprocess.Popen([exe, "export", "--port", str(port), "--tree", str(t.master)],
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
        assert "serving 3 processes" in line, line
        deadline = time.monotonic() + 20
        while True:
            try:
                m = scrape(port)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert m[("cowscope_process_rss_bytes", str(t.workers[0]))] > 0
        assert m[("cowscope_processes_missed", "")] == 0
    finally:
        proc.terminate()
        proc.wait(10)


def test_command_that_ends_stops_the_watch(capsys) -> None:
    rc = main(["inspect", "--json", "--watch", "0.1", "--max-duty", "1", "--",
               sys.executable, "-c", "import time; time.sleep(0.8)"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "command exited with status 0" in out.err
    assert len({json.loads(ln)["seq"] for ln in out.out.splitlines()}) >= 2


def test_table_and_page_picture(make_tree, capsys) -> None:
    t = make_tree(PLAN)
    assert main(["inspect", "--tree", str(t.master), "--pages", f"{t.r_addr + 5 * PAGE:x}", "--width", "64",
                 "--mappings", "2"]) == 0
    out = capsys.readouterr().out
    rows = {int(ln.split()[0]): ln.split()[2] for ln in out.splitlines()
            if ln.strip() and ln.split()[0].isdigit() and len(ln.split()) == 3}
    # One cell per page: 48 touched, 16 untouched; the master rewrote 2, workers copied 6 and 4.
    assert rows[t.master] == "##" + "=" * 46 + "." * 16
    assert rows[t.workers[0]] == "~~" + "=" * 8 + "c" * 6 + "=" * 32 + "+" * 3 + "." * 13
    assert rows[t.workers[1]] == "~~" + "=" * 28 + "c" * 4 + "=" * 14 + "." * 16
    # Under each row, the model's page states: map counts 2 and 3, private pages, not present.
    lines = out.splitlines()
    row = next(i for i, ln in enumerate(lines) if ln.split()[:1] == [str(t.workers[0])] and len(ln.split()) == 3)
    below = lines[row + 1].split()
    assert below == ["22" + "3" * 8 + "#" * 6 + "3" * 14 + "2" * 4 + "3" * 14 + "#" * 3 + "." * 13]
    assert "really used (each frame once)" in out and "mappings by rss" in out and "mappings by copied" in out
    assert "shared w/ parent" in out and "in tree" in out


def test_watch_view_without_terminal_prints_changes_and_trends(make_tree, capsys) -> None:
    t = make_tree(PLAN)
    assert main(["inspect", "--tree", str(t.master), "--watch", "0.05", "--count", "3", "--max-duty", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("really used (each frame once)") == 3 and "Δ shared" in out and "sharing trend" in out
    last_rows = [ln for ln in out.splitlines() if ln.split()[:1] == [str(t.workers[1])]][-1]
    # The tree does not change: no change since start, a flat trend of three samples; the worker
    # shares nearly all of its parent's resident memory, the top of the one scale.
    assert "±0" in last_rows and "███" in last_rows


def test_copied_by_mapping_averages_over_workers() -> None:
    workers = [{"mappings": [{"path": "", "copied_kb": 40}, {"path": "[heap]", "copied_kb": 8}]},
               {"mappings": [{"path": "", "copied_kb": 0}, {"path": "", "copied_kb": 20}]}]
    assert copied_by_mapping(workers) == {"[anon]": 30, "[heap]": 4}
    assert copied_by_mapping([]) == {}


HOSTILE_PROCESS = r"""
import ctypes, mmap, sys, time
ctypes.CDLL(None).prctl(15, b"[/]\x1b[2J[red]x", 0, 0, 0)   # PR_SET_NAME
f = open(sys.argv[1], "wb+")
f.write(b"x" * 4096)
f.flush()
m = mmap.mmap(f.fileno(), 4096)
m[0]
print("ready", flush=True)
time.sleep(60)
"""


def test_hostile_names_and_paths_are_printed_plainly(tmp_path, capsys) -> None:
    """A process named `[/]<ESC>[2J[red]x` mapping a file `x[/]y<ESC>[2J`: inspect shows both as text,
    the `[heap]` label included, and sends no escape sequence to the terminal."""
    import shutil
    import tempfile

    top = tempfile.mkdtemp(dir="/tmp", prefix="cs")  # short: the mapping column is 60 wide
    try:
        os.mkdir(os.path.join(top, "x["))
        path = os.path.join(top, "x[/]y\x1b[2J")
        proc = subprocess.Popen([sys.executable, "-c", HOSTILE_PROCESS, path], stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
            rc = main(["inspect", str(proc.pid), "--mappings", "100", "--pages", "[heap]"])
            out = capsys.readouterr().out
        finally:
            proc.kill()
            proc.wait()
    finally:
        shutil.rmtree(top)
    assert rc == 0
    assert "[/]\\x1b[2J[red]x" in out and "x[/]y\\x1b[2J" in out and "[heap]" in out
    assert "\x1b" not in out


GROWS_AFTER_FORK = """
import mmap, os, sys, time
def filled(n, byte):
    m = mmap.mmap(-1, n, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.write(byte * n)
    return m
a = filled(16 << 20, b"a")
time.sleep(0.8)
if os.fork() == 0:
    time.sleep(30)
    os._exit(0)
b = filled(48 << 20, b"b")   # the parent grows by 48 MiB after its fork
time.sleep(30)
"""


def test_command_is_reported_from_its_first_fork(tmp_path, capsys) -> None:
    """`inspect -- COMMAND` reads the command until it forks: the parent's resident memory at the fork
    is known (not only at the first sample), and the child's history starts at its fork."""
    rec = tmp_path / "run.jsonl"
    rc = main(["inspect", "--save", str(rec), "--watch", "0.3", "--count", "8", "--max-duty", "1", "--",
               sys.executable, "-c", GROWS_AFTER_FORK])
    out = capsys.readouterr()
    assert rc == 0, out.err
    r = load_recording(rec)
    last = r.trees[r.last_seq()]
    at_fork, now = last["parent_rss_at_fork_kb"], last["parent_rss_kb"]
    assert at_fork is not None and 16 * 1024 < at_fork < now - 40 * 1024
    assert 0 <= last["at_fork_read_age_s"] < 0.5
    child = next(o for o in r.processes[r.last_seq()] if o["parent_in_tree"])
    assert child["history"] == "fork"
    assert "at the first fork" in out.out


@pytest.mark.parametrize("columns", ["60", "80", "120"])
def test_every_figure_whole_at_the_terminal_width(make_tree, capsys, monkeypatch, columns: str) -> None:
    """Piped (80 columns) or as wide as COLUMNS says: no line longer, no figure cut to '…' (the
    tables come in parts under one another when they must), every process in every part."""
    import re

    from rich.cells import cell_len

    t = make_tree(PLAN)
    monkeypatch.setenv("COLUMNS", columns)
    assert main(["inspect", "--tree", str(t.master), "--mappings", "3", "--kinds"]) == 0
    out = capsys.readouterr().out
    assert "\x1b[" not in out
    assert [ln for ln in out.splitlines() if cell_len(ln) > int(columns)] == []
    assert not re.search(r"[\d%?]…|\d[kM]…", out)
    rows = [ln.split()[0] for ln in out.splitlines() if ln.split()[:1] and ln.split()[0].isdigit()]
    parts = rows.count(str(t.master))
    assert parts >= 1 and all(rows.count(str(w)) == parts for w in t.workers)
