"""Reusable assertions over the socket ledger and what the target reports.

Each raises `CheckFailed` saying what was expected, what was seen, and when (ms relative to
the scenario start). Checks judge contracts a user of the agent would notice, from what the
harness sent and what it sees: which request is the turn's own model call is the provider's
classification (fake_providers.roles), never a header the agent chose to send. Side traffic
(titles, summaries, memory) that outlives a cancel is a finding of its own, a warning by
default, never the main call's failure. Waits are bounded; watch windows are multiples of
the tempo and end early on the first violation. The invariants run after every scenario
live in `harness.invariants`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, Protocol

import anyio

from fake_providers.ledger import Closer, ConnectionRecord, Ledger, Outcome, RequestRecord
from fake_providers.roles import Role
from fake_providers.signals import WaitTimeout
from harness.target import AgentSettings, Capability, Submission, Target, Transcript
from harness.target import Outcome as TurnOutcome
from harness.timeline import Timeline, describe_change, describe_request, quote
from harness.timing import LAG_FLOOR_NS, TOLERANCE_NS, Indeterminate, StallMonitor, clock_start

if TYPE_CHECKING:
    from fake_providers import FakeProvider
    from harness.context import Tracker
    from harness.prompts import Prompt
    from harness.scenario import Tempo

# Stop reasons an agent may record for a turn it was told to stop; anything else recorded
# for such a turn ("stop", "end_turn", "completed", ...) means it was kept as completed.
STOPPED_MARKS = frozenset({"cancelled", "canceled", "timeout", "interrupted", "aborted"})


class CheckFailed(AssertionError):
    """An expectation about the agent did not hold; the message has expected, seen and when."""


class CheckContext(Protocol):
    """What checks read of the scenario context (harness.context.ScenarioContext)."""

    provider: FakeProvider
    target: Target
    tempo: Tempo
    timeline: Timeline
    tracker: Tracker
    close_within: float | None
    ended_at: dict[str, int]
    submitted_at: dict[str, int]
    settled: dict[str, Transcript]
    warnings: list[str]  # findings shown with the verdict (harness.context.warn)
    stalls: StallMonitor  # the harness's and the agent's own stalls (harness/timing.py)
    submits: list[int]
    cancels: list[int]
    cancel_answers: list[int]  # monotonic ns when each cancel call returned
    settings: AgentSettings

    @property
    def last_cancel_ns(self) -> int | None: ...
    def rel(self, t_ns: int) -> str: ...
    def warn(self, finding: str) -> None: ...
    def has(self, capability: Capability) -> bool: ...
    def release(self, name: str = ...) -> Coroutine[Any, Any, None]: ...
    def submit(self, session: str, prompt: Prompt | str) -> Coroutine[Any, Any, Submission]: ...
    def outcome(
        self, submission: Submission, timeout: float | None = ...
    ) -> Coroutine[Any, Any, TurnOutcome]: ...
    def transcript(self, session: str) -> Coroutine[Any, Any, Transcript]: ...


def _check[**P, T](
    fn: Callable[Concatenate[Checks, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Checks, P], Coroutine[Any, Any, T]]:
    """Track each check's coroutine so the runner can report one that was never awaited."""

    @functools.wraps(fn)
    def start(self: Checks, /, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, T]:
        coro = fn(self, *args, **kwargs)
        self.ctx.tracker.add(f"ctx.checks.{fn.__name__}", coro)
        return coro

    return start


