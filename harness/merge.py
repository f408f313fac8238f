"""`cancel-harness report merge DIR...`: the shards of a CI matrix as one run's report.

Each DIR holds a shard's results.json (`run --shard I/N --json ...`; a file path works too).
The merged run has every case in the order the whole selection had, the counts and exit
code of all of them, and says which selected cases no shard reported (a shard that never
uploaded its report), so a merge job fails instead of passing on a partial picture.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.cases import CaseResult, ConfigError, RunConfig, RunResult


class MergeError(ValueError):
    """An input that cannot be merged; the message names the file and what to do."""


def _load(path: Path) -> tuple[Path, dict[str, Any]]:
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        where = f"{path} has no results.json" if path.is_dir() else f"{path} does not exist"
        raise MergeError(f"{where}; give each shard's report directory (run --json DIR/...)")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MergeError(f"{file}: not a results.json ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise MergeError(f"{file}: not a cancel-harness results.json (no results list)")
    return file, data


def merge(paths: Sequence[Path]) -> tuple[RunResult, list[str], list[str]]:
    """The merged run, what a person should know about it, and the selected cases that no
    report holds."""
    loaded = [_load(p) for p in paths]
    first_file, first = loaded[0]
    for file, data in loaded[1:]:
        for key in ("target", "defects", "tempo"):
            if data.get(key) != first.get(key):
                raise MergeError(
                    f"{file} and {first_file} are different runs: {key} "
                    f"{data.get(key)!r} vs {first.get(key)!r}; merge the shards of one run"
                )
    try:
        config = RunConfig(
            seed=int(first.get("seed", 0)),
            target=str(first.get("target", "reference")),
            defects=tuple(first.get("defects", ())),
            tempo=float(first.get("tempo", 0.02)),
            reruns=int(first.get("reruns", 2)),
        )
    except (TypeError, ValueError, ConfigError) as exc:
        raise MergeError(f"{first_file}: bad run fields ({exc})") from None
    notes: list[str] = []
    seeds = sorted({int(d.get("seed", 0)) for _, d in loaded})
    if len(seeds) > 1:
        notes.append(
            f"the shards ran with different seeds ({', '.join(map(str, seeds))}); each case's "
            "replay command carries its own (give every shard the same --seed)"
        )
    order: dict[str, int] = {}
    for _, data in loaded:
        for name in data.get("selection") or []:
            order.setdefault(str(name), len(order))
    seen: dict[tuple[str, int], Path] = {}
    results: list[CaseResult] = []
    for file, data in loaded:
        for raw in data["results"]:
            try:
                result = CaseResult.from_json(raw)
            except (KeyError, TypeError, ValueError) as exc:
                raise MergeError(f"{file}: a result that cannot be read ({exc!r})") from None
            seen_key = (result.name, result.repetition)
            if seen_key in seen:
                raise MergeError(
                    f"{result.name} is in both {seen[seen_key]} and {file}: were two shards given "
                    "the same --shard I/N, or one directory twice?"
                )
            seen[seen_key] = file
            order.setdefault(result.name, len(order))
            results.append(result)
    results.sort(key=lambda r: (r.repetition, order[r.name]))
    run = RunResult(
        config,
        config.target,
        min((str(d.get("started", "")) for _, d in loaded), default=""),
        finished=max((str(d.get("finished", "")) for _, d in loaded), default=""),
        results=results,
        # Shards run side by side: the merged run took as long as its slowest shard.
        wall_seconds=max(float(d.get("wall_seconds") or 0.0) for _, d in loaded),
        repetitions=max(int(d.get("repetitions", 1)) for _, d in loaded),
        shuffled=any(d.get("shuffled") for _, d in loaded),
    )
    run.selection = list(order)
    run.notes = list(dict.fromkeys(n for _, d in loaded for n in d.get("notes", [])))
    shards = [str(d.get("shard") or "-") for _, d in loaded]
    notes.insert(0, f"merged {len(loaded)} report(s), shards {', '.join(shards)}")
    reported = {r.name for r in results}
    missing = [name for name in order if name not in reported]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        shown = ", ".join(missing[:5]) + more
        notes.append(f"MISSING: {len(missing)} selected case(s) are in no merged report: {shown}")
    return run, notes, missing
