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


def _page_word(c: str, proc: str) -> str:
    return {".": "nothing mapped", "0": "the zero page", "#": f"only {proc} maps it", "f": "page cache",
            "+": "shared by 10 or more"}.get(c, f"shared by {c}")


def strip_reason(strip: str, proc: str) -> str:
    """'Page 0: shared by 2; page 1: only P maps it.'"""
    if len(strip) > 8:
        counts = {c: strip.count(c) for c in dict.fromkeys(strip)}
        return "Pages: " + ", ".join(f"{n} × {_page_word(c, proc)}" for c, n in counts.items()) + "."
    return "; ".join(f"page {i}: {_page_word(c, proc)}" for i, c in enumerate(strip)).capitalize() + "."


def size_reason(kind: str, strip: str, proc: str, kb: int) -> str:
    """How Rss, Pss or USS follows from the strip of the mapping."""
    resident = [c for c in strip if c not in ".0"]
    own = strip.count("#")
    if kind == "rss":
        return (f"Rss counts the pages present in {proc}'s page table, the zero page excepted: "
                f"{len(resident)} × 4 kB = {kb} kB.")
    if kind == "uss":
        return f"USS counts the pages only {proc} maps ('#'): {own} × 4 kB = {kb} kB."
    shared = {c: strip.count(c) for c in "23456789" if c in strip}
    terms = [f"{own} × 4"] if own else []
    terms += [f"{n} × 4/{c}" for c, n in shared.items()]
    exact = own * 4 + sum(n * 4 / int(c) for c, n in shared.items())
    text = f"Pss shares each page among the processes that map it: {' + '.join(terms) or '0'} = {exact:.2f} kB"
    if "f" in strip or "+" in strip:
        return text + f", plus the page-cache pages' shares; smaps says {kb} kB."
    # the kernel's fixed point: each page's share rounded down to 1/4096 byte, then whole bytes, then kB
    nbytes = (own * (4096 << 12) + sum(n * ((4096 << 12) // int(c)) for c, n in shared.items())) >> 12
    if abs(exact - kb) < 1e-9:
        return text + "."
    return (f"{text}; the kernel rounds each page's share down and prints whole kB "
            f"({nbytes} bytes): {kb} kB.")


def faults_reason(strip: str, write: bool, proc: str, n: int) -> str:
    """Why the access took n faults, from the strip before it."""
    if not write:
        return f"A load faults only where nothing is mapped ('.'): {n}. Before: {strip}."
    return (f"A store faults on every page that is not {proc}'s own writable page: not present, the zero "
            f"page, shared, or mapped once but still write-protected since a fork (a reuse is a fault "
            f"too): {n}. Before: {strip}.")


#: What a copy in each kind of range was (copies questions).
COPIED = {"[heap]": "malloc's bookkeeping in the heap: a freed chunk's links, the tcache's counts",
          "libc": "malloc's state in libc's data: main_arena's bins and top, mp_'s counters"}


def copies_reason(proc: str, where: dict[str, int]) -> str:
    if not where:
        return f"{proc} wrote no page it still shared: nothing was copied."
    parts = [f"{n} in {name}" + (f" ({COPIED[name]})" if name in COPIED else "") for name, n in where.items()]
    return f"{proc} wrote to pages it still shared, and each was copied: " + "; ".join(parts) + "."


def addr_reason(value: str, size: str) -> str:
    if value == "new":
        return f"No freed chunk fits a request of {size} bytes: it is carved from the top of the heap."
    return (f"{value}'s chunk, freed earlier, is handed out again: malloc reuses freed chunks of the same "
            f"size first (the tcache: last in, first out).")


def value_reason(value: str) -> str:
    if value == "0":
        return "A page nobody wrote reads as zeros (the zero page, or a fresh zero-filled page)."
    if value == "segv":
        return "There is no mapping there in this process: SIGSEGV."
    return ("A process sees the last letter written into the page as it maps it: a copy keeps what "
            "the page held when it was copied; a shared page shows every process's writes.")


FILE_REASON = ("read(2) reads the page cache: MAP_SHARED stores and write(2) land there; stores "
               "through MAP_PRIVATE go to the process's own copies and never reach the file.")
