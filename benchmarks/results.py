"""The committed figures: `benchmarks/results.json`, written by `--record` runs.

Each benchmark run with `--record` stores its headline figures under its name, with the
command that produced them, the date, the commit and the machine it ran on, and how loaded
the machine was. The README tables are rendered from this file (`benchmarks/figures.py`),
and `tests/benchmarks/test_readme_figures.py` checks that they still match it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import ROOT

RESULTS = ROOT / "benchmarks" / "results.json"


def load(path: Path = RESULTS) -> dict[str, Any]:
    if not path.exists():
        return {"benchmarks": {}}
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def command() -> str:
    """The command line of this run, as a user would type it from the repository root."""
    module = Path(sys.argv[0]).stem
    return " ".join(["python -m benchmarks." + module, *sys.argv[1:]])


def record(name: str, figures: dict[str, Any], *, runs: Sequence[dict[str, Any]] = ()) -> None:
    """Store `figures` as the latest recorded run of benchmark `name`; re-render the READMEs."""
    from benchmarks import machine
    from benchmarks.figures import update_readmes

    code = machine.code_version()
    others = [r["other_processes_cpu_pct"] for r in runs if "other_processes_cpu_pct" in r]
    loads = [r["machine_before"]["load_average"][0] for r in runs if "machine_before" in r]
    entry = {
        "command": command(),
        "date": time.strftime("%Y-%m-%d %H:%M %z"),
        "commit": code["commit"],
        "uncommitted_changes": code["dirty"],
        "machine": machine.machine(),
        "load": {
            "load_average_1min": {"min": min(loads), "max": max(loads)} if loads else None,
            "others_cpu_pct": {"min": min(others), "max": max(others)} if others else None,
            "load_average_at_end": machine.load_average(),
        },
        "figures": figures,
    }
    data = load()
    data.setdefault("benchmarks", {})[name] = entry
    data["benchmarks"] = dict(sorted(data["benchmarks"].items()))
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")
    print(f"recorded {name} in {RESULTS.relative_to(ROOT)}")
    for path in update_readmes(data):
        print(f"updated the figures in {path.relative_to(ROOT)}")
