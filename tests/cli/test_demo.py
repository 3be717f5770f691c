"""`cowscope demo` through a real subprocess: every check holds, the HTML report tells the story."""

from __future__ import annotations

from .helpers import cowscope


def test_demo_checks_all_hold():
    r = cowscope("demo")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "checks hold" in r.stdout and "✗" not in r.stdout
    n = r.stdout.count("✓")
    assert f"{n}/{n} checks hold" in r.stdout and n >= 10


def test_demo_html_report_tells_the_story(tmp_path):
    out = tmp_path / "demo.html"
    r = cowscope("demo", "--html", str(out))
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    assert "exactly 5 pages were copied" in html and "After the child exits" in html
    assert "<script src=" not in html  # self-contained: nothing to fetch
