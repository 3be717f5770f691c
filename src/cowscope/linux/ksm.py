"""KSM on the real kernel: run ksmd for one scan step of a scenario, then stop it again.

`/sys/kernel/mm/ksm/run` is global. `ksm_scan()` takes a lock (so two controllers on the machine do
not restore each other's setting), remembers `run`, sets it to 1, waits until `full_scans` has
gone up by three (every page of every MADV_MERGEABLE area scanned at least twice: once for its
checksum, once to merge), and restores `run` in a `finally`. Merged pages stay merged with run 0.
Needs root.
"""

from __future__ import annotations

import fcntl
import os
import time

from ..errors import CowscopeError, Unsupported

KSM = "/sys/kernel/mm/ksm"
LOCK = "/var/tmp/cowscope-ksm.lock"
COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "full_scans",
            "pages_scanned")


def ksm_problem() -> str | None:
    """Why this process cannot drive ksmd (None when it can)."""
    if not os.path.exists(f"{KSM}/run"):
        return "this kernel has no KSM (CONFIG_KSM)"
    if os.geteuid() != 0:
        return "KSM scans need root (/sys/kernel/mm/ksm/run)"
    return None


def _read(name: str) -> int:
    with open(f"{KSM}/{name}") as f:
        return int(f.read().split()[0])


def _write(name: str, value: int) -> None:
    with open(f"{KSM}/{name}", "w") as f:
        f.write(str(value))


def ksm_scan(timeout: float = 60.0) -> None:
    """Let ksmd merge what it can now (see the module docstring); `run` is restored afterwards."""
    why = ksm_problem()
    if why:
        raise Unsupported(why)
    with open(LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = _read("run")
        try:
            start = _read("full_scans")
            _write("run", 1)
            deadline = time.monotonic() + timeout
            while _read("full_scans") < start + 3:
                if time.monotonic() > deadline:
                    raise CowscopeError(f"ksmd did not finish three full scans in {timeout:g} s")
                time.sleep(0.005)
        finally:
            _write("run", old)


def ksm_counters() -> dict[str, int]:
    """/sys/kernel/mm/ksm counters."""
    return {name: _read(name) for name in COUNTERS}


def parse_ksm_stat(text: str) -> dict[str, int | str]:
    """/proc/PID/ksm_stat lines ("ksm_rmap_items 7", "ksm_mergeable: yes") as a dict."""
    out: dict[str, int | str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        key, value = key.rstrip(":"), value.strip()
        out[key] = int(value) if value.lstrip("-").isdigit() else value
    return out
