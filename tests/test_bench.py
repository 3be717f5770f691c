"""Smoke test of `cowscope bench --quick`: it runs through the CLI and prints the result table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cowscope.bench import BenchConfig, Figure, run_bench
from cowscope.cli.bench import render_table

CLI = "import sys; from cowscope.cli.main import main; sys.exit(main(sys.argv[1:]))"


def test_bench_quick_cli(tmp_path: Path) -> None:
    """The subcommand compiles the C program, measures both sides and prints every figure."""
    env = dict(os.environ, COWSCOPE_CACHE=str(tmp_path), NO_COLOR="1")
    proc = subprocess.run([sys.executable, "-c", CLI, "bench", "--quick"],
                          capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode == 2 and "no C compiler" in proc.stdout:
        pytest.skip("no C compiler on this machine")
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 1: a target missed at tiny sizes
    out = proc.stdout
    figures = ["fork (2,048 resident pages)", "CoW all", "one 8-byte write", "metadata per resident",
               "projected: 64 GiB process"]
    if os.geteuid() == 0:
        figures.append("random differential: model = kernel")
        assert "10/10 agree" in proc.stdout  # seeds 0..9 on both backends, compared
    for figure in figures:
        assert figure in out, f"{figure!r} missing from:\n{out}"
    assert "pass" in out or "FAIL" in out
    assert any(p.name.startswith("bench_fork-") for p in tmp_path.iterdir()), "C program not cached"


def test_bench_help() -> None:
    """`cowscope bench --help` documents the figures, targets and exit status."""
    proc = subprocess.run([sys.executable, "-c", CLI, "bench", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for word in ("--quick", "--huge", "target", "exit status"):
        assert word in proc.stdout


def test_figure_pass_fail() -> None:
    """A figure passes at or under its target, fails above it, and has no verdict without one."""
    assert Figure("x", "", "", 1.0, "1", 1.0).ok is True
    assert Figure("x", "", "", 1.5, "1.5", 1.0).ok is False
    assert Figure("x", "", "", 1.5, "1.5").ok is None


def test_run_bench_model_only_huge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a compiler the model figures still come, with a note; --huge adds the real run."""
    import cowscope.bench as bench

    def no_cc(pages: int, repeats: int) -> dict[str, float]:
        raise bench.BenchError("no C compiler")

    monkeypatch.setattr(bench, "run_c", no_cc)
    cfg = BenchConfig.quick()
    cfg.huge = True
    figures, note = run_bench(cfg)
    assert note == "no C compiler"
    names = [f.name for f in figures]
    assert any(n.startswith("real:") for n in names)
    real = next(f for f in figures if f.name.startswith("real:"))
    assert real.value > 0 and real.ok is True
    assert render_table(figures, "host").row_count == len(figures)
