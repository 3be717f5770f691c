"""Readahead and the page cache under faults and read(2)/write(2) (mm/filemap.py, mm/readahead.py).

The figures are the ones measured on Linux 6.18 (read_ahead_kb 8192: a 2048-page window); the
conformance cases D16-D18 check the same behaviours against the kernel.
"""

from __future__ import annotations

import pytest

from cowscope.model import Machine
from cowscope.model.mm.readahead import get_init_ra_size

PS = 4096
HINT = 0x7F0000000000  # 2 MiB aligned


def _file(m: Machine, name: str, npages: int, cached: bool = False):
    return m.create_file(name, data=b"".join(bytes([i % 251 + 1]) * PS for i in range(npages)), cached=cached)


def _present(p, a: int, n: int) -> str:
    return "".join("f" if e.present else "." for e in p.pagemap(a, n))


@pytest.mark.parametrize(("req", "size"), [(1, 4), (2, 8), (64, 256), (65, 256), (512, 1024), (513, 2048)])
def test_initial_window(req: int, size: int) -> None:
    assert get_init_ra_size(req, 2048) == size


def test_cold_fault_reads_the_window_around_it_once() -> None:
    m = Machine()
    f = _file(m, "/f", 3000)
    p = m.spawn()
    a = p.mmap(3000 * PS, prot="r", file=f, addr=HINT, fixed=True)
    major = p.fault_counts()["major"]
    p.read(a, 1)
    assert p.fault_counts()["major"] == major + 1
    assert len(f.page_cache) == 2048                        # [0, 1024 + 1024): clipped at 0
    assert _present(p, a, 20) == "f" * 16 + "...."
    p.touch(a, 1600 * PS)                                   # past the PG_readahead page 1536:
    assert p.fault_counts()["major"] == major + 1          # the next window came in, all minor
    assert len(f.page_cache) == 3000 and not f.ra_marks
    g = _file(m, "/g", 3000)
    q = m.spawn()
    b = q.mmap(3000 * PS, prot="r", file=g, addr=HINT, fixed=True)
    major = q.fault_counts()["major"]
    q.read(b + 2900 * PS, 1)                                # the window centred on p2900
    assert q.fault_counts()["major"] == major + 1 and sorted(g.page_cache)[0] == 2900 - 1024


def test_mapping_inside_a_block_faults_around_from_its_start() -> None:
    m = Machine()
    f = _file(m, "/f", 64, cached=True)
    p = m.spawn()
    a = p.mmap(40 * PS, prot="r", file=f, addr=HINT + 3 * PS, fixed=True)
    p.read(a, 1)
    assert _present(p, a, 20) == "f" * 16 + "...."
    e = p.mmap(16 * PS, prot="r", file=f, addr=HINT + 507 * PS, fixed=True)
    p.read(e, 1)
    assert _present(p, e, 8) == "fffff..."                 # clipped to the PTE table


def test_pread_reads_ahead_and_marks_the_async_page() -> None:
    m = Machine()
    f = _file(m, "/f", 64)
    assert m.pread(f, 0, PS) == bytes([1]) * PS
    assert sorted(f.page_cache) == [0, 1, 2, 3] and f.ra_marks == {1}
    p = m.spawn()
    a = p.mmap(64 * PS, prot="r", file=f, addr=HINT, fixed=True)
    major = p.fault_counts()["major"]
    p.read(a, 1)
    assert p.fault_counts()["major"] == major and _present(p, a, 6) == "f.ff.."
    p.read(a + PS, 1)                                       # the marked page: async readahead
    assert 1 not in f.ra_marks and len(f.page_cache) == 64
    g = _file(m, "/g", 64)
    m.pread(g, 30 * PS, 100)                                # a small random read: that page only
    assert sorted(g.page_cache) == [30] and not g.ra_marks
    m.pread(g, 0, 64 * PS)                                  # the whole file from its start
    assert len(g.page_cache) == 64


def test_pwrite_caches_and_dirties_only_the_pages_it_writes() -> None:
    m = Machine()
    f = _file(m, "/f", 64)
    m.pwrite(f, 40 * PS + 10, b"hello")
    assert sorted(f.page_cache) == [40]
    p = m.spawn()
    a = p.mmap(64 * PS, prot="r", shared=True, file=f, addr=HINT, fixed=True)
    major = p.fault_counts()["major"]
    assert p.read(a + 40 * PS + 8, 8) == bytes([41, 41]) + b"hello" + bytes([41])
    assert p.fault_counts()["major"] == major
    (s,) = [x for x in p.smaps() if x.vma.start == a]
    assert s.fields["Private_Dirty"] == 4
    m.pwrite(f, 64 * PS, b"tail")                           # extends the file
    assert f.size == 64 * PS + 4 and m.pread(f, 64 * PS, 10) == b"tail"
    m.check()
