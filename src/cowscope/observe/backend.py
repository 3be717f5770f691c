"""The backend interface, declared once: what a machine, its processes and its files offer.

`cowscope.model.Machine` (the executable model) and `cowscope.linux.Machine` (real processes, each
driven through an agent) both satisfy these Protocols; tests/observe/test_backend.py checks every
member on both, method signatures included. Scenario files, the scenario runner, the tracer
(`verify.trace`) and `observe.snapshot` take a `Machine` of this shape, never a concrete backend.

Outcomes are exceptions from `cowscope.errors`, of the same type on both backends:

- `SyscallError`: the call failed as the syscall (or libc call) would; nothing changed. Its errno
  and call name are the same on both backends; the model's detail may say more about why.
- `Segfault` (SIGSEGV), `ProcessKilled` (SIGBUS past the end of a file), `Aborted` (SIGABRT, e.g.
  glibc's malloc found a corrupt heap; its message is in `p.stderr`), `OOMKilled` (the model's OOM
  killer): the process died during the call. It is a zombie now; the machine goes on.
- `ProcessGone`: the process is dead: "pid N has exited" (a zombie) or "pid N has been reaped".
- `ProcessBlocked`: the call cannot return: the process is suspended in vfork() until its child
  execs or exits, or wait() would block on a child that is still running.

Arguments are checked once, for both backends, by `observe.arguments` (both Process classes are
decorated with its `checked`): a str or float where C takes an integer is a TypeError; sizes,
lengths, addresses and pointers of syscalls and malloc calls are C's unsigned long (a negative
number is what C would pass: mmap(-1) is ENOMEM, malloc(-1) NULL, as Linux and glibc decide); an
unknown prot letter or advice name, a negative length to read/fill/touch or a fill byte outside
0..255 is a ValueError.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from .events import Event
    from .records import MapsEntry, PagemapEntry, SmapsEntry, SmapsRollup, Status

#: How a process ended: ("exit", code) or ("signal", signo).
ExitStatus = tuple[str, int]

#: Process states, the letters of /proc/PID/status: "R" alive, "D" suspended in vfork() until its
#: child execs or exits, "Z" zombie (dead, its parent has not waited), "X" reaped.
STATES = ("R", "D", "Z", "X")


@dataclass(frozen=True)
class Mallinfo2:
    """glibc's struct mallinfo2 (malloc.h), field for field."""

    arena: int
    ordblks: int
    smblks: int
    hblks: int
    hblkhd: int
    usmblks: int
    fsmblks: int
    uordblks: int
    fordblks: int
    keepcost: int


@runtime_checkable
class File(Protocol):
    """A regular file of a machine, made by `Machine.create_file`; `mmap(file=...)` maps it."""

    @property
    def path(self) -> str:
        """The path the scenario gave it."""

    @property
    def size(self) -> int:
        """Its size in bytes."""


@runtime_checkable
class Events(Protocol):
    """A machine's event log: every fault decision and process event, in order."""

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[Event]: ...

    def since(self, seq: int) -> Iterable[Event]:
        """The events from index `seq` on (`seq` = len(events) at an earlier point)."""


@runtime_checkable
class Views(Protocol):
    """What `observe.snapshot.take` reads of a process: identity and the /proc views, as records of
    `observe.records`. Both backends' processes and the inspector's live processes have these."""

    @property
    def pid(self) -> int: ...

    @property
    def ppid(self) -> int:
        """The parent's pid (1 once the parent is gone)."""

    @property
    def name(self) -> str: ...

    def maps(self) -> list[MapsEntry]: ...

    def smaps(self) -> list[SmapsEntry]: ...

    def smaps_rollup(self) -> SmapsRollup: ...

    def status(self) -> Status: ...

    def pagemap_raw(self, addr: int, npages: int) -> np.ndarray:
        """The raw u64 pagemap entries."""

    def pagemap_scan(self, addr: int, npages: int) -> np.ndarray:
        """Where [addr, addr + npages pages) has pages at all (present, swap, guard markers), as
        (n, 2) int64 runs of page offsets from addr: PAGEMAP_SCAN, not a walk of the range."""

    def pagemap_huge(self, addr: int, npages: int) -> np.ndarray:
        """Which of those pages a huge PMD maps (a PMD-mapped 2 MiB THP), as the same runs
        (PAGEMAP_SCAN with PAGE_IS_HUGE; empty where the kernel cannot tell)."""

    def ksm_stat(self) -> dict[str, int | str]:
        """/proc/PID/ksm_stat (ksm_rmap_items, ksm_merging_pages, ksm_process_profit, ...)."""

    def fault_counts(self) -> dict[str, int]:
        """{"minor": minflt, "major": majflt}."""


