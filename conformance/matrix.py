"""The conformance matrix: agent x scenario verdicts from `cancel-harness run --json` results.

`load_run` reads one results.json (harness/report.py writes it); `build_matrix` joins the runs
of every agent and provider kind with their versions; `diagnose` reads a failed case's message
and timeline and says, in a line an agent's maintainer can act on, why it failed; `markdown`
renders the matrix, the failures with their replay commands, and the diagnoses.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STATUS_MARK = {
    "passed": "pass",
    "warning": "pass?",
    "failed": "FAIL",
    "error": "ERROR",
    "not-applicable": "n/a",
}
# A fault keyed on the reference agent's purpose header that no request ever matched: the case
# "passed" without the fault it is about ever being served (a vacuous pass).
_HEADER_FAULT = re.compile(r"fault rule #(\d+): [^\n]*header=x-agent-purpose")


def unserved_header_rules(timeline: str) -> list[int]:
    """Fault rules keyed on the purpose header that no request was ever served by."""
    return [int(n) for n in _HEADER_FAULT.findall(timeline) if f"plan: rule #{n}:" not in timeline]


def vacuous(timeline: str) -> bool:
    """The case set a header-keyed fault that never fired: a pass that tested nothing."""
    return bool(unserved_header_rules(timeline))


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Why a case did not pass: a short cause key, and a sentence for the agent's maintainer."""

    cause: str
    text: str
    harness_side: bool  # True when the harness, not the agent, is the likely culprit


@dataclass(frozen=True, slots=True)
class CaseVerdict:
    scenario: str
    kind: str
    status: str
    message: str
    replay: str
    duration: float
    diagnosis: Diagnosis | None = None


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
    setup_error: str = ""  # the run produced no results (the agent never started, ...)

    def counts(self) -> dict[str, int]:
        counted = Counter(c.status for c in self.cases)
        return {s: counted.get(s, 0) for s in STATUS_MARK}


# ------------------------------------------------------------------------- diagnosis

_RULES: tuple[tuple[str, str, bool, str], ...] = (
    # (cause, regex on message + timeline, harness-side?, sentence)
    (
        "start-failed",
        r"the target did not start|did not start:|ACP initialize failed",
        False,
        "the agent did not come up (see the message for its stderr tail): check its "
        "install, config home and that it needs no network or login to start",
    ),
    (
        "case-budget-startup",
        r"did not finish within [\d.]+ s.*last harness step: (none|target .* started|new session)",
        True,
        "the case budget ran out while the agent was still starting or opening a session: "
        "start-up is counted inside the case timeout (harness: move start-up out of it)",
    ),
    (
        "main-call-by-header",
        r"gave up waiting.*gate '(main|first|second|late|g\d|compaction)'",
        True,
        "the harness waited for a request marked `x-agent-purpose: turn` (or compaction), a "
        "header only the reference agent sends; this agent's calls never match it (harness: "
        "find the turn's call by the prompt's nonce)",
    ),
    (
        "memory-by-header",
        r"background 'memory' request|gate 'memory'",
        True,
        "the scenario looks for a background call marked `x-agent-purpose: memory`; this agent "
        "has no such marker",
    ),
    (
        "acp-no-load",
        r"does not offer session/load",
        True,
        "the scenario reads the transcript through ACP session/load, which this agent does not "
        "offer (declare no `transcript` for it)",
    ),
    (
        "acp-request-refused",
        r"RequestError: .*acp/connection\.py",
        False,
        "the agent refused an ACP request the harness made: on a session with no turn yet "
        "this is session/load for the transcript (it advertises loadSession, but a session "
        "is only loadable once persisted; harness: treat that as an empty transcript)",
    ),
    (
        "agent-worker-counted-as-tool",
        r"expected no tool subprocess left running",
        True,
        "the orphan check counted one of the agent's own worker processes (e.g. the CLI an "
        "SDK drives) as a leftover tool process, though this target runs no harness tools "
        "(harness: orphans are processes the case's tools started)",
    ),
    (
        "no-close-on-cancel",
        r"expected the client to close the provider connection.*(still open|only at)",
        False,
        "after the cancel the agent kept the provider's HTTP connection open (or closed it "
        "late): the cancel did not reach the streaming request (incident I1)",
    ),
    (
        "request-after-cancel",
        r"expected no request to the provider",
        False,
        "the agent sent a model request after the cancel: a retry or a follow-up call the "
        "cancel should have stopped (incident I5)",
    ),
    (
        "ghost-turn",
        r"no ghost turn|to stay as snapshotted",
        False,
        "the persisted conversation changed around a cancelled or timed-out turn (incident "
        "I2); if it only holds the user's prompt, written before the cancel, that is the "
        "agent's policy and the check's snapshot is taken too early",
    ),
    (
        "wrong-stop-reason",
        r"expected turn \S+ to end",
        False,
        "the turn ended with another stop reason than the scenario expects",
    ),
    (
        "next-turn",
        r"expected the next turn",
        False,
        "the turn after the cancel did not complete normally: the cancel poisoned the session",
    ),
    (
        "retries",
        r"expected exactly \d+ retries",
        False,
        "the number of retries differs from the configured policy",
    ),
    (
        "left-open-after-stop",
        r"connection to be closed once the agent stopped|still open: conn",
        False,
        "provider connections stayed open after the agent was stopped (a pooled or leaked "
        "connection)",
    ),
    (
        "in-flight-after-scenario",
        r"expected no response still in flight",
        False,
        "a response was still being streamed to the agent after the scenario ended",
    ),
    (
        "turn-hung",
        r"still running after|expected turn \S+ to end within",
        False,
        "the turn never ended (no answer to the prompt) within the wait",
    ),
    (
        "case-timeout",
        r"did not finish within",
        True,
        "the case ran out of time; read its last harness step",
    ),
)


