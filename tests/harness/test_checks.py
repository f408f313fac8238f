"""Each check passes on a correct little agent and fails on a genuine bug, saying what it saw."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import pytest
from tiny_agent import CAPS, example_registry, tiny_factory

from harness.cases import Case, CaseResult, RunConfig, Status
from harness.explore.host import Host, Verdict
from harness.explore.host import Status as ExploreStatus
from harness.explore.menu import full_menu
from harness.explore.schedule import Await, Fault, FaultKind, Profile, Prompt, Request, Schedule
from harness.faults import hold, side_of
from harness.runner import Runner
from harness.scenario import Registry, ScenarioContext, SettingsFactory, Tempo
from harness.target import AgentSettings

pytestmark = pytest.mark.anyio
Body = Callable[[ScenarioContext], Awaitable[None]]


async def run(
    body: Body, settings: SettingsFactory | None = None, *, strict: bool = False, **switches: bool
) -> CaseResult:
    registry = Registry()
    registry.scenario(id="check", title="check", incident="I1", settings=settings)(body)
    config = RunConfig(seed=1, target="tiny", timeout=5.0, strict_side_traffic=strict)
    runner = Runner(config, tiny_factory(**switches))
    return await runner.run_case(Case(registry.get("check"), "openai-chat"))


async def cancel_mid_stream(ctx: ScenarioContext, pace: str = "") -> tuple[str, int]:
    """Start a turn, wait until 3 events are out and the 4th is held, then cancel."""
    ctx.fault(f"stream=true,tokens=30,hold-before=4,gate=main{pace}")
    session = await ctx.new_session()
    await ctx.submit(session, "hi")
    await ctx.gate("main").wait_reached()
    _, t = await ctx.cancel(session)
    await ctx.release("main")
    return session, t


async def test_connection_closed_within_needs_a_stream_in_flight() -> None:
    async def body(ctx: ScenarioContext) -> None:
        """Cancel with nothing running."""
        await ctx.cancel(await ctx.new_session())
        await ctx.checks.connection_closed_within(ctx.tempo(3))

    result = await run(body)
    assert result.status is Status.FAILED
    assert "no main call was in flight at the provider then" in result.message
    assert "stream_held(" in result.message


async def test_connection_closed_within_measures_from_any_instant() -> None:
    async def body(ctx: ScenarioContext) -> None:
        """Measured from T rather than the cancel."""
        await cancel_mid_stream(ctx)
        first = ctx.provider.ledger.requests()[0]
        await ctx.checks.connection_closed_within(0.001, after_ns=first.started_ns)

    result = await run(body)
    # Late by the harness's own wait for the gate. On a loaded machine the harness may also
    # have measured a stall that long in that span: then it says so and cannot judge.
    assert result.status is Status.FAILED or (
        result.status is Status.INDETERMINATE and "but the harness measured" in result.message
    )
    assert result.message.startswith(
        "expected the client to close the provider connection within 1 ms of T at +"
    )
    assert re.search(r"conn#1 was closed by the client \((fin|rst)\) only at \+", result.message)
    assert "after T, and 33 more events were written after T" in result.message


async def test_no_request_after_sees_the_turn_resent_after_the_cancel() -> None:
    async def body(ctx: ScenarioContext) -> None:
        """The worker resends the turn's own request after Esc."""
        await cancel_mid_stream(ctx)
        await ctx.checks.no_request_after()

    assert (await run(body)).status is Status.PASSED
    result = await run(body, resend_after_cancel=True)
    assert result.status is Status.FAILED
    assert result.message.startswith(
        "expected no request to the provider in the 200 ms after the cancel at +"
    )
    assert "saw 1: request #2 POST /v1/chat/completions (call 2, main [ch-" in result.message


async def test_side_traffic_after_the_cancel_is_a_warning_unless_strict() -> None:
    async def body(ctx: ScenarioContext) -> None:
        """A title request (no prompt in it) goes out after Esc."""
        await cancel_mid_stream(ctx)
        await ctx.checks.no_request_after()

    warned = await run(body, request_after_cancel=True)
    assert warned.status is Status.PASSED
    assert warned.warnings[0].startswith("side traffic after the cancel at +")
    assert "request #2 POST /v1/chat/completions (call 2, side) at +" in warned.warnings[0]
    strict = await run(body, strict=True, request_after_cancel=True)
    assert strict.status is Status.FAILED
    assert strict.message.endswith("(side traffic is judged strictly in this run)")


