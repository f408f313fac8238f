"""Shared plumbing: start pinned servers and the pinned load client, tables, JSON reports.

The server under test always runs on core 0 and the load client on core 1 (via `taskset`),
each in its own process; this orchestrating process stays idle while they work. Everything
talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
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
            preexec_fn=_raise_priority,
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
                with contextlib.suppress(OSError):
                    pipe.close()


NICE = -10


def _raise_priority() -> None:
    """Run servers and the client at nice -10 where allowed (root), so that other work on a
    shared machine takes little of their cores; silently stays at 0 otherwise.

    With the kernel's autogroup scheduling (`/proc/sys/kernel/sched_autogroup_enabled`), a
    process's nice value only ranks it within its own session's group, and every session
    gets an equal share: nice -10 alone does nothing against another session's busy loop.
    So each child starts its own session and sets that group's nice too
    (`/proc/self/autogroup`, see sched(7)); it affects only the benchmark's own processes.
    """
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, NICE)
    with contextlib.suppress(OSError):
        os.setsid()
        Path("/proc/self/autogroup").write_text(str(NICE))


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


def wait_quiet(max_wait: float = 30.0, busy_limit: float = 25.0) -> dict[str, Any]:
    """Wait (bounded) until the machine is nearly idle, so other work does not skew a run.

    Other people's test runs may share this machine; this samples total CPU use in 0.5 s
    steps until it is under `busy_limit` percent (of all cores) or `max_wait` passes.
    Returns what it saw, for the report.
    """
    import psutil

    t0 = time.monotonic()
    busy = psutil.cpu_percent(interval=0.5)
    while busy > busy_limit and time.monotonic() - t0 < max_wait:
        busy = psutil.cpu_percent(interval=0.5)
    waited = time.monotonic() - t0
    quiet = busy <= busy_limit
    if not quiet:
        print(f"    (machine still {busy:.0f}% busy after {waited:.0f}s: figures may be skewed)")
    return {"waited_s": round(waited, 1), "busy_pct_before": busy, "quiet": quiet}


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


# ------------------------------------------------------------------------ same bytes?


def fetch_body(port: int, max_events: int | None = None, timeout: float = 30.0) -> bytes:
    """One response body (de-chunked), read with a plain blocking socket on 127.0.0.1.

    Reads to the end of the response, or only until `max_events` SSE events arrived
    (for hanging streams).
    """
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(REQUEST)
        data = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
            if data.endswith(b"\r\n0\r\n\r\n"):
                break
            if max_events is not None and data.count(b"\n\n") >= max_events:
                break
    head, _, rest = data.partition(b"\r\n\r\n")
    if b"chunked" not in head.lower():
        return rest
    body = bytearray()
    pos = 0
    while pos < len(rest):
        eol = rest.find(b"\r\n", pos)
        if eol < 0:
            break
        size = int(rest[pos:eol].split(b";")[0], 16)
        if size == 0:
            break
        body += rest[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2
    return bytes(body)


def same_bytes(ours_body: bytes, base_body: bytes) -> dict[str, Any]:
    """Compare the SSE payloads the two servers sent for the same request."""
    if ours_body == base_body:
        return {"identical": True, "bytes": len(ours_body), "events": ours_body.count(b"\n\n")}
    at = next(
        (i for i, (a, b) in enumerate(zip(ours_body, base_body, strict=False)) if a != b),
        min(len(ours_body), len(base_body)),
    )
    return {
        "identical": False,
        "ours_bytes": len(ours_body),
        "starlette_bytes": len(base_body),
        "first_difference_at": at,
        "ours_context": ours_body[max(0, at - 40) : at + 40].decode("utf-8", "replace"),
        "starlette_context": base_body[max(0, at - 40) : at + 40].decode("utf-8", "replace"),
    }


def describe_same(check: dict[str, Any]) -> str:
    if check["identical"]:
        return (
            f"identical SSE bytes from both servers ({check['bytes']:,} bytes, "
            f"{check['events']} events)"
        )
    return (
        f"WARNING: SSE bytes differ at byte {check['first_difference_at']} "
        f"(ours {check['ours_bytes']:,} vs starlette {check['starlette_bytes']:,} bytes): "
        f"{check['ours_context']!r} vs {check['starlette_context']!r}"
    )


# ---------------------------------------------------------------------------- reporting


def parse_args(description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a few-second smoke version")
    return parser.parse_args()


def ratio(ours_value: float | None, base_value: float | None) -> float | None:
    if ours_value is None or base_value is None or base_value == 0:
        return None
    return ours_value / base_value


def fmt(value: Any, spec: str = ",.0f", suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, str):
        return value
    if value == float("inf"):
        return "inf"
    return format(value, spec) + suffix


def fmt_cores(res: dict[str, Any]) -> str:
    """CPU used by other processes during a client run, for the per-run lines."""
    return f"others {res.get('other_processes_cpu_pct', 0.0):.0f}%"


def outside_load(res: dict[str, Any]) -> float:
    """CPU (% of one core) that other processes used during a client run.

    Anything above ~10 means someone else's work may have shared our cores.
    """
    return float(res.get("other_processes_cpu_pct", 0.0))


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
    versions: dict[str, str | None] = {}
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
        "code": code_version(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores_available": _cores(),
        "pinning": {"server": SERVER_CPU, "client": CLIENT_CPU, "tool": shutil.which("taskset")},
        "nice": NICE if os.geteuid() == 0 else 0,
        "versions": versions,
    }


def code_version() -> dict[str, Any]:
    """Which server code was measured: the commit, and a digest of fake_providers/ as it is
    on disk (it may carry uncommitted edits)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted((ROOT / "fake_providers").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = ""
    return {"commit": head or None, "fake_providers_sha256": digest.hexdigest()[:16]}


def report_path(name: str, *, quick: bool = False) -> Path:
    """reports/bench/NAME.json; a `--quick` smoke run goes to NAME.quick.json instead, so it
    never overwrites the figures of a real run."""
    return REPORT_DIR / (f"{name}.quick.json" if quick else f"{name}.json")


def write_report(name: str, data: dict[str, Any]) -> Path:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    path = report_path(name, quick=bool(data.get("quick")))
    data = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **data}
    data["environment"] = environment()
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path
