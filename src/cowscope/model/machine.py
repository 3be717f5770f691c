"""Machine: RAM, the zero page, files and page cache, processes, events, counters, invariants."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import Callable

import numpy as np

from ..errors import ENOMEM, CowscopeError, SyscallError
from ..observe.arguments import checked
from ..observe.records import (
    KPF_ANON,
    KPF_ANON_EXCLUSIVE,
    KPF_COMPOUND_HEAD,
    KPF_COMPOUND_TAIL,
    KPF_DIRTY,
    KPF_KSM,
    KPF_LRU,
    KPF_MMAP,
    KPF_OWNER_PRIVATE,
    KPF_REFERENCED,
    KPF_RESERVED,
    KPF_SWAPBACKED,
    KPF_SWAPCACHE,
    KPF_THP,
    KPF_UPTODATE,
    KPF_ZERO_PAGE,
)
from .arch import PAGE_SIZE, parse_size
from .check import check_machine
from .events import EventLog
from .fs.file import File, file_from_bytes
from .kernel.exec import Image, exec_mmap, startup
from .kernel.process import OOMSelf, Process
from .libc.base import ALLOCATORS, Allocator
from .mm.acct import CommitAccount
from .mm.filemap import filemap_read, filemap_write
from .mm.huge_memory import ThpSettings, nr_anon_thps, parse_kernel
from .mm.ksm import KsmState, ksm_scan
from .mm.page_alloc import (
    FIRST_PFN,
    FOLIO_NR,
    HUGE_ZERO_PFN,
    PG_ANON,
    PG_ANON_EXCLUSIVE,
    PG_COMPOUND,
    PG_DIRTY,
    PG_FILE,
    PG_HEAD,
    PG_INUSE,
    PG_KSM,
    PG_REFERENCED,
    PG_SWAPBACKED,
    PG_SWAPCACHE,
    ZERO_PFN,
    OutOfMemory,
    PhysMem,
)
from .mm.swapfile import SwapInfo
from .mm.vma import MM
from .mm.vmscan import shrink_memory

DEFAULT_RAM = "256GiB"
#: The RAM a model machine may have: room for a program image and its first pages, and no more
#: frames than the event log's 32-bit frame numbers name (16 TiB).
MIN_RAM, MAX_RAM = 1 << 20, 1 << 44


def ram_pages(ram: int | str | None) -> int:
    """Machine(ram=...) in pages (None: the default); ValueError saying what is wrong."""
    try:
        nbytes = parse_size(DEFAULT_RAM if ram is None else ram)
    except ValueError as exc:
        raise ValueError(f"Machine(ram={ram!r}): {exc}") from None
    if not MIN_RAM <= nbytes <= MAX_RAM:
        raise ValueError(f"Machine(ram={ram!r}): a model machine has between 1 MiB (a program image and "
                         "its first pages) and 16 TiB (the frames its event log can name) of RAM")
    return nbytes // PAGE_SIZE
#: /proc/vmstat THP event counters the model moves (mm/vmstat.c names)
THP_EVENTS = ("thp_fault_alloc", "thp_fault_fallback", "thp_split_pmd", "thp_split_page",
              "thp_deferred_split_page", "thp_zero_page_alloc", "thp_swpout_fallback")
SWAP_EVENTS = ("pswpin", "pswpout", "pgpgout", "pgsteal_anon")
#: the reference machine's CPU has no protection keys (no pku/ospke in /proc/cpuinfo)
REFERENCE_PKEYS = False
#: online CPUs of the reference machine (glibc's arena limit is 8 per CPU)
REFERENCE_CPUS = 2
#: read_ahead_kb of the reference machine's disk (virtio vda): a 2048-page readahead window
REFERENCE_READ_AHEAD_KB = 8192


@checked
class Machine:
    """One simulated Linux machine (x86-64, 4 KiB pages; THP as on the reference machine:
    `madvise`, with the huge zero page; no swap unless asked)."""

    def __init__(self, ram: int | str | None = DEFAULT_RAM, allocator: str | None = None,
                 record_events: bool = True, image: Image | None = None, thp: str = "madvise",
                 thp_zero_page: bool = True, kernel: str = "6.18", swap: int | str | None = None, *,
                 overcommit_memory: int = 0, overcommit_ratio: int = 50, overcommit_kbytes: int = 0,
                 pkeys: bool = REFERENCE_PKEYS, read_ahead_kb: int = REFERENCE_READ_AHEAD_KB,
                 cpus: int = REFERENCE_CPUS) -> None:
        """A machine with `ram` of RAM. `thp`, `thp_zero_page`: transparent huge pages as
        /sys/kernel/mm/transparent_hugepage sets them; `kernel`: the version whose rules apply;
        `swap`: the size of a swap area to switch on. `overcommit_*` are the vm.overcommit_*
        sysctls (mm/acct.py); `pkeys`: the CPU has memory protection keys (then PROT_EXEC-only
        memory cannot be read); `read_ahead_kb`: the readahead window of the disk files live on;
        `cpus`: the online CPUs glibc counts (malloc makes up to 8 arenas per CPU).
        The defaults are the reference machine's; the kernel backend's `model_config()` gives its
        host's."""
        self.phys = PhysMem(ram_pages(ram))
        self.current_pid = 0  # the process in a system call or fault now (0: the machine itself)
        self.phys.pressure = self._page_cache_pressure
        self.acct = CommitAccount(self.phys.nr_pages, 0, int(overcommit_memory), int(overcommit_ratio),
                                  int(overcommit_kbytes))
        self.swap: SwapInfo | None = None
        if swap:
            self.swapon(swap)
        self.ksm = KsmState()
        self.thp = ThpSettings(thp, thp_zero_page, parse_kernel(kernel))
        self.kernel = kernel
        self.pkeys = bool(pkeys)
        self.read_ahead_kb = int(read_ahead_kb)
        if int(cpus) < 1:
            raise ValueError(f"cpus must be at least 1, got {cpus!r}")
        self.cpus = int(cpus)
        self.ra_pages = self.read_ahead_kb * 1024 // PAGE_SIZE
        self.files: dict[str, File] = {}
        self.processes: dict[int, Process] = {}
        self.events = EventLog(record_events)
        self.stat: Counter[str] = self.phys.stat
        self.checkpoints: list[tuple[str, int]] = []
        self.on_checkpoint: Callable[[str], None] | None = None
        self.default_image = image or Image()
        self.allocator_name = allocator or ("ptmalloc" if "ptmalloc" in _allocators() else "firstfit")
        if self.allocator_name not in _allocators():
            raise ValueError(f"unknown allocator {self.allocator_name!r}; have {sorted(_allocators())}")
        self.last_oom_rss_kb = 0
        self._next_pid = 1000
        self._next_inode = 100
        self._shmem_seq = 0

    # -- files ---------------------------------------------------------------------------------
    def create_file(self, path: str, data: bytes | None = None, size: int | None = None,
                    cached: bool = True) -> File:
        """A regular file with `data` (or `size` zero bytes); returns the handle mmap takes.
        `cached`: its pages are in the page cache, clean, as after writing it out (the default);
        False: none is (cold, as after a reboot or POSIX_FADV_DONTNEED)."""
        if path in self.files:
            raise FileExistsError(path)
        self._next_inode += 1
        if data is not None:
            f = file_from_bytes(path, self._next_inode, bytes(data))
        else:
            f = File(path, self._next_inode, int(size or 0))
        self.files[path] = f
        if cached:
            for pgoff in range(f.npages):
                f.add_to_page_cache(self.phys, pgoff)
        return f

    def new_shmem_anon(self, length: int) -> File:
        """The shmem file behind one MAP_SHARED|MAP_ANONYMOUS mapping ("/dev/zero (deleted)")."""
        self._shmem_seq += 1
        return File("/dev/zero (deleted)", 1000 + self._shmem_seq, length, dev="00:01",
                    shmem=True, shmem_anon=True)

    def release_shmem(self, files: list[File]) -> None:
        """Free the pages of MAP_SHARED|MAP_ANONYMOUS files that no VMA maps any more (its last
        mapping closed the shmem file, dropping the page cache's references)."""
        candidates = {id(f): f for f in files if f.is_shmem_anon and (f.page_cache or f.shmem_charge)}
        if not candidates:
            return
        for mm in self._mms():
            for v in mm.vmas:
                if v.vm_file is not None:
                    candidates.pop(id(v.vm_file), None)
        for f in candidates.values():
            self.phys.put(np.fromiter(f.page_cache.values(), dtype=np.int64))
            f.page_cache.clear()
            self.acct.unacct(f.shmem_charge)  # shmem_evict_inode: the object's commit goes
            f.shmem_charge = 0

    def pread(self, f: File, offset: int, n: int) -> bytes:
        """read(2) of a file (freshly opened) through the page cache, with readahead: MAP_SHARED
        writes are visible, and the pages it reads stay cached."""
        return filemap_read(self.phys, f, offset, n, self.ra_pages)

    def pwrite(self, f: File, offset: int, data: bytes) -> None:
        """write(2) to a file through the page cache: mappers of uncopied pages see it."""
        filemap_write(self.phys, f, offset, bytes(data))

    # -- processes -----------------------------------------------------------------------------
    def new_process(self, name: str, ppid: int) -> Process:
        pid = self.new_tid()  # a process's pid is its first task's tid
        p = Process(self, pid, ppid, name)
        self.processes[pid] = p
        parent = self.processes.get(ppid)
        if parent is not None:
            parent.children.append(p)
        return p

    def new_tid(self) -> int:
        """A thread's id: from the pid space, as Linux allocates them."""
        tid = self._next_pid
        self._next_pid += 1
        return tid

    def spawn(self, name: str = "app", image: Image | None = None) -> Process:
        """Start a process running `image` (fork of init + execve)."""
        p = self.new_process(name, 1)
        image = image or self.default_image
        p.mm, p.addrs = exec_mmap(self, p.pid, image)
        self.events.add(p.pid, "exec", 0, detail=image.path)
        p._call(startup, p.addrs)
        return p

    def live_processes(self) -> list[Process]:
        return [p for p in self.processes.values() if p.alive and p.mm is not None]

    def process(self, pid: int) -> Process:
        return self.processes[pid]

    def allocator_class(self) -> type[Allocator]:
        return _allocators()[self.allocator_name]

    def make_allocator(self, p: Process) -> Allocator:
        return self.allocator_class()(p)

    # -- frames and faults ---------------------------------------------------------------------
    def alloc_page(self, pid: int, flags: int, value: int = 0) -> int:
        """One frame for a fault; on OOM the killer frees the largest process and we retry."""
        while True:
            try:
                return self.phys.alloc_one(flags, value)
            except OutOfMemory:
                if not self.reclaim():
                    self.oom_kill(pid)

    def _page_cache_pressure(self) -> None:
        """A page-cache allocation found no free frame: reclaim, else the OOM killer on behalf of
        the process in a system call now (none: the machine itself, e.g. create_file)."""
        if self.reclaim():
            return
        try:
            self.oom_kill(self.current_pid)
        except OOMSelf:
            if self.current_pid:
                raise
            raise SyscallError(ENOMEM, "write", "out of memory: no page-cache page to reclaim, "
                               "no process whose death frees one") from None

    def reclaim(self) -> int:
        """Free memory before the OOM killer runs (mm/vmscan.py: deferred THP splits, the swap
        cache, then swap-out). Returns the frames freed."""
        return shrink_memory(self)

    def ksm_scan(self) -> None:
        """Let ksmd run until nothing more merges (mm/ksm.py): identical anon pages of
        MADV_MERGEABLE areas become shared, write-protected KSM pages."""
        ksm_scan(self)

    def ksm_counters(self) -> dict[str, int]:
        """/sys/kernel/mm/ksm counters (pages_shared, pages_sharing, pages_unshared, ...)."""
        return dict(self.ksm.counters)

    def swapon(self, size: int | str) -> None:
        """swapon(2) of a swap area of `size` bytes (the model has one swap device)."""
        if self.swap is not None:
            raise CowscopeError("the model has one swap device, already on")
        nbytes = parse_size(size)
        if nbytes < 2 * PAGE_SIZE:
            raise ValueError(f"swap size must be at least 8 KiB, got {size!r}")
        self.swap = SwapInfo(nbytes)
        self.acct.swap = self.swap.nr_slots - 1  # the overcommit limits count swap too

    def oom_kill(self, pid: int) -> None:
        """out_of_memory: kill the process with the largest RSS (it may be the faulting one)."""
        live = [p for p in self.live_processes() if p.mm is not None]
        if not live:
            raise CowscopeError("out of memory with no process to kill")
        victim = max(live, key=lambda p: (_rss(p.mm), p.pid))
        rss_kb = _rss(victim.mm) * (PAGE_SIZE >> 10)
        self.last_oom_rss_kb = rss_kb
        self.events.add(victim.pid, "oom-kill", 0, detail=f"killed for pid {pid}, rss {rss_kb} kB")
        self.stat["oom_kill"] += 1
        before = self.phys.nr_used
        victim._die(("signal", signal.SIGKILL))
        if victim.pid == pid:
            raise OOMSelf()
        if self.phys.nr_used == before:  # killing freed nothing (its frames are shared): give up on pid
            requester = self.processes.get(pid)
            if requester is not None and requester.alive:
                self.events.add(pid, "oom-kill", 0, detail="no frame freed by killing others")
                requester._die(("signal", signal.SIGKILL))
            raise OOMSelf()

    def count_fault(self, pid: int) -> None:
        self.count_faults(pid, 1)

    def count_faults(self, pid: int, n: int) -> None:
        self.stat["pgfault"] += n
        p = self.processes.get(pid)
        if p is not None:
            p.min_flt += n

    def count_major(self, pid: int) -> None:
        self.stat["pgmajfault"] += 1
        p = self.processes.get(pid)
        if p is not None:
            p.maj_flt += 1
            p.min_flt -= 1

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        """Nothing to release (the Linux backend kills its agents here): for `with Machine() as m`."""

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- machine-wide views ----------------------------------------------------------------------
    @property
    def kpage_available(self) -> bool:
        """PFNs and /proc/kpagecount are always readable in the model."""
        return True

    @property
    def zero_pfns(self) -> set[int]:
        """The 4 KiB zero page and the 512 frames of the huge zero page."""
        return {ZERO_PFN, *range(HUGE_ZERO_PFN, HUGE_ZERO_PFN + FOLIO_NR)}

    @property
    def zero_pfn(self) -> int:
        return ZERO_PFN

    def kpagecount(self, pfn: int) -> int:
        """/proc/kpagecount: the page's map count (0 for the zero page and free frames)."""
        return int(self.kpagecount_array(np.array([pfn]))[0])

    def kpagecount_array(self, pfns: np.ndarray) -> np.ndarray:
        """Map counts (PTEs plus the folio's PMDs) of these frames; 0 for the zero pages."""
        pfns = np.asarray(pfns, dtype=np.int64)
        ok = (pfns >= FIRST_PFN) & (pfns < len(self.phys.mapcount))
        return np.where(ok, self.phys.precise_mapcount(np.where(ok, pfns, FIRST_PFN)), 0).astype(np.int64)

    def kpageflags(self, pfn: int) -> int:
        """/proc/kpageflags bits: UPTODATE 3, DIRTY 4, LRU 5, MMAP 11, ANON 12, SWAPBACKED 14,
        ZERO_PAGE 24, and bit 34 = PG_anon_exclusive (the model's LRU batches are always drained)."""
        if pfn == ZERO_PFN:
            return KPF_ZERO_PAGE | KPF_RESERVED  # as measured
        if HUGE_ZERO_PFN <= pfn < HUGE_ZERO_PFN + FOLIO_NR:
            return KPF_ZERO_PAGE | KPF_THP | (KPF_COMPOUND_HEAD if pfn == HUGE_ZERO_PFN else KPF_COMPOUND_TAIL)
        fl = int(self.phys.flags[pfn]) if 0 <= pfn < len(self.phys.flags) else 0
        if not fl & PG_INUSE:
            return 0
        bits = KPF_UPTODATE | KPF_LRU
        if fl & PG_COMPOUND:  # folio flags are the head's; THP and head/tail are the page's own
            bits |= KPF_THP | (KPF_COMPOUND_HEAD if fl & PG_HEAD else KPF_COMPOUND_TAIL)
            fl = int(self.phys.flags[self.phys.folio_head(pfn)]) | (fl & PG_INUSE)
        if self.kpagecount(pfn) > 0:
            bits |= KPF_MMAP
        if fl & PG_ANON:
            bits |= KPF_ANON
        if fl & PG_SWAPBACKED:
            bits |= KPF_SWAPBACKED
        if fl & PG_DIRTY:
            bits |= KPF_DIRTY
        if fl & PG_ANON_EXCLUSIVE:
            bits |= KPF_ANON_EXCLUSIVE
        if fl & PG_SWAPCACHE:
            bits |= KPF_SWAPCACHE | KPF_OWNER_PRIVATE
        if fl & PG_KSM:
            bits |= KPF_KSM
        if fl & PG_REFERENCED:
            bits |= KPF_REFERENCED
        return bits

    def meminfo(self) -> dict[str, int]:
        """/proc/meminfo lines the model can know (kB)."""
        kb = PAGE_SIZE >> 10
        fl = self.phys.flags
        used = fl & PG_INUSE != 0
        anon = int(np.count_nonzero(used & (fl & PG_ANON != 0) & (self.phys.mapcount > 0)))  # NR_ANON_MAPPED
        shmem = int(np.count_nonzero(used & (fl & PG_FILE != 0) & (fl & PG_SWAPBACKED != 0)))
        cached = int(np.count_nonzero(used & (fl & PG_FILE != 0)))
        mapped = int(np.count_nonzero(used & (fl & PG_FILE != 0) & (self.phys.mapcount > 0)))
        tables = sum(mm.pgd.nr_table_pages() for mm in self._mms())
        return {"MemTotal": self.phys.nr_pages * kb, "MemFree": (self.phys.nr_pages - self.phys.nr_used) * kb,
                "Cached": cached * kb, "AnonPages": anon * kb, "Mapped": mapped * kb,
                "Shmem": shmem * kb, "PageTables": tables * kb,
                "SwapCached": (len(self.swap.cache) if self.swap else 0) * kb,
                "SwapTotal": self.swap.total_kb if self.swap else 0,
                "SwapFree": self.swap.free_kb if self.swap else 0,
                "AnonHugePages": nr_anon_thps(self) * FOLIO_NR * kb,
                "CommitLimit": self.acct.commit_limit() * kb, "Committed_AS": self.acct.committed * kb}

    def vmstat(self) -> dict[str, int]:
        """/proc/vmstat: kernel counters plus the model's CoW decision counters."""
        mi = self.meminfo()
        kb = PAGE_SIZE >> 10
        out = {"nr_free_pages": mi["MemFree"] // kb, "nr_anon_pages": mi["AnonPages"] // kb,
               "nr_mapped": mi["Mapped"] // kb, "nr_file_pages": mi["Cached"] // kb,
               "nr_shmem": mi["Shmem"] // kb, "nr_page_table_pages": mi["PageTables"] // kb,
               "pgalloc_normal": self.phys.pgalloc, "pgfree": self.phys.pgfree,
               "pgfault": self.stat["pgfault"], "pgmajfault": self.stat["pgmajfault"]}
        out["nr_anon_transparent_hugepages"] = nr_anon_thps(self)
        out["nr_swapcached"] = mi["SwapCached"] // kb
        for name in THP_EVENTS + SWAP_EVENTS:
            out[name] = self.stat[name]
        out["cow_ksm"] = self.stat["cow_ksm"]
        for name in ("cow_copy", "cow_reuse", "zero_cow", "zero_fill", "zero_page_map",
                     "pagecache_map", "file_copy", "oom_kill"):
            out[name] = self.stat[name]
        return out

    def proc(self, name: str) -> str:
        """/proc/meminfo or /proc/vmstat text."""
        from ..observe.records import format_meminfo, format_vmstat

        if name == "meminfo":
            return format_meminfo(self.meminfo())
        if name == "vmstat":
            return format_vmstat(self.vmstat())
        raise ValueError(f"no /proc/{name} in the model (meminfo, vmstat)")

    def checkpoint(self, label: str) -> None:
        """Mark a step: the CLI shows every process's views here."""
        self.checkpoints.append((label, len(self.events)))
        self.events.add(0, "checkpoint", 0, detail=label)
        if self.on_checkpoint is not None:
            self.on_checkpoint(label)

    # -- invariants ----------------------------------------------------------------------------
    def _mms(self) -> list[MM]:
        seen: dict[int, MM] = {}
        for p in self.processes.values():
            if p.mm is not None:
                seen[id(p.mm)] = p.mm
        return list(seen.values())

    def check(self) -> None:
        """Verify every accounting invariant; raises AssertionError naming the broken one."""
        check_machine(self)

    def _shmem_files(self) -> list[File]:
        out: dict[int, File] = {}
        for mm in self._mms():
            for v in mm.vmas:
                if v.vm_file is not None and v.vm_file.is_shmem_anon:
                    out[id(v.vm_file)] = v.vm_file
        return list(out.values())


def _rss(mm: MM | None) -> int:
    return 0 if mm is None else mm.get_mm_rss()


def _allocators() -> dict[str, type[Allocator]]:
    from .libc import firstfit  # noqa: F401  (registers itself)

    try:
        from .libc import ptmalloc  # noqa: F401
    except ImportError:
        pass
    return ALLOCATORS
