"""PhysMem: frame allocation and freeing, counts, OOM, and sparse (one-value or buffer) page contents."""

from __future__ import annotations

import numpy as np
import pytest

from cowscope.model.arch import PAGE_SIZE
from cowscope.model.mm.page_alloc import (
    BUFFER,
    FIRST_PFN,
    PG_ANON,
    PG_INUSE,
    ZERO_PFN,
    OutOfMemory,
    PhysMem,
)


def test_alloc_marks_frames_in_use_and_counts() -> None:
    ph = PhysMem(100)
    pfns = ph.alloc(10, PG_ANON, 7)
    assert len(set(pfns.tolist())) == 10 and pfns.min() >= FIRST_PFN
    assert ph.nr_used == 10 and ph.pgalloc == 10
    assert np.all(ph.flags[pfns] == PG_ANON | PG_INUSE)
    assert np.all(ph.refcount[pfns] == 0) and np.all(ph.mapcount[pfns] == 0)
    assert all(ph.page_bytes(int(p)) == b"\7" * PAGE_SIZE for p in pfns)
    one = ph.alloc_one(PG_ANON, 3)
    assert one not in pfns.tolist() and ph.nr_used == 11
    assert ph.flags[ZERO_PFN] & PG_INUSE  # the zero page is reserved


def test_free_and_reuse() -> None:
    ph = PhysMem(16)
    pfns = ph.alloc(16, PG_ANON)
    with pytest.raises(OutOfMemory):
        ph.alloc_one(PG_ANON)
    with pytest.raises(OutOfMemory):
        ph.alloc(1, PG_ANON)
    ph.free(pfns[:4])
    assert ph.nr_used == 12 and ph.pgfree == 4
    assert np.all(ph.flags[pfns[:4]] == 0)
    again = ph.alloc(4, PG_ANON)
    assert sorted(again.tolist()) == sorted(pfns[:4].tolist())   # freed frames come back
    assert ph.nr_used == 16


def test_alloc_grows_past_initial_capacity() -> None:
    ph = PhysMem(1 << 18)
    first = len(ph.refcount)
    pfns = ph.alloc(1 << 17, PG_ANON, 1)
    assert len(ph.refcount) > first and len(ph.refcount) >= int(pfns.max()) + 1
    assert len(ph.refcount) <= FIRST_PFN + (1 << 18)
    assert ph.page_bytes(int(pfns[-1])) == b"\1" * PAGE_SIZE


def test_put_frees_at_zero_refcount() -> None:
    ph = PhysMem(8)
    pfns = ph.alloc(3, PG_ANON)
    ph.refcount[pfns] = [1, 2, 1]
    ph.put(pfns)
    assert ph.nr_used == 1
    assert ph.refcount[pfns[1]] == 1 and ph.flags[pfns[1]] & PG_INUSE
    assert not ph.flags[pfns[0]] & PG_INUSE


def test_uniform_pages_hold_no_buffer() -> None:
    ph = PhysMem(8)
    pfn = ph.alloc_one(PG_ANON, 0)
    ph.write(pfn, 100, b"\0" * 50)              # same value: still uniform
    assert ph.content[pfn] == 0 and pfn not in ph.data
    ph.write(pfn, 0, b"\5" * PAGE_SIZE)          # a whole page of one other value
    assert ph.content[pfn] == 5 and pfn not in ph.data
    ph.write(pfn, 10, b"ab")                     # now it needs a buffer
    assert ph.content[pfn] == BUFFER and len(ph.data[pfn]) == PAGE_SIZE
    assert ph.read(pfn, 8, 6) == b"\5\5ab\5\5"
    ph.fill(pfn, 0, PAGE_SIZE, 9)                # a whole-page fill drops it again
    assert ph.content[pfn] == 9 and pfn not in ph.data
    ph.fill(pfn, 4000, 10, 1)                    # a partial fill of another value
    assert ph.read(pfn, 3998, 4) == b"\t\t\1\1" and ph.content[pfn] == BUFFER


def test_free_drops_buffers() -> None:
    ph = PhysMem(8)
    pfn = ph.alloc_one(PG_ANON)
    ph.write(pfn, 0, b"xyz")
    ph.free(np.array([pfn]))
    assert pfn not in ph.data
    again = ph.alloc_one(PG_ANON, 0)
    assert again == pfn and ph.page_bytes(again) == bytes(PAGE_SIZE)


def test_copy_is_deep() -> None:
    ph = PhysMem(8)
    src = ph.alloc(2, PG_ANON, 4)
    ph.write(int(src[1]), 0, b"hello")
    dst = ph.alloc(2, PG_ANON)
    ph.copy(dst, src)
    assert ph.page_bytes(int(dst[0])) == b"\4" * PAGE_SIZE and int(dst[0]) not in ph.data
    assert ph.read(int(dst[1]), 0, 6) == b"hello\4"
    ph.write(int(dst[1]), 0, b"J")
    assert ph.read(int(src[1]), 0, 1) == b"h"     # the source did not change


def test_set_page_from_file_bytes() -> None:
    ph = PhysMem(8)
    a, b, c = (ph.alloc_one(0) for _ in range(3))
    ph.set_page(a, b"\3" * PAGE_SIZE)
    ph.set_page(b, b"short")                     # a partial last page: zero-padded
    ph.set_page(c, 0x11)
    assert ph.content[a] == 3 and a not in ph.data
    assert ph.page_bytes(b) == b"short" + bytes(PAGE_SIZE - 5)
    assert ph.page_bytes(c) == b"\x11" * PAGE_SIZE
