"""What the comparison looks at and what it never compares, each with its reason.

`SMAPS_COMPARED` are the smaps fields compared per VMA. `EXCLUSIONS` (never compared) and
`NOT_COVERED` (measured on the kernel, not driven by the suite) are printed by `cowscope verify` and
`cowscope run --on both`; `verify.compare` tags each excluded difference with its reason from here.
"""

from __future__ import annotations

#: smaps fields compared per VMA (kB). Referenced and LazyFree are excluded, see EXCLUSIONS.
SMAPS_COMPARED = ("Size", "Rss", "Pss", "Pss_Dirty", "Shared_Clean", "Shared_Dirty", "Private_Clean",
                  "Private_Dirty", "Anonymous", "LazyFree", "AnonHugePages", "Swap", "SwapPss", "Locked")

#: What is never compared, and why (printed by `cowscope verify` and `run --on both`).
EXCLUSIONS = {
    "status / smaps_rollup / fault counts": "whole-process figures include the program image, libc "
    "text and the agent's own stack and buffers, which differ between the model's image and the "
    "agent binary; shown side by side, not compared (measured over the suite: minor-fault deltas "
    "between checkpoints agree in 93 of 138 intervals, the others differ by 1-5 faults of the "
    "agent's own code and stack)",
    "smaps Referenced": "young bits: the kernel clears them at fork in the child and reclaim ages "
    "them; informational only (kernel-conformance.md conventions)",
    "untouched file/shmem pages": "read fault-around maps the cached pages of a 16-page window that "
    "depends on where the VMA lies within its page table. Regions are placed alike on both backends "
    "(on a 2 MiB boundary between guard pages, also when mremap moves one; files starting in the "
    "page cache) or where the scenario put them, so every page of them is compared; only a region "
    "the scenario placed without guards that mremap then moved lies where each kernel put it: "
    "there only pages a process accessed are compared, and while such a difference exists, a file "
    "page's map count is not compared (neither the suite nor the random differential has one)",
    "heap VMA and its smaps": "the model lays the program out without ASLR, so its [heap] VMA "
    "merges with the program's .bss; the kernel randomizes the break (randomize_va_space=2) and "
    "the agent's .bss differs in size: heap pages are compared, the heap's VMA range and smaps are not",
    "smaps of a VMA reaching beyond its region": "a region whose edge pages became PROT_NONE merges "
    "with its guard pages and then possibly with a neighbouring mapping, whose placement differs "
    "between backends: such a VMA's range is compared up to the guard pages, its smaps are not "
    "the region's own (the region's pages still are compared). A region the scenario placed "
    "without guards that mremap moved: where it landed decides what it merged with, so its VMA "
    "ranges are compared clipped to "
    "the region; the anon_vma such a merge gave it decides which of its pieces re-merge later "
    "and whether an mprotect keeps VM_ACCOUNT ('ac'), so its VMA boundaries and 'ac' are not "
    "compared (its pages still are)",
    "page replaced after a drop": "after a process drops pages of a region (DONTNEED, munmap, "
    "mremap, free, brk shrink) and faults them again, the page allocator may hand back the very "
    "same frame; whether a page was replaced since the last checkpoint is then not comparable "
    "(copy vs reuse without a drop still is)",
    "VMAs around malloc's mmap'd chunks": "a block malloc served by mmap has no guard pages: the "
    "VMAs around it depend on where each backend placed it among the other mappings; its pages are "
    "compared, the VMA layout and smaps of regions named P@n are not",
    "mappings outside the scenario's regions": "the program image, libc, the loader, their "
    "anonymous data and the stack are the model's own image of a program on one side and the agent "
    "binary, with its own code, stack and buffers, on the other; the PROT_NONE guard pages around "
    "each region are the tracer's: only the pages of the regions a scenario maps (mmap, malloc's "
    "mmap'd chunks, the stacks of the threads it makes and glibc's arena heaps) and of the brk "
    "heap are compared",
    "pids and addresses": "they differ between backends; compared as process history names and "
    "region-relative offsets",
    "who writes first after a threaded fork": "in a process with threads, glibc's fork handlers "
    "write every arena's first page (its lock) in the parent and in the child, and a thread that "
    "forks returns through its two top stack pages on both sides; the kernel runs parent and child "
    "at once, so which side copies such a page and which then reuses it (and keeps the old frame) "
    "is the scheduler's choice (measured on this machine: the child first in 3 of 10 forks from a "
    "thread); whether those pages were replaced is not compared (that both wrote them is)",
}


