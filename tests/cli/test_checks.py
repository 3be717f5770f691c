"""Bad command lines and bad input files are `cowscope COMMAND: error: ...` with exit status 2,
checked before any work starts; cowscope's own bugs are one line and exit status 1; never a
traceback. (In-process through cli.main: one interpreter for the whole table.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cowscope.cli import main as cli_main
from cowscope.cli.checks import output_problem

from .helpers import cowscope


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "nonutf.py").write_bytes(b"def scenario(m):\n    m.spawn('\xff')\n")
    (tmp_path / "ops.bad").write_bytes(b"m 0 10\n\xff\n")
    (tmp_path / "ok.py").write_text("def scenario(m):\n    m.spawn('P')\n")
    (tmp_path / "null.rec").write_text('{"type": "header"}\nnull\n')
    (tmp_path / "list.rec").write_text("[1, 2]\n")
    (tmp_path / "seq.rec").write_text('{"type": "header"}\n{"type": "tree", "seq": "x"}\n')
    (tmp_path / "folder").mkdir()
    return tmp_path


BAD = [
    # (argv, what stderr says); {d} is the test's folder
    (["run", "{d}/nonutf.py"], "nonutf.py:2: not UTF-8 text (byte 0xff)"),
    (["run", "{d}/folder"], "cannot read scenario: Is a directory"),
    (["run", "{d}/missing.py"], "cannot read scenario: No such file"),
    (["run", "--html", "{d}/folder", "{d}/ok.py"], "folder, not a file"),
    (["run", "--html", "{d}/no/such/r.html", "{d}/ok.py"], "it is not created"),
    (["run", "--width", "0", "{d}/ok.py"], "at least 1 cell"),
    (["demo", "--width", "-3"], "at least 1, got -3"),
    (["demo", "--html", "{d}/folder"], "folder, not a file"),
    (["malloc", "replay", "{d}/ops.bad"], "ops.bad:2: not UTF-8 text"),
    (["malloc", "replay", "{d}/folder"], "folder, not a file"),
    (["malloc", "replay", "{d}/missing"], "no such file"),
    (["malloc", "replay", "--state", "{d}/folder", "{d}/ops.bad"], "folder, not a file"),
    (["malloc", "gen", "--ops", "-1"], "at least 0"),
    (["inspect", "--watch", "nan", "1"], "finite positive number of seconds"),
    (["inspect", "--watch", "inf", "1"], "finite positive number of seconds"),
    (["inspect", "--count", "0", "1"], "at least 1"),
    (["inspect", "--width", "0", "1"], "at least 1"),
    (["inspect", "--html", "{d}/folder", "1"], "folder, not a file"),
    (["inspect", "--save", "{d}/no/such/run.jsonl", "1"], "it is not created"),
    (["inspect", "--compare", "{d}/null.rec", "{d}/null.rec"], "null.rec:2: not a recording line"),
    (["inspect", "--compare", "{d}/list.rec", "{d}/list.rec"], "list.rec:1: not a recording line"),
    (["inspect", "--compare", "{d}/seq.rec", "{d}/seq.rec"], "seq.rec:2: not a recording line"),
    (["inspect", "--compare", "{d}/folder", "{d}/seq.rec"], "folder, not a file"),
    (["export", "--port", "70000", "1"], "a TCP port from 1 to 65535, got 70000"),
    (["export", "--port", "http", "1"], "not a whole number"),
    (["bench", "--repeats", "-1"], "at least 1, got -1"),
    (["bench", "--pages", "0"], "at least 1, got 0"),
    (["trace", "--duration", "-1", "1"], "finite positive number of seconds"),
    (["trace", "--json", "{d}/folder", "1"], "folder, not a file"),
    (["trace", "--buffer-kb", "0", "1"], "at least 4"),
    (["learn", "--level", "9"], "levels are 1, 2, 3"),
    (["learn", "--report", "{d}/no/such/r.html"], "it is not created"),
    (["verify", "--random", "-3"], "at least 0"),
]


@pytest.mark.parametrize("argv,says", BAD, ids=[" ".join(a).replace("{d}/", "") for a, _ in BAD])
def test_bad_arguments_are_errors_with_exit_2(argv: list[str], says: str, files: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    argv = [a.format(d=files) for a in argv]
    try:
        status = cli_main.main(argv)
    except SystemExit as e:  # argparse's usage errors
        status = e.code
    err = capsys.readouterr().err
    assert status == 2, err
    assert says in err and "error" in err, err
    assert "Traceback" not in err
    assert not (files / "no").exists()  # a missing folder is not created


def test_a_full_disk_is_an_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    assert cli_main.main(["malloc", "gen", "--ops", "10"]) == 0
    capsys.readouterr()
    status = cli_main.main(["inspect", "--save", "/dev/full", "--count", "1", str(os.getpid())])
    err = capsys.readouterr().err
    assert status == 2 and "cowscope inspect: error:" in err and "/dev/full: No space left on device" in err, err


def test_cowscopes_own_bug_is_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from cowscope.cli import demo

    def broken(args: object) -> int:
        raise KeyError("fork")

    monkeypatch.setattr(demo, "run", broken)
    monkeypatch.delenv("COWSCOPE_TRACEBACK", raising=False)
    parser_run = cli_main.build_parser().parse_args(["demo"]).func
    assert parser_run is broken
    assert cli_main.main(["demo"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == ("cowscope demo: error: internal error: KeyError: 'fork' "
                           "(COWSCOPE_TRACEBACK=1 shows where)")
    monkeypatch.setenv("COWSCOPE_TRACEBACK", "1")
    with pytest.raises(KeyError):
        cli_main.main(["demo"])


def test_output_paths_are_checked_not_created(tmp_path: Path) -> None:
    assert output_problem(str(tmp_path / "r.html")) is None
    assert "folder" in (output_problem(str(tmp_path)) or "")
    assert "not created" in (output_problem(str(tmp_path / "a" / "r.html")) or "")
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o555)
        assert "permission denied" in (output_problem(str(ro / "r.html")) or "")


def test_an_uncaught_cowscope_error_in_a_scenario_is_exit_1_on_stderr(tmp_path: Path) -> None:
    (tmp_path / "stops.py").write_text("def scenario(m):\n    p = m.spawn('P')\n    p.mprotect(0x7000000, 4096, 'r')\n")
    r = cowscope("run", str(tmp_path / "stops.py"))
    assert r.returncode == 1, r.stderr
    assert "scenario stopped:" in r.stdout
    assert r.stderr.strip().startswith("cowscope run: scenario stopped: ") and "stops.py:3: SyscallError" in r.stderr


def test_ops_from_standard_input_that_are_not_utf8_name_the_line() -> None:
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "cowscope", "malloc", "replay", "-"], input=b"f 0\n\xff\xfe\n",
                       capture_output=True, timeout=60)
    assert r.returncode == 2 and b"-:2: not UTF-8 text (byte 0xff)" in r.stderr, r.stderr
