"""Figure 1: maximum events/s on one core, unpaced, at 10 and 100 concurrent streams.

    python -m benchmarks.bench_throughput [--quick] [--record]

Each server (ours on uvloop, starlette on uvloop + httptools, and ours on plain asyncio as
an extra line) runs alone on core 0; the load client on core 1 keeps N keep-alive
connections busy, each asking again as soon as its 2,000-token stream ends, and counts the
SSE events it receives during a measurement window after a warm-up.
Targets: ours (uvloop) >= 1.7x starlette at both concurrencies, and >= 340,000 events/s
(issue 14: no worse than before the paced work).
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import ROOT, children, machine, reports, request, servers, stats, tables
from benchmarks import results as recorded

NAME = "bench_throughput"
TARGET = 1.7
TARGET_EVENTS_PER_S = 340_000
MAX_ATTEMPTS = 2  # per measurement (1 with --quick)
OUTSIDE_LIMIT = 15.0  # % of a core used by other processes that triggers a re-measure
QUIET_WAIT_S = 10.0
RETRY_BUDGET_S = 75.0  # no re-measuring once the benchmark has run this long (~2 min cap)
STARTED = time.monotonic()


def measure(cfg: dict[str, Any], timeout: float, max_attempts: int) -> dict[str, Any]:
    """One client run; measured again (once) when other processes on this shared machine
    used more than 15% of a core meanwhile. The least disturbed attempt is kept."""
    attempts = []
    for _ in range(max_attempts):
        quiet = machine.wait_quiet(max_wait=QUIET_WAIT_S)
        res = children.run_client(cfg, timeout=timeout)
        res["machine_before"] = quiet
        res["outside_load_pct"] = machine.outside_load(res)
        attempts.append(res)
        if (
            res["outside_load_pct"] <= OUTSIDE_LIMIT
            or len(attempts) == max_attempts
            or time.monotonic() - STARTED > RETRY_BUDGET_S
        ):
            break
        print(
            f"    (other processes used {res['outside_load_pct']:.0f}% of a core during the "
            "run; measuring again)"
        )
    best = min(attempts, key=lambda r: r["outside_load_pct"])
    best["attempts"] = len(attempts)
    return best


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool the rounds of one server and config: total events over total measured time."""
    wall = sum(r["wall_s"] for r in rounds)
    events = sum(r["events"] for r in rounds)
    server_cpu_s = sum(r["server_cpu_pct"] / 100 * r["wall_s"] for r in rounds)
    return {
        "events": events,
        "wall_s": wall,
        "events_per_s": events / wall,
        "server_cpu_pct": 100 * server_cpu_s / wall,
        "events_per_server_cpu_s": events / max(server_cpu_s, 1e-9),
        "rounds_events_per_s": [r["events_per_s"] for r in rounds],
        "rounds": rounds,
    }


