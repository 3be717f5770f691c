"""glibc malloc in parent and child: which heap pages fork shares and which a free() copies."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import Segfault
from . import PAGE, scenario

if TYPE_CHECKING:
    from ..process import TracedProcess
    from ..trace import TracedMachine


def _heap_pages(m: TracedMachine, p: TracedProcess) -> list[str]:
    start = p.heap_base
    end = p.brk()
    return m.tokens(p, start, (end - start) // PAGE)


@scenario("H01", "malloc creates the heap; fork shares its pages")
def malloc_fork(m: TracedMachine) -> None:
    p = m.spawn("P")
    x = p.malloc(100)
    p.fill(x, 100, 0xAB)
    c = p.fork()
    m.checkpoint("after fork")
    pages = _heap_pages(m, p)
    m.expect(len(pages) > 0, "there is a heap")
    m.expect(all(t in ("S2", "-") for t in pages), f"heap pages shared or absent: {pages}")
    m.expect_eq(_heap_pages(m, c), pages, "child heap pagemap")
    m.expect_eq(c.read(x, 100), b"\xab" * 100, "child reads the block")


@scenario("H02", "free() in the child copies the pages it writes (tcache header and chunk)")
def free_in_child(m: TracedMachine) -> None:
    p = m.spawn("P")
    ptrs = [p.malloc(5000) for _ in range(8)]
    for q in ptrs:
        p.fill(q, 5000, 0x11)
    c = p.fork()
    c.free(ptrs[4])
    m.checkpoint("child freed one block")
    pages = _heap_pages(m, c)
    m.expect("X" in pages, f"the child copied at least one heap page: {pages}")
    m.expect(pages.count("X") <= 3, f"a free copies only the pages it writes: {pages}")
    m.expect_eq(p.read(ptrs[4], 16), b"\x11" * 16, "the parent's block is intact")


@scenario("H03", "malloc in the child after fork: only the touched heap pages are copied")
def malloc_in_child(m: TracedMachine) -> None:
    p = m.spawn("P")
    x = p.malloc(64)
    p.fill(x, 64, 0x01)
    c = p.fork()
    y = c.malloc(64)
    c.fill(y, 64, 0x02)
    m.checkpoint("child malloc")
    m.expect(_heap_pages(m, c).count("X") >= 1, "child copied a heap page")
    m.expect_eq(p.read(x, 64), b"\x01" * 64, "parent block")


@scenario("H04", "large malloc is its own mmap'd chunk outside the heap; free unmaps it")
def malloc_large(m: TracedMachine) -> None:
    p = m.spawn("P")
    p.free(p.malloc(16))  # malloc initialises: the heap and its tcache exist now
    x = p.malloc(1 << 20)
    m.expect_eq(x % PAGE, 0x10, "chunk header then user data at +0x10 of a page")
    m.expect(not p.heap_base <= x < p.brk(), "not in the brk heap")
    p.fill(x, 2 * PAGE - 0x10, 0x01)
    m.expect_eq(m.tokens(p, x - 0x10, 3), ["X", "X", "-"], "touched pages only")
    p.free(x)
    m.checkpoint("freed")
    m.expect_raises(Segfault, lambda: p.read(x, 1), "the chunk is unmapped after free")


@scenario("H05", "realloc keeps contents; calloc returns zeroes")
def realloc_calloc(m: TracedMachine) -> None:
    p = m.spawn("P")
    x = p.malloc(32)
    p.write(x, bytes(range(32)))
    y = p.realloc(x, 4000)
    m.expect_eq(p.read(y, 32), bytes(range(32)), "realloc kept the data")
    m.expect(p.malloc_usable_size(y) >= 4000, "usable size covers the request")
    z = p.calloc(10, 100)
    m.expect_eq(p.read(z, 1000), bytes(1000), "calloc zeroes")
    c = p.fork()
    c.free(y)
    m.expect_eq(p.read(y, 32), bytes(range(32)), "parent unaffected by the child's free")
