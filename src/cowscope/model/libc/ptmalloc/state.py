"""Read-only views of a ptmalloc heap: the `.state` dump format and a consistency walk."""

from __future__ import annotations

from dataclasses import dataclass, field

from .layout import (
    AV_FASTBINS,
    AV_FLAGS,
    AV_HAVE_FASTCHUNKS,
    AV_LAST_REMAINDER,
    AV_SIZE,
    AV_SYSTEM_MEM,
    AV_TOP,
    IS_MMAPPED,
    MINSIZE,
    NBINS,
    NFASTBINS,
    NONCONTIGUOUS_BIT,
    PREV_INUSE,
    SIZE_BITS,
    TC_COUNTS,
    TC_ENTRIES,
    TCACHE_MAX_BINS,
    TE_NEXT,
    TLS_TCACHE,
    bin_index,
    csize2tidx,
    fastbin_index,
    protect_ptr,
)


def _fmt(addr: int, H: int, A: int | None = None, labels=None) -> str:
    """Format a pointer as the harness does (0, A+off, A<k>+off in a named heap, H+off)."""
    if addr == 0:
        return "0"
    if A is not None and A <= addr < A + AV_SIZE:
        return f"A+{addr - A:#x}"
    heap = labels.find(addr) if labels is not None else None
    if heap is not None:
        return f"{heap[0]}+{addr - heap[1]:#x}"
    return f"H+{addr - H:#x}" if addr >= H else f"{addr:#x}"


def tcache_lists(alloc) -> dict[int, tuple[int, list[int]]]:
    """tcache bin -> (count, entries in list order) for non-empty bins."""
    r = alloc.host.read_u64
    tc = r(alloc.tls + TLS_TCACHE)
    out: dict[int, tuple[int, list[int]]] = {}
    if not tc:
        return out
    for i in range(TCACHE_MAX_BINS):
        count = alloc._r16(tc + TC_COUNTS + 2 * i)
        e = r(tc + TC_ENTRIES + 8 * i)
        if not count and not e:
            continue
        items = []
        while e and len(items) <= count + 8:
            items.append(e)
            e = protect_ptr(e, r(e + TE_NEXT))
        out[i] = (count, items)
    return out


def fastbin_lists(alloc) -> dict[int, list[int]]:
    """fastbin index -> chunk pointers, head first."""
    out = {}
    for i in range(NFASTBINS):
        p = alloc.host.read_u64(alloc.A + AV_FASTBINS + 8 * i)
        items = []
        while p and len(items) < 100000:
            items.append(p)
            p = protect_ptr(p + 16, alloc.fd(p))
        if items:
            out[i] = items
    return out


def bin_lists(alloc) -> dict[int, list[int]]:
    """bin index (1 = unsorted) -> chunk pointers in fd order."""
    fd = alloc.fd
    out = {}
    for i in range(1, NBINS):
        b = alloc.bin_at(i)
        p = fd(b)
        items = []
        while p not in (b, 0) and len(items) < 100000:  # 0: malloc not initialised yet
            items.append(p)
            p = fd(p)
        if items:
            out[i] = items
    return out


def dump_state(alloc, H: int, labels=None) -> list[str]:
    """The bins, tcache and parameters, in the `.state` format of the reference harness
    (main_arena and the calling thread's tcache; `labels` names the heaps of other arenas)."""
    r = alloc.host.read_u64
    A = alloc.A
    top = r(A + AV_TOP)
    brk = alloc.host.sbrk(0)
    line = f"brk=H+{brk - H:#x} top={_fmt(top, H, A)}"
    if top and top != alloc.UNSORTED:
        line += f" topsz={alloc.chunksize_nomask(top):#x}"
    bm = ",".join(f"{x:#x}" for x in alloc.binmap())
    line += (f" last_remainder={_fmt(r(A + AV_LAST_REMAINDER), H, A)} system_mem={r(A + AV_SYSTEM_MEM):#x}"
             f" have_fastchunks={alloc._r32(A + AV_HAVE_FASTCHUNKS)} binmap={bm}")
    p = alloc.params()
    lines = [line, (f"mp: mmap_threshold={p['mmap_threshold']:#x} trim_threshold={p['trim_threshold']:#x}"
                    f" top_pad={p['top_pad']:#x} n_mmaps={p['n_mmaps']} mmapped_mem={p['mmapped_mem']:#x}"
                    f" no_dyn_threshold={p['no_dyn_threshold']} sbrk_base={_fmt(p['sbrk_base'], H)}")]
    for i, (count, items) in tcache_lists(alloc).items():
        entries = " ".join(_fmt(e, H, None, labels) for e in items)
        lines.append(f"tcache[{i}] csize={(i + 2) * 16:#x} count={count}: {entries}")
    for i, items in fastbin_lists(alloc).items():
        lines.append(f"fastbin[{i}] csize={(i + 2) * 16:#x}: " + " ".join(_fmt(c, H) for c in items))
    for i, items in bin_lists(alloc).items():
        name = "unsorted" if i == 1 else f"bin[{i}]"
        lines.append(f"{name}: " + " ".join(f"{_fmt(c, H)}/{alloc.chunksize_nomask(c):#x}" for c in items))
    return lines


