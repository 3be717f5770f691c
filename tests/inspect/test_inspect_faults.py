"""Bad input and faults: vanished PIDs, exit mid-read, zombies, kernel threads, permission, non-Linux."""

from __future__ import annotations

import json
import os
import signal

import pytest
from forktree import TreePlan, WorkerPlan, range_classes

from cowscope.cli.main import main
from cowscope.inspect import classify as cl
from cowscope.inspect.sample import Sampler
from cowscope.observe import procfs

pytestmark = pytest.mark.kernel


def reaped_pid() -> int:
    """A pid that existed a moment ago and has been reaped."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_vanished_pid_is_reported_and_the_rest_still_read(make_tree, capsys) -> None:
    t = make_tree(TreePlan(workers=[WorkerPlan(copies=2)]))
    gone = reaped_pid()
    s = Sampler([gone, t.master], tree=True).sample()
    assert [(m.pid, m.kind) for m in s.missed] == [(gone, "not-found")]
    assert {p.pid for p in s.processes} == {t.master, *t.workers}
    assert main(["inspect", str(gone), str(t.master), "--json"]) == 1
    out = capsys.readouterr()
    assert f"no process with pid {gone}" in out.err
    assert [json.loads(ln)["pid"] for ln in out.out.splitlines()] == [t.master]
    assert main(["inspect", str(gone)]) == 2


def test_process_exiting_mid_read_is_missed_not_fatal(make_tree) -> None:
    t = make_tree(TreePlan(workers=[WorkerPlan(copy_from=10, copies=2), WorkerPlan(copy_from=20, copies=3)]))
    victim = t.workers[0]

    def kill_after_maps(pid: int, stage: str) -> None:
        if pid == victim and stage == "maps":
            os.kill(victim, signal.SIGKILL)
            # wait until the kernel has torn down its mm (it stays a zombie: the master does not reap it)
            while procfs.read_stat(victim).state not in ("Z", "X"):
                pass

    s = Sampler([t.master], tree=True, hook=kill_after_maps).sample()
    assert [(m.pid, m.kind) for m in s.missed] == [(victim, "gone")]
    assert {p.pid for p in s.processes} == {t.master, t.workers[1]}
    # With its sibling dead, the old frames of the master's 4 rewritten pages are the survivor's alone.
    assert range_classes(s.process(t.workers[1]), t.r_addr, 96)[cl.COPIED] == 3 + 4


def test_zombie_is_gone(make_tree) -> None:
    t = make_tree(TreePlan(workers=[WorkerPlan()]))
    os.kill(t.workers[0], signal.SIGKILL)
    while procfs.read_stat(t.workers[0]).state != "Z":
        pass
    s = Sampler([t.master, t.workers[0]]).sample()
    assert [(m.pid, m.kind) for m in s.missed] == [(t.workers[0], "gone")]
    assert [p.pid for p in s.processes] == [t.master]


def test_kernel_thread_is_named_as_such(make_tree, capsys) -> None:
    t = make_tree(TreePlan())
    kthreadd = 2
    assert procfs.read_stat(kthreadd).kernel_thread
    s = Sampler([kthreadd, t.master]).sample()
    assert [(m.pid, m.kind) for m in s.missed] == [(kthreadd, "kernel-thread")]
    assert main(["inspect", "2", str(t.master)]) == 1
    assert "kernel thread" in capsys.readouterr().out


def test_permission_denied_and_estimate_mode_as_an_unprivileged_user(make_tree) -> None:
    nobody = 65534
    t = make_tree(TreePlan(workers=[WorkerPlan(copy_from=10, copies=4)], uid=nobody))
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgid(nobody)
            os.setuid(nobody)
            s = Sampler([1, t.master, t.workers[0]]).sample()
            classes = range_classes(s.process(t.workers[0]), t.r_addr, 96)
            out = {"mode": s.mode, "notes": s.notes, "missed": [m.to_dict() for m in s.missed],
                   "classes": {str(k): v for k, v in classes.items()}}
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = json.loads(f.read() or "null")
    os.waitpid(pid, 0)
    assert data is not None, "unprivileged inspector crashed"
    assert data["mode"] == "estimate" and any("not root" in n for n in data["notes"])
    assert [(m["pid"], m["kind"]) for m in data["missed"]] == [(1, "permission")]
    # Without PFNs the exclusive bit still finds the copies and the master's rewritten pages.
    assert data["classes"] == {str(cl.SHARED_PARENT): 64 - 4 - 4, str(cl.COPIED): 4 + 4,
                               str(cl.NOT_PRESENT): 32}


def test_non_linux_is_a_clear_error(monkeypatch, capsys) -> None:
    monkeypatch.setattr(procfs.sys, "platform", "darwin")
    assert main(["inspect", str(os.getpid())]) == 2
    assert "needs Linux" in capsys.readouterr().err
    assert main(["export", "--port", "1", str(os.getpid())]) == 2


def test_bad_usage(capsys) -> None:
    assert main(["inspect"]) == 2
    assert main(["inspect", "12", "x"]) == 2
    assert main(["inspect", str(os.getpid()), "--max-duty", "0"]) == 2
    err = capsys.readouterr().err
    assert "at least one PID" in err and "not a process id" in err and "duty cycle" in err
