"""Run every benchmark in turn, then print one summary table from their JSON reports.

    python -m benchmarks.run_all [--quick]

Each benchmark runs in its own process (one at a time, never two servers at once) and
writes reports/bench/<name>.json (`.quick.json` with --quick); the summary goes to
reports/bench/summary.json (summary.quick.json) too.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from benchmarks import _common as c

BENCHMARKS = ("bench_throughput", "bench_paced", "bench_memory")


def main() -> None:
    args = c.parse_args(__doc__.splitlines()[0])
    failed = []
    started = time.monotonic()
    for name in BENCHMARKS:
        print(f"\n=== {name}{' --quick' if args.quick else ''} " + "=" * 40, flush=True)
        argv = [sys.executable, "-m", f"benchmarks.{name}", *(["--quick"] if args.quick else [])]
        code = subprocess.call(argv, cwd=c.ROOT, timeout=600)
        if code != 0:
            failed.append(name)
            print(f"!!! {name} exited with {code}")

    rows: list[list[str]] = []
    summary: dict[str, object] = {"quick": args.quick, "failed": failed}
    reports = {name: c.report_path(name, quick=args.quick) for name in BENCHMARKS}
    data = {n: json.loads(p.read_text()) for n, p in reports.items() if p.exists()}
    if "bench_throughput" in data:
        for f in data["bench_throughput"]["figures"]:
            rows.append(
                [
                    f"throughput, {f['streams']} streams (events/s)",
                    c.fmt(f["ours_uvloop_events_per_s"]),
                    c.fmt(f["starlette_events_per_s"]),
                    c.fmt(f["ratio"], ".2f", "x"),
                    f">= {f['target_ratio']}x",
                    c.fmt(f["target_met"]),
                ]
            )
            rows.append(
                [
                    "  ours on plain asyncio (extra)",
                    c.fmt(f["ours_asyncio_events_per_s"]),
                    c.fmt(f["starlette_events_per_s"]),
                    c.fmt(f["ratio_asyncio"], ".2f", "x"),
                    "",
                    "",
                ]
            )
    if "bench_paced" in data:
        f = data["bench_paced"]["figures"]
        n = data["bench_paced"]["config"]["streams"]
        rows.append(
            [
                f"paced, {n} streams: events > 10 ms late",
                c.fmt(100 * f["ours_late_share"], ".2f", "%"),
                c.fmt(100 * f["starlette_sleep_late_share"], ".2f", "%"),
                c.fmt(f["ratio_share_vs_sleep"], ".3f", "x"),
                "< 1%",
                c.fmt(f["target_met"]),
            ]
        )
        rows.append(
            [
                "  vs starlette, absolute deadlines",
                c.fmt(100 * f["ours_late_share"], ".2f", "%"),
                c.fmt(100 * f["starlette_absolute_late_share"], ".2f", "%"),
                c.fmt(f["ratio_share_vs_absolute"], ".3f", "x"),
                "",
                "",
            ]
        )
        rows.append(
            [
                f"paced, {n} streams: p99 lateness (ms)",
                c.fmt(f["ours_p99_ms"], ".1f"),
                c.fmt(f["starlette_sleep_p99_ms"], ".1f"),
                c.fmt(f["ratio_p99_vs_sleep"], ".3f", "x"),
                "",
                "",
            ]
        )
        rows.append(
            [
                "  vs starlette, absolute deadlines",
                c.fmt(f["ours_p99_ms"], ".1f"),
                c.fmt(f["starlette_absolute_p99_ms"], ".1f"),
                c.fmt(f["ratio_p99_vs_absolute"], ".3f", "x"),
                "",
                "",
            ]
        )
    if "bench_memory" in data:
        for f in data["bench_memory"]["figures"]:
            rows.append(
                [
                    f"memory, {f['streams']:,} idle streams (KiB/stream)",
                    c.fmt(f["ours_kib_per_stream"], ".2f"),
                    c.fmt(f["starlette_kib_per_stream"], ".2f"),
                    c.fmt(f["ratio"], ".2f", "x"),
                    f"<= {f['target_kib']:g}",
                    c.fmt(f["target_met"]),
                ]
            )
    print("\n=== summary (ours on uvloop; starlette = uvicorn + uvloop + httptools) " + "=" * 8)
    if rows:
        c.print_table(["figure", "ours", "starlette", "ours/starlette", "target", "met"], rows)
    summary["rows"] = rows
    summary["wall_s"] = round(time.monotonic() - started, 1)
    path = c.write_report("summary", summary)
    print(f"\nwrote {path.relative_to(c.ROOT)}; total {summary['wall_s']} s")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