def check_heap(alloc, in_use: set[int] | None = None) -> None:
    """Walk the sbrk heap chunk by chunk and cross-check every bin; AssertionError on corruption.

    Every chunk between sbrk_base and top must be in exactly one of: in use, a tcache bin, a
    fastbin, or a regular bin of the right index; free regular chunks have their footer and a
    clear P bit in the next chunk, none are adjacent; the top ends at the break.
    """
    base = alloc.heap_start()
    if base == 0:
        return
    tc_members = {e - 16: i for i, (_, items) in tcache_lists(alloc).items() for e in items}
    for i, (count, items) in tcache_lists(alloc).items():
        assert count == len(items) <= 7, f"tcache[{i}] count {count} vs {len(items)} entries"
    fast_members = {c: i for i, items in fastbin_lists(alloc).items() for c in items}
    bin_members = {c: i for i, items in bin_lists(alloc).items() for c in items}
    assert not (set(tc_members) & set(fast_members)), "chunk both in tcache and a fastbin"
    assert not (set(bin_members) & (set(tc_members) | set(fast_members))), "chunk in two kinds of bin"
    _check_bin_links(alloc)
    _check_large_bins(alloc)
    walk = _walk_heap(alloc, base, tc_members, fast_members, bin_members)
    assert len(tc_members) == walk.tcache and len(fast_members) == walk.fast and len(bin_members) == walk.binned, \
        "a binned chunk is not on the heap walk"
    if in_use is not None:
        top = alloc.host.read_u64(alloc.A + AV_TOP)
        heap_in_use = {m for m in in_use if base <= m < top}
        assert heap_in_use <= walk.mems_in_use, "a live allocation is not an in-use chunk"


def _check_bin_links(alloc) -> None:
    """Every bin is a consistent doubly linked ring (each bk is the previous chunk)."""
    fd, bk = alloc.fd, alloc.bk
    for i in range(1, NBINS):
        b = alloc.bin_at(i)
        p = fd(b)
        prev = b
        while p != b:
            assert bk(p) == prev, f"bin {i}: bk of {p:#x} broken"
            prev, p = p, fd(p)
        assert bk(b) == prev, f"bin {i}: header bk broken"


def _check_large_bins(alloc) -> None:
    """Large bins are sorted by size, and their nextsize ring links exactly the size heads."""
    chunksize_nomask, fd_nextsize, bk_nextsize = alloc.chunksize_nomask, alloc.fd_nextsize, alloc.bk_nextsize
    for i, items in bin_lists(alloc).items():
        if i < 64:
            continue
        sizes = [chunksize_nomask(c) for c in items]
        assert sizes == sorted(sizes, reverse=True), f"large bin {i} not sorted"
        heads = [c for k, c in enumerate(items) if k == 0 or sizes[k] != sizes[k - 1]]
        ring, c = [], heads[0]
        for _ in range(len(heads)):
            ring.append(c)
            assert bk_nextsize(fd_nextsize(c)) == c, f"bin {i}: nextsize ring broken at {c:#x}"
            c = fd_nextsize(c)
        assert ring == heads and c == heads[0], f"bin {i}: nextsize ring is not the size heads"


@dataclass
class HeapWalk:
    """The free chunks _walk_heap met by kind, and the user pointers of the in-use ones."""

    tcache: int = 0
    fast: int = 0
    binned: int = 0
    mems_in_use: set[int] = field(default_factory=set)


def _walk_heap(alloc, base: int, tc_members: dict, fast_members: dict, bin_members: dict) -> HeapWalk:
    """Chunk by chunk from sbrk_base to top: each one where the bins say, with consistent P bits."""
    chunksize_nomask, prev_size = alloc.chunksize_nomask, alloc.prev_size
    top = alloc.host.read_u64(alloc.A + AV_TOP)
    walk = HeapWalk()
    p, prev_free = base, False
    while p != top:
        assert base <= p < top, f"heap walk left the heap at {p:#x}"
        head = chunksize_nomask(p)
        size = head & ~SIZE_BITS
        assert size >= MINSIZE and size % 16 == 0 and not head & IS_MMAPPED, f"bad chunk {p:#x} {head:#x}"
        nxt = p + size
        next_in_use = chunksize_nomask(nxt) & PREV_INUSE
        if p in tc_members:
            walk.tcache += 1
            assert tc_members[p] == csize2tidx(size), f"tcache chunk {p:#x} in the wrong bin"
            assert next_in_use
        elif p in fast_members:
            walk.fast += 1
            assert fast_members[p] == fastbin_index(size), f"fast chunk {p:#x} in the wrong bin"
            assert next_in_use
        elif p in bin_members:
            walk.binned += 1
            i = bin_members[p]
            assert i == 1 or i == bin_index(size), f"chunk {p:#x} size {size:#x} in bin {i}"
            assert not prev_free, f"two adjacent free chunks at {p:#x}"
            assert not next_in_use, f"free chunk {p:#x}: next has P set"
            assert prev_size(nxt) == size, f"free chunk {p:#x}: footer {prev_size(nxt):#x} != {size:#x}"
        else:
            # fenceposts (size 0x10) never occur in a contiguous heap; anything else is in use
            walk.mems_in_use.add(p + 16)
            assert next_in_use or nxt == top, f"in-use chunk {p:#x}: next P clear"
        prev_free = p in bin_members
        p = nxt
    _check_top(alloc, top, prev_free)
    return walk


def _check_top(alloc, top: int, prev_free: bool) -> None:
    """The top chunk has P set, ends at the break (contiguous heap), and no free chunk borders it."""
    tsize = alloc.chunksize(top)
    assert alloc.chunksize_nomask(top) & PREV_INUSE, "top without P"
    brk = alloc.host.sbrk(0)
    noncontiguous = alloc._r32(alloc.A + AV_FLAGS) & NONCONTIGUOUS_BIT
    assert top + tsize <= brk or noncontiguous, f"top ends at {top + tsize:#x}, past brk {brk:#x}"
    assert not prev_free, "a free chunk borders top"
