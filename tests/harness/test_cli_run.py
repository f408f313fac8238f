"""`cancel-harness list|run|mutants` as a CI job and a contributor use them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import pytest
from tiny_agent import CAPS, TinyAgent, example_registry

from harness import cli
from harness.seeds import case_seed, shuffled
from harness.target import Capability, TargetStartError
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
        (["run", "--tempo", "inf"], "--tempo inf: expected seconds from 0.001 to 10"),
        (["run", "--tempo", "1e9"], "--tempo 1e+09: expected seconds from 0.001 to 10"),
        (["run", "--tempo", "100000"], "--tempo 100000: expected seconds from 0.001 to 10"),
        (["run", "--tempo", "1e-9"], "--tempo 1e-09: expected seconds from 0.001 to 10"),
        (["mutants", "--tempo", "nan"], "--tempo nan: expected seconds from 0.001 to 10"),
        (["run", "--timeout", "0"], "--timeout 0: expected seconds above 0"),
        (["run", "--timeout", "inf"], "--timeout inf: expected seconds above 0"),
        (["run", "--reruns", "-1"], "--reruns -1: expected 0 to 20"),
        (["run", "--repeat", "0"], "--repeat 0: expected 1 or more repetitions"),
        (["run", "--seed", "-3"], "--seed -3: expected a whole number from 0 to 2**63-1"),
        (["run", "--seed", "soon"], "argument --seed: invalid int value: 'soon'"),
        (["run", "--json", "."], "--json . is a directory; name a file in it, such as results"),
        (["run", "--junit", "/"], "--junit / is a directory; name a file in it, such as /junit"),
        (
            ["mutants", "--target", "acp:cat"],
            "mutants --target acp:cat: mutants switches defects on in the reference agent, so "
            "it runs through one of its doors: reference, acp, http, pty",
        ),
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
    assert lines[0].split() == ["ID", "INCIDENT", "TAGS", "PROVIDERS", "NEEDS", "CATCHES"]
    assert lines[1].split() == [
        "esc.closes-stream",
        "I1",
        "esc,smoke",
        "openai-chat,anthropic",
        "cancel,transcript",
        "provider-ignores-cancel",
    ]
    assert lines[2].split() == [
        "timeout.no-ghost",
        "I2",
        "timeout",
        "openai-chat",
        "timeout,transcript",
        "commit-after-timeout",
    ]


def test_list_with_a_target_says_what_applies_and_what_is_missing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main("list", "--target", "reference") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("target tiny: capabilities ")
    rows = {line.split()[0]: line for line in out if line.startswith(("esc.", "timeout."))}
    assert rows["esc.closes-stream"].endswith("applies")
    assert out[-1] == "2 of 2 scenarios apply (others: not applicable, never passed)"


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
    assert out.rstrip().endswith("reports: reports/latest/mutants.json, reports/latest/index.html")
    matrix = json.loads((in_tmp / "reports/latest/mutants.json").read_text())
    assert matrix["ok"] is True and matrix["seed"] == 3
    page = (in_tmp / "reports/latest/index.html").read_text()
    table = page.split("<table class='mutants'>", 1)[1].split("</table>", 1)[0]
    assert "<tr><td>provider-ignores-cancel</td><td class='verdict-caught'>caught</td>" in table
    assert "<td>esc.closes-stream[openai-chat] 3/3</td>" in table
    # Below the matrix, each catch as its case failed: message, timeline, replay.
    caught = page.split("<h2>How each defect was caught</h2>", 1)[1]
    section = caught.split("<h3 id='caught-provider-ignores-cancel'>", 1)[1].split("</section>")[0]
    assert "esc.closes-stream[openai-chat]" in section and "<svg" in section
    assert "cancel-harness run esc.closes-stream --provider openai-chat --seed 3" in section
    assert "Clean agent: did not pass" not in page


def test_mutants_exit_1_when_a_defect_escapes_every_scenario(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An agent that ignores the switch: timeout.no-ghost claims the defect, and misses it.
    monkeypatch.setattr(cli, "all_defects", lambda: ["commit-after-timeout"])
    monkeypatch.delitem(SWITCHES, "commit-after-timeout")
    assert main("mutants", "I2", "--seed", "3") == 1
    out = capsys.readouterr().out
    assert "commit-after-timeout  NOT CAUGHT" in out
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


def test_a_tempo_too_fast_to_time_reliably_warns_and_runs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main("run", "I2", "--tempo", "0.005", "--seed", "2") == 0
    captured = capsys.readouterr()
    assert captured.err == (
        "cancel-harness: warning: --tempo 0.005 is below 0.01 s: bounds of a few tempo are "
        "close to what this machine can time, so expect indeterminate cases (or use the "
        "default 0.02)\n"
    )
    assert "1 passed" in captured.out


def test_report_paths_are_refused_before_any_case_runs(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (in_tmp / "notes").write_text("a file, not a directory")
    assert main("run", "--junit", "notes/junit.xml") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "cancel-harness: error: --junit notes/junit.xml: notes is a file, so no directory can "
        "be made there\n"
    )
    assert main("run", "I2", "--junit", "new/dir/junit.xml", "--json", "new/r.json") == 0
    assert (in_tmp / "new/dir/junit.xml").exists() and (in_tmp / "new/r.json").exists()


def test_results_are_never_lost_when_a_report_cannot_be_written(
    monkeypatch: pytest.MonkeyPatch, in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(run: object, path: Path) -> Path:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(cli, "write_json", refuse)
    assert main("run", "--seed", "4") == 2
    captured = capsys.readouterr()
    assert "3 passed, 0 failed, 0 errors, 0 not applicable" in captured.out  # the summary
    assert "reports: reports/latest/junit.xml" in captured.out
    assert captured.err == (
        "cancel-harness: error: cannot write reports/latest/results.json: Permission denied\n"
    )


class Unstartable(TinyAgent):
    """An agent that never comes up, and has no per-turn deadline (timeout cases: n/a)."""

    def __init__(self) -> None:
        super().__init__(capabilities=CAPS - {Capability.TIMEOUT})

    async def start(self, endpoint: object, settings: object) -> None:
        raise TargetStartError("agent exited with status 3: missing OPENAI_API_KEY")


def test_an_agent_that_never_started_is_exit_2_even_with_cases_not_applicable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    registry = example_registry()
    code = cli.main(["run", "--seed", "1"], catalogue=registry, targets=lambda s, d: Unstartable())
    captured = capsys.readouterr()
    assert code == 2
    assert "DID-NOT-START   esc.closes-stream[openai-chat]" in captured.out
    assert "not-applicable  timeout.no-ghost[openai-chat]" in captured.out
    assert captured.err == (
        "cancel-harness: error: the target did not start: agent exited with status 3: "
        "missing OPENAI_API_KEY\n"
    )
    data = json.loads(Path("reports/latest/results.json").read_text())
    assert data["exit_code"] == 2
    assert sorted(r["status"] for r in data["results"]) == [
        "did-not-start",
        "did-not-start",
        "not-applicable",
    ]


@pytest.mark.parametrize(
    "mute",
    [
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        # Deaf to a closed stdin too: only SIGTERM ends it, after the stop's grace.
        [sys.executable, "-c", "import time; time.sleep(1000)"],
    ],
    ids=["exits-on-eof", "ignores-eof"],
)
def test_an_acp_agent_that_never_answers_initialize_did_not_start(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], mute: list[str]
) -> None:
    (in_tmp / "cancel-harness.toml").write_text(
        f'[targets.mute]\nkind = "acp"\ncommand = {json.dumps(mute)}\nstartup_timeout = 1\n'
    )
    began = time.monotonic()
    code = cli.main(
        ["run", "acp.cancel-stop-reason", "--provider", "openai-chat", "--target", "mute"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert time.monotonic() - began < 15  # its own 1 s startup_timeout, not the case budget
    assert err.count("\n") == 1
    assert "the target did not start" in err and "ACP initialize failed" in err
    assert "no answer to initialize" in err and "ignores cancellation" not in err


def test_repeat_runs_each_repetition_with_the_next_seed_and_counts_per_case(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main("run", "I2", "--repeat", "3", "--seed", "20") == 0
    out = capsys.readouterr().out
    assert "repetition 1 (seed 20): 1 passed" in out
    assert "repetition 3 (seed 22): 1 passed" in out
    assert re.search(r"^ok\s+timeout\.no-ghost\[openai-chat\]\s+3 passed$", out, re.M)
    data = json.loads((in_tmp / "reports/latest/results.json").read_text())
    assert data["repetitions"] == 3
    assert [r["repetition"] for r in data["results"]] == [0, 1, 2]
    expected = [case_seed(s, "timeout.no-ghost[openai-chat]") for s in (20, 21, 22)]
    assert [r["seed"] for r in data["results"]] == expected
    assert "--seed 22 " in data["results"][2]["replay"] + " "


def test_until_failure_stops_at_the_first_failing_repetition(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        "run",
        "esc.*",
        "--provider",
        "anthropic",
        "--defect",
        "provider-ignores-cancel",
        "--until-failure",
        "--repeat",
        "5",
        "--seed",
        "8",
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "repetition 1 (seed 8): 1 failed" in out and "repetition 2" not in out


def test_shuffle_orders_cases_by_the_seed(in_tmp: Path) -> None:
    cases = [
        "esc.closes-stream[openai-chat]",
        "esc.closes-stream[anthropic]",
        "timeout.no-ghost[openai-chat]",
    ]
    orders = []
    for _ in range(2):
        assert main("run", "--shuffle", "--seed", "6") == 0
        data = json.loads((in_tmp / "reports/latest/results.json").read_text())
        assert data["shuffled"] is True
        orders.append([f"{r['id']}[{r['kind']}]" for r in data["results"]])
    assert orders[0] == orders[1] == shuffled(cases, 6)
