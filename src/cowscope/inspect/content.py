"""Copied but unchanged: a worker's copied pages compared byte for byte with its parent's page at
the same address.

A page copied on write whose bytes still equal the parent's was copied for nothing the program
needed: the signature of "copy on read" (CPython's reference counts and GC headers written back
unchanged, or changed and changed back), which gc.freeze(), immortal objects or KSM address. The
comparison reads both pages through /proc/PID/mem (observe.procmem: never process_vm_readv, whose
pins would unshare the parent's shared pages); at most `limit` pages
a process per sample, picked at random (seeded by pid and sample) when it copied more, and the
count scaled up: the figures say how many pages were compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..observe.procmem import read_pieces
from ..observe.records import PAGE_SIZE
from . import classify as cl

#: Pages compared per process and sample, at most (2 x 1 MiB read).
COMPARE_PAGES = 256


@dataclass
class Identical:
    """What the comparison found for one worker."""

    compared: int            # pages compared
    identical: int           # of those, byte-identical to the parent's
    copied: int              # the worker's copied pages (what the sample stands for)
    per_mapping: np.ndarray  # identical pages among those compared, per mapping
    same_pages: np.ndarray   # their page indexes

    def scaled_kb(self, pages: int | float) -> int:
        """Pages found identical among those compared, as kB of all copied pages."""
        if not self.compared:
            return 0
        return int(round(pages * self.copied / self.compared)) * (PAGE_SIZE // 1024)


def page_addresses(pp: cl.ProcPages, idx: np.ndarray) -> np.ndarray:
    """The virtual address of each page index of `pp`."""
    mi = pp.mapping_index()[idx]
    starts = np.array([v.start for v in pp.vmas], dtype=np.int64)
    return (starts[mi] + (idx - pp.offsets[mi]) * PAGE_SIZE).astype(np.uint64)


def compare_copied(pid: int, ppid: int, pp: cl.ProcPages, codes: np.ndarray, parent_real: np.ndarray,
                   limit: int, seed: int) -> Identical:
    """Compare up to `limit` copied pages (whose parent page is resident) of `pid` with `ppid`'s.
    ProcessGone / PermissionError from the reads pass through."""
    candidates = np.flatnonzero((codes == cl.COPIED) & parent_real)
    idx = candidates
    if len(idx) > limit:
        idx = np.sort(np.random.default_rng(seed).choice(candidates, limit, replace=False))
    if len(idx) == 0:
        return Identical(0, 0, len(candidates), np.zeros(len(pp.vmas), dtype=np.int64), idx)
    addrs = page_addresses(pp, idx)
    mine, ok_mine = read_pieces(pid, addrs, PAGE_SIZE)
    theirs, ok_theirs = read_pieces(ppid, addrs, PAGE_SIZE)
    ok = ok_mine & ok_theirs
    same = ok & np.all(mine.view(np.uint64) == theirs.view(np.uint64), axis=1)
    per_mapping = np.bincount(pp.mapping_index()[idx[same]], minlength=len(pp.vmas))
    return Identical(int(ok.sum()), int(same.sum()), len(candidates), per_mapping, idx[same])
