"""The defective code paths, kept apart so the correct ones in agent.py read cleanly.

Each function here is the incident project's behaviour, brought back by one switch from
`defects.py`. Nothing in here is used when no defect is active.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio

from reference_agent.config import AgentConfig
from reference_agent.defects import Defect, Defects
from reference_agent.model import StopReason, TurnOutcome
from reference_agent.providers.base import CallHandle, ModelReply, ModelRequest
from reference_agent.retry import RetryHooks, call_with_retries

if TYPE_CHECKING:
    from reference_agent.agent import Agent, _Session
    from reference_agent.engine import TurnState

# Defects whose provider call runs in a worker task spawned per request, outside the turn's
# scope, which the cancel must reach some other way (as in I1 and I5).
_DETACHED = (
    Defect.PROVIDER_IGNORES_CANCEL,
    Defect.CANCEL_CHECKED_ON_NEXT_CHUNK,
    Defect.RETRY_AFTER_FORCED_CLOSE,
    Defect.TURN_SCOPED_INTERRUPT_FLAG,
)


def detaches_calls(defects: Defects) -> bool:
    return any(defects.on(d) for d in _DETACHED)


async def reach_call(agent: Agent, call: CallHandle) -> None:
    """How a user's cancel reaches an in-flight call under the active defects."""
    if agent.defects.on(Defect.PROVIDER_IGNORES_CANCEL):
        return  # I1: the token stops the loop but never reaches the streaming task
    if agent.defects.on(Defect.CANCEL_CHECKED_ON_NEXT_CHUNK):
        call.cancelled = True  # noticed only when the next chunk arrives
        return
    await call.force_close()


def retry_hooks(agent: Agent, turn: TurnState) -> RetryHooks:
    defects = agent.defects
    if defects.on(Defect.RETRY_AFTER_FORCED_CLOSE):
        # I5: our own forced close looks like any other dropped connection.
        return RetryHooks(our_close=lambda call: False, stop_retrying=lambda call: False)
    if defects.on(Defect.TURN_SCOPED_INTERRUPT_FLAG):
        # I5: the flag lives on the session and the next turn clears it, so a stale
        # worker no longer recognises its own close.
        session = agent._sessions[turn.session_id]
        return RetryHooks(
            our_close=lambda call: session.interrupted,
            stop_retrying=lambda call: session.interrupted,
        )
    if defects.on(Defect.BACKOFF_IGNORES_CANCEL):
        return RetryHooks(detached_backoff=True)
    if defects.on(Defect.DROP_TREATED_AS_CANCEL):
        return RetryHooks(our_close=lambda call: True)
    return RetryHooks()


def client_config(config: AgentConfig) -> AgentConfig:
    """The configuration the provider client sees."""
    if config.defects.on(Defect.STALE_TIMEOUT_IGNORED):
        return config.with_(stale_timeout=float("inf"))  # waits on a silent stream forever
    return config


async def cancel_other_sessions(agent: Agent, session: _Session) -> None:
    """One global cancel token: Esc in one session reaches every running turn."""
    for other in list(agent._sessions.values()):
        if other is not session and other.active is not None:
            await agent.cancel_turn(other)


async def detached_call(
    agent: Agent, turn: TurnState, request: ModelRequest, call: CallHandle
) -> ModelReply:
    """The provider call in a per-request worker task that outlives the turn's scope."""
    assert agent._tg is not None
    done = anyio.Event()
    box: dict[str, object] = {}
    chunk_checked = agent.defects.on(Defect.CANCEL_CHECKED_ON_NEXT_CHUNK)

    def on_text(delta: str) -> None:
        if request.purpose == "turn":
            turn.add_text(delta)
        if chunk_checked and call.cancelled:
            raise _StopReading

    async def worker() -> None:
        try:
            box["reply"] = await call_with_retries(
                agent.client,
                request,
                call,
                agent.policy,
                on_text=on_text,
                on_retry=agent.retry_reporter(turn),
                hooks=retry_hooks(agent, turn),
            )
        except _StopReading:
            box["error"] = _cancelled(request)
        except Exception as exc:
            box["error"] = exc
        finally:
            agent.emit("model.worker-exit", turn.session_id, turn.id, request.purpose)
            done.set()

    agent._tg.start_soon(worker)
    await done.wait()  # the turn waits here; its cancel ends the wait, not the worker
    error = box.get("error")
    if isinstance(error, BaseException):
        raise error
    reply = box["reply"]
    assert isinstance(reply, ModelReply)
    return reply


class _StopReading(Exception):
    """The chunk-checked worker saw the flag after a chunk arrived and stops reading."""


def _cancelled(request: ModelRequest) -> Exception:
    from reference_agent.providers.base import CallCancelled

    return CallCancelled(f"{request.purpose} call stopped after the next chunk")


async def run_with_caller_timeout(agent: Agent, turn: TurnState) -> TurnOutcome:
    """I2: the deadline bounds the caller's wait; the worker runs on and commits later."""
    assert agent._tg is not None
    done = anyio.Event()
    box: dict[str, tuple[StopReason, str | None, str]] = {}

    async def worker() -> None:
        with turn.scope:
            box["result"] = await agent.run_turn_body(turn)
        done.set()

    agent._tg.start_soon(worker)
    with anyio.move_on_after(agent.config.turn_timeout or float("inf")):
        await done.wait()
    if turn.cancel_requested:
        return TurnOutcome(turn.id, turn.session_id, StopReason.CANCELLED, usage=turn.usage)
    if "result" not in box:
        late = f"turn exceeded {agent.config.turn_timeout:g}s"
        return TurnOutcome(turn.id, turn.session_id, StopReason.TIMEOUT, error=late)
    reason, error, text = box["result"]
    return TurnOutcome(turn.id, turn.session_id, reason, text, error, turn.usage)


async def cancel_background(agent: Agent, session: _Session) -> None:
    """The opposite of I1: background work the user did not start dies with their Esc."""
    for call in list(session.background_calls):
        await call.force_close()
    for scope in list(session.background):
        scope.cancel()
