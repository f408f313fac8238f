"""I1: the Esc that never reached the socket, in its several forms.

Every shape here leaves the provider silent (or still writing) after the cancel, so an agent
that does not close its connection stays open for the whole watch window: the signal of the
bug is unbounded, and the close bound can be as wide as a target needs without losing power.
"""

from __future__ import annotations

from harness.context import ScenarioContext
from harness.faults import hang_after, hold, pace, side_of
from harness.scenario import scenario
from harness.steps import (
    connection_of,
    consumed,
    leave,
    opening_events,
    state_of,
    stream_held,
)
from harness.target import AgentSettings, Capability

CANCEL = frozenset({Capability.CANCEL})


@scenario(
    id="esc.mid-stream",
    title="Esc mid-stream closes the provider connection at once",
    incident="I1",
    tags=("esc", "streaming"),
    requires=CANCEL,
    catches=("provider-ignores-cancel",),
)
async def esc_mid_stream(ctx: ScenarioContext) -> None:
    """Esc stops the UI but the HTTP stream stays open and the model keeps writing."""
    story = ctx.prompt("Tell me a long story.")
    # After the gate the provider writes as a real model would, then falls silent for good.
    ctx.fault(pace(ctx.tempo(1)) + hold(before=4, gate="main") + hang_after(40), on=story, times=1)
    session = await ctx.new_session()
    before = await state_of(ctx, session)
    turn = await stream_held(ctx, session, story, "main")
    await ctx.cancel(session)
    await ctx.release("main")
    await ctx.checks.connection_closed_within(ctx.tempo(2))
    out = await ctx.outcome(turn)
    ctx.checks.stop_reason(out, "cancelled")
    await ctx.checks.no_bytes_after(ctx.tempo(2))
    await ctx.checks.no_ghost_turn(session, before, out)
    await ctx.checks.next_turn_completes(session)


@scenario(
    id="esc.provider-silent",
    title="Esc while the provider has gone quiet still closes the connection",
    incident="I1",
    tags=("esc", "streaming", "stall"),
    requires=CANCEL,
    catches=("provider-ignores-cancel", "cancel-checked-on-next-chunk"),
    variants={"before-text": {"text_events": 0}, "after-text": {"text_events": 3}},
)
async def esc_provider_silent(ctx: ScenarioContext, *, text_events: int) -> None:
    """The agent only looks at the cancel when the next chunk arrives; none ever does."""
    # A few paced events, then silence forever. The cancel comes only once the agent has
    # read them, so no unread event can carry the cancel in: an agent that checks it on the
    # next chunk stays open for the whole watch window, every time.
    thought = ctx.prompt("Think hard, then answer.")
    silent = opening_events(ctx) + text_events
    ctx.fault(pace(ctx.tempo(1)) + hang_after(silent), on=thought, times=1)
    session = await ctx.new_session()
    turn = await ctx.submit(session, thought)
    await consumed(ctx, turn, thought, text_events)
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
    hello = ctx.prompt("Hello?")
    ctx.fault(hold(before="headers", gate="main"), on=hello, times=1)
    session = await ctx.new_session()
    turn = await stream_held(ctx, session, hello, "main")
    await ctx.cancel(session)
    await ctx.checks.connection_closed_within(ctx.tempo(2))
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")
    await ctx.checks.no_request_after(ctx.tempo(10))


@scenario(
    id="esc.during-compaction",
    title="Esc during inline context compaction cancels the compaction call too",
    incident="I1",
    tags=("esc", "compaction", "background"),
    requires=CANCEL | {Capability.COMPACTION},
    catches=("provider-ignores-cancel",),
    settings=lambda tempo: AgentSettings(compaction_threshold_chars=200),
)
async def esc_during_compaction(ctx: ScenarioContext) -> None:
    """Compaction the user waits on is part of the turn; Esc leaves it summarising anyway."""
    first = ctx.prompt("Start a long conversation.")
    session = await ctx.new_session()
    opening = await ctx.submit(session, first)
    ctx.checks.stop_reason(await ctx.outcome(opening), "completed")
    before = await state_of(ctx, session)
    # The compaction call summarises the history: side traffic that carries the first prompt.
    ctx.fault(hold(before=3, gate="compaction"), on=side_of(first), times=1)
    turn = await stream_held(ctx, session, "And now?", "compaction")
    (held,) = [r for r in ctx.provider.ledger.requests() if r.outcome is None]
    await ctx.cancel(session)
    await ctx.checks.connection_closed_within(ctx.tempo(2), connection_id=held.connection_id)
    out = await ctx.outcome(turn)
    ctx.checks.stop_reason(out, "cancelled")
    await ctx.checks.no_request_after(ctx.tempo(10))
    await ctx.checks.no_ghost_turn(session, before, out)


