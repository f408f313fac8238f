"""The load client: raw asyncio sockets on uvloop (`asyncio.Protocol`), one process, core 1.

    python -m benchmarks.loadclient '{"mode": "throughput", "port": 1234, ...}'

It sends the raw HTTP/1.1 request (`_common.REQUEST`) and counts SSE events by counting
b"\\n\\n" in what it receives, exactly across chunk boundaries (an unpaired trailing
newline is carried into the next chunk), stamping each event with `time.monotonic()` at
the `data_received` call that completed it. The end of a response is the chunked
terminator b"\\r\\n0\\r\\n\\r\\n" (also tracked across chunks). Only 127.0.0.1 is contacted.

Modes (all bounded in connection count and in time):
  throughput  N keep-alive connections, each requesting again as soon as a response ends;
              counts events received in a measurement window after a warm-up.
  paced       N connections opened in bounded batches; every event's arrival time is kept
              and compared with its schedule (first-event arrival + i * interval).
  memory      N connections opened in bounded batches until each got headers and its first
              event; prints `READY`, waits for `close` on stdin, then closes them all.

The result is printed as one `RESULT <json>` line. The client also reports its own CPU
use, the server's CPU use (psutil, by pid) and its own event-loop lag, so a run where the
client, not the server, was the bottleneck is visible.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from array import array
from typing import Any

import psutil
import uvloop

from benchmarks.children import raise_nofile
from benchmarks.request import REQUEST
from benchmarks.stats import percentile

END = b"\r\n0\r\n\r\n"
HOST = "127.0.0.1"
monotonic = time.monotonic


class Stream(asyncio.Protocol):
    """One connection: counts SSE events, spots the end of each response."""

    __slots__ = (
        "carry",
        "closing",
        "events",
        "finished",
        "head",
        "index",
        "opened_at",
        "run",
        "tail",
        "times",
        "transport",
    )

    def __init__(self, run: Run, index: int) -> None:
        self.run = run
        self.index = index
        self.opened_at = monotonic()  # when the connect began
        self.transport: asyncio.Transport | None = None
        self.carry = False  # previous chunk ended in an unpaired b"\n"
        self.tail = b""
        self.head = True  # next bytes start a response (status line)
        self.events = 0  # events in the current response
        self.times: array[float] | None = array("d") if run.keep_times else None
        self.closing = False
        self.finished = False  # its (last) response ended; a later close is no error

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        transport.write(REQUEST)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = monotonic()
        if self.head:
            self.head = False
            if not data.startswith(b"HTTP/1.1 200"):
                self.run.errors.append(f"stream {self.index}: {data[:60]!r}")
        if self.carry and data[:1] == b"\n":
            n = 1 + data.count(b"\n\n", 1)
            start = 1
        else:
            n = data.count(b"\n\n")
            start = 0
        i = len(data)
        while i > start and data[i - 1] == 10:
            i -= 1
        self.carry = (len(data) - i) % 2 == 1
        if n:
            self.events += n
            self.run.events += n
            times = self.times
            if times is not None:
                for _ in range(n):
                    times.append(now)
        tail = self.tail + data[-7:]
        if len(tail) > 7:
            tail = tail[-7:]
        self.tail = tail
        if tail == END:
            self.run.response_done(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.lost(self, exc)

    def next_request(self) -> None:
        self.events = 0
        self.head = True
        self.tail = b""
        self.carry = False
        assert self.transport is not None
        self.transport.write(REQUEST)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()


class Run:
    """Shared state of one client run."""

    def __init__(self, cfg: dict[str, Any], *, keep_times: bool, repeat: bool) -> None:
        self.cfg = cfg
        self.port: int = cfg["port"]
        self.expected: int = cfg["events_per_response"]
        self.keep_times = keep_times
        self.repeat = repeat
        self.events = 0
        self.responses = 0
        self.bad_responses = 0
        self.errors: list[str] = []
        self.unexpected_closes = 0
        self.reconnects = 0
        self.max_reconnects = 10 * int(cfg["streams"])
        self.stopping = False
        self.streams: dict[int, Stream] = {}
        self.done = 0
        self.all_done = asyncio.Event()
        self.connect_failures = 0
        self.target = int(cfg["streams"])

    def response_done(self, stream: Stream) -> None:
        self.responses += 1
        if stream.events != self.expected:
            self.bad_responses += 1
        if self.repeat and not self.stopping:
            stream.next_request()
            return
        stream.finished = True
        self.done += 1
        if self.done >= self.target - self.connect_failures:
            self.all_done.set()

    def lost(self, stream: Stream, exc: Exception | None) -> None:
        if stream.closing or self.stopping or stream.finished:
            return
        self.unexpected_closes += 1
        if len(self.errors) < 20:
            self.errors.append(f"stream {stream.index} closed by server: {exc!r}")
        if self.repeat and self.reconnects < self.max_reconnects:
            self.reconnects += 1
            asyncio.get_running_loop().create_task(self.connect(stream.index))

    async def connect(self, index: int) -> Stream | None:
        loop = asyncio.get_running_loop()
        stream = Stream(self, index)
        try:
            await loop.create_connection(lambda: stream, HOST, self.port)
        except OSError as exc:
            self.connect_failures += 1
            if len(self.errors) < 20:
                self.errors.append(f"connect {index}: {exc!r}")
            return None
        self.streams[index] = stream
        return stream

    async def open_batches(
        self, count: int, batch: int, gap: float, *, wait_first_event: float = 0.0
    ) -> float:
        """Open `count` connections, `batch` at a time, batches `gap` seconds apart.

        With `wait_first_event`, each batch also waits (at most that long) until all its
        streams saw their first event. Returns the seconds the ramp took.
        """
        t0 = monotonic()
        for first in range(0, count, batch):
            slot = t0 + (first // batch) * gap
            delay = slot - monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            size = min(batch, count - first)
            got = await asyncio.gather(*(self.connect(first + k) for k in range(size)))
            if wait_first_event:
                limit = monotonic() + wait_first_event
                opened = [s for s in got if s is not None]
                # A bounded poll: cheaper than an Event per stream, and ends at `limit`.
                while any(s.events < 1 for s in opened) and monotonic() < limit:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
        return monotonic() - t0

    def close_all(self) -> None:
        self.stopping = True
        for stream in self.streams.values():
            stream.close()


class LagProbe:
    """Measures this client's own event-loop lag (how late a 5 ms sleep wakes up)."""

    def __init__(self) -> None:
        self.samples = array("d")
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t = monotonic()
            await asyncio.sleep(0.005)
            self.samples.append(monotonic() - t - 0.005)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> dict[str, float | None]:
        if self.task is not None:
            self.task.cancel()
        s = sorted(self.samples)
        return {
            "p50_ms": percentile(s, 50) * 1e3 if s else None,
            "p99_ms": percentile(s, 99) * 1e3 if s else None,
            "max_ms": s[-1] * 1e3 if s else None,
        }


