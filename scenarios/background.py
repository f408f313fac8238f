"""I1's other half: background work the user did not start outlives their Esc."""

from __future__ import annotations

from harness.checks import CheckFailed
from harness.scenario import ScenarioContext, scenario
from harness.target import AgentSettings, Capability
from scenarios._steps import connection_of, stream_held

MEMORY = "header=x-agent-purpose:memory,hold-before=2,gate=memory"


@scenario(
    id="background.survives-esc",
    title="Esc on a turn leaves the previous turn's memory extraction running",
    incident="I1",
    tags=("background", "esc"),
    requires=frozenset({Capability.CANCEL, Capability.BACKGROUND}),
    catches=("background-tied-to-user-cancel",),
    settings=lambda tempo: AgentSettings(memory_extraction=True),
)
async def background_survives_esc(ctx: ScenarioContext) -> None:
    """Esc kills background work the user never started (memory lost, half-written)."""
    ctx.fault(MEMORY)
    ctx.fault("body-contains=second-question,hold-before=3,gate=main")
    session = await ctx.new_session()
    first = await ctx.submit(session, "Remember that I like tea.")
    ctx.checks.stop_reason(await ctx.outcome(first), "completed")
    await ctx.gate("memory").wait_reached(timeout=max(2.0, ctx.tempo(100)))
    second = await stream_held(ctx, session, "The second-question.", "main")
    await ctx.cancel(session)
    turn_conn = connection_of(ctx, "second-question")
    await ctx.checks.connection_closed_within(ctx.tempo(2), connection_id=turn_conn)
    ctx.checks.stop_reason(await ctx.outcome(second), "cancelled")
    await ctx.checks.background_survived("memory", release=["memory"])


@scenario(
    id="background.late-cancel",
    title="A cancel after the commit changes nothing and stops no background work",
    incident="I2",
    tags=("background", "late-cancel"),
    requires=frozenset({Capability.CANCEL, Capability.BACKGROUND, Capability.TRANSCRIPT}),
    catches=("background-tied-to-user-cancel",),
    settings=lambda tempo: AgentSettings(memory_extraction=True),
)
async def background_late_cancel(ctx: ScenarioContext) -> None:
    """A cancel that lands after commit undoes part of the turn or kills its follow-up work."""
    ctx.fault(MEMORY)
    session = await ctx.new_session()
    turn = await ctx.submit(session, "Quick one.")
    ctx.checks.stop_reason(await ctx.outcome(turn), "completed")
    committed = await ctx.transcript(session)
    await ctx.gate("memory").wait_reached(timeout=max(2.0, ctx.tempo(100)))
    ack, _ = await ctx.cancel(session)
    if ack.cancelled:
        raise CheckFailed("expected a cancel after the commit to answer cancelled=false")
    await ctx.checks.background_survived("memory", release=["memory"])
    await ctx.checks.no_ghost_turn(session, committed)
    await ctx.checks.next_turn_completes(session)
