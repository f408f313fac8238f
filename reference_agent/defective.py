"""The known-bad variants of `Policy`: one class per defect, each a deliberate detour.

Every class here is the incident project's behaviour at one seam of `policy.py`, named
after its switch in `defects.py` (INCIDENTS.md tells the story). `policy_for(defects)`
picks them once, when the agent is built; with no defect it is the plain `Policy()`, and
nothing in this module runs. Several defects compose as mixins: each calls `super()` for
the seams it does not own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import ClassVar, cast

import anyio
from anyio.abc import Process

from reference_agent.config import AgentConfig
from reference_agent.defects import Defect, Defects
from reference_agent.engine import TurnState
from reference_agent.model import StopReason, TurnOutcome
from reference_agent.policy import AcpDoor, Policy, Runtime, ToolProcesses, Work
from reference_agent.providers.base import CallCancelled, CallHandle, ModelReply, ModelRequest
from reference_agent.retry import RetryHooks, call_with_retries

LATE_DELTA = " [late]"  # what the straggling ACP update says


# ---------------------------------------------------------- I1 / I5: detached model calls


class _DetachedCalls(Policy):
    """The provider call runs in a worker task spawned per request, outside the turn's
    scope: the turn's cancel ends the turn's wait, not the worker (as in I1 and I5)."""

    chunk_checked: ClassVar[bool] = False  # the worker looks at the flag after each chunk

    async def model_call(
        self, runtime: Runtime, turn: TurnState, request: ModelRequest, call: CallHandle
    ) -> ModelReply:
        done = anyio.Event()
        box: dict[str, object] = {}

        def on_text(delta: str) -> None:
            if request.purpose == "turn":
                turn.add_text(delta)
            if self.chunk_checked and call.cancelled:
                raise _StopReading

        async def worker() -> None:
            try:
                box["reply"] = await call_with_retries(
                    runtime.client,
                    request,
                    call,
                    runtime.retry_policy,
                    on_text=on_text,
                    on_retry=runtime.retry_reporter(turn),
                    hooks=self.retry_hooks(runtime, turn),
                )
            except _StopReading:
                box["error"] = CallCancelled(f"{request.purpose} call stopped after the next chunk")
            except Exception as exc:
                box["error"] = exc
            finally:
                runtime.emit("model.worker-exit", turn.session_id, turn.id, request.purpose)
                done.set()

        runtime.start_soon(worker)
        await done.wait()  # the turn waits here; its cancel ends the wait, not the worker
        error = box.get("error")
        if isinstance(error, BaseException):
            raise error
        reply = box["reply"]
        assert isinstance(reply, ModelReply)
        return reply


class _StopReading(Exception):
    """The chunk-checked worker saw the flag after a chunk arrived and stops reading."""


class ProviderIgnoresCancel(_DetachedCalls):
    """I1: the token stops the loop but never reaches the streaming task."""

    async def reach_call(self, call: CallHandle) -> None:
        return


class CancelCheckedOnNextChunk(_DetachedCalls):
    """I1 variant: the flag is set, but the worker only looks when the next chunk arrives."""

    chunk_checked = True

    async def reach_call(self, call: CallHandle) -> None:
        call.cancelled = True


class RetryAfterForcedClose(_DetachedCalls):
    """I5: our own forced close looks like any other dropped connection, and is retried."""

    def retry_hooks(self, runtime: Runtime, turn: TurnState) -> RetryHooks:
        never = _never
        return replace(super().retry_hooks(runtime, turn), our_close=never, stop_retrying=never)


class TurnScopedInterruptFlag(_DetachedCalls):
    """I5: the interrupt flag lives on the session and the next turn clears it, so a stale
    worker no longer recognises its own close. The flag is whatever the session saw last:
    a cancel (set) or a newly accepted turn (cleared)."""

    def retry_hooks(self, runtime: Runtime, turn: TurnState) -> RetryHooks:
        def interrupted(call: CallHandle) -> bool:
            for event in reversed(runtime.events):
                if event.session_id == turn.session_id:
                    if event.kind == "cancel.received":
                        return True
                    if event.kind == "turn.accepted":
                        return False
            return False

        hooks = super().retry_hooks(runtime, turn)
        return replace(hooks, our_close=interrupted, stop_retrying=interrupted)


def _never(call: CallHandle) -> bool:
    return False


# ------------------------------------------------------------------ retries and staleness


class BackoffIgnoresCancel(Policy):
    """The back-off sleep, and the retry it leads to, are shielded from the cancel."""

    def retry_hooks(self, runtime: Runtime, turn: TurnState) -> RetryHooks:
        return replace(super().retry_hooks(runtime, turn), detached_backoff=True)


class DropTreatedAsCancel(Policy):
    """I5 over-corrected: every dropped stream is taken for our own close, never retried."""

    def retry_hooks(self, runtime: Runtime, turn: TurnState) -> RetryHooks:
        return replace(super().retry_hooks(runtime, turn), our_close=_always)


def _always(call: CallHandle) -> bool:
    return True


class StaleTimeoutIgnored(Policy):
    """A provider that goes silent with no cancel: the agent waits on it forever."""

    def client_config(self, config: AgentConfig) -> AgentConfig:
        return super().client_config(config).with_(stale_timeout=float("inf"))


# ----------------------------------------------------------------- I2: the ghost turn


class CommitAfterTimeout(Policy):
    """I2: the deadline bounds the caller's wait; the worker runs on and commits later."""

    async def run_turn(self, runtime: Runtime, turn: TurnState) -> TurnOutcome:
        limit = runtime.config.turn_timeout
        if not limit:
            return await super().run_turn(runtime, turn)
        done = anyio.Event()
        box: dict[str, tuple[StopReason, str | None, str]] = {}

        async def worker() -> None:
            with turn.scope:
                box["result"] = await runtime.run_turn_body(turn)
            done.set()

        runtime.start_soon(worker)
        with anyio.move_on_after(limit):
            await done.wait()
        if turn.cancel_requested:
            return TurnOutcome(turn.id, turn.session_id, StopReason.CANCELLED, usage=turn.usage)
        if "result" not in box:
            late = f"turn exceeded {limit:g}s"
            return TurnOutcome(turn.id, turn.session_id, StopReason.TIMEOUT, error=late)
        reason, error, text = box["result"]
        return TurnOutcome(turn.id, turn.session_id, reason, text, error, turn.usage)


