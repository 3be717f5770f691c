"""The PFN-indexed files: one coalescing reader for kpagecount and kpageflags, the zero pages' PFNs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from cowscope.observe import kpage
from cowscope.observe.records import KPF_ZERO_PAGE

ROOT = os.geteuid() == 0


def test_coalesced_reads_map_back_to_each_pfn(tmp_path: Path) -> None:
    """Scattered, repeated and unsorted PFNs, runs closer and farther apart than KPAGE_GAP, one
    past the end of the file: each gets its own entry (0 past the end, as at the end of memory)."""
    n = 4 * kpage.KPAGE_GAP
    (tmp_path / "kpagecount").write_bytes((np.arange(n, dtype=np.uint64) * 3 + 1).tobytes())
    pfns = [5, 3, 5, 4 + kpage.KPAGE_GAP, n - 1, 2 * kpage.KPAGE_GAP + 70, 0, n + 10, 3]
    got = kpage.read_kpagecount(pfns, root=str(tmp_path))
    assert got.dtype == np.int64
    assert got.tolist() == [p * 3 + 1 if p < n else 0 for p in pfns]
    assert kpage.read_kpagecount([], root=str(tmp_path)).tolist() == []


def test_kpage_unavailable_is_clear(tmp_path: Path) -> None:
    f = tmp_path / "kpagecount"
    f.write_bytes(b"\x00" * 64)
    f.chmod(0)
    if ROOT:
        assert kpage.read_kpagecount([1, 2], root=str(tmp_path)).tolist() == [0, 0]
    else:
        with pytest.raises(kpage.KpageUnavailable, match="needs root"):
            kpage.read_kpagecount([1], root=str(tmp_path))
    assert not kpage.kpage_available(root=str(tmp_path / "missing"))


@pytest.mark.kernel
def test_zero_page_is_found_and_mapped_by_no_one() -> None:
    if not ROOT:
        assert kpage.zero_pfns() == frozenset() and not kpage.kpage_available()
        return
    zero = kpage.zero_pfns()
    assert len(zero) == 1 and kpage.kpage_available()
    assert kpage.read_kpagecount(list(zero))[0] == 0
    assert int(kpage.read_kpageflags(list(zero))[0]) & KPF_ZERO_PAGE
