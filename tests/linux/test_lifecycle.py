"""The Linux backend leaves nothing on the host: folders, agents, swapfiles, core files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cowscope.errors import Aborted
from cowscope.linux import lifecycle
from cowscope.linux.swap import swap_problem
from cowscope.observe import procfs

pytestmark = pytest.mark.kernel


@pytest.fixture
def machine():
    from cowscope.linux.machine import Machine

    m = Machine()
    yield m
    m.close()


def _gone(pids: list[int], timeout: float = 5.0) -> list[int]:
    """The pids still alive (not dead, not zombie) after waiting up to `timeout`."""
    deadline = time.time() + timeout
    while True:
        alive = [p for p in pids if procfs.is_alive(p) and _is_agent(p)]
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.02)


def _is_agent(pid: int) -> bool:
    try:
        return "cowscope-agent" in os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False


LEAK = textwrap.dedent("""
    import os, sys, time
    from cowscope.linux.machine import Machine
    how = sys.argv[1]
    m = Machine()
    print(m._dir, flush=True)
    sys.stdin.readline()  # the test has seen the folder
    if how == "nothing spawned":
        sys.exit(0)
    if how == "dropped":
        del m
        import gc; gc.collect()
        print("collected", flush=True)
        time.sleep(60)
    if how == "spawn failed":
        m._agent = "/nonexistent/cowscope-agent"
        try:
            m.spawn("P")
        except OSError:
            sys.exit(0)
    p = m.spawn("P")
    print(p.pid, flush=True)
    time.sleep(60)  # SIGTERM arrives here
""")


@pytest.mark.parametrize("how", ["nothing spawned", "spawn failed", "dropped", "SIGTERM"])
def test_machine_files_and_agents_never_leak(how: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", LEAK, how], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    directory = proc.stdout.readline().strip()
    assert directory and os.path.isdir(directory)  # (the script waits for the line below before it goes on)
    proc.stdin.write("\n")
    proc.stdin.flush()
    agent = None
    if how == "dropped":
        assert proc.stdout.readline().strip() == "collected"
        assert not os.path.exists(directory)  # gone with the unclosed Machine, not only at exit
        proc.terminate()
    elif how == "SIGTERM":
        agent = int(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert "Traceback" not in proc.stderr.read()
    assert not os.path.exists(directory), f"{directory} left behind ({how})"
    if agent is not None:
        assert _gone([agent]) == []




def test_agents_dump_no_core(machine, tmp_path: Path) -> None:
    """An agent that dies of SIGABRT (a double free) leaves no core file: RLIMIT_CORE is 0 in
    every agent, forked ones included."""
    p = machine.spawn("P")
    c = p.fork()
    for proc in (p, c):
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        line = next(x for x in limits.splitlines() if x.startswith("Max core file size"))
        assert line.split()[4:6] == ["0", "0"], line
    a = c.malloc(32)
    c.free(a)
    with pytest.raises(Aborted):
        c.free(a)


KILLED = textwrap.dedent("""
    import sys, time
    from cowscope.linux.machine import Machine
    m = Machine()
    p = m.spawn("P")
    m.create_file("/data", data=b"x" * 4096)
    if sys.argv[1] == "swap":
        m.swapon("1MiB")
        print(m._swap.path, flush=True)
    print(m._dir, p.pid, flush=True)
    time.sleep(60)  # SIGKILL arrives here
""")


@pytest.mark.parametrize("swap", ["no swap", "swap"])
def test_what_a_sigkilled_controller_left_goes_with_the_next_machine(swap: str) -> None:
    """A SIGKILLed controller cannot clean up: its agents die with their socket, and its folder
    (and its active swapfile) go when the next machine starts; a live owner's folder stays."""
    if swap == "swap" and swap_problem():
        pytest.skip(swap_problem())
    from cowscope.linux.machine import Machine

    proc = subprocess.Popen([sys.executable, "-c", KILLED, swap], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    swapfile = proc.stdout.readline().strip() if swap == "swap" else ""
    directory, agent = proc.stdout.readline().split()
    proc.kill()
    proc.wait(timeout=30)
    assert os.path.isdir(directory) and _gone([int(agent)]) == []
    assert not swapfile or swapfile in lifecycle.active_swaps()
    with Machine() as live:
        assert not os.path.exists(directory), f"{directory} left behind by a SIGKILLed controller"
        assert os.path.isdir(live._dir)
        if swapfile:
            assert swapfile not in lifecycle.active_swaps() and not os.path.exists(swapfile)
        with Machine() as other:
            assert os.path.isdir(live._dir) and os.path.isdir(other._dir)


def test_only_folders_of_gone_owners_are_removed(tmp_path: Path) -> None:
    """An owner is a pid and its start time: a reused pid is no owner; folders of the living,
    names without an owner, symlinks and another user's folders stay."""
    me = lifecycle.owner_tag()
    pid, ticks = me.split(".")
    reused = f"{pid}.{int(ticks) + 1}"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip() + ".1"
    for name in (f"cowscope-linux-{me}-a", f"cowscope-linux-{reused}-b", f"cowscope-linux-{dead}-c",
                 "cowscope-linux-old", f"cowscope-swap-{dead}-1.swap"):
        (tmp_path / name).mkdir() if "linux" in name else (tmp_path / name).write_bytes(b"")
    (tmp_path / "target").mkdir()
    (tmp_path / f"cowscope-linux-{dead}-link").symlink_to(tmp_path / "target")
    stay = [f"cowscope-linux-{me}-a", "cowscope-linux-old", f"cowscope-linux-{dead}-link", "target"]
    if os.geteuid() == 0:
        (tmp_path / f"cowscope-linux-{dead}-nobody").mkdir()
        os.chown(tmp_path / f"cowscope-linux-{dead}-nobody", 65534, 65534)
        stay.append(f"cowscope-linux-{dead}-nobody")
    removed = lifecycle.remove_stale(str(tmp_path))
    assert sorted(os.path.basename(p) for p in removed) == sorted([
        f"cowscope-linux-{dead}-c", f"cowscope-linux-{reused}-b", f"cowscope-swap-{dead}-1.swap"])
    assert sorted(os.listdir(tmp_path)) == sorted(stay)
