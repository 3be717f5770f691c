"""Strips show a PMD-mapped THP as one unit (legend H / h), on the model's and the kernel's views."""

from __future__ import annotations

import os

import pytest

from cowscope.model import Machine
from cowscope.observe.snapshot import take
from cowscope.report.strips import CHARS, LEGEND, page_codes, runs

HUGE = 2 << 20
P = 4096


def _huge_block(p) -> int:
    base = p.mmap(2 * HUGE)
    a = (base + HUGE - 1) & ~(HUGE - 1)
    p.madvise(a, HUGE, "hugepage")
    return a


def _mapping(snap, pid: int, addr: int):
    return next(mv for mv in snap.process(pid).mappings if mv.vma.start <= addr < mv.vma.end)


def test_pmd_mapped_folio_is_one_unit_in_strips() -> None:
    m = Machine()
    p = m.spawn()
    a = _huge_block(p)
    p.write(a, b"x")
    mv = _mapping(take(m, "one"), p.pid, a)
    off = (a - mv.vma.start) // P
    codes = page_codes(mv.pages)
    assert "".join(CHARS[c] for c in codes[off:off + 512]) == "H" * 512
    assert "H×512" in runs(mv.pages).plain
    c = p.fork()
    mv = _mapping(take(m, "fork"), c.pid, a)
    assert set(page_codes(mv.pages)[off:off + 512].tolist()) == {CHARS.index("h")}
    c.write(a, b"y")  # the child's PMD is split: 4 KiB pages again
    mv = _mapping(take(m, "split"), c.pid, a)
    child = "".join(CHARS[c] for c in page_codes(mv.pages)[off:off + 3])
    assert child == "#22"
    assert any(ch == "H" for ch, _ in LEGEND)


def test_huge_zero_page_stays_the_zero_page() -> None:
    m = Machine()
    p = m.spawn()
    a = _huge_block(p)
    p.read(a, 1)
    mv = _mapping(take(m, "zero"), p.pid, a)
    off = (a - mv.vma.start) // P
    assert set(page_codes(mv.pages)[off:off + 512].tolist()) == {1}


@pytest.mark.kernel
@pytest.mark.skipif(os.geteuid() != 0, reason="PFNs and kpagecount need root")
def test_kernel_views_mark_the_same_pages_huge() -> None:
    from cowscope.linux.machine import Machine as LinuxMachine

    with LinuxMachine() as lm:
        p = lm.spawn("P")
        a = _huge_block(p)
        p.write(a, b"x")
        p.write(a + HUGE, b"y")  # a 4 KiB page after the THP (no MADV_HUGEPAGE there)
        assert p.pagemap_huge(a, 1024).tolist() == [[0, 512]]
        snap = take(lm, "kernel")
        mv = _mapping(snap, p.pid, a)
        off = (a - mv.vma.start) // P
        assert "".join(CHARS[c] for c in page_codes(mv.pages)[off:off + 512]) == "H" * 512
        after = _mapping(snap, p.pid, a + HUGE)
        assert CHARS[page_codes(after.pages)[(a + HUGE - after.vma.start) // P]] == "#"
