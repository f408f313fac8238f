"""How the reference agent behaves at each point where a known bug can live.

`Policy()` is the correct agent. Each method is one seam, and its body is the correct
behaviour; the runtime (`agent.py`), the dispatcher, the tools and the ACP door call the
seam and never ask which defects are on. `defective.py` holds the known-bad variants: one
`Policy` subclass per defect, each overriding the seam or two where its bug lives, chosen
once at construction by `defective.policy_for(defects)`.

The narrow protocols below are all a policy may see of the parts it steers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Protocol

import anyio
from anyio.abc import Process

from reference_agent.config import AgentConfig
from reference_agent.engine import TurnState
from reference_agent.model import AgentEvent, StopReason, TurnOutcome
from reference_agent.providers.base import (
    CallHandle,
    ModelReply,
    ModelRequest,
    ProviderClient,
    ProviderError,
)
from reference_agent.retry import RetryHooks, RetryPolicy, call_with_retries

type Work = Callable[[], Coroutine[Any, Any, None]]  # something to run in a task
type TurnResult = tuple[StopReason, str | None, str]  # stop reason, error, final text


class Runtime(Protocol):
    """The running agent, as a policy sees it."""

    @property
    def config(self) -> AgentConfig: ...

    @property
    def client(self) -> ProviderClient: ...

    @property
    def retry_policy(self) -> RetryPolicy: ...

    @property
    def events(self) -> Sequence[AgentEvent]: ...

    def emit(self, kind: str, session_id: str = "", turn_id: str = "", detail: str = "") -> None:
        """Record an agent event (turn.accepted, cancel.received, ...)."""
        ...

    def start_soon(self, work: Work) -> None:
        """Run `work` in the agent's own task group: it outlives any turn, not the agent."""
        ...

    def retry_reporter(self, turn: TurnState) -> Callable[[int, float, ProviderError], None]: ...

    async def run_with_deadline(self, turn: TurnState) -> TurnOutcome:
        """Run the turn in its scope; the deadline cancels the work before we say timeout."""
        ...

    async def run_turn_body(self, turn: TurnState) -> TurnResult:
        """The engine run, its failures mapped onto the stop-reason taxonomy."""
        ...

    def running_sessions(self) -> list[str]:
        """Sessions with a turn running now."""
        ...

    async def cancel_running(self, session_id: str) -> object:
        """Cancel that session's running turn (what Esc does to its own session)."""
        ...

    def background_work(self, session_id: str) -> tuple[list[CallHandle], list[anyio.CancelScope]]:
        """The session's background model calls and their scopes (memory extraction)."""
        ...


class ToolProcesses(Protocol):
    """What the tool registry offers for a tool whose call was cancelled."""

    async def kill(self, process: Process) -> None:
        """Kill the tool's whole process group and wait until it is gone."""
        ...

    def abandon(self, process: Process) -> None:
        """Stop waiting and leave the group running (the agent's shutdown reaps it)."""
        ...


class AcpDoor(Protocol):
    """The ACP front door, as a policy sees it after it answered a prompt."""

    def start_soon(self, work: Work) -> None: ...

    async def send_text(self, session_id: str, text: str) -> None:
        """An agent_message_chunk update for the session."""
        ...


class Policy:
    """The correct agent. Subclasses in `defective.py` bring one bug back each."""

    # ------------------------------------------------------------------- the runtime

    def client_config(self, config: AgentConfig) -> AgentConfig:
        """The configuration the provider client sees: the agent's own."""
        return config

    async def cancel_received(self, runtime: Runtime, session_id: str) -> None:
        """What else an Esc reaches besides the session's turn: nothing. Background work
        the user did not start has its own lifetime, other sessions are not theirs (I1)."""

    async def reach_call(self, call: CallHandle) -> None:
        """How a cancel reaches an in-flight model call: flag it, then close its socket now,
        so the transport error it causes is known to be ours and never retried (I1, I5)."""
        await call.force_close()

    async def run_turn(self, runtime: Runtime, turn: TurnState) -> TurnOutcome:
        """One timeout for the caller and the work: the deadline cancels the turn (I2)."""
        return await runtime.run_with_deadline(turn)

    async def model_call(
        self, runtime: Runtime, turn: TurnState, request: ModelRequest, call: CallHandle
    ) -> ModelReply:
        """The call runs inside the turn's scope, so the turn's cancel ends it (I1)."""
        return await call_with_retries(
            runtime.client,
            request,
            call,
            runtime.retry_policy,
            on_text=turn.add_text if request.purpose == "turn" else None,
            on_retry=runtime.retry_reporter(turn),
            hooks=self.retry_hooks(runtime, turn),
        )

    def retry_hooks(self, runtime: Runtime, turn: TurnState) -> RetryHooks:
        """Our own close is told apart by the call's request-local flag (I5)."""
        return RetryHooks()

    # ------------------------------------------------------------------------ tools

    async def tool_cancelled(self, tools: ToolProcesses, process: Process) -> None:
        """A cancelled tool call kills its whole process group before the cancel goes on."""
        await tools.kill(process)

    # ------------------------------------------------------------------- dispatcher

    def cancel_names(self, stream_id: str | None) -> str | None:
        """The stream a cancel is for: the one the user pressed Esc on (I4)."""
        return stream_id

    def runs_to_cancel[R](self, active: R | None, queued: Sequence[R]) -> list[R]:
        """An unnamed cancel stops the active run and drops every queued one (I3)."""
        return [run for run in (active, *queued) if run is not None]

    def stops_when_left(self) -> bool:
        """A run whose only consumer stopped reading stops, closing its stream at once (I1)."""
        return True

    def cancel_reaches_unstarted(self) -> bool:
        """A run accepted but not started yet takes a pending cancel (I3)."""
        return True

    def idle_cancel(self, session_id: str) -> None:
        """A cancel with nothing to cancel is a true no-op (I3)."""

    def cancelled_on_arrival(self, session_id: str) -> bool:
        """Whether a newly accepted run is cancelled before it starts: never by itself."""
        return False

    async def hand_off[R](
        self,
        queued: deque[R],
        lock: anyio.Lock,
        start_next: Work,
        spawn: Callable[[Work], None],
    ) -> None:
        """When a run ends, the next queued one starts under the same lock: the session
        never looks idle in between (I3). The caller holds `lock`."""
        await start_next()

    def ends_stream(self, kind: str) -> bool:
        """Every run's stream gets its terminal event and closes (I4)."""
        return True

    def listeners[S](self, own: list[S], session: Iterable[list[S]]) -> list[S]:
        """Who hears a run's event: the subscribers of that run's stream only (I4)."""
        return list(own)

    # --------------------------------------------------------------------- ACP door

    def acp_stop_reason(self, reason: StopReason) -> StopReason:
        """The stop reason a prompt is answered with: how the turn ended."""
        return reason

    def acp_answered(self, door: AcpDoor, session_id: str, reason: StopReason) -> None:
        """After the answer nothing of that turn goes out."""
