"""The matrix a maintainer reads: verdicts over repeats, warnings, diagnoses, replay commands."""

from __future__ import annotations

import json

from conformance.diagnosis import Side, diagnose, misattributed
from conformance.matrix import (
    build_matrix,
    cell_mark,
    harness_side,
    load_run,
    markdown,
    verdicts,
)
from harness.cases import CaseResult, RunConfig, RunResult, Status
from harness.report import results_json

REPLAY = "cancel-harness run {id} --provider gemini --seed 7 --tempo 0.05 --target gemini-cli"
CALIBRATION = "calibration on gemini: one kind of turn call (1), nothing to tell apart"
NO_CLOSE = (
    "expected the client to close the provider connection within 1000 ms of the cancel at "
    "+83.6ms; conn#1 was still open at +2324.9ms and 0 more events were written after the cancel"
)
SIDE_WARNING = (
    "side traffic after the cancel at +90.0ms: request #2 POST /v1/messages (call 2, side) at "
    "+95.0ms on conn#2, complete at +96.0ms after 206 events"
)
# openai-agents keeps a cancelled prompt, so the next call ends with both prompts in a row.
KEPT_PROMPT = """\
     +96.7ms  harness   submit 'Attempt 1.' [ch-95c5f32a] to s1: accepted turn t1, stream t1
    +114.6ms  provider  conn#1 request #1 POST /v1/chat/completions (call 1, main [ch-95c5f32a])
    +134.1ms  harness   submit 'Attempt 2.' [ch-0f7c4462] to s1: accepted turn t2, stream t2
    +143.6ms  provider  conn#2 request #2 POST /v1/chat/completions (call 2, main [ch-95c5f32a])"""
# A stale worker's retry carries the old tag too, but the new prompt has its own main call.
STALE_RETRY = """\
     +96.7ms  harness   submit 'First.' [ch-95c5f32a] to s1: accepted turn t1, stream t1
    +114.6ms  provider  conn#1 request #1 POST /v1/chat/completions (call 1, main [ch-95c5f32a])
    +134.1ms  harness   submit 'Second.' [ch-0f7c4462] to s1: accepted turn t2, stream t2
    +143.6ms  provider  conn#2 request #2 POST /v1/chat/completions (call 2, main [ch-0f7c4462])
    +150.6ms  provider  conn#3 request #3 POST /v1/chat/completions (call 1, retry 1, main \
[ch-95c5f32a])"""


def _case(
    scenario: str,
    status: Status,
    message: str = "",
    timeline: str = "",
    warnings: tuple[str, ...] = (),
) -> CaseResult:
    return CaseResult(
        id=scenario,
        kind="gemini",
        incident="I1",
        title=scenario,
        status=status,
        duration=1.5,
        message=message,
        timeline=timeline,
        replay=REPLAY.format(id=scenario),
        warnings=warnings,
    )


def _run(tmp_path, name: str, *results: CaseResult):
    run = RunResult(RunConfig(seed=7, target="gemini-cli"), "gemini-cli", "2026-01-01T00:00:00")
    run.results += results
    run.notes.append(CALIBRATION)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(results_json(run)))
    return load_run(
        path, agent="gemini-cli", target="gemini-cli", kind="gemini", version="0.61", exit_code=1
    )


def _sample(tmp_path, *, isolation: Status = Status.PASSED):
    return _run(
        tmp_path,
        f"run-{isolation}",
        _case("esc.mid-stream", Status.FAILED, NO_CLOSE),
        _case("esc.cancel-twice", Status.PASSED, warnings=(SIDE_WARNING,)),
        _case("isolation.two-sessions", isolation, "" if isolation is Status.PASSED else NO_CLOSE),
        _case("owner.stale-stream-id", Status.NOT_APPLICABLE, "needs capability stream-ids"),
        _case(
            "retry.cancel-during-backoff",
            Status.NOT_APPLICABLE,
            "not applicable to this agent: the agent ended turn t1 error after a 500",
        ),
    )


def test_a_pass_with_side_traffic_is_a_warning_and_counts_as_clean(tmp_path) -> None:
    run = _sample(tmp_path)
    status = {c.scenario: c.status for c in run.cases}
    assert status["esc.cancel-twice"] == "warning"
    warned = next(c for c in run.cases if c.status == "warning")
    assert warned.diagnosis is not None and warned.diagnosis.cause == "side-traffic"
    assert run.counts() == {"passed": 1, "warning": 1, "failed": 1, "error": 0, "not-applicable": 2}
    assert run.applicable == 3
    assert not run.clean  # the FAIL
    assert run.notes == [CALIBRATION]


def test_an_agent_that_keeps_the_socket_open_is_the_agents_finding() -> None:
    found = diagnose(NO_CLOSE)
    assert (found.cause, found.side) == ("no-close-on-cancel", Side.AGENT)
    assert "incident I1" in found.text


def test_a_later_prompt_credited_to_a_kept_earlier_one_is_the_harnesss() -> None:
    assert misattributed(KEPT_PROMPT) == [KEPT_PROMPT.splitlines()[-1].strip()]
    found = diagnose("gave up waiting: timed out after 2s at gate 'g2'", KEPT_PROMPT)
    assert (found.cause, found.side) == ("prompt-misattributed", Side.HARNESS)
    assert "roles.py" in found.text


def test_a_stale_workers_retry_is_not_taken_for_a_misattribution() -> None:
    assert misattributed(STALE_RETRY) == []
    message = "expected exactly 0 retries of logical main call 1; saw 1: ..."
    assert diagnose(message, STALE_RETRY).cause == "retries"


