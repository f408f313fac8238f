"""Where a benchmark run writes: its full JSON report, and (with --record) the committed figures.

Every run writes `reports/bench/<name>.json` (config, figures, every raw client result,
machine); `--quick` writes `<name>.quick.json` instead, so a smoke run never overwrites a
real one. `--record` also stores the run's headline figures in `benchmarks/results.json` and
re-renders the README tables from it (`benchmarks/figures.py`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from benchmarks import ROOT
from benchmarks.machine import environment

REPORT_DIR = ROOT / "reports" / "bench"


def parse_args(
    description: str, parser: argparse.ArgumentParser | None = None
) -> argparse.Namespace:
    """--quick and --record, on top of a benchmark's own options."""
    parser = parser or argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short smoke version")
    parser.add_argument(
        "--record",
        action="store_true",
        help="store the figures in benchmarks/results.json and the READMEs (not with --quick)",
    )
    args = parser.parse_args()
    if args.quick and args.record:
        parser.error("--record stores real figures only: drop --quick")
    return args


def report_path(name: str, *, quick: bool = False) -> Path:
    """reports/bench/NAME.json; a `--quick` smoke run goes to NAME.quick.json instead."""
    return REPORT_DIR / (f"{name}.quick.json" if quick else f"{name}.json")


def write_report(name: str, data: dict[str, Any]) -> Path:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    path = report_path(name, quick=bool(data.get("quick")))
    data = {"benchmark": name, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **data}
    data["environment"] = environment()
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path
