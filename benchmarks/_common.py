"""Shared plumbing: start pinned servers and the pinned load client, tables, JSON reports.

The server under test always runs on core 0 and the load client on core 1 (via `taskset`),
each in its own process; this orchestrating process stays idle while they work. Everything
talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPORT_DIR = ROOT / "reports" / "bench"
SERVER_CPU = 0
CLIENT_CPU = 1

# The one request every benchmark sends (the OpenAI Chat streaming endpoint).
BODY = b'{"model":"m","stream":true,"messages":[]}'
REQUEST = (
    b"POST /v1/chat/completions HTTP/1.1\r\n"
    b"host: 127.0.0.1\r\n"
    b"content-type: application/json\r\n"
    b"accept: text/event-stream\r\n"
    b"content-length: %d\r\n\r\n" % len(BODY)
) + BODY


def raise_nofile(want: int = 65536) -> int:
    """Raise RLIMIT_NOFILE towards `want` (bounded by the hard limit); returns the new soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def events_per_response(tokens: int) -> int:
    """SSE events in one OpenAI Chat stream: role chunk, one per token, finish chunk, [DONE]."""
    return tokens + 3


# ------------------------------------------------------------------------ child processes


class Child:
    """A benchmark subprocess, pinned to a core, speaking line-based text on stdin/stdout."""

    def __init__(self, module: str, args: Sequence[str], cpu: int | None) -> None:
        argv = [sys.executable, "-m", module, *args]
        if cpu is not None and _cores() > 1 and shutil.which("taskset"):
            argv = ["taskset", "-c", str(cpu), *argv]
        self.argv = argv
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # inherit: errors show up in the orchestrator's terminal
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def expect(self, prefix: str, timeout: float) -> str:
        """Wait for a stdout line starting with `prefix`; return the rest of it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.argv[-3:]}: no {prefix!r} line within {timeout:g}s")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(
                    f"{' '.join(self.argv)} exited ({self.proc.wait()}) before {prefix!r}"
                )
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
            print(f"    [{Path(self.argv[-1]).name}] {line}", file=sys.stderr)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:
                    pass


def _cores() -> int:
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server under test, and how to label it in tables."""

    label: str
    module: str
    args: tuple[str, ...]
    side: str  # "ours" | "starlette"
    notes: dict[str, Any] = field(default_factory=dict)


def ours(spec: str, *, loop: str = "uvloop", label: str | None = None) -> ServerSpec:
    return ServerSpec(
        label or f"ours ({loop})",
        "benchmarks.server_ours",
        ("--spec", spec, "--loop", loop),
        "ours",
        {"spec": spec, "loop": loop},
    )


def starlette(
    mode: str, tokens: int, *, interval: float = 0.05, label: str | None = None
) -> ServerSpec:
    return ServerSpec(
        label or f"starlette ({mode})",
        "benchmarks.baseline_starlette",
        ("--mode", mode, "--tokens", str(tokens), "--interval", f"{interval}"),
        "starlette",
        {
            "mode": mode,
            "tokens": tokens,
            "interval": interval,
            "loop": "uvloop",
            "http": "httptools",
        },
    )


@contextmanager
def running_server(spec: ServerSpec) -> Iterator[tuple[int, Child]]:
    """Start a server on core 0 and yield (port, child); always stop it afterwards."""
    child = Child(spec.module, spec.args, SERVER_CPU)
    try:
        port = int(child.expect("PORT", timeout=30))
        yield port, child
    finally:
        child.stop()


def run_client(config: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Run the load client on core 1 to completion and return its result."""
    child = Child("benchmarks.loadclient", (json.dumps(config),), CLIENT_CPU)
    try:
        result: dict[str, Any] = json.loads(child.expect("RESULT", timeout=timeout))
        return result
    finally:
        child.stop()


def start_client(config: dict[str, Any]) -> Child:
    """Start the load client on core 1 for an interactive run (bench_memory)."""
    return Child("benchmarks.loadclient", (json.dumps(config),), CLIENT_CPU)


# ---------------------------------------------------------------------------- reporting


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a few-second smoke version")
    return parser.parse_args()


def ratio(ours_value: float | None, base_value: float | None) -> float | None:
    if ours_value is None or base_value is None or base_value == 0:
        return None
    return ours_value / base_value


def fmt(value: Any, spec: str = ",.0f") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, str):
        return value
    if value == float("inf"):
        return "inf"
    return format(value, spec)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(
        h.ljust(w) if i == 0 else h.rjust(w)
        for i, (h, w) in enumerate(zip(headers, widths, strict=True))
    )
    print(line)
    print("-" * len(line))
    for row in rows:
        print(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )


def environment() -> dict[str, Any]:
    versions = {}
    for name in ("anyio", "h11", "uvloop", "uvicorn", "starlette", "httptools", "psutil"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores_available": _cores(),
        "pinning": {"server": SERVER_CPU, "client": CLIENT_CPU, "tool": shutil.which("taskset")},
        "versions": versions,
    }


def write_report(name: str, data: dict[str, Any]) -> Path:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    path = REPORT_DIR / f"{name}.json"
    data = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **data}
    data["environment"] = environment()
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path
