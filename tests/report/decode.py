"""A Python reader of the report's embedded payload, mirroring report.js, for round-trip tests."""

from __future__ import annotations

import base64
import json
import re
import zlib
from typing import Any

import numpy as np


class Payload:
    """Metadata and decoded arrays of a report HTML file."""

    def __init__(self, html: str) -> None:
        meta = re.search(r'<script type="application/json" id="meta">(.*?)</script>', html, re.S)
        blob = re.search(r'<script type="application/octet-stream" id="blob">([^<]*)</script>', html)
        assert meta and blob, "report lacks its meta or blob script"
        self.meta: dict[str, Any] = json.loads(meta.group(1))
        self.raw = zlib.decompress(base64.b64decode(blob.group(1)))

    @classmethod
    def of(cls, meta: dict[str, Any], blob: str) -> Payload:
        """From build_payload's result, without HTML (the metadata through JSON, as the page gets it)."""
        self = cls.__new__(cls)
        self.meta = json.loads(json.dumps(meta))
        self.raw = zlib.decompress(base64.b64decode(blob))
        return self

    def col(self, desc: Any) -> np.ndarray:
        """Decode one descriptor (plain [off, n, dtype, delta] or a patch) into an int64 array."""
        if isinstance(desc, dict):
            out = self.col(desc["ref"]).copy()
            out[self.col(desc["pos"])] = self.col(desc["val"])
            return out
        off, n, dt, delta = desc
        a = np.frombuffer(self.raw, dtype={"u1": "<u1", "i4": "<i4", "f8": "<f8"}[dt], count=n, offset=off)
        a = a.astype(np.int64)
        return np.cumsum(a) if delta else a

    def pages(self, step: int, pid: int, start: int, cmp: bool = False) -> dict[str, np.ndarray]:
        """code/mc/pfn arrays of one mapping at one step (the compare series' when cmp)."""
        for p in self.meta["steps"][step]["processes"]:
            if p["pid"] == pid:
                for m in p["mappings"]:
                    if m["start"] == start:
                        src = m["cmp"]["pages"] if cmp else m["pages"]
                        return {k: self.col(v) for k, v in src.items()}
        raise KeyError((step, pid, start))

    def events(self) -> dict[str, np.ndarray]:
        """All event columns, decoded."""
        e = self.meta["events"]
        return {k: self.col(v) for k, v in e.items() if isinstance(v, list) and len(v) == 4
                and isinstance(v[0], int)}
