"""Program images and exec: map text, data, bss, heap, stack and libc into a fresh mm."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..arch import ELF_ET_DYN_BASE, PAGE_SHIFT, PAGE_SIZE, STACK_TOP
from ..mm.mmap import do_mmap, do_mprotect
from ..mm.readahead import FileRaState
from ..mm.vma import MM, VM_ACCOUNT, VM_GROWSDOWN, VM_MAYEXEC, VM_MAYREAD, VM_MAYWRITE, VM_READ, VM_WRITE, VMA
from .uaccess import access_range, store

if TYPE_CHECKING:
    from ..fs.file import File
    from ..machine import Machine

LIBC_PATH = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LD_PATH = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD segment: its protection and size in pages (file-backed unless bss)."""

    prot: str
    pages: int
    relro: bool = False  # mapped writable, then made read-only after relocation (PT_GNU_RELRO)


@dataclass(frozen=True)
class Image:
    """An executable: segment sizes in pages, and how much of its text runs at start-up."""

    path: str = "/usr/bin/app"
    text_pages: int = 16
    rodata_pages: int = 4
    data_pages: int = 2
    bss_pages: int = 2
    stack_pages: int = 33        # the initial [stack] VMA (132 KiB)
    hot_text_pages: int = 4      # text pages executed at start-up and on return from fork()
    libc: bool = True            # map ld.so and libc.so.6 (where malloc's state lives)

    def segments(self) -> list[Segment]:
        return [Segment("r", 1), Segment("rx", self.text_pages), Segment("r", self.rodata_pages),
                Segment("rw", self.data_pages)]


#: Shared libraries as (path, segments, bss pages, hot text pages): sizes of Debian 12's files.
LIBC = (LIBC_PATH, [Segment("r", 38), Segment("rx", 341), Segment("r", 84), Segment("r", 4, True),
                    Segment("rw", 2)], 13, 8)
LD_SO = (LD_PATH, [Segment("r", 1), Segment("rx", 37), Segment("r", 10), Segment("r", 2, True),
                   Segment("rw", 1)], 1, 4)
#: libc's writable data (.data then .bss) in bytes: malloc's main_arena and mp_ live here
LIBC_DATA_SIZE = (LIBC[1][-1].pages + LIBC[2]) * PAGE_SIZE
TLS_PAGES = 3


def image_file(m: Machine, path: str, segments: list[Segment]) -> File:
    """The file behind an image (created once, so every process shares its page cache)."""
    f = m.files.get(path)
    if f is None:
        npages = sum(s.pages for s in segments)
        f = m.create_file(path, size=npages * PAGE_SIZE, cached=False)
        i = 0
        for seg in segments:  # code and constants get a pattern; initialised data starts zeroed
            for _ in range(seg.pages):
                f.disk[i] = 0 if "w" in seg.prot else (i * 37 + len(path)) & 0xFF or 1
                i += 1
    return f


def map_segments(m: Machine, pid: int, mm: MM, f: File, segments: list[Segment], base: int | None,
                 bss_pages: int) -> tuple[int, list[tuple[Segment, int]]]:
    """Map segments of f contiguously (at base, or top-down) plus anonymous bss after them."""
    total = sum(s.pages for s in segments) + bss_pages
    if base is None:
        base = mm.get_unmapped_area(total * PAGE_SIZE)
    placed = []
    va, pgoff = base, 0
    ra = FileRaState(0)  # one open file for all segments; read page by page (no readahead modelled)
    for seg in segments:
        prot = "rw" if seg.relro else seg.prot
        do_mmap(m, pid, mm, seg.pages * PAGE_SIZE, prot, False, f, pgoff << PAGE_SHIFT, va, True, ra=ra)
        if seg.relro:
            do_mprotect(m, mm, va, seg.pages * PAGE_SIZE, seg.prot)
        placed.append((seg, va))
        va += seg.pages * PAGE_SIZE
        pgoff += seg.pages
    if bss_pages:
        do_mmap(m, pid, mm, bss_pages * PAGE_SIZE, "rw", False, None, 0, va, True)
        va += bss_pages * PAGE_SIZE
    return va, placed


def exec_mmap(m: Machine, pid: int, image: Image) -> tuple[MM, dict[str, int]]:
    """Build the new mm for image (begin_new_exec + load_elf_binary); returns mm and addresses."""
    mm = MM()
    exe = image_file(m, image.path, image.segments())
    mm.exe = exe
    end, placed = map_segments(m, pid, mm, exe, image.segments(), ELF_ET_DYN_BASE, image.bss_pages)
    text = placed[1][1]
    mm.start_code, mm.end_code = text, text + image.text_pages * PAGE_SIZE
    mm.start_brk = mm.brk = end
    stack_lo = STACK_TOP - image.stack_pages * PAGE_SIZE
    flags = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_GROWSDOWN | VM_ACCOUNT
    m.acct.committed += image.stack_pages  # insert_vm_struct charges the VM_ACCOUNT stack
    mm.insert(VMA(stack_lo, STACK_TOP, flags, name="[stack]"))
    mm.start_stack = STACK_TOP - PAGE_SIZE
    addrs = {"text": text, "data": placed[3][1], "stack_top": STACK_TOP, "libc_data": 0, "tls": 0,
             "hot_text": image.hot_text_pages}
    if image.libc:
        for path, segs, bss, hot in (LD_SO, LIBC):
            f = image_file(m, path, segs)
            _, lib = map_segments(m, pid, mm, f, segs, None, bss)
            addrs[f"{path}:text"] = lib[1][1]
            addrs[f"{path}:hot"] = hot
            addrs[f"{path}:data"] = lib[-1][1]
        addrs["libc_data"] = addrs[f"{LIBC_PATH}:data"]
        addrs["tls"] = do_mmap(m, pid, mm, TLS_PAGES * PAGE_SIZE, "rw", False, None, 0, None, False)
    mm.hiwater_vm = mm.total_pages()
    return mm, addrs


def startup(m: Machine, pid: int, mm: MM, addrs: dict[str, int]) -> None:
    """What ld.so and the program do first: run hot text, relocate data, set up stack and TLS."""
    run_text(m, pid, mm, addrs)
    access_range(m, pid, mm, addrs["data"], PAGE_SIZE, True)  # relocations: CoW of .data
    if addrs["libc_data"]:
        access_range(m, pid, mm, addrs[f"{LD_PATH}:data"], PAGE_SIZE, True)
        access_range(m, pid, mm, addrs["libc_data"], PAGE_SIZE, True)
        for addr, data in m.allocator_class().static_libc_data(addrs["libc_data"]):
            store(m, pid, mm, addr, data)  # libc's initialised malloc data, relocated by ld.so
        access_range(m, pid, mm, addrs["tls"], PAGE_SIZE, True)
    access_range(m, pid, mm, STACK_TOP - 2 * PAGE_SIZE, 2 * PAGE_SIZE, True)  # argv, envp, auxv


def run_text(m: Machine, pid: int, mm: MM, addrs: dict[str, int]) -> None:
    """Instruction fetches: read the hot text pages of the program and its libraries."""
    access_range(m, pid, mm, addrs["text"], addrs["hot_text"] * PAGE_SIZE, False)
    for path in (LD_PATH, LIBC_PATH):
        if f"{path}:text" in addrs:
            access_range(m, pid, mm, addrs[f"{path}:text"], addrs[f"{path}:hot"] * PAGE_SIZE, False)