def diagnose(message: str, timeline: str = "") -> Diagnosis:
    """The first matching rule's diagnosis; unknown failures quote the message's first line."""
    text = f"{message}\n{timeline}"
    for cause, pattern, harness_side, sentence in _RULES:
        if re.search(pattern, text, re.DOTALL):
            return Diagnosis(cause, sentence, harness_side)
    first = message.splitlines()[0] if message else "no message"
    return Diagnosis("other", first[:240], False)


VACUOUS = Diagnosis(
    "vacuous-pass",
    "passed without its fault ever being served: the fault was keyed on the "
    "`x-agent-purpose` header, which this agent does not send, so nothing was tested",
    True,
)


FAULT_NEVER_SERVED = Diagnosis(
    "fault-never-served",
    "the fault this case is about was keyed on the `x-agent-purpose` header and never served, "
    "so the agent ran unfaulted and this verdict says nothing about it",
    True,
)


MARKER_ON_SIDE_CALL = Diagnosis(
    "marker-matched-side-call",
    "one body-contains rule served several requests (the agent's side call, e.g. title "
    "generation, carries the prompt too), and the connection the check watched was not the "
    "turn's own; the turn's call did close (harness: tell side calls from the turn's call)",
    True,
)
_SERVED_BY = re.compile(r"conn#(\d+) -> \d+ plan: rule #(\d+):")


def _rule_served_twice(timeline: str) -> bool:
    rules = [rule for _conn, rule in _SERVED_BY.findall(timeline)]
    return any(rules.count(rule) > 1 for rule in set(rules))


def _judged(message: str, timeline: str) -> Diagnosis:
    found = diagnose(message, timeline)
    if found.cause == "no-close-on-cancel" and _rule_served_twice(timeline):
        return MARKER_ON_SIDE_CALL
    unfaulted = found.cause in ("wrong-stop-reason", "retries", "turn-hung", "other")
    if unfaulted and unserved_header_rules(timeline):
        return FAULT_NEVER_SERVED
    return found