async def test_no_bytes_after_the_grace() -> None:
    async def body(ctx: ScenarioContext) -> None:
        """The model keeps writing after Esc."""
        await cancel_mid_stream(ctx, ",pace=10ms")
        await ctx.checks.no_bytes_after()

    assert (await run(body)).status is Status.PASSED
    result = await run(body, ignore_cancel=True)
    assert result.status is Status.FAILED
    assert result.message.startswith(
        "expected no bytes written to the agent later than 40 ms after the cancel at +"
    )
    assert "the provider was still writing at +" in result.message
    assert "on request #1 conn#1" in result.message


async def test_stop_reason_says_which_turn_ended_how_and_when() -> None:
    async def body(ctx: ScenarioContext) -> None:
        """Expect completion of a cancelled turn (a wrong expectation, on purpose)."""
        ctx.fault("stream=true,hold-before=2,gate=main")
        session = await ctx.new_session()
        sub = await ctx.submit(session, "hi")
        await ctx.gate("main").wait_reached()
        await ctx.cancel(session)
        out = await ctx.outcome(sub)
        ctx.checks.stop_reason(out, {"cancelled", "timeout"})
        ctx.checks.stop_reason(out, "completed")

    result = await run(body)
    assert result.status is Status.FAILED
    assert result.message.startswith(
        "expected turn t1 to end 'completed'; it ended 'cancelled' at +"
    )
    assert result.message.endswith("(text: '')")


async def test_outcome_that_never_comes_fails_with_when() -> None:
    async def body(ctx: ScenarioContext) -> None:
        """The turn never ends."""
        ctx.fault("hold-before=headers,gate=never")
        sub = await ctx.submit(await ctx.new_session(), "hi")
        await ctx.outcome(sub, timeout=0.1)

    result = await run(body)
    assert result.status is Status.FAILED
    assert result.message.startswith("expected turn t1 to end within 0.1 s of +")
    assert "it was still running at +" in result.message


def _retrying(tempo: object) -> AgentSettings:
    return AgentSettings(max_retries=2, backoff_base=0.005)


async def test_retries_counts_attempts_of_a_logical_call() -> None:
    async def body(ctx: ScenarioContext) -> None:
        """A genuine mid-stream drop is retried exactly once."""
        ctx.fault("stream=true,reset-after=2,times=1")
        sub = await ctx.submit(await ctx.new_session(), "hi")
        ctx.checks.stop_reason(await ctx.outcome(sub), "completed")
        await ctx.checks.retries(1)
        await ctx.checks.retries(0)

    result = await run(body, _retrying)
    assert result.status is Status.FAILED
    assert result.message.startswith("expected exactly 0 retries of logical main call 1; saw 1: ")
    assert "request #1 POST /v1/chat/completions (call 1, main [ch-" in result.message
    assert "server-reset at +" in result.message
    assert "request #2 POST /v1/chat/completions (call 1, retry 1, main [ch-" in result.message

    async def missing(ctx: ScenarioContext) -> None:
        """There is no second call."""
        sub = await ctx.submit(await ctx.new_session(), "hi")
        await ctx.outcome(sub)
        await ctx.checks.retries(0, call=2, window=0.01)

    result = await run(missing, _retrying)
    assert result.message.startswith(
        "expected exactly 0 retries of logical main call 2; the provider"
    )


