"""The native build cache runs only what this user built: files and symlinks planted by another
user (uid 65534, `nobody`, or 65533) are refused, rebuilt over or never followed."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cowscope import native
from cowscope.linux import build as agent_build

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("cc") is None,
                                reason="planting files as another owner needs root, building needs cc")

NOBODY = 65534
SOURCE = b"int main(void) { return 7; }\n"
NAME = "probe"


def expected_name(source: bytes = SOURCE) -> str:
    return f"{NAME}-{hashlib.sha256(source).hexdigest()[:16]}"


def plant(path: Path, marker: Path, owner: int = NOBODY) -> None:
    """Another user's program at `path`: it leaves `marker` behind if it ever runs."""
    path.write_text(f"#!/bin/sh\ntouch {marker}\nexit 0\n")
    path.chmod(0o755)
    os.chown(path, owner, owner)
    side = path.with_name(path.name + ".sha256")  # a matching hash beside it does not help
    side.write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "\n")
    os.chown(side, owner, owner)


def built_and_run(marker: Path) -> Path:
    """Build the probe as cowscope's users do and run it: it must be our program (exit 7)."""
    exe = native.build(NAME, SOURCE, "test")
    assert subprocess.run([str(exe)]).returncode == 7
    assert not marker.exists(), "another user's program ran"
    st = exe.stat()
    assert st.st_uid == os.geteuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    return exe


@pytest.fixture(autouse=True)
def fresh_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("COWSCOPE_CACHE", "XDG_CACHE_HOME", "CC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(native, "_PRIVATE", [], raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()


def test_explicit_cache_of_another_user_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, marker = tmp_path / "shared", tmp_path / "ran"
    cache.mkdir(mode=0o755)
    plant(cache / expected_name(), marker)
    os.chown(cache, NOBODY, NOBODY)
    monkeypatch.setenv("COWSCOPE_CACHE", str(cache))
    with pytest.raises(native.NativeBuildError, match="refusing the build cache .*belongs to uid 65534"):
        built_and_run(marker)
    with pytest.raises(agent_build.AgentBuildError, match="refusing"):
        agent_build.agent_path()
    assert not marker.exists()


def test_cache_writable_by_others_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, marker = tmp_path / "open", tmp_path / "ran"
    cache.mkdir()
    cache.chmod(0o777)
    plant(cache / expected_name(), marker)
    monkeypatch.setenv("COWSCOPE_CACHE", str(cache))
    with pytest.raises(native.NativeBuildError, match="writable by others .*mode 0777.*chmod 700"):
        built_and_run(marker)
    monkeypatch.delenv("COWSCOPE_CACHE")  # the same as the default cache: still refused
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "cowscope").mkdir(mode=0o777)
    (tmp_path / "cowscope").chmod(0o777)
    with pytest.raises(native.NativeBuildError, match="writable by others"):
        built_and_run(marker)


def test_sudo_with_the_users_home_does_not_run_the_users_binary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """root with HOME of another user (sudo -E): that user's ~/.cache/cowscope is not used."""
    home, marker = tmp_path / "home", tmp_path / "ran"
    cache = home / ".cache" / "cowscope"
    cache.mkdir(parents=True)
    plant(cache / expected_name(), marker)
    for d in (cache, cache.parent, home):
        os.chown(d, NOBODY, NOBODY)
    monkeypatch.setenv("HOME", str(home))
    exe = built_and_run(marker)
    assert home not in exe.parents
    assert stat.S_IMODE(exe.parent.stat().st_mode) == 0o700
    assert "not using the build cache" in capsys.readouterr().err


def test_foreign_binary_in_own_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, marker = tmp_path / "mine", tmp_path / "ran"
    cache.mkdir(mode=0o700)
    plant(cache / expected_name(), marker)
    monkeypatch.setenv("COWSCOPE_CACHE", str(cache))
    assert built_and_run(marker) == cache / expected_name()


def test_binary_not_matching_its_recorded_hash_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, marker = tmp_path / "mine", tmp_path / "ran"
    monkeypatch.setenv("COWSCOPE_CACHE", str(cache))
    exe = built_and_run(marker)
    exe.write_text(f"#!/bin/sh\ntouch {marker}\n")  # our own file, changed after the build
    assert built_and_run(marker) == exe
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700  # created private


