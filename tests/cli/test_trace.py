"""`cowscope trace` end to end on a real program: which process paid, which function wrote."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cowscope.cli.main import main

SRC = Path(__file__).parents[1] / "inspect" / "cowprog.c"
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="tracing needs root")


@pytest.fixture(scope="module")
def prog(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    out = tmp_path_factory.mktemp("cowprog") / "cowprog"
    subprocess.run([cc, "-O1", "-g", "-o", str(out), str(SRC)], check=True)
    return out


def _trace(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cowscope", "trace", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.kernel
@root_only
def test_trace_command_names_the_writers(prog: Path, tmp_path: Path) -> None:
    out = tmp_path / "ev.jsonl"
    r = _trace("--json", str(out), "--", str(prog))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["lost_events"] == 0
    events = [x for x in lines if x["type"] == "event" and x["kind"] == "cow-copy" and x["module"] == "cowprog"]
    child = [x for x in events if x["side"] == "child" and x["symbol"] == "child_writes"]
    parent = [x for x in events if x["side"] == "parent" and x["symbol"] == "parent_writes"]
    assert len(child) == 512 and len({x["address"] for x in child}) == 512
    assert {x["inlined"][0] for x in child} == {"touch_page"}
    assert len(parent) == 512 and {x["pid"] for x in parent}.isdisjoint(x["pid"] for x in child)
    assert all(x["since_fork_s"] is not None and x["since_fork_s"] >= 0 for x in child + parent)
    assert {x["mapping"] for x in child} <= {"[anon]", "[heap]"}
    assert "touch_page (inlined in child_writes)" in r.stdout and "pages copied" in r.stdout


@pytest.mark.kernel
@root_only
def test_trace_pid_that_vanishes_and_exit_status(prog: Path) -> None:
    sleeper = subprocess.Popen(["sleep", "3"])  # ends while traced: the trace ends with it
    r = _trace(str(sleeper.pid), "--duration", "30")
    sleeper.wait()
    assert r.returncode == 0, r.stderr
    assert "pages copied" in r.stdout
    r = _trace("--", "sh", "-c", "exit 3")
    assert r.returncode == 3


@pytest.mark.parametrize("argv,message", [
    ([], "nothing to trace"),
    (["999999999"], "no process 999999999"),
    (["--tree", "999999999"], "no process 999999999"),
    (["--", "/nonexistent/cmd"], "cannot run /nonexistent/cmd"),
])
def test_bad_input_is_a_clear_error(argv: list[str], message: str, capsys) -> None:
    if argv[:1] == ["--"] and os.geteuid() != 0:
        pytest.skip("reaching the command needs tracing (root)")
    assert main(["trace", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_not_root_is_a_clear_error() -> None:
    # what `trace` imports when it runs is loaded first: this interpreter (under /root) is not
    # readable by the unprivileged user the test becomes
    code = ("import os, sys\nfrom cowscope.cli.main import build_parser\n"
            "import rich.console, cowscope.inspect.ktrace, cowscope.inspect.trace_render, cowscope.linux.tracefs\n"
            "args = build_parser().parse_args(['trace', '--', 'true'])\n"
            "if os.geteuid() == 0:\n os.setgid(65534); os.setuid(65534)\n"
            "sys.exit(args.func(args))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "error: kernel tracing needs root" in r.stderr and "Traceback" not in r.stderr


def test_inspect_trace_needs_a_span_of_time(capsys) -> None:
    assert main(["inspect", "--trace", str(os.getpid())]) != 0
    assert "--trace needs --watch or a command" in capsys.readouterr().err


@pytest.mark.kernel
@root_only
def test_inspect_trace_shows_causes_beside_the_tree(prog: Path) -> None:
    code = ("import os, time\nb = bytearray(4096 * 512)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
            "time.sleep(1)\npid = os.fork()\nif pid == 0:\n    time.sleep(0.3)\n"
            "    for i in range(0, len(b), 4096): b[i] = 2\n    time.sleep(1.5)\n    os._exit(0)\n"
            "os.waitpid(pid, 0)\n")
    r = subprocess.run([sys.executable, "-m", "cowscope", "inspect", "--trace", "--watch", "0.5", "--count", "5",
                        "--", sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "copy-on-write events while inspecting" in r.stdout, r.stderr
    assert "pages copied" in r.stdout and "no events lost" in r.stdout


@pytest.mark.kernel
@root_only
def test_trace_html_report_has_the_kernel_events(tmp_path: Path) -> None:
    """The child writes only once the trace session is up, and both stay alive until it ends: the
    report has its page maps at the start and the end, whatever the machine's load."""
    go, stop = tmp_path / "go", tmp_path / "stop"
    wait = "def wait(f):\n    while not os.path.exists(f): time.sleep(0.02)\n"
    code = (f"import os, time\n{wait}b = bytearray(4096 * 256)\nfor i in range(0, len(b), 4096): b[i] = 1\n"
            f"pid = os.fork()\nif pid == 0:\n    wait({str(go)!r})\n    for i in range(0, len(b), 4096): b[i] = 2\n"
            f"    open({str(go)!r} + '.done', 'w').close()\n    wait({str(stop)!r})\n    os._exit(0)\n"
            "print(os.getpid(), flush=True)\nos.waitpid(pid, 0)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    parent = proc.stdout.readline().strip()
    html = tmp_path / "trace.html"
    try:
        tr = subprocess.Popen([sys.executable, "-m", "cowscope", "trace", "--tree", parent, "--duration", "4",
                               "--html", str(html)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: _recording(tr.pid) or tr.poll() is not None, 60)
        go.touch()
        _wait_for(lambda: Path(str(go) + ".done").exists(), 30)
        out, err = tr.communicate(timeout=120)
    finally:
        stop.touch()
        proc.wait(timeout=30)
    assert tr.returncode == 0, err
    assert "page maps at 2 point(s)" in out
    copied = re.search(r"^(\d+) pages copied", out, re.M)
    assert copied and int(copied.group(1)) >= 256, out  # the child's writes, every one
    assert "cowscope trace" in html.read_text()


def _recording(pid: int) -> bool:
    """Whether the trace session of process `pid` (its instance, cowscope-trace-PID-N, in whichever
    tracefs mount it uses) has its events enabled."""
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[2] == "tracefs":
            for inst in Path(parts[1].replace("\\040", " "), "instances").glob(f"cowscope-trace-{pid}-*"):
                if any(e.read_text().strip() == "1" for e in inst.glob("events/*/*/enable")):
                    return True
    return False


def _wait_for(cond, timeout: float) -> None:
    import time

    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)
