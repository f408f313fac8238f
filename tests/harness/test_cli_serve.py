"""`cancel-harness serve` as a newcomer uses it: start, point the openai SDK, interrupt."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from harness.cli import main

SERVE = [sys.executable, "-m", "harness.cli", "serve"]


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [*SERVE, "--fault", "pace=20ms,hang-after=5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
    assert match, first
    try:
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_done_means_walkthrough(served: tuple[subprocess.Popen[str], str]) -> None:
    proc, origin = served
    assert proc.stdout is not None
    banner = [proc.stdout.readline() for _ in range(8)]
    assert f"OPENAI_BASE_URL={origin}/v1\n" in "".join(banner)
    assert any("ledger" in line and "/__harness/ledger" in line for line in banner)

    client = openai.OpenAI(base_url=f"{origin}/v1", api_key="sk-secret-do-not-log")
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    received = [chunk for chunk, _ in zip(stream, range(3), strict=False)]
    closed_at = time.monotonic_ns()
    stream.close()  # the user interrupts their script

    def closed() -> dict[str, object] | None:
        data = httpx.get(f"{origin}/__harness/ledger").json()
        done = [c for c in data["connections"] if c["closed_by"] == "client"]
        return done[0] if done else None

    conn = None
    deadline = time.monotonic() + 5
    while conn is None and time.monotonic() < deadline:  # bounded poll of another process
        conn = closed()
    assert conn is not None, "the ledger never showed the client's close"
    assert len(received) == 3
    assert conn["close_kind"] in ("fin", "rst")
    assert conn["events_sent"] >= 3
    assert 0 <= conn["closed_ns"] - closed_at < 100_000_000  # type: ignore[operator]
    ledger_text = httpx.get(f"{origin}/__harness/ledger").text
    assert "sk-secret-do-not-log" not in ledger_text

    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "closed by client" in out
    assert "Traceback" not in err


def test_bad_fault_spec_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--fault", "pace=50ms,hang_after=5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unknown fault 'hang_after'" in err
    assert "did you mean 'hang-after'" in err


def test_port_in_use_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert err.count("\n") == 1


def test_no_command_prints_help_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "serve" in capsys.readouterr().out


def test_serve_with_two_workers_is_one_provider_and_stops_on_interrupt() -> None:
    proc = subprocess.Popen(
        [*SERVE, "--workers", "2", "--fault", "tokens=3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", first)
        assert match, first
        origin = match.group(1)
        banner = "".join(proc.stdout.readline() for _ in range(8))
        assert "2 processes on one port" in banner
        for _ in range(6):
            with httpx.Client() as client:  # a new connection each: the kernel picks a worker
                reply = client.post(
                    f"{origin}/v1/chat/completions", json={"model": "m", "messages": []}
                )
            assert reply.status_code == 200
        data = httpx.get(f"{origin}/__harness/ledger").json()
        assert data["workers"] == 2
        assert data["totals"]["requests"] == 6
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "stopped." in err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
