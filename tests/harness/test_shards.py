"""`--shard I/N` and `report merge`: N CI machines, merged, are the one run case for case."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from tiny_agent import TinyAgent, example_registry

from harness import cli
from harness.cases import plan_cases
from harness.scenario import load_catalogue
from harness.shards import parse_shard, shard_of


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def targets(spec: str, defects: Sequence[str]) -> TinyAgent:
    return TinyAgent(ignore_cancel="provider-ignores-cancel" in defects)


def main(*argv: str) -> int:
    return cli.main(list(argv), catalogue=example_registry(), targets=targets)


def by_case(path: Path) -> dict[str, tuple[Any, ...]]:
    data = json.loads(path.read_text())
    return {
        f"{r['id']}[{r['kind']}]": (r["status"], r["seed"], r["replay"], r["repetition"])
        for r in data["results"]
    }


def test_every_catalogue_case_is_in_exactly_one_shard_chosen_by_its_name() -> None:
    names = [c.name for c in plan_cases(load_catalogue().select([]))]
    shards = [parse_shard(f"{i}/4") for i in range(1, 5)]
    homes = {name: [s.index for s in shards if s.holds(name)] for name in names}
    assert all(len(h) == 1 for h in homes.values())
    assert all(len([n for n in names if homes[n] == [s.index]]) > 0 for s in shards)
    # Neither order nor the rest of the selection moves a case.
    assert [shard_of(n, 4) for n in reversed(names)] == [homes[n][0] for n in reversed(names)]


def test_four_shards_merged_equal_one_run_case_for_case(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--defect", "provider-ignores-cancel", "--seed", "21"]
    assert main("run", *common, "--json", "whole/results.json") == 1
    for i in range(1, 5):
        main("run", *common, "--shard", f"{i}/4", "--json", f"shard{i}/results.json")
    capsys.readouterr()
    dirs = [f"shard{i}" for i in range(1, 5)]
    assert main("report", "merge", *dirs, "--out", "merged") == 1
    out = capsys.readouterr().out
    assert out.startswith("merged 4 report(s), shards 1/4, 2/4, 3/4, 4/4")
    whole, merged = by_case(in_tmp / "whole/results.json"), by_case(in_tmp / "merged/results.json")
    assert merged == whole and len(whole) == 3
    assert list(merged) == list(whole)  # the selection's order, whatever the shards
    assert "1 passed, 2 failed" in out
    junit = ET.parse(in_tmp / "merged/junit.xml").getroot()
    assert junit.get("tests") == "3" and junit.get("failures") == "2"
    assert "esc.closes-stream[anthropic]" in (in_tmp / "merged/index.html").read_text()


def test_a_shard_missing_from_the_merge_fails_it_and_names_the_cases(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in (1, 2):
        main("run", "--seed", "5", "--shard", f"{i}/2", "--json", f"s{i}/results.json")
    capsys.readouterr()
    whole = by_case(in_tmp / "s1/results.json") | by_case(in_tmp / "s2/results.json")
    lost = sorted(by_case(in_tmp / "s2/results.json"))
    assert lost, "at least one of the three cases hashes to shard 2"
    assert main("report", "merge", "s1") == 1
    captured = capsys.readouterr()
    assert f"MISSING: {len(lost)} selected case(s) are in no merged report: " in captured.out
    assert all(name in captured.out for name in lost)
    assert "are in no merged report" in captured.err
    assert len(whole) == 3
    assert (in_tmp / "reports/merged/index.html").exists()


def test_the_same_shard_twice_is_refused(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main("run", "I2", "--seed", "5", "--json", "a/results.json")
    shutil.copytree(in_tmp / "a", in_tmp / "b")
    capsys.readouterr()
    assert main("report", "merge", "a", "b") == 2
    err = capsys.readouterr().err
    assert "timeout.no-ghost[openai-chat] is in both a/results.json and b/results.json" in err
    assert err.count("\n") == 1


def test_an_empty_shard_is_not_an_error(in_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = [c.name for c in plan_cases(example_registry().select(["I2"]))]
    empty = next(i for i in range(1, 5) if all(shard_of(n, 4) != i for n in names))
    assert main("run", "I2", "--seed", "1", "--shard", f"{empty}/4") == 0
    out = capsys.readouterr().out
    assert f"shard {empty}/4: 0 of the 1 selected case(s)" in out
    data = json.loads((in_tmp / "reports/latest/results.json").read_text())
    assert data["results"] == [] and data["shard"] == f"{empty}/4"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["run", "--shard", "0/4"], "--shard 0/4: I counts from 1 to N (4), such as 1/4"),
        (["run", "--shard", "3"], "--shard 3: expected I/N, this machine's shard I of N"),
        (["mutants", "--shard", "1/0"], "--shard 1/0: N is the number of shards, 1 to 1000"),
        (["report", "merge", "nowhere"], "nowhere does not exist; give each shard's report"),
        (["report"], "report: say what to do, such as `cancel-harness report merge DIR...`"),
    ],
)
def test_shard_and_merge_mistakes_are_one_line_and_exit_2(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(*argv) == 2
    err = capsys.readouterr().err
    assert error in err and err.count("\n") == 1


def test_a_file_that_is_not_a_results_json_is_refused(
    in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (in_tmp / "bad").mkdir()
    (in_tmp / "bad/results.json").write_text("{not json")
    assert main("report", "merge", "bad") == 2
    assert "bad/results.json: not a results.json" in capsys.readouterr().err
