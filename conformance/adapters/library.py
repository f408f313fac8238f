"""What every Python-library adapter shares: sessions, turns run as background tasks, outcomes.

A library has no front door of its own, so the adapter plays the application a user would
write: `submit` starts the library's run in a task of the adapter's task group and returns at
once (accepted); `cancel` calls the library's own cancel path (`cancel_turn`, by default
cancelling the task's scope); `wait_outcome` reports how the run ended. Each adapter object
owns its clients (no process-wide defaults), so cases under `--jobs` never share state.

Stop reasons: the run returned -> completed; the cancel was asked and the run ended by it ->
cancelled; the scenario's deadline passed -> timeout; anything else the library raised ->
error (with its type and message).
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

from harness.target import (
    AgentSettings,
    CancelAck,
    Capability,
    Endpoint,
    Outcome,
    Submission,
    TargetStartError,
    TimelineNote,
    Transcript,
)

# What a library run can be judged on once the adapter passes the scenario's settings to the
# library's own client (deadline, retries, read timeout, stream flag).
LIBRARY_CAPABILITIES = frozenset(
    {
        Capability.CANCEL,
        Capability.TIMEOUT,
        Capability.TRANSCRIPT,
        Capability.RETRIES,
        Capability.STALE_TIMEOUT,
        Capability.SESSIONS,
    }
)
CONNECT_TIMEOUT = 10.0


class TurnCancelled(Exception):
    """Raised by an adapter's run when the library reported the cancel as its own result."""


class TurnTimedOut(Exception):
    """Raised by an adapter's run when the library's own deadline ended the run."""


@dataclass(eq=False)
class Turn:
    """One submitted prompt and how it ended."""

    id: str
    session_id: str
    prompt: str
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    cancel_ns: int | None = None
    outcome: Outcome | None = None
    handle: object = None  # the library's run object, when it offers its own cancel

    @property
    def running(self) -> bool:
        return not self.done.is_set()


