"""The kernel's own fault decisions as `Event` records: tracepoints classified into the model's kinds.

Per thread, in time order, a user page fault (`exceptions:page_fault_user`, or
`page_fault_kernel` when a system call touched user memory) opens a window; the order-0 movable
allocation and the RSS counter changes of the same thread that follow, before its next fault,
say which path the kernel took (measured on Linux 6.18, docs/trace.md):

| error code | allocation            | RSS change (this mm)      | kind          | path                 |
|------------|-----------------------|---------------------------|---------------|----------------------|
| write, not present | zeroed        | anon +                    | zero-fill     | do_anonymous_page    |
| write, not present | not zeroed    | anon +                    | file-copy     | do_cow_fault         |
| write, not present | any / none    | shmem +                   | shmem-alloc / shared-write | do_shared_fault |
| write, not present | none          | file +                    | shared-write  | do_shared_fault      |
| write, present     | zeroed        | anon +                    | zero-cow      | wp_page_copy (zero page) |
| write, present     | not zeroed    | anon +, file -            | file-copy     | wp_page_copy (page cache) |
| write, present     | not zeroed    | none                      | cow-copy      | wp_page_copy         |
| write, present     | none          | none                      | cow-reuse (MAP_SHARED: shared-write) | wp_page_reuse
| read, not present  | none          | none                      | zero-page-map | do_anonymous_page    |
| read, not present  | any           | file +                    | pagecache-map | do_read_fault        |
| read, not present  | allocated     | shmem +                   | shmem-alloc   | shmem_fault          |

What cannot be told apart from tracepoints alone (and is said in each event's `detail`): a reuse
and a spurious write fault; a reuse and a shared write when the mapping is not known; a stack
growth (it is a zero-fill or zero-page map below the old stack). A copy's old frame is never
given (`old_pfn` None); `new_pfn` is the allocation's PFN (the one pagemap shows afterwards).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..observe.events import Event

PAGE_MASK = ~0xFFF
#: x86 page-fault error code bits (arch/x86/include/asm/trap_pf.h).
PF_PROT, PF_WRITE, PF_USER, PF_INSTR = 0x1, 0x2, 0x4, 0x10
#: gfp bits (include/linux/gfp_types.h) and the user-page mask of a fault's allocation.
GFP_ZERO, GFP_MOVABLE, GFP_COMP = 0x100, 0x8, 0x40000
GFP_HIGHUSER_MOVABLE = 0x100CCA
#: rss_stat members (MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES).
MM_FILE, MM_ANON, MM_SWAP, MM_SHMEM = 0, 1, 2, 3
SIG_ABRT, SIG_BUS, SIG_SEGV = 6, 7, 11
HPAGE_PMD_ORDER = 9
HPAGE_MASK = ~((1 << 21) - 1)

TRACEPOINTS = (
    "exceptions:page_fault_user", "exceptions:page_fault_kernel", "kmem:mm_page_alloc", "kmem:rss_stat",
    "sched:sched_process_fork", "sched:sched_process_exec", "sched:sched_process_exit",
    "signal:signal_deliver", "task:task_newtask",
)
#: task_newtask's clone flags tell a vfork from a fork (sched_process_fork carries none).
CLONE_VFORK = 0x4000
#: Only movable allocations are user data or page cache; page tables and slab are filtered in the kernel.
FILTERS = {"kmem:mm_page_alloc": f"gfp_flags & {GFP_MOVABLE}"}
#: A fault's allocation and counter updates come within microseconds; later ones belong elsewhere.
WINDOW_NS = 2_000_000


@dataclass
class _Fault:
    """One open fault window of one thread."""

    tid: int
    time_ns: int
    address: int
    ip: int
    error_code: int
    kernel_mode: bool
    alloc: tuple[int, int, int] | None = None  # pfn, order, gfp of the first user-page allocation
    up: set[int] = field(default_factory=set)  # rss members that grew
    down: set[int] = field(default_factory=set)  # rss members that shrank
    unknown: set[int] = field(default_factory=set)  # rss members first seen here (sign unknown)

    @property
    def write(self) -> bool:
        return bool(self.error_code & PF_WRITE)

    @property
    def present(self) -> bool:
        return bool(self.error_code & PF_PROT)


def classify(f: _Fault, shared_mapping: Callable[[], bool | None]) -> tuple[str | None, str]:
    """The kind of one closed fault window (None: nothing happened that the model records), and a
    detail. `shared_mapping()` says whether the page lies in a MAP_SHARED mapping (None: unknown);
    it is asked only when the events cannot tell."""
    zeroed = f.alloc is not None and bool(f.alloc[2] & GFP_ZERO)
    if f.alloc is not None and f.alloc[1] >= HPAGE_PMD_ORDER:
        return "thp-alloc", f"a 2 MiB folio (order {f.alloc[1]}) mapped by one PMD"
    if MM_SWAP in f.down - f.unknown and MM_ANON in f.up and not f.present:
        return "swap-in", "read back from swap" if f.alloc is not None else "from the swap cache"
    if f.write and f.present:
        if f.alloc is not None:
            if zeroed:
                return "zero-cow", ""
            if MM_ANON in f.up and MM_FILE in f.down:
                return "file-copy", "write to a read-only page-cache page of a private mapping"
            return "cow-copy", ""
        if f.up & {MM_ANON, MM_FILE, MM_SHMEM}:
            return None, "mapped more than it copied"
        shared = shared_mapping()
        if shared:
            return "shared-write", ""
        if shared is None:
            return "cow-reuse", "or a write to a MAP_SHARED page (mapping unknown), or a spurious fault"
        return "cow-reuse", ""
    if f.write:
        if MM_SHMEM in f.up:
            return ("shmem-alloc", "") if f.alloc is not None else ("shared-write", "")
        if MM_FILE in f.up:
            return "shared-write", "read from disk" if f.alloc is not None else ""
        if f.alloc is not None:
            return ("zero-fill", "") if zeroed else ("file-copy", "first access is a write (do_cow_fault)")
        return None, "no page mapped (retried or raced)"
    if f.present:
        return None, "read fault on a present page (PROT_NONE or spurious)"
    if MM_SHMEM in f.up:
        return ("shmem-alloc", "") if f.alloc is not None else ("pagecache-map", "")
    if MM_FILE in f.up:
        return "pagecache-map", "major: read from disk" if f.alloc is not None else ""
    if f.alloc is not None and zeroed and f.alloc[1] > 0:
        return "zero-fill", f"huge page (order {f.alloc[1]}) on a read"
    if f.alloc is None and not (f.up - f.unknown) & {MM_ANON, MM_FILE, MM_SHMEM}:
        return "zero-page-map", ""
    return None, "read fault that mapped something unrecognised"


class Classifier:
    """Streams decoded tracepoint records (time, cpu, tid, name, fields) into `Event`s, in order.

    `tgid_of(tid)` names a thread's process (default: the tid itself); `is_shared(pid, address)`
    says whether the address lies in a MAP_SHARED mapping (None when unknown)."""

    def __init__(self, tgid_of: Callable[[int], int] | None = None,
                 is_shared: Callable[[int, int], bool | None] | None = None) -> None:
        self.tgid_of = tgid_of or (lambda tid: tid)
        self.is_shared = is_shared or (lambda pid, va: None)
        self.open: dict[int, _Fault] = {}
        self.rss_last: dict[tuple[int, int], int] = {}
        self.seq = 0
        self.unattributed_allocs = 0
        self.unclassified = 0
        self.out: list[Event] = []
        self._vforked: set[int] = set()  # children whose task_newtask had CLONE_VFORK
        self._fatal: dict[int, str] = {}  # tid -> a signal delivered to its handler (a re-raise may follow)

    def feed(self, records: Iterable[tuple]) -> list[Event]:
        """Classify more records (in time order); returns the events completed by them."""
        self.out = []
        for ts, _cpu, tid, name, fields in records:
            handler = _HANDLERS.get(name)
            if handler is not None:
                handler(self, ts, tid, fields)
        return self.out

    def flush(self, before_ns: int | None = None) -> list[Event]:
        """Close every open window (end of the trace, or quiescent processes), or those opened
        before `before_ns` (trace clock: CLOCK_MONOTONIC)."""
        self.out = []
        for tid, f in list(self.open.items()):
            if before_ns is None or f.time_ns < before_ns:
                self._close(tid)
        return self.out

    # --- windows ------------------------------------------------------------------------------

    def _window(self, tid: int, ts: int) -> _Fault | None:
        f = self.open.get(tid)
        if f is not None and ts - f.time_ns > WINDOW_NS:
            self._close(tid)
            return None
        return f

    def _close(self, tid: int) -> None:
        f = self.open.pop(tid, None)
        if f is None:
            return
        pid = self.tgid_of(tid)
        kind, detail = classify(f, lambda: self.is_shared(pid, f.address))
        if kind is None:
            self.unclassified += 1
            return
        if f.kernel_mode:
            detail = "; ".join(x for x in (detail, "taken in kernel mode (a system call touched it)") if x)
        new_pfn = f.alloc[0] if f.alloc is not None else None
        address = f.address & (HPAGE_MASK if kind == "thp-alloc" else PAGE_MASK)
        self._emit(pid, kind, address, None, new_pfn, detail, f.time_ns, f.ip)

    def _emit(self, pid: int, kind: str, address: int, old: int | None, new: int | None, detail: str,
              ts: int, ip: int | None = None) -> None:
        self.out.append(Event(self.seq, pid, kind, address, old, new, detail, ts, ip))
        self.seq += 1

    # --- handlers -----------------------------------------------------------------------------

    def on_fault(self, ts: int, tid: int, fl: dict, kernel_mode: bool = False) -> None:
        prev = self._window(tid, ts)
        if (prev is not None and prev.alloc is None and not prev.up and not prev.down
                and prev.error_code == fl["error_code"] and prev.address & PAGE_MASK == fl["address"] & PAGE_MASK):
            self.open.pop(tid)  # a retried fault: the second attempt decides
            retried = prev
        else:
            self._close(tid)
            retried = None
        f = _Fault(tid, ts, fl["address"], fl["ip"], fl["error_code"], kernel_mode)
        if retried is not None:
            f.time_ns = retried.time_ns
        self.open[tid] = f

    def on_kernel_fault(self, ts: int, tid: int, fl: dict) -> None:
        if fl["address"] < (1 << 47):  # a user address touched from kernel mode
            self.on_fault(ts, tid, fl, kernel_mode=True)

    def on_alloc(self, ts: int, tid: int, fl: dict) -> None:
        f = self._window(tid, ts)
        user_page = fl["gfp_flags"] & ~GFP_ZERO == GFP_HIGHUSER_MOVABLE | GFP_COMP
        huge = fl["order"] >= HPAGE_PMD_ORDER
        if f is None or f.alloc is not None:
            self.unattributed_allocs += user_page or huge
        elif user_page or huge or (not f.write or not f.present):
            f.alloc = (fl["pfn"], fl["order"], fl["gfp_flags"])

    def on_rss(self, ts: int, tid: int, fl: dict) -> None:
        key = (fl["mm_id"], fl["member"])
        last = self.rss_last.get(key)
        self.rss_last[key] = fl["size"]
        f = self._window(tid, ts)
        if f is None or not fl["curr"]:
            return
        if last is None:
            f.unknown.add(fl["member"])
        if last is None or fl["size"] > last:  # first sight of this counter: the sign is unknown
            f.up.add(fl["member"])
        if last is None or fl["size"] < last:
            f.down.add(fl["member"])

    def on_newtask(self, ts: int, tid: int, fl: dict) -> None:
        if int(fl.get("clone_flags", 0)) & CLONE_VFORK:
            self._vforked.add(int(fl["pid"]))

    def on_fork(self, ts: int, tid: int, fl: dict) -> None:
        self._close(tid)
        child = fl["child_pid"]
        kind = "vfork" if child in self._vforked else "fork"
        self._vforked.discard(child)
        if self.tgid_of(child) == child:
            self._emit(self.tgid_of(tid), kind, 0, 0, 0, f"child pid {child}", ts)

    def on_exec(self, ts: int, tid: int, fl: dict) -> None:
        self._close(tid)
        self._emit(self.tgid_of(tid), "exec", 0, 0, 0, fl.get("filename", ""), ts)

    def on_exit(self, ts: int, tid: int, fl: dict) -> None:
        self._close(tid)
        if fl.get("group_dead", 1):
            self._emit(self.tgid_of(tid), "exit", 0, 0, 0, "", ts)

    def on_signal(self, ts: int, tid: int, fl: dict) -> None:
        kind = {SIG_SEGV: "segv", SIG_BUS: "sigbus", SIG_ABRT: "abort"}.get(fl["sig"])
        if kind is None:
            return
        f = self.open.pop(tid, None)
        if fl.get("sa_handler", 0) == 0 and self._fatal.pop(tid, None) == kind:
            return  # the handler returned and the instruction faulted again, now fatal: one event
        if fl.get("sa_handler", 0) not in (0, 1):
            self._fatal[tid] = kind  # delivered to a handler: a re-raise may follow
        address = f.address if f is not None and kind != "abort" else 0
        ip = f.ip if f is not None else None
        self._emit(self.tgid_of(tid), kind, address, 0, 0, f"signal {fl['sig']} code {fl['code']}", ts, ip)


_HANDLERS: dict[str, Callable[[Classifier, int, int, dict], None]] = {
    "exceptions:page_fault_user": Classifier.on_fault,
    "exceptions:page_fault_kernel": Classifier.on_kernel_fault,
    "kmem:mm_page_alloc": Classifier.on_alloc,
    "kmem:rss_stat": Classifier.on_rss,
    "sched:sched_process_fork": Classifier.on_fork,
    "sched:sched_process_exec": Classifier.on_exec,
    "sched:sched_process_exit": Classifier.on_exit,
    "signal:signal_deliver": Classifier.on_signal,
    "task:task_newtask": Classifier.on_newtask,
}
