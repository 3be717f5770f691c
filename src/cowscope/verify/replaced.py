"""Which pages a call gave a new frame: PFNs read just before and just after it.

A checkpoint's PFNs alone cannot tell whether a page was replaced since the previous one: the
frame a copy-on-write write took may be the page's old one again (another process freed it and
the allocator handed it back: the model's does so at once, the kernel's per-CPU lists often).
So every write, every call a thread runs (on its own stack) and every malloc call (its own
writes: chunk headers, the tcache, the top chunk) notes the pages of the process's regions it
gave a new frame, on both backends alike (PFNs: root on the kernel).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..observe.records import PAGE_SIZE, pagemap_pfns

if TYPE_CHECKING:
    from .process import Region, TracedProcess

#: One observed stretch: (region key, first page, pages, region address).
Span = tuple[str, int, int, int]

#: The calls that run malloc: its own writes may copy heap and arena pages.
MALLOC_OPS = frozenset({"malloc", "calloc", "realloc", "memalign", "free", "posix_memalign", "aligned_alloc",
                        "mallopt", "malloc_trim"})


def is_arena(key: str) -> bool:
    """A region that is a glibc arena heap ("A1", "A2", ...: verify.process)."""
    return key[:1] == "A" and key[1:].isdigit()


def spans(regions: Iterable[Region], addr: int, length: int) -> list[Span]:
    """The pages of each region that [addr, addr+length) touches."""
    out = []
    for r in regions:
        lo, hi = max(addr, r.addr), min(addr + length, r.addr + r.length)
        if lo < hi:
            first = (lo - r.addr) // PAGE_SIZE
            out.append((r.key, first, (hi - 1 - r.addr) // PAGE_SIZE + 1 - first, r.addr))
    return out


def whole(regions: Iterable[Region]) -> list[Span]:
    """Every page of each region."""
    return [(r.key, 0, r.npages, r.addr) for r in regions]


def noting(tp: TracedProcess, where: list[Span], call: Callable[[], Any]) -> Any:
    """Run call; add to tp.replaced the pages of `where` whose frame it changed."""
    before = [frames(tp, a + i * PAGE_SIZE, n) for _k, i, n, a in where]
    try:
        return call()
    finally:
        for (key, i, n, a), old in zip(where, before, strict=True):
            new = frames(tp, a + i * PAGE_SIZE, n)
            tp.replaced.setdefault(key, set()).update(
                i + j for j, (x, y) in enumerate(zip(old, new, strict=True)) if x and y and x != y)


def frames(tp: TracedProcess, addr: int, npages: int) -> list[int]:
    """PFNs of npages from addr (0 where none; nothing once the process is gone)."""
    if not tp._p.alive:
        return [0] * npages
    return [int(x) for x in pagemap_pfns(tp._p.pagemap_raw(addr, npages))]
