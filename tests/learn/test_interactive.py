"""The practice loop, fed answers as a student would type them (and, through a pty, Ctrl-C)."""

import io
import os
import pty
import select
import sys
import time

from rich.console import Console

from cowscope.learn.interactive import Quit, Session


def session(answers, raw=False, width=80, **kw):
    out = io.StringIO()
    console = Console(file=out, width=width, highlight=False, color_system=None)
    feed = iter(answers)

    def ask(prompt):
        console.print(prompt, end="")
        try:
            text = next(feed)
        except StopIteration:
            raise EOFError from None
        console.print(text)
        return text

    s = Session(console, ask, seed=kw.pop("seed", 3), **kw)
    try:
        s.run()
    except Quit:
        pass
    s.print_score()
    return s, out.getvalue() if raw else " ".join(out.getvalue().split())


def test_right_answers_score_and_the_reveal_shows_path_strips_and_reason():
    # seed 3, fork level 2: C writes page 2 (copy, shared), P reads it ('A'), P writes it (reuse, once)
    s, out = session(["c", "3", "A", "reuse", "once", "r", "4"], topic="fork", level=2)
    assert "right: copy why: shared" in out
    assert "kernel path: do_wp_page -> wp_page_copy" in out
    assert "strip: 222 -> 22#" in out
    assert "because another process mapped the same page" in out
    assert "right: reuse why: once" in out
    assert s.score.right["fork"] == 4 and s.score.asked["fork"] == 4
    assert "score: 4/4 (100%)" in out
    assert "fork goes up to level 3" in out


def test_a_wrong_format_is_asked_again_with_an_example():
    _, out = session(["maybe", "c", "because", "3", "q"], topic="fork", level=2)
    assert "Please answer with one of: copy (1), reuse (2)" in out
    assert "e.g. copy (or its first letter: c)" in out
    assert "Please answer with one of: untouched (1)" in out
    assert "right: copy" in out


def test_wrong_answers_count_and_the_missed_topic_comes_back():
    answers = ["reuse", "3", "A", "r", "4", "r", "4"]     # Q1 wrong: it is a copy
    s, out = session(answers + ["q"], topic=None, level=2, seed=3)
    assert "wrong: copy (you said reuse)" in out
    assert "fork comes back with a new problem" in out
    assert "practise: cowscope learn --topic fork" in out


def test_skipped_questions_are_missed_and_the_topic_comes_back_before_new_ones():
    s, out = session(["s"] * 3 + ["q"], topic=None, level=1, seed=5)
    assert "skipped, the answer: copy" in out
    assert "seed 5 · topic fork · level 1" in out
    assert "fork comes back with a new problem" in out
    assert "seed 6 · topic fork · level 1" in out  # not the next topic in turn (zero)
    assert "score: 0/3 (0%)" in out


def test_ctrl_c_in_a_terminal_prints_the_score_so_far():
    pid, fd = pty.fork()
    if pid == 0:  # the child: cowscope learn on the pty
        os.execv(sys.executable, [sys.executable, "-m", "cowscope", "learn", "--seed", "3", "--topic", "fork",
                                  "--level", "2"])
    out = b""

    def read_until(marker, timeout=60.0):
        nonlocal out
        end = time.time() + timeout
        while marker not in out and time.time() < end:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    break
        return marker in out

    try:
        assert read_until(b"> "), out
        os.write(fd, b"c\r")
        assert read_until(b"unmapped"), out
        os.write(fd, b"3\r")
        assert read_until(b"Q2."), out
        time.sleep(0.3)
        os.write(fd, b"\x03")
        assert read_until(b"fork     1/1"), out
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    text = out.decode(errors="replace")
    assert "score: 1/1 (100%)" in text
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_practice_reads_at_60_columns():
    _, out = session(["c", "3", "A", "r", "4", "r", "4", "s", "q"], raw=True, width=60, topic="fork", level=2)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 60, max(lines, key=len)
    assert "kernel path: do_wp_page -> wp_page_copy" in out


def test_strip_questions_show_the_legend():
    _, out = session(["2222", "q"], topic="exec", level=1, seed=42)
    assert "Draw a in P" in out and ". not present 0 zero page # private 2-9 shared by N f page cache" in out
    assert "right: 2222" in out


def test_a_topic_missed_again_waits_for_a_new_topic():
    s, out = session(["s"] * 7 + ["q"], topic=None, level=1, seed=5)
    headers = [h.split(" · ")[1] for h in out.split("───") if "topic" in h and "·" in h]
    assert headers[:3] == ["topic fork", "topic fork", "topic zero"]


def test_every_width_fits_and_keeps_the_strips_whole():
    """At 40, 60, 80 and 120 columns no line is longer than the terminal and each reveal's strips
    (`strip: 222 -> 22#`) stay on one line, and from 60 columns the kernel path too."""
    from rich.cells import cell_len

    for width in (40, 60, 80, 120):
        _, out = session(["c", "3", "A", "reuse", "once", "r", "4", "q"], raw=True, width=width, topic="fork", level=2)
        lines = out.splitlines()
        assert [ln for ln in lines if cell_len(ln) > width] == [], width
        assert "strip: 222 -> 22#" in out and "strip: 22# -> 22#" in out, width
        assert width < 60 or any(ln.strip() == "kernel path: do_wp_page -> wp_page_copy" for ln in lines), width
