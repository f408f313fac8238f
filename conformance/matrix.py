"""The conformance matrix: agent x scenario verdicts from `cancel-harness run --json` results.

`load_run` reads one results.json (harness/report.py writes it) into an `AgentRun`; a column
of the matrix is one agent over one provider kind, run one or more times (`--repeat`);
`build_matrix` joins the columns with their versions, calibration lines and diagnoses
(conformance.diagnosis); `markdown` renders the matrix, then per column every case that did
not pass cleanly with its diagnosis and replay command.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.diagnosis import Diagnosis, diagnose, warning_cause

# A passed case with side-traffic warnings is "warning" here (results.json: passed + warnings).
STATUSES = ("passed", "warning", "failed", "error", "not-applicable")
STATUS_MARK = {
    "passed": "pass",
    "warning": "warn",
    "failed": "FAIL",
    "error": "ERROR",
    "not-applicable": "n/a",
}
RUNTIME_NA = "not applicable to this agent: "


@dataclass(frozen=True, slots=True)
class CaseVerdict:
    scenario: str
    kind: str
    status: str
    message: str
    replay: str
    duration: float
    warnings: tuple[str, ...] = ()
    diagnosis: Diagnosis | None = None

    @property
    def applicable(self) -> bool:
        return self.status != "not-applicable"


@dataclass(slots=True)
class AgentRun:
    """One `cancel-harness run` of one agent over one provider kind."""

    agent: str
    target: str
    kind: str
    version: str
    wall_seconds: float = 0.0
    exit_code: int | None = None
    cases: list[CaseVerdict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # calibration lines, one per kind
    setup_error: str = ""  # the run produced no results (the agent never started, ...)

    def counts(self) -> dict[str, int]:
        counted = Counter(c.status for c in self.cases)
        counts = {s: counted.get(s, 0) for s in STATUSES}
        counts.update({s: n for s, n in counted.items() if s not in counts})  # e.g. indeterminate
        return counts

    @property
    def applicable(self) -> int:
        return sum(1 for c in self.cases if c.applicable)

    @property
    def clean(self) -> bool:
        """No case failed or broke (warnings and n/a are not failures)."""
        return not self.setup_error and all(
            c.status in ("passed", "warning", "not-applicable") for c in self.cases
        )


def load_run(
    path: Path, *, agent: str, target: str, kind: str, version: str, exit_code: int | None
) -> AgentRun:
    """One agent's results.json as an AgentRun (a missing file is a setup error)."""
    run = AgentRun(agent, target, kind, version, exit_code=exit_code)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        run.setup_error = f"no results ({exc.__class__.__name__}: {exc})"
        return run
    run.notes = [str(n) for n in data.get("notes", [])]
    for result in data.get("results", []):
        status = str(result.get("status", "error"))
        message = str(result.get("message", ""))
        warnings = tuple(str(w) for w in result.get("warnings", []))
        scenario = str(result.get("id", "?"))
        if status == "passed" and warnings:
            status = "warning"
        diagnosis = None
        if status in ("failed", "error"):
            diagnosis = diagnose(message, str(result.get("timeline", "")), scenario)
        elif status == "warning":
            diagnosis = warning_cause(warnings[0])
        run.cases.append(
            CaseVerdict(
                scenario=scenario,
                kind=str(result.get("kind", kind)),
                status=status,
                message=message,
                replay=str(result.get("replay", "")),
                duration=float(result.get("duration", 0.0)),
                warnings=warnings,
                diagnosis=diagnosis,
            )
        )
    return run


# --------------------------------------------------------------------------- build


def build_matrix(runs: Sequence[AgentRun], *, date: str, harness: str) -> dict[str, Any]:
    """The matrix as JSON: columns (agent/kind, each with its repeats), rows, cells, causes."""
    scenarios = list(dict.fromkeys(c.scenario for run in runs for c in run.cases))
    grouped: dict[tuple[str, str, str], list[AgentRun]] = {}
    for run in runs:
        grouped.setdefault((run.agent, run.target, run.kind), []).append(run)
    columns = [_column(repeats) for repeats in grouped.values()]
    return {"date": date, "harness": harness, "scenarios": scenarios, "columns": columns}


def _column(repeats: list[AgentRun]) -> dict[str, Any]:
    first = repeats[0]
    cells: dict[str, list[str]] = {}
    for run in repeats:
        for case in run.cases:
            cells.setdefault(case.scenario, []).append(case.status)
    causes = Counter(
        c.diagnosis.cause for run in repeats for c in run.cases if c.diagnosis is not None
    )
    return {
        "agent": first.agent,
        "target": first.target,
        "kind": first.kind,
        "version": first.version,
        "notes": list(dict.fromkeys(n for run in repeats for n in run.notes)),
        "runs": [
            {
                "wall_seconds": round(run.wall_seconds, 1),
                "exit_code": run.exit_code,
                "setup_error": run.setup_error,
                "counts": run.counts(),
                "applicable": run.applicable,
                "clean": run.clean,
                "sides": dict(
                    Counter(
                        c.diagnosis.side.value
                        for c in run.cases
                        if c.diagnosis is not None and c.status in ("failed", "error")
                    )
                ),
            }
            for run in repeats
        ],
        "causes": dict(causes.most_common()),
        "cells": cells,
        "findings": _findings(repeats),
        "runtime_na": _runtime_na(repeats),
    }


