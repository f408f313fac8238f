"""I2: the ghost turn after a timeout; deadlines and stale streams."""

from __future__ import annotations

from harness.scenario import ScenarioContext, scenario
from harness.target import AgentSettings, Capability
from scenarios._steps import TURN, stream_held

TIMEOUT_AND_STATE = frozenset({Capability.TIMEOUT, Capability.TRANSCRIPT})


@scenario(
    id="timeout.no-ghost-turn",
    title="A timed-out turn never commits, even when the provider finishes late",
    incident="I2",
    tags=("timeout", "ghost-turn"),
    requires=TIMEOUT_AND_STATE,
    catches=("commit-after-timeout",),
    settings=lambda tempo: AgentSettings(turn_timeout=tempo(5)),
)
async def timeout_no_ghost_turn(ctx: ScenarioContext) -> None:
    """The caller is told `timeout`, then the abandoned worker commits into the session."""
    ctx.fault(f"{TURN},hold-before=3,gate=late,times=1")
    session = await ctx.new_session()
    before = await ctx.transcript(session)
    turn = await ctx.submit(session, "Take your time.")
    ctx.checks.stop_reason(await ctx.outcome(turn), "timeout")
    await ctx.checks.no_ghost_turn(session, before, release=["late"])
    await ctx.checks.next_turn_completes(session)


@scenario(
    id="timeout.stop-reasons",
    title="Cancel and timeout end differently, and both close the connection",
    incident="I2",
    tags=("timeout", "stop-reason"),
    requires=TIMEOUT_AND_STATE | {Capability.CANCEL},
    catches=("commit-after-timeout",),
    settings=lambda tempo: AgentSettings(turn_timeout=tempo(8)),
)
async def timeout_stop_reasons(ctx: ScenarioContext) -> None:
    """Timeouts reported as cancels (or the reverse), or a timeout that leaves work running."""
    ctx.fault(f"{TURN},hold-before=3,gate=first,times=1")
    ctx.fault(f"{TURN},hold-before=3,gate=second,times=1")
    session = await ctx.new_session()
    before = await ctx.transcript(session)
    cancelled = await stream_held(ctx, session, "Cancel me.", "first")
    await ctx.cancel(session)
    ctx.checks.stop_reason(await ctx.outcome(cancelled), "cancelled")
    timed_out = await stream_held(ctx, session, "Let me time out.", "second")
    deadline = ctx.submits[-1] + int((ctx.settings.turn_timeout or 0) * 1e9)
    ctx.checks.stop_reason(await ctx.outcome(timed_out), "timeout")
    await ctx.checks.connection_closed_within(ctx.tempo(4), after_ns=deadline)
    await ctx.checks.no_ghost_turn(session, before, release=["first", "second"])


@scenario(
    id="timeout.stale-stream",
    title="A provider that goes silent with no cancel ends by the stale timeout",
    incident="I2",
    tags=("timeout", "stale"),
    requires=frozenset({Capability.STALE_TIMEOUT, Capability.TRANSCRIPT}),
    catches=("stale-timeout-ignored",),
    settings=lambda tempo: AgentSettings(stale_timeout=tempo(5), max_retries=0),
)
async def timeout_stale_stream(ctx: ScenarioContext) -> None:
    """No byte arrives and nobody cancels: the agent hangs forever instead of giving up."""
    ctx.fault(f"{TURN},hang-after=3")
    session = await ctx.new_session()
    before = await ctx.transcript(session)
    turn = await ctx.submit(session, "Anyone there?")
    ctx.checks.stop_reason(await ctx.outcome(turn, timeout=max(2.0, ctx.tempo(60))), "error")
    silent_since = ctx.provider.ledger.requests()[0].event_ns[-1]  # the last byte it got
    await ctx.checks.connection_closed_within(ctx.tempo(30), after_ns=silent_since)
    await ctx.checks.no_ghost_turn(session, before)
