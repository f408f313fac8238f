"""The whole-example contracts, checked once every turn has ended (see `judge.Judge.end`).

Each is one contract a user would notice: no request after a cancel (our own close is never
retried, a back-off never outlives the cancel), a stopped turn never recorded as done and a
done turn recorded, one terminal event per stream, nothing of a cancelled ACP turn after
its answer, retries within the configured count and never before `retry-after`, no
orphan process, and the next turn in every session completes.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import anyio

from fake_providers import RequestRecord
from fake_providers.roles import Role
from harness.checks import STOPPED_MARKS, CheckFailed, ms, requests_story, wait_quietly
from harness.context import ScenarioContext
from harness.explore.expect import max_retries
from harness.explore.schedule import Fault, FaultKind, Profile, session_name
from harness.explore.trace import STOPPED, Trace, TurnTrace
from harness.processes import marked_processes
from harness.target import (
    TERMINAL_EVENT_KINDS,
    Capability,
    StreamLog,
    Submission,
    Transcript,
    TranscriptEntry,
)

CLOCK_SLACK_NS = 2_000_000  # timer rounding on the agent's side


class Contracts:
    """The end-of-example checks over one `Trace`."""

    def __init__(self, ctx: ScenarioContext, trace: Trace) -> None:
        self.ctx, self.trace = ctx, trace

    def _stopped(self) -> list[TurnTrace]:
        return [
            t
            for t in self.trace.turns.values()
            if t.outcome is not None and t.outcome.stop_reason in STOPPED
        ]

    async def quiet_after_cancels(self) -> None:
        """No model call of a cancelled turn starts after its cancel (after the answer plus
        the close bound when it was mid-flight; at once when it was held or backing off),
        watched past any back-off it was in. A turn cancelled while queued is never sent."""
        ctx, ledger = self.ctx, self.ctx.provider.ledger
        bound = ctx.checks.bound(ctx.tempo(2))
        since: dict[int, int] = {}
        until = time.monotonic_ns()
        for turn in self.trace.turns.values():
            out = turn.outcome
            if turn.targeted_ns is None or out is None or out.stop_reason == "completed":
                continue
            if turn.cancelled_queued and out.stop_reason == "cancelled":
                sent = self.trace.main_requests(turn)
                if sent:
                    raise CheckFailed(
                        f"expected t{turn.turn}, cancelled while queued, never to reach the "
                        f"model; {requests_story(sent, ctx.rel)}"
                    )
            start = turn.quiet_ns
            if start is None:
                start = (turn.ack_ns or turn.targeted_ns) + int(bound * 1e9)
            since[turn.turn] = start
            longest = max((r.fault.retry_after or 0 for r in turn.plan.requests), default=0)
            until = max(until, start + int(ctx.tempo(5 + longest) * 1e9))
        if not since:
            return

        def offending(_: object) -> tuple[TurnTrace, list[RequestRecord]] | None:
            for number, start in since.items():
                turn = self.trace.turns[number]
                late = [r for r in self.trace.main_requests(turn) if r.started_ns > start]
                if late:
                    return turn, late
            return None

        found = await wait_quietly(ledger, offending, (until - time.monotonic_ns()) / 1e9)
        if found is not None:
            turn, late = found
            assert turn.targeted_ns is not None
            how = "it was held or backing off then" if turn.quiet_ns else f"plus {ms(bound)}"
            failure = (
                f"expected no model call of t{turn.turn} after its cancel at "
                f"{ctx.rel(turn.targeted_ns)} ({how}): our own close is never retried and a "
                f"back-off ends with the cancel; saw {requests_story(late, ctx.rel)}"
            )
            if turn.quiet_ns is None:
                # Mid-flight: a call that began within the bound plus what the harness
                # stalled may have left before the agent could see the cancel: Indeterminate.
                acked = turn.ack_ns or turn.targeted_ns
                failure = ctx.stalls.judge_late(
                    acked, bound, [min(r.started_ns for r in late)], failure
                )
            raise CheckFailed(failure)

    async def recorded(self) -> None:
        """A stopped turn is never recorded as answered; a completed one is recorded."""
        if not self.ctx.has(Capability.TRANSCRIPT):
            return
        for index, session in self.trace.sessions.items():
            state = await self.ctx.transcript(session)
            for turn in self.trace.of_session(index):
                out = turn.outcome
                if out is None:
                    continue
                entries = _entries_of(state, turn)
                answered = [
                    e
                    for e in entries
                    if e.role == "assistant"
                    and e.finish_reason is not None
                    and e.finish_reason.lower() not in STOPPED_MARKS
                ]
                if out.stop_reason in STOPPED and answered:
                    raise CheckFailed(
                        f"expected t{turn.turn}, reported {out.stop_reason}, not to be recorded "
                        f"as answered; {session} holds an answer finishing "
                        f"{answered[0].finish_reason!r}: {answered[0].content[:60]!r}"
                    )
                said = any(e.role == "assistant" for e in entries)
                if out.stop_reason == "completed" and not said:
                    raise CheckFailed(
                        f"expected t{turn.turn}, reported completed, to be recorded in "
                        f"{session}; it holds no answer of it ({len(state.entries)} entries)"
                    )

    async def streams(self) -> None:
        """Each turn's own stream: exactly one terminal event, the outcome's, then closed."""
        if not self.ctx.has(Capability.STREAM_EVENTS):
            return
        for turn in self.trace.turns.values():
            if turn.sub is None or turn.outcome is None or turn.left:
                continue
            log = await self._stream_log(turn.sub)
            reason = turn.outcome.stop_reason
            expected = reason if reason in TERMINAL_EVENT_KINDS else "error"
            kinds = [e.kind for e in log.terminals]
            last = log.events[-1].kind if log.events else None
            if kinds != [expected] or not log.closed or last != expected:
                state = "closed" if log.closed else "still open"
                raise CheckFailed(
                    f"expected t{turn.turn}'s stream {turn.sub.stream_id} to end with exactly "
                    f"one {expected!r} event and close; it delivered terminal events {kinds}, "
                    f"last {last!r}, and was {state}"
                )
            strays = [e for e in log.events if e.turn_id and e.turn_id != turn.sub.turn_id]
            if strays:
                raise CheckFailed(
                    f"expected t{turn.turn}'s stream to carry only its own events; it delivered "
                    f"{len(strays)} of turn {strays[0].turn_id}, the first a {strays[0].kind!r}"
                )

    async def _stream_log(self, sub: Submission) -> StreamLog:
        """The turn's stream once it closed, or as it is after a window that grows by the
        harness's measured stall (a loaded machine delays the close, never a bug)."""
        logs = [await self.ctx.target.stream_log(sub, 0)]

        async def closed(seconds: float) -> StreamLog | None:
            logs.append(await self.ctx.target.stream_log(sub, seconds))
            return logs[-1] if logs[-1].closed else None

        if not logs[0].closed:
            await self.ctx.stalls.watch(closed, self.ctx.tempo(10))
        return logs[-1]

    async def nothing_after_answer(self) -> None:
        """ACP: no update of a cancelled turn arrives after its prompt was answered."""
        watch = getattr(self.ctx.target, "watch_after_answer", None)
        if not callable(watch):
            return
        for turn in self._stopped():
            late = await watch(turn.sub, self.ctx.tempo(5))
            if late:
                raise CheckFailed(
                    f"expected no session/update of t{turn.turn} after its prompt answer "
                    f"(stopReason {turn.outcome.stop_reason if turn.outcome else '?'}); saw "
                    f"{len(late)}, the first at {self.ctx.rel(late[0].t_ns)}"
                )

    def retries(self) -> None:
        """No retry storm (at most the configured retries per call) and never a retry before
        the provider's `retry-after`."""
        if not (self.ctx.has(Capability.RETRIES) and self.trace.retries):
            return
        allowed = max_retries(self.trace.profile)
        for call in self.ctx.provider.ledger.logical_calls():
            if call.attempts[0].role is Role.MAIN and call.retries > allowed:
                raise CheckFailed(
                    f"expected at most {allowed} retries of a model call (as configured); saw "
                    f"{call.retries}: {requests_story(call.attempts, self.ctx.rel)}"
                )
        for turn in self.trace.turns.values():
            sent = self.trace.main_requests(turn)
            for (failed, retry), planned in zip(
                itertools.pairwise(sent), turn.plan.requests, strict=False
            ):
                asked = self._asked_wait(failed, planned.fault)
                if asked is None or failed.finished_ns is None:
                    continue
                # From when the error response began to go out (it is one write): the agent
                # cannot have seen it earlier, and a stall of the provider's loop after the
                # write would stamp its end late and make a correct wait look short.
                error_ns = failed.response_started_ns or failed.finished_ns
                if retry.started_ns < error_ns + int(asked * 1e9) - CLOCK_SLACK_NS:
                    gap = (retry.started_ns - error_ns) / 1e9
                    raise CheckFailed(
                        f"expected the agent to wait the {ms(asked)} the provider asked for "
                        f"(retry-after) before retrying t{turn.turn}'s request "
                        f"#{failed.ordinal}; the retry (request #{retry.ordinal}) came {ms(gap)} "
                        "after the error was sent"
                    )

    def _asked_wait(self, served: RequestRecord, fault: Fault) -> float | None:
        """The wait (s) the error served for this request asked for: a `retry-after` or a
        quota's reset, from the plan, when the request got that very error."""
        if fault.kind not in (FaultKind.HTTP, FaultKind.QUOTA) or fault.retry_after is None:
            return None
        if served.status != fault.status:
            return None  # the agent took another path; other contracts judge that
        return self.ctx.tempo(fault.retry_after)

    async def no_orphans(self) -> None:
        """No process the turns' tools started outlives the example (bounded poll)."""
        if not self.ctx.has(Capability.TOOLS):
            return
        tags = [
            t.tool_tag for t in self.trace.turns.values() if any(r.tool for r in t.plan.requests)
        ]
        grace = self.ctx.tempo(50)
        if await self.ctx.stalls.watch(
            lambda s: poll(lambda: not any(marked_processes(tag) for tag in tags), s, self.ctx),
            grace,
        ):
            return
        left = {tag: marked_processes(tag) for tag in tags}
        pids = ", ".join(str(p) for found in left.values() for p in found)
        raise CheckFailed(
            f"expected no process started by the turns' tools left running {ms(grace)} after "
            f"every turn ended; still running: pid {pids}"
        )

    async def next_turns(self) -> None:
        """In every session the next turn completes: nothing was poisoned."""
        lenient = self.trace.profile in (Profile.DEADLINE, Profile.STALE)
        for index, session in self.trace.sessions.items():
            if not lenient:
                await self.ctx.checks.next_turn_completes(session)
                continue
            sub = await self.ctx.submit(session, "Say hello.")
            out = await self.ctx.outcome(sub)
            if out.stop_reason == "cancelled":
                raise CheckFailed(
                    f"expected the next turn in session {session_name(index)} ({sub.turn_id}) "
                    "to run: nothing cancelled it; it ended 'cancelled'"
                )


async def poll(done: Callable[[], bool], seconds: float, ctx: ScenarioContext) -> bool:
    """Whether `done()` holds within `seconds`, looked at every half tempo unit (for what
    nothing signals, such as a process's exit)."""
    with anyio.move_on_after(seconds):
        while not done():  # noqa: ASYNC110 - no event to wait on
            await anyio.sleep(ctx.tempo(0.5))
        return True
    return done()


def _entries_of(state: Transcript, turn: TurnTrace) -> list[TranscriptEntry]:
    """The turn's entries: by turn id where the agent records them, else from its prompt's
    user message up to the next user message."""
    out = turn.outcome
    if out is not None and any(e.turn_id for e in state.entries):
        return [e for e in state.entries if e.turn_id == out.turn_id]
    entries = list(state.entries)
    starts = [i for i, e in enumerate(entries) if e.role == "user" and turn.prompt.tag in e.content]
    if not starts:
        return []
    rest = entries[starts[0] + 1 :]
    ends = [i for i, e in enumerate(rest) if e.role == "user"]
    return rest[: ends[0]] if ends else rest
