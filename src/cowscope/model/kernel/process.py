"""A simulated process: its syscalls, memory access, allocator calls and /proc views.

Every entry point runs through `_call`, which turns the kernel's internal outcomes into
user-visible ones: a bad access kills only this process (Segfault), the OOM killer's choice
dies (OOMKilled), and the machine stays consistent.
"""

from __future__ import annotations

import signal
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from ...errors import (
    ECHILD,
    Aborted,
    CowscopeError,
    OOMKilled,
    ProcessBlocked,
    ProcessGone,
    ProcessKilled,
    Segfault,
    SyscallError,
)
from ...observe.arguments import checked
from ...observe.backend import Mallinfo2
from ...observe.records import MapsEntry, PagemapEntry, SmapsEntry, SmapsRollup, Status, pagemap_entries
from ..arch import PAGE_SIZE, STACK_TOP
from ..fs import proc as procfs
from ..mm import madvise as madv
from ..mm import mlock as mlockmod
from ..mm import mmap as mmapmod
from ..mm.huge_memory import thp_eligible
from ..mm.ksm import ksm_stat
from ..mm.memory import BusError, SegvError
from ..mm.vma import MM, VM_NOHUGEPAGE, VM_NORESERVE
from . import exec as execmod
from .exit import mmput
from .fork import dup_mmap
from .thread import ProcessThreads, end_threads, run_frames
from .uaccess import access_range, load, store

if TYPE_CHECKING:
    from ..fs.file import File
    from ..libc.base import Allocator
    from ..libc.nptl import Nptl, PThread
    from ..machine import Machine

T = TypeVar("T")


class OOMSelf(Exception):
    """Internal: the OOM killer chose the process whose fault needed the frame."""


