"""The player: runs a schedule's steps against the agent through a `ScenarioContext`.

Each step becomes the harness steps a scenario author would write (`ctx.fault(...,
on=prompt, times=1)`, `ctx.submit`, `reach`, `ctx.cancel`, `ctx.release`, `ctx.outcome`),
and the judge checks the contracts right after it. A wait for a point is bounded and
watches the turn: a turn that ends first is judged, and if its end was legitimate the
example is discarded (`PremiseNotMet`); a point not reached in time is `Indeterminate`.
"""

from __future__ import annotations

import time

import anyio

from fake_providers import FaultPlan, ToolCall, WaitTimeout, tool_call
from fake_providers.ledger import Outcome as RequestOutcome
from harness import faults
from harness.context import ScenarioContext
from harness.explore.judge import Judge
from harness.explore.schedule import (
    Await,
    Cancel,
    Fault,
    FaultKind,
    Leave,
    Point,
    Prompt,
    Reach,
    Release,
    Request,
    Schedule,
    Step,
    ToolKind,
    Twice,
)
from harness.explore.tool_holds import held_command
from harness.explore.trace import PremiseNotMet, Trace, TurnTrace
from harness.processes import marked_command, marked_processes
from harness.steps import leave, opening_events, reach, wait_limit
from harness.target import AgentBroke, CancelAck
from harness.timing import Indeterminate

TOKENS = 8  # words in each answer: short, so paced streams end soon


def plan_of(ctx: ScenarioContext, turn: TurnTrace, number: int, request: Request) -> FaultPlan:
    """The provider's script for request `number` of a turn, built from harness.faults."""
    fault = request.fault
    if request.tool is not None:
        content = faults.says(tokens=0, tools=(tool_of(ctx, turn, number),))
    else:
        content = faults.says(tokens=TOKENS)
    plan = FaultPlan()
    if fault.pace:
        plan += faults.pace(ctx.tempo(fault.pace))
    if fault.drip:
        plan += faults.drip(fault.drip)
    gate = turn.gates.get(number, "")
    match fault.kind:
        case FaultKind.HOLD_HEADERS:
            plan += faults.hold(before="headers", gate=gate)
        case FaultKind.HOLD:
            plan += faults.hold(before=fault.at + 1, gate=gate)
        case FaultKind.FIN:
            plan += faults.close_after(fault.at)
        case FaultKind.RST:
            plan += faults.reset_after(fault.at)
        case FaultKind.HTTP:
            plan += http_fault(ctx, fault)
        case FaultKind.STREAM_ERROR:
            plan += faults.stream_error(fault.at)
        case FaultKind.HANG:
            plan += faults.hang_after(fault.at)
        case FaultKind.QUOTA:
            plan += faults.quota(fault.quota, reset=ctx.tempo(fault.retry_after or 0))
        case FaultKind.CONTEXT:
            plan += faults.context_window(ctx.kind)
        case FaultKind.OK:
            pass
    return plan + content


def http_fault(ctx: ScenarioContext, fault: Fault) -> FaultPlan:
    """An error status; a retry-after in tempo goes out as both headers, as providers do."""
    if fault.retry_after is None:
        return faults.http_error(fault.status)
    seconds = ctx.tempo(fault.retry_after)
    return faults.http_error(
        fault.status, retry_after=round(seconds, 3), retry_after_ms=round(seconds * 1000)
    )


