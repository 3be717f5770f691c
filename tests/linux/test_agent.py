"""The Linux backend's agent: operations, outcomes, build cache, and never leaking a process."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cowscope import native
from cowscope.errors import Aborted, ProcessBlocked, ProcessGone, Segfault, SyscallError
from cowscope.linux import build
from cowscope.observe import procfs
from cowscope.verify.compare import run_traced

pytestmark = pytest.mark.kernel
PAGE = 4096


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


def test_memory_ops_and_views(machine) -> None:
    p = machine.spawn("worker")
    assert p.status().name == "worker"
    a = p.mmap(3 * PAGE)
    p.write(a + 10, b"hello")
    p.fill(a + PAGE, PAGE, 0x7F)
    assert p.read(a + 10, 5) == b"hello" and p.read(a + PAGE, 2) == b"\x7f\x7f"
    p.write_u64(a + 2 * PAGE, 2**64 - 2)
    assert p.read_u64(a + 2 * PAGE) == 2**64 - 2
    vmas = [v for v in p.maps() if v.start <= a < v.end]
    # one VMA holds it (it may have merged with a neighbouring anonymous mapping, as in the model:
    # the agent adds no flags, such as MADV_NOHUGEPAGE, that the model's mmap would not)
    assert len(vmas) == 1 and vmas[0].start <= a and a + 3 * PAGE <= vmas[0].end
    assert "nh" not in next(s for s in p.smaps() if s.vma.start <= a < s.vma.end).vm_flags
    assert [e.present for e in p.pagemap(a, 3)] == [True, True, True]
    big = p.read(a, 3 * PAGE)
    assert len(big) == 3 * PAGE and big[PAGE:2 * PAGE] == b"\x7f" * PAGE
    before = p.fault_counts()["minor"]
    b = p.mmap(8 * PAGE)
    p.touch(b, 8 * PAGE, write=True)
    assert p.fault_counts()["minor"] - before >= 8
    p.mprotect(b, PAGE, "r")
    p.munmap(b, 8 * PAGE)
    assert "[heap]" not in p.proc("maps")  # the agent itself never allocates on the heap


def test_syscall_errors_keep_the_process(machine) -> None:
    p = machine.spawn()
    with pytest.raises(SyscallError) as ei:
        p.munmap(PAGE + 1, PAGE)
    assert ei.value.errno == errno.EINVAL
    with pytest.raises(SyscallError) as ei:
        p.madvise(p.mmap(PAGE, shared=True), PAGE, "wipeonfork")
    assert ei.value.errno == errno.EINVAL
    assert p.alive and p.read(p.mmap(PAGE), 1) == b"\x00"


def test_segfault_abort_and_exit_statuses(machine) -> None:
    p = machine.spawn()
    a = p.mmap(PAGE)
    c = p.fork()
    with pytest.raises(Segfault) as ei:
        c.read(a - PAGE, 1)
    assert ei.value.address == a - PAGE and c.state == "Z"
    assert p.wait(c) == (c.pid, ("signal", signal.SIGSEGV)) and c.state == "X"
    c2 = p.fork()
    x = c2.malloc(24)
    c2.free(x)
    with pytest.raises(Aborted) as ab:
        c2.free(x)
    assert "double free" in ab.value.message and "double free" in c2.stderr
    assert p.wait(c2)[1] == ("signal", signal.SIGABRT)
    c3 = p.fork()
    c3.exit(300)
    assert p.wait(c3)[1] == ("exit", 300 & 0xFF)
    with pytest.raises(ProcessGone):
        c3.read(a, 1)


def test_vfork_suspends_parent_until_exec(machine) -> None:
    p = machine.spawn()
    a = p.mmap(PAGE)
    v = p.vfork()
    assert p.state == "D" and v.state == "R"
    with pytest.raises(ProcessBlocked, match="suspended in vfork"):
        p.read(a, 1)
    v.write(a, b"\x05")
    v.exec()
    assert p.state == "R"
    assert p.read(a, 1) == b"\x05"
    assert v.alive and v.ppid == p.pid
    with pytest.raises(Segfault):
        v.read(a, 1)  # the fresh image has nothing there


def test_a_forked_agents_death_is_seen_after_its_vfork_child_execed(machine) -> None:
    """A fork child's control socket must not leak into a process its vfork child execs: the
    controller waits for that socket to close when the agent dies (it waited 300 s, then timed
    out, when the socket was not close-on-exec)."""
    q = machine.spawn().fork()
    v = q.vfork()
    v.exec()
    a = q.malloc(24)
    q.write_u64(a + 24, 0xDEAD0000000)  # the top chunk's size: glibc aborts at the next split
    t = time.monotonic()
    with pytest.raises(Aborted, match="corrupted top size"):
        q.malloc(5000)
    assert time.monotonic() - t < 5 and not q.alive and v.alive


def test_build_cache_rebuilds_on_source_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COWSCOPE_CACHE", str(tmp_path))
    first = build.agent_path()
    assert first.parent == tmp_path and os.access(first, os.X_OK)
    assert build.agent_path() == first  # cached
    src = build.agent_source() + b"\n/* changed */\n"
    monkeypatch.setattr(build, "agent_source", lambda: src)
    second = build.agent_path()
    assert second != first and second.exists() and first.exists()  # another run may be about to start it
    unused = time.time() - (native.STALE_DAYS + 1) * 24 * 3600
    os.utime(first.with_name(first.name + ".sha256"), (unused, unused))
    monkeypatch.setattr(build, "agent_source", lambda: src + b"/* again */\n")
    third = build.agent_path()
    assert third.exists() and second.exists() and not first.exists()  # builds unused for a week go


def test_no_compiler_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COWSCOPE_CACHE", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(build.AgentBuildError, match="no C compiler was found"):
        build.agent_path()


# --- never leak a process -----------------------------------------------------------------


def test_raising_scenario_leaves_no_agent() -> None:
    from cowscope.linux.machine import Machine

    pids: list[int] = []

    def scenario(m) -> None:
        p = m.spawn("P")
        c = p.fork()
        g = c.fork()
        v = g.vfork()  # g is suspended inside vfork
        pids.extend([p.pid, c.pid, g.pid, v.pid])
        raise RuntimeError("scenario bug")

    trace = run_traced(scenario, Machine(), "linux")
    assert trace.error and "scenario bug" in trace.error
    assert len(pids) == 4 and _gone(pids) == []


CONTROLLER = textwrap.dedent("""
    import sys, time
    from cowscope.linux.machine import Machine
    m = Machine()
    p = m.spawn("P")
    a = p.mmap(4096)
    c = p.fork()
    g = c.fork()
    c2 = p.fork()
    v = c2.vfork()
    print(" ".join(str(x.pid) for x in (p, c, g, c2, v)), flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL, signal.SIGTERM])