@checked
class Process(ProcessThreads):
    """task_struct + its mm: pid, parent, state, address space, allocator, stderr."""

    def __init__(self, m: Machine, pid: int, ppid: int, name: str) -> None:
        self.machine = m
        self.pid = pid
        self.ppid = ppid
        self.name = name
        self.state = "R"
        self.mm: MM | None = None
        self.addrs: dict[str, int] = {}
        self.allocator: Allocator | None = None
        self.exit_status: tuple[str, int] | None = None
        self.vfork_parent: Process | None = None
        self.stderr = ""
        self.min_flt = 0
        self.maj_flt = 0
        self.children: list[Process] = []
        self.nptl: Nptl | None = None                 # threads, made by the first pthread_create
        self.thread_allocs: dict[int, Allocator] = {}  # TLS block -> the allocator as that thread

    def __repr__(self) -> str:
        return f"<Process {self.pid} {self.name!r} {self.state}>"

    # -- plumbing ----------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return self.state in ("R", "D")

    @property
    def libc_data(self) -> int:
        return self.addrs.get("libc_data", 0)

    @property
    def libc_data_size(self) -> int:
        return execmod.LIBC_DATA_SIZE if self.libc_data else 0

    @property
    def tls(self) -> int:
        return self.addrs.get("tls", 0)

    def _mm(self) -> MM:
        if not self.alive:
            raise ProcessGone.of_state(self.pid, self.state)
        if self.state == "D":
            raise ProcessBlocked.in_vfork(self.pid)
        assert self.mm is not None
        return self.mm

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a kernel path for this process; convert SIGSEGV and OOM into user outcomes."""
        mm = self._mm()
        caller, self.machine.current_pid = self.machine.current_pid, self.pid
        try:
            return fn(self.machine, self.pid, mm, *args)
        except BusError as e:
            self.machine.events.add(self.pid, "sigbus", e.address, detail=e.reason)
            self._die(("signal", signal.SIGBUS))
            raise ProcessKilled(self.pid, signal.SIGBUS, f"{e.reason} at {e.address:#x}") from None
        except SegvError as e:
            self.machine.events.add(self.pid, "segv", e.address, detail=e.reason)
            self._die(("signal", signal.SIGSEGV))
            raise Segfault(self.pid, e.address, e.reason) from None
        except OOMSelf:
            raise OOMKilled(self.pid, self.machine.last_oom_rss_kb) from None
        finally:
            self.machine.current_pid = caller

    # -- memory access -----------------------------------------------------------------------
    def read(self, addr: int, n: int) -> bytes:
        """Load n bytes (a read fault maps the zero page or a page-cache page)."""
        if not n:
            return b""
        off = addr & (PAGE_SIZE - 1)
        mm = self.mm
        if self.state == "R" and mm is not None and off + n <= PAGE_SIZE:
            pfn = mm.pgd.mmu_access(addr, False)   # within one page the MMU accepts: no kernel entry
            if pfn >= 0:
                return self.machine.phys.read(pfn, off, n)
        return self._call(load, addr, n)

    def write(self, addr: int, data: bytes) -> None:
        """Store bytes (a write fault allocates, copies on write, or reuses)."""
        if not data:
            return
        data = bytes(data)
        off = addr & (PAGE_SIZE - 1)
        mm = self.mm
        if self.state == "R" and mm is not None and off + len(data) <= PAGE_SIZE:
            pfn = mm.pgd.mmu_access(addr, True)
            if pfn >= 0:
                self.machine.phys.write(pfn, off, data)
                return
        self._call(store, addr, data)

    def read_u64(self, addr: int) -> int:
        return struct.unpack("<Q", self.read(addr, 8))[0]

    def write_u64(self, addr: int, value: int) -> None:
        self.write(addr, struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF))

    def fill(self, addr: int, length: int, byte: int) -> None:
        """memset: whole pages stay uniform, so a huge fill costs no 4 KiB buffers."""
        if length > 0:
            self._call(access_range, addr, length, True, byte)

    def touch(self, addr: int, length: int, write: bool = False) -> None:
        """Fault every page of the range in, as a read or a write of its current bytes."""
        if length > 0:
            self._call(access_range, addr, length, write)

    # -- memory syscalls ---------------------------------------------------------------------
    def mmap(self, length: int, prot: str = "rw", shared: bool = False, file: File | None = None,
             offset: int = 0, addr: int | None = None, fixed: bool = False, populate: bool = False) -> int:
        """mmap(2); returns the address. `prot` letters r, w, x ("" = PROT_NONE). `populate`
        (MAP_POPULATE) faults the range in as mlock does: written where private and writable (the
        copy is broken now), read elsewhere (a shared mapping is not dirtied)."""
        start = self._call(mmapmod.do_mmap, length, prot, shared, file, offset, addr, fixed)
        if populate:
            self._call(mmapmod.mm_populate, start, start + length, "w" in prot and not shared)
        return start

    def munmap(self, addr: int, length: int) -> None:
        self._call(lambda m, pid, mm: mmapmod.do_munmap(m, mm, addr, length))

    def mprotect(self, addr: int, length: int, prot: str) -> None:
        self._call(lambda m, pid, mm: mmapmod.do_mprotect(m, mm, addr, length, prot, pid=pid))

    def madvise(self, addr: int, length: int, advice: str) -> None:
        self._call(madv.do_madvise, addr, length, advice)

    def mlock(self, addr: int, length: int) -> None:
        """mlock(2): lock (and populate) the range; not inherited by fork children."""
        self._call(mlockmod.do_mlock, addr, length, True)

    def munlock(self, addr: int, length: int) -> None:
        self._call(mlockmod.do_mlock, addr, length, False)

    def brk(self, new_end: int | None = None) -> int:
        """brk(2) through glibc's brk(): returns the current break (unchanged when the move is
        refused); glibc's cached break (__curbrk, what malloc's MORECORE reads) follows it."""
        got = self._call(mmapmod.do_brk, new_end)
        self._sync_curbrk(got)
        return got

    def sbrk(self, delta: int) -> int:
        """glibc sbrk(): the old break; SyscallError(ENOMEM) if the break cannot move."""
        old = self._call(mmapmod.do_sbrk, delta)
        self._sync_curbrk(old + delta)
        return old

    def _sync_curbrk(self, brk: int) -> None:
        """glibc's brk()/sbrk() leave the new break in __curbrk, where malloc finds it: a brk moved
        outside malloc is seen by its next trim or heap growth (ptmalloc keeps __curbrk)."""
        a = self.allocator
        if a is not None and getattr(a, "a_curbrk", None) and self.alive:
            self._call(store, a.a_curbrk, brk.to_bytes(8, "little"))

    def mremap(self, addr: int, old_len: int, new_len: int, may_move: bool = True,
               new_addr: int | None = None) -> int:
        if new_addr is not None:
            return self._call(mmapmod.mremap_to, addr, old_len, new_len, may_move, new_addr)
        return self._call(mmapmod.do_mremap, addr, old_len, new_len, may_move)

    # -- allocator ---------------------------------------------------------------------------
    def _alloc(self) -> Allocator:
        self._mm()
        if self.allocator is None:
            self.allocator = self.machine.make_allocator(self)
        return self.allocator

    def _alloc_for(self, tls: int) -> Allocator:
        """The allocator as the thread whose TLS block is at tls calls it."""
        alloc = self._alloc()
        if tls == self.tls or not hasattr(alloc, "for_thread"):
            return alloc
        a = self.thread_allocs.get(tls)
        if a is None:
            a = self.thread_allocs[tls] = alloc.for_thread(tls)  # type: ignore[attr-defined]
        return a

    def malloc(self, size: int) -> int:
        return self._alloc().malloc(size)

    def free(self, ptr: int) -> None:
        self._alloc().free(ptr)

    def calloc(self, n: int, size: int) -> int:
        return self._alloc().calloc(n, size)

    def realloc(self, ptr: int, size: int) -> int:
        return self._alloc().realloc(ptr, size)

    def memalign(self, alignment: int, size: int) -> int:
        return self._alloc().memalign(alignment, size)

    def malloc_usable_size(self, ptr: int) -> int:
        return self._alloc().malloc_usable_size(ptr)

    def _libc_call(self, name: str, *args: Any, tls: int | None = None) -> Any:
        fn = getattr(self._alloc() if tls is None else self._alloc_for(tls), name, None)
        if fn is None:
            raise CowscopeError(f"the {self.machine.allocator_name} allocator has no {name}()")
        return fn(*args)

    def posix_memalign(self, alignment: int, size: int) -> tuple[int, int]:
        """(error, pointer) as posix_memalign returns them."""
        return self._libc_call("posix_memalign", alignment, size)

    def aligned_alloc(self, alignment: int, size: int) -> int:
        return self._libc_call("aligned_alloc", alignment, size)

    def mallopt(self, param: int, value: int) -> int:
        """mallopt(M_*, value); params as glibc numbers them (M_TRIM_THRESHOLD = -1, ...)."""
        return self._libc_call("mallopt", param, value)

    def malloc_trim(self, pad: int = 0) -> int:
        return self._libc_call("malloc_trim", pad)

    def mallinfo2(self) -> Mallinfo2:
        return self._libc_call("mallinfo2")

    def malloc_stats(self) -> str:
        """malloc_stats(3): the text glibc prints on stderr (also added to `stderr`)."""
        return self._libc_call("malloc_stats")

    def print_stderr(self, text: str) -> None:
        self.stderr += text

    # -- what glibc asks the system for ----------------------------------------------------------
    @property
    def nprocs(self) -> int:
        """__get_nprocs(): the machine's CPUs (malloc's arena limit is 8 per CPU)."""
        return self.machine.cpus

    @property
    def overcommit_memory(self) -> int:
        return self.machine.acct.overcommit_memory

    def mmap_anon(self, length: int, prot: str = "rw", addr: int | None = None, fixed: bool = False,
                  noreserve: bool = False, stack: bool = False) -> int:
        """An anonymous private mmap with the flags glibc's own mappings use: MAP_NORESERVE
        (VM_NORESERVE unless overcommit mode 2: no commit charge) and MAP_STACK (VM_NOHUGEPAGE)."""
        extra = (VM_NORESERVE if noreserve and self.machine.acct.overcommit_memory != 2 else 0) | \
            (VM_NOHUGEPAGE if stack else 0)
        return self._call(mmapmod.do_mmap, length, prot, False, None, 0, addr, fixed, "", None, extra)

    def abort(self, message: str) -> None:
        """Print to stderr and die of SIGABRT, as glibc's malloc_printerr does."""
        self.stderr += message + "\n"
        self.machine.events.add(self.pid, "abort", 0, detail=message)
        self._die(("signal", signal.SIGABRT))
        raise Aborted(self.pid, message)

    # -- process lifecycle -------------------------------------------------------------------
    def fork(self) -> Process:
        """fork(2): the child gets a copy-on-write copy of the address space."""
        self._mm()
        return self._fork_from(self.nptl.main if self.nptl is not None else None)

    def _fork_from(self, caller: PThread | None) -> Process:
        """fork from the thread `caller` (None: a process that never made a thread). A threaded
        process runs glibc's malloc fork handlers (locks before, parent unlock, child reset) and
        the child's reclaim_stacks; the child's only thread is the caller's copy."""
        mm = self._mm()
        m = self.machine
        tls = caller.tls if caller is not None else self.tls
        alloc = self._alloc_for(tls) if self.allocator is not None else None
        threaded = self.nptl is not None and alloc is not None and hasattr(alloc, "malloc_fork_lock_parent")
        if threaded:
            alloc.malloc_fork_lock_parent()  # type: ignore[union-attr]
        try:
            child_mm = dup_mmap(m, mm)
        finally:
            if threaded:
                alloc.malloc_fork_unlock_parent()  # type: ignore[union-attr]
        child = m.new_process(self.name, self.pid)
        child.mm, child.addrs = child_mm, dict(self.addrs, tls=tls)
        if alloc is not None:
            child.allocator = alloc.fork_child(child)
        m.events.add(self.pid, "fork", 0, detail=f"child pid {child.pid}")
        self._return_from_fork(caller, parent=True)
        if self.nptl is not None and caller is not None:
            if threaded:
                child.allocator.malloc_fork_unlock_child()  # type: ignore[union-attr]
            child.nptl = self.nptl.fork_child(child, child._alloc_for, caller, child.pid)
        child._return_from_fork(caller)
        return child

    def _return_from_fork(self, caller: PThread | None = None, parent: bool = False) -> None:
        """Both sides return from fork(): run libc text and write the caller's stack (the top
        page of [stack], or a thread's two top pages: in the child the kernel first stores the
        tid in the TCB (CLONE_CHILD_SETTID), the parent returns through its frames first)."""
        self._call(lambda m, pid, mm: execmod.run_text(m, pid, mm, self.addrs))
        if caller is not None and caller.stack is not None:
            run_frames(self, caller, returning=parent)
        else:
            self._call(access_range, STACK_TOP - PAGE_SIZE, 8, True)

    def vfork(self) -> Process:
        """vfork(2): the child borrows this mm; this process is suspended until it execs or exits."""
        mm = self._mm()
        m = self.machine
        child = m.new_process(self.name, self.pid)
        child.mm, child.addrs = mm, self.addrs
        if self.allocator is not None:  # same memory, but the child's own (an abort kills the child)
            child.allocator = self.allocator.fork_child(child)
        child.vfork_parent = self
        mm.users += 1
        self.state = "D"
        m.events.add(self.pid, "vfork", 0, detail=f"child pid {child.pid}")
        return child

    def _release_vfork_parent(self) -> None:
        if self.vfork_parent is not None:
            self.vfork_parent.state = "R"
            self.vfork_parent = None

    def exec(self, image: execmod.Image | None = None, name: str | None = None) -> None:
        """execve(2): a fresh mm for the image; the old one is dropped (freed if last user)."""
        old = self._mm()
        m = self.machine
        image = image or m.default_image
        new_mm, addrs = execmod.exec_mmap(m, self.pid, image)
        self.mm, self.addrs = new_mm, addrs
        self.allocator = None
        end_threads(self)
        self.name = name or image.path.rsplit("/", 1)[-1]
        mmput(m, old)
        self._release_vfork_parent()
        m.events.add(self.pid, "exec", 0, detail=image.path)
        self._call(execmod.startup, addrs)

    def exit(self, code: int = 0) -> None:
        """exit(2): the address space is torn down now; the process stays a zombie until wait."""
        self._mm()
        self._die(("exit", code & 0xFF))

    def _die(self, status: tuple[str, int]) -> None:
        """do_exit: release the mm, wake a vfork parent, become a zombie (or be reaped)."""
        if not self.alive:
            return
        m = self.machine
        if self.mm is not None:
            mmput(m, self.mm)
        self.mm = None
        self.allocator = None
        end_threads(self)
        self._release_vfork_parent()
        self.exit_status = status
        self.state = "Z"
        m.events.add(self.pid, "exit", 0, detail=f"{status[0]} {status[1]}")
        for c in self.children:
            c.ppid = 1
            if c.state == "Z":
                c.state = "X"
        parent = m.processes.get(self.ppid)
        if parent is None or not parent.alive:
            self.state = "X"  # orphan: init reaps it

    def wait(self, child: Process | None = None) -> tuple[int, tuple[str, int]]:
        """wait(2)/waitpid: reap a zombie child; returns (pid, ("exit", code) | ("signal", signo))."""
        self._mm()
        candidates = [c for c in self.children if c.state != "X" and (child is None or c is child)]
        if not candidates:
            raise SyscallError(ECHILD, "wait")
        for c in candidates:
            if c.state == "Z":
                c.state = "X"
                self.children.remove(c)
                assert c.exit_status is not None
                return c.pid, c.exit_status
        raise ProcessBlocked.on_wait(candidates[0].pid)

    # -- views -------------------------------------------------------------------------------
    def _view_mm(self) -> MM:
        if self.mm is None:
            raise ProcessGone.of_state(self.pid, self.state)
        return self.mm

    def maps(self) -> list[MapsEntry]:
        return procfs.maps(self._view_mm())

    def smaps(self) -> list[SmapsEntry]:
        m = self.machine
        return procfs.smaps(m.phys, self._view_mm(), lambda vma: thp_eligible(m, vma),
                            m.swap.swap_map if m.swap else None)

    def smaps_rollup(self) -> SmapsRollup:
        m = self.machine
        return procfs.smaps_rollup(m.phys, self._view_mm(), m.swap.swap_map if m.swap else None)

    def pagemap_raw(self, addr: int, npages: int) -> np.ndarray:
        return procfs.pagemap_raw(self.machine.phys, self._view_mm(), addr, npages)

    def pagemap_scan(self, addr: int, npages: int) -> np.ndarray:
        return procfs.pagemap_scan(self._view_mm(), addr, npages)

    def pagemap_huge(self, addr: int, npages: int) -> np.ndarray:
        return procfs.pagemap_huge(self._view_mm(), addr, npages)

    def pagemap(self, addr: int, npages: int = 1) -> list[PagemapEntry]:
        return pagemap_entries(self.pagemap_raw(addr, npages))

    def status(self) -> Status:
        """/proc/PID/status; a zombie still has one, a reaped process does not (ProcessGone)."""
        if self.state == "X":
            raise ProcessGone.of_state(self.pid, self.state)
        states = {"R": "R (running)", "D": "D (disk sleep)", "Z": "Z (zombie)", "X": "X (dead)"}
        st = procfs.status(self.name, self.pid, self.ppid, states[self.state], self.mm)
        st.threads = 1 + len(self.threads())
        return st

    def ksm_stat(self) -> dict[str, int | str]:
        """/proc/PID/ksm_stat (KSM figures as of the last m.ksm_scan())."""
        return ksm_stat(self.machine, self._view_mm())

    def fault_counts(self) -> dict[str, int]:
        return {"minor": self.min_flt, "major": self.maj_flt}

    def proc(self, name: str) -> str:
        """The text of /proc/PID/<name>, exactly as the kernel prints it."""
        if name == "maps":
            return "".join(e.to_text() + "\n" for e in self.maps())
        if name == "smaps":
            return "".join(e.to_text() for e in self.smaps())
        if name == "smaps_rollup":
            return self.smaps_rollup().to_text()
        if name == "status":
            return self.status().to_text()
        raise ValueError(f"no /proc/PID/{name} in the model (maps, smaps, smaps_rollup, status)")