@runtime_checkable
class ViewSource(Protocol):
    """Where snapshots come from: live processes and the machine-wide frame views."""

    @property
    def zero_pfns(self) -> set[int]:
        """PFNs of the shared zero page (empty when PFNs cannot be read)."""

    def live_processes(self) -> Sequence[Views]: ...

    def kpagecount_array(self, pfns: np.ndarray) -> np.ndarray | None:
        """/proc/kpagecount per PFN; None when it cannot be read."""


@runtime_checkable
class Process(Views, Protocol):
    """One process: its syscalls, memory accesses, glibc malloc calls and /proc views.

    Every call raises `ProcessGone` once the process is dead and `ProcessBlocked` while it is
    suspended in vfork(); the views (`maps` ... `proc`) raise `ProcessGone` once it is dead, except
    `status`, which a zombie still has."""

    @property
    def state(self) -> str:
        """One of STATES."""

    @property
    def alive(self) -> bool:
        """True until the process exits or is killed (state "R" or "D")."""

    @property
    def exit_status(self) -> ExitStatus | None:
        """How it ended, None while alive."""

    @property
    def stderr(self) -> str:
        """What it wrote to stderr (glibc's abort messages)."""

    @property
    def libc_data(self) -> int:
        """Start of libc's rw data mapping (where malloc keeps main_arena and mp_)."""

    @property
    def libc_data_size(self) -> int: ...

    # --- lifecycle ---------------------------------------------------------------------------

    def fork(self) -> Process:
        """fork(2): a child with a copy-on-write copy of the address space."""

    def vfork(self) -> Process:
        """vfork(2): the child borrows this address space; this process is suspended (state "D",
        its calls raise ProcessBlocked) until the child execs or exits."""

    def exec(self, image: Any = None, name: str | None = None) -> None:
        """execve(2): a fresh address space (the model's `Image`; the Linux backend always runs its
        agent binary); `name` renames the process."""

    def exit(self, code: int = 0) -> None:
        """_exit(2): the address space is released; a zombie until its parent waits."""

    def wait(self, child: Process | None = None) -> tuple[int, ExitStatus]:
        """waitpid(2) for `child` (any child if None): (pid, status), the child is reaped.
        SyscallError(ECHILD) without such a child; ProcessBlocked while it still runs."""

    # --- memory syscalls ---------------------------------------------------------------------

    def mmap(self, length: int, prot: str = "rw", shared: bool = False, file: File | None = None,
             offset: int = 0, addr: int | None = None, fixed: bool = False, populate: bool = False) -> int:
        """mmap(2): the address. `prot` letters r, w, x ("" = PROT_NONE); `populate` = MAP_POPULATE."""

    def munmap(self, addr: int, length: int) -> None: ...

    def mprotect(self, addr: int, length: int, prot: str) -> None: ...

    def madvise(self, addr: int, length: int, advice: str) -> None:
        """madvise(2); advice by name: "dontneed", "free", "dontfork", "wipeonfork", ..."""

    def mlock(self, addr: int, length: int) -> None: ...

    def munlock(self, addr: int, length: int) -> None: ...

    def mremap(self, addr: int, old_len: int, new_len: int, may_move: bool = True,
               new_addr: int | None = None) -> int:
        """mremap(2): the (possibly new) address; `new_addr`: MREMAP_FIXED there (with may_move;
        whatever was mapped there is unmapped first)."""

    def brk(self, new_end: int | None = None) -> int:
        """brk(2): the current break (unchanged when the move is refused)."""

    def sbrk(self, delta: int) -> int:
        """sbrk(3): the old break; SyscallError(ENOMEM) when it cannot move."""

    # --- memory access (the CPU's own loads and stores: faults as a program takes them) -------

    def read(self, addr: int, n: int) -> bytes: ...

    def write(self, addr: int, data: bytes) -> None: ...

    def fill(self, addr: int, length: int, byte: int) -> None:
        """memset(addr, byte, length)."""

    def touch(self, addr: int, length: int, write: bool = False) -> None:
        """One access per page of [addr, addr+length): a load, or a store of the byte it holds."""

    def read_u64(self, addr: int) -> int: ...

    def write_u64(self, addr: int, value: int) -> None: ...

    # --- glibc malloc --------------------------------------------------------------------------

    def malloc(self, size: int) -> int: ...

    def free(self, ptr: int) -> None: ...

    def calloc(self, n: int, size: int) -> int: ...

    def realloc(self, ptr: int, size: int) -> int: ...

    def memalign(self, alignment: int, size: int) -> int: ...

    def posix_memalign(self, alignment: int, size: int) -> tuple[int, int]:
        """(error, pointer), as posix_memalign(3) returns them."""

    def aligned_alloc(self, alignment: int, size: int) -> int: ...

    def malloc_usable_size(self, ptr: int) -> int: ...

    def mallopt(self, param: int, value: int) -> int:
        """mallopt(3) with glibc's parameter numbers (M_TRIM_THRESHOLD = -1, ...): 1 ok, 0 refused."""

    def malloc_trim(self, pad: int = 0) -> int:
        """malloc_trim(3): 1 if memory went back to the system."""

    def mallinfo2(self) -> Mallinfo2: ...

    def malloc_stats(self) -> str:
        """malloc_stats(3): what glibc prints on stderr (per arena, then the totals)."""

    # --- threads ---------------------------------------------------------------------------------

    def pthread_create(self) -> Thread:
        """pthread_create(3) from the initial thread, default attributes (an 8 MiB stack and a
        guard page): a running thread with its own stack, TLS, errno and tcache."""

    def pthread_join(self, thread: Thread) -> None:
        """pthread_join(3) from the initial thread: ProcessBlocked while the thread runs,
        ProcessGone once it was joined."""

    def threads(self) -> list[Thread]:
        """The threads made by pthread_create still running (the initial one not included)."""

    def tasks(self) -> list[int]:
        """/proc/PID/task: the tids of the live tasks, the initial one (the pid) first."""

    # --- views beyond `Views` -----------------------------------------------------------------

    def pagemap(self, addr: int, npages: int = 1) -> list[PagemapEntry]: ...

    def proc(self, name: str) -> str:
        """The text of /proc/PID/NAME ("maps", "smaps", "smaps_rollup", "status")."""


