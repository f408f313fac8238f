"""pydantic-ai as a harness target: `python:conformance.adapters.pydantic_ai:make_target`.

The cancel is the library's own: a `CancellationToken` per turn, passed to `agent.run_stream()`
(or `agent.run()` for non-streaming scenarios), whose `cancel()` ends the run with
`RunCancelled`; the scenario's deadline is the run's own `timeout=` (`RunTimedOut`). Each turn
talks to the fake provider through our own SDK client, so base URL, retries and the read
timeout come from the case, and nothing process-wide is touched.

pydantic-ai keeps no state between runs: an application stores `result.all_messages()` and
passes it back as `message_history`. The adapter does exactly that, per session, when a run
returns, and that store is the transcript. So a ghost turn here means the library *returned a
result* for a run it had been told to cancel or whose deadline had passed.
"""

from __future__ import annotations

from typing import Any

from conformance.adapters.library import (
    LibraryTarget,
    Turn,
    TurnCancelled,
    TurnTimedOut,
    anthropic_client,
    openai_client,
)
from fake_providers.kinds import ProviderKind
from harness.target import Transcript, TranscriptEntry

MODELS = {
    "openai-chat": "gpt-4o",
    "openai-responses": "gpt-4o",
    "azure": "gpt-4o",
    "anthropic": "claude-sonnet-4-5",
}


class PydanticAITarget(LibraryTarget):
    name = "pydantic-ai"
    providers = tuple(ProviderKind(kind) for kind in MODELS)
    takes_deadline = True

    def __init__(self) -> None:
        super().__init__()
        self._client: Any = None
        self._agent: Any = None
        self._history: dict[str, list[Any]] = {}
        self._entries: dict[str, list[TranscriptEntry]] = {}
        self._usage: dict[str, tuple[int, int]] = {}
        self._turn_ids: dict[str, list[str]] = {}

    async def open(self) -> None:
        from pydantic_ai import Agent

        assert self.endpoint is not None
        kind = self.endpoint.kind
        if kind == "anthropic":
            from pydantic_ai.models.anthropic import AnthropicModel
            from pydantic_ai.providers.anthropic import AnthropicProvider

            self._client = anthropic_client(self)
            model: Any = AnthropicModel(
                MODELS[kind], provider=AnthropicProvider(anthropic_client=self._client)
            )
        else:
            from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
            from pydantic_ai.providers.openai import OpenAIProvider

            self._client = openai_client(self)
            provider = OpenAIProvider(openai_client=self._client)
            cls = OpenAIResponsesModel if kind == "openai-responses" else OpenAIChatModel
            model = cls(MODELS[kind], provider=provider)
        self._agent = Agent(model, instructions="You are a helpful assistant.")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def open_session(self, session_id: str) -> None:
        self._history[session_id] = []
        self._entries[session_id] = []
        self._usage[session_id] = (0, 0)
        self._turn_ids[session_id] = []

    async def run_turn(self, turn: Turn) -> str:
        from pydantic_ai import CancellationToken
        from pydantic_ai.exceptions import RunCancelled, RunTimedOut

        token = CancellationToken()
        turn.handle = token
        kwargs: dict[str, Any] = dict(
            message_history=list(self._history[turn.session_id]),
            cancellation_token=token,
            timeout=self.settings.turn_timeout,
        )
        if self.settings.max_output_tokens is not None:
            kwargs["model_settings"] = {"max_tokens": self.settings.max_output_tokens}
        try:
            if self.streaming:
                async with self._agent.run_stream(turn.prompt, **kwargs) as result:
                    # No debouncing: the caller sees (and may leave at) each delta as it comes;
                    # the default groups deltas over 100 ms.
                    async for delta in result.stream_text(delta=True, debounce_by=None):
                        if turn.show(delta):
                            return turn.shown  # left: nothing of it is committed
                text = turn.shown
            else:
                result = await self._agent.run(turn.prompt, **kwargs)
                text = str(result.output)
        except RunTimedOut as exc:
            raise TurnTimedOut(str(exc)) from exc
        except RunCancelled as exc:
            raise TurnCancelled(str(exc)) from exc
        self._commit(turn, result.all_messages(), _usage(result), text)
        return text

    def _commit(self, turn: Turn, messages: list[Any], usage: Any, text: str) -> None:
        """What the application persists when a run returns: history, entries, usage."""
        session = turn.session_id
        self._history[session] = messages
        self._entries[session] += [
            TranscriptEntry("user", turn.prompt, turn.id),
            TranscriptEntry("assistant", text, turn.id, "completed"),
        ]
        before = self._usage[session]
        self._usage[session] = (
            before[0] + int(getattr(usage, "input_tokens", 0) or 0),
            before[1] + int(getattr(usage, "output_tokens", 0) or 0),
        )
        self._turn_ids[session].append(turn.id)

    async def cancel_turn(self, turn: Turn) -> None:
        token = turn.handle
        if token is None:  # accepted, the run not begun yet: nothing of the library to call
            await super().cancel_turn(turn)
            return
        token.cancel()  # type: ignore[attr-defined]

    async def read_transcript(self, session_id: str) -> Transcript:
        return Transcript(
            tuple(self._entries[session_id]),
            self._usage[session_id],
            tuple(self._turn_ids[session_id]),
        )


def make_target() -> PydanticAITarget:
    return PydanticAITarget()


def _usage(result: Any) -> Any:
    """`usage` is a property in pydantic-ai 2.x (still callable, with a deprecation warning)."""
    return result.usage