class Checks:
    """The checks a scenario calls as `await ctx.checks.NAME(...)`."""

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx

    @property
    def ledger(self) -> Ledger:
        return self.ctx.provider.ledger

    def bound(self, within: float) -> float:
        """The close bound for this target: the scenario's, widened to the target's own."""
        return max(within, self.ctx.close_within or 0.0)

    # ------------------------------------------------------------------ socket truth

    @_check
    async def connection_closed_within(
        self,
        within: float,
        *,
        after_ns: int | None = None,
        connection_id: int | None = None,
        slack: float | None = None,
    ) -> list[ConnectionRecord]:
        """The client closed every connection with a main call in flight at T within `within`.

        T defaults to the last cancel. The bound is widened to the target's `close_within`
        (across a process boundary a close takes longer). Waits up to bound + slack (slack:
        10 tempo), then judges: a connection still open then is a failure, whatever the load.
        """
        t, label = self._when(after_ns)
        within = self.bound(within)
        head = (
            f"expected the client to close the provider connection within "
            f"{ms(within)} of {label} at {self._rel(t)}"
        )
        conns = [
            c
            for c in self.ledger.connections()
            if (connection_id is None and _main_in_flight_at(c, t)) or c.id == connection_id
        ]
        if not conns:
            failure = (
                f"{head}; no main call was in flight at the provider then (wait for the stream "
                "first, e.g. `await stream_held(...)`)"
            )
            # A T the scenario computed (a deadline) can be overtaken by a stall: a response
            # that began after T, by no more than the stall measured since the step T was
            # computed from, is indeterminate (harness/timing.py).
            began = [
                r.started_ns
                for r in self.ledger.requests()
                if r.role is Role.MAIN and r.started_ns > t
            ]
            if after_ns is not None and began:
                since = clock_start(t, [*self.ctx.submits, *self.ctx.cancels])
                failure = self.ctx.stalls.judge_late(t, 0.0, [min(began)], failure, since_ns=since)
            raise CheckFailed(failure)
        self.ctx.timeline.mark("bound", t + int(within * 1e9), f"close bound: {ms(within)}")
        bound = within + (self.ctx.tempo(10) if slack is None else slack)
        # The watch window grows by the harness's own stalls (harness/timing.py).
        await self.ctx.stalls.watch(
            lambda s: wait_quietly(self.ledger, lambda _: all(not c.open for c in conns), s), bound
        )
        seen = time.monotonic_ns()
        limit = t + int(within * 1e9)
        bad = [
            c
            for c in conns
            if c.closed_by is not Closer.CLIENT or c.closed_ns is None or c.closed_ns > limit
        ]
        if bad:
            failure = f"{head}; " + "; ".join(self._close_story(c, t, label, seen) for c in bad)
            # Closed by the client, late only by a stall the harness measured: Indeterminate
            # (re-run); still open, or closed by the server: failed.
            failure = self.ctx.stalls.judge_late(
                t,
                within,
                [c.closed_ns if c.closed_by is Closer.CLIENT else None for c in bad],
                failure,
                since_ns=clock_start(t, [*self.ctx.submits, *self.ctx.cancels]),
            )
            raise CheckFailed(failure)
        return conns

    @_check
    async def no_request_after(
        self, window: float | None = None, *, after_ns: int | None = None
    ) -> None:
        """No model call of a turn reaches the provider in the `window` s after T.

        Default window 10 tempo. A side call (title, memory) begun after T is a finding of
        its own (a warning by default); probes (model listing, token counting) are ignored.
        """
        t, label = self._when(after_ns)
        window = self.ctx.tempo(10) if window is None else window

        def offending(ledger: Ledger) -> list[RequestRecord] | None:
            found = [r for r in ledger.requests_after(t) if r.role is Role.MAIN]
            return found or None

        found = await wait_quietly(self.ledger, offending, self._remaining(t, window))
        if found:
            failure = (
                f"expected no request to the provider in the {ms(window)} after {label} at "
                f"{self._rel(t)}; saw {len(found)}: {self._requests_story(found)}"
            )
            race = await cancel_race(self.ctx, found, t)
            if race is None:
                raise CheckFailed(failure)
            if not race.excused:
                raise Indeterminate(f"{failure}; but {race.reason}")
            self.ctx.timeline.stamp(race.reason)
        side = [r for r in self.ledger.requests_after(t) if r.role is Role.SIDE]
        if side:
            self.ctx.warn(
                f"side traffic after {label} at {self._rel(t)}: {self._requests_story(side)}"
            )

    @_check
    async def no_bytes_after(
        self,
        grace: float | None = None,
        *,
        after_ns: int | None = None,
        window: float | None = None,
    ) -> None:
        """The provider writes nothing of a main call later than T + grace (default 2 tempo).

        The grace is widened to the target's `close_within`. Watches until T + grace + window
        (window default 10 tempo).
        """
        t, label = self._when(after_ns)
        grace = self.bound(self.ctx.tempo(2) if grace is None else grace)
        window = self.ctx.tempo(10) if window is None else window
        cutoff = t + int(grace * 1e9)
        self.ctx.timeline.mark("bound", cutoff, f"last byte bound: {ms(grace)}")

        def main_bytes(ledger: Ledger) -> int:
            return sum(r.bytes_after(cutoff) for r in ledger.requests() if r.role is Role.MAIN)

        wrote = await wait_quietly(
            self.ledger, lambda ledger: main_bytes(ledger) > 0, self._remaining(t, grace + window)
        )
        if wrote:
            reqs = [
                r for r in self.ledger.requests() if r.role is Role.MAIN and r.events_after(cutoff)
            ]
            first = min(ns for r in reqs for ns in r.event_ns if ns > cutoff)
            failure = (
                f"expected no bytes written to the agent later than {ms(grace)} after {label} "
                f"at {self._rel(t)}; the provider was still writing at {self._rel(first)} "
                f"({main_bytes(self.ledger)} bytes so far, "
                f"{sum(r.events_after(t) for r in reqs)} events after {label}, on "
                + ", ".join(f"request #{r.ordinal} conn#{r.connection_id}" for r in reqs)
                + ")"
            )
            # Only streams in flight at T can be excused (harness/timing.py),
            # and only once the agent closed them; their last write must fit grace + stall.
            if all(r.started_ns <= t for r in reqs):
                await self.ctx.stalls.watch(
                    lambda s: wait_quietly(
                        self.ledger, lambda _: all(r.outcome is not None for r in reqs), s
                    ),
                    self._remaining(t, grace + window),
                )
                failure = self.ctx.stalls.judge_late(
                    t,
                    grace,
                    [r.event_ns[-1] if r.outcome is Outcome.CLIENT_CLOSED else None for r in reqs],
                    failure,
                )
            raise CheckFailed(failure)

    @_check
    async def retries(
        self,
        expected: int,
        *,
        call: int = 1,
        prompt: Prompt | None = None,
        window: float | None = None,
    ) -> None:
        """Exactly `expected` retries of the `call`-th logical main call (of `prompt`).

        Call it once the turn has ended; watches `window` (default 10 tempo) for late extras.
        """
        window = self.ctx.tempo(10) if window is None else window
        which = f"main call {call}" + (f" of prompt [{prompt.tag}]" if prompt else "")

        def attempts(ledger: Ledger) -> tuple[RequestRecord, ...]:
            calls = [
                c.attempts
                for c in ledger.logical_calls()
                if c.attempts[0].role is Role.MAIN
                and (prompt is None or c.attempts[0].prompt == prompt.tag)
            ]
            return calls[call - 1] if len(calls) >= call else ()

        await wait_quietly(self.ledger, lambda ledger: len(attempts(ledger)) > expected + 1, window)
        seen = attempts(self.ledger)
        if len(seen) != expected + 1:
            told = (
                f"saw {len(seen) - 1}: {self._requests_story(list(seen))}"
                if seen
                else f"the provider saw no {which} by {self._rel(time.monotonic_ns())}"
            )
            failure = f"expected exactly {expected} retries of logical {which}; {told}"
            # Extra retries that began after a cancel may have raced it (a starved agent's
            # back-off timer and the cancel, read in one wake-up): judged as such requests are.
            extra, t = list(seen[expected + 1 :]), self.ctx.last_cancel_ns
            if extra and t is not None and all(r.started_ns >= t for r in extra):
                race = await cancel_race(self.ctx, extra, t)
                if race is not None and not race.excused:
                    raise Indeterminate(f"{failure}; but {race.reason}")
            raise CheckFailed(failure)

    @_check
    async def background_survived(
        self,
        carrying: Prompt,
        *,
        release: Sequence[str] = (),
        timeout: float | None = None,
    ) -> RequestRecord:
        """A side call carrying `carrying` (the agent's background work) completed.

        With `release`, first watches 3 tempo for the cancel to reach the background call,
        then opens those gates; waits up to `timeout` (default 100 tempo) for it to end.
        """
        timeout = self.ctx.tempo(100) if timeout is None else timeout
        tag = carrying.tag.encode()

        def background(ledger: Ledger) -> list[RequestRecord]:
            return [r for r in ledger.requests() if r.role is Role.SIDE and tag in r.body]

        def ended(ledger: Ledger) -> bool:
            return any(r.outcome for r in background(ledger))

        if release:
            await wait_quietly(self.ledger, ended, self.ctx.tempo(3))  # watch window
        for name in release:
            await self.ctx.release(name)
        await wait_quietly(self.ledger, ended, timeout)
        found = background(self.ledger)
        done = [r for r in found if r.outcome is Outcome.COMPLETE]
        if done:
            return done[0]
        cancel = self.ctx.last_cancel_ns
        after = f" despite the cancel at {self._rel(cancel)}" if cancel is not None else ""
        head = f"expected the background call over [{carrying.tag}] to complete{after}"
        if not found:
            seen = f"none was made by {self._rel(time.monotonic_ns())}"
        else:
            seen = self._requests_story(found)
        raise CheckFailed(f"{head}; {seen}")

    # --------------------------------------------------------------- agent observations

    def stop_reason(self, outcome: TurnOutcome, expected: str | Collection[str]) -> None:
        """The turn ended with the expected stop reason (or one of them)."""
        wanted = {expected} if isinstance(expected, str) else set(expected)
        if outcome.stop_reason in wanted:
            return
        want = " or ".join(repr(w) for w in sorted(wanted))
        when = self.ctx.ended_at.get(outcome.turn_id)
        at = f" at {self._rel(when)}" if when is not None else ""
        detail = f"error: {outcome.error}" if outcome.error else f"text: {quote(outcome.text)}"
        failure = (
            f"expected turn {outcome.turn_id} to end {want}; it ended "
            f"{outcome.stop_reason!r}{at} ({detail})"
        )
        deadline = self.ctx.settings.turn_timeout
        began = self.ctx.submitted_at.get(outcome.turn_id)
        if "cancelled" in wanted and outcome.stop_reason == "timeout" and deadline and began:
            # The turn's own deadline raced the harness's cancel: did the cancel go out in time?
            cancel = min((c for c in self.ctx.cancels if c >= began), default=None)
            if cancel is None or cancel - began >= deadline * 1e9:
                sent = "never" if cancel is None else f"{ms((cancel - began) / 1e9)} after submit"
                raise Indeterminate(
                    f"{failure}; but the cancel went out {sent}, past the turn's "
                    f"{ms(deadline)} deadline (the harness measured "
                    f"{self.ctx.stalls.stalled_ns(began, cancel or began) / 1e6:.0f} ms of "
                    "stall meanwhile): this run could not stage the cancel in time"
                )
            if when is not None:
                failure = self.ctx.stalls.judge_deadline(began, when, deadline, failure)
        raise CheckFailed(failure)

    @_check
    async def no_ghost_turn(
        self,
        session: str,
        before: Transcript,
        turn: TurnOutcome,
        *,
        release: Sequence[str] = (),
        finish_within: float | None = None,
        settle: float | None = None,
    ) -> None:
        """Nothing changes the session's state after the agent said `turn` ended stopped.

        The contract (INCIDENTS.md I2): the state read when the cancelled or timed-out
        outcome was reported (`ctx.outcome` reads it) is final: it must still hold after the
        named gates open and every response ends (up to `finish_within`, default 100 tempo,
        then `settle`, default 5 tempo). What the agent recorded *before* it reported the
        outcome is its policy (the prompt, a turn marked cancelled) and is noted, not
        judged; the turn recorded as completed is judged, and so is any trace at all on a
        target that declares the `atomic-turns` contract.
        """
        if not self.ctx.has(Capability.TRANSCRIPT):
            return  # nothing to read: the socket checks stand alone
        head = f"expected the state of {session} to stay as it was when turn {turn.turn_id} ended"
        settled = self.ctx.settled.get(turn.turn_id)
        if settled is None:
            settled = await self.ctx.transcript(session)
        self._judge_policy(session, before, settled, turn)
        for name in release:
            await self.ctx.release(name)
        finish = self.ctx.tempo(100) if finish_within is None else finish_within
        await wait_quietly(
            self.ledger, lambda ledger: all(r.outcome for r in ledger.requests()), finish
        )
        await anyio.sleep(self.ctx.tempo(5) if settle is None else settle)  # watch window
        later = await self.ctx.transcript(session)
        if noted_late_user_text(
            self.ctx, session, f"turn {turn.turn_id}", turn.stop_reason, settled, later
        ):
            return
        if later != settled:
            raise CheckFailed(
                f"{head} {turn.stop_reason} (no ghost turn); at "
                f"{self._rel(time.monotonic_ns())}, after the provider was allowed to finish, "
                f"it had changed: {describe_change(settled, later)}"
            )

    def _judge_policy(
        self, session: str, before: Transcript, settled: Transcript, turn: TurnOutcome
    ) -> None:
        if settled == before:
            return
        change = describe_change(before, settled)
        kept = [
            e
            for e in settled.entries[len(before.entries) :]
            if e.role == "assistant"
            and (not e.turn_id or e.turn_id in self.ctx.settled)
            and e.finish_reason is not None
            and e.finish_reason.lower() not in STOPPED_MARKS
        ]
        if kept:
            raise CheckFailed(
                f"expected turn {turn.turn_id}, reported {turn.stop_reason}, not to be recorded "
                f"as completed; {session} holds an assistant answer finishing "
                f"{kept[0].finish_reason!r}: {change}"
            )
        if self.ctx.has(Capability.ATOMIC_TURNS):
            raise CheckFailed(
                f"expected turn {turn.turn_id}, reported {turn.stop_reason}, to leave no trace "
                f"in {session} (the target declares atomic-turns); it changed: {change}"
            )
        self.ctx.timeline.stamp(f"recorded before the {turn.stop_reason} outcome: {change}")

    @_check
    async def next_turn_completes(
        self, session: str, prompt: str = "Say hello.", *, timeout: float | None = None
    ) -> TurnOutcome:
        """A fresh turn completes normally, its own main call completed at the provider, and
        (with a transcript) the session grows by exactly that turn."""
        growth = self.ctx.has(Capability.TRANSCRIPT)
        before = await self.ctx.transcript(session) if growth else None
        sub = await self.ctx.submit(session, prompt)
        out = await self.ctx.outcome(sub, timeout)
        head = f"expected the next turn ({sub.turn_id}) to complete normally"
        if out.stop_reason != "completed":
            detail = f" (error: {out.error})" if out.error else ""
            at = self._rel(self.ctx.ended_at[out.turn_id])
            failure = f"{head}; it ended {out.stop_reason!r} at {at}{detail}"
            # Ran out of its own deadline while the harness or the agent was starved?
            deadline = self.ctx.settings.turn_timeout
            if out.stop_reason == "timeout" and deadline:
                ended = self.ctx.ended_at[out.turn_id]
                failure = self.ctx.stalls.judge_deadline(
                    self.ctx.submits[-1], ended, deadline, failure
                )
            raise CheckFailed(failure)
        mains = [r for r in self.ledger.requests() if r.role is Role.MAIN]
        if mains and mains[-1].outcome is None:
            # The agent has its answer; the provider (on its own thread) may not have
            # written down yet that the response is complete.
            last_call = mains[-1]
            await self.ctx.stalls.watch(
                lambda s: wait_quietly(self.ledger, lambda _: last_call.outcome, s),
                self.ctx.tempo(10),
            )
        if not mains or mains[-1].outcome is not Outcome.COMPLETE:
            last = self._requests_story(mains[-1:]) if mains else "none"
            raise CheckFailed(
                f"{head}: its main call should have been answered in full; the last main call "
                f"was {last}"
            )
        if before is None:
            return out
        after = await self.ctx.transcript(session)
        # A cancelled prompt left unanswered at the end may be folded into the next turn's
        # (Claude's ACP agent replays both as one user message): the rest must stay as it was.
        prefix = len(before.entries)
        while prefix and before.entries[prefix - 1].role == "user":
            prefix -= 1
        unanswered = before.entries[prefix:]
        kept = after.entries[:prefix] == before.entries[:prefix]
        new = after.entries[prefix:]
        roles = {e.role for e in new}
        foreign = [e for e in new if e.turn_id and e.turn_id != sub.turn_id and e not in unanswered]
        folded = {e.turn_id for e in unanswered} - {e.turn_id for e in before.entries[:prefix]}
        ids_ok = not (before.turn_ids or after.turn_ids) or after.turn_ids in (
            (*before.turn_ids, sub.turn_id),
            (*(i for i in before.turn_ids if i not in folded), sub.turn_id),
        )
        if not kept or foreign or not {"user", "assistant"} <= roles or not ids_ok:
            raise CheckFailed(
                f"{head}: the transcript should grow by exactly that turn; it changed: "
                f"{describe_change(before, after)}"
            )
        return out

    # -------------------------------------------------------------------------- stories

    def _when(self, after_ns: int | None) -> tuple[int, str]:
        if after_ns is not None:
            return after_ns, "T"
        if self.ctx.last_cancel_ns is None:
            raise ValueError("this check measures from the last cancel: call ctx.cancel() first")
        return self.ctx.last_cancel_ns, "the cancel"

    def _rel(self, t_ns: int) -> str:
        return self.ctx.rel(t_ns)

    @staticmethod
    def _remaining(t_ns: int, window: float) -> float:
        return max(0.0, (t_ns + window * 1e9 - time.monotonic_ns()) / 1e9)

    def _close_story(self, conn: ConnectionRecord, t: int, label: str, seen: int) -> str:
        events = sum(r.events_after(t) for r in conn.requests)
        after = f"{events} more events were written after {label}"
        if conn.closed_ns is None:
            note = ""
            for r in conn.requests:
                if r.outcome is not None and r.finished_ns is not None:
                    at = self._rel(r.finished_ns)
                    note = f" (its response ended {r.outcome.value} at {at})"
            return f"conn#{conn.id} was still open at {self._rel(seen)}{note} and {after}"
        by = conn.closed_by.value if conn.closed_by else "?"
        kind = conn.close_kind.value if conn.close_kind else "?"
        late = ms((conn.closed_ns - t) / 1e9)
        return (
            f"conn#{conn.id} was closed by the {by} ({kind}) only at {self._rel(conn.closed_ns)}, "
            f"{late} after {label}, and {after}"
        )

    def _requests_story(self, reqs: Sequence[RequestRecord]) -> str:
        return requests_story(reqs, self._rel)