# ------------------------------------------------------------------------ reading


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
    for result in data.get("results", []):
        status = str(result.get("status", "error"))
        message = str(result.get("message", ""))
        timeline = str(result.get("timeline", ""))
        warning = status == "passed" and vacuous(timeline)
        if warning:
            status = "warning"
        verdict = CaseVerdict(
            scenario=str(result.get("id", "?")),
            kind=str(result.get("kind", kind)),
            status=status,
            message=message,
            replay=str(result.get("replay", "")),
            duration=float(result.get("duration", 0.0)),
            diagnosis=(
                VACUOUS
                if warning
                else _judged(message, timeline)
                if status in ("failed", "error")
                else None
            ),
        )
        run.cases.append(verdict)
    return run


def build_matrix(runs: Sequence[AgentRun], *, date: str, harness: str) -> dict[str, Any]:
    """The matrix as JSON: columns (agent/kind), rows (scenarios), cells, counts, causes."""
    scenarios = list(dict.fromkeys(c.scenario for run in runs for c in run.cases))
    columns = []
    for run in runs:
        causes = Counter(c.diagnosis.cause for c in run.cases if c.diagnosis is not None)
        columns.append(
            {
                "agent": run.agent,
                "target": run.target,
                "kind": run.kind,
                "version": run.version,
                "wall_seconds": round(run.wall_seconds, 1),
                "exit_code": run.exit_code,
                "setup_error": run.setup_error,
                "counts": run.counts(),
                "causes": dict(causes.most_common()),
                "cells": {c.scenario: c.status for c in run.cases},
                "failures": [
                    {
                        "scenario": c.scenario,
                        "status": c.status,
                        "message": c.message,
                        "replay": c.replay,
                        "cause": c.diagnosis.cause if c.diagnosis else "",
                        "diagnosis": c.diagnosis.text if c.diagnosis else "",
                        "harness_side": c.diagnosis.harness_side if c.diagnosis else False,
                    }
                    for c in run.cases
                    if c.status in ("failed", "error", "warning")
                ],
            }
        )
    return {"date": date, "harness": harness, "scenarios": scenarios, "columns": columns}


# ---------------------------------------------------------------------- rendering


def _column_title(column: Mapping[str, Any]) -> str:
    return f"{column['agent']}<br>{column['kind']}"


def markdown(
    matrix: Mapping[str, Any],
    *,
    agents: Iterable[Mapping[str, str]] = (),
    preamble: str = "",
    replay_prefix: str = "",
) -> str:
    """The matrix, then per agent and kind the failures with diagnosis and replay command."""
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
    header = "| scenario | " + " | ".join(_column_title(c) for c in columns) + " |"
    lines += [header, "| --- |" + " --- |" * len(columns)]
    for scenario in matrix["scenarios"]:
        cells = [STATUS_MARK.get(c["cells"].get(scenario, ""), "") for c in columns]
        lines.append(f"| `{scenario}` | " + " | ".join(cells) + " |")
    totals = [
        "{passed}/{warning}/{failed}/{error}/{na}".format(
            passed=c["counts"]["passed"],
            warning=c["counts"]["warning"],
            failed=c["counts"]["failed"],
            error=c["counts"]["error"],
            na=c["counts"]["not-applicable"],
        )
        for c in columns
    ]
    lines.append("| **pass/pass?/fail/error/n.a.** | " + " | ".join(totals) + " |")
    walls = [f"{c['wall_seconds']:g} s" for c in columns]
    lines += ["| wall time | " + " | ".join(walls) + " |", ""]
    for column in columns:
        lines += _failures(column, replay_prefix)
    return "\n".join(lines).rstrip() + "\n"


