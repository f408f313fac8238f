"""`cancel-harness soak`: passes until the duration or pass count is spent, per-case counts
with failing seeds and replays, and a leak verdict a real leak trips and a healthy agent
does not. Bounded by `--passes`, so no test depends on how fast the machine is."""

from __future__ import annotations

import json
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from tiny_agent import LEAKED_FDS, LEAKED_TASKS, TinyAgent, example_registry

from harness import cli, leaks
from harness.seeds import case_seed
from harness.soak import parse_duration


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    while LEAKED_FDS:
        os.close(LEAKED_FDS.pop())
    LEAKED_TASKS.clear()  # their loop is gone with the soak


def soak(*argv: str, **switches: bool) -> int:
    def targets(spec: str, defects: Sequence[str]) -> TinyAgent:
        ignore = "provider-ignores-cancel" in defects
        return TinyAgent(ignore_cancel=ignore, **switches)

    return cli.main(["soak", *argv], catalogue=example_registry(), targets=targets)


def report(in_tmp: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((in_tmp / "reports/latest/soak.json").read_text())  # type: ignore[no-any-return]


def test_a_healthy_soak_counts_every_pass_and_finds_no_leak(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert soak("--duration", "1h", "--passes", "7", "--seed", "40") == 0
    captured = capsys.readouterr()
    assert "pass 7 (seed 46): 21 case runs so far, 0 failed" in captured.err
    assert re.search(
        r"^passed\s+esc\.closes-stream\[anthropic\]\s+7\s+0\s+0\s+0$", captured.out, re.M
    )
    assert "soak: 7 pass(es)" in captured.out and "stopped by passes" in captured.out
    assert "no leak trend" in captured.out
    data = report(in_tmp)
    assert data["passes"] == 7 and data["counts"]["passed"] == 21 and data["exit_code"] == 0
    assert len(data["samples"]) == 8  # one before the first pass, one after each
    assert {m: v["verdict"] for m, v in data["leaks"].items()} == dict.fromkeys(
        leaks.METRICS, "flat"
    )
    junit = ET.parse(in_tmp / "reports/latest/junit.xml").getroot()
    assert junit.get("tests") == "4" and junit.get("failures") == "0"
    assert "cancel-harness soak" in (in_tmp / "reports/latest/index.html").read_text()


@pytest.mark.parametrize(("switch", "metric"), [("leak_fd", "fds"), ("leak_task", "tasks")])
def test_a_leak_per_turn_is_flagged_and_fails_the_soak(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], switch: str, metric: str
) -> None:
    one_case = ("esc.*", "--provider", "anthropic", "--duration", "1h", "--passes", "7")
    assert soak(*one_case, "--seed", "3", **{switch: True}) == 1
    out = capsys.readouterr().out
    assert re.search(rf"^{metric}\s+.*LEAK \(grew", out, re.M)
    assert f"LEAK: {metric}" in out.splitlines()[-2]
    data = report(in_tmp)
    assert data["leaks"][metric]["verdict"] == "leak"
    assert data["leaks"][metric]["slope_per_hour"] > 0
    assert data["counts"]["failed"] == 0  # every case passed: only the trend fails it
    junit = ET.parse(in_tmp / "reports/latest/junit.xml").getroot()
    leak_case = junit.find(".//testcase[@name='leaks']/failure")
    assert leak_case is not None and metric in (leak_case.get("message") or "")


def test_failures_are_counted_per_case_with_their_seed_and_replay(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = soak(
        "esc.*",
        "--provider",
        "openai-chat",
        "--defect",
        "provider-ignores-cancel",
        "--duration",
        "1h",
        "--passes",
        "2",
        "--seed",
        "9",
    )
    assert code == 1
    out = capsys.readouterr().out
    seed = case_seed(10, "esc.closes-stream[openai-chat]")
    assert f"FAILED esc.closes-stream[openai-chat] (pass 2, case seed {seed})" in out
    assert (
        "replay: cancel-harness run esc.closes-stream --provider openai-chat --seed 10 "
        "--tempo 0.02 --defect provider-ignores-cancel" in out
    )
    assert re.search(r"^failed\s+esc\.closes-stream\[openai-chat\]\s+0\s+2\s+0\s+0", out, re.M)
    case = report(in_tmp)["cases"][0]
    assert case["verdict"] == "failed" and case["flake_rate"] == 1.0
    assert [f["pass"] for f in case["failures"]] == [1, 2]
    html = (in_tmp / "reports/latest/index.html").read_text()
    assert 'class="timeline"' in html and "mark-cancel" in html
    assert "esc.closes-stream[openai-chat] (pass 2)" in html


def test_a_connection_left_open_after_the_agent_stopped_is_named(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("esc.*", "--provider", "anthropic", "--duration", "1h", "--passes", "2")
    assert soak(*argv, "--seed", "2", leak_connection=True) == 1
    out = capsys.readouterr().out
    assert "pass 1: esc.closes-stream[anthropic] left a provider connection open" in out
    assert "pass 2: esc.closes-stream[anthropic] left a provider connection open" in out
    assert [s["left_open"] for s in report(in_tmp)["samples"]] == [0, 1, 2]


def test_the_soak_stops_by_itself_when_the_duration_is_spent(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert soak("I2", "--duration", "0.2s", "--seed", "1") == 0
    data = report(in_tmp)
    assert data["stopped_by"] == "duration" and data["passes"] >= 1
    assert data["wall_seconds"] >= 0.2


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--duration", "10x"], "--duration 10x: expected a time such as 1h, 10m, 90s or 1h30m"),
        (["--duration", "0"], "--duration 0: expected a time such as 1h"),
        ([], "the following arguments are required: --duration"),
        (["--duration", "1m", "--passes", "0"], "--passes 0: expected 1 or more passes"),
        (["--duration", "1m", "--shard", "5/4"], "--shard 5/4: I counts from 1 to N (4)"),
    ],
)
def test_soak_mistakes_are_one_line_and_exit_2(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str], in_tmp: Path
) -> None:
    assert soak(*argv) == 2
    err = capsys.readouterr().err
    assert error in err and err.count("\n") == 1
    assert not (in_tmp / "reports").exists()


def test_durations_read_as_people_write_them() -> None:
    assert parse_duration("1h") == 3600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90s") == parse_duration("90") == 90
    assert parse_duration("500ms") == 0.5


def test_leak_verdict_needs_a_rise_not_noise() -> None:
    noisy = [(float(t), 10.0 + (t * 7 % 5)) for t in range(40)]  # 10..14, no trend
    assert leaks.judge("fds", noisy)["verdict"] == "flat"
    rising = [(float(t), 10.0 + t // 4) for t in range(40)]  # one fd every 4 passes
    verdict = leaks.judge("fds", rising)
    assert verdict["verdict"] == "leak" and verdict["slope_per_hour"] == pytest.approx(900, 0.1)
    assert leaks.judge("fds", rising[:6])["verdict"] == "too short to judge"
    small = [(float(t), 100_000.0 + 100 * t) for t in range(40)]  # RSS: 4 MiB in all
    assert leaks.judge("rss_kib", small)["verdict"] == "flat"
    big = [(float(t), 100_000.0 + 1000 * t) for t in range(40)]  # 40 MiB in all
    assert leaks.judge("rss_kib", big)["verdict"] == "leak"


def test_samples_see_the_agent_process_tree() -> None:
    before = leaks.sample()
    child = subprocess.Popen(["sleep", "30"])
    try:
        during = leaks.sample()
        assert during["children"] == before["children"] + 1
        assert during["agent_rss_kib"] > before["agent_rss_kib"]
        assert during["threads"] >= before["threads"] + 1
    finally:
        child.kill()
        child.wait()
    assert leaks.sample()["children"] == before["children"]


def test_orphans_are_this_soaks_marked_processes_only() -> None:
    env = {"PATH": os.environ.get("PATH", ""), "CANCEL_HARNESS_CASE": "t1"}
    ours = subprocess.Popen(["sleep", "30"], env={**env, leaks.SOAK_VARIABLE: "mine"})
    theirs = subprocess.Popen(["sleep", "30"], env={**env, leaks.SOAK_VARIABLE: "other"})
    try:
        assert leaks.orphans(soak="mine") == 1
        assert leaks.orphans(soak="nobody") == 0
        assert leaks.orphans() >= 2
    finally:
        for proc in (ours, theirs):
            proc.kill()
            proc.wait()
    assert leaks.orphans(soak="mine") == 0