@scenario(
    id="esc.repeated",
    title="Three turns cancelled in a row each close their own connection",
    incident="I1",
    tags=("esc", "repeat"),
    requires=CANCEL,
    catches=("provider-ignores-cancel", "cancel-checked-on-next-chunk"),
)
async def esc_repeated(ctx: ScenarioContext) -> None:
    """A cancel works once but leaves state behind that breaks the second or third."""
    attempts = [ctx.prompt(f"Attempt {n}.") for n in (1, 2, 3)]
    for n, attempt in enumerate(attempts, start=1):
        ctx.fault(hold(before=n + 1, gate=f"g{n}"), on=attempt, times=1)
    session = await ctx.new_session()
    before = await state_of(ctx, session)
    out = None
    for n, attempt in enumerate(attempts, start=1):
        turn = await stream_held(ctx, session, attempt, f"g{n}")
        await ctx.cancel(session)
        await ctx.checks.connection_closed_within(ctx.tempo(2))
        out = await ctx.outcome(turn)
        ctx.checks.stop_reason(out, "cancelled")
    assert out is not None
    await ctx.checks.no_ghost_turn(session, before, out)
    await ctx.checks.next_turn_completes(session)


@scenario(
    id="esc.next-turn-clean",
    title="After Esc, the next turn's traffic is the only traffic",
    incident="I1",
    tags=("esc", "next-turn"),
    requires=CANCEL,
    catches=("provider-ignores-cancel", "retry-after-forced-close"),
    settings=lambda tempo: AgentSettings(backoff_base=tempo(2), backoff_max=tempo(4)),
)
async def esc_next_turn_clean(ctx: ScenarioContext) -> None:
    """The cancelled turn keeps talking to the provider while the next turn runs."""
    first = ctx.prompt("First question, cancelled.")
    ctx.fault(hold(before=3, gate="main"), on=first, times=1)
    session = await ctx.new_session()
    turn = await stream_held(ctx, session, first, "main")
    _, cancelled_at = await ctx.cancel(session)
    await ctx.checks.connection_closed_within(ctx.tempo(2))
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")
    await ctx.checks.no_request_after(ctx.tempo(10), after_ns=cancelled_at)
    await ctx.checks.next_turn_completes(session, "Second question.")
    await ctx.checks.connection_closed_within(
        ctx.tempo(2), connection_id=connection_of(ctx, first), after_ns=cancelled_at
    )


@scenario(
    id="esc.cancel-twice",
    title="A second Esc after the turn stopped is a no-op and the next turn runs",
    incident="I1",
    tags=("esc", "repeat", "idle"),
    requires=CANCEL,
    catches=("idle-cancel-poisons-next",),
)
async def esc_cancel_twice(ctx: ScenarioContext) -> None:
    """The impatient user presses Esc twice; the second press kills their next prompt."""
    story = ctx.prompt("Tell me a long story.")
    ctx.fault(hold(before=3, gate="main"), on=story, times=1)
    session = await ctx.new_session()
    turn = await stream_held(ctx, session, story, "main")
    await ctx.cancel(session)
    await ctx.checks.connection_closed_within(ctx.tempo(2))
    ctx.checks.stop_reason(await ctx.outcome(turn), "cancelled")
    await ctx.cancel(session)  # nothing runs any more
    await ctx.checks.no_request_after(ctx.tempo(5))
    await ctx.checks.next_turn_completes(session)


@scenario(
    id="esc.leave-early",
    title="A caller that stops reading makes the agent close the stream, not drain it",
    incident="I1",
    tags=("esc", "streaming", "leave"),
    requires=frozenset({Capability.LEAVE_EARLY}),
    catches=("drain-on-leave",),
)
async def esc_leave_early(ctx: ScenarioContext) -> None:
    """Breaking out of the stream iterator leaves the SDK reading the rest in the background."""
    story = ctx.prompt("Tell me a long story.")
    # The provider keeps writing after the caller leaves, then falls silent for good: an
    # agent that drains the stream instead of closing it stays open for the whole window.
    ctx.fault(pace(ctx.tempo(1)) + hang_after(opening_events(ctx) + 12), on=story, times=1)
    session = await ctx.new_session()
    turn = await ctx.submit(session, story)
    await consumed(ctx, turn, story, 3)
    await leave(ctx, turn)
    await ctx.checks.connection_closed_within(ctx.tempo(2))
    await ctx.checks.no_request_after(ctx.tempo(5))
