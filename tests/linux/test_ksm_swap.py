"""The Linux backend's KSM and swap helpers: parsing, and the global settings always restored."""

from __future__ import annotations

import os

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
