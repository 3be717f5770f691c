"""`cowscope export`: pid files, a root label per tree, a gone root leaves its tree metrics out,
recycled workers are followed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cowscope.cli.export import roots_of
from cowscope.inspect.metrics import serve
from cowscope.inspect.run import DutyCycle
from cowscope.inspect.sample import Sampler

pytestmark = pytest.mark.kernel

#: A master that forks two workers and, on SIGUSR1, replaces the first one (as gunicorn's
#: max_requests recycling does); it prints its workers' pids after each change.
RECYCLING = textwrap.dedent("""
    import os, signal, sys, time
    def worker():
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGUSR1, signal.SIG_DFL)
            time.sleep(120)
            os._exit(0)
        return pid
    kids = [worker(), worker()]
    def recycle(*_):
        os.kill(kids[0], signal.SIGKILL)
        os.waitpid(kids[0], 0)
        kids[0] = worker()
        print(*kids, flush=True)
    signal.signal(signal.SIGUSR1, recycle)
    print(*kids, flush=True)
    end = time.time() + 120
    while time.time() < end:
        time.sleep(0.1)
""")


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metrics_text(port: int) -> str:
    """One scrape of /metrics over loopback."""
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every scraped sample."""
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def start(script: str, *args: str) -> tuple[subprocess.Popen[str], list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, [int(x) for x in proc.stdout.readline().split()]


def test_pidfiles_and_pids_are_trees_with_their_own_root_label(tmp_path) -> None:
    a, a_kids = start(RECYCLING)
    b, b_kids = start(RECYCLING)
    try:
        pidfile = tmp_path / "web.pid"
        pidfile.write_text(f"{a.pid}\n")
        stale = tmp_path / "stale.pid"
        stale.write_text("junk")
        roots = roots_of([b.pid], [f"web={pidfile}", str(stale)])
        server, _t, _c = serve(Sampler([b.pid], tree=True), free_port(), "127.0.0.1", DutyCycle(1.0), roots)
        try:
            text = metrics_text(server.server_address[1])
        finally:
            server.shutdown()
    finally:
        for p in (a, b):
            p.kill()
            p.wait()
    got = samples(text)
    rss = {lab["pid"]: lab["root"] for name, lab, _ in got if name == "cowscope_process_rss_bytes"}
    assert rss == {**{str(p): "web" for p in [a.pid, *a_kids]}, **{str(p): str(b.pid) for p in [b.pid, *b_kids]}}
    up = {lab["root"]: v for name, lab, v in got if name == "cowscope_tree_up"}
    assert up == {"web": 1, str(b.pid): 1, str(stale): 0}
    parents = {lab["root"] for name, lab, _ in got if name == "cowscope_tree_parent_rss_bytes"}
    assert parents == {"web", str(b.pid)}


def test_a_gone_root_leaves_its_tree_metrics_out() -> None:
    proc, kids = start(RECYCLING)
    sampler = Sampler([proc.pid], tree=True)
    server, _t, _c = serve(sampler, free_port(), "127.0.0.1", DutyCycle(1.0))
    try:
        port = server.server_address[1]
        assert any(n == "cowscope_tree_rss_sum_bytes" for n, _, _ in samples(metrics_text(port)))
        proc.kill()
        proc.wait()
        for k in kids:
            os.kill(k, signal.SIGKILL)
        time.sleep(0.2)
        got = samples(metrics_text(port))
    finally:
        server.shutdown()
    tree = [n for n, _, _ in got if n.startswith("cowscope_tree_") and n != "cowscope_tree_up"]
    assert tree == []  # not served as zeros
    assert [(lab["root"], v) for n, lab, v in got if n == "cowscope_tree_up"] == [(str(proc.pid), 0)]
    assert not any(n.startswith("cowscope_process_") for n, _, _ in got)


def test_recycled_workers_are_followed() -> None:
    proc, kids = start(RECYCLING)
    server, _t, _c = serve(Sampler([proc.pid], tree=True), free_port(), "127.0.0.1", DutyCycle(1.0))
    try:
        port = server.server_address[1]
        before = {lab["pid"] for n, lab, _ in samples(metrics_text(port)) if n == "cowscope_process_copied_bytes"}
        proc.send_signal(signal.SIGUSR1)
        assert proc.stdout is not None
        new = [int(x) for x in proc.stdout.readline().split()]
        after = {lab["pid"] for n, lab, _ in samples(metrics_text(port)) if n == "cowscope_process_copied_bytes"}
    finally:
        server.shutdown()
        proc.kill()
        proc.wait()
    assert before == {str(k) for k in kids}
    assert new[1] == kids[1] and new[0] != kids[0]
    assert after == {str(k) for k in new}


def test_hostile_process_names_are_plain_text_in_labels() -> None:
    """A process that names itself (prctl PR_SET_NAME, its argv) with an escape sequence is served
    with the escape written out: a scrape printed to a terminal does not obey it."""
    hostile = "\x1b[2J[/]x"
    code = ("import ctypes, sys, time\nctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)\n"
            "print(0, flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, hostile], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline()
        server, _t, _c = serve(Sampler([proc.pid]), free_port(), "127.0.0.1", DutyCycle(1.0))
        try:
            text = metrics_text(server.server_address[1])
        finally:
            server.shutdown()
    finally:
        proc.kill()
        proc.wait()
    assert "\x1b" not in text
    names = {lab["name"] for n, lab, _ in samples(text) if n == "cowscope_process_rss_bytes"}
    assert names == {"\\x1b[2J[/]x"}
