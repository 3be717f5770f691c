"""The /proc readers on live processes: records as the kernel prints them, processes that vanish."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from cowscope.errors import ProcessGone
from cowscope.observe import procfs

# --- live reads ---------------------------------------------------------------------------------


def _sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])


@pytest.mark.kernel
def test_live_readers_match_records() -> None:
    sleeper = _sleeper()
    time.sleep(0.3)  # let it reach its sleep: a quiescent process
    try:
        _check_live_readers(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()


def _check_live_readers(pid: int) -> None:
    maps = procfs.read_maps(pid)
    smaps = procfs.read_smaps(pid)
    assert [s.vma for s in smaps] == maps
    assert procfs.read_smaps_rollup(pid)["Rss"] > 0
    assert procfs.read_status(pid).pid == pid
    raw = procfs.read_pagemap(pid, maps[0].start, maps[0].npages)
    assert raw.dtype == np.uint64 and len(raw) == maps[0].npages
    assert procfs.read_fault_counts(pid)["minor"] > 0


@pytest.mark.kernel
def test_gone_and_zombie_processes_raise_process_gone() -> None:
    p = _sleeper()
    pid = p.pid
    procfs.read_maps(pid)
    p.kill()
    while procfs.process_state(pid) not in ("Z", None):
        pass
    with pytest.raises(ProcessGone):  # zombie: no mm
        procfs.read_maps(pid)
    with pytest.raises(ProcessGone):
        procfs.read_pagemap(pid, 0x400000, 1)
    p.wait()
    for fn in (procfs.read_maps, procfs.read_smaps, procfs.read_smaps_rollup, procfs.read_status):
        with pytest.raises(ProcessGone):
            fn(pid)


@pytest.mark.kernel
def test_process_exits_mid_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first chunk of smaps arrives, then the process dies: ProcessGone, not half a parse."""
    p = _sleeper()
    real_read = os.read
    calls = []

    def slow_read(fd: int, n: int) -> bytes:
        calls.append(n)
        if len(calls) == 2:
            p.kill()
            p.wait()
        return real_read(fd, 512)

    monkeypatch.setattr(procfs.os, "read", slow_read)
    with pytest.raises(ProcessGone):
        procfs.read_smaps(p.pid)
    assert len(calls) >= 2


@pytest.mark.kernel
def test_pagemap_beyond_user_space_reads_as_absent() -> None:
    vsys = [e for e in procfs.read_maps(os.getpid()) if e.path == "[vsyscall]"]
    addr = vsys[0].start if vsys else 0xFFFFFFFFFF600000
    raw = procfs.read_pagemap(os.getpid(), addr, 1)
    assert raw.tolist() == [0]


@pytest.mark.kernel
def test_pagemap_read_across_the_end_of_user_space_pads_with_zeros() -> None:
    raw = procfs.read_pagemap(os.getpid(), procfs.TASK_SIZE - 2 * 4096, 4)
    assert raw.tolist() == [0, 0, 0, 0]  # nothing mapped at the top; no entries from TASK_SIZE on


@pytest.mark.kernel
def test_pagemap_short_read_below_the_end_of_user_space_is_process_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    """pagemap reads 0 bytes once the target's mm is gone (it exited while we read)."""
    with procfs.PagemapReader(os.getpid()) as reader:
        monkeypatch.setattr(procfs.os, "preadv", lambda fd, bufs, offset: 0)
        with pytest.raises(ProcessGone):
            reader.read(0x400000, 4)


@pytest.mark.kernel
def test_one_stat_reader() -> None:
    st = procfs.read_stat(os.getpid())
    assert (st.state, st.ppid, st.kernel_thread) == ("R", os.getppid(), False)
    faults = procfs.read_fault_counts(os.getpid())  # the same fields, read a moment later
    assert faults["minor"] >= st.minflt > 0 and faults["major"] >= st.majflt
    assert procfs.read_stat(2).kernel_thread  # kthreadd
    assert 0 <= procfs.read_stat(1).starttime <= st.starttime  # init started first
    assert procfs.task_ids(os.getpid())[0] == os.getpid()
    with pytest.raises(ProcessGone):
        procfs.task_ids(2**22 + 1)
    with pytest.raises(ProcessGone):
        procfs.read_stat(2**22 + 1)  # above pid_max's ceiling: never a process