def main() -> None:
    args = reports.parse_args(__doc__.splitlines()[0])
    tokens = 2000
    # The 5 s per config are taken in ROUNDS windows, the servers alternating between
    # rounds, so slow drifts in outside noise (a shared machine) hit all servers alike.
    rounds = 2
    warmup, window = (0.3, 0.5) if args.quick else (0.5, 2.5)
    concurrencies = (10, 100)
    contenders = [
        servers.ours(f"tokens={tokens}", loop="uvloop"),
        servers.starlette("unpaced", tokens, label="starlette (uvicorn+uvloop+httptools)"),
        servers.ours(f"tokens={tokens}", loop="asyncio"),
    ]
    print(
        f"bench_throughput{' --quick' if args.quick else ''}: unpaced streams of {tokens} tokens "
        f"({request.events_per_response(tokens)} events); per config {rounds} rounds of "
        f"{warmup:g}s warm-up + {window:g}s measured, servers alternating between rounds; "
        f"server on core {children.SERVER_CPU}, client on core {children.CLIENT_CPU}."
    )
    print("Our server runs on uvloop for the figure; plain asyncio is an extra line.\n")
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {
        s.label: {n: [] for n in concurrencies} for s in contenders
    }
    bodies: dict[str, bytes] = {}
    for round_no in range(1, rounds + 1):
        for spec in contenders:
            with servers.running_server(spec) as (port, child):
                if spec.label not in bodies:
                    bodies[spec.label] = request.fetch_body(port)
                for n in concurrencies:
                    cfg = {
                        "mode": "throughput",
                        "port": port,
                        "server_pid": child.pid,
                        "streams": n,
                        "events_per_response": request.events_per_response(tokens),
                        "warmup_s": warmup,
                        "duration_s": window,
                    }
                    res = measure(
                        cfg,
                        timeout=warmup + window + 60,
                        max_attempts=1 if args.quick else MAX_ATTEMPTS,
                    )
                    runs[spec.label][n].append(res)
                    print(
                        f"  round {round_no}  {spec.label:<38} {n:>4} streams: "
                        f"{res['events_per_s']:>10,.0f} events/s  (CPU: server "
                        f"{res['server_cpu_pct']:.0f}%, client {res['client_cpu_pct']:.0f}%, "
                        f"{tables.fmt_cores(res)}; responses {res['responses']}, "
                        f"bad {res['bad_responses']}, errors {len(res['errors'])}, "
                        f"attempts {res['attempts']})"
                    )
                    for err in res["errors"]:
                        print(f"      ! {err}")
    results = {label: {n: combine(rs) for n, rs in per.items()} for label, per in runs.items()}

    ours_l, base_l, extra_l = (s.label for s in contenders)
    same = request.same_bytes(bodies[ours_l], bodies[base_l])
    print(f"\n{request.describe_same(same)}")
    rows = []
    figures = []
    for n in concurrencies:
        ro, rb, rx_ = (results[label][n] for label in (ours_l, base_l, extra_l))
        o, b, x = (r["events_per_s"] for r in (ro, rb, rx_))
        oc, bc, xc = (r["events_per_server_cpu_s"] for r in (ro, rb, rx_))
        r, rc = stats.ratio(o, b), stats.ratio(oc, bc)
        rx, rxc = stats.ratio(x, b), stats.ratio(xc, bc)
        met = r is not None and r >= TARGET and o >= TARGET_EVENTS_PER_S
        rows.append(
            [
                f"{n} streams",
                tables.fmt(o),
                tables.fmt(b),
                tables.fmt(r, ".2f", "x"),
                tables.fmt(oc),
                tables.fmt(bc),
                tables.fmt(rc, ".2f", "x"),
                f">= {TARGET}x, >= {TARGET_EVENTS_PER_S // 1000}k",
                tables.fmt(met),
            ]
        )
        rows.append(
            [
                f"{n} streams, ours on asyncio",
                tables.fmt(x),
                tables.fmt(b),
                tables.fmt(rx, ".2f", "x"),
                tables.fmt(xc),
                tables.fmt(bc),
                tables.fmt(rxc, ".2f", "x"),
                "(extra)",
                "",
            ]
        )
        figures.append(
            {
                "streams": n,
                "ours_uvloop_events_per_s": o,
                "starlette_events_per_s": b,
                "ratio": r,
                "ours_uvloop_events_per_server_cpu_s": oc,
                "starlette_events_per_server_cpu_s": bc,
                "ratio_per_cpu_s": rc,
                "ours_asyncio_events_per_s": x,
                "ratio_asyncio": rx,
                "ours_asyncio_events_per_server_cpu_s": xc,
                "ratio_asyncio_per_cpu_s": rxc,
                "target_ratio": TARGET,
                "target_events_per_s": TARGET_EVENTS_PER_S,
                "target_met": met,
            }
        )
    print()
    tables.print_table(
        [
            "unpaced, server on one core",
            "ours ev/s",
            "starlette ev/s",
            "ratio",
            "ours ev/CPU-s",
            "starlette ev/CPU-s",
            "ratio",
            "target",
            "met",
        ],
        rows,
    )
    path = reports.write_report(
        NAME,
        {
            "quick": args.quick,
            "config": {
                "tokens": tokens,
                "events_per_response": request.events_per_response(tokens),
                "concurrencies": list(concurrencies),
                "rounds": rounds,
                "warmup_s": warmup,
                "window_s": window,
            },
            "servers": {s.label: {"side": s.side, **s.notes} for s in contenders},
            "figures": figures,
            "same_bytes": same,
            "raw": {label: {str(k): v for k, v in per.items()} for label, per in results.items()},
        },
    )
    print(f"\nwrote {path.relative_to(ROOT)}")
    if args.record:
        flat = [r for per in runs.values() for rs in per.values() for r in rs]
        recorded.record(NAME, figures, runs=flat)


if __name__ == "__main__":
    main()
