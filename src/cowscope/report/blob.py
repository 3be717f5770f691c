"""The report's binary side: typed arrays packed into one deflated, base64-encoded buffer.

The page reads each array back by its descriptor ``[offset, length, dtype, delta]`` (report.js);
an array stored as a patch on another is ``{"ref": descriptor, "n": length, "pos": ..., "val": ...}``.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np


class Blob:
    """Accumulates typed arrays into one binary buffer and records where each one lives.

    Identical arrays are stored once; an array close to a reference array (the same mapping at the
    previous checkpoint) is stored as a patch: positions and values of the pages that differ.
    """

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self._seen: dict[tuple[str, bool, bytes], list[Any]] = {}

    def add(self, arr: np.ndarray, delta: bool = False) -> list[Any]:
        """Append an integer array; returns its descriptor [offset, length, dtype, delta]."""
        a = np.asarray(arr)
        if delta and len(a):
            a = np.diff(a.astype(np.int64), prepend=np.int64(0))
        if a.dtype == np.uint8:
            dt, data = "u1", a.astype("<u1")
        else:
            lo, hi = (int(a.min()), int(a.max())) if len(a) else (0, 0)
            if -(2**31) <= lo and hi < 2**31:
                dt, data = "i4", a.astype("<i4")
            else:
                dt, data = "f8", a.astype("<f8")
        raw = data.tobytes()
        key = (dt, bool(delta), raw)
        if key in self._seen:
            return self._seen[key]
        pad = (-self.size) % 8
        if pad:
            self.parts.append(b"\0" * pad)
            self.size += pad
        desc = [self.size, len(a), dt, bool(delta)]
        self.parts.append(raw)
        self.size += len(raw)
        self._seen[key] = desc
        return desc

    def add_like(self, arr: np.ndarray, ref: tuple[np.ndarray, Any] | None, delta: bool = False) -> Any:
        """Store `arr` as a patch on `ref` (array, descriptor) when under a quarter of it differs."""
        a = np.asarray(arr)
        if ref is not None and len(ref[0]) == len(a) and len(a):
            pos = np.flatnonzero(a != ref[0])
            if len(pos) == 0:
                return ref[1]
            if len(pos) <= len(a) // 4:
                return {"ref": ref[1], "n": len(a), "pos": self.add(pos, delta=True),
                        "val": self.add(a[pos].astype(np.int64), delta=True)}
        return self.add(a, delta=delta)

    def encode(self) -> str:
        """Deflate (zlib format) and base64 the whole buffer."""
        return base64.b64encode(zlib.compress(b"".join(self.parts), 6)).decode("ascii")