@dataclass(frozen=True, slots=True)
class CancelRace:
    """Why requests the provider saw after a cancel may have left before the agent read it."""

    excused: bool  # True: what a correct agent does; False: only a stall explains it
    reason: str


async def cancel_race(
    ctx: CheckContext, found: Sequence[RequestRecord], t: int
) -> CancelRace | None:
    """Judge model calls that reached the provider after the harness sent the cancel at `t`.

    The harness knows when it sent a cancel and when the answer came back, not when the
    agent read it. A call the agent began in between may have left first:
    - a new call (not a retry) that the agent closed within the bound it has to close a
      stream after a cancel (as `connection_closed_within` allows) is what a correct agent
      does when the cancel lands as the next turn starts (a queue's hand-off): excused;
    - a retry of an attempt that had already failed before the cancel (a back-off timer
      and the cancel, read in one wake-up of a starved agent), begun before the answer,
      with a stall measured from the harness's previous step on: this run cannot judge it.
    A new call left open is never excused: the cancel's own turn has no next call to race
    (a queued turn it also cancels is closed, the first case).
    A retry of an attempt the agent closed after the cancel (its own forced close taken for
    a network error) is never excused. "Before the answer" allows `TOLERANCE_NS` (the
    provider's and the harness's stamps come from two threads), and beyond it only the
    stall measured between the answer and the request: a starved agent may write both in
    one wake-up. Anything later is a failure.
    """
    answered = min((a for a in ctx.cancel_answers if a >= t), default=None)
    if answered is None or not found:
        return None
    horizon = answered + TOLERANCE_NS
    if all(r.attempt == 0 and r.started_ns <= horizon for r in found):
        bound = max(ctx.tempo(2), ctx.close_within or 0.0)
        left = max(0.0, (t + bound * 1e9 - time.monotonic_ns()) / 1e9)
        ledger = ctx.provider.ledger
        await ctx.stalls.watch(
            lambda s: wait_quietly(
                ledger, lambda _: all(r.outcome is not None for r in found) or None, s
            ),
            left,
        )
        if all(r.outcome is Outcome.CLIENT_CLOSED for r in found):
            calls = ", ".join(f"#{r.ordinal}" for r in found)
            return CancelRace(
                True,
                f"request {calls} began before the agent answered the cancel at {ctx.rel(t)} "
                f"(a new call, which the agent closed within {ms(bound)} of the cancel): it "
                "left before the cancel was read",
            )
    earlier = {(r.call_id, r.attempt): r for r in ctx.provider.ledger.requests()}

    def raced_back_off(r: RequestRecord) -> bool:
        failed = earlier.get((r.call_id, r.attempt - 1))
        return failed is not None and failed.finished_ns is not None and failed.finished_ns < t

    def before_answer(r: RequestRecord) -> bool:
        # After the answer only by what a stall measured in between explains (the agent,
        # starved, wrote the answer and the request in one wake-up; or a loop stamped late).
        gap = r.started_ns - answered
        return gap <= TOLERANCE_NS or gap <= TOLERANCE_NS + ctx.stalls.stalled_ns(
            answered, r.started_ns
        )

    if not all(raced_back_off(r) and before_answer(r) for r in found):
        return None
    before = [s for s in (*ctx.submits, *ctx.cancels) if s < t]
    since = max(before, default=t)
    stalled = ctx.stalls.stalled_ns(since, max(answered, *(r.started_ns for r in found)))
    if stalled < LAG_FLOOR_NS:
        return None
    return CancelRace(
        False,
        f"it left before the agent answered the cancel, and the harness measured "
        f"{stalled / 1e6:.0f} ms of stall since its previous step "
        f"({ctx.stalls.describe(since, answered)}): this run cannot judge it",
    )


