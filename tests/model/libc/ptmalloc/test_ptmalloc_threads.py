"""Threads and arenas in the ptmalloc model: the recorded threaded cases, facts measured on glibc
2.36, and the model against the real glibc (the native harness runs the ops on real threads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cowscope.model.libc.flat import FlatHost
from cowscope.model.libc.ptmalloc import replay_text
from cowscope.model.libc.ptmalloc.native import NativeHarnessError, glibc_version, harness_path, run_native
from cowscope.model.libc.ptmalloc.replay import parse_ops
from cowscope.model.libc.ptmalloc.workload import generate_threaded

CASES = Path(__file__).resolve().parents[3] / "fixtures" / "malloc-threads"


def _native_available() -> bool:
    try:
        harness_path()
    except NativeHarnessError:
        return False
    return glibc_version() == "2.36" and (os.cpu_count() or 0) >= 1


needs_glibc = pytest.mark.skipif(not _native_available(), reason="needs glibc 2.36 and a C compiler")


def first_divergence(model: list[str], real: list[str]) -> str:
    for i, (a, b) in enumerate(zip(model + ["<eof>"], real + ["<eof>"])):
        if a != b:
            return f"line {i}:\n model: {a}\n glibc: {b}"
    return "identical"


def replay(ops: str, nprocs: int = 2) -> list[str]:
    host = FlatHost()
    host.nprocs = nprocs
    return replay_text(ops, host=host)[0]


@pytest.mark.parametrize("name", sorted(p.stem for p in CASES.glob("*.ops")))
def test_model_reproduces_recorded_threaded_case(name: str) -> None:
    """Every line of what glibc printed for the case (recorded with 2 CPUs)."""
    model = replay((CASES / f"{name}.ops").read_text())
    real = (CASES / f"{name}.expected").read_text().splitlines()
    assert model == real, first_divergence(model, real)


def test_first_malloc_of_a_thread_is_at_heap_plus_0xb70() -> None:
    """Measured: heap_info (0x30) + malloc_state (0x898) + alignment, the thread's tcache chunk at
    heap+0x8d0 (0x290), then the block; 132 KiB of the heap read-write."""
    out = replay("p 1\n1 m 1 24\n")
    assert " ret=A1+0xb70 usz=0x18 " in out[2]
    assert out[2].endswith(" ar=A1 atop=A1+0xb80:0x20480 asys=0x21000")


@pytest.mark.parametrize("nprocs,arenas", [(1, 9), (2, 16), (3, 24)])
def test_arena_limit_is_eight_per_cpu(nprocs: int, arenas: int) -> None:
    """arena_get2: new arenas while narenas < 8 x CPUs (counting main), then main_arena first.
    The limit is only computed once narenas passed arena_test (8): with one CPU, 9 arenas."""
    ops = "".join(f"p {t}\n{t} m {t} 100\n" for t in range(1, arenas + 2))
    out = replay(ops, nprocs)
    names = [line.rsplit(" ar=", 1)[1].split()[0] for line in out[1:-2] if " m " in line]
    assert names[:arenas - 1] == [f"A{k}" for k in range(1, arenas)]
    assert names[arenas - 1:] == ["main", f"A{arenas - 1}"]


def test_m_arena_max_caps_the_arenas() -> None:
    out = replay("o -8 2\n" + "".join(f"p {t}\n{t} m {t} 100\n" for t in range(1, 5)))
    names = [line.rsplit(" ar=", 1)[1].split()[0] for line in out[1:-2] if " m " in line]
    assert names == ["A1", "main", "A1", "main"]


def test_thread_lines_parse_and_bad_thread_use_is_an_error() -> None:
    ops = parse_ops("3 m 1 24\np 4\n4 e\nj 4\n")
    assert [(o.thread, o.kind, o.args) for o in ops] == [(3, "m", [1, 24]), (0, "p", [4]), (4, "e", []),
                                                          (0, "j", [4])]
    with pytest.raises(ValueError, match="not running"):
        replay("1 m 1 24\n")
    with pytest.raises(ValueError, match="has not exited"):
        replay("p 1\nj 1\n")
    with pytest.raises(ValueError, match="thread numbers"):
        parse_ops("1 p 0\n")
    with pytest.raises(ValueError, match="bad operation"):
        parse_ops("1 m 1\n")


@needs_glibc
@pytest.mark.parametrize("name", sorted(p.stem for p in CASES.glob("*.ops")))
def test_harness_reproduces_recorded_threaded_case(name: str) -> None:
    got, _ = run_native((CASES / f"{name}.ops").read_text())
    if os.cpu_count() != 2 and "arena_limit" in name:
        pytest.skip("recorded with 2 CPUs: the arena limit is 8 x CPUs")
    assert got == (CASES / f"{name}.expected").read_text().splitlines()


def _host_for_this_machine() -> FlatHost:
    host = FlatHost()
    host.nprocs = os.cpu_count() or 2
    return host


@needs_glibc
@pytest.mark.parametrize("seed", range(3))
def test_short_threaded_workloads_match_glibc(seed: int) -> None:
    ops = generate_threaded(seed + 900, 2000, max_threads=20)
    model, _ = replay_text(ops, host=_host_for_this_machine())
    real, _ = run_native(ops)
    assert model == real, first_divergence(model, real)


@needs_glibc
def test_threaded_bins_identical_after_every_operation() -> None:
    """main_arena's bins and the initial thread's tcache after every op, other arenas' chunks
    named by heap."""
    ops = generate_threaded(950, 2000, max_threads=20)
    real, real_state = run_native(ops, with_state=True)
    host = _host_for_this_machine()
    host.__init__(heap_base=int(real_state[0][4:], 16))
    host.nprocs = os.cpu_count() or 2
    model, model_state = replay_text(ops, host=host, with_state=True)
    assert model == real, first_divergence(model, real)
    assert model_state == real_state[1:], first_divergence(model_state, real_state[1:])


SEED_BASE = int(os.environ.get("COWSCOPE_MALLOC_SEED_BASE", "1000"))


@needs_glibc
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(SEED_BASE + 300, SEED_BASE + 310))
def test_random_threaded_workload_10k_matches_glibc(seed: int) -> None:
    """10,000 calls from up to 20 threads (created, ended, joined; cross-thread frees)."""
    ops = generate_threaded(seed, 10000, max_threads=20)
    assert len([x for x in ops.splitlines() if x and not x.startswith("#")]) == 10000
    model, _ = replay_text(ops, host=_host_for_this_machine())
    real, _ = run_native(ops)
    assert len(real) > 10000 or real[-1].startswith("# exit: signal")
    assert model == real, first_divergence(model, real)
