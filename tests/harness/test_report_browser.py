"""The HTML report in a real browser (headless Chromium over the DevTools protocol).

A report with one failing case renders with no console error, shows that case's timeline,
and is saved as a screenshot under reports/browser/; it fetches nothing; its filters work
with JavaScript off. Skipped, with the reason, where Chromium is not installed (.ci/run
installs Debian's `chromium`, so CI runs them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
from cdp import Browser, chromium
from tiny_agent import TinyAgent, example_registry

from harness import cli

pytestmark = pytest.mark.skipif(
    chromium() is None,
    reason="chromium is not installed here (apt-get install chromium; .ci/run installs it)",
)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "reports" / "browser"


def targets(spec: str, defects: Sequence[str]) -> TinyAgent:
    return TinyAgent(ignore_cancel="provider-ignores-cancel" in defects)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run's page: esc.closes-stream[openai-chat] fails, the rest pass."""
    out = tmp_path_factory.mktemp("report")
    code = cli.main(
        [
            "run",
            "--defect",
            "provider-ignores-cancel",
            "--provider",
            "openai-chat",
            "--seed",
            "4",
            "--json",
            str(out / "results.json"),
            "--junit",
            str(out / "junit.xml"),
        ],
        catalogue=example_registry(),
        targets=targets,
    )
    assert code == 1
    return out / "index.html"


VISIBLE = """
(() => {
  const svg = document.querySelector('#case-esc-closes-stream-openai-chat svg.timeline');
  if (!svg) { return null; }
  svg.scrollIntoView();
  const box = svg.getBoundingClientRect();
  const style = getComputedStyle(svg);
  const marks = ['mark-cancel', 'mark-bound', 'mark-close'].map(
    (c) => svg.querySelector('.' + c).getBoundingClientRect().height);
  return {width: box.width, height: box.height, top: box.top, bottom: box.bottom,
          inner: innerHeight, display: style.display, visibility: style.visibility, marks};
})()
"""


def test_a_failing_case_renders_its_timeline_without_console_errors(report: Path) -> None:
    with Browser() as browser:
        browser.open(report.as_uri())
        seen = browser.evaluate(VISIBLE)
        shot = browser.screenshot(SCREENSHOTS / "report-with-a-failing-case.png")
        assert browser.console_errors() == []
        shown = browser.evaluate("document.getElementById('shown').textContent")
    assert seen is not None, "the failing case has no timeline on the page"
    assert seen["display"] != "none" and seen["visibility"] == "visible"
    assert seen["width"] > 500 and seen["height"] > 60
    assert 0 <= seen["top"] < seen["inner"] and seen["bottom"] > 0  # on screen once scrolled to
    assert all(h > 5 for h in seen["marks"])  # cancel, bound and close are drawn
    assert shown == "showing 2 of 2 case(s)"  # the script ran (and counted the rows)
    assert shot.stat().st_size > 10_000


def test_the_report_makes_no_network_request(report: Path, tmp_path: Path) -> None:
    # The detector first: a page that does fetch is caught.
    fetching = tmp_path / "fetching.html"
    fetching.write_text('<html><body><img src="http://127.0.0.1:9/pixel.png"></body></html>')
    with Browser() as browser:
        browser.open(fetching.as_uri())
        assert "http://127.0.0.1:9/pixel.png" in browser.requests()
    with Browser() as browser:
        browser.open(report.as_uri())
        browser.evaluate("document.getElementById('problems-only').click(); 1")
        assert browser.requests() == [report.as_uri()]


def test_filters_work_with_javascript_off(report: Path) -> None:
    with Browser(javascript=False) as browser:
        browser.open(report.as_uri())
        doc = browser.call("DOM.getDocument")["root"]["nodeId"]

        def node(selector: str) -> int:
            found = browser.call("DOM.querySelector", {"nodeId": doc, "selector": selector})
            assert found["nodeId"], selector
            return int(found["nodeId"])

        def drawn(selector: str) -> bool:
            try:
                browser.call("DOM.getBoxModel", {"nodeId": node(selector)})
            except Exception:  # "Could not compute box model": not rendered
                return False
            return True

        failed_row = 'tr.row[data-status="failed"]'
        passed_row = 'tr.row[data-status="passed"]'
        assert drawn(failed_row) and drawn(passed_row)
        assert not drawn("#problems-only")  # the JavaScript-only button stays hidden
        box = browser.call("DOM.getBoxModel", {"nodeId": node("#f-status-passed")})["model"]
        x = (box["content"][0] + box["content"][4]) / 2
        y = (box["content"][1] + box["content"][5]) / 2
        for kind in ("mousePressed", "mouseReleased"):
            browser.call(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1},
            )
        assert not drawn(passed_row) and drawn(failed_row)
