"""Which processes to inspect: explicit PIDs, or a process and all its descendants (psutil)."""

from __future__ import annotations

from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Missed:
    """A process that could not be (fully) inspected, and why."""

    pid: int
    kind: str    # "not-found", "gone", "permission", "kernel-thread", "error"
    reason: str

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {"pid": self.pid, "kind": self.kind, "reason": self.reason}


def has_children(pid: int) -> bool:
    """True if any thread of `pid` has a child now (/proc/PID/task/TID/children)."""
    import os

    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                if f.read().strip():
                    return True
        except OSError:
            continue
    return False


def read_pidfile(path: str) -> int:
    """The pid written in a pid file (gunicorn --pid, uWSGI --pidfile, Redis pidfile): ValueError
    saying what is wrong when it cannot be read or holds no pid."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read(64).strip()
    except OSError as exc:
        raise ValueError(f"cannot read pid file {path}: {exc.strerror}") from None
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"pid file {path} holds no pid ({text[:20]!r})")
    return int(text)


def process_title(cmdline: list[str]) -> str | None:
    """The title a process gave itself by rewriting its command line (setproctitle: Redis's
    `redis-rdb-bgsave 127.0.0.1:6379`, gunicorn's `gunicorn: worker [app]`, nginx, PostgreSQL), or None.

    Such a title overwrites the argv area with one string that contains spaces; an argv[0] that
    execve set is a path or a word without them.
    """
    if not cmdline or " " not in cmdline[0].strip():
        return None
    return " ".join(a for a in cmdline if a).strip() or None


def discover(roots: list[int], tree: bool) -> tuple[list[int], list[Missed]]:
    """The PIDs to read (roots first, then descendants breadth-first) and the roots that do not exist."""
    pids: list[int] = []
    missed: list[Missed] = []
    for root in roots:
        if root <= 0 or (tree and not psutil.pid_exists(root)):
            missed.append(Missed(root, "not-found", f"no process with pid {root}"))
            continue
        pids.append(root)  # without --tree, a pid that does not exist is found out by the first read
        if not tree:
            continue
        try:
            kids = psutil.Process(root).children(recursive=True)
        except psutil.NoSuchProcess:
            missed.append(Missed(root, "gone", f"pid {root} exited before its children were listed"))
            pids.pop()
            continue
        except psutil.AccessDenied:
            missed.append(Missed(root, "permission", f"pid {root}: permission denied listing children"))
            continue
        pids.extend(k.pid for k in kids)
    seen: set[int] = set()
    ordered = [p for p in pids if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]
    return ordered, missed
