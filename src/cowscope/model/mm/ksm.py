"""KSM: merging identical anonymous pages of MADV_MERGEABLE areas into write-protected KSM pages
(mm/ksm.c).

`ksm_scan` stands for ksmd running until nothing changes (two full scans or more with no write in
between): it walks the registered mms in the order they entered KSM, their mergeable VMAs in
address order, and every present anon page in them. A page whose contents match a KSM page is
merged into it (its PTE now maps the KSM page, read-only); a page matching an earlier page of the
scan (the unstable tree) becomes a KSM page in place, and the earlier one is merged into it, as
try_to_merge_two_pages does. A write to a KSM page always copies it (cow_ksm); MADV_UNMERGEABLE
copies every KSM page of the range back (break_ksm: clean copies). Counters and /proc/PID/ksm_stat
are computed at each scan, as ksmd updates them only while it scans.

Not modelled: THPs (the kernel splits a THP to merge its subpages; the model leaves PMD-mapped
folios alone), use_zero_pages (off by default), KSM of pages in the swap cache, max_page_sharing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..arch import PAGE_SHIFT, PAGE_SIZE, PTE_DIRTY, PTE_PRESENT, PTE_RW, PTE_SPECIAL
from .page_alloc import PG_ANON, PG_ANON_EXCLUSIVE, PG_COMPOUND, PG_DIRTY, PG_KSM, PG_REFERENCED, PG_SWAPCACHE
from .vma import MM, VM_MERGEABLE, VM_SHARED, VMA

if TYPE_CHECKING:
    from ..machine import Machine

RMAP_ITEM_SIZE = 64          # sizeof(struct ksm_rmap_item) on x86-64: ksm_process_profit's unit
_NOT_EXCL = np.uint16(~PG_ANON_EXCLUSIVE & 0xFFFF)


@dataclass
class KsmStat:
    """/proc/PID/ksm_stat of one mm, as of the last scan (mergeable is live)."""

    rmap_items: int = 0
    merging_pages: int = 0


@dataclass
class KsmState:
    """ksmd's state: the mms in scan order, the counters of /sys/kernel/mm/ksm."""

    mms: list[MM] = field(default_factory=list)
    stats: dict[int, KsmStat] = field(default_factory=dict)   # id(mm) -> its stat
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(
        ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "full_scans",
         "pages_scanned"), 0))

    def enter(self, mm: MM) -> None:
        """__ksm_enter: the mm joins the scan list (at its end)."""
        if all(x is not mm for x in self.mms):
            self.mms.append(mm)


# -- madvise -------------------------------------------------------------------------------------

def ksm_madvise(m: Machine, pid: int, mm: MM, vma: VMA, start: int, end: int, merge: bool) -> int:
    """The vm_flags MADV_MERGEABLE / MADV_UNMERGEABLE give this VMA part (unchanged flags when
    the advice does not apply: shared mappings are never merged)."""
    flags = vma.vm_flags
    if merge:
        if flags & (VM_MERGEABLE | VM_SHARED):
            return flags
        m.ksm.enter(mm)
        return flags | VM_MERGEABLE
    if not flags & VM_MERGEABLE:
        return flags
    unmerge_ksm_pages(m, pid, mm, start, end)
    return flags & ~VM_MERGEABLE


def unmerge_ksm_pages(m: Machine, pid: int, mm: MM, start: int, end: int) -> None:
    """break_ksm for every KSM page mapped in [start, end): a private copy, clean (FAULT_FLAG_UNSHARE)."""
    from .memory import alloc_anon_page, mk_pte

    phys = m.phys
    for t, lo, hi, va in mm.pgd.blocks(start, end):
        ptes = t[lo:hi]
        present = (ptes & PTE_PRESENT) != 0
        pfns = np.where(present, ptes >> PAGE_SHIFT, 0)
        for i in np.flatnonzero(present & ((phys.flags[pfns] & PG_KSM) != 0)).tolist():
            old = int(pfns[i])
            addr = va + (i << PAGE_SHIFT)
            vma = mm.find_vma(addr)
            assert vma is not None, f"unmerge_ksm_pages: no VMA at {addr:#x}"
            new = alloc_anon_page(m, pid, mm, vma, copy_from=old)
            t[lo + i] = mk_pte(new, vma, True) & ~PTE_DIRTY
            mm.rss_anon -= 1
            phys.unmap(np.array([old]))
            m.count_fault(pid)
            m.stat["cow_ksm"] += 1
            m.events.add(pid, "cow-copy", addr, old, new, "MADV_UNMERGEABLE: break_ksm copies the KSM page")


# -- the scan --------------------------------------------------------------------------------------

@dataclass
class _Item:
    """One rmap item: a present anon page of a mergeable VMA, where it is mapped."""

    pid: int
    mm: MM
    table: np.ndarray
    index: int
    va: int

    @property
    def pfn(self) -> int:
        return int(self.table[self.index]) >> PAGE_SHIFT


def ksm_scan(m: Machine) -> None:
    """Run ksmd to completion: merge every page whose contents another scanned page or KSM page
    has; then recompute the counters and every mm's ksm_stat."""
    ks = m.ksm
    ks.mms = [mm for mm in ks.mms if _alive(m, mm)]
    stable: dict[bytes | int, int] = {}       # contents -> KSM pfn
    unstable: dict[bytes | int, _Item] = {}   # contents -> first item seen
    items: list[_Item] = []
    for mm in ks.mms:
        pid = next(p.pid for p in m.processes.values() if p.mm is mm and p.alive)
        for item in _rmap_items(m, pid, mm):
            items.append(item)
            _cmp_and_merge(m, item, stable, unstable)
    _account(m, items, len(unstable))


