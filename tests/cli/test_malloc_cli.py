"""`cowscope malloc replay|diff|gen|native`."""

from __future__ import annotations

from pathlib import Path

import pytest

from cowscope.cli import malloc as malloc_cli
from cowscope.cli.main import main

CASES = Path(__file__).resolve().parents[1] / "fixtures" / "malloc-cases"


def test_replay_prints_expected_format(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    case = CASES / "e02_double_free_fasttop.ops"
    state = tmp_path / "s.state"
    assert main(["malloc", "replay", str(case), "--state", str(state)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == (CASES / "e02_double_free_fasttop.expected").read_text().splitlines()
    assert state.read_text().splitlines() == (CASES / "e02_double_free_fasttop.state").read_text().splitlines()


def test_replay_rejects_bad_ops(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.ops"
    bad.write_text("m 1\n")
    assert main(["malloc", "replay", str(bad)]) == 2
    assert "bad operation" in capsys.readouterr().err


def test_gen_is_seeded(capsys: pytest.CaptureFixture[str]) -> None:
    main(["malloc", "gen", "--seed", "7", "--ops", "300"])
    a = capsys.readouterr().out
    main(["malloc", "gen", "--seed", "7", "--ops", "300"])
    assert capsys.readouterr().out == a
    kinds = {line.split()[0] for line in a.splitlines() if line and not line.startswith("#")}
    assert {"m", "f", "c", "r", "a"} <= kinds


def test_diff_reports_first_divergence_with_bins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulate a glibc that disagrees at op 2; the report names the line and diffs the bins."""
    from cowscope.model.libc.ptmalloc import native, replay_text

    ops = "m 1 24\nm 2 24\nf 1\nm 3 24\n"
    model, mstate = replay_text(ops, with_state=True)
    real = list(model)
    real[3] = real[3].replace("top=", "top=H+0x999:")
    rstate = [x.replace("tcache[0]", "fastbin[0]") for x in mstate]
    monkeypatch.setattr(native, "run_native", lambda text, with_state=False: (real, rstate))
    same, report = malloc_cli.diff_report(ops)
    assert not same
    assert report[0] == "first divergence at output line 4:"
    assert report[1] == f"  model: {model[3]}" and report[2] == f"  glibc: {real[3]}"
    assert any(line.startswith("  -fastbin[0]") for line in report)
    assert any(line.startswith("  +tcache[0]") for line in report)


@pytest.mark.skipif(not (CASES / "b05_largebin_same_bin_order.ops").exists(), reason="fixtures")
def test_diff_against_real_glibc(capsys: pytest.CaptureFixture[str]) -> None:
    from cowscope.model.libc.ptmalloc.native import NativeHarnessError, harness_path

    try:
        harness_path()
    except NativeHarnessError:
        pytest.skip("no C compiler")
    rc = main(["malloc", "diff", str(CASES / "b05_largebin_same_bin_order.ops")])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("identical: 28 lines")


def test_missing_compiler_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from cowscope.model.libc.ptmalloc import native

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))      # nothing cached yet
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(native.NativeHarnessError, match="cannot run the C compiler"):
        native.harness_path()
    assert main(["malloc", "native", str(CASES / "t01_tcache_lifo.ops")]) == 2
    assert "C compiler" in capsys.readouterr().err


def test_harness_is_rebuilt_into_a_fresh_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from cowscope.model.libc.ptmalloc import native

    try:
        native.harness_path()
    except native.NativeHarnessError:
        pytest.skip("no C compiler")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    exe = native.harness_path()
    assert exe.parent == tmp_path / "cowscope" and exe.exists()
    digest = exe.name.rsplit("-", 1)[1]
    import hashlib

    assert digest == hashlib.sha256(native.harness_source()).hexdigest()[:16]


def test_replay_on_machine_adds_fault_comments(capsys: pytest.CaptureFixture[str]) -> None:
    case = CASES / "m01_mmap_basic.ops"
    assert main(["malloc", "replay", "--machine", str(case)]) == 0
    out = capsys.readouterr().out.splitlines()
    results = [x for x in out if not x.startswith("#   ")]
    assert results == (CASES / "m01_mmap_basic.expected").read_text().splitlines()
    comments = [x for x in out if x.startswith("#   ")]
    assert comments and all("0x" in c for c in comments)
    first = out.index(results[1])                       # op 0: the heap is created
    assert out[first + 1].startswith("#   ") and "zero-fill" in out[first + 1]


UNINITIALISED = {  # operations after which malloc has never been initialised (no bins, no top)
    "free_null": "f 0\n",
    "foreign_sbrk": "s 4096\nm 0 10\n",
}


@pytest.mark.parametrize("name", sorted(UNINITIALISED))
def test_state_dump_before_malloc_is_initialised(name: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Bins of an arena malloc_init_state never ran on are all zero: the dump shows them empty
    (it used to follow the zero link: SIGSEGV in the native harness, Segfault in the model)."""
    ops = tmp_path / f"{name}.ops"
    ops.write_text(UNINITIALISED[name])
    state = tmp_path / "model.state"
    for argv in (["malloc", "replay", "--state", str(state), str(ops)],
                 ["malloc", "replay", "--machine", "--state", str(state), str(ops)]):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert out.rstrip().endswith("# exit: status 0")
        first = state.read_text().split("== 1")[0]
        assert first.startswith("== 0\nbrk=H+") and "top=0 " in first and "bin[" not in first
    from cowscope.model.libc.ptmalloc.native import NativeHarnessError, harness_path

    try:
        harness_path()
    except NativeHarnessError:
        pytest.skip("no C compiler")
    assert main(["malloc", "native", "--state", str(tmp_path / "glibc.state"), str(ops)]) == 0
    assert capsys.readouterr().out.rstrip().endswith("# exit: status 0")
    glibc = [x for x in (tmp_path / "glibc.state").read_text().splitlines() if not x.startswith("# H=")]
    assert glibc == state.read_text().splitlines()
    assert main(["malloc", "diff", str(ops)]) == 0
    assert capsys.readouterr().out.startswith("identical:")


def test_diff_huge_requests_against_real_glibc(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Sizes around this machine's RAM + swap (the overcommit heuristic's limit; 1 GiB either side,
    as other tests may switch a small swapfile on meanwhile), a 1.5 GiB brk heap and multi-GiB
    mmapped chunks: the model matches glibc here, without a MemoryError."""
    from cowscope.model.libc.ptmalloc.native import NativeHarnessError, harness_path

    try:
        harness_path()
    except NativeHarnessError:
        pytest.skip("no C compiler")
    limit = malloc_cli.host_commit_pages() * 4096
    ops = tmp_path / "huge.ops"
    ops.write_text(f"o -4 0\nm 0 {1536 << 20}\nf 0\no -4 65536\nm 1 {4 << 30}\nr 1 {8 << 30}\n"
                   f"m 2 {limit - (1 << 30)}\nm 3 {limit + (1 << 30)}\nc 4 2 {limit // 2 + (1 << 29)}\n"
                   f"f 1\nf 2\n")
    assert main(["malloc", "diff", str(ops)]) == 0, capsys.readouterr().out
    assert capsys.readouterr().out.startswith("identical: 14 lines")
    main(["malloc", "replay", str(ops)])
    lines = capsys.readouterr().out.splitlines()
    assert " m 3 " in lines[8] and "ret=0 " in lines[8] and "ret=M" in lines[7]
