"""Progress on long work: a live line on a terminal, plain lines in a CI log."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import pytest
from tiny_agent import TinyAgent, example_registry

from harness import cli
from harness.cases import CaseResult, Status
from harness.progress import Progress


def result(status: Status) -> CaseResult:
    return CaseResult("esc.x", "anthropic", "I1", "t", status, 0.1, "", "", "replay")


def test_without_a_terminal_a_plain_line_at_each_tenth() -> None:
    out = io.StringIO()
    meter = Progress(40, stream=out, tty=False)
    for n in range(40):
        meter.case_done(result(Status.FAILED if n == 5 else Status.PASSED))
    meter.finish()
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [f"run: {n}/40 cases" for n in range(4, 40, 4)]
    assert "1 failed" in lines[1] and "0 failed" in lines[0]
    assert all(" left" in line for line in lines) and "\r" not in out.getvalue()


def test_on_a_terminal_one_line_rewritten_with_failures_and_time_left() -> None:
    out = io.StringIO()
    meter = Progress(3, stream=out, tty=True)
    meter.case_done(result(Status.FAILED))
    meter.line("pass 1: something a person should keep")
    meter.finish()
    text = out.getvalue()
    assert text.startswith("\r\x1b[2Krun: 1/3 cases, 1 failed, 0s elapsed, ~")
    assert "\r\x1b[2Kpass 1: something a person should keep\n" in text
    assert text.endswith("\r\x1b[2K")  # the live line is gone when the work is done


def test_short_runs_in_ci_logs_stay_quiet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)

    def targets(spec: str, defects: Sequence[str]) -> TinyAgent:
        return TinyAgent()

    assert cli.main(["run", "--seed", "1"], catalogue=example_registry(), targets=targets) == 0
    assert capsys.readouterr().err == ""
