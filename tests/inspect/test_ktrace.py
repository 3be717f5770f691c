"""Tracing running processes: forks from before the trace still give each side, and copies made
after attaching are attributed to the process that paid."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from cowscope.inspect.ktrace import TreeTracer, tree_of

pytestmark = [pytest.mark.kernel, pytest.mark.skipif(os.geteuid() != 0, reason="tracing needs root")]

PROG = """
import os, sys, time
buf = bytearray(4096 * 256)
for i in range(0, len(buf), 4096):
    buf[i] = 1
pid = os.fork()
if pid == 0:
    sys.stdin.read(1)                  # until the tracer is attached
    for i in range(0, len(buf), 4096):
        buf[i] = 2
    time.sleep(0.5)
    os._exit(0)
print(pid, flush=True)
os.waitpid(pid, 0)
"""


def test_attach_to_a_forked_pair() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PROG], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None and parent.stdin is not None
    child = int(parent.stdout.readline())
    tracer = TreeTracer(buffer_kb=2048)
    try:
        tracer.start(tree_of(parent.pid))
        assert tracer.attributor is not None and child in tracer.attributor.forked_at
        parent.stdin.write("x")
        parent.stdin.flush()
        while tracer.alive():
            tracer.poll()
            time.sleep(0.05)
        tracer.stop()
    finally:
        tracer.close()
        parent.wait(timeout=30)
    rows = tracer.summary.processes
    assert rows[child].side == "child" and rows[child].kinds["cow-copy"] >= 256
