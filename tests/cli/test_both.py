"""`cowscope run SCENARIO.py --on both` (cli/both.py): the scenario on the model and the kernel."""

from __future__ import annotations

import pytest

from .helpers import ROOT, cowscope

pytestmark = pytest.mark.kernel


def test_example_agrees_and_writes_a_report(tmp_path) -> None:
    html = tmp_path / "both.html"
    r = cowscope("run", str(ROOT / "scenarios" / "fork_basics.py"), "--on", "both", "--html", str(html))
    assert r.returncode == 0, r.stderr
    assert "0 difference(s)" in r.stdout and "never compared (by design)" in r.stdout
    assert html.stat().st_size > 10_000 and "report written to" in r.stdout


def test_a_difference_is_exit_1_and_a_bad_file_exit_2(tmp_path) -> None:
    differ = tmp_path / "differ.py"
    differ.write_text("def scenario(m):\n    p = m.spawn('P')\n    a = p.mmap(4096)\n"
                      "    p.fill(a, 1, 1 if m.backend == 'linux' else 2)\n    p.read(a, 1)\n")
    r = cowscope("run", str(differ), "--on", "both")
    assert r.returncode == 1 and "DIFFERS" in r.stdout
    r = cowscope("run", str(tmp_path / "missing.py"), "--on", "both")
    assert r.returncode == 2 and "cowscope run:" in r.stderr and "Traceback" not in r.stderr


SAME_OUTCOME = {
    "double free": "    a = p.malloc(32)\n    p.free(a)\n    m.checkpoint('freed')\n    p.free(a)\n",
    "segfault": "    a = p.mmap(4096, 'r')\n    p.write(a + 8, b'x')\n",
    "syscall error": "    p.munmap(p.mmap(8192) + 1, 4096)\n",
    "call on a dead process": "    c = p.fork()\n    c.exit(3)\n    c.read(0, 1)\n",
}


@pytest.mark.parametrize("case", list(SAME_OUTCOME))
def test_the_same_outcome_on_both_is_no_difference(tmp_path, case: str) -> None:
    """Compared: the outcome's kind and message (process by name, region-relative address), not
    pids, raw addresses, the backends' wording or cowscope's own frames."""
    f = tmp_path / "s.py"
    f.write_text("def scenario(m):\n    p = m.spawn('P')\n" + SAME_OUTCOME[case])
    r = cowscope("run", str(f), "--on", "both")
    assert r.returncode == 2, r.stdout + r.stderr  # it failed, the same way on both
    assert "0 difference(s)" in r.stdout and "(the same outcome)" in r.stdout and "DIFFERS" not in r.stdout


def test_a_different_outcome_is_a_difference(tmp_path) -> None:
    f = tmp_path / "s.py"
    f.write_text("def scenario(m):\n    p = m.spawn('P')\n    a = p.mmap(4096, 'r')\n"
                 "    p.write(a + (8 if m.backend == 'linux' else 4096 + 8), b'x')\n")
    r = cowscope("run", str(f), "--on", "both")
    assert r.returncode == 1 and "how the scenario ended" in r.stdout and "DIFFERS" in r.stdout
