"""A flat, page-granular stand-in for a process: enough of brk/mmap/mremap for an allocator.

`FlatHost` implements `AllocatorHost` without the full machine model (no page tables, no fork):
libc's rw data, the TLS block and the heap (initial break .. current break) share one private
anonymous window, and each anonymous mapping is its own bytearray. It is what the replay
engine, the benchmark and the fast tests run ptmalloc on.

Mapping placement follows the kernel's top-down allocator for anonymous mmaps (the highest gap
below `mmap_base` that fits, 2 MiB-aligned when the length is a multiple of 2 MiB), and mremap
grows in place only when the pages above the mapping are free, as Linux does. Every request is
checked as the kernel's default overcommit heuristic does (vm.overcommit_memory=0: one mapping, brk
increase or mremap growth larger than RAM + swap fails with ENOMEM), against `commit_pages`.
Memory is virtual until written (MAP_NORESERVE windows), so a multi-GiB chunk costs nothing.
"""

from __future__ import annotations

import bisect
import errno
import mmap
from collections.abc import Callable

from ...errors import Aborted, Segfault, SyscallError

PAGE = 4096
_NORESERVE = 0x4000  # MAP_NORESERVE: the window is virtual until touched
THP_SIZE = 2 << 20
#: RAM + swap of the reference machine in pages (MemTotal 24684092 kB, no swap): the overcommit
#: heuristic's limit for one request, as on the machine the malloc-cases were recorded on.
REFERENCE_COMMIT_PAGES = 24684092 // 4
_COPY_CHUNK = 1 << 20


def _anon(length: int) -> mmap.mmap:
    """A zero-filled buffer of length bytes whose pages cost host memory only once written."""
    return mmap.mmap(-1, max(length, PAGE), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _NORESERVE)


def _sparse_copy(src: mmap.mmap, lo: int, hi: int) -> mmap.mmap:
    """A new buffer holding src[lo:hi], copying only the chunks that are not all zero."""
    dst = _anon(hi - lo)
    for off in range(lo, hi, _COPY_CHUNK):
        end = min(hi, off + _COPY_CHUNK)
        chunk = src[off:end]
        if chunk.count(0) != len(chunk):
            dst[off - lo:end - lo] = chunk
    if len(dst) > hi - lo:
        dst.resize(hi - lo)
    return dst


def _page_up(n: int) -> int:
    """Round n up to a page boundary."""
    return (n + PAGE - 1) & ~(PAGE - 1)


