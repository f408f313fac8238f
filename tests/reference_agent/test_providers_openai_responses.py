"""OpenAI Responses client with respx: input items, event decoding, terminal events."""

from __future__ import annotations

import json
from typing import Any

import pytest
import respx

from fake_providers.content import Completion, FinishReason
from fake_providers.content import ToolCall as FakeCall
from fake_providers.content import Usage as FakeUsage
from fake_providers.wire.base import RequestFacts, sse
from fake_providers.wire.openai_responses import OPENAI_RESPONSES
from reference_agent.config import AgentConfig
from reference_agent.model import Message, ToolCall, Usage
from reference_agent.providers import (
    CallHandle,
    FatalProviderError,
    Finished,
    ModelEvent,
    ModelRequest,
    StreamBrokenError,
    TextDelta,
    ToolCallDone,
    ToolSpec,
    TransientProviderError,
    make_client,
    make_http_client,
)

pytestmark = pytest.mark.anyio

URL = "https://api.test/v1/responses"
CONFIG = AgentConfig(
    provider="openai-responses", base_url="https://api.test/v1", api_key="sk-r", model="o4-mini"
)
SSE = {"content-type": "text/event-stream"}
SCHEMA: dict[str, object] = {"type": "object", "properties": {"city": {"type": "string"}}}
CALL = ToolCall("call_1", "get_weather", {"city": "Paris"})
TRANSCRIPT = (
    Message("summary", "Earlier: Paris."),
    Message("user", "Weather?"),
    Message("assistant", "Checking.", tool_calls=(CALL,)),
    Message("tool", "Sunny", tool_call_id="call_1"),
)
REQUEST = ModelRequest(
    TRANSCRIPT, system="Be brief.", tools=(ToolSpec("get_weather", "W.", SCHEMA),), max_tokens=50
)


def completion(finish: FinishReason = FinishReason.TOOL_CALLS) -> Completion:
    calls = (FakeCall("call_9", "get_weather", '{"city":"Oslo"}'),)
    return Completion(
        model="o4-mini",
        response_id="resp_1",
        created=0,
        text_chunks=("Let ", "me ", "check"),
        tool_calls=calls if finish is FinishReason.TOOL_CALLS else (),
        finish=finish,
        usage=FakeUsage(20, 9),
    )


def stream_of(c: Completion) -> bytes:
    facts = RequestFacts("openai-responses", "o4-mini", stream=True, include_usage=True)
    return b"".join(OPENAI_RESPONSES.stream_events(c, facts))


async def run(request: ModelRequest = REQUEST) -> list[ModelEvent]:
    async with make_http_client(CONFIG) as http:
        client = make_client(CONFIG, http)
        assert client.kind == "openai-responses"
        return [event async for event in client.attempt(request, CallHandle())]


async def test_request_shape() -> None:
    with respx.mock() as router:
        route = router.post(URL).respond(200, headers=SSE, content=stream_of(completion()))
        await run()
    sent = route.calls.last.request
    assert sent.headers["authorization"] == "Bearer sk-r"
    body = json.loads(sent.content)
    assert {k: body[k] for k in ("model", "instructions", "stream", "max_output_tokens")} == {
        "model": "o4-mini",
        "instructions": "Be brief.",
        "stream": True,
        "max_output_tokens": 50,
    }
    assert body["tools"] == [
        {"type": "function", "name": "get_weather", "description": "W.", "parameters": SCHEMA,
         "strict": False}
    ]  # fmt: skip
    summary, *rest = body["input"]
    assert summary["role"] == "user"
    assert summary["content"].endswith("Earlier: Paris.")
    assert rest == [
        {"type": "message", "role": "user", "content": "Weather?"},
        {"type": "message", "role": "assistant", "content": "Checking."},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city":"Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny"},
    ]  # fmt: skip


async def test_stream_of_text_tool_call_and_usage() -> None:
    with respx.mock() as router:
        router.post(URL).respond(200, headers=SSE, content=stream_of(completion()))
        events = await run()
    assert events == [
        TextDelta("Let "),
        TextDelta("me "),
        TextDelta("check"),
        ToolCallDone(ToolCall("call_9", "get_weather", {"city": "Oslo"})),
        Finished("tool_calls", Usage(20, 9)),
    ]


async def test_incomplete_is_length() -> None:
    with respx.mock() as router:
        raw = stream_of(completion(FinishReason.LENGTH))
        router.post(URL).respond(200, headers=SSE, content=raw)
        events = await run()
    assert events[-1] == Finished("length", Usage(20, 9))


def failed(code: str) -> bytes:
    response = {"status": "failed", "error": {"code": code, "message": f"it {code}"}}
    return sse({"type": "response.failed", "response": response}, "response.failed")


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (failed("server_error"), TransientProviderError),
        (failed("invalid_prompt"), FatalProviderError),
        (sse({"type": "error", "code": "rate_limit_exceeded", "message": "it slow"}, "error"),
         TransientProviderError),
        (sse({"type": "error", "code": None, "message": "it broke"}, "error"), FatalProviderError),
    ],
    ids=["failed-server", "failed-other", "error-rate", "error-other"],
)  # fmt: skip
async def test_failures_in_stream(raw: bytes, kind: type[Exception]) -> None:
    content = sse({"type": "response.output_text.delta", "delta": "x"}) + raw
    with respx.mock() as router:
        router.post(URL).respond(200, headers=SSE, content=content)
        with pytest.raises(kind, match="it ") as caught:
            await run()
    assert not isinstance(caught.value, StreamBrokenError)


async def test_non_streaming_body() -> None:
    facts = RequestFacts("openai-responses", "o4-mini", stream=False)
    body: Any = OPENAI_RESPONSES.json_body(completion(), facts)
    with respx.mock() as router:
        route = router.post(URL).respond(200, content=body)
        events = await run(ModelRequest((Message("user", "hi"),), stream=False))
    sent = json.loads(route.calls.last.request.content)
    assert sent["stream"] is False
    assert "instructions" not in sent
    assert events == [
        TextDelta("Let me check"),
        ToolCallDone(ToolCall("call_9", "get_weather", {"city": "Oslo"})),
        Finished("tool_calls", Usage(20, 9)),
    ]
