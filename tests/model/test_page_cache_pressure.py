"""Page-cache allocations under memory pressure behave as the kernel's: clean (or written back)
page-cache pages no one maps are reclaimed first, then the OOM killer runs; never a raw
OutOfMemory (a 6 MiB machine with files raised one from File.add_to_page_cache)."""

from __future__ import annotations

import random

import pytest

from cowscope.errors import CowscopeError, OOMKilled
from cowscope.model import Machine

PAGE = 4096


def test_files_larger_than_ram_are_cached_by_evicting_unmapped_pages() -> None:
    m = Machine(ram="6MiB")
    big = m.create_file("/big", data=b"".join(bytes([i % 251]) * PAGE for i in range(2048)))  # 8 MiB
    assert m.stat["pgsteal_file"] > 0
    m.pwrite(big, 5 * PAGE, b"written")  # dirty: written back before it is evicted
    other = m.create_file("/other", data=b"o" * (2048 * PAGE))
    assert 5 not in big.page_cache  # evicted since
    assert m.pread(big, 5 * PAGE, 8) == b"written\x05"
    assert m.pread(big, 2047 * PAGE, 2) == bytes([2047 % 251]) * 2
    assert m.pread(other, 0, 1) == b"o"


def test_mapped_page_cache_stays_and_anon_pressure_ends_in_the_oom_killer() -> None:
    m = Machine(ram="6MiB")
    f = m.create_file("/lib", data=b"L" * (64 * PAGE))
    reader = m.spawn("reader")
    a = reader.mmap(64 * PAGE, "r", file=f)
    assert reader.read(a, 1) == b"L"
    mapped = {pg: pfn for pg, pfn in f.page_cache.items() if m.phys.mapcount[pfn]}
    hog = m.spawn("hog")
    regions = [hog.mmap(1400 * PAGE) for _ in range(2)]  # each within the overcommit heuristic
    with pytest.raises(OOMKilled):
        for b in regions:
            hog.fill(b, 1400 * PAGE, 1)
    assert m.stat["oom_kill"] >= 1 and reader.alive
    assert {pg: f.page_cache.get(pg) for pg in mapped} == mapped  # mapped pages were not taken
    assert reader.read(a + 63 * PAGE, 1) == b"L"


@pytest.mark.parametrize("seed", range(3))
def test_random_programs_on_a_small_machine_end_in_cowscope_outcomes(seed: int) -> None:
    rnd = random.Random(seed)
    m = Machine(ram="6MiB")
    files = [m.create_file(f"/f{i}", data=bytes([65 + i]) * (64 * PAGE)) for i in range(4)]
    procs = [m.spawn("P")]
    for step in range(120):
        live = [p for p in procs if p.alive] or [m.spawn("Q")]
        procs.extend(x for x in live if x not in procs)
        p = rnd.choice(live)
        op = rnd.choice(["mapfile", "anon", "fork", "read", "newfile"])
        try:
            if op == "mapfile":
                f = rnd.choice(files)
                a = p.mmap(64 * PAGE, "r", file=f)
                want = b"z" if f.path.startswith("/n") else bytes([65 + int(f.path[2:])])
                assert p.read(a + 3 * PAGE, 1) == want
            elif op == "anon":
                p.fill(p.mmap(128 * PAGE), 128 * PAGE, 1)
            elif op == "fork" and len(live) < 6:
                procs.append(p.fork())
            elif op == "read":
                f = rnd.choice(files)
                assert len(m.pread(f, 0, 64 * PAGE)) == 64 * PAGE
            elif op == "newfile":
                files.append(m.create_file(f"/n{step}", data=b"z" * (100 * PAGE)))
        except CowscopeError:
            pass  # OOMKilled, ENOMEM: outcomes; anything else (OutOfMemory) fails the test
    assert m.stat["pgsteal_file"] > 0
