"""I2: the ghost turn after a timeout; deadlines and stale streams."""

from __future__ import annotations

from harness.context import ScenarioContext
from harness.faults import hang_after, hold
from harness.scenario import scenario
from harness.steps import connection_of, state_of, stream_held
from harness.target import AgentSettings, Capability


@scenario(
    id="timeout.no-ghost-turn",
    title="A timed-out turn never commits, even when the provider finishes late",
    incident="I2",
    tags=("timeout", "ghost-turn"),
    requires=frozenset({Capability.TIMEOUT, Capability.TRANSCRIPT}),
    catches=("commit-after-timeout",),
    settings=lambda tempo: AgentSettings(turn_timeout=tempo(5)),
)
async def timeout_no_ghost_turn(ctx: ScenarioContext) -> None:
    """The caller is told `timeout`, then the abandoned worker commits into the session."""
    slow = ctx.prompt("Take your time.")
    ctx.fault(hold(before=3, gate="late"), on=slow, times=1)
    session = await ctx.new_session()
    before = await state_of(ctx, session)
    turn = await ctx.submit(session, slow)
    out = await ctx.outcome(turn)
    ctx.checks.stop_reason(out, "timeout")
    await ctx.checks.no_ghost_turn(session, before, out, release=["late"])
    await ctx.checks.next_turn_completes(session)


@scenario(
    id="timeout.stop-reasons",
    title="Cancel and timeout end differently, and both close the connection",
    incident="I2",
    tags=("timeout", "stop-reason"),
    requires=frozenset({Capability.TIMEOUT, Capability.CANCEL}),
    catches=("commit-after-timeout",),
    settings=lambda tempo: AgentSettings(turn_timeout=tempo(8)),
)
async def timeout_stop_reasons(ctx: ScenarioContext) -> None:
    """Timeouts reported as cancels (or the reverse), or a timeout that leaves work running."""
    first, second = ctx.prompt("Cancel me."), ctx.prompt("Let me time out.")
    ctx.fault(hold(before=3, gate="first"), on=first, times=1)
    ctx.fault(hold(before=3, gate="second"), on=second, times=1)
    session = await ctx.new_session()
    before = await state_of(ctx, session)
    cancelled = await stream_held(ctx, session, first, "first")
    await ctx.cancel(session)
    ctx.checks.stop_reason(await ctx.outcome(cancelled), "cancelled")
    timed_out = await stream_held(ctx, session, second, "second")
    out = await ctx.outcome(timed_out)
    ctx.checks.stop_reason(out, "timeout")
    # The runtime cancels the work before it reports the timeout (I2): by the time the caller
    # hears it, the held call is closed. Measured from the report, not the nominal deadline:
    # on a loaded machine the agent's own timer may fire late, which is no fault of the agent.
    await ctx.checks.connection_closed_within(
        ctx.tempo(4), after_ns=ctx.ended_at[out.turn_id], connection_id=connection_of(ctx, second)
    )
    await ctx.checks.no_ghost_turn(session, before, out, release=["first", "second"])


@scenario(
    id="timeout.stale-stream",
    title="A provider that goes silent with no cancel ends by the stale timeout",
    incident="I2",
    tags=("timeout", "stale"),
    requires=frozenset({Capability.STALE_TIMEOUT}),
    catches=("stale-timeout-ignored",),
    settings=lambda tempo: AgentSettings(stale_timeout=tempo(5), max_retries=0),
)
async def timeout_stale_stream(ctx: ScenarioContext) -> None:
    """No byte arrives and nobody cancels: the agent hangs forever instead of giving up."""
    lonely = ctx.prompt("Anyone there?")
    ctx.fault(hang_after(3), on=lonely)
    session = await ctx.new_session()
    before = await state_of(ctx, session)
    turn = await ctx.submit(session, lonely)
    out = await ctx.outcome(turn, timeout=max(2.0, ctx.tempo(60)))
    ctx.checks.stop_reason(out, "error")
    silent_since = ctx.provider.ledger.requests()[0].event_ns[-1]  # the last byte it got
    await ctx.checks.connection_closed_within(ctx.tempo(30), after_ns=silent_since)
    await ctx.checks.no_ghost_turn(session, before, out)