class FlatHost:
    """A single process's memory: one window (libc data, TLS, heap) plus one buffer per mmap.

    The window is a private anonymous mmap laid out as [libc rw data | TLS | heap ... limit);
    addresses in it are served by 64/32/16/8-bit memoryview casts (the fast path the allocator
    binds through `accessors()`); anything else (mmapped chunks, misaligned or unmapped
    addresses) goes through `_locate`, which raises Segfault outside every mapping. Pages above
    the break are inaccessible, and pages given back by brk read as zeros when regained.

    The default heap start, 16 MiB, is where a non-PIE program's heap sits; it keeps heap
    addresses below 2**30, which Python's integers handle faster (about 25% on the benchmark).
    Results are offsets from the heap start, so only alignments above a page depend on it.
    """

    def __init__(self, heap_base: int = 0x1000000, mmap_base: int = 0x7FFFF7D80000,
                 libc_data_size: int = 0xF000, tls_size: int = 3 * PAGE,
                 heap_limit: int = 1 << 36, mmap_limit: int = 1 << 40, pid: int = 1,
                 commit_pages: int = REFERENCE_COMMIT_PAGES) -> None:
        """A fresh process: nothing mapped but libc data, TLS and an empty heap at heap_base.
        The heap may grow to heap_limit bytes (64 GiB: virtual until written)."""
        self.pid = pid
        self.commit_pages = commit_pages
        self.heap_base = heap_base
        self.libc_data_size = libc_data_size
        self.tls_size = tls_size
        self.tls = heap_base - tls_size
        self.libc_data = self.tls - libc_data_size
        self.window_base = self.libc_data
        self.window_size = libc_data_size + tls_size + heap_limit
        self.window = mmap.mmap(-1, self.window_size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _NORESERVE)
        self.cur_brk = heap_base
        self.heap_limit = heap_limit
        self.mmap_base = mmap_base
        self.mmap_limit = mmap_limit
        self.maps: dict[int, mmap.mmap] = {}   # start -> bytes of an anonymous mapping
        self._starts: list[int] = []           # sorted keys of maps (bisect in _locate)
        self._untouched: set[int] = set()      # mappings never written (a split copies nothing)
        self.nprocs = 2                        # __get_nprocs(): the reference machine's CPUs
        self.overcommit_memory = 0             # vm.overcommit_memory (glibc's shrink_heap reads it)
        self.stderr = ""
        self.alive = True
        self.syscalls: list[tuple] = []        # (name, args...) log of brk/mmap/munmap/mremap/madvise
        self.log_syscalls = False
        self._lim = heap_base - self.window_base  # accessible bytes of the window
        self._acc = self._make_accessors()

    @property
    def heap(self) -> memoryview:
        """The heap's bytes, from the initial break to the page holding the current break."""
        return memoryview(self.window)[self.heap_base - self.window_base:self._lim]

    def _make_accessors(self) -> dict:
        """Closures for 8..64-bit loads/stores with a fast path for aligned window addresses."""
        mv = memoryview(self.window)
        q, i32, h16, b8 = mv.cast("Q"), mv.cast("I"), mv.cast("H"), mv.cast("B")
        W = self.window_base
        L = W + self._lim            # end of the accessible part of the window (absolute)
        slow_r, slow_w = self._slow_read, self._slow_write

        box = self._limit_box = [L]   # the same end, shared with window_views() users
        field_limits: list[Callable[[int], None]] = []  # each field accessor's own end, moved with L

        def set_lim(n: int) -> None:
            """Move the end of the accessible window (brk)."""
            nonlocal L
            L = W + n
            box[0] = L
            for set_field_limit in field_limits:
                set_field_limit(L)

        def r64(a: int) -> int:
            """64-bit load."""
            if W <= a < L and not a & 7:
                return q[(a - W) >> 3]
            return int.from_bytes(slow_r(a, 8), "little")

        def w64(a: int, v: int) -> None:
            """64-bit store."""
            if W <= a < L and not a & 7:
                q[(a - W) >> 3] = v & 0xFFFFFFFFFFFFFFFF
            else:
                slow_w(a, (v & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))

        def r32(a: int) -> int:
            """32-bit load."""
            if W <= a < L and not a & 3:
                return i32[(a - W) >> 2]
            return int.from_bytes(slow_r(a, 4), "little")

        def w32(a: int, v: int) -> None:
            """32-bit store."""
            if W <= a < L and not a & 3:
                i32[(a - W) >> 2] = v & 0xFFFFFFFF
            else:
                slow_w(a, (v & 0xFFFFFFFF).to_bytes(4, "little"))

        def r16(a: int) -> int:
            """16-bit load."""
            if W <= a < L and not a & 1:
                return h16[(a - W) >> 1]
            return int.from_bytes(slow_r(a, 2), "little")

        def w16(a: int, v: int) -> None:
            """16-bit store."""
            if W <= a < L and not a & 1:
                h16[(a - W) >> 1] = v & 0xFFFF
            else:
                slow_w(a, (v & 0xFFFF).to_bytes(2, "little"))

        def r8(a: int) -> int:
            """Byte load."""
            if W <= a < L:
                return b8[a - W]
            return slow_r(a, 1)[0]

        def w8(a: int, v: int) -> None:
            """Byte store."""
            if W <= a < L:
                b8[a - W] = v & 0xFF
            else:
                slow_w(a, bytes([v & 0xFF]))

        self._set_lim = set_lim
        return {"r64": r64, "w64": w64, "r32": r32, "w32": w32, "r16": r16, "w16": w16, "r8": r8, "w8": w8,
                "field": self._field_factory(q, W, field_limits)}

    def _field_factory(self, q: memoryview, W: int, field_limits: list) -> Callable:
        """field(off, mask): accessors of a struct field for the host's users (ptmalloc's chunk
        fields); each registers in field_limits how to follow the accessible end when brk moves it."""
        slow_r, slow_w = self._slow_read, self._slow_write

        def field(off: int, mask: int | None = None) -> tuple[Callable[[int], int], Callable[[int, int], None]]:
            """The 64-bit load (masked) and store of the field at byte offset off (a multiple of 8) of
            a struct at p: r64(p + off) and w64(p + off, v) in one call each, as fast as r64."""
            lo = W - off               # p - lo is the field's offset in the window
            hi = W + self._lim - off   # the field lies in the accessible window iff lo <= p < hi

            def set_limit(end: int) -> None:
                """Follow the end of the accessible window."""
                nonlocal hi
                hi = end - off
            field_limits.append(set_limit)

            if mask is None:
                def load(p: int) -> int:
                    """Load of the field."""
                    if lo <= p < hi and not p & 7:
                        return q[(p - lo) >> 3]
                    return int.from_bytes(slow_r(p + off, 8), "little")
            else:
                def load(p: int) -> int:
                    """Masked load of the field."""
                    if lo <= p < hi and not p & 7:
                        return q[(p - lo) >> 3] & mask
                    return int.from_bytes(slow_r(p + off, 8), "little") & mask

            def store(p: int, v: int) -> None:
                """Store to the field."""
                if lo <= p < hi and not p & 7:
                    q[(p - lo) >> 3] = v & 0xFFFFFFFFFFFFFFFF
                else:
                    slow_w(p + off, (v & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))
            return load, store

        return field

    def fixed_views(self) -> tuple[memoryview, memoryview, int]:
        """64- and 32-bit views of the window and its base, for libc data and TLS (always mapped)."""
        mv = memoryview(self.window)
        return mv.cast("Q"), mv.cast("I"), self.window_base

    def window_views(self) -> tuple:
        """(u64 view, u16 view, u32 view, window base, [end of the mapped part]) for fast paths.

        The one-element list is updated by brk, so holders always see the current break.
        """
        mv = memoryview(self.window)
        return mv.cast("Q"), mv.cast("H"), mv.cast("I"), self.window_base, self._limit_box

    def accessors(self) -> dict:
        """Fast memory accessors for an allocator bound to this host."""
        return self._acc

    # -- address resolution ---------------------------------------------------------------------
    def _locate(self, addr: int, n: int):
        """Return (buffer, offset) holding [addr, addr+n), or raise Segfault."""
        off = addr - self.window_base
        if 0 <= off and off + n <= self._lim:
            return self.window, off
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            start = self._starts[i]
            buf = self.maps[start]
            off = addr - start
            if off + n <= len(buf):
                return buf, off
        self.alive = False
        raise Segfault(self.pid, addr, "access outside any mapping")

    def _slow_read(self, addr: int, n: int) -> bytes:
        """Read through _locate."""
        buf, off = self._locate(addr, n)
        return bytes(buf[off:off + n])

    def _slow_write(self, addr: int, data: bytes) -> None:
        """Write through _locate."""
        buf, off = self._locate(addr, len(data))
        buf[off:off + len(data)] = data
        if self._untouched:
            self._untouched.discard(addr - off)

    def read(self, addr: int, n: int) -> bytes:
        """Read n bytes (models a load)."""
        return self._slow_read(addr, n) if n > 0 else b""

    def write(self, addr: int, data: bytes) -> None:
        """Write bytes (models a store)."""
        if data:
            self._slow_write(addr, bytes(data))

    def read_u64(self, addr: int) -> int:
        """Load a little-endian 64-bit word."""
        return self._acc["r64"](addr)

    def write_u64(self, addr: int, value: int) -> None:
        """Store a little-endian 64-bit word."""
        self._acc["w64"](addr, value)

    def fill(self, addr: int, length: int, byte: int) -> None:
        """memset (in 1 MiB steps: a multi-GiB memset needs no multi-GiB temporary)."""
        if length <= 0:
            return
        buf, off = self._locate(addr, length)
        self._untouched.discard(addr - off)
        pattern = bytes([byte]) * min(length, _COPY_CHUNK)
        for pos in range(off, off + length, _COPY_CHUNK):
            n = min(_COPY_CHUNK, off + length - pos)
            buf[pos:pos + n] = pattern[:n]

    def _enough_memory(self, nbytes: int) -> bool:
        """__vm_enough_memory in the default heuristic mode: one request up to RAM + swap."""
        return _page_up(nbytes) // PAGE <= self.commit_pages

    # -- brk ------------------------------------------------------------------------------------
    def brk(self, new_end: int | None = None) -> int:
        """The brk syscall: set the break (page-backed), return the (possibly unchanged) break."""
        if new_end is None or new_end == self.cur_brk:
            return self.cur_brk
        if new_end < self.heap_base or new_end - self.heap_base > self.heap_limit:
            return self.cur_brk
        if new_end > self.cur_brk and (self._overlaps_map(self.cur_brk, _page_up(new_end)) or
                                       not self._enough_memory(_page_up(new_end) - _page_up(self.cur_brk))):
            return self.cur_brk
        old_lim = self._lim
        lim = _page_up(new_end) - self.window_base
        if lim < old_lim:
            self.window.madvise(mmap.MADV_DONTNEED, lim, old_lim - lim)  # regained pages read zero
        self._lim = lim
        self._set_lim(lim)
        if self.log_syscalls:
            self.syscalls.append(("brk", new_end))
        self.cur_brk = new_end
        return new_end

    def sbrk(self, delta: int) -> int:
        """glibc's sbrk: move the break by delta, return the old break; SyscallError(ENOMEM)."""
        old = self.cur_brk
        if delta == 0:
            return old
        if self.brk(old + delta) != old + delta:
            raise SyscallError(errno.ENOMEM, "sbrk")
        return old

    # -- mmap -----------------------------------------------------------------------------------
    def _overlaps_map(self, lo: int, hi: int) -> bool:
        """True if [lo, hi) intersects an anonymous mapping."""
        return any(s < hi and lo < s + len(b) for s, b in self.maps.items())

    def _find_gap(self, length: int, exclude: int | None = None) -> int:
        """Top-down search for a free range of length bytes below mmap_base (kernel's choice)."""
        spans = sorted((s, s + len(b)) for s, b in self.maps.items() if s != exclude)
        hi = self.mmap_base
        align = THP_SIZE if length % THP_SIZE == 0 else PAGE
        for s, e in reversed(spans):
            if e <= hi:
                cand = (hi - length) & ~(align - 1)
                if cand >= e:
                    return cand
                hi = min(hi, s)
            else:
                hi = min(hi, s)
        cand = (hi - length) & ~(align - 1)
        if cand < self.mmap_base - self.mmap_limit or cand < self.window_base + self.window_size:
            raise SyscallError(errno.ENOMEM, "mmap")
        return cand

    def mmap(self, length: int, prot: str = "rw", shared: bool = False, file=None, offset: int = 0,
             addr: int | None = None, fixed: bool = False) -> int:
        """Anonymous private mmap (zero-filled), placed top-down like Linux."""
        if length <= 0 or file is not None or shared:
            raise SyscallError(errno.EINVAL, "mmap")
        return self.mmap_anon(length, prot, addr=addr, fixed=fixed)

    def mmap_anon(self, length: int, prot: str = "rw", addr: int | None = None, fixed: bool = False,
                  noreserve: bool = False, stack: bool = False) -> int:
        """Anonymous private mmap: at a free hint, MAP_FIXED over what was there, else top-down.
        A MAP_NORESERVE or PROT_NONE mapping is not checked against the commit limit; `stack`
        (MAP_STACK) changes nothing here. Protections are not enforced by this host."""
        length = _page_up(length)
        if "w" in prot and not noreserve and not self._enough_memory(length):
            raise SyscallError(errno.ENOMEM, "mmap")
        if fixed and addr is not None:
            self.munmap(addr, length)
            start = addr
        elif addr and not addr & (PAGE - 1) and addr + length <= self.mmap_base and \
                addr >= self.window_base + self.window_size and not self._overlaps_map(addr, addr + length):
            start = addr
        else:
            start = self._find_gap(length)
        self._add_map(start, _anon(length), fresh=True)
        if self.log_syscalls:
            self.syscalls.append(("mmap", start, length))
        return start

    def _add_map(self, start: int, buf: mmap.mmap, fresh: bool = False) -> None:
        """Record a mapping (and keep the sorted starts)."""
        self.maps[start] = buf
        bisect.insort(self._starts, start)
        if fresh:
            self._untouched.add(start)

    def _del_map(self, start: int) -> mmap.mmap:
        """Forget a mapping; returns its buffer."""
        self._starts.remove(start)
        self._untouched.discard(start)
        return self.maps.pop(start)

    def mprotect(self, addr: int, length: int, prot: str) -> None:
        """mprotect: recorded only (this host does not enforce protections)."""
        if self.log_syscalls:
            self.syscalls.append(("mprotect", addr, _page_up(length), prot))

    def print_stderr(self, text: str) -> None:
        """What the process writes to stderr (malloc_stats)."""
        self.stderr += text

    def munmap(self, addr: int, length: int) -> None:
        """munmap of whole mappings or of their head/tail pages."""
        if addr & (PAGE - 1):
            raise SyscallError(errno.EINVAL, "munmap")
        length = _page_up(length)
        if self.log_syscalls:
            self.syscalls.append(("munmap", addr, length))
        for start, buf in list(self.maps.items()):
            end = start + len(buf)
            lo, hi = max(start, addr), min(end, addr + length)
            if lo >= hi:
                continue
            fresh = start in self._untouched
            self._del_map(start)
            if start < lo:
                self._add_map(start, _anon(lo - start) if fresh else _sparse_copy(buf, 0, lo - start), fresh)
            if hi < end:
                self._add_map(hi, _anon(end - hi) if fresh else _sparse_copy(buf, hi - start, end - start), fresh)
            buf.close()

    def mremap(self, addr: int, old_len: int, new_len: int, may_move: bool = True) -> int:
        """mremap of a whole anonymous mapping: shrink or grow in place, else move."""
        buf = self.maps.get(addr)
        if buf is None or len(buf) != _page_up(old_len) or new_len <= 0:
            raise SyscallError(errno.EFAULT if buf is None else errno.EINVAL, "mremap")
        new_len = _page_up(new_len)
        if self.log_syscalls:
            self.syscalls.append(("mremap", addr, old_len, new_len))
        if new_len <= len(buf):
            buf.resize(new_len)
            return addr
        self._untouched.discard(addr)
        if not self._enough_memory(new_len - len(buf)):
            raise SyscallError(errno.ENOMEM, "mremap")
        end = addr + new_len
        if end <= self.mmap_base and not self._overlaps_map(addr + len(buf), end):
            buf.resize(new_len)
            return addr
        if not may_move:
            raise SyscallError(errno.ENOMEM, "mremap")
        new = self._find_gap(new_len)
        self._del_map(addr)
        buf.resize(new_len)
        self._add_map(new, buf)
        return new

    def madvise(self, addr: int, length: int, advice: str) -> None:
        """MADV_DONTNEED on private anonymous memory: the pages read back as zeros."""
        if self.log_syscalls:
            self.syscalls.append(("madvise", addr, length, advice))
        if advice == "dontneed":
            self._madvise_dontneed(addr, length)

    def _madvise_dontneed(self, addr: int, length: int) -> None:
        """MADV_DONTNEED over [addr, addr+length), mapping by mapping (holes are skipped here)."""
        off = addr - self.window_base
        if 0 <= off and off + length <= self._lim:
            self._dontneed_in(self.window, off, length)
            return
        for start, buf in list(self.maps.items()):
            lo, hi = max(start, addr), min(start + len(buf), addr + length)
            if lo < hi:
                self._dontneed_in(buf, lo - start, hi - lo)

    @staticmethod
    def _dontneed_in(buf: mmap.mmap, off: int, length: int) -> None:
        """DONTNEED of part of one mapping: whole pages drop (read zeros again), a partial
        page is zeroed."""
        if not off % PAGE and not length % PAGE:
            buf.madvise(mmap.MADV_DONTNEED, off, length)
        else:
            buf[off:off + length] = bytes(length)

    def abort(self, message: str) -> None:
        """glibc's malloc_printerr: message on stderr, then SIGABRT."""
        self.stderr += message + "\n"
        self.alive = False
        raise Aborted(self.pid, message)
