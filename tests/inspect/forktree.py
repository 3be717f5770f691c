"""Real process trees with known page numbers: a master, its workers, designed writes after fork."""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cowscope.inspect.figures import ProcessFigures

PAGE = mmap.PAGESIZE


@dataclass
class WorkerPlan:
    """What one worker does after fork, in pages of the master's region R."""

    copy_from: int = 0      # first page of R it writes (copy-on-write copies)
    copies: int = 0         # how many pages it writes there
    zero_reads: int = 0     # pages of R's untouched tail it only reads (zero page)
    new_in_r: int = 0       # pages of R's untouched tail it writes after the reads (new frames)
    own_pages: int = 0      # pages of a fresh private mapping it writes (new frames)
    children: list[WorkerPlan] = field(default_factory=list)  # grandchildren forked after its writes
    same_from: int = 0      # first page of R it writes with the byte already there (a copy, same content)
    same_copies: int = 0
    release_from: int = 0   # first page of R it drops with MADV_DONTNEED (released: the master keeps it)
    releases: int = 0


@dataclass
class TreePlan:
    """The master's region: touched pages, untouched tail, pages it rewrites after forking."""

    touched: int = 64
    tail: int = 32
    master_rewrites: int = 4  # pages [0, n) the master writes after all workers forked
    workers: list[WorkerPlan] = field(default_factory=list)
    uid: int | None = None    # the master drops to this uid before mapping (workers inherit it)
    stages: bool = False      # stop before forking ("prefork") and after, before any write ("forked")


@dataclass
class Tree:
    """A running tree: pids and addresses, torn down by close()."""

    master: int
    workers: list[int]
    r_addr: int
    own_addrs: dict[int, int]
    grandchildren: dict[int, list[int]]
    _release_fd: int
    stage: str = "done"
    _step_fd: int | None = None
    _info: Any = None
    _plan: TreePlan | None = None

    def all_pids(self) -> list[int]:
        """Master, workers and grandchildren."""
        return [self.master, *self.workers, *(g for gs in self.grandchildren.values() for g in gs)]

    def advance(self) -> None:
        """With stages: let the master go on to the next stage ("forked", then "done") and wait for it."""
        assert self._step_fd is not None and self._plan is not None and self.stage != "done"
        os.write(self._step_fd, b"s")
        if self.stage == "prefork":
            self.workers = _line(self._info)["workers"]
            self.stage = "forked"
        else:
            _finish(self, self._plan, self._info)
            self.stage = "done"
        settle(self.all_pids())

    def close(self) -> None:
        """Let the tree exit and reap the master."""
        for fd in (self._release_fd, self._step_fd):
            try:
                if fd is not None:
                    os.close(fd)
            except OSError:
                pass
        if self._info is not None:
            self._info.close()
        for pid in self.all_pids()[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(self.master, 0)
        except ChildProcessError:
            pass


#: The byte the master writes into each page of R, the one workers write to copy (different
#: content) and the one the master rewrites with.
MASTER_BYTE, WORKER_BYTE, REWRITE_BYTE = b"\x01", b"\x02", b"\x03"
MADV_DONTNEED = 4


def _touch(addr: int, first: int, n: int, write: bool, byte: bytes = MASTER_BYTE) -> None:
    for i in range(first, first + n):
        p = ctypes.c_char.from_address(addr + i * PAGE)
        if write:
            p.value = byte
        else:
            _ = p.value


def _release(addr: int, first: int, n: int) -> None:
    if n and ctypes.CDLL(None).madvise(ctypes.c_void_p(addr + first * PAGE), n * PAGE, MADV_DONTNEED):
        raise OSError("madvise failed")


def _map(npages: int) -> tuple[mmap.mmap, int]:
    m = mmap.mmap(-1, npages * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
    m.madvise(mmap.MADV_NOHUGEPAGE)
    return m, ctypes.addressof(ctypes.c_char.from_buffer(m))


def _worker(plan: WorkerPlan, tree: TreePlan, r_addr: int, go_fd: int, out_fd: int, hold_fd: int) -> None:
    os.read(go_fd, 1)  # wait until the master has rewritten its pages
    _touch(r_addr, plan.copy_from, plan.copies, True, WORKER_BYTE)
    _touch(r_addr, plan.same_from, plan.same_copies, True, MASTER_BYTE)
    _release(r_addr, plan.release_from, plan.releases)
    _touch(r_addr, tree.touched, plan.zero_reads, False)
    _touch(r_addr, tree.touched + plan.zero_reads, plan.new_in_r, True)
    own = 0
    keep = []
    if plan.own_pages:
        m, own = _map(plan.own_pages)
        keep.append(m)
        _touch(own, 0, plan.own_pages, True)
    kids = []
    for _ in plan.children:
        pid = os.fork()
        if pid == 0:
            os.read(hold_fd, 1)
            os._exit(0)
        kids.append(pid)
    os.write(out_fd, (json.dumps({"pid": os.getpid(), "own": own, "kids": kids}) + "\n").encode())
    os.read(hold_fd, 1)  # returns b"" when the test closes its end
    for k in kids:
        os.waitpid(k, 0)


def _say(fd: int, obj: dict[str, Any]) -> None:
    os.write(fd, (json.dumps(obj) + "\n").encode())


def _line(f: Any) -> dict[str, Any]:
    chunk = f.readline()
    if not chunk:
        raise RuntimeError("tree builder died")
    return json.loads(chunk)


def start_tree(plan: TreePlan, cpu: int | None = None) -> Tree:
    """Fork a master that builds `plan`; returns once every process is in its final state (with
    `plan.stages`, at the first stage: the master alone, before it forks; see Tree.advance)."""
    info_r, info_w = os.pipe()
    hold_r, hold_w = os.pipe()
    step_r, step_w = os.pipe()
    master = os.fork()
    if master == 0:
        code = 0
        try:
            os.close(info_r)
            os.close(hold_w)
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})
            if plan.uid is not None:
                os.setgid(plan.uid)
                os.setuid(plan.uid)
                ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: let its own uid read /proc
            os.close(step_w)
            m, r_addr = _map(plan.touched + plan.tail)
            _touch(r_addr, 0, plan.touched, True)
            if plan.stages:
                _say(info_w, {"stage": "prefork", "master": os.getpid(), "r": r_addr})
                os.read(step_r, 1)
            workers = []
            go = []
            for wp in plan.workers:
                gr, gw = os.pipe()
                pid = os.fork()
                if pid == 0:
                    os.close(gw)
                    try:
                        _worker(wp, plan, r_addr, gr, info_w, hold_r)
                    finally:
                        os._exit(0)
                os.close(gr)
                workers.append(pid)
                go.append(gw)
            if plan.stages:
                _say(info_w, {"stage": "forked", "workers": workers})
                os.read(step_r, 1)
            _touch(r_addr, 0, plan.master_rewrites, True, REWRITE_BYTE)
            for gw in go:
                os.write(gw, b"g")
                os.close(gw)
            head = {"master": os.getpid(), "r": r_addr, "workers": workers}
            os.write(info_w, (json.dumps(head) + "\n").encode())
            os.read(hold_r, 1)
            for w in workers:
                os.waitpid(w, 0)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(info_w)
    os.close(hold_r)
    os.close(step_r)
    info = os.fdopen(info_r, "rb")
    if plan.stages:
        head = _line(info)
        tree = Tree(head["master"], [], head["r"], {}, {}, hold_w, "prefork", step_w, info, plan)
    else:
        os.close(step_w)
        tree = Tree(0, [], 0, {}, {}, hold_w, "done", None, info, plan)
        _finish(tree, plan, info)
    settle(tree.all_pids())
    return tree