def _failures(column: Mapping[str, Any], replay_prefix: str) -> list[str]:
    title = f"### {column['agent']} {column['version']} over {column['kind']}"
    if column["setup_error"]:
        return [title, "", f"No results: {column['setup_error']}", ""]
    failures = column["failures"]
    if not failures:
        return [title, "", "No failures.", ""]
    causes = ", ".join(f"{cause} x{n}" for cause, n in column["causes"].items())
    out = [title, "", f"Causes: {causes}.", ""]
    for failure in failures:
        side = " (harness side)" if failure["harness_side"] else ""
        first = failure["message"].splitlines()[0] if failure["message"] else ""
        out += [
            f"- **{failure['scenario']}** {failure['status']}: {failure['diagnosis']}{side}",
            f"  - seen: {first[:400]}",
            f"  - replay: `{replay_prefix}{failure['replay']}`",
        ]
    out.append("")
    return out


# ------------------------------------------------------------------------- probes


def probe_row(report: Mapping[str, Any]) -> dict[str, Any]:
    """The facts of one probe report (conformance.probe) that the lead and maintainers need."""
    steps = {s["what"].split(" (")[0]: s for s in report.get("steps", [])}
    held = steps.get("turn B", {})
    close = held.get("close") or {}
    requests = report.get("requests", [])
    side = [r for r in requests if not r["body"].get("nonces")]
    newest = [r for r in requests if r["body"].get("nonces")]
    # A request whose newest nonce is a turn's own, but which is not that turn's first such
    # request, is a side call that carries the prompt (title, memory, suggestion).
    firsts: dict[str, int] = {}
    for r in newest:
        turn = max(r["body"]["nonces"])
        firsts.setdefault(turn, r["ordinal"])
    carrying_side = [r for r in newest if firsts[max(r["body"]["nonces"])] != r["ordinal"]]
    return {
        "target": report.get("target", "?"),
        "kind": report.get("kind", "?"),
        "start_ms": steps.get("started", {}).get("start_ms"),
        "new_session_ms": steps.get("session", {}).get("new_session_ms"),
        "first_request_ms": steps.get("turn A", {}).get("first_request_ms"),
        "held": held.get("held"),
        "close": (
            f"{close.get('by')} {close.get('kind')} +{close.get('after_cancel_ms')} ms"
            if close.get("by")
            else ("not closed in 5 s" if held.get("held") else "-")
        ),
        "stop_reason": held.get("stop_reason"),
        "after_cancel": len(held.get("requests_after_cancel", []) or []),
        "requests": len(requests),
        "side_without_nonce": len(side),
        "side_with_nonce": len(carrying_side),
        "after_C": steps.get("turn C", {}).get("stop_reason"),
        "stop_ms": steps.get("stopped", {}).get("stop_ms"),
        "error": next((s.get("error") for s in report.get("steps", []) if s.get("error")), ""),
    }


def probe_table(reports: Iterable[Mapping[str, Any]]) -> str:
    rows = [probe_row(r) for r in reports]
    if not rows:
        return ""
    head = (
        "| agent / kind | start ms | session ms | 1st request ms | close after cancel | "
        "turn B | requests after cancel | requests (side: no nonce / with nonce) | turn C | "
        "stop ms |"
    )
    lines = [
        "## Probe: one session, three turns, the middle one held and cancelled",
        "",
        "The turn's call is found by a nonce in the prompt (`body-contains`), never by a "
        "header. Side calls are requests without the turn's nonce, or later requests that "
        "carry it (titles, memory, suggestions). Raw reports: `probes/*.json`.",
        "",
        head,
        "| --- |" + " --- |" * 9,
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} / {r['kind']} | {r['start_ms']} | {r['new_session_ms']} | "
            f"{r['first_request_ms']} | {r['close']} | {r['stop_reason']} | "
            f"{r['after_cancel']} | {r['requests']} ({r['side_without_nonce']} / "
            f"{r['side_with_nonce']}) | {r['after_C']} | {r['stop_ms']} |"
        )
    errors = [f"- {r['target']} / {r['kind']}: {r['error']}" for r in rows if r["error"]]
    if errors:
        lines += ["", "Probe errors:", "", *errors]
    return "\n".join(lines) + "\n"
