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