# ------------------------------------------------------------ what else an Esc reaches


class BackgroundTiedToUserCancel(Policy):
    """The opposite of I1: background work the user did not start dies with their Esc."""

    async def cancel_received(self, runtime: Runtime, session_id: str) -> None:
        calls, scopes = runtime.background_work(session_id)
        for call in calls:
            await call.force_close()
        for scope in scopes:
            scope.cancel()
        await super().cancel_received(runtime, session_id)


class CancelAllSessions(Policy):
    """One global cancel token: Esc in one session stops every session's running turn."""

    async def cancel_received(self, runtime: Runtime, session_id: str) -> None:
        await super().cancel_received(runtime, session_id)
        for other in runtime.running_sessions():
            if other != session_id:
                await runtime.cancel_running(other)


class ToolSurvivesCancel(Policy):
    """Cancel during a tool: stop waiting for it and leave its process group running."""

    async def tool_cancelled(self, tools: ToolProcesses, process: Process) -> None:
        tools.abandon(process)


# -------------------------------------------------------------- I3 / I4: the dispatcher


class DrainOnLeave(Policy):
    """I1, the SDK form: a caller that stops reading leaves the stream draining to its end."""

    def stops_when_left(self) -> bool:
        return False  # the run reads its provider stream to the end, for nobody


class LoseCancelBeforeStart(Policy):
    """I3: cancel only looks at active runs; an accepted run that has not started is missed."""

    def cancel_reaches_unstarted(self) -> bool:
        return False


class IdleCancelPoisonsNext(Policy):
    """I3: a cancel with nothing running is remembered and kills the next prompt."""

    def __init__(self) -> None:
        super().__init__()
        self._poisoned: set[str] = set()

    def idle_cancel(self, session_id: str) -> None:
        self._poisoned.add(session_id)

    def cancelled_on_arrival(self, session_id: str) -> bool:
        if session_id in self._poisoned:
            self._poisoned.discard(session_id)
            return True
        return super().cancelled_on_arrival(session_id)


class QueuedFollowupSurvivesCancel(Policy):
    """I3: the cancel stops the active run, but a queued follow-up still runs."""

    def runs_to_cancel[R](self, active: R | None, queued: Sequence[R]) -> list[R]:
        if active is not None:
            return [active]
        return super().runs_to_cancel(active, queued)