class CpuMeter:
    """CPU seconds used by this process, by the server (with its worker processes, if it has
    any), and by every other process."""

    def __init__(self, server_pid: int | None) -> None:
        self.me = psutil.Process()
        self.server = psutil.Process(server_pid) if server_pid else None
        self.skip = {self.me.pid, server_pid, self.me.ppid()}
        if self.server is not None:
            self.skip.update(p.pid for p in self.server.children(recursive=True))

    def _tree(self) -> list[psutil.Process]:
        if self.server is None:
            return []
        return [self.server, *self.server.children(recursive=True)]

    def _server_cpu(self) -> tuple[float, float]:
        user = system = 0.0
        for proc in self._tree():
            try:
                t = proc.cpu_times()
            except psutil.Error:
                continue
            user += t.user
            system += t.system
        return user, system

    def _others(self) -> dict[tuple[int, float], float]:
        """CPU seconds of every other process, keyed by (pid, create time)."""
        seen: dict[tuple[int, float], float] = {}
        for proc in psutil.process_iter(["pid", "create_time", "cpu_times"]):
            info = proc.info
            if info["pid"] in self.skip or info["cpu_times"] is None:
                continue
            t = info["cpu_times"]
            seen[(info["pid"], info["create_time"])] = t.user + t.system
        return seen

    def start(self) -> None:
        self.o0 = self._others()
        self.t0 = monotonic()
        t = self.me.cpu_times()
        self.c0 = t.user + t.system
        self.s0 = self._server_cpu()

    def stop(self) -> dict[str, Any]:
        wall = monotonic() - self.t0
        t = self.me.cpu_times()
        client = t.user + t.system - self.c0
        user, system = self._server_cpu()
        user -= self.s0[0]
        system -= self.s0[1]
        others = sum(v - self.o0.get(k, 0.0) for k, v in self._others().items())
        return {
            "wall_s": wall,
            "client_cpu_pct": 100 * client / wall,
            "server_cpu_pct": 100 * (user + system) / wall,
            "server_cpu_s": user + system,
            "server_user_s": user,
            "server_system_s": system,
            # CPU used meanwhile by all other processes on the machine (any core), in % of
            # one core: other people's work sharing this machine shows up here.
            "other_processes_cpu_pct": 100 * max(others, 0.0) / wall,
        }


