"""Faults over a range of private anonymous memory: the vectorised twin of handle_mm_fault.

The kernel faults page by page; the model makes the same decisions for a whole range at once with
numpy (touch, fill and populate of large buffers): `fault_range` (huge PMDs first, then one pass
over the PTE tables), and `fault_pages`, the page-by-page path it falls back to where a decision
needs the single-page code (guard markers, swap entries, pages in the swap cache, OOM).
tests/model/mm/test_fault_range.py checks that both make the same decisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from ..arch import PAGE_SHIFT, PAGE_SIZE, PTE_DIRTY, PTE_PRESENT, PTE_RW, PTE_SPECIAL, PTE_USER, PTE_YOUNG
from .huge_memory import huge_fault_range, large_folio_reuse_mask, vma_thp_enabled
from .memory import NONPRESENT_ENTRY, ZERO_PTE, alloc_anon_pages, handle_mm_fault, rss_add
from .page_alloc import PG_ANON, PG_ANON_EXCLUSIVE, PG_COMPOUND, PG_KSM, PG_SWAPCACHE, ZERO_PFN, OutOfMemory
from .pgtable import Span

if TYPE_CHECKING:
    from ..machine import Machine
    from .vma import MM, VMA

_RW_NEW = PTE_PRESENT | PTE_USER | PTE_RW | PTE_YOUNG | PTE_DIRTY


def fault_range(m: Machine, pid: int, mm: MM, vma: VMA, start: int, end: int, write: bool) -> None:
    """Make every page of [start, end) in a private anon VMA accessible, in one vectorised pass
    (2 MiB blocks a huge PMD can serve first)."""
    if mm.pgd.pmds or vma_thp_enabled(m, vma):
        huge_fault_range(m, pid, mm, vma, start, end, write,
                         lambda lo, hi: fault_range_ptes(m, pid, mm, vma, lo, hi, write))
    else:
        fault_range_ptes(m, pid, mm, vma, start, end, write)


class NeedFaultPages(Exception):
    """Internal: a page of the range needs a decision only the page-by-page path makes."""


def fault_range_ptes(m: Machine, pid: int, mm: MM, vma: VMA, start: int, end: int, write: bool) -> None:
    """fault_range at the PTE level; page by page where a non-present entry or a page in the swap
    cache needs the single-page path."""
    span = mm.pgd.span(start, end, alloc=True)
    if np.any(span.ptes & NONPRESENT_ENTRY):
        fault_pages(m, pid, mm, vma, start, end, write)
        return
    try:
        if write:
            _write_span(m, pid, mm, vma, span)
        else:
            _read_span(m, pid, span)
    except (OutOfMemory, NeedFaultPages):
        fault_pages(m, pid, mm, vma, start, end, write)


def fault_pages(m: Machine, pid: int, mm: MM, vma: VMA, start: int, end: int, write: bool) -> None:
    """fault_range one page at a time: what one access to each page does (MMU, else a fault)."""
    for va in range(start, end, PAGE_SIZE):
        if mm.pgd.mmu_access(va, write) < 0:
            handle_mm_fault(m, pid, mm, vma, va, write)


def _read_span(m: Machine, pid: int, span: Span) -> None:
    """do_anonymous_page's read decision for every empty PTE of the span; the rest become young."""
    ptes = span.ptes
    none = np.flatnonzero(ptes == 0)
    if len(none):
        ptes[none] = ZERO_PTE
        m.count_faults(pid, len(none))
        m.events.add_bulk(pid, "zero-page-map", span.addresses(none), np.zeros(len(none)),
                          np.full(len(none), ZERO_PFN))
        m.stat["zero_page_map"] += len(none)
    ptes |= np.where(ptes & PTE_PRESENT, PTE_YOUNG, 0)
    span.store(ptes)


class WriteFaults(NamedTuple):
    """Span positions by write decision, and the frames behind the read-only present ones."""

    none: np.ndarray        # no PTE: do_anonymous_page (zero-fill)
    zero: np.ndarray        # the zero page: wp_page_copy of a zeroed frame (zero-cow)
    reuse: np.ndarray       # an anon page nobody else holds: wp_page_reuse (cow-reuse)
    copy: np.ndarray        # anything else read-only: wp_page_copy (cow-copy)
    reuse_pfns: np.ndarray
    copy_pfns: np.ndarray


