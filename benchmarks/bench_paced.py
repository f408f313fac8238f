"""Figure 2: timing accuracy of 2,000 concurrent streams paced at 20 events/s (pace=50ms).

    python -m benchmarks.bench_paced [--quick]

Each server runs alone on core 0; the load client on core 1 opens 2,000 connections in
batches of 25 every 23.5 ms (a 1.9 s ramp, spread over the 50 ms period) and keeps every
event's arrival time
(`time.monotonic()`). Event i of a stream is scheduled at (arrival of the stream's first
event) + i * 50 ms; its lateness is arrival - schedule. Reported: the share of events more
than 10 ms late (missing events count as late) and lateness percentiles.
Servers: ours (uvloop, `pace=50ms,tokens=400`), starlette with `await asyncio.sleep(0.05)`
after each write (what existing fake servers do), and starlette against absolute deadlines.
Target: ours < 1% of events more than 10 ms late.
"""

from __future__ import annotations

from typing import Any

from benchmarks import _common as c

NAME = "bench_paced"
TARGET_SHARE = 0.01
THRESHOLD_S = 0.010
INTERVAL_S = 0.050


def main() -> None:
    args = c.parse_args(__doc__.splitlines()[0])
    # Batches of 25 every 23.5 ms: 80 batches (a 1.9 s ramp) that land on 80 distinct phases
    # of the 50 ms period, as independent real streams would. (With a gap that is a
    # multiple of 50 ms, every stream would tick at the same instant: a 2,000-event burst
    # every 50 ms, which measures burst handling rather than pacing.)
    batch, gap = 25, 0.0235
    if args.quick:
        streams, tokens, slack = 200, 40, 5.0
    else:
        streams, tokens, slack = 2000, 400, 10.0
    events = c.events_per_response(tokens)
    servers = [
        c.ours(f"pace=50ms,tokens={tokens}", loop="uvloop"),
        c.starlette("relative", tokens, interval=INTERVAL_S, label="starlette (sleep after write)"),
        c.starlette(
            "absolute", tokens, interval=INTERVAL_S, label="starlette (absolute deadlines)"
        ),
    ]
    print(
        f"bench_paced{' --quick' if args.quick else ''}: {streams} concurrent streams, "
        f"{events} events each, one every {INTERVAL_S * 1e3:g} ms "
        f"({(events - 1) * INTERVAL_S:g} s per stream), ramp {batch} connections every "
        f"{gap * 1e3:g} ms; late = more than {THRESHOLD_S * 1e3:g} ms behind schedule.\n"
        f"Server on core {c.SERVER_CPU} (ours on uvloop), client on core {c.CLIENT_CPU}.\n"
    )
    results: dict[str, dict[str, Any]] = {}
    bodies: dict[str, bytes] = {}
    for spec in servers:
        with c.running_server(spec) as (port, child):
            bodies[spec.label] = c.fetch_body(port, max_events=3)
            cfg = {
                "mode": "paced",
                "port": port,
                "server_pid": child.pid,
                "streams": streams,
                "events_per_response": events,
                "interval_s": INTERVAL_S,
                "late_threshold_s": THRESHOLD_S,
                "ramp_batch": batch,
                "ramp_gap_s": gap,
                "slack_s": slack,
            }
            quiet = c.wait_quiet(max_wait=10.0)
            budget = (streams / batch) * gap + (events - 1) * INTERVAL_S + slack + 60
            res = c.run_client(cfg, timeout=budget)
            res["machine_before"] = quiet
            results[spec.label] = res
            lat = res["lateness_ms"]
            print(
                f"  {spec.label:<32} late {100 * res['late_share']:6.2f}%  p50 {lat['p50']:7.1f} ms"
                f"  p99 {lat['p99']:8.1f} ms  max {lat['max']:8.1f} ms  missing "
                f"{res['missing_events']}  (CPU: server {res['server_cpu_pct']:.0f}%, client "
                f"{res['client_cpu_pct']:.0f}%, {c.fmt_cores(res)}; client loop lag p99 "
                f"{c.fmt(res['client_loop_lag']['p99_ms'], '.1f')} ms; errors {len(res['errors'])})"
            )
            for err in res["errors"]:
                print(f"      ! {err}")

    o, rel, ab = (results[s.label] for s in servers)
    same = {s.label: c.same_bytes(bodies[servers[0].label], bodies[s.label]) for s in servers[1:]}
    print()
    for label, check in same.items():
        print(f"first 3 events, ours vs {label}: {c.describe_same(check)}")

    def row(
        name: str, get: Any, spec: str, suffix: str, target: str = "", met: Any = None
    ) -> list[str]:
        vo, vr, va = get(o), get(rel), get(ab)
        return [
            name,
            c.fmt(vo, spec, suffix),
            c.fmt(vr, spec, suffix),
            c.fmt(c.ratio(vo, vr), ".3f", "x"),
            c.fmt(va, spec, suffix),
            c.fmt(c.ratio(vo, va), ".3f", "x"),
            target,
            c.fmt(met) if met is not None else "",
        ]

    share_met = o["late_share"] is not None and o["late_share"] < TARGET_SHARE
    rows = [
        row("events > 10 ms late", lambda r: 100 * r["late_share"], ".2f", "%", "< 1%", share_met),
        row(
            "  same, after the ramp",
            lambda r: None if r["steady_late_share"] is None else 100 * r["steady_late_share"],
            ".2f",
            "%",
        ),
        row("lateness p50", lambda r: r["lateness_ms"]["p50"], ".2f", " ms"),
        row("lateness p99", lambda r: r["lateness_ms"]["p99"], ".2f", " ms"),
        row("lateness p99.9", lambda r: r["lateness_ms"]["p999"], ".2f", " ms"),
        row("lateness max", lambda r: r["lateness_ms"]["max"], ".1f", " ms"),
        row("last event late, median", lambda r: r["last_event_lateness_ms"]["p50"], ".1f", " ms"),
        row("missing events", lambda r: r["missing_events"], ",d", ""),
        row("server CPU", lambda r: r["server_cpu_pct"], ".0f", "%"),
    ]
    print()
    c.print_table(
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
    figures = {
        "ours_late_share": o["late_share"],
        "starlette_sleep_late_share": rel["late_share"],
        "starlette_absolute_late_share": ab["late_share"],
        "ours_steady_late_share": o["steady_late_share"],
        "starlette_sleep_steady_late_share": rel["steady_late_share"],
        "starlette_absolute_steady_late_share": ab["steady_late_share"],
        "ours_p99_ms": o["lateness_ms"]["p99"],
        "starlette_sleep_p99_ms": rel["lateness_ms"]["p99"],
        "starlette_absolute_p99_ms": ab["lateness_ms"]["p99"],
        "ratio_share_vs_sleep": c.ratio(o["late_share"], rel["late_share"]),
        "ratio_share_vs_absolute": c.ratio(o["late_share"], ab["late_share"]),
        "ratio_p99_vs_sleep": c.ratio(o["lateness_ms"]["p99"], rel["lateness_ms"]["p99"]),
        "ratio_p99_vs_absolute": c.ratio(o["lateness_ms"]["p99"], ab["lateness_ms"]["p99"]),
        "target_share": TARGET_SHARE,
        "target_met": share_met,
    }
    path = c.write_report(
        NAME,
        {
            "quick": args.quick,
            "config": {
                "streams": streams,
                "tokens": tokens,
                "events_per_stream": events,
                "interval_s": INTERVAL_S,
                "late_threshold_s": THRESHOLD_S,
                "ramp_batch": batch,
                "ramp_gap_s": gap,
                "slack_s": slack,
            },
            "servers": {s.label: {"side": s.side, **s.notes} for s in servers},
            "figures": figures,
            "same_bytes_first_3_events": same,
            "raw": results,
        },
    )
    print(f"\nwrote {path.relative_to(c.ROOT)}")


if __name__ == "__main__":
    main()
