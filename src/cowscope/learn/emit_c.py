"""A problem as a standalone C program that prints its answers from /proc on any Linux machine.

The program is the runtime (c/*.c: a controller and one process per problem process, each
step acknowledged before the next) followed by this module's `step()`: one `case` per statement
of the problem, the same actions as `solve.py` performs through the backends' API, and for each
question the same facts read the same way (pagemap, kpagecount, kpageflags, smaps).
"""

from __future__ import annotations

import textwrap
from importlib import resources

from .lang import CODE, Action, Problem, Question, pages_of
from .sheet import walk
from .show import problem_header
from .solve import Solution

#: The runtime, in order: globals and output, the facts and answers, processes and the controller.
RUNTIME = ("common.c", "facts.c", "procs.c")
MADVICE = {"dontneed": "MADV_DONTNEED", "dontfork": "MADV_DONTFORK", "dofork": "MADV_DOFORK",
           "wipeonfork": "MADV_WIPEONFORK", "keeponfork": "MADV_KEEPONFORK"}
HEADERS = ("errno.h", "fcntl.h", "poll.h", "sched.h", "setjmp.h", "signal.h", "stdarg.h", "stdio.h",
           "stdlib.h", "string.h", "sys/mman.h", "sys/resource.h", "sys/syscall.h", "sys/wait.h", "unistd.h")


class _Names:
    """Indexes of processes, regions, blocks and files, in order of appearance."""

    def __init__(self, problem: Problem) -> None:
        self.procs: list[str] = []
        self.regions: dict[str, tuple[int, int, str, bool]] = {}   # name -> (index, npages, file, shared)
        self.blocks: dict[str, tuple[int, int]] = {}               # name -> (index, size)
        self.files: dict[str, int] = {}
        for step in problem.steps:
            a = step.action if isinstance(step, Question) else step
            if a is None:
                continue
            if a.proc and a.proc not in self.procs:
                self.procs.append(a.proc)
            if a.verb in ("fork", "vfork") and a.args[0] not in self.procs:
                self.procs.append(a.args[0])
            if a.verb == "mmap":
                fname = next((f[5:] for f in a.args[2:] if f.startswith("file=")), "")
                self.regions[a.args[0]] = (len(self.regions), int(a.args[1]), fname, "shared" in a.args[2:])
            if a.verb == "malloc":
                index = self.blocks[a.args[0]][0] if a.args[0] in self.blocks else len(self.blocks)
                self.blocks[a.args[0]] = (index, int(a.args[1]))
            if a.verb == "file":
                self.files[a.args[0]] = len(self.files)

    def at(self, name: str, page: int) -> str:
        return f"R[{self.regions[name][0]}] + {page} * PAGE"


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _action(a: Action, n: _Names) -> list[str]:
    """C statements for one action (without the acknowledgement)."""
    args = a.args
    if a.verb == "mmap":
        i, npages, fname, shared = n.regions[args[0]]
        return [f"map_region({i}, {npages}, {int(shared)}, {_c_string(fname) if fname else 'NULL'});"]
    if a.verb == "munmap":
        i = n.regions[args[0]][0]
        return [f"munmap(R[{i}], R_pages[{i}] * PAGE);"]
    if a.verb == "malloc":
        i = n.blocks[args[0]][0]
        return [f"B[{i}] = malloc({args[1]});", f'if (!B[{i}]) die("malloc");', f"blk[{i}] = (long)B[{i}];"]
    if a.verb == "free":
        return [f"free(B[{n.blocks[args[0]][0]}]);"]
    if a.verb == "write":
        return [_write(args, n)]
    if a.verb == "read":
        return [f"(void)*(volatile char *)({_read_at(args, n)});"]
    if a.verb == "madvise":
        pages = pages_of(args[1], n.regions[args[0]][1])
        return [f"if (madvise({n.at(args[0], pages[0])}, {len(pages)} * PAGE, {MADVICE[args[2]]})) "
                'die("madvise");']
    if a.verb == "exec":
        return ["do_exec();"]
    if a.verb == "exit":
        return ["_exit(0);"]
    if a.verb == "wait":
        return [f"waitpid(kid[{n.procs.index(args[0])}], NULL, 0);"]
    raise ValueError(f"no C for {a.verb}")


def _write(args: tuple[str, ...], n: _Names) -> str:
    letter = args[-1][1]
    if args[0] in n.blocks:
        i, size = n.blocks[args[0]]
        return f"fill(B[{i}], '{letter}', {size});"
    pages = pages_of(args[1], n.regions[args[0]][1])
    if len(pages) == 1:
        return f"*(volatile char *)({n.at(args[0], pages[0])}) = '{letter}';"
    return f"fill({n.at(args[0], pages[0])}, '{letter}', {len(pages)} * PAGE);"