def _findings(repeats: list[AgentRun]) -> list[dict[str, Any]]:
    """Every scenario that did not pass cleanly in some repeat, with its first such case."""
    out: dict[str, dict[str, Any]] = {}
    statuses: dict[str, list[str]] = {}
    for run in repeats:
        for case in run.cases:
            statuses.setdefault(case.scenario, []).append(case.status)
    for index, run in enumerate(repeats):
        for case in run.cases:
            if case.status in ("passed", "not-applicable") or case.diagnosis is None:
                continue
            found = out.setdefault(
                case.scenario,
                {
                    "scenario": case.scenario,
                    "statuses": statuses[case.scenario],
                    "first_run": index + 1,
                    "status": case.status,
                    "message": case.message,
                    "warnings": list(case.warnings),
                    "replay": case.replay,
                    "cause": case.diagnosis.cause,
                    "diagnosis": case.diagnosis.text,
                    "side": case.diagnosis.side.value,
                },
            )
            found.setdefault("causes", []).append(case.diagnosis.cause)
    return list(out.values())


def _runtime_na(repeats: list[AgentRun]) -> dict[str, str]:
    """Scenarios the agent's own behaviour made not applicable, and why (first repeat)."""
    found: dict[str, str] = {}
    for run in repeats:
        for case in run.cases:
            if case.status == "not-applicable" and case.message.startswith(RUNTIME_NA):
                found.setdefault(case.scenario, case.message[len(RUNTIME_NA) :])
    return found


# ------------------------------------------------------------------------- render


def verdicts(matrix: Mapping[str, Any]) -> str:
    """Per agent: applicable cases per kind, failures per run by side, and the verdict."""
    by_agent: dict[str, list[Mapping[str, Any]]] = {}
    for column in matrix["columns"]:
        by_agent.setdefault(column["agent"], []).append(column)
    repeats = max((len(c["runs"]) for c in matrix["columns"]), default=0)
    runs = " | ".join(f"run {i + 1}" for i in range(repeats))
    lines = [
        "## Verdicts",
        "",
        "Failed or broken cases per run, all provider kinds together, as agent / harness side "
        "(conformance.diagnosis decides the side; the findings below say why).",
        "",
        f"| agent | version | provider kinds | applicable cases | {runs} | verdict |",
        "| --- |" + " --- |" * (repeats + 4),
    ]
    for agent, columns in by_agent.items():
        kinds = ", ".join(c["kind"] for c in columns)
        applicable = " / ".join(str(c["runs"][0]["applicable"]) for c in columns if c["runs"])
        cells = []
        for index in range(repeats):
            sides: Counter[str] = Counter()
            for column in columns:
                if index < len(column["runs"]):
                    sides.update(column["runs"][index].get("sides", {}))
            cells.append(f"{sides.get('agent', 0)} / {sides.get('harness', 0)}")
        lines.append(
            f"| {agent} | `{columns[0]['version']}` | {kinds} | {applicable} | "
            + " | ".join(cells)
            + f" | {agent_verdict(columns)} |"
        )
    return "\n".join(lines) + "\n"


def harness_side(matrix: Mapping[str, Any]) -> str:
    """Every harness-side cause over the whole matrix: what it costs and the change wanted."""
    found: dict[str, dict[str, Any]] = {}
    for column in matrix["columns"]:
        for f in column["findings"]:
            if f["side"] != "harness":
                continue
            entry = found.setdefault(f["cause"], {"text": f["diagnosis"], "cases": 0, "where": {}})
            failing = sum(1 for s in f["statuses"] if s in ("failed", "error"))
            entry["cases"] += failing
            entry["where"].setdefault(column["agent"], set()).add(f["scenario"])
    if not found:
        return ""
    lines = [
        "## Harness side: what the verdicts above are waiting for",
        "",
        "Failures whose cause is the harness, not the agent, with the change that would mend "
        "each (counts are failed or broken cases over all runs and kinds).",
        "",
    ]
    for cause, entry in sorted(found.items(), key=lambda kv: -kv[1]["cases"]):
        where = "; ".join(
            f"{agent}: {', '.join(sorted(names))}" for agent, names in entry["where"].items()
        )
        lines += [f"- **{cause}** ({entry['cases']} cases). {entry['text']}", f"  - {where}"]
    return "\n".join(lines) + "\n"


