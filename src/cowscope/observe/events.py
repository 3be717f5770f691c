"""The event vocabulary both backends speak: one `Event` record per fault decision or process event.

The model emits these from its fault path (`cowscope.model.events.EventLog` stores them
column-wise); the real-kernel backend classifies the kernel's tracepoints into the same records
(`cowscope.linux.kevents`). Fields a backend cannot know are `None`: the kernel's tracepoints give
no old frame for a copy, and the model has no wall clock or instruction pointer.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Every kind, with the kernel path it stands for.
KIND_DOC = {
    "zero-page-map": "read of an untouched private anon page: the shared zero page is mapped",
    "zero-fill": "first write to an untouched private anon page (do_anonymous_page)",
    "cow-copy": "write to a shared anon page: copied into a new frame (wp_page_copy)",
    "cow-reuse": "write to a write-protected anon page nobody else holds: made writable (wp_page_reuse)",
    "zero-cow": "write to the zero page: a new zeroed frame (wp_page_copy of the zero page)",
    "pagecache-map": "read of a file page: the page-cache frame is mapped (filemap_fault)",
    "file-copy": "write to a private file mapping: the page-cache page is copied (do_cow_fault, wp_page_copy)",
    "shared-write": "write to a MAP_SHARED page: no copy, the page becomes dirty",
    "shmem-alloc": "first touch of a shmem (shared anon) page: a new page-cache frame",
    "stack-grow": "an access just below [stack] grows the stack VMA",
    "segv": "SIGSEGV",
    "abort": "abort() (SIGABRT)",
    "oom-kill": "the OOM killer",
    "exit": "the process exits",
    "fork": "fork()",
    "exec": "execve()",
    "vfork": "vfork()",
    "checkpoint": "a scenario checkpoint (not a kernel event)",
    "sigbus": "SIGBUS (access past the end of a file)",
    "thp-alloc": "fault in a THP-enabled 2 MiB block: a new 2 MiB folio mapped by one PMD "
    "(do_huge_pmd_anonymous_page; also a write to the huge zero page)",
    "thp-zero-map": "read of an untouched THP-enabled 2 MiB block: the huge zero page is mapped",
    "thp-split": "a huge PMD split into 512 PTEs (write to a shared THP, partial munmap/mprotect/"
    "madvise); the folio stays whole",
    "thp-copy": "write to a shared THP copied all 2 MiB (the rule before Linux 5.8, Machine(kernel=...))",
    "swap-out": "an anon page written to swap: its PTE becomes a swap entry, the frame stays in the "
    "swap cache (MADV_PAGEOUT, memory pressure)",
    "swap-in": "access to a swap entry: the page is mapped again from the swap cache or read back "
    "(do_swap_page)",
    "ksm-merge": "KSM (m.ksm_scan()): a page became a KSM page, or was merged into one (its PTE now "
    "maps the KSM page, read-only)",
    "thread-create": "pthread_create(): a new thread of the process (clone with CLONE_VM|CLONE_THREAD)",
    "thread-exit": "a thread ends (returns from its start routine); its task is gone at once",
}
KINDS = tuple(KIND_DOC)
KIND_CODE = {k: i for i, k in enumerate(KINDS)}
#: Kinds that put a new private copy of a page in place: each costs one page of memory.
COPY_KINDS = ("cow-copy", "zero-cow", "file-copy")
#: Every kind that copies: those and the whole-THP copy of the rule before Linux 5.8 (512 pages).
COPYING_KINDS = (*COPY_KINDS, "thp-copy")


@dataclass(frozen=True)
class Event:
    """One thing that happened: which process, what kind, where, which frames.

    `old_pfn`/`new_pfn` are 0 where no frame is involved and None where the backend cannot know
    (the kernel's tracepoints never name the frame a copy was made from). `time_ns` (trace clock)
    and `ip` (the user instruction that faulted) come from the kernel only; the model leaves them
    None."""

    seq: int
    pid: int
    kind: str
    address: int
    old_pfn: int | None
    new_pfn: int | None
    detail: str = ""
    time_ns: int | None = None
    ip: int | None = None

    def describe(self) -> str:
        frames = ""
        old, new = self.old_pfn, self.new_pfn
        if old or new:
            frames = f" pfn {old:#x} -> {new or 0:#x}" if old else f" pfn {new:#x}"
        extra = f" ({self.detail})" if self.detail else ""
        return f"#{self.seq} pid {self.pid} {self.kind} at {self.address:#x}{frames}{extra}"