def requests_story(reqs: Sequence[RequestRecord], rel: Callable[[int], str]) -> str:
    """Up to five requests in a line: what, when, on which connection, how it ended."""
    parts = []
    for r in reqs[:5]:
        if r.outcome is None:
            end = f"still in flight after {r.events_sent} events"
        else:
            end = f"{r.outcome.value} at {rel(r.finished_ns or 0)} after {r.events_sent} events"
        parts.append(
            f"{describe_request(r)} at {rel(r.started_ns)} on conn#{r.connection_id}, {end}"
        )
    more = f" and {len(reqs) - 5} more" if len(reqs) > 5 else ""
    return "; ".join(parts) + more


def noted_late_user_text(
    ctx: CheckContext,
    session: str,
    turn: str,
    stop_reason: str,
    settled: Transcript,
    later: Transcript,
) -> bool:
    """The prompt, or a note that it was interrupted, written down a little after the stop
    was reported: no answer and no usage appeared, so no turn was committed (the agent's
    policy, unless the target declares `atomic-turns`). Noted as a finding; True if so.
    Shared by the catalogue's no-ghost check and explore's."""
    if later == settled or ctx.has(Capability.ATOMIC_TURNS):
        return False
    if not _only_user_entries_changed(settled, later):
        return False
    finding = (
        f"{session} recorded user text after {turn} was reported {stop_reason}: "
        f"{describe_change(settled, later)}"
    )
    ctx.timeline.stamp(f"finding: {finding}")
    ctx.warnings.append(finding)
    return True


def _only_user_entries_changed(before: Transcript, after: Transcript) -> bool:
    """Did only user entries change (no answer, tool output or usage added or altered)?"""
    others = [e for e in before.entries if e.role != "user"]
    return before.usage == after.usage and others == [e for e in after.entries if e.role != "user"]


async def wait_quietly[T](
    ledger: Ledger, predicate: Callable[[Ledger], T | None], timeout: float
) -> T | None:
    """`ledger.wait_for`, returning None instead of raising when the bound passes."""
    try:
        return await ledger.wait_for(predicate, max(timeout, 0.0), "a ledger condition")
    except WaitTimeout:
        return None


def _main_in_flight_at(conn: ConnectionRecord, t: int) -> bool:
    """A main call's response was under way on `conn` at `t`."""
    return any(
        r.role is Role.MAIN and r.started_ns <= t and (r.finished_ns is None or r.finished_ns > t)
        for r in conn.requests
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"
