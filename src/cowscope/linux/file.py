"""A file of the Linux backend's machine: a real file on a disk filesystem."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass
class File:
    """A file of the machine: `path` as the scenario spells it, `real_path` where it really lives."""

    path: str
    real_path: str

    @property
    def size(self) -> int:
        """Size of the file in bytes."""
        return os.path.getsize(self.real_path)

    def read(self, offset: int = 0, n: int | None = None) -> bytes:
        """pread(2) of the file: what the page cache holds (MAP_SHARED writes included)."""
        with open(self.real_path, "rb") as f:
            f.seek(offset)
            return f.read(-1 if n is None else n)

    def pread(self, n: int, offset: int) -> bytes:
        """pread(2) of n bytes at offset."""
        return self.read(offset, n)
