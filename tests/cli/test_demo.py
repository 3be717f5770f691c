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


def test_demo_thp_tells_the_huge_page_story(tmp_path):
    out = tmp_path / "thp.html"
    r = cowscope("demo", "thp", "--html", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    n = r.stdout.count("✓")
    assert n >= 9 and f"{n}/{n} checks hold" in r.stdout and "✗" not in r.stdout
    assert "4 KiB copied, not 2 MiB" in r.stdout and "H 2 MiB THP" in r.stdout
    html = out.read_text()
    assert "one 4 KiB copy after one PMD split" in html and "copies 512 pages" in html


def test_demo_threads_tells_the_arena_story(tmp_path):
    out = tmp_path / "threads.html"
    r = cowscope("demo", "threads", "--html", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    n = r.stdout.count("✓")
    assert n >= 10 and f"{n}/{n} checks hold" in r.stdout and "✗" not in r.stdout
    assert "the child has one thread but all four arenas" in r.stdout and "arena heap" in r.stdout
    html = out.read_text()
    assert "no fault in any thread arena" in html and "only those pages are copied" in html
