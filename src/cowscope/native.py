"""Native helpers shipped as C source: compiled with the system compiler into a per-user cache.

One mechanism for the Linux backend's agent, the malloc harness and the benchmark program: the
binary's name carries the source's hash, so a changed source is rebuilt; builds are atomic, so
concurrent users never see a half-written binary; a missing compiler is a clear message.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


class NativeBuildError(RuntimeError):
    """A native helper could not be compiled (no C compiler, or the compiler failed)."""


def cache_dir() -> Path:
    """$COWSCOPE_CACHE, else $XDG_CACHE_HOME/cowscope, else ~/.cache/cowscope."""
    if os.environ.get("COWSCOPE_CACHE"):
        return Path(os.environ["COWSCOPE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cowscope"


def find_compiler(purpose: str, error: type[Exception] = NativeBuildError) -> str:
    """$CC, else cc, gcc or clang on PATH; `error` with a clear message when none can be run."""
    cc = os.environ.get("CC")
    if cc:
        path = shutil.which(cc.split()[0])
        if path:
            return path
        raise error(f"{purpose}, but cannot run the C compiler {cc!r} named by $CC: not found. "
                    "Unset CC or point it at a compiler.")
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return path
    raise error(f"{purpose}, but no C compiler was found (looked for $CC, cc, gcc, clang). "
                "Install one (e.g. `apt-get install gcc`) or set CC.")


def build(name: str, source: bytes, purpose: str, flags: tuple[str, ...] = ("-O2", "-Wall"),
          error: type[Exception] = NativeBuildError) -> Path:
    """The compiled `name` for this source: from the cache, or compiled now (stale builds removed)."""
    digest = hashlib.sha256(source).hexdigest()[:16]
    out = cache_dir() / f"{name}-{digest}"
    if out.exists() and os.access(out, os.X_OK):
        return out
    cc = find_compiler(purpose, error)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home (some sandboxes): build into the temp dir instead
        out = Path(tempfile.gettempdir()) / f"cowscope-{os.getuid()}" / out.name
        if out.exists() and os.access(out, os.X_OK):
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
    src_file = out.parent / f"{name}-{digest}.c"
    src_file.write_bytes(source)
    tmp = out.parent / f".{name}-{digest}.{os.getpid()}"
    cmd = [cc, *flags, "-o", str(tmp), str(src_file)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise error(f"cannot run the C compiler {cc!r}: {exc}") from None
    if proc.returncode != 0:
        raise error(f"compiling {name} failed ({' '.join(cmd)}):\n{proc.stderr}")
    os.replace(tmp, out)  # atomic
    for old in out.parent.glob(f"{name}-*"):
        if old not in (out, src_file):
            old.unlink(missing_ok=True)
    return out