@runtime_checkable
class Thread(Protocol):
    """A thread of a process (`Process.pthread_create`): calls made on it run on that thread,
    with its own stack, TLS (errno), tcache and malloc arena, in the process's address space.

    A call on a thread that has ended raises ProcessGone ("thread N has exited" / "has been
    joined"); a thread ends with pthread_exit, or when its process execs or dies."""

    @property
    def tid(self) -> int: ...

    @property
    def process(self) -> Process: ...

    @property
    def state(self) -> str:
        """"running", "exited" (ended, not joined) or "joined"."""

    @property
    def alive(self) -> bool: ...

    def stack_range(self) -> tuple[int, int]:
        """[start, end) of its stack mapping, the guard page (PROT_NONE) at start included."""

    def malloc(self, size: int) -> int: ...

    def free(self, ptr: int) -> None: ...

    def calloc(self, n: int, size: int) -> int: ...

    def realloc(self, ptr: int, size: int) -> int: ...

    def memalign(self, alignment: int, size: int) -> int: ...

    def posix_memalign(self, alignment: int, size: int) -> tuple[int, int]: ...

    def aligned_alloc(self, alignment: int, size: int) -> int: ...

    def malloc_usable_size(self, ptr: int) -> int: ...

    def mallopt(self, param: int, value: int) -> int: ...

    def malloc_trim(self, pad: int = 0) -> int: ...

    def mallinfo2(self) -> Mallinfo2: ...

    def malloc_stats(self) -> str: ...

    def read(self, addr: int, n: int) -> bytes: ...

    def write(self, addr: int, data: bytes) -> None: ...

    def fill(self, addr: int, length: int, byte: int) -> None: ...

    def touch(self, addr: int, length: int, write: bool = False) -> None: ...

    def read_u64(self, addr: int) -> int: ...

    def write_u64(self, addr: int, value: int) -> None: ...

    def fork(self) -> Process:
        """fork(2) from this thread: the child's only thread is a copy of this one."""

    def pthread_create(self) -> Thread:
        """pthread_create(3) from this thread (the new stack's DTV is allocated in its arena)."""

    def pthread_join(self, thread: Thread) -> None:
        """pthread_join(3) from this thread."""

    def pthread_exit(self) -> None:
        """The thread ends (as returning from its start routine): its tcache goes back to the
        arenas, its arena onto glibc's free list; the call returns when the task is gone."""