#: Event sequences (or kinds) the event comparison leaves out, and why (printed with EXCLUSIONS).
EVENT_EXCLUSIONS = {
    "stack-grow": "the kernel's tracepoints show a stack growth as the zero-fill (or zero-page map) "
    "it is followed by; the model's extra stack-grow event is dropped before comparing",
    "events outside the scenario's regions": "the agent's own code, stack, static buffers and libc "
    "fault too (and differ from the model's image): only addresses inside regions and the brk heap "
    "are compared, as for page states",
    "populated through get_user_pages": "MADV_POPULATE_READ/WRITE, mlock and MAP_POPULATE fault pages "
    "in with get_user_pages, which raises no page-fault exception: the kernel's tracepoints show only "
    "the allocations, without addresses; a region's events in such an interval are not compared. "
    "MADV_UNMERGEABLE likewise: break_ksm copies each KSM page back by calling the fault handler from "
    "inside the system call (measured: K05's four copies show no fault tracepoint)",
    "page-cache maps in file and shared regions": "read fault-around maps 0-15 cached neighbours "
    "without a fault, so which reads fault differs with the page cache's state; pagecache-map events "
    "there are dropped from both sides (copies, shared writes and shmem allocations still compared)",
    "thp-zero-map": "the huge zero page and the 4 KiB zero page are mapped by the same read fault with "
    "nothing after it in the tracepoints: both count as zero-page-map",
    "swap-out": "reclaim (MADV_PAGEOUT, kswapd) writes pages to swap inside a system call or a kernel "
    "thread, not in a fault: the tracepoints show RSS moving from anon to swap entries, without "
    "addresses; the model's swap-out events are dropped (swap-in is a fault and is compared)",
    "thp-split": "a PMD split raises no tracepoint of its own; the model's thp-split events are dropped",
    "ksm-merge": "ksmd, a kernel thread, merges pages in its scan, not in a fault of the process: its "
    "tracepoints (ksm:ksm_merge_one_page, ksm_merge_with_ksm_page) name a PFN and an mm pointer, not "
    "a process and an address; the model's ksm-merge events are dropped (a write to a KSM page is a "
    "fault, its copy compared; the merged page states are compared at every checkpoint)",
    "kinds without an address": "fork, exec, exit, checkpoint and the signals are compared by the op "
    "log (outcomes) already; only page events are compared here",
    "who writes first after a threaded fork": "the arena pages and the forking thread's stack pages "
    "both sides of a fork write (see EXCLUSIONS): a sequence that differs only in which side's "
    "write copied and which reused such a page is not compared",
}

#: Measured behaviours the suite does not run, and why (printed by `cowscope verify`).
NOT_COVERED = {
    "C36 DMA-pinned page copied eagerly at fork": "needs io_uring buffer registration (a long-term "
    "pin); the shared API has no pinning call",
    "THP modes always/never, MADV_COLLAPSE, khugepaged": "the machine's THP mode is a global "
    "setting other processes depend on (madvise here); the model's always/never and the older "
    "kernels' rules (Machine(kernel=...)) are unit-tested only; collapse is not modelled",
    "KSM of THPs, max_page_sharing": "the kernel splits a THP in a MADV_MERGEABLE area and merges its "
    "subpages, at most 256 mappings per KSM page (measured: 513 identical pages made S256 chains); "
    "the model leaves PMD-mapped THPs unmerged and has no sharing limit",
    "userfaultfd-wp": "not driven by the shared API; see kernel-facts.md section 9",
    "swap under memory pressure": "the kernel's reclaim order (LRU lists, swappiness, readahead) "
    "cannot be driven without pressure on a shared machine; the swap cases use MADV_PAGEOUT/COLD, "
    "and the model's pressure reclaim (an LRU approximation) is unit-tested",
}
