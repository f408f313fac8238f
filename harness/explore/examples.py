"""The example database: counterexamples explore found, kept to be tried first next time.

A small JSON file (default `reports/explore/examples.json`), readable and diffable: one
entry per counterexample with the target it broke, the schedule text (what `--replay`
takes), the verdict and when it was found. A run tries the entries of its own target
first, before any new example: a bug that is back is reported at once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness.explore.schedule import Schedule, ScheduleError

DEFAULT_PATH = Path("reports/explore/examples.json")
VERSION = 1


class ExampleDatabaseError(ValueError):
    """The database file cannot be read; the message names it and the fix."""


@dataclass(frozen=True, slots=True)
class Saved:
    target: str
    schedule: str
    status: str
    message: str
    found: str


def load(path: Path) -> list[Saved]:
    """Every saved counterexample; an absent file is an empty database."""
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
        if data.get("version") != VERSION:
            raise ValueError(f"version {data.get('version')!r}")
        return [Saved(**entry) for entry in data["examples"]]
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ExampleDatabaseError(
            f"cannot read the example database {path} ({exc}); fix it, delete it, or run "
            "with --no-db"
        ) from None


def schedules_for(path: Path, target: str) -> list[Schedule]:
    """The saved schedules that broke `target`, oldest first (unreadable ones skipped)."""
    found = []
    for entry in load(path):
        if entry.target != target:
            continue
        try:
            found.append(Schedule.parse(entry.schedule))
        except ScheduleError:
            continue  # written by another version of explore
    return found


def save(path: Path, target: str, schedule: Schedule, status: str, message: str) -> None:
    """Add a counterexample (once per target and schedule)."""
    entries = load(path)
    text = schedule.to_text()
    if any(e.target == target and e.schedule == text for e in entries):
        return
    now = datetime.now(UTC).isoformat(timespec="seconds")
    entries.append(Saved(target, text, status, message.splitlines()[0][:300], now))
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"version": VERSION, "examples": [asdict(e) for e in entries]}
    path.write_text(json.dumps(data, indent=1) + "\n")
