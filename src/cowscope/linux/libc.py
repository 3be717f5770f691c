"""glibc's malloc in an agent process: each call is the real libc function, run by the agent."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from ..observe.backend import Mallinfo2
from .wire import (
    OP_ALIGNED_ALLOC,
    OP_CALLOC,
    OP_FREE,
    OP_MALLINFO2,
    OP_MALLOC,
    OP_MALLOC_TRIM,
    OP_MALLOPT,
    OP_MEMALIGN,
    OP_POSIX_MEMALIGN,
    OP_REALLOC,
    OP_USABLE,
)

#: struct mallinfo2: ten size_t fields.
_MALLINFO2 = struct.Struct("<10Q")


class GlibcCalls:
    """The malloc family of `linux.process.Process` (a mixin: it sends through `_call`)."""

    if TYPE_CHECKING:  # provided by Process

        def _call(self, op: int, *args: int, payload: bytes = b"", what: str = "") -> tuple[int, int]: ...

        def _call_data(self, op: int, *args: int, what: str = "") -> bytes: ...

    def malloc(self, size: int) -> int:
        """malloc(3): the pointer, 0 when it fails."""
        return self._call(OP_MALLOC, size, what="malloc")[0]

    def free(self, ptr: int) -> None:
        """free(3) (a corrupt heap aborts: Aborted)."""
        self._call(OP_FREE, ptr, what="free")

    def calloc(self, n: int, size: int) -> int:
        """calloc(3)."""
        return self._call(OP_CALLOC, n, size, what="calloc")[0]

    def realloc(self, ptr: int, size: int) -> int:
        """realloc(3)."""
        return self._call(OP_REALLOC, ptr, size, what="realloc")[0]

    def memalign(self, alignment: int, size: int) -> int:
        """memalign(3)."""
        return self._call(OP_MEMALIGN, alignment, size, what="memalign")[0]

    def posix_memalign(self, alignment: int, size: int) -> tuple[int, int]:
        """posix_memalign(3): (error, pointer)."""
        err, ptr = self._call(OP_POSIX_MEMALIGN, alignment, size, what="posix_memalign")
        return err, ptr

    def aligned_alloc(self, alignment: int, size: int) -> int:
        """aligned_alloc(3)."""
        return self._call(OP_ALIGNED_ALLOC, alignment, size, what="aligned_alloc")[0]

    def malloc_usable_size(self, ptr: int) -> int:
        """malloc_usable_size(3)."""
        return self._call(OP_USABLE, ptr, what="malloc_usable_size")[0]

    def mallopt(self, param: int, value: int) -> int:
        """mallopt(3): 1 ok, 0 refused (params as glibc numbers them: M_TRIM_THRESHOLD = -1, ...)."""
        return self._call(OP_MALLOPT, param, value, what="mallopt")[0]

    def malloc_trim(self, pad: int = 0) -> int:
        """malloc_trim(3): 1 if memory went back to the system."""
        return self._call(OP_MALLOC_TRIM, pad, what="malloc_trim")[0]

    def mallinfo2(self) -> Mallinfo2:
        """mallinfo2(3) of the main arena."""
        return Mallinfo2(*_MALLINFO2.unpack(self._call_data(OP_MALLINFO2, what="mallinfo2")))
