"""Build and run the native malloc harness: the same operation files on the real glibc.

The C source ships in `cowscope/model/libc/native/malloc_harness.c`; it is compiled with the
system `cc` into a per-user cache directory the first time it is needed (and again whenever the
source changes: the binary's name carries the source's hash).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from ....native import NativeBuildError, build

NATIVE = Path(__file__).resolve().parent.parent / "native"
#: compiled as one translation unit, in this order (the .c files' own #include of the header dropped)
SOURCES = ("malloc_harness.h", "malloc_harness.c", "malloc_threads.c")


def harness_source() -> bytes:
    """The harness's C source as one translation unit, with #line markers per file."""
    parts = []
    for name in SOURCES:
        text = (NATIVE / name).read_text(encoding="utf-8").replace('#include "malloc_harness.h"\n', "\n")
        parts.append(f'#line 1 "{name}"\n{text}')
    return "".join(parts).encode()


class NativeHarnessError(NativeBuildError):
    """The native harness could not be built or run."""


def harness_path() -> Path:
    """Path of the compiled harness, compiling it first if needed."""
    return build("malloc_harness", harness_source(),
                 "running operations on the real glibc needs the native malloc harness compiled",
                 ("-O2", "-pthread"), NativeHarnessError)


def glibc_version() -> str:
    """The running glibc's version (gnu_get_libc_version)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        return libc.gnu_get_libc_version().decode()
    except (OSError, AttributeError):
        return "unknown"


def run_native(ops_text: str, with_state: bool = False, timeout: float = 120) -> tuple[list[str], list[str]]:
    """Run ops on the real glibc; return (the `.expected` lines, the `.state` lines)."""
    exe = harness_path()
    with tempfile.TemporaryDirectory(prefix="cowscope-mh-") as d:
        ops = Path(d) / "case.ops"
        ops.write_text(ops_text)
        argv = [str(exe), str(ops)]
        state = Path(d) / "case.state"
        if with_state:
            argv.append(str(state))
        # an empty environment: no GLIBC_TUNABLES / MALLOC_* variables, as in the reference runs
        proc = subprocess.run(argv, capture_output=True, env={}, timeout=timeout)
        lines = proc.stdout.decode(errors="replace").splitlines()
        lines += [f"# stderr: {x}" for x in proc.stderr.decode(errors="replace").splitlines()]
        rc = proc.returncode
        if rc < 0:
            lines.append(f"# exit: signal {-rc}")
        else:
            lines.append(f"# exit: status {rc}")
        if rc in (2, 3) and not lines[0].startswith("# harness"):
            raise NativeHarnessError("native harness failed: " + proc.stderr.decode(errors="replace"))
        states = state.read_text().splitlines() if with_state and state.exists() else []
    return lines, states


__all__ = ["NativeHarnessError", "glibc_version", "harness_path", "run_native"]
