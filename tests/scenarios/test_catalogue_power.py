"""Every scenario passes on the reference agent and fails on each defect it names.

This is the catalogue's proof of power: a scenario that catches nothing is itself a defect.
The clean run covers every wire format; the defect runs use one format to keep CI fast
(`cancel-harness mutants` runs the full matrix).
"""

from __future__ import annotations

import pytest

from harness.cases import Case, CaseResult, RunConfig, Status, plan_cases
from harness.runner import Runner
from harness.scenario import ALL_KINDS, load_catalogue
from harness.targets import make_target
from harness.targets.reference import ReferenceTarget
from reference_agent.defects import Defect

pytestmark = pytest.mark.anyio

CATALOGUE = load_catalogue()
ALL_SPECS = list(CATALOGUE)
# The in-process reference target runs everything but the ACP contract, which is proven
# through the acp target (tests/harness/test_acp_target.py).
REFERENCE = ReferenceTarget.capabilities
SPECS = [s for s in ALL_SPECS if s.requires <= REFERENCE]
CLAIMS = [(spec.id, defect) for spec in SPECS for defect in spec.catches]


async def run_one(case: Case, defects: tuple[str, ...] = ()) -> CaseResult:
    config = RunConfig(seed=1234, defects=defects)
    runner = Runner(config, lambda: make_target("reference", defects))
    return await runner.run_case(case)


def test_every_scenario_names_a_known_defect_it_catches() -> None:
    known = {d.value for d in Defect}
    for spec in ALL_SPECS:
        assert spec.catches, f"{spec.id} claims to catch no defect"
        assert set(spec.catches) <= known, f"{spec.id} names unknown defects"
    claimed = {d for spec in ALL_SPECS for d in spec.catches}
    assert known <= claimed, f"defects no scenario claims: {sorted(known - claimed)}"


@pytest.mark.parametrize("case", plan_cases(SPECS, ALL_KINDS), ids=lambda c: c.name)
async def test_passes_on_the_reference_agent(case: Case) -> None:
    result = await run_one(case)
    assert result.status is Status.PASSED, f"{result.message}\n{result.timeline}"


@pytest.mark.parametrize(("scenario_id", "defect"), CLAIMS, ids=[f"{s}-{d}" for s, d in CLAIMS])
async def test_fails_on_the_defect_it_names(scenario_id: str, defect: str) -> None:
    (case,) = plan_cases([CATALOGUE.get(scenario_id)], ["openai-chat"])
    result = await run_one(case, (defect,))
    assert result.status is Status.FAILED, (
        f"{scenario_id} should catch {defect} but ended {result.status}: {result.message}"
    )
    assert result.message, "a failure must say what was expected and what was seen"


def test_a_plain_acp_agent_can_be_judged_on_most_of_the_catalogue() -> None:
    """Every scenario about observable behaviour applies to an ACP agent we do not control."""
    from harness.targets.acp import THIRD_PARTY_CAPABILITIES

    applicable = [s.id for s in ALL_SPECS if s.requires <= THIRD_PARTY_CAPABILITIES]
    assert len(applicable) >= 15, applicable
    assert {"esc.mid-stream", "esc.provider-silent/after-text", "isolation.two-sessions"} <= set(
        applicable
    )