def _alive(m: Machine, mm: MM) -> bool:
    return any(p.mm is mm and p.alive for p in m.processes.values())


def _rmap_items(m: Machine, pid: int, mm: MM) -> list[_Item]:
    """The anon pages KSM looks at in this mm: present, not the zero page, not a THP, not in the
    swap cache, in a mergeable VMA; address order."""
    phys = m.phys
    out = []
    for vma in mm.vmas:
        if not vma.vm_flags & VM_MERGEABLE:
            continue
        for t, lo, hi, va in mm.pgd.blocks(vma.vm_start, vma.vm_end):
            ptes = t[lo:hi]
            normal = ((ptes & PTE_PRESENT) != 0) & ((ptes & PTE_SPECIAL) == 0)
            fl = phys.flags[np.where(normal, ptes >> PAGE_SHIFT, 0)]
            ok = normal & ((fl & PG_ANON) != 0) & ((fl & (PG_COMPOUND | PG_SWAPCACHE)) == 0)
            out += [_Item(pid, mm, t, lo + i, va + (i << PAGE_SHIFT)) for i in np.flatnonzero(ok).tolist()]
    return out


def _contents(m: Machine, pfn: int) -> bytes | int:
    c = int(m.phys.content[pfn])
    return c if c >= 0 else bytes(m.phys.data[pfn])


def _cmp_and_merge(m: Machine, item: _Item, stable: dict[bytes | int, int],
                   unstable: dict[bytes | int, _Item]) -> None:
    """cmp_and_merge_page for one item: stable tree first, then the unstable tree."""
    pfn = item.pfn
    key = _contents(m, pfn)
    if m.phys.flags[pfn] & PG_KSM:
        stable.setdefault(key, pfn)
        return
    kpfn = stable.get(key)
    if kpfn is not None:
        _replace_page(m, item, kpfn)
        return
    other = unstable.get(key)
    if other is None or other.pfn == pfn:  # a page forked into two mms is not merged with itself
        unstable.setdefault(key, item)
        return
    del unstable[key]
    _make_ksm_page(m, item)  # try_to_merge_two_pages: the page just scanned becomes the KSM page
    _replace_page(m, other, pfn)
    stable[key] = pfn


def _make_ksm_page(m: Machine, item: _Item) -> None:
    """write_protect_page + the stable node: the page itself becomes a read-only KSM page."""
    pfn = item.pfn
    m.phys.aliased = True  # from now on a frame can be mapped at several PTEs of one range
    m.phys.flags[pfn] = (m.phys.flags[pfn] & _NOT_EXCL) | PG_KSM | PG_DIRTY | PG_REFERENCED
    item.table[item.index] &= ~PTE_RW
    m.events.add(item.pid, "ksm-merge", item.va, pfn, pfn, "became a KSM page")


def _replace_page(m: Machine, item: _Item, kpfn: int) -> None:
    """replace_page: the item's PTE maps the KSM page instead (read-only); its old page is put."""
    phys = m.phys
    old = item.pfn
    pte = int(item.table[item.index])
    item.table[item.index] = (kpfn << PAGE_SHIFT) | (pte & ((1 << PAGE_SHIFT) - 1) & ~PTE_RW)
    phys.mapcount[kpfn] += 1
    phys.refcount[kpfn] += 1
    phys.mapcount[old] -= 1
    phys.put(np.array([old]))
    m.events.add(item.pid, "ksm-merge", item.va, old, kpfn, "merged into a KSM page")


def _account(m: Machine, items: list[_Item], unshared: int) -> None:
    """The counters of /sys/kernel/mm/ksm and every mm's ksm_stat after a scan."""
    ks = m.ksm
    ksm_pfns = [it.pfn for it in items if m.phys.flags[it.pfn] & PG_KSM]
    ks.stats = {}
    for it in items:
        st = ks.stats.setdefault(id(it.mm), KsmStat())
        st.rmap_items += 1
        st.merging_pages += bool(m.phys.flags[it.pfn] & PG_KSM)
    c = ks.counters
    c["pages_shared"] = len(set(ksm_pfns))
    c["pages_sharing"] = len(ksm_pfns) - c["pages_shared"]
    c["pages_unshared"] = unshared
    c["full_scans"] += 2
    c["pages_scanned"] += 2 * len(items)


def ksm_stat(m: Machine, mm: MM) -> dict[str, int | str]:
    """/proc/PID/ksm_stat: rmap items and merging pages as of the last scan; mergeable now."""
    st = m.ksm.stats.get(id(mm), KsmStat())
    mergeable = any(v.vm_flags & VM_MERGEABLE for v in mm.vmas)
    return {"ksm_rmap_items": st.rmap_items, "ksm_zero_pages": 0, "ksm_merging_pages": st.merging_pages,
            "ksm_process_profit": st.merging_pages * PAGE_SIZE - st.rmap_items * RMAP_ITEM_SIZE,
            "ksm_merge_any": "no", "ksm_mergeable": "yes" if mergeable else "no"}


def ksm_fork(m: Machine, parent: MM, child: MM) -> None:
    """A child of a KSM mm enters KSM too (its VMAs keep VM_MERGEABLE)."""
    if any(x is parent for x in m.ksm.mms):
        m.ksm.enter(child)
