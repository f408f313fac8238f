"""I5: the retry storm after our own forced close, and retries that must still happen."""

from __future__ import annotations

from harness.scenario import ScenarioContext, Tempo, scenario
from harness.target import AgentSettings, Capability
from scenarios._steps import TURN, agent_backing_off, stream_held

RETRYING = frozenset({Capability.CANCEL, Capability.RETRIES})


def _retrying(tempo: Tempo) -> AgentSettings:
    return AgentSettings(max_retries=2, backoff_base=tempo(2), backoff_max=tempo(40))


def _slow_500(ctx: ScenarioContext) -> str:
    """The first turn request fails with a 500 asking for a long back-off."""
    return f"{TURN},status=500,retry-after-ms={round(ctx.tempo(15) * 1000)},times=1"


@scenario(
    id="retry.forced-close-streaming",
    title="Our own forced close of a stream is never retried",
    incident="I5",
    tags=("retry", "forced-close", "streaming"),
    requires=RETRYING,
    catches=("retry-after-forced-close",),
    settings=_retrying,
)
async def retry_forced_close_streaming(ctx: ScenarioContext) -> None:
    """The interrupt's own close is retried as a network error and the agent hangs on it."""
    ctx.fault(f"{TURN},hold-before=4,gate=main,times=1")
    session = await ctx.new_session()
    turn = await stream_held(ctx, session, "Stream, then get interrupted.", "main")
    await ctx.cancel(session)
    await ctx.checks.connection_closed_within(ctx.tempo(2))
    await ctx.checks.no_request_after(ctx.tempo(20))
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")


@scenario(
    id="retry.forced-close-non-streaming",
    title="Our own forced close of a plain JSON request is never retried",
    incident="I5",
    tags=("retry", "forced-close", "non-streaming"),
    requires=RETRYING,
    catches=("retry-after-forced-close",),
    settings=lambda tempo: AgentSettings(
        max_retries=2, backoff_base=tempo(2), backoff_max=tempo(40), stream=False
    ),
)
async def retry_forced_close_non_streaming(ctx: ScenarioContext) -> None:
    """Same as the streaming case for a request waiting on its JSON body."""
    ctx.fault(f"{TURN},hold-before=1,gate=main,times=1")  # headers sent, body held
    session = await ctx.new_session()
    turn = await stream_held(ctx, session, "Answer in one go.", "main")
    await ctx.cancel(session)
    await ctx.checks.connection_closed_within(ctx.tempo(2))
    await ctx.checks.no_request_after(ctx.tempo(20))
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")


@scenario(
    id="retry.genuine-drop-retried",
    title="A genuine mid-stream drop (no cancel) is retried exactly as configured",
    incident="I5",
    tags=("retry", "network"),
    requires=frozenset({Capability.RETRIES, Capability.TRANSCRIPT}),
    catches=("drop-treated-as-cancel",),
    settings=lambda tempo: AgentSettings(max_retries=2, backoff_base=tempo(1)),
)
async def retry_genuine_drop(ctx: ScenarioContext) -> None:
    """The fix for I5 over-reaches: real network errors are no longer retried."""
    ctx.fault(f"{TURN},reset-after=3,times=1")
    session = await ctx.new_session()
    turn = await ctx.submit(session, "Survive a flaky network.")
    ctx.checks.stop_reason(await ctx.outcome(turn), "completed")
    await ctx.checks.retries(1)


@scenario(
    id="retry.cancel-during-backoff",
    title="Esc during a retry back-off sends no further request",
    incident="I5",
    tags=("retry", "backoff"),
    requires=RETRYING,
    catches=("backoff-ignores-cancel", "retry-after-forced-close"),
    settings=_retrying,
)
async def retry_cancel_during_backoff(ctx: ScenarioContext) -> None:
    """The back-off sleep ends after the cancel and a request goes out anyway."""
    ctx.fault(_slow_500(ctx))
    session = await ctx.new_session()
    turn = await ctx.submit(session, "Try again later.")
    await agent_backing_off(ctx, ctx.submits[-1])
    await ctx.cancel(session)
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")
    await ctx.checks.no_request_after(ctx.tempo(30))


@scenario(
    id="retry.stale-worker",
    title="A worker outliving its cancelled turn does not retry into the next turn",
    incident="I5",
    tags=("retry", "next-turn"),
    requires=RETRYING | {Capability.TRANSCRIPT},
    catches=("turn-scoped-interrupt-flag",),
    settings=_retrying,
)
async def retry_stale_worker(ctx: ScenarioContext) -> None:
    """The interrupt flag is per turn; the next turn clears it and the old worker retries."""
    ctx.fault(_slow_500(ctx))
    ctx.fault("body-contains=second-question,hold-before=3,gate=next")
    session = await ctx.new_session()
    first = await ctx.submit(session, "First, failing.")
    await agent_backing_off(ctx, ctx.submits[-1])
    await ctx.cancel(session)
    ctx.checks.stop_reason(await ctx.outcome(first), "cancelled")
    second = await stream_held(ctx, session, "The second-question.", "next")
    await ctx.checks.retries(0, call=1, window=ctx.tempo(30))
    await ctx.release("next")
    ctx.checks.stop_reason(await ctx.outcome(second), "completed")
