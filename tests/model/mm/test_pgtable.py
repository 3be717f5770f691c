"""Page tables: 4-level x86-64 addressing over int64[512] PTE tables, range walks, VmPTE accounting."""

from __future__ import annotations

import numpy as np

from cowscope.model import Machine
from cowscope.model.arch import PAGE_SHIFT, PMD_SHIFT, PTE_PRESENT, PTE_RW
from cowscope.model.mm.pgtable import PageTable

PS = 4096
TWO_MB = 1 << 21
BASE = 0x7F0000000000


def test_lookup_without_table_is_none_and_does_not_allocate() -> None:
    pt = PageTable()
    assert pt.lookup(BASE) == 0
    assert pt.tables == {}


def test_set_lookup_and_table_layout() -> None:
    pt = PageTable()
    va = BASE + 5 * TWO_MB + 17 * PS
    pte = (0x1234 << PAGE_SHIFT) | PTE_PRESENT | PTE_RW
    pt.set(va, pte)
    assert pt.lookup(va) == pte and pt.lookup(va + PS) == 0 and pt.lookup(va + 0xFFF) == pte
    (key, table), = pt.tables.items()
    assert key == va >> PMD_SHIFT
    assert table.dtype == np.int64 and table.shape == (512,)
    assert table[17] == pte and np.count_nonzero(table) == 1


def test_blocks_split_at_table_boundaries() -> None:
    pt = PageTable()
    start = BASE + TWO_MB - 3 * PS
    end = BASE + 2 * TWO_MB + 2 * PS
    assert list(pt.blocks(start, end)) == []             # no tables, nothing without alloc
    got = [(lo, hi, va) for _t, lo, hi, va in pt.blocks(start, end, alloc=True)]
    assert got == [(509, 512, start), (0, 512, BASE + TWO_MB), (0, 2, BASE + 2 * TWO_MB)]
    assert len(pt.tables) == 3
    for t, lo, hi, _va in pt.blocks(start, end):
        t[lo:hi] = PTE_PRESENT
    g = pt.gather(start - PS, 3 + 512 + 2 + 2)
    assert g[0] == 0 and np.all(g[1:-1] == PTE_PRESENT) and g[-1] == 0


def test_free_tables_keeps_tables_under_a_range() -> None:
    pt = PageTable()
    for i in range(4):
        pt.table(BASE + i * TWO_MB)
    pt.free_tables([(BASE + TWO_MB + PS, BASE + TWO_MB + 2 * PS), (BASE + 3 * TWO_MB - PS, BASE + 3 * TWO_MB)])
    assert sorted(pt.tables) == [(BASE >> PMD_SHIFT) + 1, (BASE >> PMD_SHIFT) + 2]
    pt.free_tables([])
    assert pt.tables == {}


def test_nr_table_pages_counts_pte_pmd_pud_levels() -> None:
    pt = PageTable()
    assert pt.nr_table_pages() == 0
    pt.table(BASE)
    assert pt.nr_table_pages() == 3                      # PTE + PMD + PUD
    pt.table(BASE + TWO_MB)                               # same PMD table (1 GiB)
    assert pt.nr_table_pages() == 4
    pt.table(BASE + (1 << 30))                            # another PMD table, same PUD (512 GiB)
    assert pt.nr_table_pages() == 6
    pt.table(BASE - (1 << 39))                            # another PUD table
    assert pt.nr_table_pages() == 9


def test_vmpte_follows_the_page_tables() -> None:
    """Touching memory in a fresh 2 MiB region costs a PTE table (4 kB of VmPTE); munmap frees it."""
    m = Machine(allocator="firstfit")
    p = m.spawn()
    before = p.status().fields["VmPTE"]
    a = p.mmap(2 * TWO_MB, addr=0x100000000000)
    assert p.status().fields["VmPTE"] == before
    p.write(a, b"x")
    after_one = p.status().fields["VmPTE"]
    assert after_one == before + 3 * 4                    # PTE, PMD, PUD tables of a new 512 GiB area
    p.write(a + TWO_MB, b"y")
    assert p.status().fields["VmPTE"] == after_one + 4
    p.munmap(a, 2 * TWO_MB)
    assert p.status().fields["VmPTE"] == before
    assert p.mm is not None and p.mm.pgd.nr_table_pages() * 4 == before
    m.check()


def test_fork_copies_tables_only_for_anon_vmas() -> None:
    """The child gets PTE tables for VMAs with anon pages; untouched file mappings fault in later."""
    m = Machine(allocator="firstfit")
    p = m.spawn()
    f = m.create_file("/data/f", data=b"\1" * 4 * PS)
    fm = p.mmap(4 * PS, prot="r", file=f, addr=0x100000000000)
    p.read(fm, 4 * PS)
    a = p.mmap(4 * PS, addr=0x200000000000)
    p.fill(a, 4 * PS, 2)
    c = p.fork()
    assert c.mm is not None
    assert c.mm.pgd.lookup(a) != 0 and c.mm.pgd.lookup(fm) == 0
    assert c.mm.pgd.lookup(a) & PTE_RW == 0 and p.mm is not None and p.mm.pgd.lookup(a) & PTE_RW == 0
    assert c.read(fm, 1) == b"\1" and c.mm.pgd.lookup(fm) != 0
