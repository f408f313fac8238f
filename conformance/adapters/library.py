"""What every Python-library adapter shares: sessions, turns run as asyncio tasks, outcomes.

A library has no front door of its own, so the adapter plays the application a user would
write: `submit` starts the library's run in an asyncio task and returns at once (accepted);
`cancel` calls the library's own cancel path (`cancel_turn`; by default `task.cancel()`, what
an asyncio application does); `wait_outcome` reports how the run ended. Each adapter object
owns its clients (no process-wide defaults), so cases under `--jobs` never share state.

Why plain asyncio tasks and not an anyio cancel scope: these libraries start asyncio tasks of
their own and clean up with awaits after the first `CancelledError`. anyio cancels a scope
*level-triggered* (every await inside it is cancelled again), which cuts that clean-up short:
LangGraph's `astream()` and openai-agents' `Runner.run()` then leave the model request open.
`task.cancel()` is delivered once, as asyncio code expects, and both close at once.

Stop reasons: the run returned -> completed; the cancel was asked and the run ended by it ->
cancelled; the caller left the stream (`leave`) -> cancelled; the scenario's deadline passed
-> timeout; anything else the library raised -> error (with its type and message).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import anyio

from fake_providers.kinds import ProviderKind
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
# library's own client (deadline, retries, read timeout, stream flag), and reads its stream.
LIBRARY_CAPABILITIES = frozenset(
    {
        Capability.CANCEL,
        Capability.TIMEOUT,
        Capability.TRANSCRIPT,
        Capability.RETRIES,
        Capability.STALE_TIMEOUT,
        Capability.SESSIONS,
        Capability.LEAVE_EARLY,
    }
)
CONNECT_TIMEOUT = 10.0
STOP_WAIT = 5.0  # stop() waits this long for cancelled turns to unwind


class TurnCancelled(Exception):
    """Raised by an adapter's run when the library reported the cancel as its own result."""


class TurnTimedOut(Exception):
    """Raised by an adapter's run when the library's own deadline ended the run."""


@dataclass(eq=False)
class Turn:
    """One submitted prompt, the text its stream has shown so far, and how it ended."""

    id: str
    session_id: str
    prompt: str
    task: asyncio.Task[None] | None = None
    done: anyio.Event = field(default_factory=anyio.Event)
    cancel_ns: int | None = None
    left_ns: int | None = None  # when the caller stopped consuming the stream (`leave`)
    outcome: Outcome | None = None
    handle: object = None  # the library's run object, when it offers its own cancel
    parts: list[str] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    def show(self, text: str) -> bool:
        """Record streamed text as shown to the caller; True once the caller has left, so the
        consuming loop breaks out, as `break` in the application's `async for` does."""
        if text:
            self.parts.append(text)
        return self.left_ns is not None

    @property
    def shown(self) -> str:
        return "".join(self.parts)


class LibraryTarget:
    """Base for adapters: subclasses implement `open`, `close`, `run_turn` and `read_transcript`.

    `run_turn` reads the library's stream and passes each text delta to `turn.show()`,
    breaking out of the stream when it returns True (the caller left).
    """

    name = "library"
    capabilities: frozenset[Capability] = LIBRARY_CAPABILITIES
    providers: tuple[ProviderKind, ...] = ()  # the wire formats the adapter can speak
    # None: the scenarios' own close bound (the library runs in the harness's event loop).
    close_within: float | None = None

    def __init__(self) -> None:
        self.endpoint: Endpoint | None = None
        self.settings = AgentSettings()
        self._started = False
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
        if turn.task is not None:
            turn.task.cancel()

    async def read_transcript(self, session_id: str) -> Transcript:
        raise NotImplementedError

    # ------------------------------------------------------------------ lifecycle

    async def start(self, endpoint: Endpoint, settings: AgentSettings) -> None:
        if endpoint.kind not in self.providers:
            raise TargetStartError(
                f"{self.name} speaks {', '.join(sorted(self.providers))}, not {endpoint.kind}; "
                "run it with one of those --provider kinds"
            )
        self.endpoint, self.settings = endpoint, settings
        try:
            await self.open()
        except BaseException:
            await self.close()
            raise
        self._started = True

    async def stop(self) -> None:
        """Cancel the turns still running, wait for them to unwind, close the clients."""
        if not self._started:
            return
        self._started = False
        running = [t.task for t in self._turns.values() if t.task is not None and t.running]
        for task in running:
            task.cancel()
        try:
            if running:
                await asyncio.wait(running, timeout=STOP_WAIT)
        finally:
            await self.close()

    # ------------------------------------------------------------------- sessions

    async def new_session(self) -> str:
        session_id = f"{self.name}-s{len(self._sessions) + 1}"
        await self.open_session(session_id)
        self._sessions.append(session_id)
        return session_id

    async def submit(self, session_id: str, prompt: str) -> Submission:
        if not self._started:
            raise TargetStartError(f"the target {self.name} was used before start()")
        turn = Turn(f"t{len(self._turns) + 1}", session_id, prompt)
        self._turns[turn.id] = turn
        self._latest[session_id] = turn
        turn.task = asyncio.get_running_loop().create_task(
            self._drive(turn), name=f"{self.name} {turn.id}"
        )
        return Submission(session_id, turn.id, turn.id)

    async def _drive(self, turn: Turn) -> None:
        self.note(f"turn.started {turn.id}")
        outcome: Outcome
        try:
            text = await self._with_deadline(turn)
            if turn.left_ns is not None:
                outcome = Outcome(turn.id, "cancelled", text, "the caller left the stream")
            else:
                outcome = Outcome(turn.id, "completed", text)
        except asyncio.CancelledError:  # our own task: the cancel (or stop) ends it here
            outcome = Outcome(turn.id, "cancelled", turn.shown)
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
        """A deadline the library does not take itself is the application's asyncio.timeout."""
        deadline = self.settings.turn_timeout
        if deadline is None or self.takes_deadline:
            return await self.run_turn(turn)
        async with asyncio.timeout(deadline):
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

    async def leave(self, submission: Submission) -> None:
        """The caller stops consuming the turn's stream (Capability.LEAVE_EARLY): the
        consuming loop breaks out at the next chunk, and nothing is cancelled."""
        turn = self._turns[submission.turn_id]
        if turn.running and turn.left_ns is None:
            turn.left_ns = time.monotonic_ns()
            self.note(f"leave {turn.id}")

    def shown(self, submission: Submission) -> str:
        """The text the turn's stream has delivered to the caller so far."""
        return self._turns[submission.turn_id].shown

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
