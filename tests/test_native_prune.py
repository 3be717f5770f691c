"""Builds of one program with other sources (another checkout or version of cowscope) stay in the
cache while in use: only builds unused for STALE_DAYS are pruned."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from cowscope import native

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="building needs cc")


@pytest.fixture()
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    where = tmp_path / "cache"
    where.mkdir(mode=0o700)
    monkeypatch.setenv("COWSCOPE_CACHE", str(where))
    return where


def test_another_versions_build_survives_and_an_unused_one_is_pruned(cache: Path) -> None:
    first = native.build("probe", b"int main(void) { return 1; }\n", "test")
    second = native.build("probe", b"int main(void) { return 2; }\n", "test")
    assert first.exists() and second.exists(), "a build another checkout uses was removed"
    old = time.time() - (native.STALE_DAYS + 1) * 86400
    os.utime(first.with_name(first.name + ".sha256"), (old, old))
    native.build("probe", b"int main(void) { return 3; }\n", "test")
    assert not first.exists() and not first.with_name(first.name + ".sha256").exists()
    assert second.exists()


def test_using_a_build_keeps_it(cache: Path) -> None:
    source = b"int main(void) { return 4; }\n"
    exe = native.build("probe", source, "test")
    record = exe.with_name(exe.name + ".sha256")
    old = time.time() - (native.STALE_DAYS + 1) * 86400
    os.utime(record, (old, old))
    assert native.build("probe", source, "test") == exe
    assert record.stat().st_mtime > old + 86400
    native.build("probe", b"int main(void) { return 5; }\n", "test")
    assert exe.exists()
