"""An agent process's /proc views, read while the agent waits for its next command."""

from __future__ import annotations

import numpy as np

from ..errors import ProcessGone
from ..observe import pagescan, procfs
from ..observe.records import MapsEntry, PagemapEntry, SmapsEntry, SmapsRollup, Status, pagemap_entries
from .ksm import parse_ksm_stat


class ProcessViews:
    """The views of `linux.process.Process` (a mixin over its pid and state)."""

    pid: int
    alive: bool  # provided by Process
    state: str

    def _check_observable(self) -> None:
        if not self.alive:
            raise ProcessGone.of_state(self.pid, self.state)

    def maps(self) -> list[MapsEntry]:
        """/proc/PID/maps."""
        self._check_observable()
        return procfs.read_maps(self.pid)

    def smaps(self) -> list[SmapsEntry]:
        """/proc/PID/smaps."""
        self._check_observable()
        return procfs.read_smaps(self.pid)

    def smaps_rollup(self) -> SmapsRollup:
        """/proc/PID/smaps_rollup."""
        self._check_observable()
        return procfs.read_smaps_rollup(self.pid)

    def status(self) -> Status:
        """/proc/PID/status (a zombie still has one)."""
        if self.state == "X":
            raise ProcessGone.of_state(self.pid, "X")
        return procfs.read_status(self.pid)

    def pagemap_raw(self, addr: int, npages: int) -> np.ndarray:
        """Raw /proc/PID/pagemap entries (uint64)."""
        self._check_observable()
        return procfs.read_pagemap(self.pid, addr, npages)

    def pagemap_scan(self, addr: int, npages: int) -> np.ndarray:
        """Runs of populated pages (PAGEMAP_SCAN), as page offsets from addr."""
        self._check_observable()
        return pagescan.scan_pagemap(self.pid, addr, npages)

    def pagemap_huge(self, addr: int, npages: int) -> np.ndarray:
        """Runs of the pages huge PMDs map (PAGEMAP_SCAN PAGE_IS_HUGE), as page offsets from addr."""
        self._check_observable()
        return pagescan.huge_runs(self.pid, addr, npages)

    def pagemap(self, addr: int, npages: int = 1) -> list[PagemapEntry]:
        """/proc/PID/pagemap entries as records."""
        return pagemap_entries(self.pagemap_raw(addr, npages))

    def proc(self, name: str) -> str:
        """The kernel's text of /proc/PID/NAME."""
        if name != "status":
            self._check_observable()
        elif self.state == "X":
            raise ProcessGone.of_state(self.pid, "X")
        return procfs.read_text(self.pid, name)

    def ksm_stat(self) -> dict[str, int | str]:
        """/proc/PID/ksm_stat."""
        self._check_observable()
        return parse_ksm_stat(procfs.read_text(self.pid, "ksm_stat"))

    def fault_counts(self) -> dict[str, int]:
        """minflt/majflt from /proc/PID/stat."""
        return procfs.read_fault_counts(self.pid)

    @property
    def libc_data(self) -> int:
        """Start of libc's rw data mapping (main_arena, mp_)."""
        return self._libc_rw()[0]

    @property
    def libc_data_size(self) -> int:
        """Size of libc's rw data mapping."""
        start, end = self._libc_rw()
        return end - start

    def _libc_rw(self) -> tuple[int, int]:
        for vma in self.maps():
            if "libc.so" in vma.path and vma.perms.startswith("rw"):
                return vma.start, vma.end
        raise LookupError(f"pid {self.pid}: no libc rw mapping")
