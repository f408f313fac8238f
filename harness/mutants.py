"""The proof matrix: every defect of the reference agent against the catalogue, honestly.

The catalogue runs on the clean agent, then once per defect, through one of the reference
agent's doors. A cell (defect x case) counts as caught only if the case fails in every one of
its runs: a case that fails is re-run `reruns` more times with the same seed, and the matrix
shows how many of its runs failed. A case that fails only sometimes is flaky, not a catch.
The clean agent runs in the same conditions (same re-runs) and must pass.

A defect lives behind some doors only (its code runs there and nowhere else), and the
matrix says so instead of running it where it cannot show: `LIVES_BEHIND` is that table.
A row with nothing applicable prints neither "caught" nor "NOT CAUGHT".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness.cases import Case, CaseResult, RunConfig, RunResult, Status
from reference_agent.defects import Defect

DOORS = ("reference", "acp", "http", "pty")  # the reference agent's doors `mutants` can use
_DISPATCHER = frozenset({"reference", "http"})  # doors that go through reference_agent/dispatch.py

# Where each defect's code runs (file in reference_agent/ in the comment). A defect not
# listed lives in the agent's core (agent.py, engine, retry, tools) and shows through every door.
LIVES_BEHIND: Mapping[Defect, frozenset[str]] = {
    Defect.ACP_UPDATE_AFTER_RESPONSE: frozenset({"acp"}),  # acp_agent.py
    Defect.ACP_WRONG_STOP_REASON: frozenset({"acp"}),  # acp_agent.py
    Defect.LOSE_CANCEL_BEFORE_START: _DISPATCHER,  # dispatch.py
    Defect.IDLE_CANCEL_POISONS_NEXT: _DISPATCHER,
    Defect.QUEUED_FOLLOWUP_SURVIVES_CANCEL: _DISPATCHER,
    Defect.CANCEL_NOT_OWNER_SCOPED: _DISPATCHER,
    Defect.NO_TERMINAL_CANCEL_EVENT: _DISPATCHER,
    # dispatch.py too, but its window (the hand-off between two runs) only opens to a cancel
    # made on the agent's own event loop: from outside a process it cannot be hit on demand.
    Defect.HANDOFF_WINDOW: frozenset({"reference"}),
}


class MutantsTargetError(ValueError):
    """`mutants --target` names something other than one of the reference agent's doors."""


def check_door(target: str) -> str:
    if target not in DOORS:
        raise MutantsTargetError(
            f"mutants --target {target}: mutants switches defects on in the reference agent, "
            f"so it runs through one of its doors: {', '.join(DOORS)} "
            "(use `cancel-harness run --target ...` for other agents)"
        )
    return target


def doors(defect: str) -> frozenset[str]:
    return LIVES_BEHIND.get(Defect(defect), frozenset(DOORS))


@dataclass(slots=True)
class Cell:
    """One case under one agent: the status of each of its runs."""

    case: str
    catches: tuple[str, ...]
    runs: list[Status] = field(default_factory=list)
    first_bad: str = ""  # the first run that did not pass: message and replay command
    result: CaseResult | None = None  # that run, with its timeline (for the HTML page)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.runs if s is Status.FAILED)

    @property
    def verdict(self) -> str:
        """caught (every run failed) | flaky | passed | not-applicable | indeterminate | error."""
        first = self.runs[0]
        if first is Status.NOT_APPLICABLE:
            return "not-applicable"
        if self.failed == len(self.runs):
            return "caught"
        if self.failed:
            return "flaky"
        if first in (Status.ERROR, Status.DID_NOT_START):
            return "error"
        return first.value

    def label(self) -> str:
        return f"{self.case} {self.failed}/{len(self.runs)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "failed": self.failed,
            "runs": len(self.runs),
            "statuses": [s.value for s in self.runs],
        }


type Execute = Callable[[RunConfig, Sequence[Case]], RunResult]


def cells_for(
    execute: Execute, config: RunConfig, cases: Sequence[Case], reruns: int
) -> dict[str, Cell]:
    """Run the cases; re-run each failing one `reruns` more times with the same seed."""
    first = execute(config, cases)
    cells = {r.name: _cell(r) for r in first.results}
    failing = [c for c, r in zip(cases, first.results, strict=True) if r.status is Status.FAILED]
    for _ in range(reruns if failing else 0):
        for result in execute(config, failing).results:
            cells[result.name].runs.append(result.status)
    return cells


def _cell(result: CaseResult) -> Cell:
    bad = result.status not in (Status.PASSED, Status.NOT_APPLICABLE)
    story = f"{result.message}\n  replay: {result.replay}" if bad else ""
    return Cell(result.name, result.catches, [result.status], story, result if bad else None)


