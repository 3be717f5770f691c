"""Threads on both backends: the same outcomes, addresses (relative to their heap) and /proc views.

The model's threads (model.kernel.thread, model.libc.nptl, ptmalloc's arenas) against the agent's
real pthreads: where a thread's first malloc lands, what a fork from a thread inherits, what
calls on an ended thread raise, status Threads:, /proc/PID/task, malloc_stats and mallinfo2.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from cowscope.linux.machine import Machine as LinuxMachine
from cowscope.model import Machine as ModelMachine
from cowscope.observe.backend import Machine

pytestmark = pytest.mark.kernel
HEAP = 64 << 20


def _heap_off(addr: int) -> int:
    return addr & (HEAP - 1)


def _first_malloc_in_thread(m: Machine) -> Any:
    p = m.spawn("P")
    p.malloc(24)
    t = p.pthread_create()
    lo, hi = t.stack_range()
    a = t.malloc(24)
    b = t.malloc(5000)
    return _heap_off(a), _heap_off(b), hi - lo, p.tasks() == [p.pid, t.tid], p.status().threads


def _stack_and_arena_vmas(m: Machine) -> Any:
    p = m.spawn("P")
    t = p.pthread_create()
    heap = t.malloc(24) & ~(HEAP - 1)
    lo, hi = t.stack_range()
    out = []
    for e in p.smaps():
        if lo <= e.vma.start < hi or heap <= e.vma.start < heap + HEAP:
            out.append((e.vma.start - (lo if e.vma.start < hi and e.vma.start >= lo else heap),
                        e.vma.end - e.vma.start, e.vma.perms, e.vm_flags, e["Rss"]))
    return out


def _fork_from_thread(m: Machine) -> Any:
    p = m.spawn("P")
    x = p.malloc(200)
    t = p.pthread_create()
    y = t.malloc(100)
    t.free(y)                     # t's tcache
    c = t.fork()
    same = c.malloc(100) == y     # the child's thread is t's copy: its tcache
    z = c.malloc(3000)            # t's arena (thread_arena), not main's
    c.free(x)                     # a main-arena chunk into t's tcache
    return same, _heap_off(z), c.malloc(200) == x, c.tasks() == [c.pid], c.status().threads


def _cross_thread_free(m: Machine) -> Any:
    p = m.spawn("P")
    ptrs = [p.malloc(40) for _ in range(9)]
    t = p.pthread_create()
    for q in ptrs:
        t.free(q)                 # 7 into t's tcache, then main's fastbin
    got = [t.malloc(40) for _ in range(8)]
    return [ptrs.index(g) if g in ptrs else _heap_off(g) for g in got]


def _call_on_exited_thread(m: Machine) -> Any:
    p = m.spawn("P")
    t = p.pthread_create()
    t.malloc(10)
    t.pthread_exit()
    return t.state, p.status().threads, t.malloc(1)


def _join_running_thread(m: Machine) -> Any:
    p = m.spawn("P")
    t = p.pthread_create()
    return p.pthread_join(t)


def _join_twice(m: Machine) -> Any:
    p = m.spawn("P")
    t = p.pthread_create()
    t.pthread_exit()
    p.pthread_join(t)
    return p.pthread_join(t)


def _thread_after_exec(m: Machine) -> Any:
    p = m.spawn("P")
    t = p.pthread_create()
    p.exec()
    return t.state, p.tasks() == [p.pid], t.malloc(8)


def _thread_of_dead_process(m: Machine) -> Any:
    p = m.spawn("P")
    t = p.pthread_create()
    p.exit(0)
    return t.state, t.malloc(8)


def _stats_and_info(m: Machine) -> Any:
    p = m.spawn("P")
    p.malloc(1000)
    ts = [p.pthread_create() for _ in range(3)]
    for i, t in enumerate(ts):
        t.malloc(1000 * (i + 1))
        t.calloc(10, 300)
    ts[1].pthread_exit()
    p.pthread_join(ts[1])
    return p.malloc_stats(), p.mallinfo2(), ts[0].mallinfo2() == p.mallinfo2()


def _arena_free_list_after_exit(m: Machine) -> Any:
    p = m.spawn("P")
    a, b = p.pthread_create(), p.pthread_create()
    xa, xb = a.malloc(24), b.malloc(24)
    a.pthread_exit()
    c = p.pthread_create()       # takes a's arena from the free list
    xc = c.malloc(24)
    return xc & ~(HEAP - 1) == xa & ~(HEAP - 1), xc & ~(HEAP - 1) != xb & ~(HEAP - 1), _heap_off(xc)


def _arguments_on_a_thread(m: Machine) -> Any:
    """A thread's calls take the process's argument rules (observe.arguments) on both backends."""
    p = m.spawn("P")
    t = p.pthread_create()
    x = t.malloc(64)
    out: list[Any] = [t.malloc(-1), t.calloc(-1, -1), t.memalign(-1, 64)]  # size_t: NULL from glibc
    for call in (lambda: t.malloc("8"), lambda: t.read(x, -1), lambda: t.fill(x, 8, 256),
                 lambda: t.free(1.5), lambda: t.realloc(x, 2**64)):
        try:
            call()
            out.append("ok")
        except (TypeError, ValueError) as exc:
            out.append((type(exc).__name__, str(exc)))
    out.append(t.read(x, 0))
    return out


SITUATIONS: dict[str, Callable[[Machine], Any]] = {f.__name__.lstrip("_"): f for f in (
    _first_malloc_in_thread, _stack_and_arena_vmas, _fork_from_thread, _cross_thread_free,
    _call_on_exited_thread, _join_running_thread, _join_twice, _thread_after_exec,
    _thread_of_dead_process, _stats_and_info, _arena_free_list_after_exit, _arguments_on_a_thread)}


def outcome(situation: Callable[[Machine], Any], machine: Machine) -> tuple[str, Any]:
    """("ok", value) or (exception type, message with pids and tids blanked)."""
    with machine:
        try:
            return "ok", situation(machine)
        except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
            return type(exc).__name__, re.sub(r"\b(pid|child|thread) \d+", r"\1 N", str(exc))


@pytest.mark.parametrize("name", list(SITUATIONS))
def test_same_outcome_on_both_backends(name: str) -> None:
    situation = SITUATIONS[name]
    model = outcome(situation, ModelMachine(ram="1GiB", cpus=LinuxMachine().model_config().get("cpus", 2)))
    kernel = outcome(situation, LinuxMachine())
    assert model == kernel
    assert model[0] != "RuntimeError"


def test_facts_measured_on_glibc_2_36() -> None:
    """The numbers of the reference sheet, on the kernel: a thread's first block at heap+0xb70,
    an 8 MiB + 4 KiB stack mapping, its guard `---p` (mr mw me nh), the stack `rw-p` with nh
    (MAP_STACK), the arena's 132 KiB rw (nr: MAP_NORESERVE) and the rest of 64 MiB `---p`."""
    kind, (a, b, stack, tasks_ok, nthreads) = outcome(_first_malloc_in_thread, LinuxMachine())
    assert kind == "ok" and a == 0xb70 and stack == 0x801000 and tasks_ok and nthreads == 2
    kind, vmas = outcome(_stack_and_arena_vmas, LinuxMachine())
    assert kind == "ok"
    assert [(v[0], v[1], v[2], v[3]) for v in vmas] == [
        (0, 0x21000, "rw-p", ("rd", "wr", "mr", "mw", "me", "nr")),
        (0x21000, HEAP - 0x21000, "---p", ("mr", "mw", "me", "nr")),
        (0, 0x1000, "---p", ("mr", "mw", "me", "nh")),
        (0x1000, 0x800000, "rw-p", ("rd", "wr", "mr", "mw", "me", "ac", "nh"))]
