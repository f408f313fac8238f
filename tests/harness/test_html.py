"""The HTML report: what a person looking at a failure needs is on the page, drawn, and the
page fetches nothing. (tests/harness/test_report_browser.py opens it in a real browser.)"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest
from tiny_agent import TinyAgent, example_registry

from harness import cli
from harness.cases import CaseResult, RunConfig, RunResult, Status
from harness.html import run_page, timeline_svg


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def targets(spec: str, defects: Sequence[str]) -> TinyAgent:
    return TinyAgent(ignore_cancel="provider-ignores-cancel" in defects)


def failing_run(in_tmp: Path) -> str:
    code = cli.main(
        ["run", "--defect", "provider-ignores-cancel", "--seed", "4"],
        catalogue=example_registry(),
        targets=targets,
    )
    assert code == 1
    return (in_tmp / "reports/latest/index.html").read_text()


def test_a_failing_case_is_drawn_with_cancel_close_and_bound_on_one_clock(in_tmp: Path) -> None:
    page = failing_run(in_tmp)
    section = page.split('id="case-esc-closes-stream-openai-chat"', 1)[1].split("</section>")[0]
    svg = ET.fromstring(re.search(r"<svg class=\"timeline\".*?</svg>", section, re.S)[0])  # type: ignore[index]
    texts = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert {"harness", "agent", "cancel", "bound", "close"} <= set(texts)
    assert any(t and t.startswith("conn#1") for t in texts)
    classes = {e.get("class") for e in svg.iter()}
    assert {"mark-cancel", "mark-bound", "mark-close", "conn"} <= classes
    # The cancel is drawn before the bound, which is before the (late) close.
    xs = {
        e.get("class"): float(e.get("x1") or e.get("x") or 0)
        for e in svg.iter()
        if e.get("class") in ("mark-cancel", "mark-bound", "mark-close")
    }
    assert xs["mark-cancel"] < xs["mark-bound"] < xs["mark-close"]
    assert (
        "cancel-harness run esc.closes-stream --provider openai-chat --seed 4 --tempo 0.02 "
        "--defect provider-ignores-cancel" in section
    )
    assert "expected the client to close the provider connection within 60 ms" in section


def test_filters_work_without_javascript_and_cover_status_family_provider(in_tmp: Path) -> None:
    page = failing_run(in_tmp)
    for box, attribute in (
        ("f-status-failed", 'data-status="failed"'),
        ("f-family-timeout", 'data-family="timeout"'),
        ("f-provider-anthropic", 'data-provider="anthropic"'),
    ):
        assert f'id="{box}"' in page
        dim, value = attribute.split("=")
        assert f"body:has(#{box}:not(:checked)) [{dim}={value}]{{display:none}}" in page
        assert page.count(attribute) >= 1
    assert page.count('<tr class="row"') == 3  # every row is there with JS off


def test_the_page_fetches_nothing(in_tmp: Path) -> None:
    page = failing_run(in_tmp)
    assert not re.search(r"<(link|img|iframe|object|embed)\b", page)
    assert not re.search(r"\b(src|href)=\"(https?:)?//", page)
    assert "@import" not in page and "url(" not in page
    assert "default-src 'none'" in page  # and the browser is told to refuse any fetch


def test_text_from_the_agent_is_escaped() -> None:
    result = CaseResult(
        id="esc.x",
        kind="openai-chat",
        incident="I1",
        title="<b>t</b>",
        status=Status.FAILED,
        duration=0.1,
        message="saw <script>alert(1)</script>",
        timeline="",
        replay="cancel-harness run esc.x --seed 1 'a&b'",
        trace={"entries": [{"t": 1.0, "lane": "agent", "what": "<img src=x>"}], "end": 2.0},
    )
    page = run_page(RunResult(RunConfig(seed=1), "reference", "", results=[result]))
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x>" not in page and "&#x27;a&amp;b&#x27;" in page


def test_a_connection_never_closed_is_drawn_to_the_end_and_said() -> None:
    trace = {
        "entries": [{"t": 5.0, "lane": "harness", "what": "cancel s1", "mark": "cancel"}],
        "connections": [
            {"id": 2, "opened": 1.0, "closed": None, "events": [2.0, 3.0], "roles": ["main"]}
        ],
        "marks": [],
        "end": 50.0,
    }
    svg = timeline_svg(trace, "x")
    assert "never closed" in svg and "still open at the end" in svg and "mark-close" not in svg


def test_a_passing_run_has_no_case_sections(in_tmp: Path) -> None:
    cli.main(["run", "I2", "--seed", "2"], catalogue=example_registry(), targets=targets)
    page = (in_tmp / "reports/latest/index.html").read_text()
    assert "Did not pass" not in page and 'class="timeline"' not in page
    assert page.count('<tr class="row" data-status="passed"') == 1


def test_junit_system_out_carries_the_timeline_and_the_replay(in_tmp: Path) -> None:
    failing_run(in_tmp)
    root = ET.parse(in_tmp / "reports/latest/junit.xml").getroot()
    case = root.find(".//testcase[@name='esc.closes-stream[openai-chat]']")
    assert case is not None
    out = case.findtext("system-out") or ""
    assert "timeline:" in out and "harness   cancel s1" in out
    assert (
        out.rstrip()
        .splitlines()[-1]
        .startswith("replay: cancel-harness run esc.closes-stream --provider openai-chat --seed 4")
    )
    passed = root.find(".//testcase[@name='timeout.no-ghost[openai-chat]']")
    assert passed is not None and passed.find("system-out") is None


def test_results_json_round_trips_a_case_with_its_trace(in_tmp: Path) -> None:
    import json

    failing_run(in_tmp)
    raw = json.loads((in_tmp / "reports/latest/results.json").read_text())["results"]
    again = [CaseResult.from_json(r).to_json() for r in raw]
    assert again == raw
    assert raw[0]["trace"]["marks"][0]["kind"] == "bound"
