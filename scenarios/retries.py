"""I5: the retry storm after our own forced close, and retries that must still happen."""

from __future__ import annotations

from harness.context import ScenarioContext
from harness.faults import hold, http_error, reset_after
from harness.prompts import Prompt
from harness.scenario import Tempo, scenario
from harness.steps import agent_backing_off, stream_held
from harness.target import AgentSettings, Capability

CANCEL = frozenset({Capability.CANCEL})


def _retrying(tempo: Tempo) -> AgentSettings:
    return AgentSettings(max_retries=2, backoff_base=tempo(2), backoff_max=tempo(40))


def _slow_500(ctx: ScenarioContext, prompt: Prompt) -> None:
    """The prompt's first main call fails with a 500 asking for a long back-off; a retry that
    comes anyway, early, is held before its headers (so a cancel still has a stream to close)."""
    retry_after_ms = round(ctx.tempo(15) * 1000)
    ctx.fault(http_error(500, retry_after_ms=retry_after_ms), on=prompt, times=1)
    ctx.fault(hold(before="headers", gate="retry"), on=prompt, times=1)


@scenario(
    id="retry.forced-close-streaming",
    title="Our own forced close of a stream is never retried",
    incident="I5",
    tags=("retry", "forced-close", "streaming"),
    requires=CANCEL,
    catches=("retry-after-forced-close",),
    settings=_retrying,
)
async def retry_forced_close_streaming(ctx: ScenarioContext) -> None:
    """The interrupt's own close is retried as a network error and the agent hangs on it."""
    interrupted = ctx.prompt("Stream, then get interrupted.")
    ctx.fault(hold(before=4, gate="main"), on=interrupted, times=1)
    session = await ctx.new_session()
    turn = await stream_held(ctx, session, interrupted, "main")
    await ctx.cancel(session)
    await ctx.checks.connection_closed_within(ctx.tempo(2))
    await ctx.checks.no_request_after(ctx.tempo(20))
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")


@scenario(
    id="retry.forced-close-non-streaming",
    title="Our own forced close of a plain JSON request is never retried",
    incident="I5",
    tags=("retry", "forced-close", "non-streaming"),
    requires=CANCEL | {Capability.RETRIES},
    catches=("retry-after-forced-close",),
    settings=lambda tempo: AgentSettings(
        max_retries=2, backoff_base=tempo(2), backoff_max=tempo(40), stream=False
    ),
)
async def retry_forced_close_non_streaming(ctx: ScenarioContext) -> None:
    """Same as the streaming case for a request waiting on its JSON body."""
    plain = ctx.prompt("Answer in one go.")
    ctx.fault(hold(before=1, gate="main"), on=plain, times=1)  # headers sent, body held
    session = await ctx.new_session()
    turn = await stream_held(ctx, session, plain, "main")
    await ctx.cancel(session)
    await ctx.checks.connection_closed_within(ctx.tempo(2))
    await ctx.checks.no_request_after(ctx.tempo(20))
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")


@scenario(
    id="retry.genuine-drop-retried",
    title="A genuine mid-stream drop (no cancel) is retried exactly as configured",
    incident="I5",
    tags=("retry", "network"),
    requires=frozenset({Capability.RETRIES, Capability.STREAM_RETRIES}),
    catches=("drop-treated-as-cancel",),
    settings=lambda tempo: AgentSettings(max_retries=2, backoff_base=tempo(1)),
)
async def retry_genuine_drop(ctx: ScenarioContext) -> None:
    """The fix for I5 over-reaches: real network errors are no longer retried."""
    flaky = ctx.prompt("Survive a flaky network.")
    ctx.fault(reset_after(3), on=flaky, times=1)
    session = await ctx.new_session()
    turn = await ctx.submit(session, flaky)
    ctx.checks.stop_reason(await ctx.outcome(turn), "completed")
    await ctx.checks.retries(1, prompt=flaky)


@scenario(
    id="retry.cancel-during-backoff",
    title="Esc during a retry back-off sends no further request",
    incident="I5",
    tags=("retry", "backoff"),
    requires=CANCEL,
    catches=("backoff-ignores-cancel", "retry-after-forced-close"),
    settings=_retrying,
)
async def retry_cancel_during_backoff(ctx: ScenarioContext) -> None:
    """The back-off sleep ends after the cancel and a request goes out anyway."""
    later = ctx.prompt("Try again later.")
    _slow_500(ctx, later)
    session = await ctx.new_session()
    turn = await ctx.submit(session, later)
    await agent_backing_off(ctx, turn, later, ctx.submits[-1])
    await ctx.cancel(session)
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")
    await ctx.checks.no_request_after(ctx.tempo(30))


@scenario(
    id="retry.stale-worker",
    title="A worker outliving its cancelled turn does not retry into the next turn",
    incident="I5",
    tags=("retry", "next-turn"),
    requires=CANCEL,
    catches=("turn-scoped-interrupt-flag",),
    settings=_retrying,
)
async def retry_stale_worker(ctx: ScenarioContext) -> None:
    """The interrupt flag is per turn; the next turn clears it and the old worker retries."""
    first, second = ctx.prompt("First, failing."), ctx.prompt("The second question.")
    _slow_500(ctx, first)
    ctx.fault(hold(before=3, gate="next"), on=second, times=1)
    session = await ctx.new_session()
    failing = await ctx.submit(session, first)
    await agent_backing_off(ctx, failing, first, ctx.submits[-1])
    await ctx.cancel(session)
    ctx.checks.stop_reason(await ctx.outcome(failing), "cancelled")
    following = await stream_held(ctx, session, second, "next")
    await ctx.checks.retries(0, prompt=first, window=ctx.tempo(30))
    await ctx.release("next")
    ctx.checks.stop_reason(await ctx.outcome(following), "completed")