# ---------------------------------------------------------------------------------- modes


async def throughput(cfg: dict[str, Any]) -> dict[str, Any]:
    run = Run(cfg, keep_times=False, repeat=True)
    meter = CpuMeter(cfg.get("server_pid"))
    probe = LagProbe()
    probe.start()
    await run.open_batches(cfg["streams"], batch=100, gap=0.0)
    await asyncio.sleep(cfg["warmup_s"])
    e0, r0 = run.events, run.responses
    meter.start()
    await asyncio.sleep(cfg["duration_s"])
    e1, r1 = run.events, run.responses
    cpu = meter.stop()
    run.close_all()
    await asyncio.sleep(0.05)
    return {
        "events": e1 - e0,
        "events_per_s": (e1 - e0) / cpu["wall_s"],
        "responses": r1 - r0,
        "responses_total": run.responses,
        "bad_responses": run.bad_responses,
        "unexpected_closes": run.unexpected_closes,
        "connect_failures": run.connect_failures,
        "errors": run.errors[:5],
        **cpu,
        "client_loop_lag": probe.stop(),
    }


async def paced(cfg: dict[str, Any]) -> dict[str, Any]:
    run = Run(cfg, keep_times=True, repeat=False)
    interval: float = cfg["interval_s"]
    threshold: float = cfg["late_threshold_s"]
    n: int = cfg["streams"]
    meter = CpuMeter(cfg.get("server_pid"))
    probe = LagProbe()
    probe.start()
    meter.start()
    ramp = await run.open_batches(n, batch=cfg["ramp_batch"], gap=cfg["ramp_gap_s"])
    # Events scheduled from 1 s after the last connection opened are "steady state".
    steady_from = monotonic() + 1.0
    stream_s = (run.expected - 1) * interval
    try:
        await asyncio.wait_for(run.all_done.wait(), stream_s + cfg["slack_s"])
        timed_out = False
    except TimeoutError:
        timed_out = True
    cpu = meter.stop()
    lag = probe.stop()
    run.close_all()
    await asyncio.sleep(0.05)

    lateness = array("d")
    last_event_late = array("d")
    durations = array("d")
    first_event = sorted(
        s.times[0] - s.opened_at for s in run.streams.values() if s.times is not None and s.times
    )
    missing = 0
    steady = steady_late = 0
    for stream in run.streams.values():
        times = stream.times
        assert times is not None
        got = min(len(times), run.expected)
        missing += run.expected - got
        if not got:
            continue
        t0 = times[0]
        for i in range(got):
            due = t0 + i * interval
            late_by = times[i] - due
            lateness.append(late_by)
            if due >= steady_from:
                steady += 1
                steady_late += late_by > threshold
        for i in range(got, run.expected):  # missing: late by definition
            if t0 + i * interval >= steady_from:
                steady += 1
                steady_late += 1
        last_event_late.append(lateness[-1])
        durations.append(times[got - 1] - t0)
    missing += (n - len(run.streams)) * run.expected
    expected_total = n * run.expected
    late = sum(1 for x in lateness if x > threshold) + missing
    ordered = sorted(lateness)
    # Missing events count as infinitely late in the percentiles.
    ordered.extend([math.inf] * missing)
    end_drift = sorted(last_event_late)
    return {
        "streams_opened": len(run.streams),
        "ramp_s": ramp,
        "expected_events": expected_total,
        "received_events": len(lateness),
        "missing_events": missing,
        "timed_out": timed_out,
        "late_events": late,
        "late_share": late / expected_total if expected_total else None,
        "steady_events": steady,
        "steady_late_share": steady_late / steady if steady else None,
        "lateness_ms": {
            "p50": percentile(ordered, 50) * 1e3,
            "p90": percentile(ordered, 90) * 1e3,
            "p99": percentile(ordered, 99) * 1e3,
            "p999": percentile(ordered, 99.9) * 1e3,
            "max": ordered[-1] * 1e3 if ordered else None,
        },
        "last_event_lateness_ms": {
            "p50": percentile(end_drift, 50) * 1e3,
            "max": end_drift[-1] * 1e3 if end_drift else None,
        },
        "stream_duration_s_p50": percentile(sorted(durations), 50),
        # From the start of the connect to the first event: accept and set-up under load.
        "first_event_ms": {
            "p50": percentile(first_event, 50) * 1e3,
            "p99": percentile(first_event, 99) * 1e3,
            "max": first_event[-1] * 1e3 if first_event else None,
        },
        "bad_responses": run.bad_responses,
        "unexpected_closes": run.unexpected_closes,
        "connect_failures": run.connect_failures,
        "errors": run.errors[:5],
        **cpu,
        "client_loop_lag": lag,
    }


