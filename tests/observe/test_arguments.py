"""The shared argument layer (observe/arguments.py): one set of rules, applied to both backends."""

from __future__ import annotations

import inspect

import pytest

from cowscope.linux.process import Process as LinuxProcess
from cowscope.linux.thread import Thread as LinuxThread
from cowscope.model.kernel.process import Process as ModelProcess
from cowscope.model.kernel.thread import Thread as ModelThread
from cowscope.observe import arguments as A


def test_size_t_and_friends() -> None:
    assert A.ulong(-1, "f", "n") == 2**64 - 1 and A.ulong(True, "f", "n") == 1
    assert A.ulong(-(2**63), "f", "n") == 2**63
    with pytest.raises(ValueError, match="does not fit in 64 bits"):
        A.ulong(2**64, "f", "n")
    with pytest.raises(TypeError, match="f: n must be an int, not float"):
        A.ulong(1.0, "f", "n")
    with pytest.raises(TypeError, match="not str"):
        A.ulong("1", "f", "n")
    assert A.slong(-5, "sbrk", "delta") == -5
    with pytest.raises(ValueError):
        A.slong(2**63, "sbrk", "delta")
    with pytest.raises(ValueError, match="negative length"):
        A.count(-1, "fill", "length")
    with pytest.raises(ValueError, match="0..255"):
        A.fill_byte(256, "fill", "byte")


def test_prot_and_advice_spellings() -> None:
    assert A.prot("wr", "mmap", "prot") == "rw" and A.prot("r-x", "mmap", "prot") == "rx"
    assert A.prot(3, "mmap", "prot") == "rw" and A.prot(0x13, "mmap", "prot") == "rw"  # mmap ignores 0x10
    assert A.prot(0x13, "mprotect", "prot") == 0x13  # mprotect: EINVAL from the backend
    assert A.prot(8 | 1, "mprotect", "prot") == "r"  # PROT_SEM is accepted and means nothing here
    with pytest.raises(ValueError, match="letters r, w, x"):
        A.prot("rwz", "mmap", "prot")
    assert A.advice("MADV_DONTNEED", "madvise", "advice") == "dontneed"
    assert A.advice(4, "madvise", "advice") == "dontneed" and A.advice(999, "madvise", "advice") == 999
    with pytest.raises(ValueError, match="unknown advice 'bogus'"):
        A.advice("bogus", "madvise", "advice")


def test_both_backends_check_every_call_in_the_table() -> None:
    from cowscope.linux.machine import Machine as LinuxMachine
    from cowscope.model import Machine as ModelMachine

    for name, rules in A.ARGS.items():
        pair = (ModelProcess, LinuxProcess) if hasattr(ModelProcess, name) else (ModelMachine, LinuxMachine)
        for cls in pair:
            fn = getattr(cls, name)
            assert getattr(fn, "__checked__", False), f"{cls.__module__}.{name} is not checked"
            assert set(rules) <= set(inspect.signature(fn).parameters), name  # the signature is kept


@pytest.mark.parametrize("cls", [ModelThread, LinuxThread])
def test_both_backends_check_every_call_a_thread_offers(cls: type) -> None:
    offered = [name for name in A.ARGS if hasattr(cls, name)]
    assert {"malloc", "free", "calloc", "realloc", "memalign", "read", "write", "fill", "touch",
            "malloc_usable_size", "malloc_trim"} <= set(offered)
    for name in offered:
        fn = getattr(cls, name)
        assert getattr(fn, "__checked__", False), f"{cls.__module__}.{name} is not checked"
        assert set(A.ARGS[name]) <= set(inspect.signature(fn).parameters), name


def test_checked_converts_positional_and_keyword_arguments() -> None:
    @A.checked
    class P:
        def mmap(self, length, prot="rw", shared=False, file=None, offset=0, addr=None, fixed=False,
                 populate=False):
            return length, prot, offset, addr

    assert P().mmap(-1, 7) == (2**64 - 1, "rwx", 0, None)
    assert P().mmap(length=-4096, prot="w", addr=-4096, offset=-4096) == (2**64 - 4096, "w", 2**64 - 4096,
                                                                        2**64 - 4096)
