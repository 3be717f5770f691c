"""`cowscope run` through a real subprocess: the example scenarios run, scenario errors name file and line."""

from __future__ import annotations

from .helpers import ROOT, cowscope


def test_run_example_scenarios():
    for f in sorted((ROOT / "scenarios").glob("*.py")):
        r = cowscope("run", str(f))
        assert r.returncode == 0, f"{f}: {r.stderr}"
        assert "checkpoint:" in r.stdout


def test_run_reports_scenario_errors_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def scenario(m):\n    p = m.spawn()\n    p.write(0, b'x')\n    x = 1\n    return x.nope\n")
    r = cowscope("run", str(bad))
    # the segfault is an outcome of the simulated process, not a scenario bug
    assert r.returncode == 0
    assert "SIGSEGV" in r.stdout and "Traceback" not in r.stdout + r.stderr
    bad.write_text("def scenario(m):\n    p = m.spawn()\n    p.nope()\n")
    r = cowscope("run", str(bad))
    assert r.returncode == 2 and f"{bad}:3:" in r.stderr and "AttributeError" in r.stderr
    assert "Traceback" not in r.stderr
    bad.write_text("def scenario(m):\n    p = (\n")
    r = cowscope("run", str(bad))
    assert r.returncode == 2 and f"{bad}:2: syntax error" in r.stderr
    bad.write_text("x = 1\n")
    r = cowscope("run", str(bad))
    assert r.returncode == 2 and "no function `def scenario(m):`" in r.stderr
