"""Run every benchmark in turn, then print one summary table from their JSON reports.

    python -m benchmarks.run_all [--quick] [--record]

Each benchmark runs in its own process (one at a time, never two servers at once) and
writes reports/bench/<name>.json (`.quick.json` with --quick); the summary goes to
reports/bench/summary.json (summary.quick.json) too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from benchmarks import ROOT, reports, tables
from benchmarks.stats import ratio

BENCHMARKS = ("bench_throughput", "bench_paced", "bench_memory")


def main() -> None:
    args = reports.parse_args(__doc__.splitlines()[0])
    failed = []
    started = time.monotonic()
    for name in BENCHMARKS:
        print(f"\n=== {name}{' --quick' if args.quick else ''} " + "=" * 40, flush=True)
        flags = ["--quick"] if args.quick else ["--record"] if args.record else []
        argv = [sys.executable, "-m", f"benchmarks.{name}", *flags]
        code = subprocess.call(argv, cwd=ROOT, timeout=600)
        if code != 0:
            failed.append(name)
            print(f"!!! {name} exited with {code}")

    rows: list[list[str]] = []
    summary: dict[str, object] = {"quick": args.quick, "failed": failed}
    paths = {name: reports.report_path(name, quick=args.quick) for name in BENCHMARKS}
    data = {n: json.loads(p.read_text()) for n, p in paths.items() if p.exists()}
    if "bench_throughput" in data:
        for f in data["bench_throughput"]["figures"]:
            rows.append(
                [
                    f"throughput, {f['streams']} streams (events/s)",
                    tables.fmt(f["ours_uvloop_events_per_s"]),
                    tables.fmt(f["starlette_events_per_s"]),
                    tables.fmt(f["ratio"], ".2f", "x"),
                    f">= {f['target_ratio']}x",
                    tables.fmt(f["target_met"]),
                ]
            )
            rows.append(
                [
                    "  ours on plain asyncio (extra)",
                    tables.fmt(f["ours_asyncio_events_per_s"]),
                    tables.fmt(f["starlette_events_per_s"]),
                    tables.fmt(f["ratio_asyncio"], ".2f", "x"),
                    "",
                    "",
                ]
            )
    if "bench_paced" in data:
        f = data["bench_paced"]["figures"]
        n = f["streams"]
        o, ab, rel = f["ours"], f["starlette_absolute"], f["starlette_sleep"]
        for name, base in (("absolute deadlines", ab), ("sleep after write", rel)):
            rows.append(
                [
                    f"paced, {n} streams: events > 10 ms late, vs starlette {name}",
                    tables.fmt(100 * o["late_share"], ".2f", "%"),
                    tables.fmt(100 * base["late_share"], ".2f", "%"),
                    tables.fmt(ratio(o["late_share"], base["late_share"]), ".3f", "x"),
                    "< 1%",
                    tables.fmt(o["late_share"] < f["target_share"]),
                ]
            )
            rows.append(
                [
                    f"paced, {n} streams: p99 lateness (ms), vs starlette {name}",
                    tables.fmt(o["p99_ms"], ".1f"),
                    tables.fmt(base["p99_ms"], ".1f"),
                    tables.fmt(ratio(o["p99_ms"], base["p99_ms"]), ".3f", "x"),
                    f"< {f['target_p99_ms']:g}",
                    tables.fmt(o["p99_ms"] < f["target_p99_ms"]),
                ]
            )
    if "bench_memory" in data:
        for f in data["bench_memory"]["figures"]:
            rows.append(
                [
                    f"memory, {f['streams']:,} idle streams (KiB/stream)",
                    tables.fmt(f["ours_kib_per_stream"], ".2f"),
                    tables.fmt(f["starlette_kib_per_stream"], ".2f"),
                    tables.fmt(f["ratio"], ".2f", "x"),
                    f"<= {f['target_kib']:g}",
                    tables.fmt(f["target_met"]),
                ]
            )
    print("\n=== summary (ours on uvloop; starlette = uvicorn + uvloop + httptools) " + "=" * 8)
    if rows:
        tables.print_table(["figure", "ours", "starlette", "ours/starlette", "target", "met"], rows)
    summary["rows"] = rows
    summary["wall_s"] = round(time.monotonic() - started, 1)
    path = reports.write_report("summary", summary)
    print(f"\nwrote {path.relative_to(ROOT)}; total {summary['wall_s']} s")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
