"""Overcommit accounting (mm/util.c __vm_enough_memory, the VM_ACCOUNT rules of mm/mmap.c).

Every private writable mapping (VM_ACCOUNT), brk area and MAP_SHARED|MAP_ANONYMOUS object is
charged to Committed_AS when it is created or grows, and uncharged when it goes. Whether a charge
is allowed depends on vm.overcommit_memory:

- 0 (heuristic, the default): one request larger than RAM + swap fails (ENOMEM); any number of
  smaller ones succeed, whatever Committed_AS adds up to.
- 1 (always): every request succeeds.
- 2 (never): Committed_AS may not pass CommitLimit (overcommit_kbytes, or RAM * overcommit_ratio%
  + swap) less the admin reserve (the model's processes are not CAP_SYS_ADMIN) and a user reserve
  (total_vm / 32, at most user_reserve_kbytes).

Left out: hugetlb pages (the kernel subtracts them from the limit), MAP_NORESERVE (the shared API
has no flag for it), per-CPU counter batching (the kernel's Committed_AS is approximate).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..arch import PAGE_SIZE

OVERCOMMIT_GUESS, OVERCOMMIT_ALWAYS, OVERCOMMIT_NEVER = 0, 1, 2


@dataclass
class CommitAccount:
    """vm_committed_as and the sysctls that judge it; sizes in pages."""

    totalram: int
    swap: int = 0
    overcommit_memory: int = OVERCOMMIT_GUESS
    overcommit_ratio: int = 50
    overcommit_kbytes: int = 0
    committed: int = 0

    def __post_init__(self) -> None:
        if self.overcommit_memory not in (0, 1, 2):
            raise ValueError(f"overcommit_memory must be 0, 1 or 2, got {self.overcommit_memory!r}")
        kb = PAGE_SIZE >> 10
        free_kb = self.totalram * kb
        self.admin_reserve = min(free_kb // 32, 8192) // kb      # init_admin_reserve
        self.user_reserve = min(free_kb // 32, 128 << 10) // kb  # init_user_reserve

    def commit_limit(self) -> int:
        """CommitLimit in pages (vm_commit_limit)."""
        if self.overcommit_kbytes:
            return self.overcommit_kbytes // (PAGE_SIZE >> 10)
        return self.totalram * self.overcommit_ratio // 100 + self.swap

    def vm_enough_memory(self, pages: int, total_vm: int = 0) -> bool:
        """Charge pages if the policy allows them (the charge stays); False (nothing charged) if not."""
        if pages <= 0:
            return True
        self.committed += pages
        if self.overcommit_memory == OVERCOMMIT_ALWAYS:
            return True
        if self.overcommit_memory == OVERCOMMIT_GUESS:
            if pages <= self.totalram + self.swap:
                return True
        else:
            allowed = self.commit_limit() - self.admin_reserve - min(total_vm // 32, self.user_reserve)
            if self.committed < allowed:
                return True
        self.committed -= pages
        return False

    def unacct(self, pages: int) -> None:
        """Give a charge back (vm_unacct_memory)."""
        self.committed -= pages
        assert self.committed >= 0, "vm_unacct_memory: Committed_AS below zero"
