"""Memory by kind: mappings by name and place, glibc arena heaps and CPython pools by their headers,
thread stacks by their stack pointers; --kinds, --sort."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from cowscope.cli.main import main
from cowscope.inspect import kinds as k
from cowscope.inspect.sample import Sampler
from cowscope.observe.records import MapsEntry

EXE = "/usr/bin/prog"


def vma(start: int, end: int, perms: str, path: str = "") -> MapsEntry:
    return MapsEntry(start, end, perms, 0, "00:00", 0, path)


def test_mapping_kinds_by_name_permissions_and_place() -> None:
    data = vma(0x5000, 0x6000, "rw-p", EXE)
    assert k.mapping_kind(vma(0x1000, 0x2000, "r-xp", EXE), EXE, None) == k.CODE
    assert k.mapping_kind(vma(0x4000, 0x5000, "r--p", EXE), EXE, None) == k.BINARY
    assert k.mapping_kind(data, EXE, None) == k.BINARY
    assert k.mapping_kind(vma(0x6000, 0x8000, "rw-p"), EXE, data) == k.BINARY  # bss, right after the data
    assert k.mapping_kind(vma(0x9000, 0xa000, "rw-p"), EXE, data) == k.ANON
    assert k.mapping_kind(vma(0x9000, 0xa000, "rw-p", "[heap]"), EXE, None) == k.HEAP
    assert k.mapping_kind(vma(0x9000, 0xa000, "rw-p", "[stack]"), EXE, None) == k.STACK
    assert k.mapping_kind(vma(0x9000, 0xa000, "rw-p", "/usr/lib/libc.so.6"), EXE, None) == k.LIBRARY
    assert k.mapping_kind(vma(0x9000, 0xa000, "r-xp", "/usr/lib/libc.so.6"), EXE, None) == k.CODE
    assert k.mapping_kind(vma(0x9000, 0xa000, "rw-s", "/dev/shm/x"), EXE, None) == k.FILE
    assert k.mapping_kind(vma(0x9000, 0xa000, "r--p", "/data/table.bin"), EXE, None) == k.FILE


#: A CPython process: 200,000 objects, a thread that mallocs 20 MB in its own glibc arena and
#: waits, 8 MiB of plain mmapped memory; a child forked after it all runs a full collection.
PROGRAM = textwrap.dedent("""
    import ctypes, gc, mmap, os, sys, threading, time
    objs = [{"i": i} for i in range(200_000)]
    ready, hold = threading.Event(), threading.Event()
    def grab():
        libc = ctypes.CDLL(None)
        libc.malloc.restype = ctypes.c_void_p
        ptrs = [libc.malloc(1000) for _ in range(20_000)]
        for p in ptrs:
            ctypes.memset(p, 1, 1000)
        ready.set()
        hold.wait()
    threading.Thread(target=grab, daemon=True).start()
    ready.wait()
    plain = mmap.mmap(-1, 8 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    plain.write(b"x" * (8 << 20))
    r, w = os.pipe()
    if os.fork() == 0:
        gc.collect()
        os.write(w, b"k")
        time.sleep(60)
        os._exit(0)
    os.read(r, 1)
    print("ready", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def program():
    import os

    if os.geteuid() != 0:
        pytest.skip("needs root (exact classes, /proc/PID/mem of another process)")
    proc = subprocess.Popen([sys.executable, "-c", PROGRAM], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    yield proc
    for child in __import__("psutil").Process(proc.pid).children():
        child.kill()
    proc.kill()
    proc.wait()


@pytest.mark.kernel
def test_allocator_regions_and_stacks_are_recognised(program) -> None:
    s = Sampler([program.pid], tree=True, mode="exact", kinds=True).sample()
    master = s.process(program.pid)
    child = next(p for p in s.processes if p.parent_in_tree)
    mk = master.kinds
    assert mk is not None and child.kinds is not None
    heap_mapping = sum(m.rss_kb for m in master.mappings if m.path == "[heap]")
    # The thread's 20 MB arena heap is heap too, besides [heap].
    assert mk["heap"]["rss_kb"] >= heap_mapping + 19_000
    # 200,000 dicts live in obmalloc pools.
    assert mk["python-arenas"]["rss_kb"] > 10_000
    # The thread's stack (it waits in futex) is a stack, besides [stack].
    main_stack = sum(m.rss_kb for m in master.mappings if m.path == "[stack]")
    assert mk["stack"]["rss_kb"] > main_stack
    # The plain mmapped 8 MiB is anonymous memory of no allocator anyone can prove.
    assert mk["anon"]["rss_kb"] >= 8 * 1024
    # The child's full collection copied pool pages, nearly all with the master's bytes.
    arenas = child.kinds["python-arenas"]
    assert arenas["copied_kb"] > 1000
    assert arenas["copied_identical_kb"] > arenas["copied_kb"] // 2
    assert sum(f["rss_kb"] for f in child.kinds.values()) == child.rss_kb


@pytest.mark.kernel
def test_kinds_and_sort_on_the_command_line(program, capsys) -> None:
    assert main(["inspect", "--tree", str(program.pid), "--kinds", "--mappings", "3", "--sort", "address"]) == 0
    out = capsys.readouterr().out
    assert "by kind of memory" in out and "python-arenas" in out and "mappings by address" in out
    assert main(["inspect", "--tree", str(program.pid), "--json"]) == 0
    objs = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(o["kinds"] and "python-arenas" in o["kinds"] for o in objs)
