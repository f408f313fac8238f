"""Figure 2: timing accuracy of 2,000 concurrent streams paced at 20 events/s (pace=50ms).

    python -m benchmarks.bench_paced [--quick] [--record]

Each server runs alone on core 0; the load client on core 1 opens 2,000 connections in
batches of 25 every 23.5 ms (a 1.9 s ramp, spread over the 50 ms period) and keeps every
event's arrival time (`time.monotonic()`). Event i of a stream is scheduled at (arrival of
the stream's first event) + i * 50 ms; its lateness is arrival - schedule. Reported: the
share of events more than 10 ms late (missing events count as late), lateness percentiles,
the time from connect to first event, server CPU per 1,000 events and RSS per stream.
Servers, in one run: ours (uvloop, `pace=50ms,tokens=400`), starlette with
`await asyncio.sleep(0.05)` after each write (what existing fake servers do), and starlette
against absolute deadlines. Targets: ours < 1% of events more than 10 ms late, p99 < 10 ms.
"""

from __future__ import annotations

from typing import Any

from benchmarks import ROOT, paced, reports, request, results, tables
from benchmarks.servers import ours, starlette
from benchmarks.stats import ratio

NAME = "bench_paced"
TARGET_SHARE = 0.01
TARGET_P99_MS = 10.0


def main() -> None:
    args = reports.parse_args(__doc__.splitlines()[0])
    streams, tokens = (200, 40) if args.quick else (2000, 400)
    events = request.events_per_response(tokens)
    contenders = [
        ours(f"pace=50ms,tokens={tokens}"),
        starlette("relative", tokens, label="starlette (sleep after write)"),
        starlette("absolute", tokens, label="starlette (absolute deadlines)"),
    ]
    print(
        f"{NAME}{' --quick' if args.quick else ''}: {streams} concurrent streams, "
        f"{events} events each, one every 50 ms ({(events - 1) * paced.INTERVAL_S:g} s per "
        f"stream), ramp {paced.BATCH} connections every {paced.GAP_S * 1e3:g} ms; late = more "
        "than 10 ms behind schedule.\nServer on core 0 (ours on uvloop), client on core 1.\n"
    )
    runs: dict[str, dict[str, Any]] = {}
    for spec in contenders:
        res = runs[spec.label] = paced.measure(spec, streams, tokens)
        print(paced.describe(spec.label, res))
        for err in res["errors"]:
            print(f"      ! {err}")

    o, rel, ab = (runs[s.label] for s in contenders)
    ours_first = o["first_3_events"]
    same = {
        s.label: request.same_bytes(ours_first, runs[s.label]["first_3_events"])
        for s in contenders[1:]
    }
    for res in runs.values():
        res.pop("first_3_events", None)
    print()
    for label, check in same.items():
        print(f"first 3 events, ours vs {label}: {request.describe_same(check)}")

    def row(
        name: str, get: Any, spec: str, suffix: str, target: str = "", met: Any = None
    ) -> list[str]:
        vo, vr, va = get(o), get(rel), get(ab)
        return [
            name,
            tables.fmt(vo, spec, suffix),
            tables.fmt(vr, spec, suffix),
            tables.fmt(ratio(vo, vr), ".3f", "x"),
            tables.fmt(va, spec, suffix),
            tables.fmt(ratio(vo, va), ".3f", "x"),
            target,
            tables.fmt(met) if met is not None else "",
        ]

    share_met = o["late_share"] < TARGET_SHARE
    p99_met = o["lateness_ms"]["p99"] < TARGET_P99_MS
    rows = [
        row("events > 10 ms late", lambda r: 100 * r["late_share"], ".2f", "%", "< 1%", share_met),
        row(
            "  same, after the ramp",
            lambda r: None if r["steady_late_share"] is None else 100 * r["steady_late_share"],
            ".2f",
            "%",
        ),
        row("lateness p50", lambda r: r["lateness_ms"]["p50"], ".2f", " ms"),
        row("lateness p99", lambda r: r["lateness_ms"]["p99"], ".2f", " ms", "< 10 ms", p99_met),
        row("lateness p99.9", lambda r: r["lateness_ms"]["p999"], ".2f", " ms"),
        row("lateness max", lambda r: r["lateness_ms"]["max"], ".1f", " ms"),
        row("last event late, median", lambda r: r["last_event_lateness_ms"]["p50"], ".1f", " ms"),
        row("first event after connect, p99", lambda r: r["first_event_ms"]["p99"], ".1f", " ms"),
        row("missing events", lambda r: r["missing_events"], ",d", ""),
        row("server CPU", lambda r: r["server_cpu_pct"], ".0f", "%"),
        row(
            "server CPU per 1,000 events",
            lambda r: r["server_cpu_ms_per_1000_events"],
            ".1f",
            " ms",
        ),
        row("server RSS per stream", lambda r: r["kib_per_stream"], ".1f", " KiB"),
    ]
    print()
    tables.print_table(
        [
            f"{streams} streams @ 20 ev/s",
            "ours",
            "starlette sleep",
            "ours/sleep",
            "starlette abs",
            "ours/abs",
            "target",
            "met",
        ],
        rows,
    )

    def headline(r: dict[str, Any]) -> dict[str, Any]:
        return {
            "late_share": r["late_share"],
            "steady_late_share": r["steady_late_share"],
            "p99_ms": r["lateness_ms"]["p99"],
            "max_ms": r["lateness_ms"]["max"],
            "first_event_p99_ms": r["first_event_ms"]["p99"],
            "server_cpu_pct": r["server_cpu_pct"],
            "server_cpu_ms_per_1000_events": r["server_cpu_ms_per_1000_events"],
            "kib_per_stream": r["kib_per_stream"],
            "others_cpu_pct": r["other_processes_cpu_pct"],
            "load_average": r["machine_before"]["load_average"],
        }

    figures = {
        "streams": streams,
        "ours": headline(o),
        "starlette_sleep": headline(rel),
        "starlette_absolute": headline(ab),
        "target_share": TARGET_SHARE,
        "target_p99_ms": TARGET_P99_MS,
        "target_met": share_met and p99_met,
    }
    path = reports.write_report(
        NAME,
        {
            "quick": args.quick,
            "config": {
                "streams": streams,
                "tokens": tokens,
                "events_per_stream": events,
                "interval_s": paced.INTERVAL_S,
                "late_threshold_s": paced.THRESHOLD_S,
                "ramp_batch": paced.BATCH,
                "ramp_gap_s": paced.GAP_S,
                "slack_s": paced.SLACK_S,
            },
            "servers": {s.label: {"side": s.side, **s.notes} for s in contenders},
            "figures": figures,
            "same_bytes_first_3_events": same,
            "raw": runs,
        },
    )
    print(f"\nwrote {path.relative_to(ROOT)}")
    if args.record:
        results.record(NAME, figures, runs=list(runs.values()))


if __name__ == "__main__":
    main()