def _classify_write(m: Machine, mm: MM, span: Span, present: np.ndarray, writable: np.ndarray) -> WriteFaults:
    """do_anonymous_page / do_wp_page's choice for every PTE a write must fault."""
    ptes = span.ptes
    none = np.flatnonzero(ptes == 0)
    zero = np.flatnonzero(present & ((ptes & PTE_SPECIAL) != 0))
    wp = np.flatnonzero(present & ~writable & ((ptes & PTE_SPECIAL) == 0))
    pfns = ptes[wp] >> PAGE_SHIFT
    fl = m.phys.flags[pfns]
    # wp_can_reuse_anon_folio: a KSM page is never reused; THP subpages decide per folio
    reuse = ((fl & (PG_ANON | PG_KSM)) == PG_ANON) & \
        (((fl & PG_ANON_EXCLUSIVE) != 0) | (m.phys.refcount[pfns] == 1))
    special = fl & (PG_COMPOUND | PG_KSM | PG_SWAPCACHE)
    if special.any():
        if np.any(special & PG_SWAPCACHE):
            raise NeedFaultPages()
        m.stat["cow_ksm"] += int(np.count_nonzero(special & PG_KSM))
        reuse &= (special & PG_COMPOUND) == 0
        reuse |= large_folio_reuse_mask(m, mm, span.addresses(wp), pfns, fl)
    return WriteFaults(none, zero, wp[reuse], wp[~reuse], pfns[reuse], pfns[~reuse])


def _write_span(m: Machine, pid: int, mm: MM, vma: VMA, span: Span) -> None:
    """The write decisions of do_anonymous_page / do_wp_page for a whole span at once."""
    ptes = span.ptes
    present = (ptes & PTE_PRESENT) != 0
    writable = present & ((ptes & PTE_RW) != 0)
    if writable.all():
        span.store(ptes | (PTE_DIRTY | PTE_YOUNG))
        return
    w = _classify_write(m, mm, span, present, writable)
    new = alloc_anon_pages(m, mm, vma, len(w.none) + len(w.zero) + len(w.copy))
    m.count_faults(pid, len(new) + len(w.reuse))
    ptes = ptes | np.where(writable, PTE_DIRTY | PTE_YOUNG, 0)
    if len(w.reuse):
        m.phys.flags[w.reuse_pfns] |= PG_ANON_EXCLUSIVE
        ptes[w.reuse] |= PTE_RW | PTE_DIRTY | PTE_YOUNG
        m.events.add_bulk(pid, "cow-reuse", span.addresses(w.reuse), w.reuse_pfns, w.reuse_pfns)
        m.stat["cow_reuse"] += len(w.reuse)
    nz, nc = len(w.none), len(w.none) + len(w.zero)
    _map_new_span(m, pid, span, ptes, w.none, new[:nz], np.zeros(nz, dtype=np.int64), "zero-fill")
    _map_new_span(m, pid, span, ptes, w.zero, new[nz:nc], np.full(nc - nz, ZERO_PFN), "zero-cow")
    if len(w.copy):
        m.phys.copy(new[nc:], w.copy_pfns)
        rss_add(m, mm, w.copy_pfns, -1)
        m.phys.unmap(w.copy_pfns)
    _map_new_span(m, pid, span, ptes, w.copy, new[nc:], w.copy_pfns, "cow-copy")
    span.store(ptes)


def _map_new_span(m: Machine, pid: int, span: Span, ptes: np.ndarray, idx: np.ndarray, new: np.ndarray,
                  old: np.ndarray, kind: str) -> None:
    """Point the PTEs at span positions idx to their new frames (one `kind` event per page)."""
    if not len(idx):
        return
    ptes[idx] = (new << PAGE_SHIFT) | _RW_NEW
    m.events.add_bulk(pid, kind, span.addresses(idx), old, new)
    m.stat[kind.replace("-", "_")] += len(idx)
