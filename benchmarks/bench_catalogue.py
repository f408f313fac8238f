"""Wall time of the whole scenario catalogue (`cancel-harness run`) and of the mutant matrix.

    python -m benchmarks.bench_catalogue [--quick] [--record]

What is measured. `cancel-harness run` as a subprocess, exactly as a user types it (the
venv's entry point, reference target, every scenario on each of its wire formats: all by
default; cases 4 at once, the default in process), with a fixed `--seed` so every repeat runs
the same cases and timings; then the same with `--provider openai-chat` only. The two
alternate (all, chat, all, chat, ...) so machine noise hits both; 3 repeats each (`--quick`:
1). For information, three more whole runs: `--jobs 2` and `--jobs 1` (cases two at a time,
one at a time) and `--tempo 0.01` (half the default); none counts for the target; skipped
with `--quick`.
Finally `cancel-harness mutants --provider openai-chat` once (the clean catalogue, then once
per known defect; ~1-2 min; skipped with `--quick`), whose defect -> catching-cases matrix
is printed as the CLI wrote it.
JUnit/JSON reports go to a temporary directory, so reports/latest/ is left alone.

How to read it. wall = subprocess start to exit (interpreter start-up and imports
included); "cases" comes from the CLI's summary line, cases/s = cases / median wall.
"in run" is the CLI's own figure (the "in X s" of its summary line: the runner's wall
time), so wall - in run is the fixed cost (start-up, imports, report writing). "cpu" is the
user + system CPU time of the subprocess: far below wall means the run is bound by the
scenarios' deliberate waits (watch windows that prove nothing happens, in multiples of
`--tempo`, default 0.02 s), not by CPU: a faster machine will not make it much faster, more
`--jobs` or a shorter tempo would. The slowest scenarios (per-case durations summed over
their wire formats, last default run) show where the time goes. Target: the whole catalogue
in < 20 s (median wall) on this 2-core machine; printed as met / NOT met.

Writes reports/bench/bench_catalogue.json (config, every run, the matrix, environment).
"""

from __future__ import annotations

import json
import re
import resource
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks import ROOT, machine, reports, stats, tables
from benchmarks import results as recorded
from benchmarks.children import harness_cli
from fake_providers.kinds import ProviderKind

NAME = "bench_catalogue"
TARGET_S = 20.0
SEED = 1
RUN_TIMEOUT_S = 300
FAST_TEMPO = 0.01  # an extra full run at half the default tempo (information only)
INFO_RUNS = (  # label, extra CLI arguments: one run each, information only
    ("whole, --jobs 2", ("--jobs", "2")),
    ("whole, --jobs 1", ("--jobs", "1")),
    (f"whole, --tempo {FAST_TEMPO:g}", ("--tempo", f"{FAST_TEMPO:g}")),
)
MUTANTS_TIMEOUT_S = 900
JOBS: tuple[str, ...] = ()  # the target is for the default: 4 cases at once in process
SUMMARY = re.compile(
    r"(\d+) passed, (\d+) failed, (\d+) errors, (\d+) not applicable in ([\d.]+) s"
)


def child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], timeout: float) -> dict[str, Any]:
    """Run one CLI command to completion; wall and CPU time, exit code, output."""
    cpu0 = child_cpu_s()
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - t0
    result: dict[str, Any] = {
        "argv": argv,
        "exit": proc.returncode,
        "wall_s": round(wall, 2),
        "cpu_s": round(child_cpu_s() - cpu0, 2),
        "stdout": proc.stdout,
        "stderr_tail": proc.stderr[-2000:],
    }
    found = SUMMARY.findall(proc.stdout)
    if found:
        passed, failed, errors, na, in_run = found[-1]
        result.update(
            passed=int(passed),
            failed=int(failed),
            errors=int(errors),
            not_applicable=int(na),
            cases=int(passed) + int(failed) + int(errors) + int(na),
            in_run_s=float(in_run),
        )
    return result


