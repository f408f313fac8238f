"""The cost curve: paced streams at 20 events/s, N = 500 to 10,000, ours next to starlette.

    python -m benchmarks.bench_cost_curve [--quick] [--record] [--streams 500,2000]
                                          [--servers ours,workers,starlette]

For each N and each server, a fresh server and the load client run N concurrent streams
of 403 events at one every 50 ms (`pace=50ms,tokens=400`; `benchmarks/paced.py` has the
method). Servers: ours on one core (core 0), ours with `--workers 2` (both cores, shared
with the client on core 1), and starlette against absolute deadlines on core 0 (the fair
baseline: it does not drift). Reported per point: the share of events more than 10 ms late,
p99 lateness, the server's CPU per 1,000 events (user + system, all its processes), and
its RSS per open stream (peak RSS while the streams are open, minus RSS before, over N).
Flat CPU per event and RSS per stream mean the cost grows linearly; lateness shows where
one core (or the load client, on its own core) runs out. Writes reports/bench/
bench_cost_curve.json and cost_curve.svg; with --record, also benchmarks/cost_curve.svg.
"""

from __future__ import annotations

import argparse
import shutil
from typing import Any

from benchmarks import ROOT, chart, paced, reports, results, tables
from benchmarks.servers import ServerSpec, ours, starlette

NAME = "bench_cost_curve"
COUNTS = (500, 1000, 2000, 5000, 10000)
QUICK_COUNTS = (100, 300)


def contenders(tokens: int) -> dict[str, ServerSpec]:
    return {
        "ours": ours(f"pace=50ms,tokens={tokens}", label="ours, one core"),
        "workers": ours(f"pace=50ms,tokens={tokens}", workers=2, label="ours, --workers 2"),
        "starlette": starlette("absolute", tokens, label="starlette, absolute deadlines"),
    }


def point(res: dict[str, Any]) -> dict[str, Any]:
    return {
        "late_share": res["late_share"],
        "p99_ms": res["lateness_ms"]["p99"],
        "server_cpu_ms_per_1000_events": res["server_cpu_ms_per_1000_events"],
        "kib_per_stream": res["kib_per_stream"],
        "server_cpu_pct": res["server_cpu_pct"],
        "client_cpu_pct": res["client_cpu_pct"],
        "others_cpu_pct": res["other_processes_cpu_pct"],
        "missing_events": res["missing_events"],
        "first_event_p99_ms": res["first_event_ms"]["p99"],
        "load_average": res["machine_before"]["load_average"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default=None, help="comma-separated N (default all)")
    parser.add_argument("--servers", default="ours,workers,starlette")
    args = reports.parse_args("", parser)
    tokens = 40 if args.quick else 400
    counts = (
        tuple(int(n) for n in args.streams.split(","))
        if args.streams
        else (QUICK_COUNTS if args.quick else COUNTS)
    )
    everyone = contenders(tokens)
    chosen = {k: everyone[k] for k in args.servers.split(",")}
    print(
        f"{NAME}{' --quick' if args.quick else ''}: N paced streams at 20 ev/s "
        f"({tokens + 3} events each) for N in {', '.join(f'{n:,}' for n in counts)}; "
        f"servers: {', '.join(s.label for s in chosen.values())}.\n"
    )
    curve: dict[str, dict[int, dict[str, Any]]] = {key: {} for key in chosen}
    raw: dict[str, dict[str, Any]] = {key: {} for key in chosen}
    for n in counts:
        for key, spec in chosen.items():
            res = paced.measure(spec, n, tokens)
            res.pop("first_3_events", None)
            raw[key][str(n)] = res
            curve[key][n] = point(res)
            print(paced.describe(f"{spec.label}, {n:,}", res), flush=True)
    print()
    for title, field, spec, suffix, scale in (
        ("events > 10 ms late", "late_share", ".2f", "%", 100.0),
        ("p99 lateness", "p99_ms", ".1f", " ms", 1.0),
        ("server CPU per 1,000 events", "server_cpu_ms_per_1000_events", ".1f", " ms", 1.0),
        ("server RSS per stream", "kib_per_stream", ".1f", " KiB", 1.0),
        ("server CPU (% of one core)", "server_cpu_pct", ".0f", "%", 1.0),
        ("load client CPU (% of one core)", "client_cpu_pct", ".0f", "%", 1.0),
    ):
        rows = [
            [chosen[key].label]
            + [
                tables.fmt(
                    None if curve[key][n][field] is None else scale * curve[key][n][field],
                    spec,
                    suffix,
                )
                for n in counts
            ]
            for key in chosen
        ]
        tables.print_table([title, *(f"{n:,}" for n in counts)], rows)
        print()
    figures = {
        "counts": list(counts),
        "labels": {key: spec.label for key, spec in chosen.items()},
        "curve": {key: {str(n): p for n, p in points.items()} for key, points in curve.items()},
    }
    svg = chart.cost_curve(figures)
    reports.REPORT_DIR.mkdir(parents=True, exist_ok=True)
    out = reports.REPORT_DIR / ("cost_curve.quick.svg" if args.quick else "cost_curve.svg")
    out.write_text(svg)
    path = reports.write_report(
        NAME,
        {
            "quick": args.quick,
            "config": {"counts": list(counts), "tokens": tokens, "interval_s": paced.INTERVAL_S},
            "servers": {key: {"side": s.side, **s.notes} for key, s in chosen.items()},
            "figures": figures,
            "raw": raw,
        },
    )
    print(f"wrote {path.relative_to(ROOT)} and {out.relative_to(ROOT)}")
    if args.record:
        shutil.copyfile(out, ROOT / "benchmarks" / "cost_curve.svg")
        runs = [res for per in raw.values() for res in per.values()]
        results.record(NAME, figures, runs=runs)


if __name__ == "__main__":
    main()
