"""Benchmark subprocesses: started pinned to a core, ranked above other work, spoken to by lines.

The server under test runs on core 0 and the load client on core 1 (via `taskset`), each in
its own process; the orchestrating process stays idle while they work.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import ROOT

SERVER_CPU = "0"
CLIENT_CPU = "1"
BOTH_CPUS = "0,1"
NICE = -10


def raise_nofile(want: int = 65536) -> int:
    """Raise RLIMIT_NOFILE towards `want` (bounded by the hard limit); returns the new soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def cores() -> int:
    return len(os.sched_getaffinity(0))


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


class Child:
    """A benchmark subprocess, pinned to cores, speaking line-based text on stdin/stdout."""

    def __init__(self, module: str, args: Sequence[str], cpus: str | None) -> None:
        argv = [sys.executable, "-m", module, *args]
        if cpus is not None and cores() > 1 and shutil.which("taskset"):
            argv = ["taskset", "-c", cpus, *argv]
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


def harness_cli() -> list[str]:
    """The venv's `cancel-harness` entry point (or the module, if the script is missing)."""
    script = Path(sys.executable).with_name("cancel-harness")
    if script.exists():
        return [str(script)]
    found = shutil.which("cancel-harness")
    return [found] if found else [sys.executable, "-m", "harness.cli"]
