"""Read-only views of a ptmalloc heap: the `.state` dump format and a consistency walk."""

from __future__ import annotations

from dataclasses import dataclass

from .layout import (
    AV_FASTBINS,
    AV_HAVE_FASTCHUNKS,
    AV_LAST_REMAINDER,
    AV_SYSTEM_MEM,
    AV_TOP,
    IS_MMAPPED,
    MINSIZE,
    NBINS,
    NFASTBINS,
    PREV_INUSE,
    SIZE_BITS,
    TC_ENTRIES,
    TCACHE_MAX_BINS,
    TLS_TCACHE,
    bin_index,
)


def _fmt(addr: int, H: int, A: int | None = None) -> str:
    """Format a pointer as the harness does (0, H+off, A+off)."""
    if addr == 0:
        return "0"
    if A is not None and A <= addr < A + 0x898:
        return f"A+{addr - A:#x}"
    return f"H+{addr - H:#x}" if addr >= H else f"{addr:#x}"


def tcache_lists(alloc) -> dict[int, tuple[int, list[int]]]:
    """tcache bin -> (count, entries in list order) for non-empty bins."""
    r = alloc.host.read_u64
    tc = r(alloc.host.tls + TLS_TCACHE)
    out: dict[int, tuple[int, list[int]]] = {}
    if not tc:
        return out
    for i in range(TCACHE_MAX_BINS):
        count = alloc._r16(tc + 2 * i)
        e = r(tc + TC_ENTRIES + 8 * i)
        if not count and not e:
            continue
        items = []
        while e and len(items) <= count + 8:
            items.append(e)
            e = (e >> 12) ^ r(e)
        out[i] = (count, items)
    return out


def fastbin_lists(alloc) -> dict[int, list[int]]:
    """fastbin index -> chunk pointers, head first."""
    r = alloc.host.read_u64
    out = {}
    for i in range(NFASTBINS):
        p = r(alloc.A + AV_FASTBINS + 8 * i)
        items = []
        while p and len(items) < 100000:
            items.append(p)
            p = ((p + 16) >> 12) ^ r(p + 16)
        if items:
            out[i] = items
    return out


def bin_lists(alloc) -> dict[int, list[int]]:
    """bin index (1 = unsorted) -> chunk pointers in fd order."""
    r = alloc.host.read_u64
    out = {}
    for i in range(1, NBINS):
        b = alloc.bin_at(i)
        p = r(b + 16)
        items = []
        while p not in (b, 0) and len(items) < 100000:  # 0: malloc not initialised yet
            items.append(p)
            p = r(p + 16)
        if items:
            out[i] = items
    return out


def dump_state(alloc, H: int) -> list[str]:
    """The bins, tcache and parameters, in the `.state` format of the reference harness."""
    r = alloc.host.read_u64
    A = alloc.A
    top = r(A + AV_TOP)
    brk = alloc.host.sbrk(0)
    line = f"brk=H+{brk - H:#x} top={_fmt(top, H, A)}"
    if top and top != alloc.UNSORTED:
        line += f" topsz={r(top + 8):#x}"
    bm = ",".join(f"{x:#x}" for x in alloc.binmap())
    line += (f" last_remainder={_fmt(r(A + AV_LAST_REMAINDER), H, A)} system_mem={r(A + AV_SYSTEM_MEM):#x}"
             f" have_fastchunks={alloc._r32(A + AV_HAVE_FASTCHUNKS)} binmap={bm}")
    p = alloc.params()
    lines = [line, (f"mp: mmap_threshold={p['mmap_threshold']:#x} trim_threshold={p['trim_threshold']:#x}"
                    f" top_pad={p['top_pad']:#x} n_mmaps={p['n_mmaps']} mmapped_mem={p['mmapped_mem']:#x}"
                    f" no_dyn_threshold={p['no_dyn_threshold']} sbrk_base={_fmt(p['sbrk_base'], H)}")]
    for i, (count, items) in tcache_lists(alloc).items():
        entries = " ".join(_fmt(e, H) for e in items)
        lines.append(f"tcache[{i}] csize={(i + 2) * 16:#x} count={count}: {entries}")
    for i, items in fastbin_lists(alloc).items():
        lines.append(f"fastbin[{i}] csize={(i + 2) * 16:#x}: " + " ".join(_fmt(c, H) for c in items))
    for i, items in bin_lists(alloc).items():
        name = "unsorted" if i == 1 else f"bin[{i}]"
        lines.append(f"{name}: " + " ".join(f"{_fmt(c, H)}/{r(c + 8):#x}" for c in items))
    return lines


@dataclass
class HeapCheck:
    """Result of check_heap: chunk counts by where they are."""

    chunks: int
    in_use: int
    tcache: int
    fast: int
    binned: int