def tool_of(ctx: ScenarioContext, turn: TurnTrace, number: int) -> ToolCall:
    """The harness's `shell` tool call of request `number`: its processes carry the turn's
    mark; a slow one blocks on its tool hold until released."""
    kind = turn.plan.requests[number - 1].tool
    hold = turn.tool_holds.get(number)
    if kind is ToolKind.QUICK or hold is None:
        command = "echo done"
    else:
        command = held_command(turn.hold_paths[number], tree=kind is ToolKind.TREE)
    marked = marked_command(turn.tool_tag, command)
    call = tool_call("shell", {"command": marked}, id=f"call_t{turn.turn}_{number}")
    if kind is ToolKind.BROKEN:  # cut short: not valid JSON
        return ToolCall(call.id, call.name, call.arguments[: len(call.arguments) // 2])
    return call


class Player:
    """Drives one schedule; `trace` is what happened, `judge` checks it as it goes."""

    def __init__(self, ctx: ScenarioContext, schedule: Schedule, trace: Trace) -> None:
        self.ctx = ctx
        self.schedule = schedule
        self.trace = trace
        self.judge = Judge(ctx, trace)
        self.at = 0  # the step being played (1-based); after the last, the end's checks

    async def play(self) -> None:
        try:
            for n, step in enumerate(self.schedule.steps, start=1):
                self.at = n
                self.ctx.note(f"step {n}: {self.schedule.describe()[n - 1]}")
                await self.step(step)
            await self.judge.end(self.release)
        finally:
            self.trace.holds.close()  # no tool of the example is left blocked

    async def step(self, step: Step) -> None:
        match step:
            case Prompt():
                await self.prompt(step)
            case Reach():
                await self.reach(step)
            case Cancel():
                await self.cancel(step)
            case Leave():
                await self.leave(step)
            case Release():
                await self.release(self.trace.turns[step.turn])
            case Await():
                turn = self.trace.turns[step.turn]
                await self.judge.outcome_of(turn)

    # -------------------------------------------------------------------------- steps

    async def session(self, index: int) -> str:
        if index not in self.trace.sessions:
            self.trace.sessions[index] = await self.ctx.new_session()
        return self.trace.sessions[index]

    async def prompt(self, step: Prompt) -> None:
        ctx = self.ctx
        session = await self.session(step.session)
        if not step.followup:
            await self.judge.session_settled(step.session, self.release)
        said = ctx.prompt(f"Question {step.turn}.")
        turn = self.trace.add(step, said, f"{ctx.case_tag}-t{step.turn}")
        for number, request in enumerate(step.requests, start=1):
            if request.fault.kind in (FaultKind.HOLD, FaultKind.HOLD_HEADERS):
                turn.gates[number] = f"t{step.turn}r{number}"
            if request.tool in (ToolKind.SLOW, ToolKind.TREE) and not request.fault.fails:
                name = f"t{step.turn}r{number}tool"
                turn.tool_holds[number] = name
                turn.hold_paths[number] = self.trace.holds.new(name)
            ctx.fault(plan_of(ctx, turn, number, request), on=said, times=1)
        ctx.fault(faults.says(tokens=TOKENS), on=said)  # requests beyond the plan: an answer
        if step.hold_compaction:
            previous = self.trace.latest.get(step.session)
            if previous is not None:
                turn.compaction_gate = f"t{step.turn}compaction"
                hold = faults.hold(before=2, gate=turn.compaction_gate)
                ctx.fault(hold, on=faults.side_of(previous.prompt), times=1)
        if step.hold_memory:
            turn.memory_gate = f"t{step.turn}memory"
            hold = faults.hold(before=2, gate=turn.memory_gate)
            ctx.fault(hold, on=faults.side_of(said), times=1)
        turn.sub = await ctx.submit(session, said)

    async def reach(self, step: Reach) -> None:
        turn = self.trace.turns[step.turn]
        assert turn.sub is not None
        try:
            match step.point:
                case Point.HELD:
                    await self._held(turn, step.request)
                case Point.COMPACTION:
                    if not turn.compaction_gate:
                        raise PremiseNotMet("no turn of the session completed, so no compaction")
                    await reach(self.ctx, turn.sub, turn.compaction_gate)
                case Point.BACKOFF:
                    await self._backing_off(turn, step.request)
                case Point.TOOL:
                    await self._tool_running(turn)
                case Point.ANSWERED:
                    await self._answered(turn, step.request)
                case Point.MEMORY:
                    await self._memory_held(turn)
        except AgentBroke as exc:
            await self.judge.outcome_of(turn)  # a failure if that end breaks a contract
            raise PremiseNotMet(str(exc)) from None
        except WaitTimeout as exc:
            raise Indeterminate(
                f"{step.point} of t{turn.turn} not observed in time: {exc}"
            ) from None

    async def _held(self, turn: TurnTrace, number: int) -> None:
        assert turn.sub is not None
        if turn.plan.requests[number - 1].fault.kind is FaultKind.HANG:
            return  # nothing to wait for: it is silent until the agent gives up
        await reach(self.ctx, turn.sub, turn.gates[number])
        request = turn.plan.requests[number - 1]
        text_events = request.fault.at - opening_events(self.ctx)
        shows = getattr(self.ctx.target, "shown", None)
        if text_events <= 0 or request.tool is not None or not callable(shows):
            return
        with anyio.move_on_after(wait_limit(self.ctx)):
            while not shows(turn.sub):  # noqa: ASYNC110 - front-door text has no event
                await anyio.sleep(self.ctx.tempo(0.25))
            await self.ctx.settle(1, "the agent has shown what it read")
            return
        raise Indeterminate(f"t{turn.turn} showed none of the text written before its hold")

    async def _backing_off(self, turn: TurnTrace, number: int) -> None:
        """The failing request was served and the agent is in its back-off (said exactly by a
        target that reports its events, else 2 tempo after the failure: the back-off is 10+)."""
        ctx, ledger = self.ctx, self.ctx.provider.ledger

        def failed(_: object) -> int | None:
            mains = self.trace.main_requests(turn)
            if len(mains) >= number and mains[number - 1].outcome is not None:
                return mains[number - 1].finished_ns or 0
            return None

        served = await ledger.wait_for(
            failed, wait_limit(ctx), f"request #{number} of t{turn.turn}"
        )
        fault = turn.plan.requests[number - 1].fault
        turn.backoff_until_ns = served + int(ctx.tempo(fault.retry_after or 0) * 1e9)
        wait_note = getattr(ctx.target, "wait_note", None)
        if wait_note is not None:
            if not await wait_note("model.retry", served, wait_limit(ctx)):
                await self.judge.outcome_of(turn)
                raise PremiseNotMet(f"the agent did not retry request #{number} of t{turn.turn}")
        else:
            await ctx.settle(2, "the agent takes the failure in")
        assert turn.sub is not None
        if await self.judge.ended(turn, 0):
            raise PremiseNotMet(f"t{turn.turn} ended instead of retrying request #{number}")

    async def _tool_running(self, turn: TurnTrace) -> None:
        """A process of the turn's tool runs (a bounded poll: process start has no event)."""
        with anyio.move_on_after(wait_limit(self.ctx)):
            while not marked_processes(turn.tool_tag):
                if await self.judge.ended(turn, self.ctx.tempo(0.25)):
                    raise PremiseNotMet(f"t{turn.turn} ended before its tool ran")
            self.ctx.note(f"t{turn.turn}'s tool is running")
            return
        raise Indeterminate(f"t{turn.turn}'s tool did not start in time")

    async def _answered(self, turn: TurnTrace, number: int) -> None:
        def done(_: object) -> bool:
            mains = self.trace.main_requests(turn)
            return len(mains) >= number and mains[-1].outcome is RequestOutcome.COMPLETE

        await self.ctx.provider.ledger.wait_for(done, wait_limit(self.ctx), "the final answer")

    async def _memory_held(self, turn: TurnTrace) -> None:
        if not turn.memory_gate or turn.outcome is None or turn.outcome.stop_reason != "completed":
            raise PremiseNotMet(f"t{turn.turn} did not complete, so it has no memory extraction")
        try:
            await self.ctx.gate(turn.memory_gate).wait_reached(timeout=wait_limit(self.ctx))
        except WaitTimeout:
            raise PremiseNotMet(f"the agent extracted no memory after t{turn.turn}") from None
        turn.memory_reached = True

    async def cancel(self, step: Cancel) -> None:
        ctx, trace = self.ctx, self.trace
        session = await self.session(step.session)
        live = trace.live(step.session)
        named = trace.turns[step.names] if step.names is not None else None
        stream = named.sub.stream_id if named is not None and named.sub is not None else None
        targets = [named] if named is not None and named in live else ([] if named else live)
        pinned = [t for t in targets if trace.pinned(t)]
        quiet = {t.turn for t in targets if trace.held_now(t) or _backing_off(t)}
        # Queued for sure: behind a front that is held and was not cancelled before.
        front_held = bool(live) and trace.pinned(live[0])
        queued = {t.turn for t in targets if t is not live[0] and front_held and trace.pinned(t)}
        watched = {t.turn: trace.in_flight(t) for t in trace.turns.values() if t.sub}
        tools = {t.turn: trace.tool_running(t) for t in targets}
        acks: list[CancelAck] = []
        t_ns = time.monotonic_ns()

        async def once() -> None:
            ack, _ = await ctx.cancel(session, stream)
            acks.append(ack)

        if step.twice is Twice.CONCURRENT:
            async with anyio.create_task_group() as tg:
                tg.start_soon(once)
                tg.start_soon(once)
        else:
            await once()
        answered = time.monotonic_ns()
        for turn in targets:
            if turn.targeted_ns is None:
                turn.targeted_ns, turn.ack_ns = t_ns, answered
                turn.quiet_ns = t_ns if turn.turn in quiet else None
            turn.expect_cancelled |= turn in pinned
            turn.cancelled_queued |= turn.turn in queued
        await self.judge.after_cancel(step, t_ns, targets, pinned, acks, watched, tools)
        if step.twice is Twice.SEQUENTIAL:
            await once()

    async def leave(self, step: Leave) -> None:
        turn = self.trace.turns[step.turn]
        assert turn.sub is not None
        if turn.reported:
            return
        watched = {turn.turn: self.trace.in_flight(turn)}
        t_ns = await leave(self.ctx, turn.sub)
        turn.left = True
        if turn.targeted_ns is None:
            turn.targeted_ns, turn.ack_ns = t_ns, time.monotonic_ns()
        await self.judge.closed_after(t_ns, [turn], watched)

    async def release(self, turn: TurnTrace) -> None:
        for gate in turn.all_gates():
            if not self.ctx.gate(gate).released:
                await self.ctx.release(gate)
        for name in turn.tool_holds.values():
            self.trace.holds.release(name)
        turn.released = True


def _backing_off(turn: TurnTrace) -> bool:
    return turn.backoff_until_ns is not None and time.monotonic_ns() < turn.backoff_until_ns