def test_planted_symlinks_are_never_written_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Symlinks at the names the build writes (source, binary, hash) replace nothing of the victim's."""
    cache, marker = tmp_path / "mine", tmp_path / "ran"
    cache.mkdir(mode=0o700)
    victims = []
    for suffix in (".c", "", ".sha256"):
        victim = tmp_path / f"precious{suffix or '.bin'}"
        victim.write_bytes(b"the victim's own file\n")
        link = cache / (expected_name() + suffix)
        link.symlink_to(victim)
        os.lchown(link, NOBODY, NOBODY)
        victims.append(victim)
    monkeypatch.setenv("COWSCOPE_CACHE", str(cache))
    exe = built_and_run(marker)
    assert not exe.is_symlink()
    for victim in victims:
        assert victim.read_bytes() == b"the victim's own file\n"


def test_no_predictable_temp_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache that cannot be created falls back to a fresh mkdtemp directory, not
    $TMPDIR/cowscope-<uid> where another user may have planted a binary."""
    marker = tmp_path / "ran"
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/cowscope-cannot-exist")
    trap = Path(tempfile.gettempdir()) / f"cowscope-{os.getuid()}"
    trap.mkdir()
    plant(trap / expected_name(), marker)
    os.chown(trap, NOBODY, NOBODY)
    exe = built_and_run(marker)
    assert exe.parent != trap and stat.S_IMODE(exe.parent.stat().st_mode) == 0o700


VICTIM = """
import importlib.util, subprocess, sys
spec = importlib.util.spec_from_file_location("native", sys.argv[1])
native = importlib.util.module_from_spec(spec)
spec.loader.exec_module(native)
exe = native.build("probe", b"int main(void) { return 7; }\\n", "test")
sys.exit(subprocess.run([str(exe)]).returncode)
"""


def test_unprivileged_victim_never_runs_another_users_binary() -> None:
    """A user whose home cannot hold a cache (nobody: HOME=/nonexistent) in a shared /tmp where
    uid 65533 planted cowscope-65534/<binary>: the victim, run as uid 65534, builds its own."""
    shared = Path(tempfile.mkdtemp(dir="/tmp", prefix="cowscope-test-shared-"))
    try:
        shared.chmod(0o1777)
        marker = shared / "ran"
        trap = shared / f"cowscope-{NOBODY}"
        trap.mkdir()
        plant(trap / expected_name(), marker, owner=65533)
        os.chown(trap, 65533, 65533)
        module = shared / "native_copy.py"  # the module under test, where the victim can read it
        shutil.copy(native.__file__, module)
        module.chmod(0o644)
        python = _python_for_nobody()
        env = {"HOME": "/nonexistent", "TMPDIR": str(shared), "PATH": os.environ["PATH"]}
        proc = subprocess.run([python, "-c", VICTIM, str(module)], env=env, capture_output=True, text=True,
                              preexec_fn=_become_nobody, cwd=shared, timeout=60)
        assert proc.returncode == 7, proc.stderr
        assert not marker.exists(), "uid 65533's program ran as uid 65534"
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def _python_for_nobody() -> str:
    """A Python interpreter uid 65534 can run (ours may sit in root's private home)."""
    for cand in (sys.executable, shutil.which("python3"), "/usr/bin/python3"):
        try:
            if cand and subprocess.run([cand, "-c", "pass"], preexec_fn=_become_nobody, cwd="/",
                                       capture_output=True).returncode == 0:
                return cand
        except OSError:
            continue
    pytest.skip("no Python interpreter that uid 65534 can run")


def _become_nobody() -> None:
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def test_cli_refusal_is_a_clean_error(tmp_path: Path) -> None:
    """`cowscope run --on linux` with an unsafe cache: `error: ...` and exit 2, no traceback."""
    cache = tmp_path / "open"
    cache.mkdir()
    cache.chmod(0o777)
    scenario = Path(__file__).resolve().parents[1] / "scenarios" / "fork_basics.py"
    env = dict(os.environ, COWSCOPE_CACHE=str(cache))
    proc = subprocess.run([sys.executable, "-m", "cowscope", "run", str(scenario), "--on", "linux"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "error: refusing the build cache" in proc.stderr and "Traceback" not in proc.stderr
