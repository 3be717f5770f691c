"""x86-64 facts the model needs: page size, 4-level table split, PTE bits, address-space layout."""

from ..observe.records import parse_size  # noqa: F401  (sizes like "2GiB": shared by both backends)

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = ~(PAGE_SIZE - 1)
PTRS_PER_TABLE = 512            # 9 bits per level: PGD/PUD/PMD/PTE
PMD_SHIFT = 21                  # one PTE table maps 2 MiB
PUD_SHIFT = 30                  # one PMD table maps 1 GiB
PGDIR_SHIFT = 39                # one PUD table maps 512 GiB
PMD_SIZE = 1 << PMD_SHIFT
HPAGE_PMD_NR = PMD_SIZE >> PAGE_SHIFT  # 512 subpages in a PMD-mapped THP

TASK_SIZE = 0x7FFFFFFFF000      # top of user space (47-bit, 4-level paging)
MASK64 = (1 << 64) - 1  # an unsigned long: addresses and sizes as C passes them
STACK_TOP = TASK_SIZE
MMAP_BASE = TASK_SIZE - (128 << 20) - PAGE_SIZE  # mmap_base with ASLR off: below a 128 MiB gap
ELF_ET_DYN_BASE = 0x555555554000  # where a PIE executable lands with ASLR off
STACK_GUARD_GAP = 256 * PAGE_SIZE  # stack_guard_gap: 1 MiB kept free below a growing stack
STACK_RLIMIT = 8 << 20          # RLIMIT_STACK default: the stack may grow to 8 MiB

# PTE bits (hardware bits as on x86-64, plus the kernel's software bits we need)
PTE_PRESENT = 1 << 0
PTE_RW = 1 << 1
PTE_USER = 1 << 2               # cleared for PROT_NONE (the kernel's _PAGE_PROTNONE trick)
PTE_YOUNG = 1 << 5              # accessed
PTE_DIRTY = 1 << 6
PTE_SPECIAL = 1 << 9            # no struct page behind it: the shared zero page
PTE_MARKER_GUARD = 1 << 10      # non-present PTE marker installed by MADV_GUARD_INSTALL
PTE_PSE = 1 << 7                # in a PMD entry: a 2 MiB leaf (huge page), not a PTE table
PTE_SWP = 1 << 11               # non-present swap entry: the swap offset sits where the pfn would
PTE_SWP_EXCLUSIVE = 1 << 3      # in a swap entry: the page was PageAnonExclusive when swapped out


def page_align(n: int) -> int:
    """Round n up to a page boundary (PAGE_ALIGN)."""
    return (n + PAGE_SIZE - 1) & PAGE_MASK
