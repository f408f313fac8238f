"""A found schedule becomes a scenario function a user can paste: it is lint-clean once
formatted, it fails on the agent explore broke with it, and passes on the correct one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_explore_contracts import CASES

import harness.scenario
from harness.cases import Case, RunConfig, Status
from harness.explore.scenario_code import scenario_source
from harness.runner import Runner
from harness.scenario import Registry
from harness.targets import make_target

RUFF = shutil.which("ruff")


def register(source: str, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The pasted module, imported into a registry of its own."""
    registry = Registry()
    monkeypatch.setattr(harness.scenario, "scenario", registry.scenario)
    exec(compile(source, "found.py", "exec"), {"__name__": "found"})
    return registry


async def run(registry: Registry, defects: tuple[str, ...]) -> Status:
    (spec,) = list(registry)
    runner = Runner(RunConfig(seed=4, tempo=0.01), lambda: make_target("reference", defects))
    result = await runner.run_case(Case(spec, spec.providers[0]))
    assert result.message or result.status is Status.PASSED
    return result.status


@pytest.mark.anyio
@pytest.mark.parametrize(
    "defect",
    ["provider-ignores-cancel", "queued-followup-survives-cancel", "tool-survives-cancel"],
)
async def test_the_scenario_fails_on_the_defect_and_passes_on_the_reference_agent(
    defect: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = register(scenario_source(CASES[defect][0], "found by explore"), monkeypatch)
    assert await run(registry, ()) is Status.PASSED
    assert await run(registry, (defect,)) is Status.FAILED


@pytest.mark.skipif(RUFF is None, reason="ruff is part of the test extra")
def test_the_scenario_is_lint_clean_once_formatted(tmp_path: Path) -> None:
    assert RUFF is not None
    for number, (plan, _) in enumerate(CASES.values()):
        path = tmp_path / f"found_{number}.py"
        path.write_text(scenario_source(plan, 'expected "this"; saw \\ that'))
        subprocess.run([RUFF, "format", "-q", str(path)], check=True)
        checked = subprocess.run([RUFF, "check", "-q", str(path)], capture_output=True, text=True)
        assert checked.returncode == 0, f"{path.read_text()}\n{checked.stdout}"
