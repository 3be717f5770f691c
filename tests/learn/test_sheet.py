"""Homework sheets (plain text, JSON): '?' without the key, the answers with it, narrow enough."""

import json

import pytest

from cowscope.learn.generate import generate, topic_names
from cowscope.learn.sheet import sheet_json, sheet_text
from cowscope.learn.solve import solve
from cowscope.model import Machine


def test_sheet_without_key_has_a_question_mark_per_answer():
    p = generate(7)
    text = sheet_text(p)
    assert text.count("answer: ?") == len(p.questions)
    assert "seed 7 · topic file · level 2 · generator v2" in text
    assert "P: C = fork();" in text and "P: char *s = mmap(2*PAGE, MAP_SHARED, f);" in text


def test_sheet_with_key_shows_answers_reason_path_and_strips():
    p = generate(7)
    text = sheet_text(p, solve(p, Machine()))
    assert "answer: ?" not in text
    assert "answer: page-cache (why: file)" in text and "answer: A" in text and "answer: copy" in text
    assert "kernel path: do_cow_fault: copy the page-cache page" in text
    assert "strip of m in C: .. -> .#" in text


@pytest.mark.parametrize("width", [60, 72])
@pytest.mark.parametrize("topic", topic_names())
def test_sheets_fit_the_width(topic, width):
    for level in (1, 2, 3):
        p = generate(11, topic, level)
        text = sheet_text(p, solve(p, Machine()), width=width)
        assert max(len(line) for line in text.splitlines()) <= width, text


def test_json_has_the_problem_text_lines_and_answers():
    p = generate(42, "fork", 3)
    data = json.loads(json.dumps(sheet_json(p, solve(p, Machine()))))
    assert data["generator"] == 2 and data["seed"] == 42 and data["topic"] == "fork"
    assert data["problem"] == p.text()
    assert data["lines"][0] == {"n": 1, "text": "P: char *a = mmap(4*PAGE, MAP_PRIVATE|MAP_ANON);"}
    q1 = data["questions"][0]
    assert q1["kind"] == "outcome" and q1["why"] and q1["line"] == 4
    assert q1["answer"]["value"] == "copy" and q1["answer"]["why"] == "shared"
    assert "copy" in q1["choices"]
    assert "answer" not in sheet_json(p)["questions"][0]
    assert data["why_choices"][2] == ["shared", "another process maps it too"]