def _read_at(args: tuple[str, ...], n: _Names) -> str:
    if args[0] in n.blocks:
        return f"B[{n.blocks[args[0]][0]}]"
    return n.at(args[0], int(args[1]))


def _question(q: Question, number: int, n: _Names, earlier_blocks: list[int]) -> list[str]:
    """C statements asking one question (without the acknowledgement)."""
    a = q.action
    if q.kind == "outcome" and a is not None:
        _, _, fname, shared = n.regions[a.args[0]]
        access = _write(a.args, n) if a.verb == "write" else "(void)*(volatile char *)at;"
        return [f"char *at = {n.at(a.args[0], int(a.args[1]))};",
                "struct look b = look_page(at), a = b;", "volatile int segv;",
                "volatile long faults = minor_faults();   /* warm: its own stack write faults now */",
                f"GUARDED(segv, faults = minor_faults(); {access.rstrip(';')}; faults = minor_faults() - faults);",
                "if (!segv)", "    a = look_page(at);",
                f"answer_outcome({number}, b, a, segv, {int(a.verb == 'write')}, {int(bool(fname) or shared)}, "
                f"faults, {int(q.why)});",
                "if (segv)", "    die_segv();"]
    if q.kind == "value" and a is not None:
        return ["volatile int segv;", "volatile char c = 0;",
                f"GUARDED(segv, c = *(volatile char *)({_read_at(a.args, n)}));",
                f"answer_letter({number}, segv, c);", "if (segv)", "    die_segv();"]
    if q.kind == "faults" and a is not None:
        access = _write(a.args, n) if a.verb == "write" else f"(void)*(volatile char *)({_read_at(a.args, n)});"
        return ["long faults = minor_faults();   /* warm: its own stack write faults now */",
                "faults = minor_faults();", access, "faults = minor_faults() - faults;",
                f'out("Q{number}: %ld\\n", faults);']
    if q.kind == "copies" and a is not None:
        return ["struct ranges r = copy_ranges();", "long count = pfns(&r, pf_before);",
                *_action(a, n), f"answer_copies({number}, &r, count);"]
    if q.kind == "addr" and a is not None:
        order = ", ".join(map(str, earlier_blocks)) or "-1"
        return [f"char *p = malloc({a.args[1]});", 'if (!p) die("malloc");',
                f"answer_addr({number}, {n.blocks[a.args[0]][0]}, p, BLOCK_NAMES, (const int[]){{{order}}}, "
                f"{len(earlier_blocks)});"]
    if q.kind == "file":
        return [f"answer_file({number}, {_c_string(q.target[0])}, {int(q.target[1])});"]
    return _state_question(q, number, n)


def _state_question(q: Question, number: int, n: _Names) -> list[str]:
    proc, name = q.target
    if name == CODE:
        return [f"answer_own_code({number});"]
    i = n.regions[name][0]
    if q.kind in ("strip", "own"):
        count = "own" if q.kind == "own" else ""
        lines = ["char s[80];", f"strip(R[{i}], R_pages[{i}], s);"]
        if count:
            return lines + ["long own = 0;", "for (char *c = s; *c; c++)", "    own += *c == '#';",
                            f'out("Q{number}: %ld\\n", own);']
        return lines + [f'out("Q{number}: %s\\n", s);']
    fields = {"rss": ['"Rss"'], "pss": ['"Pss"'], "uss": ['"Private_Clean"', '"Private_Dirty"']}[q.kind]
    total = " + ".join(f"smaps_kb(R[{i}], {f})" for f in fields)
    return [f'out("Q{number}: %ld\\n", {total});']


def _machine(a: Action) -> list[str]:
    if a.verb == "file":
        return [f"make_file({_c_string(a.args[0])}, {int(a.args[1])});"]
    pages = pages_of(a.args[1], 64)
    return [f"write_file({_c_string(a.args[0])}, {pages[0]}, {len(pages)}, '{a.args[2][1]}');"]


def _actor(step: Action | Question, n: _Names) -> int:
    """The index of the process that performs the step; -1 for the controller (files)."""
    if isinstance(step, Question) and step.action is None:
        return -1 if step.kind == "file" else n.procs.index(step.target[0])
    a = step.action if isinstance(step, Question) else step
    return n.procs.index(a.proc) if a is not None and a.proc else -1