async def test_background_call_survives_the_users_cancel() -> None:
    async def body(ctx: ScenarioContext) -> None:
        """Esc kills the memory extraction the user never started."""
        first, second = ctx.prompt("first"), ctx.prompt("second")
        ctx.fault(hold(before="headers", gate="mem"), on=side_of(first))
        ctx.fault(hold(before=3, gate="main"), on=second)
        session = await ctx.new_session()
        await ctx.outcome(await ctx.submit(session, first))
        await ctx.gate("mem").wait_reached()
        await ctx.submit(session, second)
        await ctx.gate("main").wait_reached()
        await ctx.cancel(session)
        # The memory call is in flight too, but only the turn's connection must close.
        await ctx.checks.connection_closed_within(ctx.tempo(3))
        await ctx.checks.background_survived(first, release=["mem"])

    settings: SettingsFactory = lambda tempo: AgentSettings(memory_extraction=True)  # noqa: E731
    assert (await run(body, settings)).status is Status.PASSED
    result = await run(body, settings, background_tied=True)
    assert result.status is Status.FAILED
    assert result.message.startswith("expected the background call over [ch-")
    assert "to complete despite the cancel at +" in result.message
    assert "request #2 POST /v1/chat/completions (call 2, side) at +" in result.message
    assert "client-closed at +" in result.message


async def test_next_turn_must_complete_normally() -> None:
    async def body(ctx: ScenarioContext) -> None:
        """The turn after a cancel is poisoned."""
        session, _ = await cancel_mid_stream(ctx)
        await ctx.checks.next_turn_completes(session, "again")

    ctx_fault = "nth=2,status=400"

    async def poisoned(ctx: ScenarioContext) -> None:
        """The provider refuses the next turn."""
        ctx.fault(ctx_fault)
        await body(ctx)

    assert (await run(body)).status is Status.PASSED
    result = await run(poisoned)
    assert result.status is Status.FAILED
    assert result.message.startswith("expected the next turn (t2) to complete normally; it ended")
    assert "'error' at +" in result.message
    assert "(error: provider answered 400)" in result.message


async def test_a_cancelled_prompt_folded_into_the_next_turn_is_growth_by_that_turn() -> None:
    async def body(ctx: ScenarioContext) -> None:
        """After two turns (the second cancelled), the next turn grows the transcript."""
        ctx.fault("stream=true,tokens=30,hold-before=4,gate=main,nth=2")
        session = await ctx.new_session()
        ctx.checks.stop_reason(await ctx.outcome(await ctx.submit(session, "first")), "completed")
        await ctx.submit(session, "hi")
        await ctx.gate("main").wait_reached()
        await ctx.cancel(session)
        await ctx.release("main")
        await ctx.checks.next_turn_completes(session, "again")

    # Claude's ACP agent replays a cancelled prompt and the next one as one user message.
    assert (await run(body, fold_cancelled_prompt=True)).status is Status.PASSED
    result = await run(body, fold_cancelled_prompt=True, rewrite_history=True)
    assert result.status is Status.FAILED
    assert "the transcript should grow by exactly that turn" in result.message


async def test_user_text_written_after_the_stop_is_a_warning_an_answer_is_a_ghost_turn() -> None:
    (spec,) = [s for s in example_registry() if s.id == "timeout.no-ghost"]
    # Claude Code notes '[Request interrupted by user]' a moment after it reports the stop.
    noted = await run(spec.fn, spec.settings, late_interrupt_note=True)
    assert noted.status is Status.PASSED, noted.message
    assert "recorded user text after turn t1 was reported timeout" in noted.warnings[0]
    ghost = await run(spec.fn, spec.settings, late_interrupt_note=True, commit_after_timeout=True)
    assert ghost.status is Status.FAILED
    assert "(no ghost turn)" in ghost.message


def test_explore_judges_late_user_text_as_the_catalogue_does() -> None:
    """Found on claude-agent-acp: explore called its late-recorded prompt a ghost turn. The
    same agent and schedule: user text written after the stop passes, an answer fails."""
    held = Request(Fault(FaultKind.HOLD, at=3))
    plan = Schedule(Profile.DEADLINE, "openai-chat", (Prompt(1, 0, (held,)), Await(1)))

    def judged(**switches: bool) -> Verdict:
        host = Host(tiny_factory(**switches), full_menu(CAPS), tempo=Tempo(0.01), seed=1)
        with host:
            return host.run(plan)

    noted = judged(late_interrupt_note=True)
    assert noted.status is ExploreStatus.PASSED, noted.message
    (finding,) = noted.findings  # reported as the catalogue's warning is
    assert "recorded user text after t1 was reported timeout" in finding
    ghost = judged(late_interrupt_note=True, commit_after_timeout=True)
    assert ghost.status is ExploreStatus.FAILED and "(no ghost turn)" in ghost.message
