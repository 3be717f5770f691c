"""Real process trees with known page numbers: a master, its workers, designed writes after fork."""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import signal
import time
from dataclasses import dataclass, field

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


@dataclass
class TreePlan:
    """The master's region: touched pages, untouched tail, pages it rewrites after forking."""

    touched: int = 64
    tail: int = 32
    master_rewrites: int = 4  # pages [0, n) the master writes after all workers forked
    workers: list[WorkerPlan] = field(default_factory=list)
    uid: int | None = None    # the master drops to this uid before mapping (workers inherit it)


@dataclass
class Tree:
    """A running tree: pids and addresses, torn down by close()."""

    master: int
    workers: list[int]
    r_addr: int
    own_addrs: dict[int, int]
    grandchildren: dict[int, list[int]]
    _release_fd: int

    def all_pids(self) -> list[int]:
        """Master, workers and grandchildren."""
        return [self.master, *self.workers, *(g for gs in self.grandchildren.values() for g in gs)]

    def close(self) -> None:
        """Let the tree exit and reap the master."""
        try:
            os.close(self._release_fd)
        except OSError:
            pass
        for pid in self.all_pids()[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(self.master, 0)
        except ChildProcessError:
            pass


def _touch(addr: int, first: int, n: int, write: bool) -> None:
    for i in range(first, first + n):
        p = ctypes.c_char.from_address(addr + i * PAGE)
        if write:
            p.value = b"\x01"
        else:
            _ = p.value


def _map(npages: int) -> tuple[mmap.mmap, int]:
    m = mmap.mmap(-1, npages * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
    m.madvise(mmap.MADV_NOHUGEPAGE)
    return m, ctypes.addressof(ctypes.c_char.from_buffer(m))


def _worker(plan: WorkerPlan, tree: TreePlan, r_addr: int, go_fd: int, out_fd: int, hold_fd: int) -> None:
    os.read(go_fd, 1)  # wait until the master has rewritten its pages
    _touch(r_addr, plan.copy_from, plan.copies, True)
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


def start_tree(plan: TreePlan, cpu: int | None = None) -> Tree:
    """Fork a master that builds `plan`; returns once every process is in its final state."""
    info_r, info_w = os.pipe()
    hold_r, hold_w = os.pipe()
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
            m, r_addr = _map(plan.touched + plan.tail)
            _touch(r_addr, 0, plan.touched, True)
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
            _touch(r_addr, 0, plan.master_rewrites, True)
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
    lines: list[dict] = []
    buf = b""
    with os.fdopen(info_r, "rb") as f:
        while len(lines) < len(plan.workers) + 1:
            chunk = f.readline()
            if not chunk:
                raise RuntimeError("tree builder died")
            buf = chunk
            lines.append(json.loads(buf))
    head = next(d for d in lines if "master" in d)
    rest = [d for d in lines if "pid" in d]
    order = {pid: i for i, pid in enumerate(head["workers"])}
    rest.sort(key=lambda d: order[d["pid"]])
    tree = Tree(head["master"], head["workers"], head["r"], {d["pid"]: d["own"] for d in rest},
                {d["pid"]: d["kids"] for d in rest}, hold_w)
    settle(tree.all_pids())
    return tree


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