class LibraryTarget:
    """Base for adapters: subclasses implement `open`, `close`, `run_turn` and `read_transcript`."""

    name = "library"
    capabilities: frozenset[Capability] = LIBRARY_CAPABILITIES
    kinds: frozenset[str] = frozenset()  # provider kinds the adapter can speak

    def __init__(self) -> None:
        self.endpoint: Endpoint | None = None
        self.settings = AgentSettings()
        self._stack: AsyncExitStack | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._turns: dict[str, Turn] = {}
        self._latest: dict[str, Turn] = {}
        self._sessions: list[str] = []
        self._notes: list[TimelineNote] = []

    # ------------------------------------------------------------- subclass hooks

    async def open(self) -> None:
        """Build the library's clients for `self.endpoint` and `self.settings`."""

    async def close(self) -> None:
        """Close the clients (their pooled connections must close with them)."""

    async def open_session(self, session_id: str) -> None:
        """Prepare the library's state for a new session."""

    async def run_turn(self, turn: Turn) -> str:
        """Run the library on `turn.prompt`; return the answer's text."""
        raise NotImplementedError

    async def cancel_turn(self, turn: Turn) -> None:
        """The library's own cancel path; by default cancel the task running the turn."""
        turn.scope.cancel()

    async def read_transcript(self, session_id: str) -> Transcript:
        raise NotImplementedError

    # ------------------------------------------------------------------ lifecycle

    async def start(self, endpoint: Endpoint, settings: AgentSettings) -> None:
        if endpoint.kind not in self.kinds:
            raise TargetStartError(
                f"{self.name} speaks {', '.join(sorted(self.kinds))}, not {endpoint.kind}; "
                "run it with one of those --provider kinds"
            )
        self.endpoint, self.settings = endpoint, settings
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            await self.open()
            stack.push_async_callback(self.close)
            stack.push_async_callback(self._cancel_all)  # on stop: cancel turns, then close
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack

    async def _cancel_all(self) -> None:
        for turn in self._turns.values():
            turn.scope.cancel()

    async def stop(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()  # cancels the turns, closes the clients, awaits the turns

    # ------------------------------------------------------------------- sessions

    async def new_session(self) -> str:
        session_id = f"{self.name}-s{len(self._sessions) + 1}"
        await self.open_session(session_id)
        self._sessions.append(session_id)
        return session_id

    async def submit(self, session_id: str, prompt: str) -> Submission:
        if self._tg is None:
            raise TargetStartError(f"the target {self.name} was used before start()")
        turn = Turn(f"t{len(self._turns) + 1}", session_id, prompt)
        self._turns[turn.id] = turn
        self._latest[session_id] = turn
        self._tg.start_soon(self._drive, turn)
        return Submission(session_id, turn.id, turn.id)

    async def _drive(self, turn: Turn) -> None:
        self.note(f"turn.started {turn.id}")
        outcome: Outcome
        try:
            with turn.scope:
                text = await self._with_deadline(turn)
                outcome = Outcome(turn.id, "completed", text)
            if turn.scope.cancelled_caught:
                outcome = Outcome(turn.id, "cancelled")
        except TurnCancelled as exc:
            outcome = Outcome(turn.id, "cancelled", str(exc))
        except (TurnTimedOut, TimeoutError) as exc:
            outcome = Outcome(turn.id, "timeout", "", f"{type(exc).__name__}: {exc}"[:300])
        except Exception as exc:
            outcome = Outcome(turn.id, "error", "", f"{type(exc).__name__}: {exc}"[:300])
        turn.outcome = outcome
        self.note(f"turn.ended {turn.id} {outcome.stop_reason}")
        turn.done.set()

    async def _with_deadline(self, turn: Turn) -> str:
        """A deadline the library does not take itself is the application's fail_after."""
        deadline = self.settings.turn_timeout
        if deadline is None or self.takes_deadline:
            return await self.run_turn(turn)
        with anyio.fail_after(deadline):
            return await self.run_turn(turn)

    takes_deadline = False  # True: run_turn passes settings.turn_timeout to the library

    async def cancel(self, session_id: str, stream_id: str | None = None) -> CancelAck:
        turn = self._latest.get(session_id)
        live = turn if turn is not None and turn.running else None
        if live is None or (stream_id is not None and stream_id != live.id):
            return CancelAck(False, stream_id or "", stream_id or "")
        live.cancel_ns = time.monotonic_ns()
        self.note(f"cancel.received {live.id}")
        await self.cancel_turn(live)
        return CancelAck(True, live.id, live.id)

    async def wait_outcome(self, submission: Submission, timeout: float) -> Outcome:
        turn = self._turns[submission.turn_id]
        with anyio.fail_after(timeout):
            await turn.done.wait()
        assert turn.outcome is not None
        return turn.outcome

    async def transcript(self, session_id: str) -> Transcript:
        return await self.read_transcript(session_id)

    def live_pids(self) -> list[int]:
        return []  # the adapters give the library no tools: no subprocess can outlive a turn

    def notes(self) -> list[TimelineNote]:
        return list(self._notes)

    def note(self, what: str) -> None:
        self._notes.append(TimelineNote(time.monotonic_ns(), what))

    # ------------------------------------------------------------------ settings

    @property
    def streaming(self) -> bool:
        return self.settings.stream is not False

    def http_timeout(self) -> float | None:
        """The SDK's read timeout: the scenario's stale timeout (None: the SDK's default)."""
        return self.settings.stale_timeout

    def sdk_timeout(self) -> Any:
        """An httpx.Timeout for the SDK client from the stale timeout, or the SDK default."""
        import httpx

        stale = self.settings.stale_timeout
        if stale is None:
            return httpx.Timeout(600.0, connect=CONNECT_TIMEOUT)
        return httpx.Timeout(stale, connect=CONNECT_TIMEOUT)

    def sdk_retries(self, default: int = 2) -> int:
        return default if self.settings.max_retries is None else self.settings.max_retries


# ---------------------------------------------------------------------- SDK clients

AZURE_API_VERSION = "2024-10-21"


def openai_client(target: LibraryTarget) -> object:
    """An AsyncOpenAI (or AsyncAzureOpenAI) for the target's endpoint and settings."""
    import openai

    endpoint = target.endpoint
    assert endpoint is not None
    common: dict[str, Any] = dict(
        api_key=endpoint.api_key,
        max_retries=target.sdk_retries(),
        timeout=target.sdk_timeout(),
        http_client=_http_client(endpoint),
    )
    if endpoint.kind == "azure":
        return openai.AsyncAzureOpenAI(
            azure_endpoint=endpoint.base_url, api_version=AZURE_API_VERSION, **common
        )
    return openai.AsyncOpenAI(base_url=endpoint.base_url, **common)


def anthropic_client(target: LibraryTarget) -> object:
    import anthropic

    endpoint = target.endpoint
    assert endpoint is not None
    # anthropic >= 2.x runs on its own fork of httpx (`httpx2`) and refuses an httpx client,
    # so it keeps its own; its timeout is a plain float here. close() closes its pool.
    stale = target.settings.stale_timeout
    return anthropic.AsyncAnthropic(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        max_retries=target.sdk_retries(),
        timeout=stale if stale is not None else 600.0,
    )


def _http_client(endpoint: Endpoint) -> Any:
    """Our own httpx client, so the harness's CA (with --tls) is trusted and we can close it."""
    import httpx

    verify: Any = endpoint.ca_file if endpoint.ca_file else True
    return httpx.AsyncClient(verify=verify)
