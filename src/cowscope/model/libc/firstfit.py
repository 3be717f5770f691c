"""A textbook first-fit allocator (K&R style) whose headers and free list live in simulated memory.

Chunk: a 16-byte header [size | INUSE][next free chunk], user data after it (16-aligned).
The free list is kept in address order, coalescing neighbours on free; its head lives in
libc's data area. The heap grows with sbrk. For teaching: not glibc (see ptmalloc).
"""

from __future__ import annotations

from ..arch import page_align
from .base import Allocator, register

HDR = 16
MIN_CHUNK = 32
INUSE = 1
GROW = 64 * 1024
STATE_OFFSET = 0x800  # where in libc's data area the free-list head lives


def _align16(n: int) -> int:
    return (n + 15) & ~15


@register
class FirstFit(Allocator):
    """First-fit over an address-ordered free list with coalescing."""

    name = "firstfit"

    @property
    def _head_addr(self) -> int:
        return self.host.libc_data + STATE_OFFSET

    def _size(self, chunk: int) -> int:
        return self.host.read_u64(chunk)

    def _set(self, chunk: int, size: int, nxt: int | None = None) -> None:
        self.host.write_u64(chunk, size)
        if nxt is not None:
            self.host.write_u64(chunk + 8, nxt)

    def _free_chunks(self) -> list[tuple[int, int]]:
        """(prev-link address, chunk) pairs along the free list."""
        out = []
        link = self._head_addr
        chunk = self.host.read_u64(link)
        while chunk:
            out.append((link, chunk))
            link = chunk + 8
            chunk = self.host.read_u64(link)
        return out

    def malloc(self, size: int) -> int:
        """First free chunk that fits; split off the rest; grow the heap with sbrk if none fits."""
        if size < 0 or size > 1 << 48:
            return 0
        need = max(_align16(size) + HDR, MIN_CHUNK)
        for _ in range(2):
            for link, chunk in self._free_chunks():
                csize = self._size(chunk)
                if csize < need:
                    continue
                nxt = self.host.read_u64(chunk + 8)
                if csize - need >= MIN_CHUNK:
                    rest = chunk + need
                    self._set(rest, csize - need, nxt)
                    self.host.write_u64(link, rest)
                    csize = need
                else:
                    self.host.write_u64(link, nxt)
                self._set(chunk, csize | INUSE)
                return chunk + HDR
            if not self._grow(need):
                return 0
        return 0

    def _grow(self, need: int) -> bool:
        """Extend the heap by sbrk and free the new space into the list."""
        from ...errors import SyscallError

        amount = page_align(max(need, GROW))
        try:
            base = self.host.sbrk(amount)
        except SyscallError:
            return False
        if base & 15:
            pad = 16 - (base & 15)
            base += pad
            amount -= pad
        self._set(base, amount | INUSE)
        self.free(base + HDR)
        return True

    def free(self, ptr: int) -> None:
        """Insert in address order and coalesce with adjacent free chunks."""
        if ptr == 0:
            return
        chunk = ptr - HDR
        if ptr & 15 or chunk <= 0:
            self.host.abort("free(): invalid pointer")
        size = self._size(chunk)
        if not size & INUSE:
            self.host.abort("free(): double free detected (first-fit)")
        size &= ~INUSE
        prev_link, prev = self._head_addr, 0
        for _link, c in self._free_chunks():
            if c > chunk:
                break
            prev_link, prev = c + 8, c
        nxt = self.host.read_u64(prev_link)
        if nxt and chunk + size == nxt:  # coalesce with the next chunk
            size += self._size(nxt)
            nxt = self.host.read_u64(nxt + 8)
        if prev and prev + self._size(prev) == chunk:  # coalesce into the previous chunk
            self._set(prev, self._size(prev) + size, nxt)
            return
        self._set(chunk, size, nxt)
        self.host.write_u64(prev_link, chunk)

    def malloc_usable_size(self, ptr: int) -> int:
        if ptr == 0:
            return 0
        return (self._size(ptr - HDR) & ~INUSE) - HDR

    def memalign(self, alignment: int, size: int) -> int:
        """Over-allocate, then give the unaligned lead back to the free list."""
        if alignment & (alignment - 1) or alignment <= 0:
            return 0
        if alignment <= 16:
            return self.malloc(size)
        p = self.malloc(size + alignment + MIN_CHUNK)
        if not p or p % alignment == 0:
            return p
        aligned = (p + MIN_CHUNK + alignment - 1) & ~(alignment - 1)
        chunk, new_chunk = p - HDR, aligned - HDR
        total = self._size(chunk) & ~INUSE
        lead = new_chunk - chunk
        self._set(new_chunk, (total - lead) | INUSE)
        self._set(chunk, lead | INUSE)
        self.free(chunk + HDR)
        return aligned
