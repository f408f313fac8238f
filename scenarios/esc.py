"""I1: the Esc that never reached the socket, in its several forms."""

from __future__ import annotations

from harness.scenario import ScenarioContext, scenario
from harness.target import AgentSettings, Capability
from scenarios._steps import TURN, connection_of, pace, stream_held

CANCEL = frozenset({Capability.CANCEL})
CANCEL_AND_STATE = frozenset({Capability.CANCEL, Capability.TRANSCRIPT})


@scenario(
    id="esc.mid-stream",
    title="Esc mid-stream closes the provider connection at once",
    incident="I1",
    tags=("esc", "streaming"),
    requires=CANCEL_AND_STATE,
    catches=("provider-ignores-cancel",),
)
async def esc_mid_stream(ctx: ScenarioContext) -> None:
    """Esc stops the UI but the HTTP stream stays open and the model keeps writing."""
    ctx.fault(f"{TURN},{pace(ctx)},hold-before=4,gate=main,times=1")
    session = await ctx.new_session()
    before = await ctx.transcript(session)
    turn = await stream_held(ctx, session, "Tell me a long story.", "main")
    await ctx.cancel(session)
    await ctx.release("main")  # the provider goes on streaming as a real model would
    await ctx.checks.connection_closed_within(ctx.tempo(2))
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")
    await ctx.checks.no_bytes_after(ctx.tempo(2))
    await ctx.checks.no_ghost_turn(session, before)
    await ctx.checks.next_turn_completes(session)


@scenario(
    id="esc.provider-silent",
    title="Esc while the provider has gone quiet still closes the connection",
    incident="I1",
    tags=("esc", "streaming"),
    requires=CANCEL,
    catches=("provider-ignores-cancel", "cancel-checked-on-next-chunk"),
)
async def esc_provider_silent(ctx: ScenarioContext) -> None:
    """The agent only looks at the cancel when the next chunk arrives; none ever does."""
    # Held after the opening event (role / message_start / response.created): no text is
    # in flight, so "the next chunk" can only come from a provider that is now silent.
    ctx.fault(f"{TURN},hold-before=2,gate=main")
    session = await ctx.new_session()
    turn = await stream_held(ctx, session, "Think hard, then answer.", "main")
    await ctx.cancel(session)
    await ctx.checks.connection_closed_within(ctx.tempo(2))
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")


@scenario(
    id="esc.before-first-byte",
    title="Esc before the first byte closes the pending request",
    incident="I1",
    tags=("esc", "connect"),
    requires=CANCEL,
    catches=("provider-ignores-cancel", "cancel-checked-on-next-chunk"),
)
async def esc_before_first_byte(ctx: ScenarioContext) -> None:
    """The provider accepted the request but has sent no headers; Esc must not wait for them."""
    ctx.fault(f"{TURN},hold-before=headers,gate=main")
    session = await ctx.new_session()
    turn = await stream_held(ctx, session, "Hello?", "main")
    await ctx.cancel(session)
    await ctx.checks.connection_closed_within(ctx.tempo(2))
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")
    await ctx.checks.no_request_after(ctx.tempo(10))


@scenario(
    id="esc.during-compaction",
    title="Esc during inline context compaction cancels the compaction call too",
    incident="I1",
    tags=("esc", "compaction", "background"),
    requires=CANCEL_AND_STATE | {Capability.COMPACTION},
    catches=("provider-ignores-cancel",),
    settings=lambda tempo: AgentSettings(compaction_threshold_chars=200),
)
async def esc_during_compaction(ctx: ScenarioContext) -> None:
    """Compaction the user waits on is part of the turn; Esc leaves it summarising anyway."""
    session = await ctx.new_session()
    first = await ctx.submit(session, "Start a long conversation.")
    ctx.checks.stop_reason(await ctx.outcome(first), "completed")
    before = await ctx.transcript(session)
    ctx.fault("header=x-agent-purpose:compaction,hold-before=3,gate=compaction")
    turn = await stream_held(ctx, session, "And now?", "compaction")
    await ctx.cancel(session)
    await ctx.checks.connection_closed_within(ctx.tempo(2))
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")
    await ctx.checks.no_request_after(ctx.tempo(10))
    await ctx.checks.no_ghost_turn(session, before)


@scenario(
    id="esc.repeated",
    title="Three turns cancelled in a row each close their own connection",
    incident="I1",
    tags=("esc", "repeat"),
    requires=CANCEL_AND_STATE,
    catches=("provider-ignores-cancel", "cancel-checked-on-next-chunk"),
)
async def esc_repeated(ctx: ScenarioContext) -> None:
    """A cancel works once but leaves state behind that breaks the second or third."""
    for n in (1, 2, 3):
        ctx.fault(f"{TURN},hold-before={n + 1},gate=g{n},times=1")
    session = await ctx.new_session()
    before = await ctx.transcript(session)
    for n in (1, 2, 3):
        turn = await stream_held(ctx, session, f"Attempt {n}.", f"g{n}")
        await ctx.cancel(session)
        await ctx.checks.connection_closed_within(ctx.tempo(2))
        ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")
    await ctx.checks.no_ghost_turn(session, before)
    await ctx.checks.next_turn_completes(session)


@scenario(
    id="esc.next-turn-clean",
    title="After Esc, the next turn's traffic is the only traffic",
    incident="I1",
    tags=("esc", "next-turn"),
    requires=CANCEL_AND_STATE,
    catches=("provider-ignores-cancel", "retry-after-forced-close"),
    settings=lambda tempo: AgentSettings(backoff_base=tempo(2), backoff_max=tempo(4)),
)
async def esc_next_turn_clean(ctx: ScenarioContext) -> None:
    """The cancelled turn keeps talking to the provider while the next turn runs."""
    ctx.fault(f"{TURN},hold-before=3,gate=main,times=1")
    session = await ctx.new_session()
    turn = await stream_held(ctx, session, "First question, cancelled.", "main")
    _, cancelled_at = await ctx.cancel(session)
    await ctx.checks.connection_closed_within(ctx.tempo(2))
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")
    await ctx.checks.no_request_after(ctx.tempo(10), after_ns=cancelled_at)
    await ctx.checks.next_turn_completes(session, "Second question.")
    first = connection_of(ctx, "First question")
    await ctx.checks.connection_closed_within(
        ctx.tempo(2), connection_id=first, after_ns=cancelled_at
    )
