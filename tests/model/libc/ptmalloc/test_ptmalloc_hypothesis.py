"""Random call sequences never corrupt the ptmalloc model.

After every call the heap walk must be consistent (check_heap: every chunk in use or in exactly
one bin of the right index, footers, P bits, sorted large bins, top at the break) and every live
allocation must still hold the bytes written into it. Across fork, each process's allocations
must read back exactly what an eager-copy reference (a dict per process, copied at fork) says.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cowscope.model import Machine
from cowscope.model.libc.flat import FlatHost
from cowscope.model.libc.ptmalloc import PtMalloc, check_heap

SIZES = st.one_of(st.integers(0, 128), st.integers(129, 1100), st.integers(1101, 40000),
                  st.integers(100000, 400000))
OPS = st.one_of(
    st.tuples(st.just("m"), SIZES),
    st.tuples(st.just("c"), SIZES),
    st.tuples(st.just("f"), st.integers(0, 1000)),
    st.tuples(st.just("r"), st.integers(0, 1000), SIZES),
    st.tuples(st.just("a"), st.sampled_from([32, 64, 256, 4096]), SIZES),
    st.tuples(st.just("t"), st.sampled_from([0, 4096, 1 << 17])),
    st.tuples(st.just("o"), st.sampled_from([(1, 0), (1, 64), (1, 128), (-1, 0), (-1, 1 << 17), (-2, 0),
                                             (-3, 1 << 16), (-4, 0), (-4, 65536)])),
)


def _pattern(tag: int, n: int) -> bytes:
    """Recognisable content for allocation `tag` (at most 64 bytes are written and checked)."""
    return bytes((tag * 7 + i) & 0xFF for i in range(min(n, 64)))


def _run(alloc: PtMalloc, ops: list[tuple], live: dict[int, tuple[int, int]], tagbase: int = 0) -> None:
    """Apply ops; live maps tag -> (ptr, size); check the heap and contents after each."""
    host = alloc.host
    for k, op in enumerate(ops):
        tag = tagbase + k + 1
        kind = op[0]
        if kind in "mca":
            if kind == "m":
                ptr = alloc.malloc(op[1])
                size = op[1]
            elif kind == "c":
                ptr = alloc.calloc(1, op[1])
                size = op[1]
                assert host.read(ptr, min(size, 4096)) == bytes(min(size, 4096)), "calloc not zeroed"
            else:
                ptr = alloc.memalign(op[1], op[2])
                size = op[2]
                assert ptr % op[1] == 0
            assert ptr and alloc.malloc_usable_size(ptr) >= size
            host.write(ptr, _pattern(tag, size))
            live[tag] = (ptr, size)
        elif kind in "fr" and live:
            victim = sorted(live)[op[1] % len(live)]
            ptr, size = live.pop(victim)
            assert host.read(ptr, min(size, 64)) == _pattern(victim, size), "allocation overwritten"
            if kind == "f":
                alloc.free(ptr)
            else:
                new = alloc.realloc(ptr, op[2])
                keep = min(size, op[2], 64)
                assert host.read(new, keep) == _pattern(victim, size)[:keep], "realloc lost data"
                host.write(new, _pattern(victim, op[2]))
                live[victim] = (new, op[2])
        elif kind == "t":
            alloc.malloc_trim(op[1])
        elif kind == "o":
            alloc.mallopt(*op[1])
        check_heap(alloc, {p for p, _ in live.values()})
        spans = sorted((p, p + alloc.malloc_usable_size(p)) for p, _ in live.values())
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:])), "live allocations overlap"
    for tag, (ptr, size) in live.items():
        assert host.read(ptr, min(size, 64)) == _pattern(tag, size)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(OPS, max_size=80))
def test_random_calls_keep_heap_consistent(ops: list[tuple]) -> None:
    _run(PtMalloc(FlatHost()), ops, {})


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(OPS, max_size=25), st.lists(OPS, max_size=25), st.lists(OPS, max_size=25))
def test_fork_children_match_eager_copy(before: list[tuple], child_ops: list[tuple],
                                        parent_ops: list[tuple]) -> None:
    m = Machine(allocator="ptmalloc")
    p = m.spawn("app")
    p.malloc(1)                            # create the allocator (lazily made on first call)
    live_p: dict[int, tuple[int, int]] = {}
    _run(p.allocator, before, live_p)
    c = p.fork()
    live_c = dict(live_p)                  # eager reference: the child starts with a full copy
    expected_c = {t: c.read(ptr, min(s, 64)) for t, (ptr, s) in live_c.items()}
    assert expected_c == {t: p.read(ptr, min(s, 64)) for t, (ptr, s) in live_p.items()}
    _run(c.allocator, child_ops, live_c, tagbase=1000)
    _run(p.allocator, parent_ops, live_p, tagbase=2000)
    for tag, (ptr, size) in live_p.items():
        assert p.read(ptr, min(size, 64)) == _pattern(tag, size)
    for tag, (ptr, size) in live_c.items():
        assert c.read(ptr, min(size, 64)) == _pattern(tag, size)
    m.check()
