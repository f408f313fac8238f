"""openai-agents as a harness target: `python:conformance.adapters.openai_agents:make_target`.

Streaming turns use `Runner.run_streamed()`; the cancel is the library's own
`RunResultStreaming.cancel()` (mode "immediate"), and the turn ends when `stream_events()`
stops. Non-streaming turns use `Runner.run()`, whose only cancel is cancelling the task
awaiting it. A deadline is the application's `asyncio.timeout()` around the run, followed by
the same `cancel()`, as a careful application would do (the library has no per-run deadline).
Leaving early (`leave`) is the application breaking out of `stream_events()` without calling
`cancel()`: what a caller does when it no longer wants the answer.

The model talks to the fake provider through our own AsyncOpenAI client, passed to the model
object (never `set_default_openai_client`, which is process-wide); tracing is off per run.
The transcript is the library's own `SQLiteSession` (one database file per target), read
back with `get_items()`: what the library persisted, not what we think it should have.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from conformance.adapters.library import LibraryTarget, Turn, TurnCancelled, openai_client
from fake_providers.kinds import ProviderKind
from harness.target import Transcript, TranscriptEntry

MODEL = "gpt-4o"


class OpenAIAgentsTarget(LibraryTarget):
    name = "openai-agents"
    providers = (ProviderKind.OPENAI_CHAT, ProviderKind.OPENAI_RESPONSES, ProviderKind.AZURE)

    def __init__(self) -> None:
        super().__init__()
        self._client: Any = None
        self._agent: Any = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._sessions_db: dict[str, Any] = {}

    async def open(self) -> None:
        from agents import Agent, OpenAIChatCompletionsModel, OpenAIResponsesModel

        assert self.endpoint is not None
        self._client = openai_client(self)
        if self.endpoint.kind == "openai-responses":
            model: Any = OpenAIResponsesModel(model=MODEL, openai_client=self._client)
        else:
            model = OpenAIChatCompletionsModel(model=MODEL, openai_client=self._client)
        self._agent = Agent(name="assistant", instructions="You are helpful.", model=model)
        self._dir = tempfile.TemporaryDirectory(prefix="openai-agents-")

    async def close(self) -> None:
        for session in self._sessions_db.values():
            session.close()
        if self._client is not None:
            await self._client.close()
        if self._dir is not None:
            self._dir.cleanup()

    async def open_session(self, session_id: str) -> None:
        from agents import SQLiteSession

        assert self._dir is not None
        db = Path(self._dir.name) / "sessions.sqlite3"
        self._sessions_db[session_id] = SQLiteSession(session_id, db)

    def _run_config(self) -> Any:
        from agents import ModelSettings, RunConfig

        settings = ModelSettings(max_tokens=self.settings.max_output_tokens)
        return RunConfig(tracing_disabled=True, model_settings=settings)

    async def run_turn(self, turn: Turn) -> str:
        from agents import Runner

        session = self._sessions_db[turn.session_id]
        if not self.streaming:
            result = await Runner.run(
                self._agent, turn.prompt, session=session, run_config=self._run_config()
            )
            return str(result.final_output)
        streamed = Runner.run_streamed(
            self._agent, turn.prompt, session=session, run_config=self._run_config()
        )
        turn.handle = streamed
        try:
            async for event in streamed.stream_events():
                data = getattr(event, "data", None)
                delta = ""
                if getattr(data, "type", "") == "response.output_text.delta":
                    delta = str(getattr(data, "delta", ""))
                if turn.show(delta):
                    return turn.shown  # left: break out, no cancel()
        except asyncio.CancelledError:
            streamed.cancel()  # the deadline (or stop) ended our wait: end the run as well
            raise
        if turn.cancel_ns is not None:
            raise TurnCancelled("RunResultStreaming.cancel() ended the run")
        return str(streamed.final_output or turn.shown)

    async def cancel_turn(self, turn: Turn) -> None:
        streamed = turn.handle
        if streamed is None:  # non-streaming, or not begun: cancel the task awaiting the run
            await super().cancel_turn(turn)
            return
        streamed.cancel(mode="immediate")  # type: ignore[attr-defined]

    async def read_transcript(self, session_id: str) -> Transcript:
        items = await self._sessions_db[session_id].get_items()
        entries = tuple(e for e in (_entry(item) for item in items) if e is not None)
        return Transcript(entries, (0, 0), ())


def _entry(item: Any) -> TranscriptEntry | None:
    """A session item as a transcript entry: user and assistant messages (tools left out)."""
    if not isinstance(item, dict) or item.get("role") not in ("user", "assistant"):
        return None
    content = item.get("content")
    if isinstance(content, list):
        content = "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return TranscriptEntry(str(item["role"]), str(content or ""))


def make_target() -> OpenAIAgentsTarget:
    return OpenAIAgentsTarget()
