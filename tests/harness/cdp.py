"""Headless Chromium driven over the DevTools protocol on a pipe (no port, no extra package).

`--remote-debugging-pipe` makes Chromium read commands from fd 3 and write answers and events
to fd 4, each a JSON message ended by a NUL byte. `Browser` starts it with a fresh profile,
opens one page, and keeps every event it sees so a test can ask what the page logged or
fetched. Every wait is bounded; nothing sleeps.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

WAIT = 60.0  # s: a bound for a loaded machine, never a pace


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(Exception):
    pass


class Browser:
    """`with Browser() as b: b.open(url); b.evaluate(...); b.screenshot(path)`."""

    def __init__(self, *, width: int = 1280, height: int = 1000, javascript: bool = True) -> None:
        self.width, self.height, self.javascript = width, height, javascript
        self.events: list[dict[str, Any]] = []
        self._answers: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._next = 0
        self._lock = threading.Lock()
        self.session = ""

    def __enter__(self) -> Browser:
        binary = chromium()
        if binary is None:
            raise BrowserError("chromium is not installed")
        self._profile = tempfile.mkdtemp(prefix="cancel-harness-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds_3_and_4() -> None:  # in the child, before exec
            high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD_CLOEXEC, 10)
            high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self._proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--remote-debugging-pipe",
                f"--user-data-dir={self._profile}",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=fds_3_and_4,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        threading.Thread(target=self._read, daemon=True, name="cdp-reader").start()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )
        if not self.javascript:
            self.call("Emulation.setScriptExecutionDisabled", {"value": True})
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(BrowserError):
            self.call("Browser.close", session=False, wait=10.0)
        try:
            self._proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        os.close(self._to_chrome)
        shutil.rmtree(self._profile, ignore_errors=True)

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                self._events.put({"method": "__closed__"})
                with self._lock:
                    for waiting in self._answers.values():
                        waiting.put({"error": {"message": "the browser closed the pipe"}})
                os.close(self._from_chrome)
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._lock:
                        waiting = self._answers.pop(message["id"], None)
                    if waiting is not None:
                        waiting.put(message)
                else:
                    self._events.put(message)

    def call(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        session: bool = True,
        wait: float = WAIT,
    ) -> dict[str, Any]:
        answer: queue.Queue[dict[str, Any]] = queue.Queue()
        with self._lock:
            self._next += 1
            ident = self._next
            self._answers[ident] = answer
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        try:
            os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        except OSError as exc:
            raise BrowserError(f"{method}: cannot write to the browser ({exc})") from None
        try:
            reply = answer.get(timeout=wait)
        except queue.Empty:
            raise BrowserError(f"{method}: no answer within {wait:g} s") from None
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})  # type: ignore[no-any-return]

    def wait_event(self, method: str, wait: float = WAIT) -> dict[str, Any]:
        """The next event `method` (every event seen meanwhile is kept in `events`)."""
        while True:
            try:
                event = self._events.get(timeout=wait)
            except queue.Empty:
                raise BrowserError(f"no {method} within {wait:g} s") from None
            if event["method"] == "__closed__":
                raise BrowserError(f"the browser went away before {method}")
            self.events.append(event)
            if event["method"] == method:
                return event

    def drain(self) -> None:
        """Keep every event already delivered."""
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                return
            if event["method"] != "__closed__":
                self.events.append(event)

    def open(self, url: str) -> None:
        """Navigate and wait for the load event."""
        self.call("Page.navigate", {"url": url})
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        found = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in found:
            raise BrowserError(f"script failed: {found['exceptionDetails']}")
        return found["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """The whole page as PNG."""
        metrics = self.call("Page.getLayoutMetrics")
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        clip = {"x": 0, "y": 0, "width": self.width, "height": size["height"], "scale": 1}
        shot = self.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True, "clip": clip},
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    # ---------------------------------------------------------------- what the page did

    def console_errors(self) -> list[str]:
        self.drain()
        out = []
        for e in self.events:
            params = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                out.append(json.dumps(params.get("exceptionDetails", {}))[:300])
            elif e["method"] == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "assert",
            ):
                out.append(json.dumps(params.get("args", []))[:300])
            elif (
                e["method"] == "Log.entryAdded" and params.get("entry", {}).get("level") == "error"
            ):
                out.append(str(params["entry"].get("text")))
        return out

    def requests(self) -> list[str]:
        self.drain()
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e["method"] == "Network.requestWillBeSent"
        ]