def test_killed_controller_leaves_no_agent(sig: int) -> None:
    ctl = subprocess.Popen([sys.executable, "-c", CONTROLLER], stdout=subprocess.PIPE, text=True)
    try:
        line = ctl.stdout.readline()
        pids = [int(x) for x in line.split()]
        assert len(pids) == 5 and all(_is_agent(p) for p in pids)
        ctl.send_signal(sig)
        ctl.wait(timeout=10)
        assert _gone(pids) == []
    finally:
        if ctl.poll() is None:
            ctl.kill()


def test_package_exports_and_cpu_pinning() -> None:
    import cowscope.linux

    with cowscope.linux.Machine() as m:
        p = m.spawn("P")
        c = p.fork()
        g = c.vfork()
        for proc in (p, c, g):
            assert os.sched_getaffinity(proc.pid) == {m.cpu}
        g.exit(0)
    assert _gone([p.pid, c.pid, g.pid]) == []


# --- the calls the shared interface added (observe.backend) ------------------------------


def test_glibc_malloc_extras(machine) -> None:
    """posix_memalign, aligned_alloc, mallopt, malloc_trim, mallinfo2: glibc's own, in the agent."""
    p = machine.spawn()
    assert p.mallinfo2().arena == 0  # nothing allocated yet: the agent itself never mallocs
    assert p.posix_memalign(3, 16) == (errno.EINVAL, 0)
    err, ptr = p.posix_memalign(64, 100)
    assert err == 0 and ptr % 64 == 0
    assert p.aligned_alloc(4096, 10) % 4096 == 0
    assert p.mallopt(1, 0) == 1 and p.mallopt(1, 1000) == 0  # M_MXFAST: 1000 > MAX_FAST_SIZE
    big = p.malloc(200_000)  # above the mmap threshold: a chunk of its own
    info = p.mallinfo2()
    assert info.hblks == 1 and info.hblkhd >= 200_000 and info.arena == 132 * 1024  # the first heap
    before = p.brk()
    p.free(big)
    assert p.mallinfo2().hblks == 0
    assert p.malloc_trim(0) == 1 and p.brk() < before  # the heap's free top goes back
    assert p.malloc_trim(0) == 0  # nothing left to give back


