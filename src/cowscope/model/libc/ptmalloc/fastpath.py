"""Fast paths of __libc_malloc / __libc_free for tcache hits, as closures over the accessors."""

from __future__ import annotations

from collections.abc import Callable

from .layout import (
    IS_MMAPPED,
    MALLOC_ALIGN_MASK,
    MASK64,
    MINSIZE,
    PTRDIFF_MAX,
    SIZE_BITS,
    TC_ENTRIES,
    TCACHE_STRUCT_SIZE,
)


class FastPathMixin:
    """Installs per-instance malloc/free closures; the class methods stay the reference paths."""

    def _install_fast_paths(self) -> None:
        """Instance-level malloc/free closures for the common tcache hits (same reads and writes).

        They handle a tcache_get from a non-empty bin and a tcache_put into a bin with room whose
        chunk does not carry the key (no double-free suspicion); once the tcache exists, other
        heap requests go straight to _int_malloc / _int_free (errno saved and restored), and
        everything else (first call, mmapped chunks) falls through to the full methods above.
        """
        fixed = self._fixed_fields()
        malloc, free = self._tcache_malloc(fixed), self._tcache_free(fixed)
        self.malloc = malloc  # type: ignore[method-assign]
        self.free = free  # type: ignore[method-assign]
        views = getattr(self.host, "window_views", None)
        if views is not None and self._tls_in_window(views()):
            self._install_window_fast_paths(views(), malloc, free)

    def _tls_in_window(self, views: tuple) -> bool:
        """Whether this thread's TLS block lies in the host's memory window (a thread's TLS on
        its stack, an mmap of its own, does not)."""
        base, size = views[3], len(views[0]) * 8
        return base <= self.tls and self.tls + 0x60 <= base + size

    def _fixed_fields(self) -> tuple:
        """(load, errno load, errno store, then the tcache pointer, tcache_bins, tcache_count, key and
        errno as what those take): libc data and TLS are mapped for the process's whole life, so a
        host may hand out direct views of them (FlatHost does) that skip the bounds-checked accessors."""
        a_tcache, a_tcache_bins, a_tcache_count = self.a_tcache, self.a_tcache_bins, self.a_tcache_count
        a_key, a_errno = self.a_key, self.a_errno
        fixed = getattr(self.host, "fixed_views", None)
        views = fixed() if fixed is not None else None
        if views is None or not views[2] <= self.tls < views[2] + len(views[0]) * 8 - 0x60:
            return self._r, self._r32, self._w32, a_tcache, a_tcache_bins, a_tcache_count, a_key, a_errno
        q, i32v, base = views
        a_tcache, a_tcache_bins, a_tcache_count, a_key = ((x - base) >> 3 for x in (
            a_tcache, a_tcache_bins, a_tcache_count, a_key))
        return q.__getitem__, i32v.__getitem__, i32v.__setitem__, a_tcache, a_tcache_bins, a_tcache_count, \
            a_key, (a_errno - base) >> 2

    def _tcache_malloc(self, fixed: tuple) -> Callable[[int], int]:
        """__libc_malloc with tcache_get inlined, on the host's accessors."""
        r, w, r16, w16 = self._r, self._w, self._r16, self._w16
        cr, _er, _ew, a_tcache, a_tcache_bins, _count, _key, _errno = fixed
        full_malloc = type(self).malloc.__get__(self)
        int_malloc = self._malloc_past_tcache

        def malloc(size: int) -> int:
            """__libc_malloc with tcache_get inlined."""
            tc = cr(a_tcache)
            if tc and size <= PTRDIFF_MAX:
                tc_idx = 0 if size < 9 else ((size + 23) >> 4) - 2   # csize2tidx(checked_request2size(size))
                if tc_idx < cr(a_tcache_bins):
                    ca = tc + 2 * tc_idx
                    cnt = r16(ca)
                    if cnt:
                        slot = tc + TC_ENTRIES + 8 * tc_idx
                        e = r(slot)
                        if not e & MALLOC_ALIGN_MASK:
                            w(slot, (e >> 12) ^ r(e))
                            w16(ca, cnt - 1)
                            w(e + 8, 0)
                            return e
                    else:
                        return int_malloc(size)
                else:
                    return int_malloc(size)
            return full_malloc(size)
        return malloc

    def _tcache_free(self, fixed: tuple) -> Callable[[int], None]:
        """__libc_free with the tcache_put of _int_free inlined, on the host's accessors."""
        r, w, r16, w16 = self._r, self._w, self._r16, self._w16
        cr, er, ew, a_tcache, a_tcache_bins, a_tcache_count, a_key, a_errno = fixed
        full_free = type(self).free.__get__(self)
        free_past = self._free_past_tcache

        def free(ptr: int) -> None:
            """__libc_free with the tcache_put of _int_free inlined."""
            if ptr == 0:
                return
            p = (ptr - 16) & MASK64
            head = r(p + 8)
            tc = cr(a_tcache)
            if tc and not head & IS_MMAPPED:
                size = head & ~SIZE_BITS
                if (size >= MINSIZE and not size & MALLOC_ALIGN_MASK and not p & MALLOC_ALIGN_MASK
                        and p <= (-size) & MASK64):
                    tc_idx = (size - 17) >> 4
                    if tc_idx < cr(a_tcache_bins):
                        e = p + 16
                        key = cr(a_key)
                        if r(e + 8) != key:
                            ca = tc + 2 * tc_idx
                            cnt = r16(ca)
                            err = er(a_errno)
                            if cnt < cr(a_tcache_count):
                                w(e + 8, key)
                                slot = tc + TC_ENTRIES + 8 * tc_idx
                                w(e, (e >> 12) ^ r(slot))
                                w(slot, e)
                                w16(ca, cnt + 1)
                            else:                                # tcache bin full: past the tcache
                                free_past(p, size)
                            ew(a_errno, err)
                            return
                err = er(a_errno)
                free_past(p)
                ew(a_errno, err)
                return
            full_free(ptr)
        return free

    def _install_window_fast_paths(self, views: tuple, generic_malloc: Callable[[int], int],
                                   generic_free: Callable[[int], None]) -> None:
        """The same tcache fast paths with the heap read through the host's memoryviews directly.

        Used when the host exposes its memory window (FlatHost): addresses inside the mapped part
        of the window (below the break) are indexed in place; anything else (corrupted or
        misaligned pointers, mmapped chunks) takes the accessor-based paths.
        """
        W = views[3]
        slots = ((self.a_tcache - W) >> 3, (self.a_tcache_bins - W) >> 3, (self.a_tcache_count - W) >> 3,
                 (self.a_key - W) >> 3, (self.a_errno - W) >> 2)
        self.malloc = self._window_malloc(views, slots, generic_malloc)  # type: ignore[method-assign]
        self.free = self._window_free(views, slots, generic_free)  # type: ignore[method-assign]

    def _window_malloc(self, views: tuple, slots: tuple, generic_malloc: Callable[[int], int]
                       ) -> Callable[[int], int]:
        """__libc_malloc with tcache_get inlined, on the memory window (slots: u64/u32 indices of
        the tcache pointer, tcache_bins, tcache_count, the key and errno)."""
        q, h16, _i32, W, box = views
        i_tcache, i_bins, _i_count, _i_key, _i_errno = slots
        int_malloc = self._malloc_past_tcache
        tc_end = TCACHE_STRUCT_SIZE

        def malloc(size: int) -> int:
            """__libc_malloc with tcache_get inlined, on the memory window."""
            tc = q[i_tcache]
            if tc and size <= PTRDIFF_MAX:
                tc_idx = 0 if size < 9 else ((size + 23) >> 4) - 2
                if tc_idx >= q[i_bins]:
                    return int_malloc(size)
                if not tc & MALLOC_ALIGN_MASK and W <= tc and tc + tc_end <= box[0]:
                    ot = tc - W
                    ci = (ot >> 1) + tc_idx
                    cnt = h16[ci]
                    if not cnt:
                        return int_malloc(size)
                    si = (ot >> 3) + 16 + tc_idx          # entries[] start at tc + 128
                    e = q[si]
                    if not e & MALLOC_ALIGN_MASK and W <= e and e + 16 <= box[0]:
                        eo = (e - W) >> 3
                        q[si] = (e >> 12) ^ q[eo]         # entries[i] = REVEAL_PTR(e->next)
                        h16[ci] = cnt - 1
                        q[eo + 1] = 0                     # e->key = 0
                        return e
            return generic_malloc(size)
        return malloc

    def _window_free(self, views: tuple, slots: tuple, generic_free: Callable[[int], None]
                     ) -> Callable[[int], None]:
        """__libc_free with the tcache_put of _int_free inlined, on the memory window."""
        q, h16, i32, W, box = views
        i_tcache, i_bins, i_count, i_key, i_errno = slots
        free_past = self._free_past_tcache
        tc_end = TCACHE_STRUCT_SIZE

        def free(ptr: int) -> None:
            """__libc_free with the tcache_put of _int_free inlined, on the memory window."""
            if ptr == 0:
                return
            p = (ptr - 16) & MASK64
            lim = box[0]
            if not p & MALLOC_ALIGN_MASK and W <= p and p + 32 <= lim:
                po = (p - W) >> 3
                head = q[po + 1]
                tc = q[i_tcache]
                if tc and not head & IS_MMAPPED:
                    size = head & ~SIZE_BITS
                    if size >= MINSIZE and not size & MALLOC_ALIGN_MASK and p <= (-size) & MASK64:
                        tc_idx = (size - 17) >> 4
                        if tc_idx < q[i_bins]:
                            key = q[i_key]
                            if (q[po + 3] != key and not tc & MALLOC_ALIGN_MASK and W <= tc
                                    and tc + tc_end <= lim):
                                ot = tc - W
                                ci = (ot >> 1) + tc_idx
                                cnt = h16[ci]
                                err = i32[i_errno]
                                if cnt < q[i_count]:
                                    q[po + 3] = key                      # e->key
                                    si = (ot >> 3) + 16 + tc_idx
                                    q[po + 2] = ((p + 16) >> 12) ^ q[si]  # e->next, safe-linked
                                    q[si] = p + 16
                                    h16[ci] = cnt + 1
                                else:                                    # tcache bin full: past the tcache
                                    free_past(p, size)
                                i32[i_errno] = err
                                return
                    err = i32[i_errno]
                    free_past(p)
                    i32[i_errno] = err
                    return
            generic_free(ptr)
        return free