def prove(
    execute: Execute,
    cases: Sequence[Case],
    base: RunConfig,
    defects: Sequence[str],
    *,
    reruns: int,
    progress: Callable[[str], None] = lambda line: None,
    evidence: Callable[[str, CaseResult], None] = lambda row, result: None,
) -> dict[str, Any]:
    """The matrix as data (see `render`); `base` has no defects, its target is the door.

    `evidence(row, result)` receives each clean case that did not pass (row "clean") and,
    per caught defect, the first run of the first case that caught it: the failures a
    reader wants to see with their timelines."""
    door = check_door(base.target)
    clean = cells_for(execute, replace(base, defects=()), cases, reruns)
    clean_bad = [c for c in clean.values() if c.verdict not in ("passed", "not-applicable")]
    for cell in clean_bad:
        if cell.result is not None:
            evidence("clean", cell.result)
    progress(
        "clean: "
        + (
            "every applicable case passed"
            if not clean_bad
            else ", ".join(f"{c.label()} {c.verdict}" for c in clean_bad)
        )
    )
    rows: dict[str, Any] = {}
    for defect in defects:
        behind = doors(defect)
        if door not in behind:
            rows[defect] = {"status": "not-applicable", "doors": sorted(behind), "cells": {}}
            progress(f"{defect}: not applicable through {door}")
            continue
        cells = cells_for(execute, replace(base, defects=(defect,)), cases, reruns)
        rows[defect] = _row(defect, cells, behind)
        caught = next((c for c in cells.values() if c.verdict == "caught"), None)
        if caught is not None and caught.result is not None:
            evidence(defect, caught.result)
        progress(f"{defect}: caught by {len(rows[defect]['caught_by'])} case(s)")
    uncaught = [d for d, row in rows.items() if row["status"] == "not-caught"]
    return {
        "seed": base.seed,
        "target": door,
        "tempo": base.tempo,
        "reruns": reruns,
        "clean": {
            "ok": not clean_bad,
            "failing": [f"{c.label()} {c.verdict}" for c in clean_bad],
            "details": {c.case: c.first_bad for c in clean_bad},
            "applicable": sum(1 for c in clean.values() if c.verdict != "not-applicable"),
            "cells": {name: cell.to_json() for name, cell in clean.items()},
        },
        "defects": rows,
        "uncaught": uncaught,
        "ok": not clean_bad and not uncaught,
    }


def _row(defect: str, cells: Mapping[str, Cell], behind: frozenset[str]) -> dict[str, Any]:
    applicable = [c for c in cells.values() if c.verdict != "not-applicable"]
    caught = [c for c in applicable if c.verdict == "caught"]
    claimed = sorted({c.case.split("[")[0] for c in applicable if defect in c.catches})
    caught_ids = {c.case.split("[")[0] for c in caught}
    # Through a door where no applicable case claims the defect (its scenarios need a
    # capability this door lacks, e.g. tools over HTTP), nothing here could judge it.
    status = "caught" if caught else ("not-caught" if claimed else "nothing-applicable")
    return {
        "status": status,
        "doors": sorted(behind),
        "caught_by": [c.label() for c in caught],
        "flaky": [c.label() for c in applicable if c.verdict == "flaky"],
        "indeterminate": [c.case for c in applicable if c.verdict == "indeterminate"],
        "errors": [c.case for c in applicable if c.verdict == "error"],
        "claimed_by": claimed,
        "claimed_but_missed": [c for c in claimed if c not in caught_ids],
        "cells": {name: cell.to_json() for name, cell in cells.items()},
    }


def render(matrix: Mapping[str, Any]) -> str:
    """defect -> the cases that caught it (failed/runs); NOT CAUGHT rows need a scenario."""
    lines = []
    clean = matrix["clean"]
    if not clean["applicable"]:
        lines.append("clean agent: no case applicable through this target")
    elif clean["ok"]:
        lines.append(f"clean agent: every applicable case passed ({clean['applicable']})")
    else:
        lines.append(
            f"clean agent did not pass {len(clean['failing'])}: {', '.join(clean['failing'])}"
        )
        lines.extend(f"  {case}: {story}" for case, story in clean["details"].items())
    width = max((len(d) for d in matrix["defects"]), default=10)
    pad = f"  {'':<{width}}  "
    for defect, row in matrix["defects"].items():
        status = row["status"]
        if status == "not-applicable":
            behind = ", ".join(row["doors"])
            text = f"not applicable through {matrix['target']} (lives behind {behind})"
        elif status == "nothing-applicable":
            text = "no case that claims it applies through this target"
        elif status == "caught":
            text = f"{len(row['caught_by'])}: {', '.join(row['caught_by'])}"
        else:
            text = "NOT CAUGHT"
        lines.append(f"  {defect:<{width}}  {text}")
        if row.get("flaky"):
            lines.append(f"{pad}flaky, not counted: {', '.join(row['flaky'])}")
        if row.get("claimed_but_missed"):
            lines.append(f"{pad}claimed but not caught by: {', '.join(row['claimed_but_missed'])}")
        if row.get("indeterminate"):
            lines.append(f"{pad}indeterminate: {', '.join(row['indeterminate'])}")
        if row.get("errors"):
            lines.append(f"{pad}errors: {', '.join(row['errors'])}")
    statuses = [row["status"] for row in matrix["defects"].values()]
    elsewhere = statuses.count("not-applicable") + statuses.count("nothing-applicable")
    aside = f" ({elsewhere} not applicable through {matrix['target']})" if elsewhere else ""
    if matrix["uncaught"]:
        lines.append(f"{len(matrix['uncaught'])} defect(s) caught by no scenario{aside}")
    elif statuses.count("caught"):
        lines.append(f"every applicable defect caught{aside}")
    else:
        lines.append(f"no defect applicable through {matrix['target']}")
    return "\n".join(lines)


def write(matrix: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(matrix, indent=2) + "\n", encoding="utf-8")
    return path
