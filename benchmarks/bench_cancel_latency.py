"""Cancel-to-close latency of the reference agent, beside the floor of a bare httpx client.

    python -m benchmarks.bench_cancel_latency [--quick] [--record] [--count N] [--extra N]
                                              [--no-settle]

What is measured. One `FakeProvider` on 127.0.0.1, hosted in the benchmark's own event loop
(plain asyncio via `anyio.run`, as the harness runs; no uvloop), and two clients taking
turns on the same streamed response:

* agent: the reference agent (`reference_agent.agent.Agent`, memory extraction off) submits
  a turn; the provider writes 3 events and parks before event 4 at a fresh gate
  (`header=x-agent-purpose:turn,hold-before=4,gate=aN,times=1`). Once the gate is reached
  and the loop has settled (below), t0 = `time.monotonic_ns()` is taken right before
  `await agent.cancel(session)`.
* floor: a bare `httpx.AsyncClient` POSTs the very request the agent sent (path, query, body
  and purpose header copied from the ledger), parked the same way (`...,gate=bN,times=1`),
  reads 3 SSE events, waits for the gate, takes t0 and leaves the `client.stream(...)`
  block, which closes the socket: the least any httpx-based client can do.

latency = `ConnectionRecord.closed_ns` (the provider read the client's FIN/RST; the ledger
must say the client closed) - t0. Iterations alternate agent, floor, agent, floor, ... so
machine noise lands on both columns alike; 3 warm-up pairs per kind are dropped. openai-chat
gets `--count` cancels (default 200, `--quick` 30); openai-responses, anthropic and azure get
`--extra` each (default 50, `--quick` 10), so their p99 rests on one or two samples.
Percentiles interpolate linearly between samples.

Settling. `gate.wait_reached()` returns in the same loop pass as the provider's write,
before the agent's task has even parsed the response headers, so a cancel right then finds
no live response to close and the socket only closes as the cancelled task unwinds out of
`http.stream()` (about 5x the floor). The benchmark therefore first waits until every other
task is parked (one `sleep(0)` pass in practice): both clients are then blocked reading
after event 3, i.e. truly mid-stream. `--no-settle` measures the early case instead.

How to read it. "agent/floor" is what the agent's cancel path (flag the turn, close the live
response, cancel the turn's scope) costs over the cheapest close httpx allows; 1.0x would be
"as fast as a bare client". The split table says where the time goes:

* t0 -> FIN: until the client's socket was really closed (stamped around
  `socket.socket.close`, which sends the FIN/RST; asyncio's `transport.abort()` only
  schedules that close for its next loop pass). This is what a remote provider would see.
* FIN -> seen: until the provider, sharing the loop, ran its read and stamped `closed_ns`.
  Whatever else is ready on the loop runs first: for the agent, the cancelled turn task
  unwinding. This part is an artefact of hosting the provider in the client's loop, and it
  is most of the agent/floor gap.

Per sample the JSON also keeps the time inside the cancel call (`call_us`), the wall time
the thread was off the CPU (`off_cpu_us`, i.e. preempted: nothing in this process blocks or
runs other threads) and the highest GC generation collected (`gc_gen`, -1 none); the run
ends with the slowest samples and what the tail above p95 had in common.

Writes reports/bench/bench_cancel_latency.json (config, figures, every sample, environment).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import re
import socket
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

from benchmarks import ROOT, machine, reports, results, stats, tables
from fake_providers import ConnectionRecord, FakeProvider, RequestRecord
from fake_providers.ledger import Closer
from reference_agent.agent import Agent
from reference_agent.config import PROVIDER_KINDS, AgentConfig

NAME = "bench_cancel_latency"
KINDS = PROVIDER_KINDS  # every kind the reference agent speaks
TURN = "header=x-agent-purpose:turn"
HOLD_BEFORE = 4  # the provider writes 3 events, then parks before the 4th
EVENTS_READ = HOLD_BEFORE - 1
WARMUP = 3  # pairs dropped before measuring each kind
WAIT_S = 5.0  # bound on every wait (gate, close, turn end)
PREEMPTED_NS = 1_000_000  # off the CPU this long inside a sample: it was preempted


# ---------------------------------------------------------------------------- watchers


class GcWatch:
    """Logs the generation of every collection, so a sample can say if one ran inside it."""

    def __init__(self) -> None:
        self.log: list[int] = []

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.log.append(info.get("generation", 0))

    def mark(self) -> int:
        return len(self.log)

    def since(self, mark: int) -> int:
        """The highest generation collected since `mark`, or -1 for none."""
        return max(self.log[mark:], default=-1)


class SocketCloses:
    """When each client socket really closed, keyed by its local port (the ledger's peer)."""

    def __init__(self) -> None:
        self.by_port: dict[int, int] = {}
        self._original = socket.socket.close

    def install(self) -> None:
        original, by_port = self._original, self.by_port

        def close(sock: socket.socket) -> None:
            port = None
            if sock.fileno() >= 0 and sock.family == socket.AF_INET:
                with contextlib.suppress(OSError):
                    port = sock.getsockname()[1]
            original(sock)
            if port is not None:
                by_port[port] = time.monotonic_ns()

        socket.socket.close = close  # type: ignore[method-assign]

    def uninstall(self) -> None:
        socket.socket.close = self._original  # type: ignore[method-assign]


GC = GcWatch()
CLOSES = SocketCloses()


@dataclass
class Sample:
    side: str  # "agent" | "floor"
    latency_ns: int  # closed_ns - t0
    call_ns: int  # t0 -> agent.cancel returned / the stream block was left
    fin_ns: int  # t0 -> the client's socket closed (FIN/RST sent); -1 if not seen
    off_cpu_ns: int  # t0 -> close seen: wall time this thread was not running
    gc_gen: int  # highest GC generation collected in t0 -> close seen (-1: none)
    connection_id: int
    close_kind: str  # fin | rst, as the provider saw it


class Clock:
    """Everything a sample needs, taken at t0."""

    def __init__(self, conn: ConnectionRecord) -> None:
        self.port = int(conn.peer.rsplit(":", 1)[1])
        CLOSES.by_port.pop(self.port, None)
        self.gc = GC.mark()
        self.cpu = time.thread_time_ns()
        self.t0 = time.monotonic_ns()

    def sample(self, side: str, conn: ConnectionRecord, closed_ns: int, t1: int) -> Sample:
        now = time.monotonic_ns()
        off_cpu = max(0, (now - self.t0) - (time.thread_time_ns() - self.cpu))
        fin_at = CLOSES.by_port.get(self.port)
        return Sample(
            side,
            closed_ns - self.t0,
            t1 - self.t0,
            -1 if fin_at is None else fin_at - self.t0,
            off_cpu,
            GC.since(self.gc),
            conn.id,
            str(conn.close_kind),
        )


@dataclass
class KindRun:
    kind: str
    count: int
    agent: list[Sample] = field(default_factory=list)
    floor: list[Sample] = field(default_factory=list)


# ------------------------------------------------------------------------ one iteration


async def _await_close(provider: FakeProvider, conn: ConnectionRecord, t0: int) -> int:
    """Wait (bounded) for the provider to see the connection close; return closed_ns."""
    await provider.ledger.wait_for(
        lambda _ledger: conn if conn.closed_ns is not None else None,
        WAIT_S,
        f"connection #{conn.id} to close",
    )
    assert conn.closed_ns is not None
    if conn.closed_by is not Closer.CLIENT:
        raise RuntimeError(f"connection #{conn.id} was closed by {conn.closed_by}, not the client")
    if conn.closed_ns < t0:
        raise RuntimeError(f"connection #{conn.id} closed before t0")
    return conn.closed_ns


def _request_at(provider: FakeProvider, gate_name: str) -> RequestRecord:
    """The request whose plan holds at the given gate (the one just parked)."""
    for req in reversed(provider.ledger.requests()):
        if f"gate={gate_name}" in re.split(r"[,\s]", req.plan):
            return req
    raise RuntimeError(f"no request parked at gate {gate_name!r} in the ledger")


async def settle(enabled: bool) -> None:
    """Return once every other task is parked on a future, so the client has consumed all
    the provider wrote. `gate.wait_reached()` alone returns before that: the provider parks
    (and wakes us) in the same loop pass as its write, before the agent's task has even
    parsed the response headers. Like `anyio.wait_all_tasks_blocked()` (whose private-field
    test it borrows) but spinning on `sleep(0)`, not sleeping 0.1 s; one pass suffices here.
    """
    if not enabled:
        return
    me = asyncio.current_task()
    for _ in range(10_000):
        await asyncio.sleep(0)
        if all(
            t is me or (t._fut_waiter is not None and not t._fut_waiter.done())  # type: ignore[attr-defined]
            for t in asyncio.all_tasks()
        ):
            return
    raise RuntimeError("the event loop never settled: some task keeps running")


def _hold(provider: FakeProvider, gate_name: str) -> None:
    provider.clear_faults()
    provider.add_fault(f"{TURN},hold-before={HOLD_BEFORE},gate={gate_name},times=1")


async def agent_once(provider: FakeProvider, agent: Agent, gate_name: str, settled: bool) -> Sample:
    _hold(provider, gate_name)
    session = await agent.new_session()
    handle = await agent.submit(session, "hi")
    gate = provider.gate(gate_name)
    await gate.wait_reached(timeout=WAIT_S)
    await settle(settled)
    conn = provider.ledger.connection(_request_at(provider, gate_name).connection_id)
    clock = Clock(conn)
    result = await agent.cancel(session)
    t1 = time.monotonic_ns()
    closed = await _await_close(provider, conn, clock.t0)
    sample = clock.sample("agent", conn, closed, t1)
    gate.release()
    outcome = await handle.wait(WAIT_S)
    if not result.cancelled or outcome.stop_reason.value != "cancelled":
        raise RuntimeError(f"agent cancel did not cancel: {result}, {outcome.stop_reason}")
    return sample


@dataclass(frozen=True)
class WireCopy:
    """The agent's own request, replayed by the bare client."""

    url: str
    body: bytes
    headers: dict[str, str]


def copy_request(provider: FakeProvider, req: RequestRecord) -> WireCopy:
    url = provider.origin + req.path + (f"?{req.query}" if req.query else "")
    headers = {
        "content-type": req.header("content-type") or "application/json",
        "accept": "text/event-stream",
        "x-agent-purpose": "turn",
    }
    return WireCopy(url, req.body, headers)


async def floor_once(
    provider: FakeProvider, client: httpx.AsyncClient, wire: WireCopy, gate_name: str, settled: bool
) -> Sample:
    _hold(provider, gate_name)
    gate = provider.gate(gate_name)
    async with client.stream("POST", wire.url, content=wire.body, headers=wire.headers) as resp:
        if resp.status_code != 200:
            raise RuntimeError(f"bare client got HTTP {resp.status_code}")
        # Explicit anext, no `async for ... break`: a dropped iterator is finalised by a
        # task of its own, which would close the connection behind our back, before t0.
        chunks = resp.aiter_raw()
        seen = b""
        with anyio.fail_after(WAIT_S):
            while seen.replace(b"\r\n", b"\n").count(b"\n\n") < EVENTS_READ:
                seen += await anext(chunks)
        await gate.wait_reached(timeout=WAIT_S)
        await settle(settled)
        conn = provider.ledger.connection(_request_at(provider, gate_name).connection_id)
        clock = Clock(conn)
    t1 = time.monotonic_ns()
    closed = await _await_close(provider, conn, clock.t0)
    sample = clock.sample("floor", conn, closed, t1)
    await chunks.aclose()
    gate.release()
    return sample


# --------------------------------------------------------------------------- per kind


def agent_config(provider: FakeProvider, kind: str) -> AgentConfig:
    return AgentConfig(
        provider=kind,
        base_url=provider.url(kind),
        api_key="sk-x",
        model="gpt-4o",
        memory_extraction=False,
    )


async def run_kind(
    provider: FakeProvider, kind: str, count: int, seq: list[int], settled: bool
) -> KindRun:
    """WARMUP + count pairs (agent, then floor), each on fresh gates; warm-ups dropped."""
    run = KindRun(kind, count)
    started = time.monotonic()
    async with (
        Agent(agent_config(provider, kind)) as agent,
        httpx.AsyncClient(timeout=httpx.Timeout(WAIT_S)) as client,
    ):
        wire: WireCopy | None = None
        for i in range(WARMUP + count):
            seq[0] += 1
            a = await agent_once(provider, agent, f"a{seq[0]}", settled)
            if wire is None:
                wire = copy_request(provider, _request_at(provider, f"a{seq[0]}"))
            f = await floor_once(provider, client, wire, f"b{seq[0]}", settled)
            if i >= WARMUP:
                run.agent.append(a)
                run.floor.append(f)
    provider.reset()  # drop this kind's gates, rules and ledger
    print(
        f"  {kind:<17} {count} agent + {count} floor cancels in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return run


async def measure(main_count: int, extra_count: int, settled: bool) -> list[KindRun]:
    seq = [0]
    runs = []
    async with FakeProvider(host="127.0.0.1") as provider:
        for kind in KINDS:
            count = main_count if kind == KINDS[0] else extra_count
            runs.append(await run_kind(provider, kind, count, seq, settled))
    return runs


# ------------------------------------------------------------------------------ figures


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def median_us(values: list[int]) -> float:
    return percentile(sorted(v / 1e3 for v in values), 0.5)


def stats_us(samples: list[Sample]) -> dict[str, Any]:
    values = sorted(s.latency_ns / 1e3 for s in samples)
    fins = [s for s in samples if s.fin_ns >= 0]
    return {
        "n": len(values),
        "min": values[0],
        "p50": percentile(values, 0.50),
        "p95": percentile(values, 0.95),
        "p99": percentile(values, 0.99),
        "max": values[-1],
        "mean": statistics.fmean(values),
        "call_p50": median_us([s.call_ns for s in samples]),
        "to_fin_p50": median_us([s.fin_ns for s in fins]) if fins else None,
        "fin_to_seen_p50": median_us([s.latency_ns - s.fin_ns for s in fins]) if fins else None,
        "fin_seen": len(fins),
        "close_kinds": {k: sum(1 for s in samples if s.close_kind == k) for k in ("fin", "rst")},
        "samples_with_gc": sum(1 for s in samples if s.gc_gen >= 0),
        "samples_with_gc_gen2": sum(1 for s in samples if s.gc_gen >= 2),
        "samples_preempted": sum(1 for s in samples if s.off_cpu_ns >= PREEMPTED_NS),
    }


def figures(run: KindRun) -> dict[str, Any]:
    agent, floor = stats_us(run.agent), stats_us(run.floor)
    return {
        "kind": run.kind,
        "cancels": run.count,
        "agent_us": agent,
        "floor_us": floor,
        **{f"ratio_{k}": stats.ratio(agent[k], floor[k]) for k in ("p50", "p95", "p99", "max")},
        "ratio_to_fin_p50": stats.ratio(agent["to_fin_p50"], floor["to_fin_p50"]),
    }


def print_main(fig: dict[str, Any]) -> None:
    a, f = fig["agent_us"], fig["floor_us"]
    rows = [
        [key, tables.fmt(a[key]), tables.fmt(f[key]), tables.fmt(fig[f"ratio_{key}"], ".2f", "x")]
        for key in ("p50", "p95", "p99", "max")
    ]
    print(f"\n{fig['kind']}: {fig['cancels']} cancels each, cancel-to-close latency (µs)")
    tables.print_table(["", "agent", "floor", "agent/floor"], rows)


def print_kinds(figs: list[dict[str, Any]]) -> None:
    rows = []
    for fig in figs:
        a, f = fig["agent_us"], fig["floor_us"]
        rows.append(
            [
                fig["kind"],
                str(fig["cancels"]),
                *(tables.fmt(a[k]) for k in ("p50", "p95", "p99", "max")),
                *(tables.fmt(f[k]) for k in ("p50", "p95", "p99", "max")),
                tables.fmt(fig["ratio_p50"], ".2f", "x"),
                tables.fmt(fig["ratio_p99"], ".2f", "x"),
            ]
        )
    print("\nevery wire format, µs (the last three ran fewer cancels: their p99 is rough)")
    tables.print_table(
        [
            "kind",
            "n",
            "agent p50",
            "p95",
            "p99",
            "max",
            "floor p50",
            "p95",
            "p99",
            "max",
            "p50 ratio",
            "p99 ratio",
        ],
        rows,
    )


def print_split(figs: list[dict[str, Any]]) -> None:
    rows = []
    for fig in figs:
        a, f = fig["agent_us"], fig["floor_us"]
        rows.append(
            [
                fig["kind"],
                tables.fmt(a["to_fin_p50"]),
                tables.fmt(f["to_fin_p50"]),
                tables.fmt(fig["ratio_to_fin_p50"], ".2f", "x"),
                tables.fmt(a["fin_to_seen_p50"]),
                tables.fmt(f["fin_to_seen_p50"]),
                tables.fmt(a["call_p50"]),
                tables.fmt(f["call_p50"]),
            ]
        )
    print(
        "\nwhere the time goes, medians in µs: t0 -> FIN = until the client socket closed "
        "(what a remote\nprovider would see); FIN -> seen = until the in-loop provider got to "
        "its read; call = inside the cancel / exit"
    )
    tables.print_table(
        [
            "kind",
            "t0->FIN agent",
            "floor",
            "ratio",
            "FIN->seen agent",
            "floor",
            "call agent",
            "floor",
        ],
        rows,
    )


def describe(s: Sample) -> str:
    gc_text = f", gc gen{s.gc_gen}" if s.gc_gen >= 0 else ""
    return (
        f"{s.side} {s.latency_ns / 1e3:,.0f} (FIN at {s.fin_ns / 1e3:,.0f}, "
        f"off-cpu {s.off_cpu_ns / 1e3:,.0f}{gc_text})"
    )


def print_outliers(runs: list[KindRun]) -> None:
    print("\nslowest 3 samples per kind, µs (off-cpu = this thread preempted)")
    for run in runs:
        worst = sorted(run.agent + run.floor, key=lambda s: s.latency_ns, reverse=True)[:3]
        print(f"  {run.kind:<17} " + "; ".join(describe(s) for s in worst))
    print("the tail above each p95:")
    for run in runs:
        parts = []
        for side, samples in (("agent", run.agent), ("floor", run.floor)):
            p95 = percentile(sorted(s.latency_ns for s in samples), 0.95)
            tail = [s for s in samples if s.latency_ns > p95]
            if tail:
                gc_n = sum(1 for s in tail if s.gc_gen >= 0)
                pre_n = sum(1 for s in tail if s.off_cpu_ns >= PREEMPTED_NS)
                parts.append(
                    f"{side} {len(tail)} samples: {gc_n} with a GC, {pre_n} preempted >= 1 ms"
                )
        print(f"  {run.kind:<17} " + "; ".join(parts))


# --------------------------------------------------------------------------------- main


def sample_json(s: Sample) -> dict[str, Any]:
    return {
        "side": s.side,
        "latency_us": round(s.latency_ns / 1e3, 1),
        "call_us": round(s.call_ns / 1e3, 1),
        "fin_us": round(s.fin_ns / 1e3, 1) if s.fin_ns >= 0 else None,
        "off_cpu_us": round(s.off_cpu_ns / 1e3, 1),
        "gc_gen": s.gc_gen,
        "connection_id": s.connection_id,
        "close_kind": s.close_kind,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=None, help="cancels on openai-chat (200)")
    parser.add_argument("--extra", type=int, default=None, help="cancels per extra kind (50)")
    parser.add_argument(
        "--no-settle",
        action="store_true",
        help="cancel as soon as the gate is reached, before the client has read the events",
    )
    args = reports.parse_args("", parser)  # adds --quick (30 cancels, 10 per extra kind)
    main_count = args.count or (30 if args.quick else 200)
    extra_count = args.extra or (10 if args.quick else 50)
    if not (1 <= main_count <= 100_000 and 1 <= extra_count <= 100_000):
        parser.error("--count and --extra must be between 1 and 100000")

    flags = (" --quick" if args.quick else "") + (" --no-settle" if args.no_settle else "")
    print(
        f"{NAME}{flags}: {main_count} cancels on {KINDS[0]}, "
        f"{extra_count} on each of {', '.join(KINDS[1:])}.\nAgent and bare-httpx floor "
        "interleaved against one FakeProvider on 127.0.0.1 in the same event loop;\nplain "
        f"asyncio (anyio.run), no uvloop; {WARMUP} warm-up pairs dropped per kind.\n"
    )
    quiet = machine.wait_quiet()
    gc.callbacks.append(GC)
    CLOSES.install()
    started = time.monotonic()
    try:
        runs = anyio.run(measure, main_count, extra_count, not args.no_settle, backend="asyncio")
    finally:
        CLOSES.uninstall()
        gc.callbacks.remove(GC)
    wall = time.monotonic() - started
    figs = [figures(r) for r in runs]
    print_main(figs[0])
    print_kinds(figs)
    print_split(figs)
    print_outliers(runs)

    report = {
        "config": {
            "main_kind": KINDS[0],
            "main_count": main_count,
            "extra_count": extra_count,
            "warmup_pairs": WARMUP,
            "hold_before": HOLD_BEFORE,
            "events_read_by_floor": EVENTS_READ,
            "settle": not args.no_settle,
            "loop": "asyncio (anyio.run), no uvloop",
            "provider": "FakeProvider in the benchmark's own event loop",
            "percentiles": "linear interpolation between closest ranks",
            "quick": args.quick,
        },
        "machine_before": quiet,
        "wall_s": round(wall, 1),
        "figures": figs,
        "samples": [
            {
                "kind": r.kind,
                "pairs": [
                    [sample_json(a), sample_json(f)] for a, f in zip(r.agent, r.floor, strict=True)
                ],
            }
            for r in runs
        ],
    }
    path = reports.write_report(NAME, report)
    print(f"\nwrote {path.relative_to(ROOT)}; {wall:.1f} s")
    if args.record:
        results.record(NAME, {"kinds": figs}, runs=[{"machine_before": quiet}])


if __name__ == "__main__":
    main()
