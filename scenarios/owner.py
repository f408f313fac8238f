"""I4: the cancel that clobbers the next turn: stream ownership and terminal events."""

from __future__ import annotations

import anyio

from harness.checks import CheckFailed
from harness.context import ScenarioContext
from harness.faults import hold
from harness.scenario import scenario
from harness.steps import connection_of, stream_held
from harness.target import Capability, StreamLog, Submission

STREAMS = frozenset({Capability.CANCEL, Capability.STREAM_IDS, Capability.STREAM_EVENTS})


async def _log(ctx: ScenarioContext, submission: Submission) -> StreamLog:
    return await ctx.target.stream_log(submission, max(2.0, ctx.tempo(20)))


@scenario(
    id="owner.stale-stream-id",
    title="A cancel naming a stale stream is refused and the new turn keeps running",
    incident="I4",
    tags=("owner", "stream-id"),
    requires=STREAMS,
    catches=("cancel-not-owner-scoped",),
)
async def owner_stale_stream_id(ctx: ScenarioContext) -> None:
    """The Stop click for an old stream lands after a new turn started and kills the new one."""
    old_q, new_q = ctx.prompt("The old turn."), ctx.prompt("The new turn.")
    ctx.fault(hold(before=3, gate="old"), on=old_q, times=1)
    ctx.fault(hold(before=3, gate="new"), on=new_q)
    session = await ctx.new_session()
    old = await stream_held(ctx, session, old_q, "old")
    await ctx.cancel(session, old.stream_id)
    ctx.checks.stop_reason(await ctx.outcome(old), "cancelled")
    new = await stream_held(ctx, session, new_q, "new")
    ack, _ = await ctx.cancel(session, old.stream_id)  # the stale click arrives late
    if ack.cancelled:
        raise CheckFailed(
            f"expected a cancel naming stale stream {old.stream_id} to answer cancelled=false; "
            f"it answered cancelled=true (stream {ack.stream_id or '?'})"
        )
    conn = ctx.provider.ledger.connection(connection_of(ctx, new_q))
    if not conn.open:
        raise CheckFailed(
            f"expected the new turn's stream to keep running after the stale cancel; conn#"
            f"{conn.id} was closed by the {conn.closed_by} at {ctx.rel(conn.closed_ns or 0)}"
        )
    await ctx.release("new")
    ctx.checks.stop_reason(await ctx.outcome(new), "completed")


@scenario(
    id="owner.terminal-event-once",
    title="A cancelled stream emits exactly one terminal `cancelled` event, then closes",
    incident="I4",
    tags=("owner", "stream-events"),
    requires=STREAMS,
    catches=("no-terminal-cancel-event",),
)
async def owner_terminal_event_once(ctx: ScenarioContext) -> None:
    """The UI waits forever for a stream that was cancelled but never told it so."""
    stop = ctx.prompt("Stream, then stop.")
    ctx.fault(hold(before=3, gate="main"), on=stop, times=1)
    session = await ctx.new_session()
    turn = await stream_held(ctx, session, stop, "main")
    await ctx.cancel(session, turn.stream_id)
    log = await _log(ctx, turn)
    kinds = [e.kind for e in log.terminals]
    if kinds != ["cancelled"] or not log.closed:
        raise CheckFailed(
            f"expected stream {turn.stream_id} to end with exactly one 'cancelled' event and "
            f"close; it delivered terminal events {kinds} and "
            f"{'closed' if log.closed else 'was still open'}"
        )
    if log.events[-1].kind != "cancelled":
        raise CheckFailed(f"expected nothing after the terminal event; got {log.events[-1].kind}")


@scenario(
    id="owner.no-cross-stream-events",
    title="No event of a new turn is ever delivered on an old turn's stream",
    incident="I4",
    tags=("owner", "stream-events"),
    requires=STREAMS,
    catches=("no-terminal-cancel-event",),
)
async def owner_no_cross_stream_events(ctx: ScenarioContext) -> None:
    """The old event source is left open and leaks the next turn's tokens into it."""
    old_q = ctx.prompt("The old turn.")
    ctx.fault(hold(before=3, gate="old"), on=old_q, times=1)
    session = await ctx.new_session()
    old = await stream_held(ctx, session, old_q, "old")
    logs: dict[str, StreamLog] = {}

    async def listen_to_old() -> None:  # a UI still subscribed to the old stream
        # Listens until the stream closes: at least 2 s, so a loaded machine's late close
        # notice still counts; a stream left open costs the case that long.
        logs["old"] = await ctx.target.stream_log(old, max(2.0, ctx.tempo(100)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(listen_to_old)
        await ctx.cancel(session, old.stream_id)
        ctx.checks.stop_reason(await ctx.outcome(old), "cancelled")
        new = await ctx.submit(session, "The next turn.")
        ctx.checks.stop_reason(await ctx.outcome(new), "completed")
    old_log, new_log = logs["old"], await _log(ctx, new)
    strays = [e for e in old_log.events if e.turn_id and e.turn_id != old.turn_id]
    if strays:
        raise CheckFailed(
            f"expected stream {old.stream_id} to carry only turn {old.turn_id}; it delivered "
            f"{len(strays)} event(s) of turn {strays[0].turn_id}, the first a {strays[0].kind!r}"
        )
    if not old_log.closed:
        raise CheckFailed(f"expected the old stream {old.stream_id} to be closed; it was open")
    foreign = [e for e in new_log.events if e.turn_id and e.turn_id != new.turn_id]
    if foreign:
        raise CheckFailed(f"the new stream delivered events of turn {foreign[0].turn_id}")
