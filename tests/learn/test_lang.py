"""The action language: what parses, what does not (and says why), and the round trip."""

import pytest

from cowscope.learn.lang import Action, ProblemError, Question, pages_of, parse


def test_statements_parse_to_actions_and_questions():
    p = parse("P mmap a 4; P write a 0-3 =A; P fork C\n? outcome C write a 1 why  # comment\n? strip P a")
    assert p.steps[0] == Action("P", "mmap", ("a", "4"))
    assert p.steps[1] == Action("P", "write", ("a", "0-3", "=A"))
    assert p.steps[3] == Question("outcome", Action("C", "write", ("a", "1", "=B")), why=True)
    assert p.steps[4] == Question("strip", target=("P", "a"))
    assert len(p.questions) == 2


def test_text_round_trips():
    text = ("file f 2\nP mmap m 2 file=f\nP mmap s 2 shared\nP malloc x 100\nP write x =A\n"
            "P vfork C\n? outcome C write s 1 =B why\nC exit\n? copies P free x\n"
            "? addr P malloc y 100\npwrite f 1 =C\n? file f 1\n? own P code")
    p = parse(text)
    assert p.text() == text
    assert parse(p.text()).steps == p.steps


def test_unlettered_writes_take_the_letter_after_the_last_one():
    p = parse("P mmap a 2; P write a 0 =D; P write a 1; ? value P read a 1")
    assert p.steps[2].args[-1] == "=E"


@pytest.mark.parametrize("text, says", [
    ("P mmap a 2; P jump a; ? strip P a", "unknown verb 'jump'"),
    ("P mmap a 2; C write a 0; ? strip P a", "no process C"),
    ("P mmap a 2; P write b 0; ? strip P a", "no mmap'd region or block 'b'"),
    ("P mmap a 2; P write a 2; ? strip P a", "the region has pages 0-1"),
    ("P mmap a 2; P vfork C; P write a 0; ? strip P a", "P is suspended in vfork() until C execs or exits"),
    ("P mmap a 2; P fork C; C exit; C write a 0; ? strip P a", "C has exited"),
    ("P mmap a 2; P write a 0", "the problem asks nothing"),
    ("P mmap a 2; ? colour P a", "a question is '? KIND ...'"),
    ("P mmap a 2; ? outcome P write a 0-1", "one page of an mmap'd region"),
    ("P mmap a 2; ? strip P code", "? own PROC code"),
    ("P mmap a 99; ? strip P a", "99 pages: 1 to 64"),
    ("p mmap a 2; ? strip p a", "a process name starts with an upper-case letter"),
    ("P mmap a 2; P mmap a 2; ? strip P a", "the name 'a' is taken"),
    ("P mmap a 2; P write a 0 =b; ? strip P a", "one upper-case letter"),
    ("P mmap a 2; P madvise a 0 sleep; ? strip P a", "advice 'sleep'"),
])
def test_bad_statements_say_what_is_wrong(text, says):
    with pytest.raises(ProblemError, match="statement") as e:
        parse(text)
    assert says in str(e.value) or says in str(e.value).replace('"', "'")


def test_pages_spec():
    assert list(pages_of("all", 3)) == [0, 1, 2]
    assert list(pages_of("1-2", 3)) == [1, 2]
    assert list(pages_of("2", 3)) == [2]
    with pytest.raises(ProblemError):
        pages_of("2-1", 3)
    with pytest.raises(ProblemError):
        pages_of("x", 3)
