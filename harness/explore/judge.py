"""The contracts checked after every step of a schedule, and once more at its end.

The general form of the catalogue's checks, judged from what the harness sent and sees
(the socket ledger, the target's front door) and reusing `harness.checks` and
`harness.invariants` where they fit. Each raises `CheckFailed` (expected, seen, when), or
`Indeterminate` when the harness could not tell in time: a bound missed only by as much as
the harness itself stalled (`ctx.stalls`, harness/timing.py), the way the catalogue's
checks judge it. Every watch window grows by the stall measured while it ran.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence

import anyio

from fake_providers import RequestRecord
from fake_providers.ledger import Closer
from fake_providers.records import Outcome as Ending
from harness import invariants
from harness.checks import CheckFailed, ms, noted_late_user_text, wait_quietly
from harness.context import ScenarioContext
from harness.explore.contracts import Contracts, poll
from harness.explore.schedule import Cancel, Profile, session_name
from harness.explore.trace import STOPPED, CancelRecord, Trace, TurnTrace
from harness.target import CancelAck, Capability, Outcome
from harness.timeline import describe_change, describe_request
from harness.timing import Indeterminate

type Releaser = Callable[[TurnTrace], Awaitable[None]]
MAX_WINDOWS = 4  # waits for a turn that keeps making progress, before it is indeterminate
# After a failed request, an agent whose retries the harness does not configure (no
# `retries` capability) waits as its own policy says before it tries again: the SDKs back
# off up to 8 s, gemini-cli from 5 s up to 30 s plus 30% jitter. Until this long without
# progress such a turn is in a pause, not stuck. A cancelled turn gets no such allowance.
OWN_BACKOFF_S = 45.0
FAILED_ENDS = frozenset({Ending.SERVER_CLOSED, Ending.SERVER_RESET, Ending.STREAM_ERROR})
ANY_OUTCOME = frozenset({"completed", "cancelled", "timeout", "error", "max_turns", "max_budget"})


class Judge:
    """Checks one example's contracts as the player goes (see the module docstring)."""

    def __init__(self, ctx: ScenarioContext, trace: Trace) -> None:
        self.ctx, self.trace = ctx, trace
        self.contracts = Contracts(ctx, trace)
        self.ghost_checked: set[int] = set()

    # ------------------------------------------------------------------------ outcomes

    def allowed(self, turn: TurnTrace) -> frozenset[str]:
        """How a correct agent may end the turn, given its plan and the cancels aimed at it."""
        if turn.left:
            return ANY_OUTCOME
        if turn.expect_cancelled:
            allowed = {"cancelled"}
        else:
            allowed = set(turn.route.outcomes)
            if turn.targeted_ns is not None:
                allowed.add("cancelled")
        if self.trace.profile is Profile.DEADLINE:
            allowed.add("timeout")
        return frozenset(allowed)

    async def outcome_of(self, turn: TurnTrace) -> Outcome:
        """Wait for the turn to end (bounded by its plan), then judge how it ended."""
        if turn.outcome is not None:
            return turn.outcome
        out = await self._until_ended(turn)
        turn.outcome = out
        self.trace.latest[turn.session] = turn
        self._judge(turn, out)
        if out.stop_reason in STOPPED and not turn.released:
            await self._tools_died_with(turn, out)
        return out

    async def _tools_died_with(self, turn: TurnTrace, out: Outcome) -> None:
        """A turn that stopped (its deadline, a cancel) while a tool of its was held takes
        the tool's whole process tree with it: the hold is still closed, so a survivor was
        abandoned, never a slow tool."""
        if not self.trace.tool_running(turn):
            return
        grace = self.ctx.tempo(50)
        if await self.ctx.stalls.watch(
            lambda s: poll(lambda: not self.trace.tool_running(turn), s, self.ctx), grace
        ):
            return
        pids = ", ".join(map(str, self.trace.tool_running(turn)))
        raise CheckFailed(
            f"expected t{turn.turn}'s tools to die with it when it ended {out.stop_reason} at "
            f"{self.ctx.rel(self._ended(out))}, whole process trees, within {ms(grace)}; "
            f"still running at {self.ctx.rel(time.monotonic_ns())}: pid {pids}"
        )

    async def _until_ended(self, turn: TurnTrace) -> Outcome:
        """Wait for the turn to end: a window from its plan, renewed while it still makes
        progress (requests, events, its tools), so a slow machine is not a failure. A turn
        that stands still for a whole window is stuck: that is the failure.

        The outcome is read in the same call that waits for it: a cancel drawn right after
        the turn's end (the hand-off to a queued run) must not be pushed out of that window
        by extra waits here."""
        assert turn.sub is not None
        planned = max(2.0, self.ctx.tempo(60 + turn.route.budget))
        began, seen = time.monotonic_ns(), self._progress(turn)
        for _ in range(MAX_WINDOWS):
            window = OWN_BACKOFF_S if self._in_own_backoff(turn) else planned
            try:
                return await self.ctx.outcome(turn.sub, window)
            except CheckFailed:
                pass  # still running after the window (the context stamped it)
            now = self._progress(turn)
            t_now = time.monotonic_ns()
            if now == seen and self.ctx.stalls.stalled_ns(t_now - int(window * 1e9), t_now) * 2 >= (
                window * 1e9
            ):
                raise Indeterminate(
                    f"t{turn.turn} made no progress in a window of {ms(window)}, but the harness "
                    f"was stalled for half of it or more "
                    f"({self.ctx.stalls.describe(t_now - int(window * 1e9), t_now)})"
                )
            if now == seen:
                self.ctx.timeline.stamp(f"t{turn.turn} still running, and stuck")
                raise CheckFailed(
                    f"expected t{turn.turn} ({turn.sub.turn_id}) to end: nothing held it; it "
                    f"was still running at {self.ctx.rel(time.monotonic_ns())}, "
                    f"{ms((time.monotonic_ns() - began) / 1e9)} after the harness began "
                    f"waiting, with no progress in the last {ms(window)}"
                )
            seen = now
        raise Indeterminate(
            f"t{turn.turn} was still making progress after {MAX_WINDOWS} windows of "
            f"{ms(window)}: too slow to judge on this machine"
        )

    def _in_own_backoff(self, turn: TurnTrace) -> bool:
        """The turn's latest request failed (an error status, or the provider dropped it),
        no cancel was aimed at the turn, and the agent retries by a policy of its own."""
        if self.trace.retries or turn.targeted_ns is not None or turn.expect_cancelled:
            return False
        mains = self.trace.main_requests(turn)
        last = mains[-1] if mains else None
        if last is None or last.outcome is None:
            return False
        return (last.status or 0) >= 400 or last.outcome in FAILED_ENDS

    def _progress(self, turn: TurnTrace) -> tuple[int, ...]:
        """What changes while the turn moves: its requests, their events and ends, tools."""
        mains = self.trace.main_requests(turn)
        ended = sum(1 for r in mains if r.outcome is not None)
        return (
            len(mains),
            sum(r.events_sent for r in mains),
            ended,
            len(self.trace.tool_running(turn)),
        )

    def _judge(self, turn: TurnTrace, out: Outcome) -> None:
        if out.stop_reason == "cancelled" and turn.targeted_ns is None and not turn.left:
            raise CheckFailed(
                f"expected t{turn.turn} ({out.turn_id}) to run its course: no cancel was aimed "
                f"at it while it ran; it ended 'cancelled' at {self.ctx.rel(self._ended(out))}"
            )
        allowed = self.allowed(turn)
        try:
            self.ctx.checks.stop_reason(out, allowed)
        except CheckFailed as exc:
            raise CheckFailed(f"{exc}; {self._why(turn)}") from None

    def _ended(self, out: Outcome) -> int:
        return self.ctx.ended_at.get(out.turn_id, time.monotonic_ns())

    def _why(self, turn: TurnTrace) -> str:
        if turn.expect_cancelled and turn.targeted_ns is not None:
            return (
                f"t{turn.turn} could not have ended by itself when the cancel came at "
                f"{self.ctx.rel(turn.targeted_ns)} (held at a gate, or queued behind a held turn)"
            )
        plan = "; ".join(r.describe() for r in turn.plan.requests)
        return f"with its requests ({plan}) a correct agent ends it that way"

    async def ended(self, turn: TurnTrace, within: float) -> bool:
        """Whether the turn ends within `within` seconds (then its end is judged)."""
        if turn.outcome is not None:
            return True
        assert turn.sub is not None
        try:
            await self.ctx.target.wait_outcome(turn.sub, max(within, 0.001))
        except TimeoutError:
            return False
        await self.outcome_of(turn)
        return True

    # ------------------------------------------------------------------------- cancels

    async def after_cancel(
        self,
        step: Cancel,
        t_ns: int,
        targets: Sequence[TurnTrace],
        pinned: Sequence[TurnTrace],
        acks: Sequence[CancelAck],
        watched: dict[int, list[RequestRecord]],
        tools: dict[int, list[int]],
    ) -> None:
        """The answer says what happened, the targets' streams close and their tools die,
        the others run on."""
        record = CancelRecord(
            step.session,
            t_ns,
            step.names,
            tuple(t.turn for t in targets),
            tuple(t.turn for t in pinned),
            tuple(acks),
        )
        self.trace.cancels.append(record)
        if self.ctx.has(Capability.STREAM_IDS):
            self._acks(step, targets, pinned, acks)
        bystanders = {
            u.turn: watched[u.turn]
            for u in self.trace.turns.values()
            if u not in targets
            and u.turn in watched
            and self.trace.pinned(u)
            and self.trace.held_now(u)
        }
        await self.closed_after(t_ns, targets, watched)
        await self.tools_killed(t_ns, tools)
        if bystanders:
            await self._untouched(step, t_ns, bystanders)

    def _acks(
        self,
        step: Cancel,
        targets: Sequence[TurnTrace],
        pinned: Sequence[TurnTrace],
        acks: Sequence[CancelAck],
    ) -> None:
        what = f"the cancel of session {session_name(step.session)}"
        if step.names is not None:
            what += f" naming t{step.names}'s stream"
        if pinned and not any(a.cancelled for a in acks):
            held = ", ".join(f"t{t.turn}" for t in pinned)
            raise CheckFailed(
                f"expected {what} to answer cancelled=true: {held} was running or queued and "
                "could not have ended by itself; it answered cancelled=false (the cancel was lost)"
            )
        if not targets and acks[0].cancelled:
            nothing = "that stream had ended" if step.names is not None else "nothing was running"
            raise CheckFailed(
                f"expected {what} to answer cancelled=false, {nothing}; it answered "
                f"cancelled=true (turn {acks[0].turn_id or '?'})"
            )

    async def closed_after(
        self, t_ns: int, targets: Sequence[TurnTrace], watched: dict[int, list[RequestRecord]]
    ) -> None:
        """Every request of the targets in flight at the cancel ends within the close bound."""
        ledger = self.ctx.provider.ledger
        requests = [r for t in targets for r in watched.get(t.turn, ())]
        if not requests:
            return
        bound = self.ctx.checks.bound(self.ctx.tempo(2))
        window = bound + self.ctx.tempo(10)

        def gone(r: RequestRecord) -> int | None:
            conn = ledger.connection(r.connection_id)
            found = [x for x in (conn.closed_ns, r.finished_ns) if x is not None]
            return min(found) if found else None

        left = (t_ns + window * 1e9 - time.monotonic_ns()) / 1e9
        # The window grows by the harness's own stalls, as the catalogue's checks do.
        await self.ctx.stalls.watch(
            lambda s: wait_quietly(ledger, lambda _: all(gone(r) for r in requests), s),
            max(left, 0.001),
        )
        for r in requests:
            ended = gone(r)
            if ended is None:
                raise CheckFailed(
                    f"expected the client to close the provider connection within {ms(bound)} "
                    f"of the cancel at {self.ctx.rel(t_ns)}; conn#{r.connection_id} "
                    f"({describe_request(r)}) was still open at "
                    f"{self.ctx.rel(time.monotonic_ns())} and {r.events_after(t_ns)} events were "
                    "written after the cancel"
                )
        late = [(r, ended) for r in requests if (ended := gone(r)) and ended > t_ns + bound * 1e9]
        if late:
            r, ended = late[0]
            stalled = self.ctx.stalls.stalled_ns(t_ns, ended)
            # A close that came, only late: with the provider and an in-process agent on one
            # loop of a loaded machine, the harness cannot tell a slow close from a stall it
            # measured only in part (a search at load 19 on 2 cores saw 58 ms unexplained).
            # Never a counterexample; a connection never closed is one (above).
            raise Indeterminate(
                f"conn#{r.connection_id} ({describe_request(r)}) ended "
                f"{ms((ended - t_ns) / 1e9)} after the cancel at {self.ctx.rel(t_ns)}, past the "
                f"{ms(bound)} bound; the harness measured {stalled / 1e6:.0f} ms of stall in "
                f"that span ({self.ctx.stalls.describe(t_ns, ended)}): a slow close on a loaded "
                "machine looks the same"
            )

    async def tools_killed(self, t_ns: int, running: dict[int, list[int]]) -> None:
        """The tools the cancelled turns were running die (they are held: an abandoned one
        would run on, so a survivor is an orphan, never a slow tool)."""
        turns = [self.trace.turns[n] for n, pids in running.items() if pids]
        if not turns:
            return
        grace = self.ctx.tempo(50)
        if await self.ctx.stalls.watch(
            lambda s: poll(lambda: not any(self.trace.tool_running(t) for t in turns), s, self.ctx),
            grace,
        ):
            return
        left = {t.turn: self.trace.tool_running(t) for t in turns}
        story = "; ".join(f"t{n}: pid {', '.join(map(str, p))}" for n, p in left.items() if p)
        raise CheckFailed(
            f"expected the cancel at {self.ctx.rel(t_ns)} to kill the tools its turns were "
            f"running, whole process trees, within {ms(grace)}; still running at "
            f"{self.ctx.rel(time.monotonic_ns())}: {story}"
        )

    async def _untouched(
        self, step: Cancel, t_ns: int, bystanders: dict[int, list[RequestRecord]]
    ) -> None:
        ledger = self.ctx.provider.ledger
        requests = [r for reqs in bystanders.values() for r in reqs]

        def touched(_: object) -> RequestRecord | None:
            for r in requests:
                conn = ledger.connection(r.connection_id)
                if conn.closed_by is Closer.CLIENT and (conn.closed_ns or 0) > t_ns:
                    return r
            return None

        hit = await wait_quietly(ledger, touched, self.ctx.tempo(2))
        if hit is None:
            return
        owner = next(n for n, reqs in bystanders.items() if hit in reqs)
        # A bystander that ended by itself meanwhile (an error of its own, say) closes its
        # connection as any ended turn does: not the cancel's doing. How it ended is judged
        # with its outcome; a bystander the cancel stopped ends 'cancelled' (or not at all).
        turn = self.trace.turns[owner]
        if turn.sub is not None:
            try:  # a peek: the outcome is judged (and stamped) when the player awaits it
                seen = await self.ctx.target.wait_outcome(turn.sub, self.ctx.tempo(2))
            except TimeoutError:
                pass
            else:
                if seen.stop_reason != "cancelled":
                    return
        named = f" naming t{step.names}" if step.names is not None else ""
        conn = ledger.connection(hit.connection_id)
        raise CheckFailed(
            f"expected the cancel of session {session_name(step.session)}{named} at "
            f"{self.ctx.rel(t_ns)} to leave t{owner} running (it was not aimed at it); the "
            f"client closed t{owner}'s conn#{conn.id} at {self.ctx.rel(conn.closed_ns or 0)}"
        )

    # ------------------------------------------------------------------- ghost turns

    async def session_settled(self, session: int, release: Releaser) -> None:
        """Before a fresh prompt: every earlier turn of the session has ended, and a stopped
        one left the state as it was when its outcome was reported (no ghost turn)."""
        for turn in self.trace.live(session):
            await self.outcome_of(turn)
        await self.ghost(session, release)

    async def ghost(self, session: int, release: Releaser) -> None:
        last = self.trace.latest.get(session)
        if last is None or last.outcome is None or last.turn in self.ghost_checked:
            return
        self.ghost_checked.add(last.turn)
        out = last.outcome
        if out.stop_reason not in STOPPED or not self.ctx.has(Capability.TRANSCRIPT):
            return
        settled = self.ctx.settled.get(out.turn_id)
        if settled is None:
            return
        turns = list(self.trace.of_session(session))
        for turn in turns:
            await release(turn)  # the provider finishes what it held, as a real model would
        ledger = self.ctx.provider.ledger
        mains = [r for t in turns for r in self.trace.main_requests(t)]
        await wait_quietly(ledger, lambda _: all(r.outcome for r in mains), self.ctx.tempo(10))
        await anyio.sleep(self.ctx.tempo(3))  # a watch window: a late commit lands in it
        later = await self.ctx.transcript(self.trace.sessions[session])
        name = self.trace.sessions[session]
        if noted_late_user_text(self.ctx, name, f"t{last.turn}", out.stop_reason, settled, later):
            return  # as the catalogue judges it: the agent's policy, not a ghost turn
        if later != settled:
            raise CheckFailed(
                f"expected the state of {self.trace.sessions[session]} to stay as it was when "
                f"t{last.turn} ended {out.stop_reason} (no ghost turn); at "
                f"{self.ctx.rel(time.monotonic_ns())}, after the provider was allowed to finish, "
                f"it had changed: {describe_change(settled, later)}"
            )

    # ------------------------------------------------------------------------- the end

    async def end(self, release: Releaser) -> None:
        """Release everything; every turn ends as it may; then the whole-example contracts."""
        trace, ctx = self.trace, self.ctx
        for turn in trace.turns.values():
            if turn.memory_reached:  # background work outlives the user's cancels
                await ctx.checks.background_survived(turn.prompt, release=[turn.memory_gate])
        if trace.profile is Profile.DEADLINE:
            # Its own deadline ends a turn whose tool is held: wait for that before the
            # holds open, so a tool the timeout abandoned is seen running.
            for turn in trace.turns.values():
                if turn.sub is not None and not turn.released and trace.tool_running(turn):
                    await self.outcome_of(turn)
        for turn in trace.turns.values():
            await release(turn)
            if turn.memory_gate and not ctx.gate(turn.memory_gate).released:
                await ctx.release(turn.memory_gate)
        for turn in trace.turns.values():
            if turn.sub is not None:
                await self.outcome_of(turn)
        for session in list(trace.sessions):
            await self.ghost(session, release)
        await self.contracts.quiet_after_cancels()
        await self.contracts.recorded()
        await self.contracts.streams()
        await self.contracts.nothing_after_answer()
        self.contracts.retries()
        await self.contracts.no_orphans()
        await invariants.nothing_in_flight(ctx, ctx.tempo(10))
        await self.contracts.next_turns()
