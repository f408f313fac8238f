"""Reports as CI and people read them: valid JUnit XML, complete JSON, a readable summary."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.cases import CaseResult, RunConfig, RunResult, Status
from harness.report import (
    failure_details,
    junit_xml,
    mutant_matrix,
    render_matrix,
    summary_table,
    write_json,
    write_junit,
    write_mutants,
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
    assert data["counts"] == {"passed": 1, "failed": 1, "error": 1, "not-applicable": 1}
    assert data["ok"] is False
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


def test_mutant_matrix_names_the_catchers_and_the_uncaught(tmp_path: Path) -> None:
    clean = a_run(result("esc.mid", Status.PASSED), defects=())
    caught = a_run(result("esc.mid", Status.FAILED, "boom"))
    missed = a_run(
        result("esc.mid", Status.PASSED, catches=("commit-after-timeout",)),
        defects=("commit-after-timeout",),
    )
    matrix = mutant_matrix(
        clean, {"provider-ignores-cancel": caught, "commit-after-timeout": missed}
    )
    assert matrix["ok"] is False
    assert matrix["uncaught"] == ["commit-after-timeout"]
    assert matrix["defects"]["provider-ignores-cancel"]["caught_by"] == ["esc.mid[openai-chat]"]
    assert matrix["defects"]["commit-after-timeout"]["claimed_but_missed"] == ["esc.mid"]
    text = render_matrix(matrix)
    assert "clean agent: every case passed" in text
    assert "provider-ignores-cancel  1: esc.mid[openai-chat]" in text
    assert "commit-after-timeout     NOT CAUGHT" in text
    assert "claimed but not caught by: esc.mid" in text
    assert text.endswith("1 defect(s) caught by no scenario")
    saved = json.loads(write_mutants(matrix, tmp_path / "mutants.json").read_text())
    assert saved["uncaught"] == ["commit-after-timeout"]
