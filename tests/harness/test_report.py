"""Reports as CI and people read them: valid JUnit XML, complete JSON, a readable summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cases import Attempt, CaseResult, RunConfig, RunResult, Status
from harness.report import (
    ReportPathError,
    check_report_path,
    failure_details,
    junit_xml,
    summary_table,
    write_json,
    write_junit,
)

TIMELINE = "     +12.0ms  harness   cancel s1\n     +80.5ms  provider  conn#1 closed by client"


def result(
    scenario_id: str, status: Status, message: str = "", kind: str = "openai-chat", **kw: object
) -> CaseResult:
    config = RunConfig(seed=42, defects=("provider-ignores-cancel",))
    fields: dict[str, object] = {
        "id": scenario_id,
        "kind": kind,
        "incident": "I1",
        "title": f"title of {scenario_id}",
        "status": status,
        "duration": 0.25,
        "message": message,
        "timeline": TIMELINE if status in (Status.FAILED, Status.ERROR) else "",
        "replay": config.replay(scenario_id, kind),
        "catches": ("provider-ignores-cancel",),
    }
    return CaseResult(**{**fields, **kw})  # type: ignore[arg-type]


def a_run(
    *results: CaseResult, defects: tuple[str, ...] = ("provider-ignores-cancel",)
) -> RunResult:
    config = RunConfig(seed=42, defects=defects, tempo=0.02)
    run = RunResult(config, "reference", "2026-01-02T03:04:05+00:00", "2026-01-02T03:04:09+00:00")
    run.results.extend(results)
    return run


MIXED = a_run(
    result("esc.mid", Status.PASSED),
    result(
        "esc.mid",
        Status.FAILED,
        "expected the client to close ...\x1b[31m within 60 ms",
        kind="anthropic",
    ),
    result("tools.kill", Status.NOT_APPLICABLE, "needs capability tools, which target 'x' lacks"),
    result("timeout.ghost", Status.ERROR, "ValueError: bad step (at s.py:3 in f)"),
)


def test_junit_is_valid_xml_with_one_testcase_per_case() -> None:
    root = ET.fromstring(junit_xml(MIXED))
    suite = root.find("testsuite")
    assert suite is not None
    assert (
        suite.get("tests"),
        suite.get("failures"),
        suite.get("errors"),
        suite.get("skipped"),
    ) == (
        "4",
        "1",
        "1",
        "1",
    )
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props == {
        "seed": "42",
        "target": "reference",
        "defects": "provider-ignores-cancel",
        "tempo": "0.02",
        "reruns": "2",
        "repetitions": "1",
        "shuffled": "False",
    }
    cases = suite.findall("testcase")
    assert [(c.get("classname"), c.get("name")) for c in cases] == [
        ("cancel-harness.I1", "esc.mid[openai-chat]"),
        ("cancel-harness.I1", "esc.mid[anthropic]"),
        ("cancel-harness.I1", "tools.kill[openai-chat]"),
        ("cancel-harness.I1", "timeout.ghost[openai-chat]"),
    ]
    assert list(cases[0]) == []
    failure = cases[1].find("failure")
    assert failure is not None and failure.text is not None
    assert failure.get("message") == "expected the client to close ...?[31m within 60 ms"
    assert "timeline:\n" + TIMELINE in failure.text
    assert (
        "replay: cancel-harness run esc.mid --provider anthropic --seed 42 --tempo 0.02 "
        "--defect provider-ignores-cancel" in failure.text
    )
    skipped = cases[2].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == (
        "not applicable: needs capability tools, which target 'x' lacks"
    )
    error = cases[3].find("error")
    assert error is not None and error.get("message") == "ValueError: bad step (at s.py:3 in f)"


def test_results_json_has_run_fields_and_every_case_field(tmp_path: Path) -> None:
    path = write_json(MIXED, tmp_path / "deep" / "results.json")
    data = json.loads(path.read_text())
    assert {k: data[k] for k in ("seed", "target", "defects", "tempo")} == {
        "seed": 42,
        "target": "reference",
        "defects": ["provider-ignores-cancel"],
        "tempo": 0.02,
    }
    assert data["started"] == "2026-01-02T03:04:05+00:00"
    assert data["finished"] == "2026-01-02T03:04:09+00:00"
    assert data["counts"] == {
        "passed": 1,
        "failed": 1,
        "error": 1,
        "not-applicable": 1,
        "indeterminate": 0,
        "did-not-start": 0,
    }
    assert data["ok"] is False and data["exit_code"] == 1
    failed = data["results"][1]
    assert set(failed) >= {
        "id",
        "kind",
        "status",
        "duration",
        "message",
        "timeline",
        "replay",
        "incident",
    }
    assert failed["status"] == "failed"
    assert failed["replay"].startswith("cancel-harness run esc.mid --provider anthropic --seed 42")
    assert ET.parse(write_junit(MIXED, tmp_path / "j" / "junit.xml")).getroot().tag == "testsuites"


def test_summary_table_and_failure_details_for_the_terminal() -> None:
    table = summary_table(MIXED)
    lines = table.splitlines()
    assert lines[0].startswith("passed          esc.mid[openai-chat]")
    assert lines[1].startswith("FAILED          esc.mid[anthropic]")
    assert "expected the client to close" in lines[1]
    assert lines[2].startswith("not-applicable  tools.kill[openai-chat]")
    assert lines[-1] == (
        "1 passed, 1 failed, 1 errors, 1 not applicable in 1.0 s (target reference, "
        "defects provider-ignores-cancel, seed 42, tempo 0.02)"
    )
    details = failure_details(MIXED)
    assert "FAILED esc.mid[anthropic]: title of esc.mid" in details
    assert TIMELINE in details
    assert "ERROR timeout.ghost[openai-chat]" in details
    assert "replay: cancel-harness run timeout.ghost" in details
    assert "tools.kill" not in details


STALLED = "expected the client to close within 40 ms; but the harness measured 52 ms of stall"


def test_indeterminate_and_did_not_start_are_their_own_statuses_everywhere() -> None:
    rerun = result(
        "esc.mid",
        Status.PASSED,
        attempts=(Attempt(Status.INDETERMINATE, STALLED, 0.3), Attempt(Status.PASSED, "", 0.2)),
    )
    stuck = result(
        "esc.quiet",
        Status.INDETERMINATE,
        STALLED,
        attempts=(Attempt(Status.INDETERMINATE, STALLED, 0.3),) * 3,
    )
    unstarted = result("esc.first", Status.DID_NOT_START, "the target did not start: boom")
    run = a_run(rerun, stuck, unstarted)
    assert run.exit_code == 2 and not run.ok  # setup first: nothing was judged
    assert a_run(rerun, stuck).exit_code == 3
    assert a_run(rerun).exit_code == 0

    lines = summary_table(run).splitlines()
    assert lines[0].startswith("passed          esc.mid[openai-chat]")
    assert lines[0].endswith("(after 1 indeterminate)")
    assert lines[1].startswith("INDETERMINATE   esc.quiet[openai-chat]")
    assert "(after 2 indeterminate) expected the client" in lines[1]
    assert lines[2].startswith("DID-NOT-START   esc.first[openai-chat]")
    assert lines[-1].startswith("1 passed, 0 failed, 0 errors, 0 not applicable in ")
    assert lines[-1].endswith(
        "; 1 indeterminate, 1 did not start, 2 re-run after an indeterminate verdict"
    )
    details = failure_details(run)
    assert "INDETERMINATE esc.quiet[openai-chat]" in details
    assert "attempt 3: indeterminate: expected the client" in details

    suite = ET.fromstring(junit_xml(run)).find("testsuite")
    assert suite is not None
    assert (suite.get("errors"), suite.get("skipped"), suite.get("failures")) == ("1", "1", "0")
    cases = suite.findall("testcase")
    out = cases[0].find("system-out")
    assert out is not None and out.text is not None
    assert out.text.splitlines() == [f"attempt 1: indeterminate: {STALLED}", "attempt 2: passed"]
    skipped = cases[1].find("skipped")
    assert skipped is not None and skipped.get("message") == f"indeterminate: {STALLED}"
    error = cases[2].find("error")
    assert error is not None and error.get("type") == "DidNotStart"

    data = [r.to_json() for r in run.results]
    assert [a["status"] for a in data[0]["attempts"]] == ["indeterminate", "passed"]
    assert data[1]["status"] == "indeterminate" and data[2]["status"] == "did-not-start"


def test_repetitions_are_counted_per_case() -> None:
    reps = [
        result("esc.mid", status, repetition=n)
        for n, status in enumerate([Status.PASSED, Status.FAILED, Status.PASSED])
    ] + [result("tools.kill", Status.PASSED, repetition=n) for n in range(3)]
    run = a_run(*reps)
    run.repetitions = 3
    lines = summary_table(run).splitlines()
    assert lines[0] == (
        "FLAKY  esc.mid[openai-chat]     2 passed, 1 failed; not passed in repetition #2"
    )
    assert lines[1] == "ok     tools.kill[openai-chat]  3 passed"
    assert "3 repetitions)" in lines[-1]
    names = [c.get("name") for c in ET.fromstring(junit_xml(run)).iter("testcase")]
    assert names[:3] == [
        "esc.mid[openai-chat] #1",
        "esc.mid[openai-chat] #2",
        "esc.mid[openai-chat] #3",
    ]
    assert "FAILED esc.mid[openai-chat] (repetition 2)" in failure_details(run)


def test_report_paths_are_checked_before_anything_runs(tmp_path: Path) -> None:
    check_report_path(tmp_path / "new" / "deeper" / "results.json", "--json")  # made later
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ReportPathError, match="is a directory; name a file in it, such as "):
        check_report_path(tmp_path, "--json")
    with pytest.raises(ReportPathError, match="afile is a file, so no directory"):
        check_report_path(tmp_path / "afile" / "junit.xml", "--junit")