def test_mmap_populate(machine) -> None:
    """MAP_POPULATE: every page present at once (exclusive anon for a private writable mapping)."""
    p = machine.spawn()
    a = p.mmap(8 * PAGE, populate=True)
    b = p.mmap(8 * PAGE)
    assert all(e.present and e.exclusive for e in p.pagemap(a, 8))
    assert not any(e.present for e in p.pagemap(b, 8))


# --- deaths from outside cowscope --------------------------------------------------------------


def _killed(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    for _ in range(200):
        if procfs.process_state(pid) in (None, "Z"):
            return
        time.sleep(0.01)


def test_agent_killed_from_outside_is_process_killed(machine) -> None:
    """kill -9 (or the OOM killer) on an agent: the next call is ProcessKilled with the signal, not
    BrokenPipeError; the process is dead; snapshots leave it out."""
    from cowscope.errors import ProcessKilled
    from cowscope.observe.snapshot import take

    p = machine.spawn("P")
    a = p.mmap(4096)
    c = p.fork()
    g = c.fork()
    _killed(c.pid)
    with pytest.raises(ProcessKilled) as killed:
        c.write(a, b"x")
    assert killed.value.signo == signal.SIGKILL and not c.alive and c.exit_status == ("signal", signal.SIGKILL)
    _killed(g.pid)
    _killed(p.pid)  # a spawned agent, noticed by the snapshot without any call
    snap = take(machine, "after")
    assert [v.pid for v in snap.processes] == [] and not p.alive and not g.alive
    assert p.exit_status == ("signal", signal.SIGKILL)
    with pytest.raises(ProcessGone):
        g.fork()


def test_out_of_descriptors_is_emfile_with_the_remedy(tmp_path: Path) -> None:
    """Many processes under a low RLIMIT_NOFILE: fork says EMFILE and how to raise the limit
    (it said 'agent did not pass a socket')."""
    code = textwrap.dedent("""
        import resource
        from cowscope.errors import SyscallError
        from cowscope.linux.machine import Machine
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        with Machine() as m:
            p = m.spawn("P")
            try:
                for _ in range(100):
                    p.fork()
            except SyscallError as e:
                print("fork", e.errno, e)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert f"fork {errno.EMFILE} fork: EMFILE" in r.stdout and "ulimit -n" in r.stdout, r.stdout + r.stderr
    assert "Traceback" not in r.stderr


# --- files ------------------------------------------------------------------------------------


def test_files_stay_in_the_machine_and_paths_agree(machine) -> None:
    """create_file("/../../x") is the machine's /x (it wrote outside the machine's folder); a path
    naming no file and a second file of one path are errors, as on the model."""
    from cowscope.model import Machine as ModelMachine

    for m in (machine, ModelMachine()):
        f = m.create_file("/../../x", data=b"hello")
        assert f.path == "/x" and m.pread(f, 0, 5) == b"hello"
        with pytest.raises(FileExistsError):
            m.create_file("/x", data=b"again")
        for bad in ("", "/", "/d/.."):
            with pytest.raises(ValueError, match="names no file"):
                m.create_file(bad, data=b"x")
        with pytest.raises(ValueError, match="negative"):
            m.create_file("/y", size=-1)
    real = machine.create_file("/../up", data=b"x").real_path
    assert os.path.realpath(real).startswith(os.path.realpath(machine._dir) + os.sep)
