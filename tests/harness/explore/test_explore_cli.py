"""`cancel-harness explore` as a user drives it: usage errors, a found counterexample with
its replay command, scenario and database entry, and a replay."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from harness.cli import main
from harness.explore.schedule import (
    Cancel,
    Fault,
    FaultKind,
    Point,
    Profile,
    Prompt,
    Reach,
    Schedule,
)
from harness.explore.schedule import Request as Req

HELD = Schedule(
    Profile.PLAIN,
    "openai-chat",
    (Prompt(1, 0, (Req(Fault(FaultKind.HOLD, at=3)),)), Reach(1, Point.HELD, 1), Cancel(0)),
)
FAST = ["--tempo", "0.01", "--no-db", "--no-calibration"]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--budget", "0"], "--budget 0: run at least one example"),
        (["--duration", "5x"], "--duration 5x: expected a time with a unit"),
        (["--budget", "3", "--duration", "3s"], "not allowed with argument --budget"),
        (["--target", "nope"], "unknown target 'nope'"),
        (["--replay", "{bad"], "the schedule is not JSON"),
        (["tag:nosuch"], "no scenario matches 'tag:nosuch'"),
        (["--defect", "nope"], "unknown defect 'nope'"),
        (["--provider", "nope"], "nope"),
    ],
)
def test_a_usage_mistake_is_one_line_and_exit_2(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explore", *args]) == 2
    err = capsys.readouterr().err
    assert said in err and err.startswith("cancel-harness: error:")
    assert err.count("\n") == 1


def test_a_replay_runs_one_schedule_and_says_how_it_went(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = HELD.to_text()
    defect = ["--defect", "provider-ignores-cancel"]
    assert main(["explore", *FAST, *defect, "--replay", text]) == 1
    out = capsys.readouterr().out
    assert "3. cancel session A" in out and "close the provider connection" in out
    assert main(["explore", *FAST, "--replay", text]) == 0
    # passed; on a loaded machine a late close may leave it indeterminate (never failed)
    last = capsys.readouterr().out.split("\n\n")[1].split(":")[0].strip()
    assert last in ("passed", "indeterminate"), last


def test_a_found_counterexample_comes_with_replay_scenario_and_database_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["explore", "--defect", "provider-ignores-cancel", "--seed", "3", "--no-calibration"]
    assert main([*args, "--budget", "40", "--shrink-budget", "5"]) == 1
    out = capsys.readouterr().out
    assert "minimal schedule" in out and "explored" in out and "examples/s" in out
    replay = next(line for line in out.splitlines() if line.startswith("replay: "))
    scenario = next(line for line in out.splitlines() if line.startswith("scenario: "))
    source = Path(scenario.split()[1]).read_text()
    assert "@scenario(" in source and "await ctx.cancel(" in source
    saved = json.loads(Path("reports/explore/examples.json").read_text())["examples"]
    assert [e["target"] for e in saved] == ["reference+provider-ignores-cancel"]

    replayed = shlex.split(replay.removeprefix("replay: "))
    assert replayed[:2] == ["cancel-harness", "explore"]
    assert main(replayed[1:]) == 1
    capsys.readouterr()

    assert main([*args, "--budget", "40"]) == 1  # the saved one is tried first
    out = capsys.readouterr().out
    assert "trying 1 saved counterexample" in out
