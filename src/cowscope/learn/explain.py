"""What an access did to its page, why, and which kernel path took it: decided from /proc facts.

`outcome` and `reason` read only what both backends show (pagemap, kpagecount, kpageflags), so
the kernel confirms them; `kernel_path` names the model's decision from its event log.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .look import LookError, PageLook

#: Outcomes of one access, in the order the choices are offered.
OUTCOMES = ("copy", "reuse", "zero-fill", "zero-page", "page-cache", "none", "segv")
OUTCOME_TEXT = {
    "copy": "a new page with a copy of the old contents",
    "reuse": "no copy: the same page is made writable again",
    "zero-fill": "a new page full of zeros (nothing to copy)",
    "zero-page": "the shared zero page, mapped read-only (no memory used)",
    "page-cache": "the page-cache page itself is mapped (nothing copied)",
    "none": "no page fault: nothing changes",
    "segv": "SIGSEGV: the process is killed",
}
#: Why: the page's state before the access, in the order the choices are offered.
REASONS = {
    "untouched": "the page was never touched: nothing was mapped there",
    "zero": "it mapped the shared zero page (it had only been read)",
    "shared": "another process mapped the same page (map count 2 or more)",
    "once": "only this process mapped it, but it was still write-protected from the fork",
    "own": "it was already this process's own, writable page",
    "file": "it is a page-cache page (a file, or shared memory)",
    "unmapped": "this process had no mapping there",
}
#: Model event kind -> the kernel path that emits it (mm/memory.c names).
PATHS = {
    "zero-page-map": "do_anonymous_page: map the zero page",
    "zero-fill": "do_anonymous_page: allocate a zeroed page",
    "cow-copy": "do_wp_page -> wp_page_copy",
    "cow-reuse": "do_wp_page -> wp_page_reuse",
    "zero-cow": "do_wp_page -> wp_page_copy (from the zero page: zero-filled)",
    "pagecache-map": "do_read_fault -> filemap_map_pages",
    "file-copy": "do_cow_fault: copy the page-cache page",
    "shared-write": "do_shared_fault / wp_page_shared: the page-cache page made writable",
    "shmem-alloc": "shmem_fault: a new shared-memory page",
    "segv": "find_vma fails or access denied -> SIGSEGV",
}


def outcome(before: PageLook, after: PageLook | None, write: bool, file_vma: bool) -> str:
    """The access's outcome from the page before and after it (after is None: SIGSEGV)."""
    if after is None:
        return "segv"
    if after.file:
        return "page-cache"
    if after.zero is None:
        raise LookError("telling the zero page from a shared page needs PFNs (root)")
    if after.zero:
        return "zero-page"
    if not write:
        return "none"
    if not before.present:
        return "copy" if file_vma else "zero-fill"
    if before.file:
        return "copy"
    if before.zero is None or before.pfn is None or after.pfn is None:
        raise LookError("telling a copy from a reuse needs PFNs (root)")
    if before.zero:
        return "zero-fill"
    if before.pfn != after.pfn:
        return "copy"
    return "none" if before.anon_exclusive else "reuse"


def reason(before: PageLook, file_vma: bool, segv: bool) -> str:
    """The key of REASONS that explains an access to a page in this state."""
    if segv:
        return "unmapped"
    if file_vma and (not before.present or before.file):
        return "file"
    if not before.present:
        return "untouched"
    if before.zero is None or (not before.excl and before.mapcount is None):
        raise LookError("the page's map count needs root")
    if before.zero:
        return "zero"
    if not before.excl:
        return "shared"
    if before.anon_exclusive is None:
        raise LookError("PG_anon_exclusive (kpageflags) needs root")
    return "own" if before.anon_exclusive else "once"


#: Short forms of REASONS, for choices.
REASON_SHORT = {
    "untouched": "never touched",
    "zero": "maps the zero page",
    "shared": "another process maps it too",
    "once": "mapped once, still write-protected",
    "own": "already its own writable page",
    "file": "a page-cache page",
    "unmapped": "no mapping there",
}


def one_line(out: str, why: str) -> str:
    """'a new page with a copy ..., because another process mapped ...' — the reveal's reason."""
    text = OUTCOME_TEXT[out]
    return f"{text[0].upper()}{text[1:]}, because {REASONS[why]}."


def kernel_path(events: Iterable[Any], pid: int) -> list[str]:
    """The kernel paths the model took for pid's events (fault decisions only)."""
    out = []
    for e in events:
        if e.pid != pid or e.kind not in PATHS:
            continue
        text = PATHS[e.kind]
        if e.detail and e.kind not in ("pagecache-map", "file-copy"):
            text += f" ({e.detail})"
        if text not in out:
            out.append(text)
    return out