def _finish(tree: Tree, plan: TreePlan, info: Any) -> None:
    """Read the final state: the master's line and one line per worker (in any order)."""
    lines = [_line(info) for _ in range(len(plan.workers) + 1)]
    head = next(d for d in lines if "master" in d)
    rest = [d for d in lines if "pid" in d]
    order = {pid: i for i, pid in enumerate(head["workers"])}
    rest.sort(key=lambda d: order[d["pid"]])
    tree.master, tree.workers, tree.r_addr = head["master"], head["workers"], head["r"]
    tree.own_addrs = {d["pid"]: d["own"] for d in rest}
    tree.grandchildren = {d["pid"]: d["kids"] for d in rest}


def settle(pids: list[int], timeout: float = 30.0) -> None:
    """Wait until every process sits blocked in read(2): its memory no longer changes."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while True:
            with open(f"/proc/{pid}/syscall") as f:
                if f.read().split()[0] == "0":  # x86-64 read
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"pid {pid} never blocked in read()")
            time.sleep(0.001)


def range_classes(pf: ProcessFigures, addr: int, npages: int) -> dict[int, int]:
    """Pages of each class code in [addr, addr + npages pages) of one process."""
    out: dict[int, int] = {}
    end = addr + npages * PAGE
    covered = 0
    for m in pf.mappings:
        lo, hi = max(m.start, addr), min(m.end, end)
        if lo >= hi:
            continue
        assert m.codes is not None
        seg = m.codes[(lo - m.start) // PAGE:(hi - m.start) // PAGE]
        covered += len(seg)
        for code, n in zip(*np.unique(seg, return_counts=True), strict=True):
            out[int(code)] = out.get(int(code), 0) + int(n)
    assert covered == npages, f"pid {pf.pid}: only {covered} of {npages} pages are in its mappings"
    return out
