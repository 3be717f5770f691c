"""A small headless-Chromium driver over the DevTools protocol on a pipe (no websocket dependency).

Chromium started with ``--remote-debugging-pipe`` reads NUL-terminated JSON commands on fd 3 and
writes replies and events on fd 4. Used by the browser test and the report benchmark.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

#: Flags for a quiet, reproducible headless run (no network side traffic, fresh profile).
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
)


def find_chromium() -> str | None:
    """Path of a Chromium binary (Debian's `chromium` first), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class BrowserError(RuntimeError):
    """Chromium failed, exited or did not answer in time."""


class Browser:
    """One headless Chromium with one page, driven over the DevTools pipe."""

    def __init__(self, binary: str | None = None, width: int = 1400, height: int = 1000,
                 timeout: float = 60.0) -> None:
        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserError("no chromium binary on PATH")
        self.timeout = timeout
        self.width, self.height = width, height
        self.console_errors: list[str] = []
        self.console_messages: list[str] = []
        self._next_id = 0
        self._buf = b""
        self._events: list[dict[str, Any]] = []
        self._profile = tempfile.TemporaryDirectory(prefix="cowscope-chromium-")
        cmd_r, self._cmd_w = os.pipe()
        self._out_r, out_w = os.pipe()
        args = [*CHROMIUM_FLAGS, f"--user-data-dir={self._profile.name}", "--remote-debugging-pipe",
                f"--window-size={width},{height}", "about:blank"]

        def wire_pipes() -> None:  # in the child: the DevTools pipe must be fds 3 and 4
            a, b = os.dup(cmd_r), os.dup(out_w)  # above 4, so neither dup2 below clobbers the other
            os.dup2(a, 3)
            os.dup2(b, 4)

        log = None if os.environ.get("COWSCOPE_CHROMIUM_LOG") else subprocess.DEVNULL
        self._proc = subprocess.Popen([self.binary, *args], preexec_fn=wire_pipes, close_fds=False,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        os.close(cmd_r)
        os.close(out_w)
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(method, session=True)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=True)

    # -- protocol -------------------------------------------------------------------------------
    def _send(self, msg: dict[str, Any]) -> None:
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self._cmd_w, data)
            data = data[n:]

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("timed out waiting for chromium")
            ready, _, _ = select.select([self._out_r], [], [], left)
            if not ready:
                continue
            chunk = os.read(self._out_r, 1 << 20)
            if not chunk:
                raise BrowserError(f"chromium exited (status {self._proc.poll()})")
            self._buf += chunk
        raw, _, self._buf = self._buf.partition(b"\0")
        return json.loads(raw)

    def _note(self, msg: dict[str, Any]) -> None:
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.console_messages.append(f"{params.get('type')}: {text}")
            if params.get("type") in ("error", "assert"):
                self.console_errors.append(text)
        elif method == "Runtime.exceptionThrown":
            d = params.get("exceptionDetails", {})
            desc = d.get("exception", {}).get("description")
            self.console_errors.append(desc or d.get("text", "exception"))
        elif method == "Log.entryAdded":
            e = params.get("entry", {})
            self.console_messages.append(f"{e.get('level')}: {e.get('text')}")
            if e.get("level") == "error":
                self.console_errors.append(f"{e.get('source')}: {e.get('text')} {e.get('url', '')}".strip())
        self._events.append(msg)

    def call(self, method: str, params: dict[str, Any] | None = None, session: bool = False,
             timeout: float | None = None) -> dict[str, Any]:
        """Send one command and return its result; events arriving meanwhile are recorded."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = self.session
        self._send(msg)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._note(reply)

    # -- page -----------------------------------------------------------------------------------
    def evaluate(self, expression: str, timeout: float | None = None) -> Any:
        """Evaluate a JS expression in the page (promises awaited) and return its JSON value."""
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": True}, session=True, timeout=timeout)
        if "exceptionDetails" in res:
            raise BrowserError(f"evaluate {expression!r}: {res['exceptionDetails'].get('text')}")
        return res.get("result", {}).get("value")

    def open(self, url: str, ready: str = "true", timeout: float | None = None) -> float:
        """Navigate to `url` and wait until JS `ready` is truthy; returns seconds taken (wall clock)."""
        t0 = time.monotonic()
        self.call("Page.navigate", {"url": url}, session=True)
        deadline = t0 + (timeout or self.timeout)
        while time.monotonic() < deadline:
            if self.evaluate(f"!!({ready})"):
                return time.monotonic() - t0
            time.sleep(0.02)
        raise BrowserError(f"page {url} not ready ({ready}) after {timeout or self.timeout} s")

    def screenshot(self, path: str | Path, full_page: bool = True, max_height: int = 8000) -> Path:
        """Save a PNG screenshot of the page (the whole page, capped at max_height pixels)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": max(self.width, int(size["width"])),
                              "height": min(max_height, int(size["height"])), "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params, session=True)["data"]
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(data))
        return out

    def close(self) -> None:
        """Stop this Chromium and remove its profile."""
        try:
            self._send({"id": self._next_id + 1, "method": "Browser.close"})
        except OSError:
            pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        for fd in (self._cmd_w, self._out_r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
