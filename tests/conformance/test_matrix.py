"""The matrix a maintainer reads: verdicts, vacuous passes, diagnoses and replay commands."""

from __future__ import annotations

import json

from conformance.matrix import build_matrix, diagnose, load_run, markdown
from harness.cases import CaseResult, RunConfig, RunResult, Status
from harness.report import results_json

REPLAY = "cancel-harness run {id} --provider anthropic --seed 7 --tempo 0.02 --target gemini-cli"
HEADER_FAULT = "   +1.0ms  harness   fault rule #1: header=x-agent-purpose:turn,status=500,times=1"


def _case(scenario: str, status: Status, message: str = "", timeline: str = "") -> CaseResult:
    return CaseResult(
        id=scenario,
        kind="anthropic",
        incident="I1",
        title=scenario,
        status=status,
        duration=1.5,
        message=message,
        timeline=timeline,
        replay=REPLAY.format(id=scenario),
    )


def _sample(tmp_path):
    run = RunResult(RunConfig(seed=7, target="gemini-cli"), "gemini-cli", "2026-01-01T00:00:00")
    run.results += [
        _case(
            "esc.mid-stream",
            Status.FAILED,
            "gave up waiting: timed out after 2s waiting for 1 stream(s) at gate 'main'",
        ),
        _case("retry.cancel-during-backoff", Status.PASSED, timeline=HEADER_FAULT),
        _case(
            "isolation.two-sessions",
            Status.PASSED,
            timeline=HEADER_FAULT + "\n  +5.0ms  provider  conn#1 -> 200 plan: rule #1: x",
        ),
        _case(
            "esc.provider-silent",
            Status.FAILED,
            "expected the client to close the provider connection within 40 ms of the cancel "
            "at +83.6ms; conn#1 was still open at +324.9ms and 12 more events were written",
        ),
        _case("owner.stale-stream-id", Status.NOT_APPLICABLE, "needs capability stream-ids"),
    ]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results_json(run)))
    return load_run(
        path,
        agent="gemini-cli",
        target="gemini-cli",
        kind="anthropic",
        version="0.61.0",
        exit_code=1,
    )


def test_a_pass_whose_fault_never_fired_is_a_warning_not_a_pass(tmp_path) -> None:
    run = _sample(tmp_path)
    status = {c.scenario: c.status for c in run.cases}
    assert status["retry.cancel-during-backoff"] == "warning"
    assert status["isolation.two-sessions"] == "passed"  # its rule served a request
    assert run.counts() == {"passed": 1, "warning": 1, "failed": 2, "error": 0, "not-applicable": 1}


def test_failures_are_diagnosed_for_the_right_side(tmp_path) -> None:
    run = _sample(tmp_path)
    causes = {c.scenario: c.diagnosis for c in run.cases if c.diagnosis}
    assert causes["esc.mid-stream"].cause == "main-call-by-header"
    assert causes["esc.mid-stream"].harness_side
    assert causes["esc.provider-silent"].cause == "no-close-on-cancel"
    assert not causes["esc.provider-silent"].harness_side


def test_the_markdown_has_the_matrix_and_a_replay_for_every_failure(tmp_path) -> None:
    run = _sample(tmp_path)
    matrix = build_matrix([run], date="2026-01-01", harness="abc123")
    text = markdown(matrix, replay_prefix="scripts/conformance --replay ")
    assert "| `esc.mid-stream` | FAIL |" in text
    assert "| `retry.cancel-during-backoff` | pass? |" in text
    assert "| **pass/pass?/fail/error/n.a.** | 1/1/2/0/1 |" in text
    assert "`scripts/conformance --replay " + REPLAY.format(id="esc.provider-silent") + "`" in text
    assert "incident I1" in text


def test_a_run_without_results_is_reported_as_a_setup_error(tmp_path) -> None:
    run = load_run(
        tmp_path / "missing.json", agent="a", target="a", kind="anthropic", version="1", exit_code=2
    )
    matrix = build_matrix([run], date="d", harness="h")
    assert "No results: no results (FileNotFoundError" in markdown(matrix)


def test_an_unknown_failure_quotes_its_first_line() -> None:
    found = diagnose("Something odd happened\nmore")
    assert (found.cause, found.text) == ("other", "Something odd happened")
