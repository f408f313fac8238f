"""`cancel-harness list|run|mutants` as a CI job and a contributor use them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest
from tiny_agent import TinyAgent, example_registry

from harness import cli
from harness.targets import TargetSpecError, make_target

# The example scenarios' bugs, as the reference agent's defect names.
SWITCHES = {
    "provider-ignores-cancel": "ignore_cancel",
    "commit-after-timeout": "commit_after_timeout",
}


def tiny_targets(spec: str, defects: Sequence[str]) -> TinyAgent:
    if spec != "reference":
        return make_target(spec, defects)  # type: ignore[return-value]
    return TinyAgent(**{SWITCHES[d]: True for d in defects if d in SWITCHES})


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def main(*argv: str) -> int:
    return cli.main(list(argv), catalogue=example_registry(), targets=tiny_targets)


def test_run_everything_writes_reports_and_exits_0(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main("run", "--seed", "11") == 0
    out = capsys.readouterr().out
    assert out.startswith("cancel-harness run: 3 case(s) against reference, seed 11, tempo 0.02s")
    assert re.search(r"passed\s+esc\.closes-stream\[anthropic\]", out)
    assert "3 passed, 0 failed, 0 errors, 0 not applicable" in out
    junit = ET.parse(in_tmp / "reports/latest/junit.xml").getroot()
    assert junit.get("tests") == "3" and junit.get("failures") == "0"
    data = json.loads((in_tmp / "reports/latest/results.json").read_text())
    assert data["seed"] == 11 and data["target"] == "reference" and data["ok"] is True


def test_a_caught_defect_prints_message_timeline_and_replay(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        "run",
        "esc.*",
        "--provider",
        "openai-chat",
        "--defect",
        "provider-ignores-cancel",
        "--seed",
        "5",
        "--json",
        "out/r.json",
        "--junit",
        "out/j.xml",
    )
    assert code == 1
    out = capsys.readouterr().out
    assert (
        "FAILED esc.closes-stream[openai-chat]: Esc mid-stream closes the provider connection"
        in (out)
    )
    assert "expected the client to close the provider connection within 60 ms of the cancel" in out
    assert "harness   cancel s1" in out
    assert (
        "replay: cancel-harness run esc.closes-stream --provider openai-chat --seed 5 "
        "--tempo 0.02 --defect provider-ignores-cancel" in out
    )
    assert "0 passed, 1 failed" in out
    assert json.loads((in_tmp / "out/r.json").read_text())["defects"] == ["provider-ignores-cancel"]
    assert (in_tmp / "out/j.xml").exists()
    assert not (in_tmp / "reports").exists()


def test_seed_is_random_when_not_given_and_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main("run", "I2") == 0
    out = capsys.readouterr().out
    match = re.search(r"seed (\d+), tempo", out)
    assert match is not None
    data = json.loads(Path("reports/latest/results.json").read_text())
    assert data["seed"] == int(match.group(1))
    assert [r["id"] for r in data["results"]] == ["timeout.no-ghost"]


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["run", "nosuch"], "no scenario matches 'nosuch'"),
        (["run", "tag:nope"], "no scenario matches 'tag:nope'"),
        (
            ["run", "--provider", "antropic"],
            "unknown provider 'antropic' (did you mean 'anthropic'?); use one of openai-chat",
        ),
        (["run", "I2", "--provider", "azure"], "none of the selected scenarios runs on azure"),
        (["run", "--defect", "ignore-cancel"], "unknown defect 'ignore-cancel'"),
        (
            ["run", "--target", "acp:my-agent"],
            "target 'acp:my-agent': program 'my-agent' not found",
        ),
        (["run", "--target", "mine"], "unknown target 'mine'; use --target reference"),
        (["run", "--tempo", "-1"], "--tempo -1: expected seconds above 0"),
        (["run", "--seed", "soon"], "argument --seed: invalid int value: 'soon'"),
        (["list", "nosuch"], "no scenario matches 'nosuch'"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(*argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("cancel-harness: error: ")
    assert error in captured.err
    assert captured.err.count("\n") == 1
    assert captured.out == ""
    assert not Path("reports").exists()


def test_list_shows_the_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    assert main("list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ID", "INCIDENT", "TAGS", "PROVIDERS", "CATCHES"]
    assert lines[1].split() == [
        "esc.closes-stream",
        "I1",
        "esc,smoke",
        "openai-chat,anthropic",
        "ignore-cancel",
    ]
    assert lines[2].split() == [
        "timeout.no-ghost",
        "I2",
        "timeout",
        "openai-chat",
        "commit-after-timeout",
    ]


def test_mutants_matrix_proves_each_defect_is_caught(
    monkeypatch: pytest.MonkeyPatch, in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "all_defects", lambda: list(SWITCHES))
    assert main("mutants", "--provider", "openai-chat", "--seed", "3") == 0
    out = capsys.readouterr().out
    assert "clean agent: every applicable case passed (2)" in out
    # A catch is a case that failed in every one of its runs (1 + 2 re-runs by default).
    assert "provider-ignores-cancel  1: esc.closes-stream[openai-chat] 3/3" in out
    assert "commit-after-timeout     1: timeout.no-ghost[openai-chat] 3/3" in out
    assert out.rstrip().endswith("report: reports/latest/mutants.json")
    matrix = json.loads((in_tmp / "reports/latest/mutants.json").read_text())
    assert matrix["ok"] is True and matrix["seed"] == 3


def test_mutants_exit_1_when_a_defect_escapes_every_scenario(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "all_defects", lambda: ["tool-survives-cancel"])
    assert main("mutants", "I2", "--seed", "3") == 1
    out = capsys.readouterr().out
    assert "tool-survives-cancel  NOT CAUGHT" in out
    assert "1 defect(s) caught by no scenario" in out


def test_make_target_names_the_kinds() -> None:
    with pytest.raises(TargetSpecError) as caught:
        make_target("ftp:x")
    assert str(caught.value).startswith(
        "unknown target 'ftp:x'; use --target reference, acp[:COMMAND], http[:URL], "
        "pty[:COMMAND], python:MODULE:FACTORY or a configured name"
    )


def test_console_script_usage_error_has_no_traceback() -> None:
    script = Path(sys.executable).parent / "cancel-harness"
    proc = subprocess.run(
        [str(script), "run", "--provider", "anthropc"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "cancel-harness: error: unknown provider 'anthropc' (did you mean 'anthropic'?); "
        "use one of openai-chat, openai-responses, anthropic, azure, gemini\n"
    )
    assert proc.stdout == ""


def test_mutants_through_a_front_door_for_chosen_defects(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The real catalogue and the real http front door of the reference agent.
    code = cli.main(
        [
            "mutants",
            "accept.idle-cancel-then-prompt",
            "--target",
            "http",
            "--provider",
            "openai-chat",
            "--defect",
            "idle-cancel-poisons-next",
            "--seed",
            "3",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "1 case(s) x (clean + 1 defects)" in out
    assert "idle-cancel-poisons-next: caught by 1 case(s)" in out


def test_an_agent_that_will_not_start_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent = tmp_path / "agent.sh"
    agent.write_text("#!/bin/sh\necho 'fatal: no config file' >&2\nexit 3\n")
    agent.chmod(0o755)
    code = cli.main(
        ["run", "acp.cancel-stop-reason", "--provider", "openai-chat", "--target", f"acp:{agent}"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "the target did not start" in err and "stderr: fatal: no config file" in err


def test_tls_run_gives_the_agent_the_exported_ca(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["run", "esc.mid-stream", "--provider", "openai-chat", "--tls", "--seed", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert (
        "--tls"
        in json.loads((Path("reports/latest/results.json")).read_text())["results"][0]["replay"]
    )
