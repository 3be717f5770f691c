"""`inspect -- COMMAND` runs the command in a process group of its own and stops all of it at the
end and on Ctrl-C: what the command started goes too (it stayed before)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cowscope.observe import procfs

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.kernel


def _command(pidfile: Path) -> list[str]:
    """A shell that starts a grandchild, writes its pid and waits for it."""
    return ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"]


def _wait_for(pidfile: Path) -> int:
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, "the command never started its child"
        time.sleep(0.02)
    return int(pidfile.read_text())


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while procfs.is_alive(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("how", ["last sample", "Ctrl-C"])
def test_the_commands_whole_process_group_is_stopped(how: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    argv = ["--count", "2"] if how == "last sample" else ["--watch", "0.2"]
    proc = subprocess.Popen([sys.executable, "-m", "cowscope", "inspect", *argv, "--", *_command(pidfile)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    grandchild = _wait_for(pidfile)
    assert os.getpgid(grandchild) != os.getpgid(proc.pid)  # the command's own group, not cowscope's
    if how == "Ctrl-C":
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)  # what the terminal sends to its foreground group: cowscope's
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err
    assert _gone(grandchild), f"the command's child {grandchild} outlived cowscope inspect ({how})"