def run_catalogue(
    tmp: Path, label: str, i: int, providers: list[str], extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    out = tmp / f"{label.replace(' ', '-')}-{i}"
    argv = [
        *harness_cli(),
        "run",
        *(a for p in providers for a in ("--provider", p)),
        *extra,
        "--seed",
        str(SEED),
        "--junit",
        str(out / "junit.xml"),
        "--json",
        str(out / "results.json"),
    ]
    res = timed(argv, RUN_TIMEOUT_S)
    path = out / "results.json"
    res["results"] = json.loads(path.read_text()) if path.exists() else None
    print(
        f"  {label:<20} #{i + 1}: {res['wall_s']:6.1f} s wall, {res['cpu_s']:5.1f} s cpu, "
        f"{res.get('cases', '?')} cases, exit {res['exit']}",
        flush=True,
    )
    return res


def summarise(label: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    walls = [r["wall_s"] for r in runs]
    median = statistics.median(walls)
    cases = runs[-1].get("cases")
    return {
        "label": label,
        "repeats": len(runs),
        "min_s": min(walls),
        "median_s": median,
        "max_s": max(walls),
        "cases": cases,
        "cases_per_s": cases / median if cases and median else None,
        "in_run_s_median": statistics.median(r.get("in_run_s", 0.0) for r in runs),
        "cpu_s_median": statistics.median(r["cpu_s"] for r in runs),
        "failed_or_errors": sum(r.get("failed", 0) + r.get("errors", 0) for r in runs),
        "exit_codes": [r["exit"] for r in runs],
    }


def slowest_scenarios(results: dict[str, Any] | None, n: int = 6) -> list[tuple[str, float, int]]:
    if not results:
        return []
    by_id: dict[str, list[float]] = defaultdict(list)
    for case in results["results"]:
        by_id[case["id"]].append(case["duration"])
    ranked = sorted(by_id.items(), key=lambda kv: sum(kv[1]), reverse=True)
    return [(sid, sum(ds), len(ds)) for sid, ds in ranked[:n]]


def main() -> None:
    args = reports.parse_args(__doc__.splitlines()[0])
    repeats = 1 if args.quick else 3
    print(
        f"{NAME}{' --quick' if args.quick else ''}: `cancel-harness run` (whole catalogue) and "
        f"`run --provider openai-chat`, {repeats} time(s) each, alternating, seed {SEED}"
        + ("" if args.quick else "; then `cancel-harness mutants --provider openai-chat` once")
        + f".\nCLI: {' '.join(harness_cli())}\n"
    )
    quiet = machine.wait_quiet()
    started = time.monotonic()
    full: list[dict[str, Any]] = []
    chat: list[dict[str, Any]] = []
    info: list[tuple[str, dict[str, Any]]] = []
    mutants: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="bench-catalogue-") as tmp_name:
        tmp = Path(tmp_name)
        for i in range(repeats):
            full.append(run_catalogue(tmp, "all kinds", i, [], JOBS))
            chat.append(
                run_catalogue(tmp, ProviderKind.OPENAI_CHAT, i, [ProviderKind.OPENAI_CHAT], JOBS)
            )
        if not args.quick:
            for label, extra in INFO_RUNS:
                info.append((label, run_catalogue(tmp, label, 0, [], extra)))
            path = tmp / "mutants.json"
            argv = [
                *harness_cli(),
                "mutants",
                "--provider",
                ProviderKind.OPENAI_CHAT,
                "--seed",
                str(SEED),
                "--json",
                str(path),
            ]
            print("  mutants --provider openai-chat ...", flush=True)
            mutants = timed(argv, MUTANTS_TIMEOUT_S)
            mutants["matrix"] = json.loads(path.read_text()) if path.exists() else None
            print(f"  mutants: {mutants['wall_s']:.1f} s wall, exit {mutants['exit']}", flush=True)

    figs = [
        summarise("cancel-harness run", full),
        summarise("cancel-harness run --provider openai-chat", chat),
    ]
    figs += [summarise(f"{label} (info)", [res]) for label, res in info]
    rows = [
        [
            f["label"],
            str(f["repeats"]),
            tables.fmt(f["min_s"], ".1f"),
            tables.fmt(f["median_s"], ".1f"),
            tables.fmt(f["max_s"], ".1f"),
            tables.fmt(f["cases"]),
            tables.fmt(f["cases_per_s"], ".2f"),
            tables.fmt(f["in_run_s_median"], ".1f"),
            tables.fmt(f["cpu_s_median"], ".1f"),
            str(f["failed_or_errors"]),
        ]
        for f in figs
    ]
    if mutants is not None:
        cases = None
        matrix = mutants.get("matrix")
        m = re.search(r"mutants: (\d+) case\(s\) x \(clean \+ (\d+) defects\)", mutants["stdout"])
        if m:
            cases = int(m.group(1)) * (1 + int(m.group(2)))
        rows.append(
            [
                "mutants --provider openai-chat",
                "1",
                tables.fmt(mutants["wall_s"], ".1f"),
                tables.fmt(mutants["wall_s"], ".1f"),
                tables.fmt(mutants["wall_s"], ".1f"),
                tables.fmt(cases),
                tables.fmt(cases / mutants["wall_s"] if cases else None, ".2f"),
                "-",
                tables.fmt(mutants["cpu_s"], ".1f"),
                "-" if matrix is None else ("0" if matrix.get("ok") else "see matrix"),
            ]
        )
        mutants["cases"] = cases
    print("\nwall times (s); cases/s at the median; in run = the CLI's own timing")
    tables.print_table(
        [
            "command",
            "runs",
            "min",
            "median",
            "max",
            "cases",
            "cases/s",
            "in run",
            "cpu",
            "failed",
        ],
        rows,
    )
    ratio = stats.ratio(figs[0]["median_s"], figs[1]["median_s"])
    print(f"whole catalogue / openai-chat only (median wall): {tables.fmt(ratio, '.2f', 'x')}")
    met = figs[0]["median_s"] < TARGET_S
    print(
        f"target: whole catalogue < {TARGET_S:g} s (median wall): {figs[0]['median_s']:.1f} s "
        f"-> {'met' if met else 'NOT met'}"
    )

    slow = slowest_scenarios(full[-1].get("results"))
    if slow:
        print("\nslowest scenarios in the last default run (summed over their wire formats)")
        for sid, total, n in slow:
            print(f"  {sid:<40} {total:5.2f} s over {n} case(s)")
    if mutants is not None:
        out = mutants["stdout"]
        start = out.find("clean agent")
        print("\nmutant matrix (`cancel-harness mutants --provider openai-chat`):")
        print(out[start:].rstrip() if start >= 0 else out.rstrip())

    wall = time.monotonic() - started
    report = {
        "config": {
            "cli": harness_cli(),
            "seed": SEED,
            "repeats": repeats,
            "quick": args.quick,
            "target_s": TARGET_S,
            "target_statistic": "median wall of the whole catalogue",
        },
        "machine_before": quiet,
        "wall_s": round(wall, 1),
        "figures": figs,
        "ratio_full_vs_chat_median": ratio,
        "target_met": met,
        "slowest_scenarios": [{"id": s, "seconds": round(t, 2), "cases": n} for s, t, n in slow],
        "runs": {
            "whole_catalogue": [_strip(r) for r in full],
            "openai_chat": [_strip(r) for r in chat],
            "info": {label: _strip(res) for label, res in info},
        },
        "mutants": None
        if mutants is None
        else {
            "wall_s": mutants["wall_s"],
            "cpu_s": mutants["cpu_s"],
            "exit": mutants["exit"],
            "cases": mutants.get("cases"),
            "matrix": mutants.get("matrix"),
            "stdout": mutants["stdout"],
        },
    }
    path = reports.write_report(NAME, report)
    print(f"\nwrote {path.relative_to(ROOT)}; {wall:.1f} s")
    if args.record:
        keep = ("repeats", "min_s", "median_s", "max_s", "cases", "failed_or_errors")
        figures = {
            "runs": [{"command": f["label"], **{k: f[k] for k in keep}} for f in figs[:2]],
            "target_s": TARGET_S,
            "target_met": met,
        }
        recorded.record(NAME, figures, runs=[{"machine_before": quiet}])


def _strip(run: dict[str, Any]) -> dict[str, Any]:
    """A run for the JSON report: per-case id, kind, status and duration, not timelines."""
    out = {k: v for k, v in run.items() if k not in ("stdout", "results")}
    results = run.get("results")
    if results:
        out["cases_detail"] = [
            {k: case.get(k) for k in ("id", "kind", "status", "duration")}
            for case in results["results"]
        ]
    return out


if __name__ == "__main__":
    main()
