"""The long fuzz run: 100,000 hostile requests, then 100,000 default streams, then a reset.

    python -m benchmarks.fuzz_provider [--requests 100000] [--streams 100000] [--quick]

Starts `cancel-harness serve` as a subprocess (loopback only) and reports, from /proc:
RSS and open file descriptors before and after the hostile requests (and that the server
still serves a correct stream, answered every request with something below 500, and is
alive); RSS after 100,000 default streams against the ledger's documented cap; RSS after
`POST /__harness/reset` against a fresh server that served the same warm-up. Every loop is
bounded in count and time. Writes reports/bench/fuzz_provider.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fake_providers.limits import Limits

HOST = "127.0.0.1"
CHAT = b'{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}'
STREAM_END = b"data: [DONE]\n\n\r\n0\r\n\r\n"
IO_TIMEOUT = 10.0
REPORT = Path("reports/bench/fuzz_provider.json")


@dataclass
class Server:
    proc: subprocess.Popen[str]
    port: int
    log: IO[str]

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"VmRSS:\s+(\d+) kB", status)
        return int(match[1]) if match else 0

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()

    def errors(self) -> list[str]:
        """Traceback or warning lines the server printed (none is expected)."""
        text = Path(self.log.name).read_text()
        return [line for line in text.splitlines() if "Traceback" in line or "Error" in line]


def start_server(pythonmalloc: str | None = None) -> Server:
    # Its live log goes to a file: a pipe nobody drains would block the server at 64 KiB.
    log = tempfile.NamedTemporaryFile("w+", prefix="fuzz-serve-", suffix=".log")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "serve", "--port", "0"],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **allocator(pythonmalloc)},
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", Path(log.name).read_text())
        if match:
            return Server(proc, int(match[1]), log)
        time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"fuzz_provider: the server did not start: {Path(log.name).read_text()}")


def allocator(pythonmalloc: str | None) -> dict[str, str]:
    return {"PYTHONMALLOC": pythonmalloc} if pythonmalloc else {}


# --------------------------------------------------------------------------- requests


def request(method: bytes, target: bytes, body: bytes = b"", extra: bytes = b"") -> bytes:
    return b"%s %s HTTP/1.1\r\nhost: x\r\nconnection: close\r\n%scontent-length: %d\r\n\r\n%s" % (
        method,
        target,
        extra,
        len(body),
        body,
    )


def hostile(rng: random.Random) -> tuple[str, bytes, bool]:
    """(category, bytes, half-close after sending) for one hostile request."""
    kind = rng.randrange(12)
    target = rng.choice([b"/v1/chat/completions", b"/v1/messages", b"/v1/responses"])
    if kind == 0:
        return "raw bytes", rng.randbytes(rng.randrange(1, 600)), True
    if kind == 1:
        line = rng.randbytes(rng.randrange(1, 80)).replace(b"\n", b"")
        return "garbage request line", line + b"\r\nhost: x\r\n\r\n", True
    if kind == 2:
        return (
            "HEAD",
            request(b"HEAD", rng.choice([b"/v1/models", target, b"/__harness/ledger"])),
            False,
        )
    if kind == 3:
        depth = rng.randrange(1_000, 100_000)
        return "deep JSON", request(b"POST", target, b"[" * depth + b"]" * depth), False
    if kind == 4:
        digits = b"9" * rng.randrange(4_000, 6_000)
        body = b'{"model":"gpt-4o","messages":[],"max_tokens":' + digits + b"}"
        return "huge number", request(b"POST", target, body), False
    if kind == 5:
        spec = rng.choice([b"hang-after=" + b"9" * 5000, b"pace=-5ms", b"kind=antropic", b"x"])
        body = rng.choice([b'{"rules":[{}]}', b'{"spec":' + b"[" * 5000 + b"}", spec])
        return "control API", request(b"POST", b"/__harness/faults", body), False
    if kind == 6:
        head = b'POST %s HTTP/1.1\r\nhost: x\r\ncontent-length: 500\r\n\r\n{"mod' % target
        return "truncated body", head, True
    if kind == 7:
        value = rng.choice([None, True, 1.5, "x", [], {}, -1, 10**30])
        body = json.dumps({"model": value, "messages": value, "max_tokens": value}).encode()
        return "wrong types", request(b"POST", target, body), False
    if kind == 8:
        extra = b"x-big: " + b"b" * rng.randrange(60_000, 70_000) + b"\r\n"
        return "huge header", request(b"POST", target, CHAT, extra), False
    if kind == 9:
        extra = b"x-stainless-retry-count: " + rng.choice([b"9" * 50, b"\xb2", b"-1"]) + b"\r\n"
        return "retry header", request(b"POST", target, CHAT, extra), False
    if kind == 10:
        method = rng.choice([b"PUT", b"DELETE", b"OPTIONS", b"TRACE", b"X"])
        return "odd method", request(method, rng.choice([target, b"*", b"/__harness/reset"])), False
    body = (
        b'{"model":"gpt-4o~'
        + rng.choice([b"pace=1e999s", b"hang-after=x", b"tokens=" + b"9" * 30])
        + b'"}'
    )
    return "model-name spec", request(b"POST", b"/v1/chat/completions", body), False


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    no_answer: Counter[str] = field(default_factory=Counter)
    timeouts: int = 0
    errors: int = 0


async def send_hostile(
    port: int, kind: str, payload: bytes, half_close: bool, tally: Tally
) -> None:
    tally.by_kind[kind] += 1
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), IO_TIMEOUT)
    except (OSError, TimeoutError):
        tally.errors += 1
        return
    try:
        writer.write(payload)
        if half_close:
            writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), IO_TIMEOUT)
    except TimeoutError:
        tally.timeouts += 1
        answer = b""
    except OSError:
        answer = b""  # the server may close while a large hostile body is still going
    finally:
        writer.close()
    if answer.startswith(b"HTTP/1.1 "):
        tally.statuses[answer[9:10].decode() + "xx"] += 1
    else:
        tally.no_answer[kind] += 1


async def hostile_phase(port: int, count: int, concurrency: int, seed: int) -> Tally:
    rng = random.Random(seed)
    tally = Tally()
    queue = iter(range(count))

    async def worker() -> None:
        for _ in queue:
            kind, payload, half_close = hostile(rng)
            await send_hostile(port, kind, payload, half_close, tally)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally


CHAT_KEEPALIVE = (
    b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(CHAT), CHAT)
)


async def stream_phase(port: int, count: int, connections: int, per_connection: int) -> int:
    """`count` default streams over keep-alive connections, reconnecting every so often."""
    remaining, done = count, 0

    async def worker() -> None:
        nonlocal remaining, done
        while remaining > 0:
            reader, writer = await asyncio.open_connection(HOST, port)
            try:
                for _ in range(per_connection):
                    if remaining <= 0:
                        break
                    remaining -= 1
                    writer.write(CHAT_KEEPALIVE)
                    await asyncio.wait_for(reader.readuntil(STREAM_END), IO_TIMEOUT)
                    done += 1
            finally:
                writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return done


async def one_stream(port: int) -> bool:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request(b"POST", b"/v1/chat/completions", CHAT))
        answer = await asyncio.wait_for(reader.read(), IO_TIMEOUT)
    finally:
        writer.close()
    return answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(STREAM_END)


async def control(port: int, method: bytes, path: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request(method, path))
        answer = await asyncio.wait_for(reader.read(), 60)
    finally:
        writer.close()
    return answer.partition(b"\r\n\r\n")[2]


async def warm_up(port: int) -> None:
    await stream_phase(port, 200, 4, 50)


def settle() -> None:
    time.sleep(1.0)  # let the server's loop finish closing what the client dropped


# -------------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> dict[str, object]:
    limits = Limits()
    results: dict[str, object] = {
        "requests": args.requests,
        "streams": args.streams,
        "pythonmalloc": args.pythonmalloc or "(default: pymalloc)",
    }
    server = start_server(args.pythonmalloc)
    try:
        await warm_up(server.port)
        settle()
        before = {"rss_kib": server.rss_kib(), "fds": server.fds()}
        started = time.monotonic()
        tally = await hostile_phase(server.port, args.requests, args.concurrency, args.seed)
        hostile_s = time.monotonic() - started
        settle()
        after = {"rss_kib": server.rss_kib(), "fds": server.fds()}
        alive = server.proc.poll() is None
        server_errors = server.errors()
        serves = await one_stream(server.port)
        totals = json.loads(await control(server.port, b"GET", b"/__harness/ledger?events=0"))
        results["hostile"] = {
            "seconds": round(hostile_s, 1),
            "before": before,
            "after": after,
            "alive": alive,
            "server_error_lines": server_errors[:20],
            "serves_a_correct_stream_after": serves,
            "statuses": dict(tally.statuses),
            "no_answer": dict(tally.no_answer),
            "timeouts": tally.timeouts,
            "connect_errors": tally.errors,
            "by_kind": dict(tally.by_kind),
            "ledger_totals": totals["totals"],
            "ledger_connections_kept": len(totals["connections"]),
        }
        started = time.monotonic()
        streamed = await stream_phase(server.port, args.streams, args.concurrency, 1_000)
        stream_s = time.monotonic() - started
        settle()
        totals = json.loads(await control(server.port, b"GET", b"/__harness/ledger?events=0"))
        results["streams_phase"] = {
            "seconds": round(stream_s, 1),
            "streams": streamed,
            "rss_kib": server.rss_kib(),
            "rss_growth_kib": server.rss_kib() - before["rss_kib"],
            "ledger_cap_kib": limits.ledger_bytes // 1024,
            "ledger_cap_connections": limits.ledger_connections,
            "ledger_totals": totals["totals"],
            "ledger_requests_kept": sum(len(c["requests"]) for c in totals["connections"]),
        }
        await control(server.port, b"POST", b"/__harness/reset")
        settle()
        results["after_reset_rss_kib"] = server.rss_kib()
        results["serves_after_reset"] = await one_stream(server.port)
    finally:
        server.stop()
    fresh = start_server(args.pythonmalloc)
    try:
        await warm_up(fresh.port)
        settle()
        results["fresh_rss_kib"] = fresh.rss_kib()
    finally:
        fresh.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--streams", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="2,000 of each (a smoke run)")
    parser.add_argument(
        "--pythonmalloc",
        default=None,
        metavar="NAME",
        help="PYTHONMALLOC for the served process (malloc: a reset gives back all memory)",
    )
    args = parser.parse_args()
    if args.quick:
        args.requests = args.streams = 2_000
    results = asyncio.run(run(args))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    name = REPORT.stem + (f".{args.pythonmalloc}" if args.pythonmalloc else "")
    path = REPORT.with_name(name + (".quick.json" if args.quick else ".json"))
    path.write_text(json.dumps(results, indent=2))
    print(render(results))
    print(f"wrote {path}")


def render(r: dict[str, object]) -> str:
    h = r["hostile"]
    s = r["streams_phase"]
    assert isinstance(h, dict) and isinstance(s, dict)
    mib = 1024
    fresh = r["fresh_rss_kib"]
    reset = r["after_reset_rss_kib"]
    assert isinstance(fresh, int) and isinstance(reset, int)
    lines = [
        f"hostile requests: {r['requests']:,} in {h['seconds']} s; statuses {h['statuses']}; "
        f"no answer {sum(h['no_answer'].values())} {h['no_answer']}; timeouts {h['timeouts']}",
        f"  RSS {h['before']['rss_kib'] / mib:.1f} -> {h['after']['rss_kib'] / mib:.1f} MiB, "
        f"fds {h['before']['fds']} -> {h['after']['fds']}; alive {h['alive']}; "
        f"serves a correct stream after: {h['serves_a_correct_stream_after']}",
        f"  ledger totals {h['ledger_totals']}, connections kept {h['ledger_connections_kept']}",
        f"default streams: {s['streams']:,} in {s['seconds']} s; RSS {s['rss_kib'] / mib:.1f} MiB "
        f"(+{s['rss_growth_kib'] / mib:.1f} MiB over the start); ledger cap "
        f"{s['ledger_cap_kib'] / mib:.0f} MiB / {s['ledger_cap_connections']:,} connections; "
        f"requests kept {s['ledger_requests_kept']:,} of {s['ledger_totals']['requests']:,}",
        f"after reset: RSS {reset / mib:.1f} MiB vs a fresh server {fresh / mib:.1f} MiB "
        f"({reset / fresh:.2f}x); serves after reset: {r['serves_after_reset']}; "
        f"allocator {r['pythonmalloc']}",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
