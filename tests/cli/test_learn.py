"""`cowscope learn` through a real subprocess: sheets, JSON, bad input, practice fed from a pipe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def learn(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cowscope", "learn", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, input=stdin)


def test_seed_7_answers_print_a_homework_sheet_with_its_key():
    r = learn("--seed", "7", "-c")
    assert r.returncode == 0, r.stderr
    assert "seed 7 · topic file · level 2 · generator v2" in r.stdout
    assert "answer: page-cache (why: file)" in r.stdout and "answer: copy (why: file)" in r.stdout
    assert "answer: ?" not in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) <= 72


def test_sheet_without_key_and_several_problems():
    r = learn("--seed", "7", "--sheet", "--count", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("answer: ?") >= 3
    for seed in (7, 8, 9):
        assert f"seed {seed} ·" in r.stdout


def test_json_with_answers_and_explicit_problem():
    r = learn("--json", "-c", "-A", "P mmap a 2; P write a all; P fork C; ? outcome C write a 1 why; ? pss P a")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["topic"] == "explicit" and data["seed"] is None
    assert [q["answer"]["value"] for q in data["questions"]] == ["copy", 6]


def test_bad_input_is_an_error_with_exit_status_2():
    r = learn("--topic", "threads")
    assert r.returncode == 2
    assert "error: unknown topic 'threads'; topics: fork, zero, malloc, tree, file, exec, madvise" in r.stderr
    r = learn("-c", "-A", "P mmap a 2; P fly a; ? strip P a")
    assert r.returncode == 2 and "error: statement 2 ('P fly a'): unknown verb 'fly'" in r.stderr
    assert "Traceback" not in r.stderr
    r = learn("--level", "9")
    assert r.returncode == 2 and "levels are 1, 2, 3" in r.stderr


def test_list_topics_and_language():
    r = learn("--list-topics")
    assert r.returncode == 0 and "malloc   malloc's own writes" in r.stdout and "not yet: huge pages" in r.stdout
    r = learn("--show-language")
    assert r.returncode == 0 and "? outcome C write a 1 [why]" in r.stdout


def test_practice_from_a_pipe_reasks_a_bad_answer_and_ends_with_the_score():
    r = learn("--seed", "3", "--topic", "fork", "--level", "2", stdin="what\nc\n3\nA\n")
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert "Please answer with one of: copy (1)" in out
    assert "right: copy why: shared" in out and "right: A" in out
    assert "score: 2/2 (100%)" in out


def test_html_worksheet_and_emit_c_files(tmp_path):
    html = tmp_path / "w.html"
    r = learn("--seed", "42", "-n", "2", "--html", str(html))
    assert r.returncode == 0, r.stderr
    assert "worksheet written to" in r.stderr and r.stdout == ""
    text = html.read_text()
    assert "Problem 2: seed 43" in text and 'class="key"' not in text
    r = learn("--seed", "42", "-n", "2", "--emit-c", str(tmp_path / "p.c"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "p-42.c").read_text().startswith("/* cowscope learn: seed 42 · topic exec")
    assert (tmp_path / "p-43.c").exists()
    r = learn("--seed", "42", "--emit-c", str(tmp_path / "no" / "such" / "dir.c"))
    assert r.returncode == 2 and "error: argument --emit-c: no folder" in r.stderr
    assert not (tmp_path / "no").exists()


def test_inverse_sheet_json_and_topics_it_cannot_turn_around():
    r = learn("--seed", "8", "--inverse", "-c")
    assert r.returncode == 0, r.stderr
    assert "cowscope learn --inverse: seed 8" in r.stdout and "Which line ran?" in r.stdout
    assert "answer: ?" not in r.stdout and "before  after" in r.stdout
    r = learn("--seed", "8", "-t", "--json")
    data = json.loads(r.stdout)
    assert data["inverse"] and "answer" not in data["questions"][0]
    r = learn("--topic", "malloc", "--inverse", "-c")
    assert r.returncode == 2 and "topics for --inverse: fork, zero, tree, exec, madvise" in r.stderr
    r = learn("-t", "-c", "-A", "P mmap a 1; P malloc x 8; ? strip P a")
    assert r.returncode == 2 and "has no line whose effect" in r.stderr


def test_inverse_practice_from_a_pipe():
    r = learn("--seed", "8", "--inverse", stdin="9\n1\n2\n3\n4\n")
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())
    assert "Please answer with the number of a choice, 1 to" in out
    assert "Which line ran?" in out and "score: " in out


def test_report_writes_the_model_run_as_the_page_map_report(tmp_path):
    out = tmp_path / "r.html"
    r = learn("--seed", "42", "--topic", "fork", "--level", "3", "--report", str(out))
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    assert "<title>cowscope learn: seed 42 · topic fork · level 3 · generator v2</title>" in html
    assert "Q8. How many page faults does this write take in P? Answer: 2" in html  # a step's note
    r = learn("--seed", "42", "-n", "2", "--report", str(out))
    assert r.returncode == 2 and "one problem at a time" in r.stderr
