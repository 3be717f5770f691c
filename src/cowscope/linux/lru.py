"""Draining every CPU's LRU batches before each command, as the model's are always drained.

The kernel queues pages on per-CPU batches (new pages, activations, the rotation a finished
swap write-back asks for, mlock, MADV_FREE) and each queued page carries an extra reference
until its CPU drains the batch. A write fault reuses an anonymous page only when nothing but its
one mapping (and the swap cache) holds it, and a fault drains only its own CPU's batches: a page
queued on another CPU (write-back completions run wherever the disk's interrupt lands) is copied
although it is mapped once, and MADV_PAGEOUT skips a page still queued. Measured here: a swapped-in
page written by its last holder (conformance W04) was copied in 8 of 80 runs under disk load, and
in 0 of 80 with a drain just before the write.

`migrate_pages(2)` of the caller to the nodes it is on moves nothing but first drains every CPU's
batches (`lru_cache_disable`); about 25 microseconds, no privilege needed. On a kernel without
NUMA (ENOSYS) nothing is drained and the behaviour above stays possible.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import platform

_SYS_MIGRATE_PAGES = {"x86_64": 256, "aarch64": 238}


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


@functools.lru_cache(maxsize=1)
def _node_mask() -> int:
    """Bit n for every online memory node (one unsigned long: nodes 0..63)."""
    mask = 0
    try:
        with open("/sys/devices/system/node/online") as f:
            for part in f.read().strip().split(","):
                lo, _, hi = part.partition("-")
                for n in range(int(lo), int(hi or lo) + 1):
                    mask |= 1 << n if n < 64 else 0
    except (OSError, ValueError):
        return 1
    return mask or 1


def drain_all() -> bool:
    """Drain every CPU's LRU (and mlock) batches; False where the kernel cannot (no NUMA, an
    unknown architecture), the batches then drain on their own."""
    nr = _SYS_MIGRATE_PAGES.get(platform.machine())
    if nr is None:
        return False
    mask = ctypes.c_ulong(_node_mask())
    ret = _libc().syscall(nr, os.getpid(), ctypes.c_ulong(64), ctypes.byref(mask), ctypes.byref(mask))
    return ret >= 0
