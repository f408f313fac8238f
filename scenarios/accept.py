"""I3: the cancel lost between "accepted" and "running", idle cancels, queues, hand-offs.

The accepted-but-not-started state is forced every time, not by luck: the session is
kept busy by a first prompt held at a provider gate, so a second prompt is accepted and
must wait in the queue until the scenario lets the first one finish.
"""

from __future__ import annotations

from harness.checks import CheckFailed
from harness.context import ScenarioContext
from harness.faults import hold
from harness.prompts import Prompt
from harness.scenario import scenario
from harness.steps import never_requested, state_of, stream_held, turn_entries
from harness.target import Capability

QUEUEING = frozenset({Capability.CANCEL, Capability.QUEUE})


def _held_first(ctx: ScenarioContext) -> tuple[Prompt, Prompt]:
    """A first prompt whose main call is held at gate `first`, and a follow-up."""
    first = ctx.prompt("The first question.")
    ctx.fault(hold(before=3, gate="first"), on=first, times=1)
    return first, ctx.prompt("A follow-up question.")


@scenario(
    id="accept.cancel-before-start",
    title="A cancel right after accept, before the run starts, is never lost",
    incident="I3",
    tags=("accept", "queue"),
    requires=QUEUEING | {Capability.STREAM_IDS, Capability.TRANSCRIPT},
    catches=("lose-cancel-before-start",),
)
async def accept_cancel_before_start(ctx: ScenarioContext) -> None:
    """The cancel only looks at active runs; the accepted prompt runs to completion anyway."""
    first_q, follow_q = _held_first(ctx)
    session = await ctx.new_session()
    first = await stream_held(ctx, session, first_q, "first")
    follow = await ctx.submit(session, follow_q)
    ack, _ = await ctx.cancel(session, follow.stream_id)
    if not ack.cancelled:
        raise CheckFailed(
            f"expected the cancel of accepted stream {follow.stream_id} to answer "
            "cancelled=true; it answered cancelled=false (the cancel was lost)"
        )
    await ctx.release("first")
    ctx.checks.stop_reason(await ctx.outcome(first), "completed")
    ctx.checks.stop_reason(await ctx.outcome(follow), "cancelled")
    await ctx.checks.no_request_after(ctx.tempo(5), after_ns=ctx.ended_at[first.turn_id])
    never_requested(ctx, follow_q)
    entries = turn_entries(await ctx.transcript(session), follow.turn_id)
    finishes = [(e.role, e.finish_reason) for e in entries]
    if ("assistant", "cancelled") not in finishes or ("user", None) not in finishes:
        raise CheckFailed(
            f"expected the transcript to show turn {follow.turn_id} as a cancelled turn "
            f"(the user message and an assistant message finishing 'cancelled'); saw {finishes}"
        )


@scenario(
    id="accept.idle-cancel-then-prompt",
    title="A cancel with nothing running is a no-op and never poisons the next prompt",
    incident="I3",
    tags=("accept", "idle"),
    requires=frozenset({Capability.CANCEL}),
    catches=("idle-cancel-poisons-next",),
)
async def accept_idle_cancel(ctx: ScenarioContext) -> None:
    """An idle Esc is remembered and kills the next prompt the user sends."""
    session = await ctx.new_session()
    ack, _ = await ctx.cancel(session)
    if ack.cancelled:
        raise CheckFailed("expected an idle cancel to answer cancelled=false; it said true")
    await ctx.checks.next_turn_completes(session)


@scenario(
    id="accept.late-cancel-then-prompt",
    title="A cancel after the turn completed changes nothing and the next prompt runs",
    incident="I2",
    tags=("accept", "late-cancel"),
    requires=frozenset({Capability.CANCEL}),
    catches=("idle-cancel-poisons-next",),
)
async def accept_late_cancel(ctx: ScenarioContext) -> None:
    """Esc pressed just after the answer arrived wipes it, or kills the next prompt."""
    quick = ctx.prompt("Quick one.")
    session = await ctx.new_session()
    turn = await ctx.submit(session, quick)
    ctx.checks.stop_reason(await ctx.outcome(turn), "completed")
    committed = await state_of(ctx, session)
    await ctx.cancel(session)
    await ctx.checks.no_request_after(ctx.tempo(5))
    if await state_of(ctx, session) != committed:
        raise CheckFailed(f"expected a cancel after the turn ended to change nothing in {session}")
    await ctx.checks.next_turn_completes(session)


@scenario(
    id="accept.cancel-active-and-followup",
    title="Esc with a run active and a follow-up accepted stops both; the follow-up is dropped",
    incident="I3",
    tags=("accept", "queue"),
    requires=QUEUEING,
    catches=("queued-followup-survives-cancel",),
)
async def accept_cancel_active_and_followup(ctx: ScenarioContext) -> None:
    """The active run stops but the queued follow-up still runs, or is folded into the turn."""
    first_q, follow_q = _held_first(ctx)
    session = await ctx.new_session()
    first = await stream_held(ctx, session, first_q, "first")
    follow = await ctx.submit(session, follow_q)
    await ctx.cancel(session)
    await ctx.checks.connection_closed_within(ctx.tempo(2))
    ctx.checks.stop_reason(await ctx.outcome(first), "cancelled")
    ctx.checks.stop_reason(await ctx.outcome(follow), "cancelled")
    await ctx.checks.no_request_after(ctx.tempo(10))
    never_requested(ctx, follow_q)
    if ctx.has(Capability.TRANSCRIPT):
        transcript = await ctx.transcript(session)
        folded = [e for e in turn_entries(transcript, first.turn_id) if follow_q.tag in e.content]
        if folded:
            raise CheckFailed(
                f"expected the follow-up never to be folded into turn {first.turn_id}; "
                f"it holds {folded[0].role} {folded[0].content!r}"
            )


@scenario(
    id="accept.hand-off",
    title="When a run ends, the next queued one takes over with no idle gap",
    incident="I3",
    tags=("accept", "queue", "hand-off"),
    requires=QUEUEING,
    catches=("handoff-window",),
)
async def accept_hand_off(ctx: ScenarioContext) -> None:
    """Between one run and the next the session looks idle, so an Esc there is lost."""
    first_q, follow_q = _held_first(ctx)
    ctx.fault(hold(before=3, gate="follow"), on=follow_q)
    session = await ctx.new_session()
    first = await stream_held(ctx, session, first_q, "first")
    follow = await ctx.submit(session, follow_q)
    await ctx.release("first")
    ctx.checks.stop_reason(await ctx.outcome(first), "completed")
    ack, _ = await ctx.cancel(session)  # the very moment the first run has ended
    if not ack.cancelled:
        raise CheckFailed(
            "expected a cancel right after the first run ended to stop the queued follow-up; "
            "it answered cancelled=false (the session looked idle in the hand-off)"
        )
    ctx.checks.stop_reason(await ctx.outcome(follow), "cancelled")
