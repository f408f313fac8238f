"""Every figure in README.md and benchmarks/README.md is the one `benchmarks/results.json`
holds: the READMEs' figure blocks must equal what `benchmarks/figures.py` renders from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import figures, results

# The blocks issue 14 asks for; removing one from a README fails here.
REQUIRED = {
    "README.md": {"summary"},
    "benchmarks/README.md": {
        "bench_throughput",
        "bench_paced",
        "bench_cost_curve",
        "bench_cost_curve.capacity",
        "bench_memory",
        "bench_catalogue",
        "bench_cancel_latency",
    },
}


@pytest.mark.parametrize("readme", figures.READMES, ids=["README", "benchmarks-README"])
def test_the_readme_figures_equal_the_recorded_results(readme: Path) -> None:
    data = results.load()
    text = readme.read_text()
    names = {name for name, _ in figures.blocks(text)}
    assert REQUIRED[str(readme.relative_to(figures.ROOT))] <= names
    for name in names - {"summary"}:
        benchmark = name.partition(".")[0]  # `bench.view` renders another view of a record
        assert benchmark in data["benchmarks"], f"{readme.name}: no recorded figures for {name}"
    assert figures.rendered(text, data) == text, (
        f"{readme.name}: a figure block differs from benchmarks/results.json; run the "
        "benchmark with --record (or `python -c 'from benchmarks import figures, results; "
        "figures.update_readmes(results.load())'` after editing results.json by hand)"
    )


def test_every_recorded_entry_names_its_command_date_commit_and_machine() -> None:
    for name, entry in results.load()["benchmarks"].items():
        assert entry["command"].startswith(f"python -m benchmarks.{name}"), name
        assert entry["date"] and entry["commit"], name
        assert {"cpu", "cores", "python"} <= set(entry["machine"]), name


def test_a_changed_result_changes_the_block(tmp_path: Path) -> None:
    data = results.load()
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- figures: bench_paced -->\nstale\n<!-- /figures -->\nafter\n")
    assert figures.update_readmes(data, (readme,)) == [readme]
    first = readme.read_text()
    assert "stale" not in first and first.startswith("before\n") and first.endswith("after\n")
    changed = json.loads(json.dumps(data))
    changed["benchmarks"]["bench_paced"]["figures"]["ours"]["late_share"] = 0.5
    assert figures.rendered(first, changed) != first
    assert "50.00%" in figures.rendered(first, changed)