def agent_verdict(columns: Sequence[Mapping[str, Any]]) -> str:
    """One line: conforms, or the agent-side causes found, or blocked on the harness side."""
    found = [f for c in columns for f in c["findings"]]
    failed = [f for f in found if any(s in ("failed", "error") for s in f["statuses"])]
    agent = sorted({f["cause"] for f in failed if f["side"] == "agent"})
    harness = sorted({f["cause"] for f in failed if f["side"] == "harness"})
    warned = any(f["status"] == "warning" for f in found)
    runs = max((len(c["runs"]) for c in columns), default=0)
    if not failed:
        tail = ", with side-traffic warnings" if warned else ""
        return f"conforms: no failure in {runs} run(s){tail}"
    if agent:
        also = f"; harness side: {', '.join(harness)}" if harness else ""
        return f"agent findings: {', '.join(agent)}{also}"
    return f"no agent finding; blocked on the harness side: {', '.join(harness)}"


def cell_mark(statuses: Sequence[str]) -> str:
    """One status for all repeats (`pass`), or each status with its count (`pass 2, FAIL 1`)."""
    if not statuses:
        return ""
    counted = Counter(statuses)
    if len(counted) == 1:
        return STATUS_MARK.get(statuses[0], statuses[0])
    return ", ".join(f"{STATUS_MARK.get(s, s)} {n}" for s, n in counted.most_common())


def run_counts(run: Mapping[str, Any]) -> str:
    """`pass/warn/fail/error/n.a.` of one repeat."""
    if run["setup_error"]:
        return "no results"
    c = run["counts"]
    return "/".join(str(c.get(s, 0)) for s in STATUSES)


def markdown(
    matrix: Mapping[str, Any],
    *,
    agents: Iterable[Mapping[str, str]] = (),
    preamble: str = "",
    replay_prefix: str = "",
) -> str:
    """The matrix, then per agent and kind the findings with diagnosis and replay command."""
    columns = list(matrix["columns"])
    lines = [preamble.rstrip(), ""] if preamble else []
    lines += [f"Run {matrix['date']} against cancel-harness {matrix['harness']}.", ""]
    agent_rows = list(agents)
    if agent_rows:
        lines += ["| agent | version | provider kinds | driven as |", "| --- | --- | --- | --- |"]
        lines += [
            f"| {a['name']} | `{a['version']}` | {a['providers']} | {a['door']} |"
            for a in agent_rows
        ]
        lines.append("")
    header = "| scenario | " + " | ".join(f"{c['agent']}<br>{c['kind']}" for c in columns) + " |"
    lines += [header, "| --- |" + " --- |" * len(columns)]
    for scenario in matrix["scenarios"]:
        cells = [cell_mark(c["cells"].get(scenario, [])) for c in columns]
        lines.append(f"| `{scenario}` | " + " | ".join(cells) + " |")
    repeats = max((len(c["runs"]) for c in columns), default=0)
    for index in range(repeats):
        row = [run_counts(c["runs"][index]) if index < len(c["runs"]) else "" for c in columns]
        head = f"| **run {index + 1}: pass/warn/fail/error/n.a.** | "
        lines.append(head + " | ".join(row) + " |")
    applicable = [str(c["runs"][0]["applicable"]) if c["runs"] else "" for c in columns]
    lines.append("| **applicable cases** | " + " | ".join(applicable) + " |")
    walls = [" / ".join(f"{r['wall_seconds']:g}" for r in c["runs"]) + " s" for c in columns]
    lines += ["| wall time per run | " + " | ".join(walls) + " |", ""]
    notes = [f"- {c['agent']} ({c['target']}): {n}" for c in columns for n in c["notes"]]
    if notes:
        head = "Calibration (one plain turn per provider kind, before the cases):"
        lines += [head, "", *dict.fromkeys(notes), ""]
    for column in columns:
        lines += _column_details(column, replay_prefix)
    return "\n".join(lines).rstrip() + "\n"


def _column_details(column: Mapping[str, Any], replay_prefix: str) -> list[str]:
    title = f"### {column['agent']} {column['version']} over {column['kind']}"
    errors = [r["setup_error"] for r in column["runs"] if r["setup_error"]]
    if errors:
        return [title, "", f"No results: {errors[0]}", ""]
    out = [title, ""]
    findings = column["findings"]
    if not findings:
        out.append("Every applicable case passed in every run, with no warning.")
    else:
        causes = ", ".join(f"{cause} x{n}" for cause, n in column["causes"].items())
        out += [f"Causes (over all runs): {causes}.", ""]
    for f in findings:
        side = "harness side" if f["side"] == "harness" else "agent"
        seen = f["warnings"][0] if f["status"] == "warning" else f["message"]
        first = seen.splitlines()[0] if seen else ""
        out += [
            f"- **{f['scenario']}** {cell_mark(f['statuses'])} ({side}, {f['cause']}): "
            f"{f['diagnosis']}",
            f"  - seen (run {f['first_run']}): {first[:500]}",
            f"  - replay: `{replay_prefix}{f['replay']}`",
        ]
    if column["runtime_na"]:
        out += ["", "Not applicable, from the agent's own behaviour:", ""]
        out += [f"- `{s}`: {why}" for s, why in column["runtime_na"].items()]
    out.append("")
    return out