async def memory(cfg: dict[str, Any]) -> dict[str, Any]:
    run = Run(cfg, keep_times=False, repeat=False)
    n: int = cfg["streams"]
    ramp = await run.open_batches(
        n, batch=cfg["ramp_batch"], gap=cfg["ramp_gap_s"], wait_first_event=20.0
    )
    ready = sum(1 for s in run.streams.values() if s.events >= 1)
    print(
        "READY "
        + json.dumps({"opened": len(run.streams), "with_first_event": ready, "ramp_s": ramp}),
        flush=True,
    )
    await _stdin_line(cfg["hold_s"])
    events_while_idle = run.events
    run.close_all()
    await asyncio.sleep(0.2)
    return {
        "streams_opened": len(run.streams),
        "with_first_event": ready,
        "events_received": events_while_idle,
        "ramp_s": ramp,
        "unexpected_closes": run.unexpected_closes,
        "connect_failures": run.connect_failures,
        "errors": run.errors[:5],
    }


async def _stdin_line(timeout: float) -> None:
    """Wait (at most `timeout` s) until a line (or EOF) arrives on stdin, without a thread."""
    loop = asyncio.get_running_loop()
    arrived = loop.create_future()
    fd = sys.stdin.fileno()

    def readable() -> None:
        if not arrived.done():
            arrived.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await asyncio.wait_for(arrived, timeout)
    except TimeoutError:
        pass
    finally:
        loop.remove_reader(fd)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    raise_nofile()
    mode = {"throughput": throughput, "paced": paced, "memory": memory}[cfg["mode"]]
    result = uvloop.run(mode(cfg))
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
