"""The HTML worksheet: every question, the key only when asked, strips in the legend's colours,
text escaped."""

from __future__ import annotations

from html.parser import HTMLParser

from cowscope.learn.generate import generate
from cowscope.learn.sheet import sheet_json
from cowscope.learn.solve import solve
from cowscope.model import Machine
from cowscope.report.strips import COLOURS
from cowscope.report.worksheet import render_worksheet, write_worksheet


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.classes: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in ("meta", "br", "input"):
            self.open.append(tag)
        self.classes += (dict(attrs).get("class") or "").split()

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, (self.open, tag)
        self.open.pop()


def _parsed(html: str) -> _Tags:
    t = _Tags()
    t.feed(html)
    assert t.open == []
    return t


def _sheets(key: bool):
    out = []
    for seed, topic in ((42, "fork"), (43, "madvise"), (44, "malloc")):
        p = generate(seed, topic, 3)
        out.append(sheet_json(p, solve(p, Machine()) if key else None))
    return out


QUESTIONS = [q for s in _sheets(False) for q in s["questions"]]


def test_worksheet_without_key_has_blanks_and_no_answers():
    html = render_worksheet(_sheets(False))
    tags = _parsed(html)
    assert tags.classes.count("q") == len(QUESTIONS) and tags.classes.count("blank") >= len(QUESTIONS)
    assert "class=\"key\"" not in html and "kernel path" not in html
    assert "Problem 1: seed 42, fork, level 3" in html and "P: a[2*PAGE] = &#39;B&#39;;" in html
    assert "cowscope learn --seed 42 --topic fork --level 3 -c" in html
    assert "Why (the page before the access)" in html


def test_worksheet_with_key_shows_answers_paths_and_coloured_strips(tmp_path):
    out = write_worksheet(tmp_path / "sub" / "w.html", _sheets(True), answers=True)
    html = out.read_text()
    tags = _parsed(html)
    assert tags.classes.count("key") == len(QUESTIONS)
    assert "kernel path: do_wp_page -&gt; wp_page_copy" in html
    assert f'<span class="cell" style="background:{COLOURS[2]}">#</span>' in html  # private
    assert html.count("<script") == 0  # a plain page, prints as it is


def test_text_is_escaped():
    sheet = sheet_json(generate(7))
    sheet["title"] = "<script>alert(1)</script>"
    html = render_worksheet([sheet])
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)" in html