def check_heap(alloc, in_use: set[int] | None = None) -> HeapCheck:
    """Walk the sbrk heap chunk by chunk and cross-check every bin; AssertionError on corruption.

    Every chunk between sbrk_base and top must be in exactly one of: in use, a tcache bin, a
    fastbin, or a regular bin of the right index; free regular chunks have their footer and a
    clear P bit in the next chunk, none are adjacent; the top ends at the break.
    """
    r = alloc.host.read_u64
    A = alloc.A
    base = alloc.heap_start()
    top = r(A + AV_TOP)
    if base == 0:
        return HeapCheck(0, 0, 0, 0, 0)
    tc_members = {e - 16: i for i, (_, items) in tcache_lists(alloc).items() for e in items}
    for i, (count, items) in tcache_lists(alloc).items():
        assert count == len(items) <= 7, f"tcache[{i}] count {count} vs {len(items)} entries"
    fast_members = {c: i for i, items in fastbin_lists(alloc).items() for c in items}
    bin_members = {c: i for i, items in bin_lists(alloc).items() for c in items}
    assert not (set(tc_members) & set(fast_members)), "chunk both in tcache and a fastbin"
    assert not (set(bin_members) & (set(tc_members) | set(fast_members))), "chunk in two kinds of bin"
    for i in range(1, NBINS):
        b = alloc.bin_at(i)
        p = r(b + 16)
        prev = b
        while p != b:
            assert r(p + 24) == prev, f"bin {i}: bk of {p:#x} broken"
            prev, p = p, r(p + 16)
        assert r(b + 24) == prev, f"bin {i}: header bk broken"
    for i, items in bin_lists(alloc).items():
        if i < 64:
            continue
        sizes = [r(c + 8) for c in items]
        assert sizes == sorted(sizes, reverse=True), f"large bin {i} not sorted"
        heads = [c for k, c in enumerate(items) if k == 0 or sizes[k] != sizes[k - 1]]
        ring, c = [], heads[0]
        for _ in range(len(heads)):
            ring.append(c)
            assert r(r(c + 32) + 40) == c, f"bin {i}: nextsize ring broken at {c:#x}"
            c = r(c + 32)
        assert ring == heads and c == heads[0], f"bin {i}: nextsize ring is not the size heads"
    brk = alloc.host.sbrk(0)
    p = base
    n = used = tcn = fastn = binned = 0
    prev_free = False
    seen_mem_in_use = set()
    while p != top:
        assert base <= p < top, f"heap walk left the heap at {p:#x}"
        head = r(p + 8)
        size = head & ~SIZE_BITS
        assert size >= MINSIZE and size % 16 == 0 and not head & IS_MMAPPED, f"bad chunk {p:#x} {head:#x}"
        n += 1
        nxt = p + size
        nhead = r(nxt + 8)
        if p in tc_members:
            tcn += 1
            assert tc_members[p] == (size - 17) // 16, f"tcache chunk {p:#x} in the wrong bin"
            assert nhead & PREV_INUSE
            prev_free = False
        elif p in fast_members:
            fastn += 1
            assert fast_members[p] == (size >> 4) - 2, f"fast chunk {p:#x} in the wrong bin"
            assert nhead & PREV_INUSE
            prev_free = False
        elif p in bin_members:
            binned += 1
            i = bin_members[p]
            assert i == 1 or i == bin_index(size), f"chunk {p:#x} size {size:#x} in bin {i}"
            assert not prev_free, f"two adjacent free chunks at {p:#x}"
            assert not nhead & PREV_INUSE, f"free chunk {p:#x}: next has P set"
            assert r(nxt) == size, f"free chunk {p:#x}: footer {r(nxt):#x} != {size:#x}"
            prev_free = True
        else:
            # fenceposts (size 0x10) never occur in a contiguous heap; anything else is in use
            used += 1
            seen_mem_in_use.add(p + 16)
            assert nhead & PREV_INUSE or nxt == top, f"in-use chunk {p:#x}: next P clear"
            prev_free = False
        p = nxt
    tsize = r(top + 8) & ~SIZE_BITS
    assert r(top + 8) & PREV_INUSE, "top without P"
    noncontiguous = alloc._r32(A + 4) & 2
    assert top + tsize <= brk or noncontiguous, f"top ends at {top + tsize:#x}, past brk {brk:#x}"
    assert not prev_free, "a free chunk borders top"
    assert len(tc_members) == tcn and len(fast_members) == fastn and len(bin_members) == binned, \
        "a binned chunk is not on the heap walk"
    if in_use is not None:
        heap_in_use = {m for m in in_use if base <= m < top}
        assert heap_in_use <= seen_mem_in_use, "a live allocation is not an in-use chunk"
    return HeapCheck(n, used, tcn, fastn, binned)
