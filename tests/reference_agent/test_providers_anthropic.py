"""Anthropic Messages client with respx: content blocks, named events, stop reasons."""

from __future__ import annotations

import json

import pytest
import respx

from fake_providers.content import Completion, FinishReason
from fake_providers.content import ToolCall as FakeCall
from fake_providers.content import Usage as FakeUsage
from fake_providers.wire.anthropic import ANTHROPIC, error_object
from fake_providers.wire.base import RequestFacts, sse
from reference_agent.config import AgentConfig
from reference_agent.model import Message, ToolCall, Usage
from reference_agent.providers import (
    CallHandle,
    FatalProviderError,
    Finished,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolCallDone,
    ToolSpec,
    TransientProviderError,
    make_client,
    make_http_client,
)

pytestmark = pytest.mark.anyio

URL = "https://api.anthropic.test/v1/messages"
CONFIG = AgentConfig(
    provider="anthropic",
    base_url="https://api.anthropic.test",
    api_key="sk-ant",
    model="claude-sonnet-4-5",
)
SSE = {"content-type": "text/event-stream"}
SCHEMA: dict[str, object] = {"type": "object", "properties": {"city": {"type": "string"}}}
A, B = ToolCall("tu_a", "get_weather", {"city": "Paris"}), ToolCall("tu_b", "get_time", {})
TRANSCRIPT = (
    Message("summary", "Earlier: Paris."),
    Message("user", "Weather and time?"),
    Message("assistant", "", tool_calls=(A, B)),
    Message("tool", "Sunny", tool_call_id="tu_a"),
    Message("tool", "", tool_call_id="tu_b"),
)
REQUEST = ModelRequest(
    TRANSCRIPT, system="Be brief.", tools=(ToolSpec("get_weather", "W.", SCHEMA),), max_tokens=64
)


def completion(finish: FinishReason) -> Completion:
    calls = (FakeCall("tu_9", "get_weather", '{"city":"Oslo"}'),)
    return Completion(
        model="claude-sonnet-4-5",
        response_id="msg_1",
        created=0,
        text_chunks=("Let ", "me ", "see"),
        tool_calls=calls if finish is FinishReason.TOOL_CALLS else (),
        finish=finish,
        usage=FakeUsage(30, 12),
    )


def stream_of(c: Completion) -> bytes:
    facts = RequestFacts("anthropic", "claude-sonnet-4-5", stream=True, include_usage=True)
    return b"".join(ANTHROPIC.stream_events(c, facts))


async def run(request: ModelRequest = REQUEST) -> list[ModelEvent]:
    async with make_http_client(CONFIG) as http:
        client = make_client(CONFIG, http)
        assert client.kind == "anthropic"
        return [event async for event in client.attempt(request, CallHandle())]


async def test_request_shape() -> None:
    content = stream_of(completion(FinishReason.STOP))
    with respx.mock() as router:
        route = router.post(URL).respond(200, headers=SSE, content=content)
        await run()
    sent = route.calls.last.request
    assert sent.headers["x-api-key"] == "sk-ant"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    body = json.loads(sent.content)
    assert (body["model"], body["max_tokens"], body["system"], body["stream"]) == (
        "claude-sonnet-4-5", 64, "Be brief.", True,
    )  # fmt: skip
    assert body["tools"] == [{"name": "get_weather", "description": "W.", "input_schema": SCHEMA}]
    first, *rest = body["messages"]
    assert first["role"] == "user"
    # The summary and the next user message share one user turn.
    assert first["content"][0]["text"].endswith("Earlier: Paris.")
    assert first["content"][1] == {"type": "text", "text": "Weather and time?"}
    assert rest == [
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "tu_a", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "tu_b", "name": "get_time", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "tu_a", "content": "Sunny"},
            {"type": "tool_result", "tool_use_id": "tu_b"},
        ]},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("finish", "reason"),
    [(FinishReason.STOP, "stop"), (FinishReason.LENGTH, "length"),
     (FinishReason.TOOL_CALLS, "tool_calls")],
)  # fmt: skip
async def test_stream_text_tools_usage_and_stop_reasons(finish: FinishReason, reason: str) -> None:
    with respx.mock() as router:
        router.post(URL).respond(200, headers=SSE, content=stream_of(completion(finish)))
        events = await run()
    texts = [TextDelta("Let "), TextDelta("me "), TextDelta("see")]
    calls = [ToolCallDone(ToolCall("tu_9", "get_weather", {"city": "Oslo"}))]
    assert events == [
        *texts,
        *(calls if finish is FinishReason.TOOL_CALLS else []),
        Finished(reason, Usage(30, 12)),
    ]


async def test_cached_prompt_tokens_count_as_input() -> None:
    start = {"type": "message_start", "message": {"usage": {
        "input_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 7,
        "output_tokens": 1}}}  # fmt: skip
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
             "usage": {"output_tokens": 3}}  # fmt: skip
    content = (
        sse(start, "message_start")
        + sse(delta, "message_delta")
        + sse({"type": "message_stop"}, "message_stop")
    )
    with respx.mock() as router:
        router.post(URL).respond(200, headers=SSE, content=content)
        events = await run()
    assert events == [Finished("stop", Usage(112, 3))]


@pytest.mark.parametrize(
    ("status", "kind"),
    [(529, TransientProviderError), (500, TransientProviderError), (400, FatalProviderError)],
)
async def test_error_events(status: int, kind: type[Exception]) -> None:
    head = stream_of(completion(FinishReason.STOP)).split(b"event: content_block_stop")[0]
    content = head + sse(error_object(status, "it failed"), "error")
    with respx.mock() as router:
        router.post(URL).respond(200, headers=SSE, content=content)
        with pytest.raises(kind, match="it failed") as caught:
            await run()
    assert type(caught.value) is kind


async def test_non_streaming_body() -> None:
    facts = RequestFacts("anthropic", "claude-sonnet-4-5", stream=False)
    body = ANTHROPIC.json_body(completion(FinishReason.TOOL_CALLS), facts)
    with respx.mock() as router:
        route = router.post(URL).respond(200, content=body)
        events = await run(ModelRequest((Message("user", "hi"),), stream=False))
    sent = json.loads(route.calls.last.request.content)
    assert sent["stream"] is False
    assert "system" not in sent
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]
    assert events == [
        TextDelta("Let me see"),
        ToolCallDone(ToolCall("tu_9", "get_weather", {"city": "Oslo"})),
        Finished("tool_calls", Usage(30, 12)),
    ]


async def test_http_error_body_message() -> None:
    with respx.mock() as router:
        router.post(URL).respond(400, json=error_object(400, "max_tokens: Field required"))
        with pytest.raises(FatalProviderError, match="max_tokens: Field required"):
            await run()
