"""Two small buggy agents the catalogue must catch every time, not by luck of timing.

One looks at the cancel only when the next chunk arrives (the provider then stays silent);
the other drains the stream when its caller leaves early. Each runs against the catalogue's
own scenario, next to the correct tiny agent. `CANCEL_HARNESS_REPEAT=20` repeats each case
(the figure in the closing note of the no-cooperation work: caught 20 times out of 20).
"""

from __future__ import annotations

import os

import pytest
from tiny_agent import tiny_factory

from harness.cases import Case, CaseResult, RunConfig, Status, plan_cases
from harness.runner import Runner
from harness.scenario import load_catalogue

pytestmark = pytest.mark.anyio
REPEAT = range(int(os.environ.get("CANCEL_HARNESS_REPEAT", "2")))
KINDS = ("openai-chat", "anthropic", "openai-responses")
CATALOGUE = load_catalogue()


async def run(scenario_id: str, kind: str, seed: int, **switches: bool) -> CaseResult:
    (case,) = plan_cases([CATALOGUE.get(scenario_id)], [kind])
    runner = Runner(RunConfig(seed=seed, target="tiny"), tiny_factory(**switches))
    return await runner.run_case(Case(case.spec, case.kind))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("attempt", REPEAT)
async def test_a_cancel_seen_only_on_the_next_chunk_is_caught(kind: str, attempt: int) -> None:
    scenario = "esc.provider-silent/after-text"
    correct = await run(scenario, kind, attempt)
    assert correct.status is Status.PASSED, correct.message
    buggy = await run(scenario, kind, attempt, cancel_on_next_chunk=True)
    assert buggy.status is Status.FAILED
    assert "was still open at +" in buggy.message
    assert "the turn shows 'The harness keeps'" in buggy.timeline


async def test_an_agent_that_holds_back_a_word_until_the_next_delta_is_still_judged() -> None:
    scenario = "esc.provider-silent/after-text"
    # As qwen-code does: 'The harness' on screen until the next delta ends 'keeps'.
    correct = await run(scenario, "anthropic", 1, hold_back_last_word=True)
    assert correct.status is Status.PASSED, correct.message
    assert "holds back the rest of 'The harness keeps'" in correct.timeline
    buggy = await run(scenario, "anthropic", 1, hold_back_last_word=True, cancel_on_next_chunk=True)
    assert buggy.status is Status.FAILED
    assert "was still open at +" in buggy.message


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("attempt", REPEAT)
async def test_a_stream_drained_after_the_caller_leaves_is_caught(kind: str, attempt: int) -> None:
    correct = await run("esc.leave-early", kind, attempt)
    assert correct.status is Status.PASSED, correct.message
    buggy = await run("esc.leave-early", kind, attempt, drain_on_leave=True)
    assert buggy.status is Status.FAILED
    assert buggy.message.startswith("expected the client to close the provider connection")
    assert "was still open at +" in buggy.message


async def test_calibration_tells_a_title_call_shaped_like_the_turn_from_the_turn() -> None:
    """A title call that carries the prompt as its user message (as real agents send) is held
    instead of the turn call without calibration; the plain turn first teaches the difference."""
    (case,) = plan_cases([CATALOGUE.get("esc.mid-stream")], ["openai-chat"])
    config = RunConfig(seed=5, target="tiny")
    runner = Runner(config, tiny_factory(title_first=True), verbose=True)
    fooled = await runner.run_case(case)
    assert fooled.status is not Status.PASSED  # the title was held, the turn ran free
    await runner.calibrate([case])
    found = runner.calibrations[case.kind]
    assert found.profile is not None and found.profile.tools == 1
    assert found.look_alikes == 1
    assert found.describe().startswith("calibration on openai-chat: turn calls offer 1 tool(s)")
    result = await runner.run_case(case)
    assert result.status is Status.PASSED, result.message
    assert "request #1 POST /v1/chat/completions (call 1, side)" in result.timeline
    assert "request #2 POST /v1/chat/completions (call 2, main [ch-" in result.timeline
