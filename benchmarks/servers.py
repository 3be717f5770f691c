"""Real servers for benchmarks and checks: Redis and a gunicorn pre-fork app, on 127.0.0.1.

Each launcher is a context manager that starts the server with its own free port and its own
temporary directory, waits until it answers, yields a handle, and on exit stops it (SIGTERM, then
SIGKILL after a grace period) and removes the directory. Every wait is bounded in time.

    with redis_server(extra=["--enable-debug-command", "yes"]) as r:
        r.call("DEBUG", "POPULATE", "100000")
    with gunicorn_app(APP_SOURCE, workers=3) as g:
        http_load(g.port, requests=500)

Installs: `redis-server` (apt) and `gunicorn` (pip) — see `ensure_redis()` / `ensure_gunicorn()`.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait until 127.0.0.1:port accepts connections (RuntimeError if the process dies or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process (its group when it leads one), SIGKILL after `grace` seconds; reaped."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


# --- Redis ----------------------------------------------------------------------------------------

def ensure_redis() -> str:
    """The redis-server binary, installed with apt-get when missing (root)."""
    path = shutil.which("redis-server")
    if path is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"],
                       check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                       stdout=subprocess.DEVNULL)
        path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    return path


class Resp:
    """A minimal Redis client (RESP2 over one socket): enough for benchmarks, no dependency."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.buf = b""

    def send(self, *args: str | bytes | int) -> None:
        parts = [b"*%d\r\n" % len(args)]
        for a in args:
            data = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self) -> object:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            if kind == b"-":
                raise RuntimeError(rest.decode())
            return rest.decode()
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.sock.recv(65536)
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            return [self.reply() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected reply {line!r}")

    def call(self, *args: str | bytes | int) -> object:
        self.send(*args)
        return self.reply()

    def info(self, section: str = "") -> dict[str, str]:
        raw = self.call("INFO", section) if section else self.call("INFO")
        assert isinstance(raw, bytes)
        return dict(line.split(":", 1) for line in raw.decode().splitlines() if ":" in line)

    def close(self) -> None:
        self.sock.close()


@dataclass
class RedisHandle:
    proc: subprocess.Popen[bytes]
    port: int
    dir: str
    log: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def client(self) -> Resp:
        return Resp(self.port)

    def call(self, *args: str | bytes | int) -> object:
        c = self.client()
        try:
            return c.call(*args)
        finally:
            c.close()


@contextlib.contextmanager
def redis_server(extra: list[str] | None = None, timeout: float = 30.0) -> Iterator[RedisHandle]:
    """redis-server on 127.0.0.1, its own port and directory, no persistence unless asked."""
    binary = ensure_redis()
    port, workdir = free_port(), tempfile.mkdtemp(prefix="cowscope-redis-")
    log = os.path.join(workdir, "redis.log")
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir, "--logfile", log,
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes", *(extra or [])]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_port(port, proc, timeout)
        yield RedisHandle(proc, port, workdir, log)
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


# --- gunicorn -------------------------------------------------------------------------------------

def ensure_gunicorn(titles: bool = False) -> None:
    """gunicorn importable by this Python, installed with pip when missing; with `titles`, also
    setproctitle, with which gunicorn names its processes ("gunicorn: worker [app:app]")."""
    import importlib.util

    wanted = ["gunicorn", *(["setproctitle"] if titles else [])]
    missing = [name for name in wanted if importlib.util.find_spec(name) is None]
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", *missing], check=True)


@dataclass
class GunicornHandle:
    proc: subprocess.Popen[bytes]
    port: int
    dir: str

    @property
    def pid(self) -> int:
        """The master's pid (its workers are its children)."""
        return self.proc.pid

    def workers(self) -> list[int]:
        import psutil

        return [c.pid for c in psutil.Process(self.pid).children()]


@contextlib.contextmanager
def gunicorn_app(source: str, workers: int = 3, preload: bool = True, timeout: float = 60.0,
                 env: dict[str, str] | None = None) -> Iterator[GunicornHandle]:
    """gunicorn serving `source` (a module defining a WSGI `app`) on 127.0.0.1 with sync workers."""
    ensure_gunicorn()
    port, workdir = free_port(), tempfile.mkdtemp(prefix="cowscope-gunicorn-")
    with open(os.path.join(workdir, "app.py"), "w") as f:
        f.write(source)
    argv = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--worker-class", "sync", "--chdir", workdir, "--log-level", "warning"]
    argv += ["--preload"] if preload else []
    proc = subprocess.Popen([*argv, "app:app"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(workdir, "gunicorn.log"), "wb"),  # noqa: SIM115
                            start_new_session=True, env={**os.environ, **(env or {})})
    try:
        wait_port(port, proc, timeout)
        deadline = time.monotonic() + timeout
        handle = GunicornHandle(proc, port, workdir)
        while len(handle.workers()) < workers and time.monotonic() < deadline:
            time.sleep(0.1)
        yield handle
    finally:
        stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def http_load(port: int, requests: int = 200, path: str = "/", max_seconds: float = 60.0) -> int:
    """GET `path` up to `requests` times (bounded by `max_seconds`); how many answered 200."""
    ok = 0
    deadline = time.monotonic() + max_seconds
    for _ in range(requests):
        if time.monotonic() > deadline:
            break
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", path)
            ok += conn.getresponse().status == 200
        finally:
            conn.close()
    return ok
