"""Reading answers: names, prefixes, numbers and aliases; anything else is re-asked with an example."""

import pytest

from cowscope.learn.grade import Unreadable, is_right, read_answer, read_why
from cowscope.learn.lang import Action, Question
from cowscope.learn.solve import Answer


def ans(kind, value, action=None, target=()):
    return Answer(Question(kind, action, target), value)


OUT = ans("outcome", "zero-fill", Action("P", "write", ("a", "0", "=A")))


@pytest.mark.parametrize("text, value", [
    ("copy", "copy"), ("c", "copy"), ("C", "copy"), ("1", "copy"), ("reuse", "reuse"), ("r", "reuse"),
    ("zf", "zero-fill"), ("zero-f", "zero-fill"), ("zerofill", "zero-fill"), ("zero fill", "zero-fill"),
    ("zp", "zero-page"), ("pc", "page-cache"), (" none ", "none"), ("segv", "segv"), ("7", "segv"),
])
def test_outcome_spellings(text, value):
    assert read_answer(text, OUT) == value


@pytest.mark.parametrize("text", ["zero", "z", "", "8", "maybe"])
def test_ambiguous_or_unknown_outcomes_are_reasked_with_an_example(text):
    with pytest.raises(Unreadable, match=r"one of: copy \(1\).*e\.g\. copy"):
        read_answer(text, OUT)


def test_values_numbers_strips_choices():
    assert read_answer("'B'", ans("value", "B")) == "B"
    assert read_answer("0", ans("value", "0")) == "0"
    with pytest.raises(Unreadable, match="case-sensitive"):
        read_answer("BB", ans("value", "B"))
    assert read_answer("12 kB", ans("pss", 12)) == 12
    with pytest.raises(Unreadable, match="whole number"):
        read_answer("twelve", ans("pss", 12))
    assert read_answer("#2 .0", ans("strip", "#2.0")) == "#2.0"
    with pytest.raises(Unreadable, match="4 characters"):
        read_answer("#2", ans("strip", "#2.0"))
    with pytest.raises(Unreadable, match="4 characters"):
        read_answer("#2x0", ans("strip", "#2.0"))
    a = ans("addr", "x")
    assert read_answer("x", a, ["x", "y", "new"]) == "x"
    assert read_answer("n", a, ["x", "y", "new"]) == "new"


def test_why_and_rightness():
    assert read_why("3") == "shared" and read_why("once") == "once" and read_why("unm") == "unmapped"
    with pytest.raises(Unreadable):
        read_why("because")
    a = Answer(Question("addr", Action("P", "malloc", ("z", "8"))), "x", accepted=("y",))
    assert is_right("x", a) and is_right("y", a) and not is_right("new", a)
