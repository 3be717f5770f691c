"""--emit-c: the C program of a problem compiles cleanly and prints the model's answers, as root
(PFNs, kpagecount, kpageflags) and as an unprivileged user (the exclusive bit, fault counts)."""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cowscope.learn.emit_c import emit_c, expected, parse_output
from cowscope.learn.generate import generate
from cowscope.learn.lang import parse
from cowscope.learn.solve import solve
from cowscope.model import Machine

CC = shutil.which(os.environ.get("CC", "cc"))
needs_cc = pytest.mark.skipif(CC is None, reason="no C compiler")

#: Every verb and question kind, vfork and exec, a SIGSEGV, files, malloc.
EVERYTHING = """P mmap a 4; P write a all =A; P fork C; ? outcome C write a 1 why; ? outcome P write a 2 why
? outcome P write a 1 why; ? strip P a; ? pss P a; C exit; P wait C; ? outcome P write a 3 why
? outcome P read a 3; P mmap b 2; ? outcome P read b 0 why; ? outcome P write b 0 why; ? value P read b 1
P malloc x 100; P write x; P fork D; ? copies D free x; ? addr D malloc y 100; ? own D code
file f 2; P mmap m 2 file=f; ? outcome P write m 0 why; ? file f 0; ? value P read m 1; ? rss P m
pwrite f 1 =Q; ? value P read m 1; P mmap s 2 shared; ? outcome P write s 0 why
P vfork V; ? outcome V write a 0 why; V exec; ? value P read a 0; P fork X; X exec; ? uss P a
P madvise a 2-3 dontneed; ? strip P a; P madvise a 0 dontfork; P fork E; ? outcome E write a 0 why
P munmap b; ? strip P a; P mmap z 3; ? faults P read z 1; ? faults P write z all; P fork Z
? faults Z write z 0-1; ? faults P write z all"""


def build(problem, tmp: Path, name: str) -> tuple[Path, dict[int, str]]:
    sol = solve(problem, Machine())
    src = tmp / f"{name}.c"
    src.write_text(emit_c(problem, sol))
    exe = tmp / name
    r = subprocess.run([CC, "-Wall", "-Werror", "-o", str(exe), str(src)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    return exe, expected(sol)


def run(exe: Path, user: bool = False) -> dict[int, str]:
    cmd = [str(exe)]
    if user:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return parse_output(r.stdout)


def test_the_program_carries_the_problem_its_lines_and_the_model_answers():
    p = generate(42)
    src = emit_c(p, solve(p, Machine()))
    assert src.startswith("/* cowscope learn: seed 42 · topic exec · level 1 · generator v2")
    assert "     ? outcome P write a 0 =B" in src and "5  P: a[0] = 'B';" in src
    assert "     Q2: reuse\n" in src
    assert "case 5: { /* ? outcome P write a 0 =B */" in src


def test_output_parsing():
    assert parse_output("title\nQ1: copy (why: shared)\nQ12: 8\nnoise: x\n") == {1: "copy (why: shared)", 12: "8"}


@pytest.mark.kernel
@needs_cc
def test_every_statement_and_question_as_root_and_as_a_user(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("root, to compare PFN-based answers (CI runs as root)")
    tmp_path.chmod(0o755)
    exe, want = build(parse(EVERYTHING), tmp_path, "everything")
    assert run(exe) == want
    if shutil.which("setpriv") is None:
        pytest.skip("no setpriv to run as a user")
    exe.chmod(0o755)
    as_user = run(exe, user=True)
    shared_any = str.maketrans({c: "2" for c in "3456789+"})
    assert as_user == {k: v.translate(shared_any) if ":" not in v and "#" in v else v for k, v in want.items()}


@pytest.mark.kernel
@needs_cc
def test_fifty_problems_compile_with_wall_werror_and_print_the_model_answers(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("PFNs need root (CI runs as root)")

    def one(seed: int) -> tuple[int, dict[int, str], dict[int, str]]:
        exe, want = build(generate(seed), tmp_path, f"p{seed}")
        return seed, want, run(exe)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(1, 51)))
    wrong = [(seed, want, got) for seed, want, got in results if want != got]
    assert not wrong, wrong[:3]
    assert sum(len(want) for _, want, _ in results) > 150
