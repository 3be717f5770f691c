"""The tracefs session leaves tracefs as it found it: on close, on an exception, on SIGTERM, and
(at the next session) after a SIGKILL; it refuses clearly without root or a tracepoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from cowscope.linux import tracefs
from cowscope.linux.tracefs import INSTANCE_PREFIX, MOUNT_PREFIX, TraceSession, TraceUnavailable

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(os.geteuid() != 0, reason="tracing needs root")]
EVENTS = ("exceptions:page_fault_user",)


def _state() -> tuple[list[str], list[str]]:
    """Our instances (wherever tracefs is visible) and our private mounts."""
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f if " tracefs " in line]
    ours = [m for m in mounts if f"{MOUNT_PREFIX}{os.getpid()}-" in m]  # other processes trace too
    instances = set()
    for m in mounts:
        base = os.path.join(m, "instances")
        instances.update(n for n in os.listdir(base) if n.startswith(INSTANCE_PREFIX) and
                         n.split("-")[2] == str(os.getpid()))
    return sorted(instances), ours


def _all_instances() -> list[str]:
    root = tracefs._mounted_tracefs()
    if root is None:
        return []
    return sorted(n for n in os.listdir(os.path.join(root, "instances")) if n.startswith(INSTANCE_PREFIX))


def test_close_removes_instance_and_private_mount() -> None:
    before = _state()
    s = TraceSession(EVENTS, [os.getpid()], buffer_kb=64)
    assert os.path.isdir(s.instance)
    s.start()
    s.close()
    assert not os.path.exists(s.instance)
    assert _state() == before
    s.close()  # idempotent


def test_exception_inside_with_cleans_up() -> None:
    before = _state()
    with pytest.raises(RuntimeError), TraceSession(EVENTS, [os.getpid()], buffer_kb=64) as s:
        s.start()
        raise RuntimeError("boom")
    assert _state() == before


def test_missing_tracepoint_is_refused_and_cleaned() -> None:
    before = _state()
    with pytest.raises(TraceUnavailable, match="no tracepoint nosuch:event"):
        TraceSession(("nosuch:event",), [os.getpid()], buffer_kb=64)
    assert _state() == before


SCRIPT = textwrap.dedent("""
    import os, sys, time
    from cowscope.linux.tracefs import TraceSession
    s = TraceSession(("exceptions:page_fault_user",), [os.getpid()], buffer_kb=64)
    s.start()
    print(s.instance, flush=True)
    time.sleep(60)
""")


def _holder() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def test_sigterm_cleans_up() -> None:
    proc, instance = _holder()
    assert os.path.isdir(instance)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 128 + signal.SIGTERM
    assert not os.path.exists(instance)
    assert not [n for n in _all_instances() if n.split("-")[2] == str(proc.pid)]


def test_sigkill_leftovers_are_removed_by_the_next_session() -> None:
    proc, instance = _holder()
    name = os.path.basename(instance)
    proc.kill()
    proc.wait(timeout=10)
    assert name in _all_instances() or tracefs._mounted_tracefs() is None
    with TraceSession(EVENTS, [os.getpid()], buffer_kb=64):
        assert name not in _all_instances()
    deadline = time.time() + 5
    while time.time() < deadline and any(MOUNT_PREFIX + str(proc.pid) in m for m in _state()[1]):
        time.sleep(0.1)
    assert not any(f"{MOUNT_PREFIX}{proc.pid}-" in m for m in _state()[1])


def test_not_root_is_a_clear_refusal() -> None:
    code = ("import os\n"
            "from cowscope.linux.tracefs import TraceSession, TraceUnavailable\n"
            "os.setgid(65534); os.setuid(65534)\n"
            "try:\n TraceSession(('exceptions:page_fault_user',), [1])\n"
            "except TraceUnavailable as e:\n print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "needs root" in out.stdout, out.stderr