class HandoffWindow(Policy):
    """I3: the queue leaves the session while a worker takes it over; a cancel in that gap
    finds the session idle, and the next queued prompt runs anyway."""

    async def hand_off[R](
        self,
        queued: deque[R],
        lock: anyio.Lock,
        start_next: Work,
        spawn: Callable[[Work], None],
    ) -> None:
        in_transit = list(queued)
        queued.clear()

        async def take_over() -> None:
            async with lock:
                queued.extend(in_transit)
                await start_next()

        spawn(take_over)


class CancelNotOwnerScoped(Policy):
    """I4: a cancel naming a stale stream stops whatever runs now (the next turn)."""

    def cancel_names(self, stream_id: str | None) -> str | None:
        return None


class NoTerminalCancelEvent(Policy):
    """I4: a cancelled stream never gets its terminal event and is left open; with one event
    source per session, the open stream then hears the turns that follow."""

    def ends_stream(self, kind: str) -> bool:
        return kind != "cancelled" and super().ends_stream(kind)

    def listeners[S](self, own: list[S], session: Iterable[list[S]]) -> list[S]:
        return [sink for subscribers in session for sink in subscribers]


# -------------------------------------------------------------------------- the ACP door


class AcpUpdateAfterResponse(Policy):
    """ACP: a content update for a cancelled turn goes out after its prompt was answered."""

    def acp_answered(self, door: AcpDoor, session_id: str, reason: StopReason) -> None:
        super().acp_answered(door, session_id, reason)
        if reason is StopReason.CANCELLED:

            async def straggle() -> None:
                # A worker still draining the stream: chunks trickle out for a while after
                # the answer, so (however loaded the machine) some land behind it.
                for pause in (0.005, 0.02, 0.1):
                    await anyio.sleep(pause)
                    await door.send_text(session_id, LATE_DELTA)

            door.start_soon(straggle)


class AcpWrongStopReason(Policy):
    """ACP: a cancelled prompt is answered as if the turn had ended normally."""

    def acp_stop_reason(self, reason: StopReason) -> StopReason:
        if reason is StopReason.CANCELLED:
            return StopReason.COMPLETED
        return super().acp_stop_reason(reason)


DETOURS: dict[Defect, type[Policy]] = {
    Defect.PROVIDER_IGNORES_CANCEL: ProviderIgnoresCancel,
    Defect.CANCEL_CHECKED_ON_NEXT_CHUNK: CancelCheckedOnNextChunk,
    Defect.BACKGROUND_TIED_TO_USER_CANCEL: BackgroundTiedToUserCancel,
    Defect.COMMIT_AFTER_TIMEOUT: CommitAfterTimeout,
    Defect.RETRY_AFTER_FORCED_CLOSE: RetryAfterForcedClose,
    Defect.TURN_SCOPED_INTERRUPT_FLAG: TurnScopedInterruptFlag,
    Defect.TOOL_SURVIVES_CANCEL: ToolSurvivesCancel,
    Defect.BACKOFF_IGNORES_CANCEL: BackoffIgnoresCancel,
    Defect.STALE_TIMEOUT_IGNORED: StaleTimeoutIgnored,
    Defect.DROP_TREATED_AS_CANCEL: DropTreatedAsCancel,
    Defect.CANCEL_ALL_SESSIONS: CancelAllSessions,
    Defect.DRAIN_ON_LEAVE: DrainOnLeave,
    Defect.LOSE_CANCEL_BEFORE_START: LoseCancelBeforeStart,
    Defect.IDLE_CANCEL_POISONS_NEXT: IdleCancelPoisonsNext,
    Defect.QUEUED_FOLLOWUP_SURVIVES_CANCEL: QueuedFollowupSurvivesCancel,
    Defect.HANDOFF_WINDOW: HandoffWindow,
    Defect.CANCEL_NOT_OWNER_SCOPED: CancelNotOwnerScoped,
    Defect.NO_TERMINAL_CANCEL_EVENT: NoTerminalCancelEvent,
    Defect.ACP_UPDATE_AFTER_RESPONSE: AcpUpdateAfterResponse,
    Defect.ACP_WRONG_STOP_REASON: AcpWrongStopReason,
}


def policy_for(defects: Defects) -> Policy:
    """The correct policy with the detours of `defects` (several compose as mixins)."""
    chosen = [DETOURS[defect] for defect in sorted(defects.active)]
    if not chosen:
        return Policy()
    if len(chosen) == 1:
        return chosen[0]()
    name = "+".join(cls.__name__ for cls in chosen)
    return cast(type[Policy], type(name, tuple(chosen), {}))()
