"""Figure 3: server memory per idle hanging stream, at 1,000 and 5,000 open streams.

    python -m benchmarks.bench_memory [--quick] [--record]

For each server and each N, a fresh server starts on core 0 and gets a short warm-up
(8 streams opened, first event read, closed); then its RSS is sampled (psutil), the load
client on core 1 opens N streams in batches of 250 until every stream got its headers and
first event and went silent (ours: `hang-after=1`; starlette: the generator yields the first
event, then `await asyncio.Event().wait()`), the server settles for 1 s, and RSS is sampled
again. Figure: (RSS after - RSS before) / N, in KiB. Target: ours <= 14 KiB per stream.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import psutil

from benchmarks import ROOT, children, machine, reports, request, servers, stats, tables
from benchmarks import results as recorded

NAME = "bench_memory"
TARGET_KIB = 14.0  # issue 14: no worse than the 13.3 KiB measured before the paced work
WARMUP_STREAMS = 8
SETTLE_S = 1.0


def warm_up(port: int) -> None:
    """Open a few streams, read each one's first event, close them (loads lazy code paths)."""
    socks = []
    for _ in range(WARMUP_STREAMS):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(request.REQUEST)
        socks.append(s)
    for s in socks:
        data = b""
        while b"\n\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()


def rss(proc: psutil.Process, samples: int = 5) -> int:
    values = []
    for _ in range(samples):
        values.append(proc.memory_info().rss)
        time.sleep(0.05)
    return int(sorted(values)[len(values) // 2])


def measure(spec: servers.ServerSpec, n: int) -> dict[str, Any]:
    with servers.running_server(spec) as (port, child):
        proc = psutil.Process(child.pid)
        first_event = request.fetch_body(port, max_events=1)
        warm_up(port)
        time.sleep(0.5)
        before = rss(proc)
        client = children.start_client(
            {
                "mode": "memory",
                "port": port,
                "server_pid": child.pid,
                "streams": n,
                "events_per_response": 1,
                "ramp_batch": 250,
                "ramp_gap_s": 0.0,
                "hold_s": 120.0,
            }
        )
        try:
            ready = json.loads(client.expect("READY", timeout=150))
            time.sleep(SETTLE_S)
            after = rss(proc)
            cpu_after = proc.cpu_times()
            client.send("close")
            res: dict[str, Any] = json.loads(client.expect("RESULT", timeout=30))
        finally:
            client.stop()
        time.sleep(1.0)
        after_close = rss(proc)
    per_stream = (after - before) / n / 1024
    return {
        "streams": n,
        "rss_before": before,
        "rss_with_streams": after,
        "rss_after_close": after_close,
        "kib_per_stream": per_stream,
        "ready": ready,
        "server_cpu_s_total": cpu_after.user + cpu_after.system,
        "client": res,
        "first_event": first_event,
    }


def main() -> None:
    args = reports.parse_args(__doc__.splitlines()[0])
    counts = (100, 500) if args.quick else (1000, 5000)
    contenders = [
        servers.ours("hang-after=1", loop="uvloop"),
        servers.starlette("hang", 200, label="starlette (uvicorn+uvloop+httptools)"),
    ]
    print(
        f"bench_memory{' --quick' if args.quick else ''}: server RSS per idle hanging stream "
        f"at {' and '.join(f'{n:,}' for n in counts)} open streams (headers + first event, "
        f"then silence).\nServer on core {children.SERVER_CPU} (ours on uvloop), client on core "
        f"{children.CLIENT_CPU}; a fresh server per measurement.\n"
    )
    results: dict[str, dict[int, dict[str, Any]]] = {}
    for spec in contenders:
        results[spec.label] = {}
        for n in counts:
            machine.wait_quiet(max_wait=10.0)
            m = measure(spec, n)
            results[spec.label][n] = m
            cl = m["client"]
            print(
                f"  {spec.label:<38} {n:>5} streams: {m['kib_per_stream']:6.2f} KiB/stream  "
                f"(RSS {m['rss_before'] / 2**20:.1f} -> {m['rss_with_streams'] / 2**20:.1f} MiB,"
                f" {m['rss_after_close'] / 2**20:.1f} MiB after close; first event on "
                f"{m['ready']['with_first_event']}/{n} in {m['ready']['ramp_s']:.1f}s; "
                f"events seen {cl['events_received']}; errors {len(cl['errors'])})"
            )
            for err in cl["errors"]:
                print(f"      ! {err}")

    ours_l, base_l = (s.label for s in contenders)
    same = request.same_bytes(
        results[ours_l][counts[0]].pop("first_event"), results[base_l][counts[0]].pop("first_event")
    )
    for label in (ours_l, base_l):
        for n in counts:
            results[label][n].pop("first_event", None)
    print(f"\nfirst event: {request.describe_same(same)}")
    rows = []
    figures = []
    for n in counts:
        o = results[ours_l][n]["kib_per_stream"]
        b = results[base_l][n]["kib_per_stream"]
        ok = all(results[label][n]["ready"]["with_first_event"] == n for label in (ours_l, base_l))
        met = o <= TARGET_KIB and ok
        rows.append(
            [
                f"{n:,} idle streams",
                tables.fmt(o, ".2f", " KiB"),
                tables.fmt(b, ".2f", " KiB"),
                tables.fmt(stats.ratio(o, b), ".2f", "x"),
                f"<= {TARGET_KIB:g} KiB",
                tables.fmt(met),
            ]
        )
        figures.append(
            {
                "streams": n,
                "ours_kib_per_stream": o,
                "starlette_kib_per_stream": b,
                "ratio": stats.ratio(o, b),
                "target_kib": TARGET_KIB,
                "all_streams_ready": ok,
                "target_met": met,
            }
        )
    print()
    tables.print_table(
        ["RSS per idle stream", "ours", "starlette", "ours/starlette", "target", "met"], rows
    )
    path = reports.write_report(
        NAME,
        {
            "quick": args.quick,
            "config": {
                "counts": list(counts),
                "warmup_streams": WARMUP_STREAMS,
                "settle_s": SETTLE_S,
                "ours_spec": "hang-after=1",
                "starlette_mode": "hang",
            },
            "servers": {s.label: {"side": s.side, **s.notes} for s in contenders},
            "figures": figures,
            "same_bytes_first_event": same,
            "raw": {label: {str(k): v for k, v in per.items()} for label, per in results.items()},
        },
    )
    print(f"\nwrote {path.relative_to(ROOT)}")
    if args.record:
        recorded.record(NAME, figures)


if __name__ == "__main__":
    main()
