"""Inverse problems: the line that ran is the one choice that leaves the pages shown; every other
choice leaves other pages (checked on the model again here)."""

from __future__ import annotations

import json

import pytest

from cowscope.learn.generate import generate
from cowscope.learn.inverse import actions_of, invert, model_state
from cowscope.learn.lang import parse
from cowscope.learn.sheet import inverse_json, inverse_text


@pytest.mark.parametrize("seed", range(1, 31))
def test_the_right_choice_and_only_it_gives_the_states_shown(seed):
    inv = invert(generate(seed, inverse=True))
    assert inv.questions, "every inverse problem asks something"
    for q in inv.questions:
        prefix = inv.actions[: q.index]
        assert model_state(prefix) == q.before
        assert inv.actions[q.index] == q.choices[q.answer - 1]
        assert 3 <= len(q.choices) <= 4 and len(set(q.choices)) == len(q.choices)
        outcomes = [model_state(prefix + [c]) == q.after for c in q.choices]
        assert outcomes == [n == q.answer for n in range(1, len(q.choices) + 1)]


def test_inversion_is_reproducible_and_the_answers_vary():
    assert [q.choices for q in invert(generate(8, inverse=True)).questions] == \
        [q.choices for q in invert(generate(8, inverse=True)).questions]
    answers = {q.answer for s in range(1, 31) for q in invert(generate(s, inverse=True)).questions}
    assert answers == {1, 2, 3, 4}


def test_a_state_question_shows_processes_and_regions_and_a_dead_process_goes():
    p = parse("P mmap a 2; P write a all; P fork C; C exit; P write a 0; ? strip P a")
    states = [model_state(actions_of(p)[:n]) for n in (3, 4)]
    assert states == [{"a in P": "22", "a in C": "22"}, {"a in P": "##"}]


def test_sheet_hides_the_line_without_the_key_and_json_carries_the_states():
    inv = invert(generate(8, inverse=True))
    q = inv.questions[0]
    hidden = inverse_text(inv)
    shown = inverse_text(inv, key=True)
    assert f"{q.index + 1:4d}  ?" in hidden and "answer: ?" in hidden
    assert f"answer: {q.answer}" in shown and "before  after" in shown
    data = json.loads(json.dumps(inverse_json(inv, key=True)))
    assert data["inverse"] and data["questions"][0]["before"] == q.before
    assert data["questions"][0]["answer"] == q.answer and len(data["questions"][0]["choices"]) == len(q.choices)
    assert "answer" not in inverse_json(inv)["questions"][0]
