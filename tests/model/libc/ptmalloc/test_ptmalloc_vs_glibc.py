"""The model against the real glibc on this machine, through the native harness.

Crafted corruption scenarios (each must make glibc abort with the message named), seeded random
workloads, and the harness itself against the shared ground-truth cases.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cowscope.model.libc.ptmalloc import replay_text
from cowscope.model.libc.ptmalloc.native import NativeHarnessError, glibc_version, harness_path, run_native
from cowscope.model.libc.ptmalloc.workload import generate

CASES = Path(__file__).resolve().parents[3] / "fixtures" / "malloc-cases"


def _native_available() -> bool:
    try:
        harness_path()
    except NativeHarnessError:
        return False
    return glibc_version() == "2.36"


needs_glibc = pytest.mark.skipif(not _native_available(), reason="needs glibc 2.36 and a C compiler")


def first_divergence(model: list[str], real: list[str]) -> str:
    """A readable report of where two outputs part."""
    for i, (a, b) in enumerate(zip(model + ["<eof>"], real + ["<eof>"])):
        if a != b:
            return f"line {i}:\n model: {a}\n glibc: {b}"
    return "identical"


@needs_glibc
@pytest.mark.parametrize("name", sorted(p.stem for p in CASES.glob("*.ops")))
def test_harness_reproduces_reference_case(name: str) -> None:
    got, _ = run_native((CASES / f"{name}.ops").read_text())
    assert got == (CASES / f"{name}.expected").read_text().splitlines()


# (name, ops, message glibc must print).  a = malloc(2000) is a 0x7e0 chunk: its footer slot is
# at a+0x7d0 and the next chunk's size field at a+0x7d8.
FILL_TCACHE_0x20 = "".join(f"m {i} 24\n" for i in range(10, 18)) + "".join(f"f {i}\n" for i in range(10, 17))
CORRUPTIONS = [
    ("tcache_double_free", "m 1 24\nx 1\nx 1\n", "free(): double free detected in tcache 2"),
    ("fasttop", FILL_TCACHE_0x20 + "x 17\nx 17\n", "double free or corruption (fasttop)"),
    ("invalid_next_size_fast", FILL_TCACHE_0x20 + "w 17 24 0\nf 17\n", "free(): invalid next size (fast)"),
    ("prev_double_free", "m 1 2000\nm 2 24\nx 1\nx 1\n", "double free or corruption (!prev)"),
    ("top_double_free", "m 1 2000\nx 1\nx 1\n", "double free or corruption (top)"),
    ("out", "m 1 2000\nm 2 24\nw 1 -8 0x100001\nf 1\n", "double free or corruption (out)"),
    ("invalid_next_size_normal", "m 1 2000\nm 2 24\nw 1 0x7d8 1\nf 1\n", "free(): invalid next size (normal)"),
    ("corrupted_top_size", "m 1 24\nw 1 24 0xfffffff1\nm 2 5000\n", "malloc(): corrupted top size"),
    ("fast_memory_corruption", FILL_TCACHE_0x20 + "x 17\nw 17 -8 0x41\n"
     + "".join(f"m {i} 24\n" for i in range(20, 28)), "malloc(): memory corruption (fast)"),
    ("consolidate_invalid_size", FILL_TCACHE_0x20 + "x 17\nw 17 -8 0x31\nm 3 2000\n",
     "malloc_consolidate(): invalid chunk size"),
    ("unsorted_invalid_size", "m 1 2000\nm 2 24\nx 1\nw 1 -8 5\nm 3 3000\n",
     "malloc(): invalid size (unsorted)"),
    ("unsorted_mismatching_prev_size", "m 1 2000\nm 2 24\nx 1\nw 1 0x7d0 0x10\nm 3 3000\n",
     "malloc(): mismatching next->prev_size (unsorted)"),
    ("prev_size_while_consolidating", "m 1 2000\nm 2 2000\nm 3 24\nf 1\nw 2 -16 0x50\nf 2\n",
     "corrupted size vs. prev_size while consolidating"),
    ("realloc_invalid_next_size", "m 1 24\nw 1 -8 0x11\nr 1 100\n", "realloc(): invalid next size"),
    ("realloc_invalid_pointer", "m 1 24\nw 1 -8 0x3\nr 1 100\n", "realloc(): invalid pointer"),
    ("mremap_invalid_pointer", "m 1 200000\nw 1 -16 8\nr 1 300000\n", "mremap_chunk(): invalid pointer"),
    ("munmap_invalid_pointer", "m 1 200000\nw 1 8 0x1002\nF 1 16\n", "munmap_chunk(): invalid pointer"),
    ("free_invalid_pointer", "m 1 100\nF 1 8\n", "free(): invalid pointer"),
    ("free_invalid_size", "m 1 100\nw 1 -8 0x11\nf 1\n", "free(): invalid size"),
    ("break_adjusted", "o -4 0\nm 1 24\ns -4096\nm 2 300000\n", "break adjusted to free malloc space"),
    # M_PERTURB: alloc_perturb fills new memory with ~0x41, so the fake size read by free(p+8) has
    # IS_MMAPPED set; free_perturb fills a freed chunk with 0x13 (same effect at p+32)
    ("alloc_perturb", "o -6 65\nm 1 100\nF 1 8\n", "munmap_chunk(): invalid pointer"),
    ("free_perturb", "o -6 19\nm 1 2000\nm 2 24\nx 1\nF 1 40\n", "munmap_chunk(): invalid pointer"),
    ("no_perturb", "m 1 2000\nm 2 24\nx 1\nF 1 40\n", "free(): invalid pointer"),
]


@needs_glibc
@pytest.mark.parametrize("name,ops,message", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corruption_detected_like_glibc(name: str, ops: str, message: str) -> None:
    real, _ = run_native(ops)
    assert f"# stderr: {message}" in real, f"scenario does not make glibc say {message!r}: {real[-3:]}"
    model, _ = replay_text(ops)
    assert model == real, first_divergence(model, real)


@needs_glibc
@pytest.mark.parametrize("seed", range(4))
def test_short_random_workloads_match_glibc(seed: int) -> None:
    ops = generate(seed + 500, 2000, rare=0.002 if seed < 2 else 0.05)
    model, _ = replay_text(ops)
    real, _ = run_native(ops)
    assert model == real, first_divergence(model, real)


SEED_BASE = int(os.environ.get("COWSCOPE_MALLOC_SEED_BASE", "1000"))


@needs_glibc
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(SEED_BASE, SEED_BASE + 20))
def test_random_workload_10k_matches_glibc(seed: int) -> None:
    ops = generate(seed, 10000)
    assert len([x for x in ops.splitlines() if x and not x.startswith("#")]) == 10000
    model, _ = replay_text(ops)
    real, _ = run_native(ops)
    assert len(real) > 10000 or real[-1].startswith("# exit: signal")
    assert model == real, first_divergence(model, real)


@needs_glibc
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(SEED_BASE + 100, SEED_BASE + 105))
def test_parameter_heavy_workload_matches_glibc(seed: int) -> None:
    """5% of the calls are mallopt / malloc_trim / foreign sbrk: thresholds, top_pad, M_MXFAST and
    M_MMAP_MAX keep changing under a live heap."""
    ops = generate(seed, 10000, rare=0.05)
    model, _ = replay_text(ops)
    real, _ = run_native(ops)
    assert model == real, first_divergence(model, real)


@needs_glibc
@pytest.mark.parametrize("seed,nops", [(700, 2000), (701, 2000),
                                       pytest.param(702, 10000, marks=pytest.mark.slow)])
def test_bins_identical_after_every_operation(seed: int, nops: int) -> None:
    """Not just the results: every bin, tcache list, binmap word and mp_ field after every op."""
    from cowscope.model.libc.flat import FlatHost

    ops = generate(seed, nops, rare=0.01)
    real, real_state = run_native(ops, with_state=True)
    assert real_state[0].startswith("# H=")
    heap_base = int(real_state[0][4:], 16)
    model, model_state = replay_text(ops, host=FlatHost(heap_base=heap_base), with_state=True)
    assert model == real, first_divergence(model, real)
    assert model_state == real_state[1:], first_divergence(model_state, real_state[1:])


@needs_glibc
def test_systrim_with_tiny_top_grows_the_heap_like_glibc() -> None:
    """glibc quirk (found by random workload 1187): with M_TRIM_THRESHOLD 0 and a 0x20 top, a
    free() of a >= 64 KiB chunk runs systrim, whose negative `extra` sbrk()s one page more."""
    ops = "o -1 0\no -2 0\nm 1 70000\nm 2 24\nm 3 2984\nf 1\nm 4 100\n"
    real, _ = run_native(ops)
    assert " top=H+0x11fe0:0x20 " in real[5] and " brk=0x13000 top=H+0x11fe0:0x1020 " in real[6]
    model, _ = replay_text(ops)
    assert model == real, first_divergence(model, real)


@needs_glibc
@pytest.mark.parametrize("top_pad", [-1, -16])
def test_negative_top_pad_wraps_like_glibc(top_pad: int) -> None:
    """sysmalloc's `long size = nb + top_pad + MINSIZE` wraps: M_TOP_PAD -16 means 16 bytes less."""
    ops = f"o -2 {top_pad}\nm 1 24\nm 2 5000\nm 3 70000\nf 2\nm 4 100000\n"
    real, _ = run_native(ops)
    model, _ = replay_text(ops)
    assert model == real, first_divergence(model, real)
