"""`cancel-harness explore` as a user drives it: usage errors, a found counterexample with
its replay command, scenario and database entry, and a replay."""

from __future__ import annotations

import html
import json
import re
import shlex
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cli import main
from harness.explore import examples, passes
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
    assert "@scenario(" in source and "await ctx.submit(" in source
    saved = json.loads(Path("reports/explore/examples.json").read_text())["examples"]
    assert [e["target"] for e in saved] == ["reference+provider-ignores-cancel"]

    replayed = shlex.split(replay.removeprefix("replay: "))
    assert replayed[:2] == ["cancel-harness", "explore"]
    assert main(replayed[1:]) == 1
    capsys.readouterr()

    assert main([*args, "--budget", "40"]) == 1  # the saved one is tried first
    out = capsys.readouterr().out
    assert "trying 1 saved counterexample" in out


def test_a_saved_counterexample_this_run_would_not_draw_is_skipped_and_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A kept schedule with a follow-up, on a run whose menu has none (here narrowed by a
    selector; a target without a queue is the same): never run, and the user is told."""
    monkeypatch.chdir(tmp_path)
    queued = Schedule(
        Profile.PLAIN,
        "openai-chat",
        (
            Prompt(1, 0, (Req(Fault(FaultKind.HOLD)),)),
            Prompt(2, 0, (Req(Fault(FaultKind.OK)),), followup=True),
            Cancel(0),
        ),
    )
    db = tmp_path / "examples.json"
    examples.save(db, "reference", queued, "failed", "kept from an earlier run")
    examples.save(db, "reference", HELD, "failed", "kept from an earlier run")
    args = ["explore", "tag:repeat", *FAST[:2], "--no-calibration", "--db", str(db)]
    assert main([*args, "--budget", "1", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "trying 1 saved counterexample(s)" in out
    assert "skipping 1 saved counterexample(s)" in out
    assert "(they need a follow-up while a turn runs)" in out
    assert "explored 1 examples" in out  # HELD passed; the search ran its one example

    assert main(["explore", *FAST, "tag:repeat", "--replay", queued.to_text()]) == 0
    out = capsys.readouterr().out
    assert "note: explore would not draw this schedule for reference: it needs a follow-up" in out


# ------------------------------------------------------------------ soak --explore


def test_a_soak_explores_after_every_pass_with_a_seed_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = ["soak", "esc.mid-stream", "--provider", "openai-chat", "--duration", "1h"]
    assert main([*argv, "--passes", "2", "--explore", "3", "--seed", "11"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^\s+2\s+12\s+3\s+\d+\s+\d+\s+\d+\s+nothing$", out, re.M), out
    assert "explore: 6 examples, 0 finding(s)" in out
    data = json.loads((tmp_path / "reports/latest/soak.json").read_text())
    assert [p["seed"] for p in data["explore"]["passes"]] == [11, 12]
    assert data["explore"]["examples"] == 6 and data["explore"]["findings"] == 0
    junit = ET.parse(tmp_path / "reports/latest/junit.xml").getroot()
    explore = junit.find(".//testcase[@name='explore']")
    assert explore is not None and explore.find("failure") is None


def test_a_soak_that_explores_fails_on_a_counterexample_and_says_how_to_replay_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(passes, "SHRINK_RUNS", 5)
    argv = ["soak", "esc.mid-stream", "--provider", "openai-chat", "--duration", "1h"]
    argv += ["--passes", "1", "--explore", "60", "--seed", "3"]
    assert main([*argv, "--defect", "provider-ignores-cancel"]) == 1
    out = capsys.readouterr().out
    assert "FAILED explore (pass 1, seed 3, after" in out and "minimal schedule:" in out
    replay = next(line.split("replay: ", 1)[1] for line in out.splitlines() if "--replay" in line)
    words = shlex.split(replay)
    assert words[:2] == ["cancel-harness", "explore"] and words[words.index("--seed") + 1] == "3"
    assert "provider-ignores-cancel" in words
    data = json.loads((tmp_path / "reports/latest/soak.json").read_text())
    finding = data["explore"]["passes"][0]["finding"]
    assert data["explore"]["findings"] == 1 and finding["status"] == "failed"
    assert "@scenario(" in Path(finding["scenario"]).read_text()
    failure = ET.parse(tmp_path / "reports/latest/junit.xml").find(
        ".//testcase[@name='explore']/failure"
    )
    assert failure is not None and "replay: cancel-harness explore" in (failure.text or "")
    page = (tmp_path / "reports/latest/index.html").read_text()
    assert "<h2>Explore</h2>" in page and "explore, pass 1 (seed 3): failed" in page
    assert html.escape(replay, quote=True) in page
    # the replay command reproduces it
    assert main(words[1:]) == 1


def test_soak_explore_seeds_differ_per_pass_and_shard() -> None:
    seeds = {passes.explore_seed(100, k, (i, 4)) for k in range(50) for i in range(1, 5)}
    assert len(seeds) == 200
    assert passes.explore_seed(100, 2) == 102  # no shards: the pass's own run seed


def test_soak_explore_mistakes_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["soak", "esc.mid-stream", "--duration", "1m", "--explore", "-1"]) == 2
    err = capsys.readouterr().err
    assert err == "cancel-harness: error: --explore -1: explore at least one example per pass\n"
