"""Native helpers shipped as C source: compiled with the system compiler into a per-user cache.

One mechanism for the Linux backend's agent, the malloc harness and the benchmark program: the
binary's name carries the source's hash, so a changed source is rebuilt; a missing compiler is a
clear message.

What runs is only ever what this user built. The cache is a directory owned by the current user
that no one else can write to, below directories no one else can rename things in (created 0700;
an explicit $COWSCOPE_CACHE that fails this is refused with the reason). A cached binary runs only
when it is a regular file of ours, not writable by others, whose SHA-256 matches the one recorded
beside it at build time; anything else is rebuilt. Builds happen in a fresh private directory and
are renamed into place (atomic; rename replaces a planted symlink instead of following it). When
the default cache belongs to someone else (root under `sudo -E` with the user's HOME) or cannot be
created, the build goes into a private `mkdtemp` directory for this run instead, never a
predictable shared path.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class NativeBuildError(RuntimeError):
    """A native helper could not be compiled (no C compiler, the compiler failed, an unsafe cache)."""


class UnsafeCacheError(NativeBuildError):
    """The cache directory could be written by another user: what it holds must not be run."""


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


# --- who may write where ----------------------------------------------------------------------


def _owner_ok(st: os.stat_result) -> bool:
    return st.st_uid in (0, os.geteuid())


def ancestor_problem(path: Path) -> str | None:
    """Why another user could replace `path` (an absolute, resolved path) by renaming or
    creating entries in one of its ancestors; None when every ancestor is owned by root or us
    and writable by no one else (or sticky, as /tmp)."""
    for anc in reversed(path.parents):
        st = os.lstat(anc)
        if not _owner_ok(st):
            return f"{anc} belongs to uid {st.st_uid}"
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            return f"{anc} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def dir_problem(path: Path) -> str | None:
    """Why the directory `path` is not a private cache of ours; None when it is."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != os.geteuid():
        return f"{path} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return ancestor_problem(path)


def _make_private(path: Path) -> Path:
    """`path` resolved, created 0700 if missing; UnsafeCacheError when it is not ours alone."""
    real = Path(os.path.realpath(path))
    if not real.exists():
        real.mkdir(mode=0o700, parents=True, exist_ok=True)
    problem = dir_problem(real)
    if problem:
        raise UnsafeCacheError(problem)
    return real


_PRIVATE: list[Path] = []  # this run's mkdtemp fallback, removed at exit


def _private_fallback(reason: str) -> Path:
    """A fresh private directory (mkdtemp: 0700, unpredictable name) for this run's builds."""
    if not _PRIVATE:
        _PRIVATE.append(Path(tempfile.mkdtemp(prefix="cowscope-build-")))
        atexit.register(shutil.rmtree, str(_PRIVATE[0]), True)
        print(f"cowscope: not using the build cache ({reason}); building into a private temporary "
              "directory for this run (set COWSCOPE_CACHE to a directory of your own to keep builds)",
              file=sys.stderr)
    return _PRIVATE[0]


def build_dir(error: type[Exception] = NativeBuildError) -> Path:
    """The directory builds go to: the cache if it is ours alone, else a private temp directory.

    Refused with the reason: an explicit $COWSCOPE_CACHE that is not safe, and a default cache of
    ours that others can write (someone may have planted a file in it already). A default cache
    that belongs to someone else, or cannot be created, gives way to a private temp directory."""
    wanted = cache_dir()
    explicit = bool(os.environ.get("COWSCOPE_CACHE"))
    try:
        return _make_private(wanted)
    except UnsafeCacheError as e:
        if explicit or _ours(wanted):
            raise error(f"refusing the build cache {wanted}: {e}; another user could make cowscope run "
                        "their program as you. Use a directory of your own that only you can write "
                        "(chmod 700), or unset COWSCOPE_CACHE.") from None
        return _private_fallback(str(e))
    except OSError as e:  # a read-only or missing home (some sandboxes)
        if explicit:
            raise error(f"cannot create the build cache {wanted}: {e.strerror or e}") from None
        return _private_fallback(f"cannot create {wanted}: {e.strerror or e}")


def _ours(path: Path) -> bool:
    """The directory itself is ours (its problem is its mode or an ancestor's)."""
    try:
        return os.lstat(os.path.realpath(path)).st_uid == os.geteuid() and ancestor_problem(
            Path(os.path.realpath(path))) is None
    except OSError:
        return False


# --- the cached binary ------------------------------------------------------------------------


def _read_own_file(path: Path, executable: bool) -> bytes | None:
    """The bytes of `path` if it is a regular file of ours (not a symlink), writable by no one
    else (and executable by us when asked); None otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if (not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid()
                or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or (executable and not st.st_mode & stat.S_IXUSR)):
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    finally:
        os.close(fd)


def verified(binary: Path) -> bool:
    """The binary is ours, writable by no one else, and hashes to what was recorded at build."""
    data = _read_own_file(binary, executable=True)
    recorded = _read_own_file(binary.with_name(binary.name + ".sha256"), executable=False)
    if data is None or recorded is None:
        return False
    return hashlib.sha256(data).hexdigest() == recorded.decode(errors="replace").strip()


def _write_new(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create `path` (never an existing name, never through a symlink) holding `data`."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _compile(cc: str, name: str, source: bytes, flags: tuple[str, ...], work: Path,
             error: type[Exception]) -> Path:
    """Compile `source` in the private directory `work`; the binary (0700) and its .sha256."""
    src_file, exe = work / f"{name}.c", work / name
    _write_new(src_file, source)
    cmd = [cc, *flags, "-o", str(exe), str(src_file)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise error(f"cannot run the C compiler {cc!r}: {exc}") from None
    if proc.returncode != 0:
        raise error(f"compiling {name} failed ({' '.join(cmd)}):\n{proc.stderr}")
    os.chmod(exe, 0o700)
    _write_new(work / f"{name}.sha256", hashlib.sha256(exe.read_bytes()).hexdigest().encode() + b"\n")
    return exe


def build(name: str, source: bytes, purpose: str, flags: tuple[str, ...] = ("-O2", "-Wall"),
          error: type[Exception] = NativeBuildError) -> Path:
    """The compiled `name` for this source: from the cache when verified, else compiled now
    (builds of `name` unused for STALE_DAYS removed: another checkout or version may still run its own)."""
    digest = hashlib.sha256(source).hexdigest()[:16]
    where = build_dir(error)
    out = where / f"{name}-{digest}"
    if verified(out):
        os.utime(out.with_name(out.name + ".sha256"))  # last used: keeps it from being pruned
        return out
    cc = find_compiler(purpose, error)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-build-", dir=where))
    try:
        exe = _compile(cc, name, source, flags, work, error)
        os.replace(work / f"{name}.sha256", out.with_name(out.name + ".sha256"))
        os.replace(exe, out)  # atomic; replaces whatever entry had the name, never follows it
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _prune_unused(where, name, keep=out)
    return out


STALE_DAYS = 7


def _prune_unused(where: Path, name: str, keep: Path) -> None:
    """Remove other builds of `name` whose record was last used STALE_DAYS ago or more (a build
    another cowscope checkout or version uses now is kept, so it never vanishes under it)."""
    cutoff = time.time() - STALE_DAYS * 86400
    for record in where.glob(f"{name}-*.sha256"):
        binary = record.with_name(record.name.removesuffix(".sha256"))
        if binary == keep:
            continue
        try:
            if record.lstat().st_mtime < cutoff:
                binary.unlink(missing_ok=True)
                record.unlink(missing_ok=True)
        except OSError:
            continue
