"""Names for the heaps of non-main arenas, the same in the model's and glibc's output.

Arenas are numbered by creation (`A1` is the first one a thread created; main_arena's ->next
list is newest first, so the k-th from the end is `A<k>`). An arena's first heap (the one holding
its malloc_state) is `A<k>`; heaps it chains later are `A<k>.1`, `A<k>.2`, ... in the order they
appear, numbers never reused (a heap trimmed away and a new one made later gets the next
number). Addresses inside a heap print as `A<k>+0x..` / `A<k>.<j>+0x..`.
"""

from __future__ import annotations

from .layout import AV_TOP, HEAP_INFO_SIZE, HEAP_MAX_SIZE, HI_PREV


class HeapLabels:
    """heap base -> label, refreshed from the arenas' heap chains after every operation."""

    def __init__(self) -> None:
        self.by_base: dict[int, str] = {}
        self.later: dict[int, int] = {}      # arena number -> heaps chained so far after its first
        self.arena_no: dict[int, int] = {}   # arena address -> k

    def refresh(self, alloc) -> None:
        """Walk every non-main arena's heaps (from its top's heap back along ->prev)."""
        r = alloc._r
        arenas = alloc.arenas()[1:]
        live: set[int] = set()
        for i, av in enumerate(arenas):
            k = len(arenas) - i
            self.arena_no[av] = k
            chain = []
            h = alloc.heap_for_ptr(r(av + AV_TOP))
            while h and len(chain) < 4096:
                chain.append(h)
                h = r(h + HI_PREV)
            for h in reversed(chain):
                live.add(h)
                if h not in self.by_base:
                    self.by_base[h] = self._name(k, h == av - HEAP_INFO_SIZE)
        for h in [h for h in self.by_base if h not in live]:
            del self.by_base[h]

    def _name(self, k: int, first: bool) -> str:
        """A<k> for an arena's first heap, A<k>.<j> for its later ones."""
        if first:
            return f"A{k}"
        j = self.later.get(k, 0) + 1
        self.later[k] = j
        return f"A{k}.{j}"

    def find(self, addr: int) -> tuple[str, int] | None:
        """(label, heap base) of the heap holding addr, if any."""
        base = addr & ~(HEAP_MAX_SIZE - 1)
        label = self.by_base.get(base)
        return (label, base) if label is not None else None

    def arena(self, av: int) -> str:
        """`main`, `A<k>`, or `-` for no arena."""
        if av == 0:
            return "-"
        k = self.arena_no.get(av)
        return "main" if k is None else f"A{k}"
