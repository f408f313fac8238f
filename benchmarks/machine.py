"""What the benchmarks ran on: the machine, how busy it was, and which code was measured.

This machine may be shared (other people run tests): a run first waits (bounded) for it to
go quiet, and every report says how loaded it was, so a disturbed figure can be told apart.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks import ROOT
from benchmarks.children import CLIENT_CPU, NICE, SERVER_CPU, cores


def wait_quiet(max_wait: float = 30.0, busy_limit: float = 25.0) -> dict[str, Any]:
    """Wait (bounded) until the machine is nearly idle, so other work does not skew a run.

    Samples total CPU use in 0.5 s steps until it is under `busy_limit` percent (of all
    cores) or `max_wait` passes. Returns what it saw, for the report.
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
    return {
        "waited_s": round(waited, 1),
        "busy_pct_before": busy,
        "quiet": quiet,
        "load_average": load_average(),
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (runnable processes), as `uptime` shows them."""
    return [round(x, 2) for x in os.getloadavg()]


def outside_load(res: dict[str, Any]) -> float:
    """CPU (% of one core) that other processes used during a client run.

    Anything above ~10 means someone else's work may have shared our cores.
    """
    return float(res.get("other_processes_cpu_pct", 0.0))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """The machine, in the words a reader needs to compare figures: CPU, cores, OS, Python."""
    return {
        "cpu": cpu_model(),
        "cores": cores(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in ("anyio", "h11", "uvloop", "uvicorn", "starlette", "httptools", "psutil"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "code": code_version(),
        **machine(),
        "platform": platform.platform(),
        "pinning": {"server": SERVER_CPU, "client": CLIENT_CPU, "tool": shutil.which("taskset")},
        "nice": NICE if os.geteuid() == 0 else 0,
        "versions": versions,
        "load_average_after": load_average(),
    }


def code_version() -> dict[str, Any]:
    """Which code was measured: the commit, whether the tree had uncommitted changes to
    Python code, and a digest of fake_providers/ as it is on disk."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "fake_providers").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    head, dirty = None, None
    try:
        head = _git("rev-parse", "HEAD") or None
        status = _git("status", "--porcelain", "--", "fake_providers", "harness", "benchmarks")
        dirty = any(line.endswith(".py") for line in status.splitlines())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"commit": head, "dirty": dirty, "fake_providers_sha256": digest.hexdigest()[:16]}


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
    ).stdout.strip()