def test_start_up_that_ate_the_case_budget_is_the_harnesss() -> None:
    message = "the case did not finish within 10 s (200 x tempo, at least 10 s); last step: x"
    late = "   +9574.1ms  harness   target opencode started against http://127.0.0.1:1/v1"
    assert diagnose(message, late).cause == "start-up-in-budget"
    early = "   +574.1ms  harness   target opencode started against http://127.0.0.1:1/v1"
    assert diagnose(message, early).cause == "case-timeout"


def test_a_refused_session_load_before_any_prompt_is_the_harnesss() -> None:
    message = "RequestError: Resource not found (at acp/connection.py:126 in send_request)"
    assert diagnose(message, "   +5.0ms  harness   new session s1").side is Side.HARNESS
    after = diagnose(message, KEPT_PROMPT)
    assert after.cause != "acp-load-before-first-prompt"


def test_cells_over_repeats_show_each_verdict_with_its_count() -> None:
    assert cell_mark(["passed", "passed", "passed"]) == "pass"
    assert cell_mark(["passed", "failed", "passed"]) == "pass 2, FAIL 1"
    assert cell_mark([]) == ""


def test_the_markdown_has_the_matrix_runs_calibration_and_replays(tmp_path) -> None:
    runs = [_sample(tmp_path), _sample(tmp_path, isolation=Status.FAILED)]
    runs[0].wall_seconds, runs[1].wall_seconds = 12.5, 13.0
    matrix = build_matrix(runs, date="2026-01-01", harness="abc123")
    text = markdown(matrix, replay_prefix="scripts/conformance --replay ")
    assert "| `esc.mid-stream` | FAIL |" in text
    assert "| `esc.cancel-twice` | warn |" in text
    assert "| `isolation.two-sessions` | pass 1, FAIL 1 |" in text
    assert "| **run 1: pass/warn/fail/error/n.a.** | 1/1/1/0/2 |" in text
    assert "| **run 2: pass/warn/fail/error/n.a.** | 0/1/2/0/2 |" in text
    assert "| **applicable cases** | 3 |" in text
    assert "| wall time per run | 12.5 / 13 s |" in text
    assert f"- gemini-cli (gemini-cli): {CALIBRATION}" in text
    assert "`scripts/conformance --replay " + REPLAY.format(id="esc.mid-stream") + "`" in text
    assert "(agent, no-close-on-cancel)" in text
    assert "- `retry.cancel-during-backoff`: the agent ended turn t1 error after a 500" in text


def test_a_run_without_results_is_reported_as_a_setup_error(tmp_path) -> None:
    run = load_run(
        tmp_path / "missing.json", agent="a", target="a", kind="anthropic", version="1", exit_code=2
    )
    assert not run.clean
    matrix = build_matrix([run], date="d", harness="h")
    assert "No results: no results (FileNotFoundError" in markdown(matrix)


def test_an_unknown_failure_quotes_its_first_line() -> None:
    found = diagnose("Something odd happened\nmore")
    assert (found.cause, found.text, found.side) == ("other", "Something odd happened", Side.AGENT)


def test_verdicts_split_failures_by_side_per_run(tmp_path) -> None:
    agent_bug = _run(tmp_path, "a", _case("esc.mid-stream", Status.FAILED, NO_CLOSE))
    harness = _run(
        tmp_path,
        "h",
        _case("esc.repeated", Status.ERROR, "the agent failed before the cancel", KEPT_PROMPT),
    )
    clean = _run(tmp_path, "c", _case("esc.cancel-twice", Status.PASSED, warnings=(SIDE_WARNING,)))
    clean.agent = clean.target = "quiet"
    harness.agent = harness.target = "blocked"
    text = verdicts(build_matrix([agent_bug, harness, clean], date="d", harness="h"))
    rows = {line.split(" | ")[0][2:]: line.split(" | ")[4:] for line in text.splitlines()[6:]}
    assert rows["gemini-cli"] == ["1 / 0", "agent findings: no-close-on-cancel |"]
    assert rows["blocked"][0] == "0 / 1"
    assert rows["blocked"][1].startswith("no agent finding; blocked on the harness side")
    warned = "conforms: no failure in 1 run(s), with side-traffic warnings |"
    assert rows["quiet"] == ["0 / 0", warned]


def test_a_late_close_across_a_stall_of_the_harness_loop_is_the_harnesss() -> None:
    late = (
        "expected the client to close the provider connection within 100 ms of the cancel at "
        "+599.9ms; conn#1 was closed by the client (fin) only at +794.0ms, 194 ms after"
    )
    timeline = """\
    +200.0ms  harness   fault rule #1: role=main,prompt=ch-dff53734,pace=50ms,hang-after=16
    +235.3ms  provider  conn#1 events #1-#7 written (until +535.6ms)
    +599.9ms  harness   leave turn t1 (stop reading, no cancel)
    +791.9ms  provider  conn#1 events #9-#12 written
    +794.0ms  provider  conn#1 closed by client (fin) after 12 events"""
    assert diagnose(late, timeline, "esc.leave-early").cause == "loop-stall"
    paced = timeline.replace("#9-#12 written", "#9-#12 written (until +791.9ms)")
    assert diagnose(late, paced, "esc.leave-early").cause == "drain-on-leave"


def test_harness_side_causes_are_listed_with_their_cost_and_where(tmp_path) -> None:
    harness = _run(
        tmp_path,
        "h",
        _case("esc.repeated", Status.ERROR, "the agent failed before the cancel", KEPT_PROMPT),
        _case("esc.mid-stream", Status.FAILED, NO_CLOSE),
    )
    text = harness_side(build_matrix([harness, harness], date="d", harness="h"))
    assert "- **prompt-misattributed** (2 cases)." in text
    assert "  - gemini-cli: esc.repeated" in text
    assert "no-close-on-cancel" not in text  # the agent's, not the harness's