@runtime_checkable
class Machine(ViewSource, Protocol):
    """A machine: processes, files, events, machine-wide /proc views."""

    @property
    def processes(self) -> dict[int, Process]:
        """pid -> process, the dead included."""

    @property
    def events(self) -> Events: ...

    @property
    def checkpoints(self) -> list[tuple[str, int]]:
        """(label, len(events) at the checkpoint) per `checkpoint` call."""

    on_checkpoint: Callable[[str], None] | None
    """Called with the label at every checkpoint (the scenario runner sets it)."""

    def spawn(self, name: str = "app", image: Any = None) -> Process:
        """A new process running `image` (the model's `Image`; ignored by the Linux backend)."""

    def create_file(self, path: str, data: bytes | None = None, size: int | None = None,
                    cached: bool = True) -> File:
        """A regular file holding `data` (or `size` zero bytes), its pages in the page cache and clean
        as after writing it out; `cached=False`: none is cached (the first access reads the disk)."""

    def pread(self, f: File, offset: int, n: int) -> bytes:
        """read(2) of a file through the page cache (MAP_SHARED writes are visible)."""

    def pwrite(self, f: File, offset: int, data: bytes) -> None:
        """write(2) to a file through the page cache."""

    def live_processes(self) -> list[Process]: ...

    def checkpoint(self, label: str) -> None:
        """Mark a step of the scenario (`on_checkpoint` observes the views here)."""

    def check(self) -> None:
        """Check the machine's invariants (AssertionError naming the broken one)."""

    def close(self) -> None:
        """Release what the machine holds (the Linux backend kills its agents); idempotent."""

    def ksm_scan(self) -> None:
        """Let ksmd merge identical anon pages of MADV_MERGEABLE areas now (the Linux backend sets
        /sys/kernel/mm/ksm/run to 1 for the scan and restores it; errors.Unsupported without root)."""

    def ksm_counters(self) -> dict[str, int]:
        """/sys/kernel/mm/ksm: pages_shared, pages_sharing, pages_unshared, full_scans, ..."""

    def swapon(self, size: int | str) -> None:
        """Add a swap area of `size` bytes (the Linux backend: a swapfile removed at close;
        errors.Unsupported without root)."""

    def __enter__(self) -> Machine: ...

    def __exit__(self, *exc: object) -> None: ...

    @property
    def kpage_available(self) -> bool:
        """Whether PFNs and /proc/kpagecount can be read (on Linux: root)."""

    def kpagecount(self, pfn: int) -> int: ...

    def kpageflags(self, pfn: int) -> int: ...

    def meminfo(self) -> dict[str, int]:
        """/proc/meminfo (kB)."""

    def vmstat(self) -> dict[str, int]: ...

    def proc(self, name: str) -> str:
        """The text of /proc/NAME ("meminfo", "vmstat")."""
