"""The Linux backend's KSM and swap helpers: parsing, and the global settings always restored."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cowscope.errors import Unsupported
from cowscope.linux import ksm, swap


def test_parse_ksm_stat() -> None:
    text = ("ksm_rmap_items 7\nksm_zero_pages 0\nksm_merging_pages 5\nksm_process_profit 20032\n"
            "ksm_merge_any: no\nksm_mergeable: yes\n")
    assert ksm.parse_ksm_stat(text) == {"ksm_rmap_items": 7, "ksm_zero_pages": 0, "ksm_merging_pages": 5,
                                        "ksm_process_profit": 20032, "ksm_merge_any": "no",
                                        "ksm_mergeable": "yes"}


def test_without_root_swap_and_ksm_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(Unsupported, match="root"):
        swap.SwapFile(1 << 20)
    assert "root" in (ksm.ksm_problem() or "")


def _swaps() -> str:
    with open("/proc/swaps") as f:
        return f.read()


@pytest.mark.kernel
@pytest.mark.skipif(os.geteuid() != 0, reason="swapon and ksm/run need root")
def test_machine_close_removes_its_swapfile_and_ksm_run_is_restored() -> None:
    from cowscope.linux.machine import Machine

    before = ksm._read("run")
    m = Machine()
    m.swapon("8MiB")
    path = m._swap.path
    assert path in _swaps() and os.path.exists(path)
    p = m.spawn("P")
    a = p.mmap(2 * 4096)
    p.fill(a, 2 * 4096, 1)
    p.madvise(a, 2 * 4096, "mergeable")
    m.ksm_scan()
    assert ksm._read("run") == before
    assert p.ksm_stat()["ksm_merging_pages"] == 2
    p.madvise(a, 2 * 4096, "pageout")  # KSM pages stay (the model skips them too)
    m.close()
    assert path not in _swaps() and not os.path.exists(path)


@pytest.mark.kernel
def test_one_cowscope_swap_area_at_a_time_and_not_the_hosts_swap() -> None:
    """Two concurrent runs' swapfiles (both priority 32767) would share pages round robin, and one's
    swapoff swap the other's pages back in: a second area waits for the first to go. A scenario's
    swapfile is not the host's swap (host_model_config)."""
    from cowscope.linux import swap
    from cowscope.linux.machine import host_model_config

    if swap.swap_problem():
        pytest.skip(swap.swap_problem())
    host = host_model_config()["swap"]
    first = swap.SwapFile(1 << 20)
    try:
        assert host_model_config()["swap"] == host
        code = ("import time, sys\nfrom cowscope.linux.swap import SwapFile\nimport cowscope.linux.swap as s\n"
                "s.LOCK_WAIT_S = 0.5\nt = time.monotonic()\n"
                "try:\n    SwapFile(1 << 20).remove()\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert r.stdout.startswith("Unsupported another cowscope swap area"), r.stdout + r.stderr
    finally:
        first.remove()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr
