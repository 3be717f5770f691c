"""The same situation gives the same outcome on the model and on the kernel (observe.backend).

Error types and messages (pids aside), process states, and the calls the shared interface added to
the Linux backend (MAP_POPULATE, posix_memalign, aligned_alloc, mallopt, malloc_trim, mallinfo2),
compared through the tracer like the conformance suite.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from cowscope.errors import ProcessKilled, Segfault, SyscallError
from cowscope.linux.machine import Machine as LinuxMachine
from cowscope.model import Machine as ModelMachine
from cowscope.observe.backend import Machine
from cowscope.report.both import both_text
from cowscope.verify.compare import compare, counted, run_traced

pytestmark = pytest.mark.kernel
PAGE = 4096


def _wait_live_child(m: Machine) -> Any:
    p = m.spawn("P")
    c = p.fork()
    return p.wait(c)


def _wait_any_live_child(m: Machine) -> Any:
    p = m.spawn("P")
    p.fork()
    return p.wait()


def _wait_without_children(m: Machine) -> Any:
    return m.spawn("P").wait()


def _call_in_vfork(m: Machine) -> Any:
    p = m.spawn("P")
    p.vfork()
    assert p.state == "D"
    return p.mmap(PAGE)


def _wait_in_vfork(m: Machine) -> Any:
    p = m.spawn("P")
    p.vfork()
    return p.wait()


def _vfork_child_execs(m: Machine) -> Any:
    p = m.spawn("P")
    v = p.vfork()
    v.exec()
    return p.state, v.state


def _zombie_states(m: Machine) -> Any:
    p = m.spawn("P")
    c = p.fork()
    c.exit(3)
    st = c.state
    c.status()  # a zombie still has /proc/PID/status
    return st, c.alive, c.exit_status


def _call_on_zombie(m: Machine) -> Any:
    p = m.spawn("P")
    c = p.fork()
    c.exit(3)
    return c.fork()


def _view_of_zombie(m: Machine) -> Any:
    p = m.spawn("P")
    c = p.fork()
    c.exit(3)
    return c.maps()


def _reaped(m: Machine) -> Any:
    p = m.spawn("P")
    c = p.fork()
    c.exit(3)
    return p.wait(c)[1], c.state


def _call_on_reaped(m: Machine) -> Any:
    p = m.spawn("P")
    c = p.fork()
    c.exit(3)
    p.wait(c)
    return c.mmap(PAGE)


def _status_of_reaped(m: Machine) -> Any:
    p = m.spawn("P")
    c = p.fork()
    c.exit(3)
    p.wait(c)
    return c.status()


def _segfault(m: Machine) -> Any:
    return m.spawn("P").read(0, 1)


def _write_to_read_only(m: Machine) -> Any:
    p = m.spawn("P")
    return p.write(p.mmap(PAGE, "r"), b"x")


def _read_guard_region(m: Machine) -> Any:
    p = m.spawn("P")
    a = p.mmap(2 * PAGE)
    p.madvise(a + PAGE, PAGE, "guard_install")
    return p.read(a + PAGE + 8, 1)


def _read_past_end_of_file(m: Machine) -> Any:
    p = m.spawn("P")
    f = m.create_file("/d/f", data=b"a" * PAGE)
    a = p.mmap(2 * PAGE, shared=True, file=f)
    return p.read(a + PAGE + 16, 1)


def _fill_byte_out_of_range(m: Machine) -> Any:
    p = m.spawn("P")
    return p.fill(p.mmap(PAGE), 8, 256)


def _negative_read(m: Machine) -> Any:
    p = m.spawn("P")
    return p.read(p.mmap(PAGE), -1)


def _unaligned_munmap(m: Machine) -> Any:
    p = m.spawn("P")
    return p.munmap(p.mmap(2 * PAGE) + 1, PAGE)


def _with(call: Callable[[Any, int], Any]) -> Callable[[Machine], Any]:
    """A situation: `call(process, address of two mapped pages)`, its result compared."""

    def situation(m: Machine) -> Any:
        p = m.spawn("P")
        return call(p, p.mmap(2 * PAGE))

    return situation


#: Arguments checked once for both backends (observe.arguments): sizes and addresses as C's
#: unsigned long (Linux or glibc decides what the raw value does), Python types, cowscope's spellings.
ARGUMENTS: dict[str, Callable[[Machine], Any]] = {
    "mmap_minus_one": _with(lambda p, a: p.mmap(-1)),                       # PAGE_ALIGN overflows: ENOMEM
    "mmap_minus_three_pages": _with(lambda p, a: p.mmap(-3 * PAGE)),        # beyond TASK_SIZE: ENOMEM
    "mmap_zero": _with(lambda p, a: p.mmap(0)),                             # EINVAL
    "mmap_file_offset_minus_one_page": lambda m: m.spawn("P").mmap(         # file_mmap_ok: EOVERFLOW
        PAGE, file=m.create_file("/d/f", data=b"a" * PAGE), offset=-PAGE),
    "mmap_str_length": _with(lambda p, a: p.mmap("4096")),                  # TypeError
    "mmap_float_length": _with(lambda p, a: p.mmap(4096.0)),
    "mmap_unknown_prot_bits": _with(lambda p, a: p.read(p.mmap(PAGE, 0x13), 1)),  # mmap ignores 0x10
    "prot_bad_letter": _with(lambda p, a: p.mprotect(a, PAGE, "rwz")),      # ValueError
    "mprotect_unknown_prot_bits": _with(lambda p, a: p.mprotect(a, PAGE, 0x10)),  # EINVAL
    "mprotect_zero_length_bad_prot": _with(lambda p, a: p.mprotect(a, 0, 0x10)),  # 0 before the prot check
    "mprotect_minus_one": _with(lambda p, a: p.mprotect(a, -1, "r")),       # wraps: ENOMEM
    "mprotect_past_a_hole": _with(lambda p, a: (p.munmap(a + PAGE, PAGE), p.mprotect(a, 1 << 40, "r"))),
    "munmap_minus_one": _with(lambda p, a: p.munmap(a, -1)),                # EINVAL
    "madvise_bogus_name": _with(lambda p, a: p.madvise(a, PAGE, "bogus")),  # ValueError
    "madvise_number": _with(lambda p, a: (p.write(a, b"x"), p.madvise(a, PAGE, 4), p.read(a, 1))[2]),
    "madvise_unknown_number": _with(lambda p, a: p.madvise(a, PAGE, 999)),  # EINVAL
    "madvise_minus_one": _with(lambda p, a: p.madvise(a, -1, "dontneed")),  # EINVAL
    "madvise_wraps": _with(lambda p, a: p.madvise(-PAGE, PAGE, "dontneed")),  # EINVAL
    "mlock_minus_one": _with(lambda p, a: p.mlock(a, -1)),                  # PAGE_ALIGN to 0: nothing
    "mlock_wraps": _with(lambda p, a: p.mlock(a, -2 * PAGE)),               # EINVAL
    "mremap_minus_one": _with(lambda p, a: p.mremap(a, PAGE, -1)),          # EINVAL
    "mremap_past_user_space": _with(lambda p, a: p.mremap(a, PAGE, 1 << 47)),  # EINVAL
    "sbrk_below_the_heap": _with(lambda p, a: p.sbrk(-(1 << 40)) - p.sbrk(0)),  # "succeeds", no move
    "sbrk_wraps": _with(lambda p, a: p.sbrk(-(1 << 62))),                   # ENOMEM
    "fill_negative_length": _with(lambda p, a: p.fill(a, -1, 1)),           # ValueError
    "fill_byte_float": _with(lambda p, a: p.fill(a, 8, 1.5)),               # TypeError
    "read_float_length": _with(lambda p, a: p.read(a, 2.0)),
    "read_minus_one": _with(lambda p, a: p.read(-1, 1)),                    # SIGSEGV at 0xfff...f
    "read_past_64_bits": _with(lambda p, a: p.read(1 << 64, 1)),            # ValueError
    "read_top_page": _with(lambda p, a: p.read(0xFFFFFFFFFFFFF000, 1)),     # SIGSEGV
    "malloc_minus_one": _with(lambda p, a: p.malloc(-1)),                   # NULL (ENOMEM)
    "malloc_float": _with(lambda p, a: p.malloc(1.5)),
    "calloc_minus_one": _with(lambda p, a: p.calloc(-1, -1)),               # NULL
    "realloc_null_minus_one": _with(lambda p, a: p.realloc(0, -1)),         # NULL
    "memalign_minus_one": _with(lambda p, a: p.memalign(-1, 64)),           # NULL (EINVAL)
    "memalign_size_minus_one": _with(lambda p, a: p.memalign(64, -1)),      # NULL (ENOMEM)
    "aligned_alloc_minus_one": _with(lambda p, a: p.aligned_alloc(64, -1)),  # NULL
    "free_minus_one": _with(lambda p, a: p.free(-1)),                       # SIGSEGV in free
    "free_float": _with(lambda p, a: p.free(1.0)),
    "usable_size_minus_one": _with(lambda p, a: p.malloc_usable_size(-1)),  # SIGSEGV
}

SITUATIONS: dict[str, Callable[[Machine], Any]] = {
    f.__name__.lstrip("_"): f for f in (
        _wait_live_child, _wait_any_live_child, _wait_without_children, _call_in_vfork, _wait_in_vfork,
        _vfork_child_execs, _zombie_states, _call_on_zombie, _view_of_zombie, _reaped, _call_on_reaped,
        _status_of_reaped, _segfault, _write_to_read_only, _read_guard_region, _read_past_end_of_file,
        _fill_byte_out_of_range, _negative_read, _unaligned_munmap)
} | ARGUMENTS


def outcome(situation: Callable[[Machine], Any], machine: Machine) -> tuple[str, Any]:
    """("ok", value) or (exception type, message with pids and addresses blanked, errno and call)."""
    with machine:
        try:
            return "ok", situation(machine)
        except Exception as exc:  # noqa: BLE001 - the outcome is what is compared
            text = re.sub(r"\b(pid|child) \d+", r"\1 N", str(exc))
            if isinstance(exc, SyscallError):  # errno and call; the model's detail says more
                text = f"{exc.call} errno {exc.errno}"
            if isinstance(exc, Segfault):  # the si_code and the address; the model's reason says more
                code = re.search(r"SEGV_[A-Z]+", exc.reason)
                text = f"{code and code.group(0)} at page offset {exc.address % PAGE:#x}"
            elif isinstance(exc, ProcessKilled):  # the signal and the address; the wording differs
                at = re.search(r"at (0x[0-9a-f]+)", str(exc))
                text = f"signal {exc.signo} at page offset {at and int(at.group(1), 16) % PAGE:#x}"
            return type(exc).__name__, text


@pytest.mark.parametrize("name", list(SITUATIONS))
def test_same_outcome_on_both_backends(name: str) -> None:
    situation = SITUATIONS[name]
    model = outcome(situation, ModelMachine(ram="64MiB"))
    kernel = outcome(situation, LinuxMachine())
    assert model == kernel
    assert model[0] != "RuntimeError" and "Timeout" not in model[0]


def _agree(scenario: Callable[[Any], None]) -> None:
    model = run_traced(scenario, ModelMachine(), "model")
    kernel = run_traced(scenario, LinuxMachine(), "linux")
    assert model.error is None and kernel.error is None, (model.error, kernel.error)
    diffs = compare(model, kernel)
    assert counted(diffs) == [], both_text(model, kernel, diffs)


def test_populate_agrees() -> None:
    """MAP_POPULATE writes private writable mappings in (their pages are exclusive anon now) and
    reads the others (zero page; shared and file pages clean in the page cache)."""

    def scenario(m: Any) -> None:
        p = m.spawn("P")
        f = m.create_file("/d/f", data=b"a" * 4 * PAGE)
        p.mmap(4 * PAGE, populate=True)
        p.mmap(4 * PAGE, "r", populate=True)
        p.mmap(4 * PAGE, shared=True, populate=True)
        p.mmap(4 * PAGE, file=f, populate=True)
        p.mmap(4 * PAGE, shared=True, file=f, populate=True)
        m.checkpoint("populated")
        p.fork()
        m.checkpoint("forked")

    _agree(scenario)


def test_malloc_extras_agree() -> None:
    """posix_memalign, aligned_alloc, mallopt, malloc_trim and mallinfo2: same results (mallinfo2's
    ten figures are in the op log), same heap pages."""

    def scenario(m: Any) -> None:
        p = m.spawn("P")
        p.mallinfo2()
        p.posix_memalign(3, 16)
        p.posix_memalign(64, 100)
        p.aligned_alloc(4096, 10)
        p.mallopt(1, 0)        # M_MXFAST
        p.mallopt(1, 1000)     # refused: above MAX_FAST_SIZE
        p.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
        x = p.malloc(200_000)
        p.malloc(100)
        m.checkpoint("allocated")
        p.free(x)
        p.mallinfo2()
        p.malloc_trim(0)
        p.mallinfo2()
        p.malloc_trim(0)
        m.checkpoint("trimmed")

    _agree(scenario)


def test_calloc_after_a_trim_and_a_foreign_sbrk_agree() -> None:
    """Random differential findings in glibc's malloc on a model process: calloc clears only the
    old top's bytes (sbrk memory taken again after a trim stays unfaulted, as real glibc leaves
    it), and a brk moved by sbrk() outside malloc is seen by its next trim (glibc's __curbrk)."""

    def scenario(m: Any) -> None:
        p = m.spawn("P")
        a = p.malloc(5000)
        p.fill(a, 5000, 0xFC)
        p.malloc_trim(0)
        c = p.calloc(4, 8751)
        m.checkpoint("calloc after trim")
        q = m.spawn("Q")
        q.sbrk(5 * 4096)                 # before malloc starts
        b = q.malloc(1000)
        q.malloc(5000)
        q.fork()
        q.sbrk(5 * 4096)                 # malloc's top no longer ends at the break
        q.free(b)
        q.malloc_trim(0)
        m.checkpoint("trim after a foreign sbrk")
        del c

    _agree(scenario)
