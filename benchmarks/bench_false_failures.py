"""False failures under load: the clean catalogue with every core busy, and the catch rate.

    python -m benchmarks.bench_false_failures [--runs N] [--target T ...] [--mutants M]
                                              [--hogs K] [--parallel P] [--tempo S] [--quick]

What is measured. A CPU hog per core (a bounded busy loop in its own process; all of them
killed at the end, whatever happens) keeps the machine loaded while `cancel-harness run`, as
a user types it, runs the whole catalogue N times against the clean reference agent through
each target (`reference` in process by default; `http`, `acp` start agent processes), each
run with its own seed (base seed + run number). On the clean agent any case that ends
failed, error or did-not-start is a false failure: the harness blamed a healthy agent.
Cases whose verdict was indeterminate (the harness measured a stall of its own that explains
a missed bound) are counted with how they resolved: passed on a re-run, or still
indeterminate after every re-run (exit 3, never a pass). Then `cancel-harness mutants`
through each target M times under the same load: every defect that lives behind that door
must be caught in every run (a catch = a case failing in each of its 3 runs), and the clean
agent must pass.

`--parallel P` runs P catalogue runs of a target at once (default 1: one after another). The
hogs stay one per core, so P > 1 is a harsher load, not a gentler one: each run shares the
cores with the hogs and with the other runs. It is there so that hundreds of runs fit in an
afternoon; say P with the figures.

Not a timed test: run it when judging the harness's reliability and put the figures in a
report. `--quick`: 2 runs, reference only, no mutants.

Writes reports/bench/bench_false_failures.json (every run's counts, every false failure with
its message and replay, every indeterminate with its attempts, the mutant matrices), rewritten
after every run, so a long bench that is stopped keeps what it measured.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.children import harness_cli

ROOT = Path(__file__).resolve().parent.parent
REPORT = ROOT / "reports" / "bench" / "bench_false_failures.json"
RUN_TIMEOUT_S = 900
MUTANTS_TIMEOUT_S = 3600
HOG = "import time\ne = time.monotonic() + {limit}\nwhile time.monotonic() < e:\n    pass\n"
BAD = ("failed", "error", "did-not-start")


class Hogs:
    """One busy loop per core, each bounded in time; stopped (by pid) on exit."""

    def __init__(self, count: int, limit_s: float) -> None:
        self.count, self.limit_s = count, limit_s
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Hogs:
        code = HOG.format(limit=self.limit_s)
        for _ in range(self.count):
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", code],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)

    def alive(self) -> int:
        return sum(1 for p in self.procs if p.poll() is None)


def loadavg() -> float:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return float(Path("/proc/loadavg").read_text().split()[0])
    return float("nan")


def one_run(tmp: Path, target: str, seed: int, extra: list[str]) -> dict[str, Any]:
    out = tmp / f"{target}-{seed}"
    argv = [*harness_cli(), "run", "--target", target, "--seed", str(seed), *extra]
    argv += ["--json", str(out / "results.json"), "--junit", str(out / "junit.xml")]
    load = loadavg()
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    wall = time.monotonic() - t0
    path = out / "results.json"
    data = json.loads(path.read_text()) if path.exists() else {"results": []}
    results = data["results"]
    false = [
        {
            "case": f"{r['id']}[{r['kind']}]",
            "status": r["status"],
            "message": r["message"].splitlines()[0] if r["message"] else "",
            "replay": r["replay"],
        }
        for r in results
        if r["status"] in BAD
    ]
    rerun = [
        {
            "case": f"{r['id']}[{r['kind']}]",
            "final": r["status"],
            "attempts": [a["status"] for a in r["attempts"]],
            "first": r["attempts"][0]["message"],
        }
        for r in results
        if any(a["status"] == "indeterminate" for a in r["attempts"])
    ]
    return {
        "target": target,
        "seed": seed,
        "exit": proc.returncode,
        "wall_s": round(wall, 1),
        "load_at_start": load,
        "load_at_end": loadavg(),
        "counts": data.get("counts", {}),
        "false_failures": false,
        "indeterminate": rerun,
        "stderr_tail": proc.stderr[-1500:],
    }


def one_mutants(tmp: Path, target: str, seed: int, extra: list[str]) -> dict[str, Any]:
    path = tmp / f"mutants-{target}-{seed}.json"
    argv = [*harness_cli(), "mutants", "--target", target, "--seed", str(seed), "--json", str(path)]
    argv += extra
    t0 = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=MUTANTS_TIMEOUT_S)
    matrix = json.loads(path.read_text()) if path.exists() else None
    rows = matrix["defects"] if matrix else {}
    return {
        "target": target,
        "seed": seed,
        "exit": proc.returncode,
        "wall_s": round(time.monotonic() - t0, 1),
        "clean_ok": bool(matrix and matrix["clean"]["ok"]),
        "clean_failing": matrix["clean"]["failing"] if matrix else None,
        "statuses": {d: row["status"] for d, row in rows.items()},
        "flaky": {d: row["flaky"] for d, row in rows.items() if row.get("flaky")},
        "uncaught": matrix["uncaught"] if matrix else None,
        "stdout_tail": proc.stdout[-3000:],
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    cases = sum(sum(r["counts"].get(s, 0) for s in ("passed", *BAD, "indeterminate")) for r in runs)
    resolved = Counter(i["final"] for r in runs for i in r["indeterminate"])
    attempts = sum(
        sum(1 for a in i["attempts"] if a == "indeterminate")
        for r in runs
        for i in r["indeterminate"]
    )
    per_case = Counter(f["case"] for r in runs for f in r["false_failures"])
    return {
        "runs": len(runs),
        "cases_judged": cases,
        "false_failures": sum(len(r["false_failures"]) for r in runs),
        "false_failures_per_case": dict(per_case.most_common()),
        "indeterminate_attempts": attempts,
        "indeterminate_cases": sum(len(r["indeterminate"]) for r in runs),
        "resolved": dict(resolved),
        "exit_codes": dict(Counter(r["exit"] for r in runs)),
        "wall_s_total": round(sum(r["wall_s"] for r in runs), 1),
        "load_median": sorted(r["load_at_end"] for r in runs)[len(runs) // 2] if runs else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="catalogue runs per target")
    parser.add_argument("--target", action="append", default=[], help="reference, http, acp")
    parser.add_argument("--mutants", type=int, default=1, help="mutants runs per target")
    parser.add_argument(
        "--mutants-defect",
        action="append",
        default=[],
        metavar="NAME",
        help="mutants only for these defects (repeatable; default every defect)",
    )
    parser.add_argument("--hogs", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument(
        "--parallel", type=int, default=1, help="catalogue runs at once (hogs stay one per core)"
    )
    parser.add_argument("--seed", type=int, default=1000, help="base seed (run i: seed + i)")
    parser.add_argument("--tempo", type=float, default=None, help="passed on to the CLI")
    parser.add_argument("--budget", type=float, default=6 * 3600, help="s; hogs die after")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args()
    targets = args.target or ["reference"]
    runs, mutants_runs = (2, 0) if args.quick else (args.runs, args.mutants)
    extra = ["--tempo", f"{args.tempo:g}"] if args.tempo else []
    report: dict[str, Any] = {
        "config": {
            "targets": targets,
            "runs": runs,
            "mutants": mutants_runs,
            "hogs": args.hogs,
            "parallel": args.parallel,
            "cores": len(os.sched_getaffinity(0)),
            "seed": args.seed,
            "extra": extra,
            "mutants_defects": args.mutants_defect,
            "python": sys.version.split()[0],
        },
        "runs": [],
        "mutants": [],
    }
    print(
        f"{args.hogs} CPU hog(s) on {report['config']['cores']} core(s); {runs} run(s) per "
        f"target {', '.join(targets)}; {mutants_runs} mutants run(s) per target",
        flush=True,
    )
    started = time.monotonic()

    def save() -> None:
        report["wall_s"] = round(time.monotonic() - started, 1)
        report["summary"] = {
            t: summary([r for r in report["runs"] if r["target"] == t]) for t in targets
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = args.out.with_suffix(".json.part")
        tmp_out.write_text(json.dumps(report, indent=2) + "\n")
        tmp_out.replace(args.out)

    with (
        tempfile.TemporaryDirectory() as tmp,
        Hogs(args.hogs, args.budget) as hogs,
        ThreadPoolExecutor(max(1, args.parallel)) as pool,
    ):
        time.sleep(1.0)  # let the hogs reach full speed before the first run
        for target in targets:
            seeds = [args.seed + i for i in range(runs)]
            done = pool.map(functools.partial(one_run, Path(tmp), target, extra=extra), seeds)
            for i, run in enumerate(done):
                report["runs"].append(run)
                c = run["counts"]
                print(
                    f"  {target:<9} #{i + 1:<3} seed {run['seed']}: exit {run['exit']}, "
                    f"{c.get('passed', 0)} passed, {len(run['false_failures'])} FALSE, "
                    f"{len(run['indeterminate'])} re-run "
                    f"({Counter(x['final'] for x in run['indeterminate'])}), "
                    f"{run['wall_s']} s, load {run['load_at_start']:.1f}-"
                    f"{run['load_at_end']:.1f}, hogs {hogs.alive()}",
                    flush=True,
                )
                for f in run["false_failures"]:
                    print(f"      FALSE {f['case']} {f['status']}: {f['message'][:160]}")
                save()
            for i in range(mutants_runs):
                only = [a for d in args.mutants_defect for a in ("--defect", d)]
                m = one_mutants(Path(tmp), target, args.seed + 500 + i, [*extra, *only])
                report["mutants"].append(m)
                statuses = Counter(m["statuses"].values())
                print(
                    f"  mutants {target} #{i + 1}: exit {m['exit']}, clean "
                    f"{'ok' if m['clean_ok'] else m['clean_failing']}, {dict(statuses)}, "
                    f"uncaught {m['uncaught']}, flaky {m['flaky']}, {m['wall_s']} s",
                    flush=True,
                )
                save()
    save()
    print("\nper target (clean reference agent, every core busy):")
    for target, s in report["summary"].items():
        print(
            f"  {target:<9} {s['runs']} runs, {s['cases_judged']} cases judged: "
            f"{s['false_failures']} false failures, {s['indeterminate_cases']} cases re-run for "
            f"{s['indeterminate_attempts']} indeterminate attempts, resolved {s['resolved']}, "
            f"exit codes {s['exit_codes']}, median load {s['load_median']}"
        )
        for case, n in s["false_failures_per_case"].items():
            print(f"      {case}: {n}")
    for m in report["mutants"]:
        caught = sum(1 for v in m["statuses"].values() if v == "caught")
        print(
            f"  mutants {m['target']}: {caught} caught, uncaught {m['uncaught']}, "
            f"clean {'ok' if m['clean_ok'] else 'NOT ok'}"
        )
    print(f"report: {args.out}")
    bad = any(s["false_failures"] for s in report["summary"].values()) or any(
        not m["clean_ok"] or m["uncaught"] for m in report["mutants"]
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
