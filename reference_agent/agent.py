"""The reference agent's runtime and Python API: sessions, turns, cancel, deadlines.

    async with Agent(AgentConfig.from_env()) as agent:
        session = await agent.new_session()
        turn = await agent.submit(session, "hello")     # returns once accepted
        await agent.cancel(session)                      # Esc
        outcome = await turn.wait()                      # StopReason.CANCELLED

Structure (STYLE.md, trio/anyio): the agent owns one task group for the lifetime of the
`async with`. Each turn runs in that group inside the turn's own cancel scope; everything
the turn starts dies with it. Background memory extraction gets its own scope and
deadline, so a user's Esc does not kill it, and shutdown does.

Wherever a known bug could live, the runtime asks its `Policy` (policy.py): the correct
one by default, a defective one (defective.py) when a defect switch is on.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
import anyio.abc

from reference_agent.config import AgentConfig
from reference_agent.defective import policy_for
from reference_agent.engine import Engine, TurnEnded, TurnState
from reference_agent.model import AgentEvent, Message, StopReason, ToolCall, TurnOutcome, Usage
from reference_agent.policy import Policy, TurnResult, Work
from reference_agent.providers import make_client, make_http_client
from reference_agent.providers.base import (
    CallCancelled,
    CallHandle,
    ModelReply,
    ModelRequest,
    ProviderClient,
    ProviderError,
)
from reference_agent.retry import RetryPolicy, call_with_retries
from reference_agent.store import Store
from reference_agent.tools import ToolError, ToolRegistry, alive

MEMORY_PROMPT = "Extract durable facts about the user from this conversation, one per line."


class SessionBusyError(RuntimeError):
    """A prompt was submitted while the session still runs a turn."""


class UnknownSessionError(KeyError):
    """No session with that id."""


@dataclass(frozen=True, slots=True)
class CancelResult:
    """`cancelled` is False when there was nothing to cancel, or the turn had committed."""

    cancelled: bool
    turn_id: str = ""
    reason: str = ""


@dataclass(eq=False)
class _Session:
    id: str
    active: TurnState | None = None
    background: set[anyio.CancelScope] = field(default_factory=set)
    background_calls: set[CallHandle] = field(default_factory=set)


class TurnHandle:
    """A submitted turn; `await handle.wait()` gives its outcome."""

    def __init__(self, state: TurnState) -> None:
        self.state = state
        self._done = anyio.Event()
        self.outcome: TurnOutcome | None = None

    @property
    def id(self) -> str:
        return self.state.id

    @property
    def session_id(self) -> str:
        return self.state.session_id

    @property
    def done(self) -> bool:
        return self.outcome is not None

    def _settle(self, outcome: TurnOutcome) -> None:
        self.outcome = outcome
        self._done.set()

    async def wait(self, timeout: float | None = None) -> TurnOutcome:
        with anyio.fail_after(timeout):
            await self._done.wait()
        assert self.outcome is not None
        return self.outcome


class Agent:
    """A small, correct agent (plus switchable defects). See the module docstring."""

    def __init__(
        self,
        config: AgentConfig,
        *,
        store: str | Path = ":memory:",
        on_event: Callable[[AgentEvent], None] | None = None,
        approve_tool: Callable[[str, ToolCall], Awaitable[bool]] | None = None,
    ) -> None:
        self.config = config
        self.policy: Policy = policy_for(config.defects)
        self._store_path = store
        self._on_event = on_event
        # A front door that asks its user before tools run (ACP session/request_permission).
        # Awaited inside the turn's scope, so a cancel ends a pending request too.
        self.approve_tool = approve_tool
        self.events: list[AgentEvent] = []
        self.memories: dict[str, list[str]] = {}
        self._sessions: dict[str, _Session] = {}
        self._handles: dict[str, TurnHandle] = {}
        self._ids = itertools.count(1)
        self._pids: set[int] = set()
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self.retry_policy = RetryPolicy(
            config.max_retries, config.backoff_base, config.backoff_max, config.seed
        )
        self.tools = ToolRegistry(tool_timeout=config.tool_timeout, policy=self.policy)

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            self.store = Store.open(self._store_path)
            stack.callback(self.store.close)
            stack.push_async_callback(self.tools.reap_orphans)
            self.http = make_http_client(self.config)
            stack.push_async_callback(self.http.aclose)
            self.client: ProviderClient = make_client(
                self.policy.client_config(self.config), self.http
            )
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(self._tg.cancel_scope.cancel)  # shutdown ends background work
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    def start_soon(self, work: Work) -> None:
        """Run `work` in the agent's task group: it outlives any turn, not the agent."""
        if self._tg is None:
            raise RuntimeError("use the agent inside `async with`")
        self._tg.start_soon(work)

    def emit(self, kind: str, session_id: str = "", turn_id: str = "", detail: str = "") -> None:
        event = AgentEvent(time.monotonic_ns(), kind, session_id, turn_id, detail)
        self.events.append(event)
        if self._on_event is not None:
            self._on_event(event)

    # -------------------------------------------------------------------- sessions

    async def new_session(self) -> str:
        session_id = f"s{next(self._ids)}"
        while self.store.session_exists(session_id):  # a file store from an earlier process
            session_id = f"s{next(self._ids)}"
        self.store.create_session(session_id)
        self._sessions[session_id] = _Session(session_id)
        return session_id

    def open_session(self, session_id: str) -> None:
        """Make a session persisted by an earlier process usable in this one."""
        if session_id in self._sessions:
            return
        if not self.store.session_exists(session_id):
            raise UnknownSessionError(f"no session {session_id!r} in the store")
        self._sessions[session_id] = _Session(session_id)

    def _session(self, session_id: str) -> _Session:
        try:
            return self._sessions[session_id]
        except KeyError:
            raise UnknownSessionError(f"no session {session_id!r}") from None

    def transcript(self, session_id: str) -> list[Message]:
        return self.store.transcript(session_id)

    def usage(self, session_id: str) -> Usage:
        return self.store.usage(session_id)

    def live_pids(self) -> list[int]:
        """Tool subprocesses started by this agent that are still running."""
        return [pid for pid in sorted(self._pids) if alive(pid)]

    # ----------------------------------------------------------------------- turns

    async def submit(
        self,
        session_id: str,
        prompt: str,
        *,
        on_text: Callable[[str], None] | None = None,
        turn_id: str | None = None,
    ) -> TurnHandle:
        """Accept a prompt and start its turn; returns once accepted."""
        assert self._tg is not None, "use the agent inside `async with`"
        session = self._session(session_id)
        if session.active is not None:
            raise SessionBusyError(f"session {session_id} is still running {session.active.id}")
        turn = TurnState(
            id=turn_id or f"t{next(self._ids)}",
            session_id=session_id,
            prompt=prompt,
            on_text=on_text,
        )
        handle = TurnHandle(turn)
        self._handles[turn.id] = handle
        session.active = turn
        self.emit("turn.accepted", session_id, turn.id)
        self._tg.start_soon(self._drive, session, handle)
        return handle

    async def ask(self, session_id: str, prompt: str, timeout: float | None = None) -> TurnOutcome:
        handle = await self.submit(session_id, prompt)
        return await handle.wait(timeout)

    async def cancel(self, session_id: str, turn_id: str | None = None) -> CancelResult:
        """Esc: stop the session's running turn (or the named one). Idle: a true no-op."""
        session = self._session(session_id)
        await self.policy.cancel_received(self, session_id)
        return await self._cancel_turn(session, turn_id)

    async def _cancel_turn(self, session: _Session, turn_id: str | None = None) -> CancelResult:
        """Cancel the session's active turn, if it is the one named and has not committed."""
        turn = session.active
        if turn is None or (turn_id is not None and turn.id != turn_id):
            self.emit("cancel.noop", session.id, turn_id or "", "nothing running")
            return CancelResult(False, turn_id or "", "nothing to cancel")
        if turn.committed:
            self.emit("cancel.late", session.id, turn.id, "turn already committed")
            return CancelResult(False, turn.id, "the turn had already committed")
        turn.cancel_requested = True
        self.emit("cancel.received", session.id, turn.id)
        # Flag first, then close the socket ourselves, then cancel the scope: the worker
        # that sees a transport error knows it was ours and does not retry it (I5).
        for call in list(turn.calls):
            await self.policy.reach_call(call)
        turn.scope.cancel()
        return CancelResult(True, turn.id)

    def running_sessions(self) -> list[str]:
        return [s.id for s in self._sessions.values() if s.active is not None]

    async def cancel_running(self, session_id: str) -> CancelResult:
        """Cancel the session's running turn, and only that (no other effect of an Esc)."""
        return await self._cancel_turn(self._session(session_id))

    def background_work(self, session_id: str) -> tuple[list[CallHandle], list[anyio.CancelScope]]:
        session = self._session(session_id)
        return list(session.background_calls), list(session.background)

    async def _drive(self, session: _Session, handle: TurnHandle) -> None:
        turn = handle.state
        self.emit("turn.started", session.id, turn.id)
        outcome = await self.policy.run_turn(self, turn)
        if session.active is turn:
            session.active = None
        self.emit("turn.ended", session.id, turn.id, outcome.stop_reason.value)
        handle._settle(outcome)
        if outcome.stop_reason is StopReason.COMPLETED and self.config.memory_extraction:
            self._start_memory_extraction(session, turn)

    async def run_with_deadline(self, turn: TurnState) -> TurnOutcome:
        """Run the turn in its scope; the deadline cancels the work before we say timeout."""
        reason, error, text = StopReason.COMPLETED, None, ""
        with turn.scope:
            with anyio.move_on_after(self.config.turn_timeout or float("inf")) as deadline:
                reason, error, text = await self.run_turn_body(turn)
        if turn.cancel_requested:
            reason, error = StopReason.CANCELLED, None
        elif deadline.cancelled_caught:
            reason, error = StopReason.TIMEOUT, f"turn exceeded {self.config.turn_timeout:g}s"
        return TurnOutcome(turn.id, turn.session_id, reason, text, error, turn.usage)

    async def run_turn_body(self, turn: TurnState) -> TurnResult:
        """The engine run, with its failures mapped onto the stop-reason taxonomy."""
        try:
            text = await self.engine.run(turn)
            return StopReason.COMPLETED, None, text
        except CallCancelled:
            return StopReason.CANCELLED, None, ""
        except TurnEnded as exc:
            return exc.reason, str(exc), ""
        except (ProviderError, ToolError) as exc:
            return StopReason.ERROR, f"{type(exc).__name__}: {exc}", ""

    @property
    def engine(self) -> Engine:
        return Engine(
            self.config,
            model_call=self.model_call,
            run_tool=self._run_tool,
            tool_specs=self.tools.specs(),
            history=self.store.transcript,
            commit=self._commit,
        )

    def _commit(self, turn: TurnState, messages: list[Message]) -> None:
        self.store.commit_turn(turn.session_id, turn.id, messages, StopReason.COMPLETED, turn.usage)
        self.emit("turn.committed", turn.session_id, turn.id, f"{len(messages)} messages")

    # --------------------------------------------------------------- model & tools

    async def model_call(self, turn: TurnState, request: ModelRequest) -> ModelReply:
        """One logical model call inside the turn's scope, registered for cancel()."""
        call = CallHandle(purpose=request.purpose)
        turn.calls.append(call)
        self.emit("model.call", turn.session_id, turn.id, request.purpose)
        try:
            return await self.policy.model_call(self, turn, request, call)
        finally:
            turn.calls.remove(call)

    def retry_reporter(self, turn: TurnState) -> Callable[[int, float, ProviderError], None]:
        def report(retry: int, wait: float, error: ProviderError) -> None:
            detail = f"#{retry} in {wait:.3f}s after {error}"
            self.emit("model.retry", turn.session_id, turn.id, detail)

        return report

    async def _run_tool(self, turn: TurnState, call: ToolCall) -> str:
        def started(pid: int) -> None:
            self._pids.add(pid)
            self.emit("tool.started", turn.session_id, turn.id, f"{call.name} pid {pid}")

        self.emit("tool.call", turn.session_id, turn.id, call.name)
        if self.approve_tool is not None and not await self.approve_tool(turn.session_id, call):
            self.emit("tool.denied", turn.session_id, turn.id, call.name)
            return f"permission to run {call.name!r} was denied by the user"
        return await self.tools.run(call, on_started=started)

    # ------------------------------------------------------------------ background

    def _start_memory_extraction(self, session: _Session, turn: TurnState) -> None:
        """Post-turn work with its own lifetime: bounded, not cancelled by the user's Esc."""
        assert self._tg is not None
        scope = anyio.CancelScope(deadline=anyio.current_time() + self.config.memory_timeout)
        session.background.add(scope)
        self._tg.start_soon(self._extract_memory, session, turn.id, scope)

    async def _extract_memory(
        self, session: _Session, turn_id: str, scope: anyio.CancelScope
    ) -> None:
        call = CallHandle(purpose="memory")
        session.background_calls.add(call)
        self.emit("background.started", session.id, turn_id, "memory extraction")
        result = "cancelled"
        try:
            with scope:
                request = ModelRequest(
                    messages=tuple(self.store.transcript(session.id)[-6:]),
                    system=MEMORY_PROMPT,
                    max_tokens=256,
                    purpose="memory",
                )
                reply = await call_with_retries(self.client, request, call, self.retry_policy)
                self.memories.setdefault(session.id, []).append(reply.text)
                result = "completed"
        except (ProviderError, CallCancelled) as exc:
            result = f"failed: {exc}"
        finally:
            session.background.discard(scope)
            session.background_calls.discard(call)
            self.emit("background.ended", session.id, turn_id, result)
