"""What each worker held at its start: per-page references kept across samples.

One sample cannot say who paid for a copy (the worker's frame and the parent's differ; which one is
the original?) nor whether a page the worker lacks was ever its own. A reference can: the frames a
worker held at fork, when the parent was read before the worker started ("fork"), or the frames
it shared with its parent when first seen ("first-seen"). Against it:

* copied by the child: the parent still has the reference frame, the worker a new one;
* copied by the parent: the worker still has the reference frame, the parent a new one (with one
  worker, a page the parent rewrote becomes the worker's alone: "copied", paid by the parent);
* released: the worker had a page there, has none now, and the parent still has one (Redis's
  BGSAVE child drops what it has saved with MADV_DONTNEED: sharing ends, nothing was copied).

Pages the reference does not know (copied before the worker was first seen) stay unattributed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..observe.records import MapsEntry
from . import classify as cl


@dataclass
class Reference:
    """A worker's pages at its start, in the address layout they were read in."""

    kind: str              # "fork" or "first-seen"
    vmas: list[MapsEntry]
    offsets: np.ndarray
    pfn: np.ndarray        # int64: the frame it held (0: none or unknown)
    has: np.ndarray        # bool: it held a page here (a frame, or a swap entry)


@dataclass
class _Seen:
    """One process as the last sample read it."""

    starttime: int         # clock ticks after boot
    image: tuple[int, int]  # (start_brk, arg_start): equal in a parent and a child forked without exec
    read_by: float         # CLOCK_BOOTTIME seconds: the sample that read it had ended by then
    pages: cl.ProcPages


@dataclass
class Attribution:
    """One worker's pages against its reference."""

    kind: str              # the reference's kind
    by_child: np.ndarray   # bool per page: copied, the parent kept the original frame
    by_parent: np.ndarray  # bool per page: copied, the worker kept the original frame
    released: np.ndarray   # bool per page of the worker: it held a page here, the parent still does
    released_pages: int    # all released pages, those in ranges the worker unmapped included


class History:
    """The last sample's pages of every process, and each worker's reference (pid and start time)."""

    def __init__(self) -> None:
        self._seen: dict[int, _Seen] = {}
        self._refs: dict[int, tuple[int, Reference]] = {}

    def reference(self, pid: int, starttime: int, ppid: int, child: cl.ProcPages, parent_frames: np.ndarray,
                  codes: np.ndarray, tick: float) -> Reference:
        """The worker's reference: kept from an earlier sample; else the parent's pages read before
        the worker started (fork); else its frames shared with the parent now (first-seen)."""
        kept = self._refs.get(pid)
        if kept is not None and kept[0] == starttime:
            return kept[1]
        before = self._seen.get(ppid)
        if before is not None and before.read_by < starttime * tick:
            pp = before.pages
            ref = Reference("fork", pp.vmas, pp.offsets, np.where(pp.real, pp.pfn, 0), pp.anon.copy())
        else:
            shared = codes == cl.SHARED_PARENT
            ref = Reference("first-seen", child.vmas, child.offsets, np.where(shared, parent_frames, 0),
                            child.real | child.swap)
        self._refs[pid] = (starttime, ref)
        return ref

    def remember(self, seen: list[tuple[int, int, tuple[int, int], cl.ProcPages]], read_by: float) -> None:
        """Keep this sample's pages (pid, start time, image, pages) for the next; forget the gone."""
        self._seen = {pid: _Seen(st, image, read_by, pages) for pid, st, image, pages in seen}
        self._refs = {pid: r for pid, r in self._refs.items() if pid in self._seen}

    def note(self, pid: int, starttime: int, image: tuple[int, int], pages: cl.ProcPages, read_by: float) -> None:
        """Keep one process's pages read outside a sample (ForkWatch: a root before its first fork)."""
        self._seen[pid] = _Seen(starttime, image, read_by, pages)

    def image(self, pid: int) -> tuple[int, int] | None:
        """The image of a process as last seen."""
        s = self._seen.get(pid)
        return s.image if s is not None else None


def attribute(ref: Reference, child: cl.ProcPages, parent: cl.ProcPages, pv: cl.ParentView,
              codes: np.ndarray) -> Attribution:
    """Who copied each copied page, and which pages the worker released, against `ref`."""
    ref_pfn, ref_has = cl.align(ref.vmas, ref.offsets, [ref.pfn, ref.has], child.vmas, child.offsets)
    copied = codes == cl.COPIED
    known = copied & (ref_pfn > 0)
    by_child = known & pv.real & (pv.pfn == ref_pfn)
    by_parent = known & (child.pfn == ref_pfn)
    released = ~child.has & (pv.real | (pv.has & ~pv.real)) & ref_has
    # The same in the parent's address space counts what the worker unmapped as well.
    parent_has = parent.real | parent.swap
    p_ref_has, = cl.align(ref.vmas, ref.offsets, [ref.has], parent.vmas, parent.offsets)
    c_has, = cl.align(child.vmas, child.offsets, [child.has], parent.vmas, parent.offsets)
    total = int(np.count_nonzero(parent_has & p_ref_has & ~c_has))
    return Attribution(ref.kind, by_child, by_parent, released, total)
