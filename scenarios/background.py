"""I1's other half: background work the user did not start outlives their Esc.

The background call (memory extraction after a completed turn) is found as the harness
sees it: side traffic over the history, carrying the earlier prompt, that is not a turn's
main call. No header or name of the agent's is needed.
"""

from __future__ import annotations

from harness.checks import CheckFailed
from harness.context import ScenarioContext
from harness.faults import hold, side_of
from harness.scenario import scenario
from harness.steps import connection_of, stream_held, wait_limit
from harness.target import AgentSettings, Capability


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
    tea, second = ctx.prompt("Remember that I like tea."), ctx.prompt("The second question.")
    ctx.fault(hold(before=2, gate="memory"), on=side_of(tea), times=1)
    ctx.fault(hold(before=3, gate="main"), on=second, times=1)
    session = await ctx.new_session()
    first = await ctx.submit(session, tea)
    ctx.checks.stop_reason(await ctx.outcome(first), "completed")
    await ctx.gate("memory").wait_reached(timeout=wait_limit(ctx))
    turn = await stream_held(ctx, session, second, "main")
    await ctx.cancel(session)
    turn_conn = connection_of(ctx, second)
    await ctx.checks.connection_closed_within(ctx.tempo(2), connection_id=turn_conn)
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")
    await ctx.checks.background_survived(tea, release=["memory"])


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
    quick = ctx.prompt("Quick one.")
    ctx.fault(hold(before=2, gate="memory"), on=side_of(quick), times=1)
    session = await ctx.new_session()
    turn = await ctx.submit(session, quick)
    out = await ctx.outcome(turn)
    ctx.checks.stop_reason(out, "completed")
    committed = await ctx.transcript(session)
    await ctx.gate("memory").wait_reached(timeout=wait_limit(ctx))
    ack, _ = await ctx.cancel(session)
    if ack.cancelled:
        raise CheckFailed("expected a cancel after the commit to answer cancelled=false")
    await ctx.checks.background_survived(quick, release=["memory"])
    await ctx.settle(5, "a late cancel has time to do damage")
    after = await ctx.transcript(session)
    if after != committed:
        raise CheckFailed(
            f"expected a cancel after the commit to change nothing in {session}; it changed "
            "the committed turn"
        )
    await ctx.checks.next_turn_completes(session)