def _cases(problem: Problem, n: _Names) -> tuple[list[str], list[str], list[int], list[int]]:
    """The bodies of step() and machine_step(), and the ACTOR and CHILD tables."""
    proc_cases: list[str] = []
    machine_cases: list[str] = []
    actor: list[int] = []
    child: list[int] = []
    qnumber = 0
    seen_blocks: list[int] = []
    for index, step in enumerate(problem.steps):
        a = step.action if isinstance(step, Question) else step
        if isinstance(step, Question):
            qnumber += 1
        actor.append(_actor(step, n))
        child.append(n.procs.index(a.args[0]) if a is not None and a.verb in ("fork", "vfork") else -1)
        if isinstance(step, Question):
            body = _question(step, qnumber, n, list(seen_blocks))
        elif step.verb in ("fork", "vfork"):
            call = "do_fork(me, n" if step.verb == "fork" else "do_vfork(n"
            proc_cases.append(f"    case {index}: /* {step.text()} */\n        return {call}, {child[-1]});")
            continue
        elif not step.proc:
            body = _machine(step)
        else:
            body = _action(step, n)
        if a is not None and a.verb == "malloc" and n.blocks[a.args[0]][0] not in seen_blocks:
            seen_blocks.append(n.blocks[a.args[0]][0])
        text = step.text()
        block = "\n".join("        " + line for line in body)
        if actor[-1] < 0:
            machine_cases.append(f"    case {index}: {{ /* {text} */\n{block}\n        break;\n    }}")
        else:
            proc_cases.append(f"    case {index}: {{ /* {text} */\n{block}\n        return 0;\n    }}")
    return proc_cases, machine_cases, actor, child


def emit_c(problem: Problem, solution: Solution | None = None) -> str:
    """The C program of `problem`; with the model's solution, its answers in the header comment."""
    n = _Names(problem)
    proc_cases, machine_cases, actor, child = _cases(problem, n)
    title = f"cowscope learn: {problem_header(problem)}"
    lines = [f"   {item.number:3d}  {item.line}" for item in walk(problem) if item.line]
    head = [f"/* {title}", "", "   The problem (cowscope learn -A):",
            *textwrap.indent(problem.text(), "     ").splitlines(), "", "   As C lines:", *lines, "",
            "   Build and run:  cc -O2 -Wall -o learn learn.c && sudo ./learn",
            "   As root the answers come from PFNs, /proc/kpagecount and /proc/kpageflags; without",
            "   root from pagemap's exclusive bit and each access's own page faults, and a strip",
            "   shows 2 for a page shared by any number of processes."]
    if solution is not None:
        head += ["", "   The model's answers:"] + [f"     Q{i}: {_shown(a)}" for i, a in enumerate(solution.answers, 1)]
    body = "\n".join(head)[3:].replace("/*", "/ *").replace("*/", "* /")
    out = ["/* " + body + " */", "", "#define _GNU_SOURCE"] + [f"#include <{h}>" for h in HEADERS]
    out += [f"#define NPROC {len(n.procs)}", f"#define NREG {len(n.regions)}", f"#define NBLK {len(n.blocks)}",
            f"#define NFILE {len(n.files)}", f"#define NSTEPS {len(problem.steps)}",
            f"static const char TITLE[] = {_c_string(title)};",
            f"static const int ACTOR[NSTEPS] = {{{', '.join(map(str, actor))}}};",
            f"static const int CHILD[NSTEPS] = {{{', '.join(map(str, child))}}};",
            "static const char *const FILE_NAMES[NFILE + 1] = {" + "".join(f"{_c_string(f)}, " for f in n.files)
            + "NULL};",
            "static __attribute__((unused)) const char *const BLOCK_NAMES[NBLK + 1] = {"
            + "".join(f"{_c_string(b)}, " for b in n.blocks) + "NULL};", ""]
    for part in RUNTIME:
        out.append(resources.files(__package__).joinpath("c", part).read_text(encoding="utf-8"))
    out += ["", "static int step(int *me, int n)", "{", "    (void)me;", "    switch (n) {", *proc_cases,
            "    }", "    return 0;", "}", "", "static void machine_step(int n)", "{", "    switch (n) {",
            *machine_cases, "    }", "}", ""]
    return "\n".join(out)


def _shown(a: object) -> str:
    from .solve import Answer

    assert isinstance(a, Answer)
    if a.question.kind == "outcome" and a.question.why:
        return f"{a.value} (why: {a.why})"
    return str(a.value)


def parse_output(text: str) -> dict[int, str]:
    """The answers a program printed: {question number: 'copy (why: shared)' or '2222' ...}."""
    answers = {}
    for line in text.splitlines():
        head, sep, rest = line.partition(": ")
        if sep and head.startswith("Q") and head[1:].isdigit():
            answers[int(head[1:])] = rest.strip()
    return answers


def expected(solution: Solution) -> dict[int, str]:
    """The model's answers in the form the program prints them."""
    return {i: _shown(a) for i, a in enumerate(solution.answers, 1)}
